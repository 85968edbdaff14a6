"""Data parallel on torch's DDP: two gloo processes with B/2 images each give the loss and the gradients
of one process with B, for every method (issue 28).

Batch norm runs in eval mode here (its running statistics): torch's SyncBatchNorm, which makes the
batch statistics global under data parallel, needs a GPU. Everything else that spans the batch
(SimCLR's and AMDIM's negatives, Barlow's cross-correlation, the MoCo / CMC queues and CMC's in-batch
negatives) and the augmentation's random draws must be the global batch's.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from selfsup.data.augment import Draws
from selfsup.models import create_backbone
from selfsup.pretrain.methods import create_method, default_backbone, list_methods

B, SEED = 8, 3


def _images() -> torch.Tensor:
    return torch.randn(B, 3, 32, 32, generator=torch.Generator().manual_seed(11), dtype=torch.float64)


def _method(name: str):
    torch.manual_seed(0)
    net = create_method(name, create_backbone(default_backbone(name), width=0.125)).double()
    return net.eval()  # batch norm on its running statistics (SyncBatchNorm needs a GPU)


class _Loss(torch.nn.Module):
    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, x, draws):
        return self.method.loss(x, draws)[0]


def _one_step(name: str, rank: int, world: int) -> dict:
    from selfsup.train import distributed

    method = _method(name)
    step = distributed.wrap(_Loss(method))
    b = B // world
    loss = step(_images()[rank * b : (rank + 1) * b], Draws(torch.Generator().manual_seed(SEED), rank, world))
    loss.backward()  # DDP averages the gradients over the ranks
    return {
        "loss": distributed.mean_across(loss.detach()),
        "grads": {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None},
        "buffers": {n: t.clone() for n, t in method.named_buffers() if "queue" in n},
    }


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ.update(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    from selfsup.train import distributed

    distributed.setup()
    results = {name: _one_step(name, rank, world) for name in list_methods()}
    if rank == 0:
        torch.save(results, out)
    distributed.teardown()


def _spawn(fn, args) -> None:
    """Two spawned ranks on the CPU (gloo), also on a machine with GPUs: CUDA hidden from them."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        mp.start_processes(fn, args=args, nprocs=2, join=True, start_method="spawn")
    finally:
        if hidden is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = hidden


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path_factory.mktemp("ddp") / "rank0.pt")
    _spawn(_worker, (2, port, out))
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("name", list_methods())
def test_two_ranks_of_half_the_batch_give_one_process_loss_and_gradients(name, two_ranks):
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        alone = _one_step(name, 0, 1)
    finally:
        torch.set_default_dtype(default)
    split = two_ranks[name]
    assert torch.allclose(split["loss"], alone["loss"], rtol=1e-9, atol=1e-12), (split["loss"], alone["loss"])
    assert split["grads"].keys() == alone["grads"].keys() and alone["grads"]
    for n, g in alone["grads"].items():
        assert torch.allclose(split["grads"][n], g, rtol=1e-7, atol=1e-10), n
    for n, t in alone["buffers"].items():  # the queues hold every rank's keys, in the order of one process
        assert torch.allclose(split["buffers"][n], t, rtol=1e-9, atol=1e-12), n


class _Killed(Exception):
    pass


def _fit_worker(rank: int, world: int, port: int, mode: str, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ.update(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from pathlib import Path

    from selfsup.pretrain.run import PretrainObjective
    from selfsup.train import distributed
    from selfsup.train.loop import TrainConfig, fit

    distributed.setup()
    torch.manual_seed(0 if mode != "resumed" else 123)  # a resumed run starts from other RNG state
    images = torch.randint(0, 256, (32, 32, 32, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    objective = PretrainObjective(create_method("moco", create_backbone("resnet9", width=0.125)), images)
    cfg = TrainConfig(epochs=3, steps_per_epoch=2, batch_size=8, seed=5)
    ckpt = Path(folder) / "checkpoint.pt"

    def die_after_first_epoch(epoch, logs):
        if mode == "killed" and epoch == 1:
            raise _Killed

    try:
        fit(objective, 32, cfg, on_epoch=die_after_first_epoch, checkpoint=ckpt, resume=mode == "resumed")
        if rank == 0:
            torch.save(objective.module.state_dict(), Path(folder) / f"{mode}.pt")
        assert distributed.in_sync(objective.module)  # parameters and buffers (queues, BN statistics)
    except _Killed:
        pass
    distributed.teardown()


def test_a_killed_two_rank_run_resumes_to_the_same_weights(tmp_path):
    """kill -9 resume stays exact on the gloo path: the checkpoint holds the shared generator's state."""
    for mode, folder in (("straight", tmp_path / "a"), ("killed", tmp_path / "b"), ("resumed", tmp_path / "b")):
        folder.mkdir(exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        _spawn(_fit_worker, (2, port, mode, str(folder)))
    straight = torch.load(tmp_path / "a" / "straight.pt", weights_only=True)
    resumed = torch.load(tmp_path / "b" / "resumed.pt", weights_only=True)
    assert straight.keys() == resumed.keys()
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=0, msg=k)
