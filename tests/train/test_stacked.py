"""Stacked sweeps: cells trained together as one module train as each would alone."""

from __future__ import annotations

import pytest
import torch

from selfsup.evaluate.finetune import FinetuneConfig, finetune, train_models
from selfsup.evaluate.sweep import Cell, prepare
from selfsup.train.stacked import StackedModels

CELLS = [Cell(16, 0), Cell(40, 1), Cell(16, 2)]  # different budgets and seeds: different subsets and draws


@pytest.fixture()
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # rounding differences of the grouped kernels stay ~1e-15
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("protocol_frozen, bn", [(0, "train"), (2, "frozen")])
def test_stacked_cells_train_exactly_like_cells_alone(tiny_dataset, tiny_rotation, float64, protocol_frozen, bn):
    init = tiny_rotation if protocol_frozen else None
    sweep = prepare("classification", tiny_dataset, init, [16, 40], [0, 1, 2], "resnet9", 0.125, "rgb")
    cfg = FinetuneConfig(steps=6, epochs=2, batch_size=8)
    together, logs = train_models(sweep, CELLS, protocol_frozen, bn, cfg, None)
    alone = [train_models(sweep, [cell], protocol_frozen, bn, cfg, None)[0][0] for cell in CELLS]
    for a, b in zip(together, alone):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:  # every weight and every batch-norm statistic
            torch.testing.assert_close(sa[name], sb[name], rtol=1e-9, atol=1e-9, msg=name)
    assert not torch.equal(together[0].head[-1].weight, together[2].head[-1].weight)  # the replicas really differ
    if protocol_frozen:  # frozen stages kept the pretrained weights in the stack too
        frozen_before = sweep.pretrained.blocks[0][0].weight
        assert all(torch.equal(m.backbone.blocks[0][0].weight, frozen_before) for m in together)
    assert [len(h) for h in logs] == [2, 2, 2] and all("val_accuracy" in h[-1] for h in logs)


def test_unstack_round_trips_the_replicas():
    models = [torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)) for _ in range(3)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    stacked = StackedModels(models)
    stacked.train()
    out = stacked(torch.randn(3, 5, 3))
    assert out.shape == (3, 5, 2)
    after = stacked.unstack()
    for m, b in zip(after, before):  # a training-mode forward moved each replica's running statistics
        assert not torch.equal(m[1].running_mean, b["1.running_mean"])
        torch.testing.assert_close(m[0].weight, b["0.weight"])


def test_a_stacked_sweep_writes_the_same_results_file(tiny_dataset, tmp_path):
    cfg = FinetuneConfig(steps=4, epochs=1, batch_size=8)
    kw = dict(budgets=[16, 40], seeds=[0, 1], config=cfg, progress=False, width=0.125)
    seq = finetune("classification", tiny_dataset, tmp_path / "seq", stack=1, **kw)
    stk = finetune("classification", tiny_dataset, tmp_path / "stk", stack=3, **kw)
    assert len(list((tmp_path / "stk" / "cells").glob("*.json"))) == 4  # groups of 3 and 1
    assert list(seq.columns) == list(stk.columns) and len(seq) == len(stk)
    torch.testing.assert_close(
        torch.tensor(seq["value"].to_numpy()), torch.tensor(stk["value"].to_numpy()), atol=0.1, rtol=0
    )  # float32: the same cells up to rounding amplified by 4 steps (a few test images at most)


def test_a_stacked_forward_and_backward_run_in_bf16_under_autocast():
    """Stacking is the GPU default and the GPU trains under bf16 autocast: autocast does not reach inside
    vmap, so the stacked forward casts explicitly (issue 28); batch norm computes in fp32, the output
    and the gradients are fp32. Checked on the CPU, where bf16 autocast runs too."""
    from selfsup.evaluate.finetune import SupervisedModel
    from selfsup.evaluate.tasks import get_task
    from selfsup.models import create_backbone

    task = get_task("classification")
    torch.manual_seed(0)
    models = []
    for _ in range(3):
        net = create_backbone("resnet9", width=0.125)
        models.append(SupervisedModel(net, task.head(net.out_dim)))
    stacked = StackedModels(models).train()
    x = torch.randn(3, 8, 3, 32, 32)
    y = torch.randint(0, 10, (3, 8))
    full = stacked(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = stacked(x)
        loss = sum(task.loss(o, t) for o, t in zip(mixed, y))
    loss.backward()
    assert mixed.dtype == torch.float32
    err = (mixed - full).abs().max() / full.abs().max()
    assert 0 < err < 0.15, err  # bf16 really ran (not silently fp32), and close to the fp32 forward
    grads = [p.grad for p in stacked.stacked_params if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    buffers = [b for b in stacked.buffers() if b.is_floating_point()]
    assert all(b.dtype == torch.float32 for b in buffers)  # running statistics stay fp32
