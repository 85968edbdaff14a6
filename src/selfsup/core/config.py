"""The config schema: one typed definition per section of ``params.yaml``, whose defaults are the
default study's (``profiles/default.yaml`` is empty: the default is this file). The CLI's and
MLproject's defaults come from it (``tests/pipeline/test_config.py`` makes them agree); a profile holds
only its differences from it; :func:`parse` validates a params file once, against :mod:`checks`'s
limits, and parses its budgets and seeds once into ``tuple[int, ...]``.

Plain dataclasses (no torch, no I/O): every layer may import it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields

from selfsup.core import checks
from selfsup.core.errors import UserError

SCRATCH = "scratch"


def _doc(default, doc: str, **kw):
    return field(default=default, metadata={"doc": doc, **kw})


def _list(default: tuple, doc: str, **kw):
    return field(default_factory=lambda: tuple(default), metadata={"doc": doc, **kw})


@dataclass(frozen=True)
class Dataset:
    """One rendered dataset (``datasets.NAME``): ``render@NAME`` writes ``data/NAME``."""

    set: str = _doc("single", "single (one object) or multi (four objects, dense labels)")
    variant: str = _doc("TC--", "T C V L; '-' = the easy version (V on: pose is a real task)")
    count: int = _doc(1500, "images (train/val/test ≈ 70/15/15 %)", limit="count")
    resolution: int = _doc(32, "pixels a side", limit="resolution")


@dataclass(frozen=True)
class Import:
    """One dataset imported from real images (``imports.NAME``): ``import@NAME`` writes ``data/NAME``."""

    source: str = _doc("imagefolder", "imagefolder (one sub-folder per class) or csv (path,label[,group])")
    path: str = _doc("", "the image folder or manifest CSV (a DVC dependency: a changed folder re-imports)")
    resolution: int = _doc(64, "pixels a side after resizing", limit="resolution")
    fit: str = _doc("crop", "crop (fill the square) or pad (fit it, black borders)")
    seed: int = _doc(0, "seed of the stratified train/val/test split", limit="seed")


@dataclass(frozen=True)
class Render:
    """Settings shared by every dataset's render."""

    seed: int = _doc(0, "scene sampling seed", limit="seed")
    workers: int = _doc(1, "render processes (each with its own Blender)", limit="workers")
    samples: int = _doc(16, "Cycles samples per pixel", limit="samples")
    denoise: str = _doc("none", "none, fast or accurate: OpenImageDenoise (albedo and normal guides)")


@dataclass(frozen=True)
class Study:
    """What the study crosses: every dataset × backbone × init."""

    inits: tuple[str, ...] = _list(
        (SCRATCH, "rotation", "simclr"), "scratch = the baseline; others: any method of `selfsup pretrain --help`"
    )
    backbones: tuple[str, ...] = _list(("resnet9",), "resnet9 and/or resnet50 (cmc trains the split version)")
    single: tuple[str, ...] = _list(("single",), "single-object datasets: classification/pose/probes")
    multi: tuple[str, ...] = _list((), "multi-object datasets: segmentation/depth")


@dataclass(frozen=True)
class Pretrain:
    """Pretraining on each dataset of the set (its train split, no labels): `selfsup pretrain`."""

    width: float = _doc(0.125, "× 64-128-256-512 channels", limit="width")
    colour: str = _doc("rgb", "network input: rgb or lab (the paper's choice)")
    epochs: int = _doc(40, "passes over the train split", limit="epochs")
    batch_size: int = _doc(128, "images per step", limit="batch size")
    lr: float = _doc(0.002, "peak learning rate (AdamW, one epoch of warm-up, then the schedule)", limit="lr")
    schedule: str = _doc("cosine", "after one warm-up epoch: cosine or linear (the paper's)")
    seed: int = _doc(0, "initialisation, batches and augmentation", limit="seed")


@dataclass(frozen=True)
class Finetune:
    """Tasks on each dataset of the set, from every init: `selfsup tune`, then `selfsup finetune`."""

    tasks: tuple[str, ...] = _list(
        ("classification",), "single: classification, pose (a variant with V on); multi: segmentation, depth"
    )
    budgets: tuple[int, ...] = _list(
        (10, 20, 40, 80, 160, 320),
        "labelled images; two-fold apart: log interpolation stays unbiased",
        limit="label budget",
    )
    seeds: tuple[int, ...] = _list((0, 1, 2, 3, 4), "each draws its own nested label subsets", limit="seed")
    steps: int = _doc(600, "optimisation steps per cell, the same for every budget and init", limit="steps")
    epochs: int = _doc(2, "validation points per cell", limit="epochs")
    batch_size: int = _doc(32, "images per step", limit="batch size")
    lr: float = _doc(0.002, "used as is when tune_trials is 0", limit="lr")
    tune_trials: int = _doc(0, "Optuna trials per init × task (the same for scratch and every method)", limit="trials")
    tune_budget: int = _doc(40, "the label budget trials train on", limit="budget")


