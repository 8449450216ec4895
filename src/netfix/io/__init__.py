"""Model files: one ``NAME.safetensors`` holding the weights and buffers *and* netfix's metadata (JSON in the
safetensors header's ``__metadata__``), so one rename publishes a model and a reader never sees a mismatched pair.

Loading trusts nothing the file says:

- **No code runs because a file names it.** The file names an architecture *registered in code*
  (:func:`netfix.models.register`, the ``netfix.architectures`` entry-point group, or netfix's own); or the caller
  passes the module to fill (``load(path, model=my_module)``). Files of the old two-file format that name a
  ``module:function`` factory load only with ``trust_factory=True`` in code. Nothing is unpickled.
- **Nothing large is allocated before it is checked.** The header is read and bounded first (its size, every
  tensor's dtype, shape and offsets within the file); the architecture is built on PyTorch's ``meta`` device and
  its tensors compared with the header's names and shapes before the real model is allocated, so a small file
  cannot ask for a huge model.
- **The weights are checked.** The header records the sha256 of the tensor data; a file without it, or whose data
  does not match it, is refused.

Writes are atomic (a fsynced temporary file beside the target, then one rename), concurrent writers to one path
never fail (the last rename wins), and temporary files left by killed writers are removed by the next write to the
same path. The old format (``NAME.safetensors`` + ``NAME.json`` sidecar) is still read, with the same refusals.

The package, one module per step: :mod:`.write` (serialize, save, publish), :mod:`.read` (load, read_model,
read_meta, file_ref), :mod:`.header` (the format and its checks), :mod:`.rebuild` (building the architecture a
file names) and :mod:`.atomic` (atomic writes, staging, file hashes).
"""

from .atomic import atomic_write, clean_stale, file_sha256, replace_staged, stage
from .header import FORMAT, FORMAT_VERSION, model_file  # noqa: F401
from .read import LoadedModel, file_ref, load, read_meta, read_model
from .write import Serialized, publish, save, serialize, weights_sha256  # noqa: F401

__all__ = ["save", "load", "read_meta", "read_model", "file_ref", "serialize", "publish", "atomic_write",
           "stage", "replace_staged", "file_sha256", "model_file", "clean_stale", "LoadedModel", "Serialized"]
