"""Lazy readers for data kept on disk, as map-style ``torch.utils.data.Dataset`` s of ``(x, label)`` items.

- :class:`ImageFolder`: one sub-folder per class of PNG / JPEG / BMP files, each read with Pillow when its item
  is asked for;
- :class:`CIFARBinary`: the *binary* versions of CIFAR-10 and CIFAR-100 (never the pickled Python version),
  read through ``numpy.memmap``;
- :class:`ArrayDataset`: ``.npy`` files (opened memory-mapped, never unpickled) or in-memory arrays;
- :func:`find` / :func:`cifar_root`: the folder ``$NETFIX_DATA/<name>/`` that holds a data set's files, with an
  error saying which files to put there when they are missing. netfix never downloads anything.

Every reader knows its labels without reading the inputs: ``targets`` (an int64 tensor), ``num_classes`` and
``classes``. Items are ``(float32 tensor, int label)``; a ``transform`` replaces the conversion to a tensor (see
each class for what it receives). Readers hold no open file between items, so they pickle small and work with
``DataLoader(num_workers > 0)`` under both fork and spawn.

Example:
    >>> from torch.utils.data import DataLoader
    >>> from netfix.formats import CIFARBinary, cifar_root
    >>> from netfix.transforms import Compose, RandomCrop, RandomHorizontalFlip, ToTensor
    >>> train = CIFARBinary(cifar_root("cifar10"), train=True,
    ...                     transform=Compose([ToTensor(), RandomCrop(32, padding=4), RandomHorizontalFlip()]))
    >>> x, y = next(iter(DataLoader(train, batch_size=128, shuffle=True)))
    >>> x.shape
    torch.Size([128, 3, 32, 32])

Modules: :mod:`.image_folder`, :mod:`.cifar`, :mod:`.arrays` (one reader each), :mod:`.locate` (where data lives).
"""

from __future__ import annotations

from ._common import MissingDataError, PathLike, Transform  # noqa: F401  # the type aliases, as before
from .arrays import ArrayDataset
from .cifar import CIFARBinary
from .image_folder import ImageFolder
from .locate import cifar_root, data_home, find

__all__ = ["ImageFolder", "CIFARBinary", "ArrayDataset", "MissingDataError", "data_home", "find", "cifar_root"]