@dataclass(frozen=True)
class Frozen:
    """Fig. 8: frozen-k finetuning (the stem and k main blocks frozen) of these methods."""

    methods: tuple[str, ...] = _list((), "any of study.inits (not scratch)")
    tasks: tuple[str, ...] = _list(("classification",), "of finetune_single.tasks")
    protocols: tuple[str, ...] = _list(("frozen-1", "frozen-2", "frozen-3"), "frozen-1, frozen-2 and/or frozen-3")


@dataclass(frozen=True)
class Transfer:
    """Fig. 9: backbones pretrained on one single-object set, finetuned on another."""

    pairs: tuple[dict, ...] = _list((), "e.g. {pretrain: single_a, finetune: single_b}, both in study.single")
    inits: tuple[str, ...] = _list(("rotation",), "of study.inits")
    tasks: tuple[str, ...] = _list(("classification",), "of finetune_single.tasks")


@dataclass(frozen=True)
class Probe:
    """Probes of the frozen pretrained backbones on the single-object sets, at finetune_single's budgets."""

    methods: tuple[str, ...] = _list(("rotation", "simclr"), "of study.inits (not scratch)")
    protocols: tuple[str, ...] = _list(("linear", "knn"), "linear and/or knn")
    task: str = _doc("classification", "the task probed")
    knn_metric: str = _doc("cosine", "kNN distance: cosine or euclidean")
    k: int = _doc(20, "neighbours of the kNN probe", limit="k")


@dataclass(frozen=True)
class Report:
    interpolation: str = _doc("log", "interpolate the scratch curve in log n or linear n")
    bootstrap: int = _doc(
        1000, "draws behind each studentised utility interval (none below 3 seeds)", limit="bootstrap"
    )


def _default_datasets() -> dict[str, Dataset]:
    return {"single": Dataset()}


def _sec(factory, doc: str):
    return field(default_factory=factory, metadata={"doc": doc})


@dataclass(frozen=True)
class Params:
    """The whole of ``params.yaml``."""

    datasets: dict[str, Dataset] = _sec(_default_datasets, "one render stage per entry (render@NAME → data/NAME)")
    imports: dict[str, Import] = _sec(dict, "one import stage per folder of real images (import@NAME → data/NAME)")
    render: Render = _sec(Render, "settings shared by every dataset")
    study: Study = _sec(Study, "what the study crosses: every dataset × backbone × init")
    pretrain_single: Pretrain = _sec(Pretrain, "pretraining on each dataset of study.single (train split, no labels)")
    pretrain_multi: Pretrain = _sec(lambda: Pretrain(epochs=20, batch_size=32), "the same on study.multi")
    finetune_single: Finetune = _sec(Finetune, "tasks on each dataset of study.single, from every init")
    finetune_multi: Finetune = _sec(
        lambda: Finetune(
            tasks=("segmentation", "depth"),
            budgets=(20, 200),
            seeds=(0, 1, 2),
            steps=100,
            batch_size=16,
            tune_budget=60,
        ),
        "dense tasks on each dataset of study.multi (label maps at 1/8 of the side)",
    )
    frozen: Frozen = _sec(Frozen, "Fig. 8: frozen-k finetuning (the stem and k main blocks frozen)")
    transfer: Transfer = _sec(Transfer, "Fig. 9: pretrained on one single-object set, finetuned on another")
    probe: Probe = _sec(Probe, "probes of the frozen backbones on study.single, at finetune_single's budgets")
    report: Report = _sec(Report, "the utility and its intervals")


SECTIONS = {f.name: f for f in fields(Params)}

# ---------------------------------------------------------------- parsing


