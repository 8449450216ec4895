"""Small image transforms for the datasets in :mod:`netfix.formats` (no torchvision needed).

Every transform is a callable on one image. :class:`ToTensor` turns a PIL image or an ``H x W [x C]`` numpy array
into a float32 ``C x H x W`` tensor in [0, 1]; the others take and return float ``C x H x W`` tensors and never
change their input in place.

The random transforms (:class:`RandomCrop`, :class:`RandomHorizontalFlip`) draw from torch's global random number
generator unless given ``generator=``, so ``torch.manual_seed`` (and a ``DataLoader``'s per-worker seeding) makes
them reproducible. With ``DataLoader(num_workers > 0)`` leave ``generator`` unset: each worker would get a copy of
the same generator and draw the same numbers as the others, while the global one is seeded per worker.

Example:
    >>> import torch
    >>> from netfix.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToTensor
    >>> augment = Compose([ToTensor(), RandomCrop(32, padding=4), RandomHorizontalFlip(),
    ...                    Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))])
    >>> import numpy as np
    >>> augment(np.zeros((32, 32, 3), dtype=np.uint8)).shape
    torch.Size([3, 32, 32])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError, DataTypeError

__all__ = ["ToTensor", "Normalize", "RandomCrop", "RandomHorizontalFlip", "Compose", "pil_to_tensor"]

# Pillow modes that hold one band of 16-bit or 32-bit integers (16-bit PNGs open as one of these)
_WIDE_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def pil_to_tensor(image: Any, channels: int | None = None) -> torch.Tensor:
    """A PIL image as a float32 ``C x H x W`` tensor in [0, 1].

    ``channels=None``: 8-bit grayscale (mode ``"L"`` or ``"1"``) gives 1 channel, 16-bit grayscale (``"I;16"``,
    ``"I"``) 1 channel scaled by 1/65535, a float image (``"F"``) 1 channel as it is, and every other mode
    (RGB, RGBA, palette, CMYK, ...) is converted to RGB: 3 channels (an alpha channel is dropped).
    ``channels=1`` or ``3`` converts every image to grayscale or RGB, so that a folder mixing both gives
    tensors of one shape.

    Example:
        >>> from PIL import Image
        >>> pil_to_tensor(Image.new("L", (4, 2), 255)).shape
        torch.Size([1, 2, 4])
    """
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels: expected None (keep grayscale as 1 channel, everything else as RGB), 1 or 3; "
                          f"got {channels!r}.")
    image = _convert(image, channels)
    mode = image.mode
    a = np.asarray(image)
    if mode == "1":
        out = torch.from_numpy(a.astype(np.float32))
    elif mode in _WIDE_GRAY:
        out = torch.from_numpy(np.clip(a.astype(np.float32), 0.0, 65535.0) / 65535.0)
    elif mode == "F":
        out = torch.from_numpy(a.astype(np.float32))
    else:
        out = torch.from_numpy(a.astype(np.float32) / 255.0)
    return out.unsqueeze(0) if out.ndim == 2 else out.permute(2, 0, 1).contiguous()


def _convert(image: Any, channels: int | None) -> Any:
    """``image`` in the mode :func:`pil_to_tensor` reads: kept as it is for grayscale ("1", "L", 16-bit, "F")
    unless ``channels=3``, RGB for every other mode; all grayscale with ``channels=1``."""
    mode = image.mode
    gray = mode in ("L", "1", "F") + _WIDE_GRAY
    if channels == 1 and not gray:
        return image.convert("L")
    if channels == 3 or (channels is None and not gray):
        if mode == "RGB":
            return image
        if mode in _WIDE_GRAY:  # convert("RGB") would clip 16-bit values at 255: scale them to 8 bits first
            from PIL import Image

            a = np.clip(np.asarray(image).astype(np.float64), 0, 65535) / 257.0
            image = Image.fromarray(np.round(a).astype(np.uint8), mode="L")
        return image.convert("RGB")
    return image


class ToTensor:
    """A PIL image or a numpy array ``H x W`` / ``H x W x C`` as a float32 ``C x H x W`` tensor.

    uint8 arrays are divided by 255, uint16 by 65535, bool gives 0/1 and float arrays keep their values; PIL
    images follow :func:`pil_to_tensor` (grayscale: 1 channel, everything else: RGB). A tensor is refused (its
    layout cannot be told apart): drop ``ToTensor`` from the pipeline for data that is already a tensor.

    Example:
        >>> ToTensor()(np.full((2, 3, 3), 255, dtype=np.uint8)).shape
        torch.Size([3, 2, 3])
    """

    def __init__(self, channels: int | None = None) -> None:
        if channels not in (None, 1, 3):
            raise ConfigError(f"ToTensor(channels=...): expected None, 1 or 3; got {channels!r}.")
        self.channels = channels

    def __call__(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            raise DataTypeError("ToTensor: got a torch.Tensor; it takes a PIL image or an H x W [x C] numpy "
                                "array. Fix: drop ToTensor from the pipeline for data that is already a tensor.")
        if isinstance(image, np.ndarray):
            return self._from_array(image)
        if hasattr(image, "mode") and hasattr(image, "convert"):
            return pil_to_tensor(image, self.channels)
        raise DataTypeError(f"ToTensor: expected a PIL image or a numpy array; got {type(image).__name__}.")

    def _from_array(self, a: np.ndarray) -> torch.Tensor:
        if a.ndim not in (2, 3):
            raise DataError(f"ToTensor: expected an H x W or H x W x C array; got shape {a.shape}. "
                            "Fix: pass one image at a time.")
        if a.dtype == np.uint8:
            t = torch.from_numpy(a.astype(np.float32) / 255.0)
        elif a.dtype == np.uint16:
            t = torch.from_numpy(a.astype(np.float32) / 65535.0)
        elif a.dtype == np.bool_ or a.dtype.kind == "f":
            t = torch.from_numpy(a.astype(np.float32))
        else:
            raise DataTypeError(f"ToTensor: array dtype {a.dtype} is not an image type; expected uint8 (0-255), "
                                "uint16 (0-65535), bool or float. Fix: convert it, e.g. a.astype(np.uint8).")
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
        if self.channels == 1 and t.shape[0] != 1 or self.channels == 3 and t.shape[0] not in (1, 3):
            raise DataError(f"ToTensor(channels={self.channels}): the array has {t.shape[0]} channels.")
        return t.expand(3, -1, -1).contiguous() if self.channels == 3 and t.shape[0] == 1 else t

    def __repr__(self) -> str:
        return "ToTensor()" if self.channels is None else f"ToTensor(channels={self.channels})"


def _floats(value: Any, argument: str) -> tuple[float, ...]:
    seq = (value,) if isinstance(value, numbers.Real) else value
    try:
        out = tuple(float(v) for v in seq)
    except (TypeError, ValueError):
        raise ConfigError(f"{argument}: expected a number or a sequence of numbers (one per channel); "
                          f"got {value!r}.") from None
    if not out:
        raise ConfigError(f"{argument}: expected at least one value; got an empty sequence.")
    if not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{argument}: every value must be finite; got {value!r}.")
    return out


def _check_image(x: Any, who: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise DataTypeError(f"{who}: expected a C x H x W tensor; got {type(x).__name__}. "
                            "Fix: put ToTensor() before it in Compose([...]).")
    if x.ndim < 3:
        raise DataError(f"{who}: expected a C x H x W tensor (or a batch N x C x H x W); got shape "
                        f"{tuple(x.shape)}. Fix: add a channel dimension with x.unsqueeze(0).")
    return x


class Normalize:
    """``(x - mean) / std`` per channel, on a float ``C x H x W`` tensor (or a batch ``N x C x H x W``).

    ``mean`` and ``std``: one number for every channel, or one per channel; every ``std`` must be > 0.

    Example:
        >>> Normalize(0.5, 0.5)(torch.ones(1, 2, 2)).flatten().tolist()
        [1.0, 1.0, 1.0, 1.0]
    """

    def __init__(self, mean: "float | Sequence[float]", std: "float | Sequence[float]") -> None:
        self.mean = _floats(mean, "Normalize(mean=...)")
        self.std = _floats(std, "Normalize(std=...)")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"Normalize(std=...): every std must be > 0 (it divides); got {std!r}.")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ConfigError(f"Normalize: mean has {len(self.mean)} values but std has {len(self.std)}; expected "
                              "one value per channel in both (or a single value for all channels).")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x, "Normalize")
        if not x.dtype.is_floating_point:
            raise DataTypeError(f"Normalize: expected a float tensor; got dtype {x.dtype}. "
                                "Fix: put ToTensor() before Normalize (it scales uint8 pixels to [0, 1]).")
        c = x.shape[-3]
        for name, vals in (("mean", self.mean), ("std", self.std)):
            if len(vals) not in (1, c):
                raise DataError(f"Normalize: the image has {c} channel(s) but {name} has {len(vals)} values. "
                                f"Fix: give {name} one value per channel, or a single value.")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_generator(generator: Any, who: str) -> "torch.Generator | None":
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(f"{who}(generator=...): expected a torch.Generator or None (torch's global generator); "
                          f"got {type(generator).__name__}.")
    return generator


class RandomCrop:
    """A random ``size`` crop, after padding every side with ``padding`` zeros.

    ``size``: an int (square) or ``(height, width)``. Offsets are uniform over every position that fits, drawn
    from ``generator`` (default: torch's global generator).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> RandomCrop(28, padding=2, generator=g)(torch.rand(1, 28, 28)).shape
        torch.Size([1, 28, 28])
    """

    def __init__(self, size: "int | Sequence[int]", padding: int = 0,
                 generator: "torch.Generator | None" = None) -> None:
        pair: Any = (size, size) if _is_int(size) else size
        if (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2
                or not all(_is_int(s) and s > 0 for s in pair)):
            raise ConfigError(f"RandomCrop(size=...): expected a positive int or a pair (height, width) of positive "
                              f"ints; got {size!r}.")
        if not _is_int(padding) or padding < 0:
            raise ConfigError(f"RandomCrop(padding=...): expected an int >= 0 (zeros added on every side); "
                              f"got {padding!r}.")
        self.size = (int(pair[0]), int(pair[1]))
        self.padding = int(padding)
        self.generator = _check_generator(generator, "RandomCrop")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x, "RandomCrop")
        p = self.padding
        if p:
            x = torch.nn.functional.pad(x, (p, p, p, p))
        h, w = int(x.shape[-2]), int(x.shape[-1])
        th, tw = self.size
        if th > h or tw > w:
            raise DataError(f"RandomCrop: the crop {th} x {tw} is larger than the image ({h - 2 * p} x {w - 2 * p}"
                            f"{f', {h} x {w} padded' if p else ''}). Fix: lower size or raise padding.")
        top = int(torch.randint(0, h - th + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, w - tw + 1, (1,), generator=self.generator))
        return x[..., top:top + th, left:left + tw].clone()

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``, drawn from ``generator`` (default: torch's global one).

    Example:
        >>> RandomHorizontalFlip(p=1.0)(torch.tensor([[[1.0, 2.0]]])).tolist()
        [[[2.0, 1.0]]]
    """

    def __init__(self, p: float = 0.5, generator: "torch.Generator | None" = None) -> None:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"RandomHorizontalFlip(p=...): expected a probability in [0, 1]; got {p!r}.")
        self.p: float = float(p)
        self.generator: "torch.Generator | None" = _check_generator(generator, "RandomHorizontalFlip")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x, "RandomHorizontalFlip")
        # always draw, so that the random stream does not depend on p
        flip = float(torch.rand(1, generator=self.generator)) < self.p
        return x.flip(-1) if flip else x.clone()

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply ``transforms`` one after the other.

    Example:
        >>> Compose([ToTensor(), Normalize(0.5, 0.5)])(np.zeros((2, 2), dtype=np.uint8)).flatten().tolist()
        [-1.0, -1.0, -1.0, -1.0]
    """

    def __init__(self, transforms: "Sequence[Callable[[Any], Any]]") -> None:
        if isinstance(transforms, (str, bytes)) or not isinstance(transforms, (list, tuple)):
            raise ConfigError(f"Compose(transforms=...): expected a list of callables; got "
                              f"{type(transforms).__name__}. Fix: Compose([ToTensor(), Normalize(...)]).")
        for i, t in enumerate(transforms):
            if isinstance(t, type):
                raise ConfigError(f"Compose(transforms=...): item {i} is the class {t.__name__}, not a transform; "
                                  f"expected an instance. Fix: write {t.__name__}(...) (note the parentheses).")
            if not callable(t):
                raise ConfigError(f"Compose(transforms=...): item {i} ({t!r}) is not callable; expected transforms "
                                  "such as ToTensor() (note the parentheses).")
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"
