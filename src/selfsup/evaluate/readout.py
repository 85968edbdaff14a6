"""Factor read-out: what a frozen backbone keeps of each scene factor the dataset records.

From the pooled features of a frozen backbone (eval mode, no augmentation), one linear probe per
factor of a single-object dataset's ``labels.parquet``, fitted on every train image, its penalty
picked on val, scored on test:

- categorical factors (``class``, ``pose_bin``, ``texture``): multinomial logistic regression, scored
  by accuracy against the majority class's accuracy (chance);
- continuous factors (``euler`` angles, ``light`` position, object ``hue``): ridge regression on
  standardised targets, scored by R² (chance: 0, what predicting the train mean scores). Angles enter
  as their sine and cosine (a hue of 0.99 is next to 0.01), and a factor's R² pools its columns.

A factor the variant holds constant (the light with L off) has nothing to read out: its row says
``constant`` and carries no score; one an imported folder does not record (all but the class) says
``not recorded``. A ``scratch`` folder reads out a randomly initialised backbone (seed
0): the floor that pretraining should rise above.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from selfsup.core import checks, tracking
from selfsup.core.defaults import READOUT_FILE
from selfsup.core.errors import UserError
from selfsup.core.provenance import atomic_write_text
from selfsup.data.dataset import load_dataset
from selfsup.evaluate.probe import ALPHA_GRID, C_GRID, features, fit_logistic, fit_ridge
from selfsup.pretrain.checkpoint import load_pretrained, resolve_init
from selfsup.train.loop import default_device


@dataclass(frozen=True)
class Factor:
    name: str
    kind: str  # classify | regress
    columns: tuple[str, ...]  # the label columns it reads
    values: Callable[[pd.DataFrame], np.ndarray]  # (N,) class ids or (N, D) real targets
    about: str


def _codes(column: str) -> Callable[[pd.DataFrame], np.ndarray]:
    return lambda labels: pd.factorize(labels[column].astype(str), sort=True)[0]


def _angles(*columns: str) -> Callable[[pd.DataFrame], np.ndarray]:
    def values(labels: pd.DataFrame) -> np.ndarray:
        a = labels[list(columns)].to_numpy(dtype=np.float64)
        return np.concatenate([np.sin(a), np.cos(a)], axis=1)

    return values


EULER = ("euler_x", "euler_y", "euler_z")
RGB = ("object_r", "object_g", "object_b")


def _hue(labels: pd.DataFrame) -> np.ndarray:
    rgb = labels[list(RGB)].to_numpy(dtype=np.float64)
    h = np.array([colorsys.rgb_to_hsv(*np.clip(c, 0, 1))[0] for c in rgb]) * 2 * np.pi
    return np.stack([np.sin(h), np.cos(h)], axis=1)


FACTORS = (
    Factor("class", "classify", ("class_id",), lambda labels: labels["class_id"].to_numpy(), "object class (10)"),
    Factor("pose_bin", "classify", ("pose_bin",), lambda labels: labels["pose_bin"].to_numpy(), "pose bin (5)"),
    Factor("euler", "regress", EULER, _angles(*EULER), "object Euler angles (V)"),
    Factor("light", "regress", ("light_angle",), _angles("light_angle"), "light position on its circle (L)"),
    Factor("hue", "regress", RGB, _hue, "object colour hue (C)"),
    Factor("texture", "classify", ("object_texture",), _codes("object_texture"), "object texture id (T)"),
)


def r2(pred: torch.Tensor, y: torch.Tensor, mean: torch.Tensor) -> float:
    """1 − SSE / SST pooled over the target columns, SST about the *train* mean (so a constant
    prediction of the train mean scores ≈ 0 on any split)."""
    return float(1 - ((pred - y) ** 2).sum() / ((y - mean) ** 2).sum().clamp_min(1e-12))


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def read_out(factor: Factor, feats: dict[str, torch.Tensor], targets: dict[str, np.ndarray]) -> dict:
    """Fit ``factor``'s probe on train features, pick its penalty on val, score it on test."""
    y = {s: torch.as_tensor(np.asarray(v)) for s, v in targets.items()}
    x_tr, x_va, x_te = _standardise(feats["train"].double(), feats["val"].double(), feats["test"].double())
    if factor.kind == "classify":
        y = {s: v.long() for s, v in y.items()}
        if len(torch.unique(y["train"])) < 2:
            return {"status": "constant"}
        classes = int(max(int(v.max()) for v in y.values())) + 1
        fits = [fit_logistic(x_tr, y["train"], classes, c) for c in C_GRID]

        def acc(p, x, t):
            return float(((x @ p[0].t() + p[1]).argmax(1) == t).double().mean())

        best = max(fits, key=lambda p: acc(p, x_va, y["val"]))
        major = int(torch.bincount(y["train"]).argmax())
        return {
            "status": "ok",
            "metric": "accuracy",
            "value": acc(best, x_te, y["test"]),
            "chance": float((y["test"] == major).double().mean()),
        }
    y = {s: v.double().reshape(len(v), -1) for s, v in y.items()}
    if float(y["train"].std(0).max()) < 1e-9:
        return {"status": "constant"}
    mean = y["train"].mean(0)
    fits = [[fit_ridge(x_tr, y["train"][:, j], a) for j in range(y["train"].shape[1])] for a in ALPHA_GRID]

    def predict(cols, x):
        return torch.stack([x @ w + b for w, b in cols], dim=1)

    best = max(fits, key=lambda cols: r2(predict(cols, x_va), y["val"], mean))
    return {"status": "ok", "metric": "r2", "value": r2(predict(best, x_te), y["test"], mean), "chance": 0.0}


