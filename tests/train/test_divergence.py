"""Divergence, defined once in the training loop: a run that blows up stops with one line naming the run
or cell, the epoch and the learning rate, and leaves nothing behind (no result row, no backbone, no
checkpoint, no registry version; in Optuna a pruned trial, never the best)."""

from __future__ import annotations

import json
import math

import mlflow
import pytest
import torch
from torch import nn

from selfsup.core.errors import Diverged
from selfsup.train.loop import DIVERGENCE_FACTOR, TrainConfig, diverged, fit


def test_the_rule_at_its_edges():
    assert diverged(float("nan"), 2.0) == "the loss is nan"
    assert diverged(float("inf"), 2.0) == "the loss is inf"
    assert diverged(DIVERGENCE_FACTOR * 2.0, 2.0) is None  # at the factor: not yet
    assert "over 10× the first step's 2" in diverged(DIVERGENCE_FACTOR * 2.0 * 1.01, 2.0)
    assert diverged(0.0, 2.0) is None and diverged(3.0, 2.0) is None  # a loss that rises a little is no blow-up
    # a start near 0 (a nearly solved batch, CMC's empty queue) is taken as 1: 10 is the line
    assert diverged(9.0, 0.0) is None and diverged(9.9, 0.2) is None
    assert "over 10× the first step's 0.2" in diverged(10.5, 0.2)


class _Toy:
    """A least-squares fit whose lr decides: small, it converges; large, it blows up (AdamW's step is
    about lr per parameter, so w grows by ~lr every step and the loss by ~lr²)."""

    def __init__(self, replicas: int = 0, blow: int | None = None):
        self.module = nn.Linear(4, 1)
        self.replicas, self.blow = replicas, blow
        self.x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def loss(self, idx, generator):
        if not self.replicas:
            return ((self.module(self.x[idx]) - self.y[idx]) ** 2).mean(), {}
        losses = [((self.module(self.x[i]) - self.y[i]) ** 2).mean() for i in idx]
        self.calls = getattr(self, "calls", 0) + 1
        if self.blow is not None:  # replica `blow` reports a loss that grows with every step: it alone diverges
            losses[self.blow] = torch.tensor(1.0 + self.calls**2)
        return torch.stack(losses), {}


def test_fit_stops_a_run_that_blows_up_and_deletes_its_checkpoint(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    cfg = TrainConfig(epochs=4, steps_per_epoch=8, batch_size=16, lr=1e-2, warmup_epochs=0)
    fit(_Toy(), 64, cfg, checkpoint=ckpt)  # a sane lr: it trains to the end
    assert ckpt.is_file()
    ckpt.unlink()
    epochs = []
    with pytest.raises(Diverged, match=r"training diverged in epoch 1 of 4 with lr 100: .*lower the learning rate"):
        fit(_Toy(), 64, TrainConfig(**{**cfg.__dict__, "lr": 100.0}), lambda e, _: epochs.append(e), ckpt)
    assert epochs == [] and not ckpt.exists()  # never validated, never checkpointed


def test_a_stacked_run_names_the_replica_that_diverged():
    cfg = TrainConfig(epochs=3, steps_per_epoch=8, batch_size=16, lr=0.5, warmup_epochs=0)
    fit(_Toy(replicas=3), [64] * 3, cfg, replica_seeds=[0, 1, 2])  # no replica blows up
    with pytest.raises(Diverged) as e:
        fit(_Toy(replicas=3, blow=1), [64] * 3, cfg, replica_seeds=[0, 1, 2])
    assert e.value.replica == 1


def test_a_diverged_pretraining_keeps_no_backbone_checkpoint_or_registry_version(tiny_dataset, tmp_path):
    from selfsup.pretrain.run import PretrainConfig, pretrain

    out = tmp_path / "vae"
    cfg = PretrainConfig("vae", width=0.125, epochs=2, batch_size=8, lr=1000.0)
    with pytest.raises(Diverged, match=rf"pretrain vae → '{out}': training diverged in epoch 1 of 2 with lr 1000"):
        pretrain(cfg, tiny_dataset, out, progress=False)
    assert [p.name for p in out.iterdir()] == []
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("selfsup").experiment_id], "tags.stage = 'pretrain' and tags.method = 'vae'"
    )
    assert runs and runs[0].info.status == "FAILED" and "diverged in epoch 1" in runs[0].data.tags["diverged"]
    assert client.search_model_versions("name = 'selfsup-single-resnet9-vae'") == []
    # the same settings at a sane lr train and register
    meta = pretrain(PretrainConfig("vae", width=0.125, epochs=1, batch_size=8), tiny_dataset, out, progress=False)
    assert math.isfinite(meta["final_loss"]) and meta["model_uri"].endswith("/1")


def test_a_diverged_finetune_cell_writes_no_row_and_no_cell(tiny_dataset, tmp_path):
    from selfsup.evaluate.finetune import FinetuneConfig, finetune

    out = tmp_path / "ft"
    cfg = FinetuneConfig(steps=8, epochs=2, batch_size=8, lr=1000.0)
    with pytest.raises(Diverged, match=r"scratch/classification cell n=8, seed 1: training diverged in epoch 1"):
        finetune("classification", tiny_dataset, out, budgets=[8], seeds=[1], width=0.125, config=cfg, progress=False)
    assert not (out / "results.csv").exists() and list((out / "cells").iterdir()) == []


def test_an_optuna_trial_that_diverges_is_pruned_and_never_best(tiny_dataset, tiny_rotation, tmp_path, monkeypatch):
    import optuna

    from selfsup.evaluate import tune as tune_module
    from selfsup.evaluate.finetune import FinetuneConfig

    # learning rates from sane to absurd: TPE's first (random) trials land on both sides
    monkeypatch.setitem(tune_module.SPACE, "lr", (1e-3, 1e3))
    cfg = FinetuneConfig(steps=8, epochs=2, batch_size=8)
    best = tune_module.tune(
        "classification", tiny_dataset, tmp_path / "tu", tiny_rotation, budget=8, trials=6, config=cfg, progress=False
    )
    study = optuna.load_study(study_name=best["study"], storage=f"sqlite:///{tmp_path / 'tu' / 'optuna.db'}")
    trials = [t for t in study.trials if t.number < 6]
    bad = [t for t in trials if "diverged" in t.user_attrs]
    good = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert bad and good, [(t.params["lr"], t.state) for t in trials]
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in bad)
    assert all("training diverged" in t.user_attrs["diverged"] for t in bad)
    assert best["params"]["lr"] in [t.params["lr"] for t in good]
    assert best["trial_states"]["diverged"] == len(bad)
    assert json.loads((tmp_path / "tu" / "best_params.json").read_text())["trial_states"]["diverged"] == len(bad)
