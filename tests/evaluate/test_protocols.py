"""Every task × protocol on tiny real renders; equal steps per budget; transfer columns; bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import selfsup.evaluate.finetune as ft
from selfsup.core.errors import UserError
from selfsup.evaluate.finetune import FinetuneConfig, finetune, train_models
from selfsup.evaluate.probe import probe
from selfsup.evaluate.sweep import Cell, prepare
from selfsup.pretrain.run import PretrainConfig, pretrain

TINY = FinetuneConfig(steps=4, epochs=2, batch_size=8)


def _check(res: pd.DataFrame, metrics: set, protocol: str, budgets=(5, 10)):
    assert set(res.metric) == metrics and set(res.protocol) == {protocol}
    assert set(res.label_budget) == set(budgets)
    assert res.value.between(0, 1).all() or "abs_rel" in metrics


@pytest.mark.parametrize(
    "task,protocol,metrics",
    [
        ("classification", "finetune", {"accuracy"}),
        ("classification", "frozen-2", {"accuracy"}),
        ("pose", "frozen-3", {"accuracy"}),
    ],
)
def test_single_set_protocols(tiny_dataset, tiny_pose, tiny_rotation, tmp_path, task, protocol, metrics):
    res = finetune(
        task,
        tiny_pose if task == "pose" else tiny_dataset,  # pose bins vary only with V on
        tmp_path,
        tiny_rotation,
        budgets=[5, 10],
        seeds=[0],
        protocol=protocol,
        config=TINY,
        progress=False,
    )
    _check(res, metrics, protocol)
    assert set(res.frozen_blocks) == {int(protocol[-1]) if protocol.startswith("frozen") else 0}
    for n in (5, 10):  # the report's confusion matrices: the first seed at the smallest and largest budget
        with np.load(tmp_path / "predictions" / f"n{n}-s0.npz") as z:
            k = 10 if task == "classification" else 5
            assert z["confusion"].shape == (k, k) and str(z["protocol"]) == protocol
            acc = res[(res.label_budget == n) & (res.metric == "accuracy")].value.item()
            assert z["confusion"].trace() / z["confusion"].sum() == pytest.approx(acc)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_frozen_k_freezes_the_stem_and_k_blocks_as_the_paper_does(tiny_dataset, tiny_rotation, k):
    """frozen-k (§6): frozen up to main block k; frozen-3 trains only the two-layer head. The frozen
    weights and BN statistics come out of training bit-identical, everything else moved."""
    sweep = prepare("classification", tiny_dataset, tiny_rotation, [16], [0], "resnet9", 0.125, "rgb")
    [model], _ = train_models(sweep, [Cell(16, 0)], k, "frozen", FinetuneConfig(steps=4, epochs=1, batch_size=8), None)
    before = sweep.pretrained.state_dict()
    blocks = model.backbone.blocks  # stem, block 1, block 2, block 3
    for i, block in enumerate(blocks):
        for name, value in block.state_dict().items():
            same = torch.equal(value, before[f"blocks.{i}.{name}"])
            if i <= k:
                assert same, f"frozen block {i} {name} changed"
            elif name.endswith("weight") and "num_batches" not in name:
                assert not same, f"block {i} {name} did not train"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = sum(p.numel() for p in model.head.parameters())
    later = sum(p.numel() for b in blocks[k + 1 :] for p in b.parameters())
    assert trainable == head + later
    assert [type(m).__name__ for m in model.head] == ["BatchNorm1d", "Linear", "ReLU", "Linear"]  # two FC layers
    if k == 3:
        assert trainable == head and trainable / sum(p.numel() for p in model.parameters()) < 0.1


@pytest.mark.parametrize(
    "task,protocol,metrics",
    [
        ("segmentation", "finetune", {"miou", "object_accuracy", "miou_all", "pixel_accuracy"}),
        ("segmentation", "frozen-1", {"miou", "object_accuracy", "miou_all", "pixel_accuracy"}),
        ("depth", "finetune", {"delta1", "abs_rel", "l1", "delta1_all", "abs_rel_all", "l1_all"}),
    ],
)
def test_dense_tasks_on_the_multi_set(tiny_multi, tiny_rotation, tmp_path, task, protocol, metrics):
    res = finetune(
        task,
        tiny_multi,
        tmp_path,
        tiny_rotation,
        budgets=[5, 10],
        seeds=[0],
        protocol=protocol,
        config=TINY,
        progress=False,
    )
    _check(res, metrics, protocol)
    with np.load(tmp_path / "predictions" / "n10-s0.npz") as z:  # the report's gallery
        images, truth, pred = z["images"], z["truth"], z["pred"]
        assert images.shape[1:] == (64, 64, 3) and truth.shape == pred.shape == (len(images), 8, 8)
        assert str(z["task"]) == task and str(z["method"]) == "rotation"
    # cross-dataset transfer: pretrained on the single set's variant, finetuned on the multi set's
    assert set(res.pretrain_variant) == {"-C--"} and set(res.finetune_variant) == {"-CV-"}


def test_dense_tasks_from_scratch(tiny_multi, tmp_path):
    res = finetune(
        "depth", tiny_multi, tmp_path, None, budgets=[5], seeds=[0, 1], width=0.125, config=TINY, progress=False
    )
    assert set(res.method) == {"scratch"} and set(res.seed) == {0, 1}


@pytest.mark.parametrize(
    "task,protocol,metric,data",
    [
        ("classification", "linear", "accuracy", "tiny_dataset"),
        ("classification", "knn", "accuracy", "tiny_dataset"),
        ("segmentation", "linear", "miou", "tiny_multi"),
        ("depth", "linear", "delta1", "tiny_multi"),
    ],
)
def test_probes(request, tiny_rotation, tmp_path, task, protocol, metric, data):
    res = probe(
        task,
        request.getfixturevalue(data),
        tmp_path,
        tiny_rotation,
        budgets=[5, 10],
        seeds=[0, 1],
        protocol=protocol,
        k=3,
        progress=False,
    )
    assert metric in set(res.metric) and set(res.label_budget) == {5, 10} and len(set(res.seed)) == 2
    assert set(res.protocol) == {"linear" if protocol == "linear" else "knn-cosine"}


def test_every_budget_gets_the_same_number_of_steps(tiny_dataset, tmp_path, monkeypatch):
    seen = []
    real_fit = ft.fit

    def recording_fit(objective, n_items, cfg, **kw):
        seen.append((n_items, cfg.epochs * cfg.steps_per_epoch, cfg.batch_size))
        return real_fit(objective, n_items, cfg, **kw)

    monkeypatch.setattr(ft, "fit", recording_fit)
    finetune(
        "classification",
        tiny_dataset,
        tmp_path,
        None,
        budgets=[3, 10, 30],
        seeds=[0],
        width=0.125,
        config=FinetuneConfig(steps=6, epochs=3, batch_size=8),
        progress=False,
    )
    assert [n for n, _, _ in seen] == [3, 10, 30] and {(s, b) for _, s, b in seen} == {(6, 8)}


def test_scratch_folder_is_training_from_scratch(tiny_dataset, tmp_path):
    pretrain(PretrainConfig("scratch", width=0.125), tiny_dataset, tmp_path / "scratch")
    a = finetune(
        "classification",
        tiny_dataset,
        tmp_path / "a",
        tmp_path / "scratch",
        budgets=[5],
        seeds=[0],
        config=TINY,
        progress=False,
    )
    b = finetune(
        "classification",
        tiny_dataset,
        tmp_path / "b",
        None,
        budgets=[5],
        seeds=[0],
        width=0.125,
        config=TINY,
        progress=False,
    )
    assert set(a.method) == {"scratch"}
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda d, m, r, o: finetune("depth", d, o, None, budgets=[5], seeds=[0], config=TINY), "multi-object"),
        (
            lambda d, m, r, o: finetune(
                "classification", d, o, None, budgets=[5], seeds=[0], protocol="frozen-1", config=TINY
            ),
            "--init",
        ),
        (
            lambda d, m, r, o: finetune("classification", d, o, r, budgets=[5], seeds=[0], bn="sometimes", config=TINY),
            "'sometimes'",
        ),
        (lambda d, m, r, o: probe("depth", m, o, r, budgets=[5], seeds=[0], protocol="knn"), "kNN"),
        (lambda d, m, r, o: probe("classification", d, o, r, budgets=[5], seeds=[0], protocol="svm"), "'svm'"),
        (
            lambda d, m, r, o: probe(
                "classification", d, o, r, budgets=[5], seeds=[0], knn_metric="cityblock", protocol="knn"
            ),
            "'cityblock'",
        ),
        (lambda d, m, r, o: probe("segmentation", m, o, r, budgets=[100000], seeds=[0]), "label budget 100000"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    tiny_dataset, tiny_multi, tiny_rotation, tmp_path, call, needle
):
    with pytest.raises(UserError, match=needle.replace("-", r"\-")):
        call(tiny_dataset, tiny_multi, tiny_rotation, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_linear_evaluation_on_every_labelled_image_is_table_1(tiny_dataset, tiny_rotation, tmp_path):
    from selfsup.data.dataset import load_dataset

    n_train = len(load_dataset(tiny_dataset).split_indices("train"))
    res = probe("classification", tiny_dataset, tmp_path, tiny_rotation, [5], [0, 1], all_labels=True, progress=False)
    assert set(res.label_budget) == {5, n_train}
    # every seed draws its own 5 labels; on the whole split there is one subset, so one seed runs
    cells = [json.loads(f.read_text()) for f in (tmp_path / "cells").glob("*.json")]
    assert sorted((c["label_budget"], c["seed"]) for c in cells) == [(5, 0), (5, 1), (n_train, 0)]