def readout(data: str | Path, init: str | Path, out: str | Path, verify: bool = False) -> pd.DataFrame:
    """Read every recorded factor out of the frozen backbone in ``init`` on dataset ``data``; writes and
    returns ``OUT/readout.csv`` (method, factor, kind, metric, value, chance, status and context)."""
    out = checks.output_folder(out)
    tracking.check_store()
    ds = load_dataset(data, verify=verify)
    if ds.set_name != "single":
        raise UserError(f"factor read-out reads single-object datasets; {str(data)!r} is a {ds.set_name}-object one")
    ds.require_splits("train", "val", "test")
    backbone, meta = load_pretrained(resolve_init(init))
    if backbone is None:  # a scratch folder: a random backbone as the floor
        from selfsup.models import create_backbone

        torch.manual_seed(0)
        backbone = create_backbone(meta["backbone"], width=meta["width"], colour=meta.get("colour", "rgb"))
    device = default_device()
    backbone = backbone.to(device)
    split = {s: ds.split_indices(s) for s in ("train", "val", "test")}
    feats = {s: features(backbone, ds.images[idx], False, device, 512) for s, idx in split.items()}
    missing = [c for f in FACTORS for c in f.columns if c not in ds.labels.columns]
    imported = "labels" in ds.manifest  # an imported folder records its class only: the rest is not recorded
    if missing and not imported:
        raise UserError(f"dataset folder {str(data)!r}: labels.parquet lacks factor column(s) {', '.join(missing)}")
    rows = []
    with tracking.run(
        "readout",
        {"init": str(init), "data": str(data), "method": meta["method"]},
        ds,
        tags={"method": meta["method"]},
        run_name=f"readout-{meta['method']}",
    ):
        for f in FACTORS:
            if (imported and f.name != "class") or any(c not in ds.labels.columns for c in f.columns):
                res = {"status": "not recorded"}
            else:
                values = f.values(ds.labels)
                res = read_out(f, feats, {s: values[idx] for s, idx in split.items()})
            rows.append(
                {
                    "method": meta["method"],
                    "factor": f.name,
                    "kind": f.kind,
                    "metric": res.get("metric", ""),
                    "value": res.get("value", np.nan),
                    "chance": res.get("chance", np.nan),
                    "status": res["status"],
                    "about": f.about,
                    "n_train": len(split["train"]),
                    "n_test": len(split["test"]),
                    "backbone": meta["backbone"],
                    "width": meta["width"],
                    "variant": ds.variant,
                    "dataset_hash": ds.dataset_hash,
                }
            )
            if res["status"] == "ok":
                tracking.log_metrics({f"{f.name}_{res['metric']}": res["value"]})
        table = pd.DataFrame(rows)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / READOUT_FILE, table.to_csv(index=False))
        tracking.log_artifact(out / READOUT_FILE)
    return table