def _typed(value, hint, where: str, limit: str | None):
    """``value`` as the field's type (budgets and seeds from "10,20" or a list), checked."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if item is int:
            if isinstance(value, str):
                return tuple(checks.parse_int_list(value, limit or where))
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise UserError(f"{where} must be integers separated by commas, not {value!r}")
            return tuple(checks.int_list(value, limit or where))
        if value is None:
            value = []
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where} must be a list, not {value!r}")
        if item is str and not all(isinstance(v, str) for v in value):
            raise UserError(f"{where} must be a list of names, not {value!r}")
        return tuple(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where} must be a name, not {value!r}")
        return value
    if hint in (int, float):
        if limit:
            checks.number(limit, value)
        return value
    raise TypeError(hint)  # pragma: no cover - the schema's own types


def _section(cls, raw, where: str, base=None):
    """A section dataclass from its raw mapping; keys it lacks come from ``base`` (or the defaults)."""
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping, not {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise UserError(f"{where} has unknown key {unknown[0]!r}: choose from {', '.join(known)}")
    values = {}
    for name, f in known.items():
        if name in raw:
            try:
                values[name] = _typed(raw[name], hints[name], f"{where}.{name}", f.metadata.get("limit"))
            except UserError as e:
                raise UserError(f"{where}.{name}: {e}") from None
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def _import(raw, where: str) -> Import:
    entry = _section(Import, raw, where)
    if entry.source not in ("imagefolder", "csv"):
        raise UserError(f"{where}.source is {entry.source!r}: choose from imagefolder, csv")
    if not entry.path:
        raise UserError(f"{where}.path is empty: give the image folder or manifest CSV")
    if entry.fit not in ("crop", "pad"):
        raise UserError(f"{where}.fit is {entry.fit!r}: choose from crop, pad")
    return entry


def parse(raw, defaults: Params | None = None) -> Params:
    """Validate a params mapping (a parsed params.yaml or a profile's differences) over ``defaults``
    (the schema's): each value is checked once, here."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"params must be a mapping of sections, not {type(raw).__name__}")
    base = defaults or Params()
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise UserError(f"params has unknown section {unknown[0]!r}: choose from {', '.join(SECTIONS)}")
    values = {}
    for name, raw_section in raw.items():
        if name == "datasets":  # a profile's datasets replace the default's as a whole
            if raw_section is None:
                raw_section = {}
            if not isinstance(raw_section, dict):
                raise UserError("params datasets must map NAME to {set, variant, count, resolution}")
            for k, v in raw_section.items():
                if isinstance(v, dict) and "source" in v:
                    raise UserError(
                        f"datasets.{k} has a source ({v['source']!r}): a folder of real images goes under imports "
                        "(one import stage per entry), not datasets (one render stage per entry)"
                    )
            values[name] = {str(k): _section(Dataset, v, f"datasets.{k}") for k, v in raw_section.items()}
        elif name == "imports":  # likewise replaced as a whole
            if raw_section is None:
                raw_section = {}
            if not isinstance(raw_section, dict):
                raise UserError("params imports must map NAME to {source, path, resolution, fit, seed}")
            values[name] = {str(k): _import(v, f"imports.{k}") for k, v in raw_section.items()}
        else:
            cls = typing.get_type_hints(Params)[name]
            values[name] = _section(cls, raw_section, name, getattr(base, name))
    return dataclasses.replace(base, **values)


# ---------------------------------------------------------------- writing params.yaml


def _yaml_value(value) -> str:
    import json

    if isinstance(value, str):
        plain = value.replace("_", "").isalnum() and value.lower() not in (
            "null",
            "true",
            "false",
            "yes",
            "no",
            "on",
            "off",
        )
        return value if plain else json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def _field_text(obj, f) -> str:
    value = getattr(obj, f.name)
    if f.metadata.get("limit") in ("label budget", "seed") and isinstance(value, tuple):
        return '"' + ",".join(map(str, value)) + '"'  # DVC puts it into a command line as is
    return _yaml_value(value)


def to_yaml(params: Params, header: str = "") -> str:
    """``params.yaml``'s text: every section and key, each with the schema's comment."""
    lines = [header.rstrip("\n")] if header.strip() else []
    for name in SECTIONS:
        section = getattr(params, name)
        if name in ("datasets", "imports"):
            lines.append((f"{name}:" if section else f"{name}: {{}}").ljust(23) + f"# {SECTIONS[name].metadata['doc']}")
            for key, d in section.items():
                lines.append(f"  {_yaml_value(key)}: {_yaml_value(dataclasses.asdict(d))}")
            continue
        lines.append(f"{name}:".ljust(23) + f"# {SECTIONS[name].metadata['doc']}")
        for f in fields(section):
            text = f"  {f.name}: {_field_text(section, f)}"
            lines.append(text.ljust(22) + f" # {f.metadata['doc']}")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def differences(params: Params, base: Params | None = None) -> dict:
    """The sections and keys of ``params`` that differ from ``base`` (a profile's content)."""
    base = base or Params()
    out: dict = {}
    for name in SECTIONS:
        mine, theirs = getattr(params, name), getattr(base, name)
        if name in ("datasets", "imports"):
            if mine != theirs:
                out[name] = {k: dataclasses.asdict(v) for k, v in mine.items()}
            continue
        changed = {
            f.name: getattr(mine, f.name) for f in fields(mine) if getattr(mine, f.name) != getattr(theirs, f.name)
        }
        if changed:
            out[name] = changed
    return out
