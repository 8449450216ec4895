"""Running under PyTorch's own distributed engine: ``torchrun --nproc_per_node N -m netfix …``, or netfix's Python
API inside a user's DistributedDataParallel script.

netfix does not launch processes or invent a protocol. When a ``torch.distributed`` process group is initialised
(by torchrun through :func:`init_from_env`, or by the user), the one training loop every operation reuses
(:func:`netfix.training.fit`) wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel` and draws its
batches from a :class:`~torch.utils.data.DistributedSampler`:

- the batch size a caller gives is the **global** batch: each of the W ranks takes batch_size / W samples per step
  (it must divide), and DDP averages the gradients, so a step is the single-process step on the same samples;
- the sampler's permutation (seeded with the run's seed and the epoch) is the same on every rank, and rank r takes
  every W-th index from r: global batch t is exactly positions t·B … (t+1)·B − 1 of that permutation, which is what a
  single process gets from ``DistributedSampler(num_replicas=1)`` — the basis of the equivalence test;
- DDP broadcasts rank 0's weights and buffers when it wraps the model, so every rank starts — and ends — with the
  same weights;
- metrics are computed by every rank on the full splits (the weights are identical, so are the numbers), and only
  rank 0 writes files, reports and ledger records (:func:`is_main`);
- OGD's memory: each rank computes the per-sample gradients of its contiguous share of the memory samples, and
  :func:`gather_jacobian` concatenates the shares in rank order, so the basis is the single-process one.

Backend: gloo on CPU, nccl on CUDA (:func:`init_from_env`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .errors import ConfigError

__all__ = ["world", "is_distributed", "is_main", "init_from_env", "local_batch_size", "sampler", "wrap",
           "share", "gather_rows", "gather_jacobian", "barrier"]


def world() -> tuple[int, int]:
    """(number of processes, this process's rank); (1, 0) outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return world()[0] > 1


def is_main() -> bool:
    """True on rank 0, or outside a process group: the process that writes files."""
    return world()[1] == 0


def init_from_env(device: "torch.device | str | None" = None) -> bool:
    """Initialise the default process group from torchrun's environment (``WORLD_SIZE`` > 1, ``RANK``,
    ``MASTER_ADDR``…): gloo on CPU, nccl on CUDA; on CUDA each process takes device ``LOCAL_RANK``. Returns whether
    a group of more than one process is up. Does nothing when a group already exists or without torchrun."""
    if not torch.distributed.is_available() or torch.distributed.is_initialized():
        return is_distributed()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return is_distributed()


def local_batch_size(batch_size: int) -> int:
    """This rank's share of a global batch; the global batch must divide evenly."""
    size, _ = world()
    if batch_size % size:
        raise ConfigError(f"batch_size: {batch_size} does not divide over {size} processes; expected a multiple of "
                          f"{size} (it is the global batch: each process takes batch_size / {size}).")
    return batch_size // size


def sampler(data: Any, seed: int) -> "torch.utils.data.DistributedSampler[int]":
    """A shuffling DistributedSampler over ``data`` for this rank, seeded with the run's ``seed`` (its epoch is set
    by the training loop)."""
    from torch.utils.data import DistributedSampler

    size, rank = world()
    return DistributedSampler(data, num_replicas=size, rank=rank, shuffle=True, seed=seed, drop_last=False)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (rank 0's weights broadcast to all); the model itself stays the one
    whose parameters change."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" \
        else None
    return DistributedDataParallel(model, device_ids=ids)


def share(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (the first ranks take one more when it does not divide)."""
    size, rank = world()
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` (rows may differ in number, other dimensions must agree) in rank order."""
    size, _ = world()
    if size == 1:
        return t
    counts = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(size)]
    torch.distributed.all_gather(counts, torch.tensor([t.shape[0]], dtype=torch.long, device=t.device))
    rows = [int(c) for c in counts]
    padded = torch.zeros((max(rows), *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[:t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(size)]
    torch.distributed.all_gather(parts, padded.contiguous())
    return torch.cat([p[:r] for p, r in zip(parts, rows)])


def gather_jacobian(jac: Any) -> Any:
    """A :class:`netfix.gradients.Jacobian` holding every rank's rows in rank order (each block's row-tensors
    gathered; factored linear blocks stay factored)."""
    if not is_distributed():
        return jac
    from .gradients import Jacobian

    out = Jacobian(jac.names, jac.sizes, 0, jac.device, jac.dtype)
    out.dense_blocks = [(names, gather_rows(D)) for names, D in jac.dense_blocks]
    out.linear_blocks = [(w, b, gather_rows(A), gather_rows(D)) for w, b, A, D in jac.linear_blocks]
    blocks = [D for _, D in out.dense_blocks] + [A for _, _, A, _ in out.linear_blocks]
    out.rows = blocks[0].shape[0] if blocks else 0
    return out


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if is_distributed():
        torch.distributed.barrier()
