"""Images in one sub-folder per class, read with Pillow when an item is asked for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..transforms import _convert, pil_to_tensor
from ._common import PathLike, Transform, _check_transform, _index, _root

__all__ = ["ImageFolder"]


class ImageFolder(Dataset):
    """Images in one sub-folder per class: ``root/<class>/**/<file>.png``.

    Classes are the sub-folders of ``root`` sorted by name, labelled 0..K-1; samples are sorted by path within
    each class. Only the folder listing is read up front (``targets`` comes from the folder structure); each image
    is opened by Pillow when its item is asked for, and closed at once.

    Without ``transform`` an item is a float32 tensor ``C x H x W`` in [0, 1]: grayscale images (mode ``"L"``;
    16-bit ones are scaled by 1/65535) give 1 channel, every other mode is converted to RGB (3 channels; alpha
    dropped). A folder that mixes
    grayscale and colour images therefore gives items of different shapes, which a ``DataLoader`` cannot stack:
    pass ``channels=3`` (or ``1``) to convert every image the same way. With ``transform`` the item is
    ``transform(image)``, ``image`` being the PIL image already converted that way (e.g.
    ``netfix.transforms.Compose([ToTensor(), RandomCrop(32, padding=4)])``).

    Skipped while listing: hidden files and folders (names starting with ``.``, e.g. ``.ipynb_checkpoints`` or
    macOS ``._x.jpg`` files), files whose extension is not in ``extensions`` (compared case-insensitively),
    anything that is not a regular file, and symbolic links that lead outside ``root``. Symbolic links to folders
    are not followed.

    Attributes: ``classes`` (folder names), ``class_to_idx``, ``samples`` (``(path, label)`` pairs), ``targets``
    (int64 tensor), ``num_classes``.

    Example:
        >>> ds = ImageFolder("photos")            # photos/cat/1.jpg, photos/dog/7.png, ...
        >>> ds.classes, ds.num_classes, len(ds)
        (['cat', 'dog'], 2, 180)
        >>> x, y = ds[0]                            # read now, not before
    """

    def __init__(self, root: PathLike, transform: "Transform | None" = None,
                 extensions: "Sequence[str]" = (".png", ".jpg", ".jpeg", ".bmp"),
                 *, channels: int | None = None) -> None:
        if channels not in (None, 1, 3):
            raise ConfigError(f"ImageFolder(channels=...): expected None (grayscale 1 channel, others RGB), 1 "
                              f"(all grayscale) or 3 (all RGB); got {channels!r}.")
        self.transform = _check_transform(transform, "ImageFolder")
        self.channels = channels
        self.extensions = self._extensions(extensions)
        self.root = _root(root, "ImageFolder")
        real_root = self.root.resolve()
        with os.scandir(self.root) as entries:
            self.classes = sorted(e.name for e in entries
                                  if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
        if not self.classes:
            raise DataError(f"ImageFolder(root=...): {self.root} holds no class folders; expected one sub-folder "
                            f"per class, e.g. {self.root / 'cat' / '001.png'}. Fix: move the images of each class "
                            "into a folder named after the class.")
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for k, c in enumerate(self.classes):
            files = self._list(self.root / c, real_root)
            if not files:
                raise DataError(f"ImageFolder: class folder {self.root / c} holds no image files with an extension "
                                f"in {self.extensions}. Fix: add its images, remove the folder, or pass "
                                "extensions=(...) naming the extensions the images have.")
            self.samples.extend((f, k) for f in files)
        self.targets = torch.tensor([k for _, k in self.samples], dtype=torch.int64)
        self.num_classes = len(self.classes)

    @staticmethod
    def _extensions(extensions: Any) -> tuple[str, ...]:
        exts = (extensions,) if isinstance(extensions, str) else extensions
        try:
            out = tuple(exts)
        except TypeError:
            out = ()
        if not out or not all(isinstance(e, str) and e.startswith(".") and len(e) > 1 for e in out):
            raise ConfigError(f"ImageFolder(extensions=...): expected a non-empty sequence of extensions with their "
                              f"dot, e.g. ('.png', '.jpg'); got {extensions!r}.")
        return tuple(e.lower() for e in out)

    def _list(self, folder: Path, real_root: Path) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith(self.extensions):
                    continue
                path = Path(dirpath) / name
                if not path.is_file():  # broken links, sockets, fifos...
                    continue
                if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                    continue
                found.append(str(path))
        return found

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        path, label = self.samples[_index(i, len(self.samples), "ImageFolder")]
        image = self._read(path)
        if self.transform is not None:
            return self.transform(image), label
        return pil_to_tensor(image, self.channels), label

    def _read(self, path: str) -> Any:
        try:
            from PIL import Image
        except ModuleNotFoundError:
            raise ModuleNotFoundError("ImageFolder reads images with Pillow, which is not installed. "
                                      "Fix: pip install pillow.") from None
        try:
            with Image.open(path) as img:
                img.load()
                converted = _convert(img, self.channels)
                return converted.copy() if converted is img else converted
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"ImageFolder: Pillow cannot read {path} ({type(e).__name__}: {e}). Fix: replace or "
                            "delete the file (or drop its extension from extensions=).") from None

    def __repr__(self) -> str:
        return (f"ImageFolder(root={str(self.root)!r}, n={len(self)}, num_classes={self.num_classes}, "
                f"transform={self.transform!r})")
