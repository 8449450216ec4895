"""Training and OGD unlearning under DistributedDataParallel (issue 10): two CPU processes (gloo) must end with the
weights one process gets with the same global batches."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch.utils.data import DistributedSampler

import netfix
from netfix import distributed

N = 640  # divisible by the global batch and by 2 processes: no padding in the DistributedSampler


def _setup():
    train, test = netfix.datasets.load("digits")
    train = train.subset(torch.arange(N), "digits/640")
    s = netfix.scenarios.random_forget(train, test, fraction=0.1, seed=0)  # 64 samples: 2 global batches of 32
    model = netfix.models.build("mlp", train.input_shape, 10, hidden=(32,), seed=0)
    return s, model


def _run(s, model):
    """Train, then unlearn the mislabel with OGD: the two operations the equivalence covers."""
    trained = netfix.train(model, s.train, epochs=3, lr=3e-3, batch_size=64, seed=0, device="cpu",
                           progress=False).model
    # gradient ascent: the random-label objective draws labels per (local) batch, which no two layouts share
    forgot = netfix.unlearn(trained, s.forget, s.retain, method="ogd", seed=0, device="cpu", progress=False,
                            batch_size=32, memory_size=60, objective="ascent").model
    tensors = {f"train.{k}": v.detach().clone().contiguous() for k, v in trained.state_dict().items()}
    tensors.update({f"ogd.{k}": v.detach().clone().contiguous() for k, v in forgot.state_dict().items()})
    return tensors


def _work(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    tensors = _run(*_setup())
    for v in tensors.values():  # every rank ends with the same weights
        other = [torch.empty_like(v) for _ in range(world)]
        torch.distributed.all_gather(other, v)
        assert all(torch.equal(o, other[0]) for o in other)
    if rank == 0:
        save_file(tensors, os.path.join(out_dir, f"world{world}.safetensors"))
    torch.distributed.barrier()  # nobody tears the group down while another rank still uses it
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    mp.spawn(_work, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    two = load_file(str(tmp_path / "world2.safetensors"))
    # one process drawing the same global batches: the permutation a DistributedSampler of one replica draws
    monkeypatch.setattr(netfix.training, "RandomSampler", lambda data, generator: DistributedSampler(
        data, num_replicas=1, rank=0, shuffle=True, seed=generator.initial_seed()))
    one = _run(*_setup())
    assert set(one) == set(two) and not torch.equal(one["ogd.fc.weight"], one["train.fc.weight"])  # ogd took steps
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_helpers_outside_a_process_group():
    assert distributed.world() == (1, 0) and distributed.is_main() and not distributed.is_distributed()
    assert distributed.local_batch_size(7) == 7 and distributed.share(10) == slice(0, 10)
    assert distributed.init_from_env() is False  # no torchrun environment: nothing to join
    t = torch.ones(3, 2)
    assert distributed.gather_rows(t) is t


@pytest.mark.timeout(300)
def test_scale_bench_measures_one_point_in_two_processes():
    from netfix.bench import scale

    res = scale.measure({"data": "digits", "n_train": 640, "n_forget": 64, "device": "cpu"}, 2)
    assert set(res) == {"ogd", "ogd-fixed", "retrain"}
    assert all(r["seconds"] > 0 and r["peak_mb"] >= 0 for r in res.values())
    assert all(0 < r["method_seconds"] <= r["seconds"] for r in res.values())  # the method's part of the call
    assert all(r["steps"] >= 1 and r["ms_per_step"] > 0 for r in res.values())
    # retrain: epochs × ⌈retained / global batch⌉ steps in each process (each takes half of every global batch)
    assert res["retrain"]["steps"] == scale.RETRAIN_EPOCHS * math.ceil((640 - 64) / scale.BATCH)
