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
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    from selfsup.train import distributed

    distributed.setup()
    results = {name: _one_step(name, rank, world) for name in list_methods()}
    if rank == 0:
        torch.save(results, out)
    distributed.teardown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path_factory.mktemp("ddp") / "rank0.pt")
    mp.start_processes(_worker, args=(2, port, out), nprocs=2, join=True, start_method="spawn")
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
