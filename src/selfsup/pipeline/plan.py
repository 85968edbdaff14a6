"""The pipeline's topology, written once: every stage of ``dvc.yaml`` as a template, from which

- ``dvc.yaml`` is generated (``python -m selfsup.pipeline.plan``; a test fails when the committed file is stale),
  with each stage's code deps computed as the import closure of its command's module, folded into
  folders where a whole subpackage is in it;
- :func:`jobs` expands the templates for a params file the way DVC expands ``foreach`` / ``matrix``
  (same stage names), each with its work in images, for the cost estimate and ``dvc status``.

A template of a per-set stage (``pretrain``, ``tune``, ``finetune``) is one function of the set name:
``pretrain_single`` and ``pretrain_multi`` differ only in the params section they read, which DVC's
matrix cannot tie to the dataset list, so dvc.yaml holds both; they are never written twice here.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from selfsup.core import config
from selfsup.core.config import SCRATCH
from selfsup.core.errors import UserError
from selfsup.core.provenance import import_closure
from selfsup.data.scene import SPLIT_FRACTIONS

TRAIN, VAL, TEST = SPLIT_FRACTIONS
PKG = Path(__file__).resolve().parents[1]  # src/selfsup
SETS = ("single", "multi")


@dataclass(frozen=True)
class Job:
    """One dvc stage and the work in it, in images through the network (or rendered)."""

    stage: str  # the dvc stage name, e.g. pretrain_single@single-resnet9-rotation
    kind: str  # render | pretrain | tune | finetune | probe | readout | report
    key: tuple  # what its per-image cost depends on (see ``estimate.measure``)
    train_images: float = 0.0  # images through forward + backward (or rendered, for render)
    eval_images: float = 0.0  # images through a forward pass only


Cost = Callable[[dict, dict], tuple[tuple, float, float]]  # (params, item) → (key, train images, eval images)


def disk_needed(jobs: list[Job]) -> int:
    """Bytes of disk the render stages among ``jobs`` need (:func:`selfsup.data.render.jobs.disk_needed`:
    a dataset's arrays twice, as its shards while it renders and as DVC's cached copy once it is done)."""
    from selfsup.data.render.jobs import disk_needed as render_disk

    return sum(render_disk(j.key[1], int(j.train_images), j.key[2]) for j in jobs if j.kind == "render")


@dataclass(frozen=True)
class Stage:
    """One stage of dvc.yaml: ``loop`` is its ``foreach`` (a string) or ``matrix`` (a dict), ``deps``
    its data deps (the code deps are computed from ``command``)."""

    name: str
    command: str  # the `selfsup COMMAND` it runs; its module is src/selfsup/cli/COMMAND.py
    kind: str
    comment: str
    cmd: str
    loop: str | dict | None = None
    deps: tuple = ()
    params: tuple = ()
    outs: tuple = ()
    extra: dict = field(default_factory=dict)  # metrics, plots
    cost: Cost | None = None


# ---------------------------------------------------------------- costs (images per stage)


def _entry(params: dict, data: str) -> dict:
    """``datasets.DATA``, or ``imports.DATA`` with its image count (the files under its path)."""
    if data in params["datasets"]:
        return params["datasets"][data]
    entry = params["imports"][data]
    count = entry["count"] if "count" in entry else imported_count(entry["source"], entry["path"])
    return {**entry, "set": "single", "count": count}


def imported_count(source: str, path: str) -> int:
    """Images an import of ``path`` would hold (files with an image suffix, or the manifest's rows); 0 if
    the path does not exist."""
    from selfsup.data.imports import IMAGE_SUFFIXES

    p = Path(path)
    if source == "csv":
        return max(0, len(p.read_text().splitlines()) - 1) if p.is_file() else 0
    return sum(1 for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else 0


def _n(params: dict, data: str) -> int:
    return _entry(params, data)["count"]


def _res(params: dict, data: str) -> int:
    return _entry(params, data)["resolution"]


def _cells(ft: dict) -> int:
    return len(ft["budgets"]) * len(ft["seeds"])


def _supervised_key(params: dict, set_name: str, data: str, backbone: str) -> tuple:
    pre, ft = params[f"pretrain_{set_name}"], params[f"finetune_{set_name}"]
    return ("supervised", backbone, pre["width"], _res(params, data), set_name == "multi", min(ft["batch_size"], 512))


def _render_cost(params: dict, item: dict) -> tuple:
    r = params["render"]
    return ("render", item["set"], item["resolution"], r["samples"], r["denoise"]), item["count"], 0.0


def _pretrain_cost(set_name: str) -> Cost:
    def cost(params: dict, item: dict) -> tuple:
        from selfsup.pretrain.methods import default_backbone

        pre, init = params[f"pretrain_{set_name}"], item["init"]
        if init == SCRATCH:
            return ("none",), 0.0, 0.0
        steps = max(1, int(TRAIN * _n(params, item["data"])) // pre["batch_size"])
        key = (
            "pretrain",
            init,
            default_backbone(init, item["backbone"]),
            pre["width"],
            _res(params, item["data"]),
            min(pre["batch_size"], 512),
        )
        return key, pre["epochs"] * steps * pre["batch_size"], 0.0

    return cost


def _tune_cost(set_name: str) -> Cost:
    def cost(params: dict, item: dict) -> tuple:
        ft, n = params[f"finetune_{set_name}"], _n(params, item["data"])
        trials = ft["tune_trials"]
        key = _supervised_key(params, set_name, item["data"], item["backbone"])
        return key, trials * ft["steps"] * ft["batch_size"], trials * ft["epochs"] * VAL * n

    return cost


def _finetune_cost(set_name: str, data_of: Callable[[dict], str] = lambda item: item["data"]) -> Cost:
    def cost(params: dict, item: dict) -> tuple:
        ft, data = params[f"finetune_{set_name}"], data_of(item)
        n, cells = _n(params, data), _cells(ft)
        key = _supervised_key(params, set_name, data, item["backbone"])
        return key, cells * ft["steps"] * ft["batch_size"], cells * (ft["epochs"] * VAL * n + TEST * n)

    return cost


def _features_cost(params: dict, item: dict) -> tuple:
    """Probes and the read-out: features of every image once; the fits are cheap."""
    return _supervised_key(params, "single", item["data"], item["backbone"]), 0.0, _n(params, item["data"])


def _no_cost(params: dict, item: dict) -> tuple:
    return ("none",), 0.0, 0.0


# ---------------------------------------------------------------- the stages

MODEL = "models/${item.data}/${item.backbone}/${item.init}"
TUNED = "tuned/${item.data}/${item.backbone}/${item.init}-${item.task}"


def _train_options(section: str) -> str:
    return f"--steps ${{{section}.steps}} --epochs ${{{section}.epochs}} --batch-size ${{{section}.batch_size}}"


def _pretrain(set_name: str) -> Stage:
    s = f"pretrain_{set_name}"
    return Stage(
        s,
        "pretrain",
        "pretrain",
        f"{s}@DATA-BACKBONE-INIT → models/DATA/BACKBONE/INIT (scratch: meta.json only)",
        f"selfsup pretrain --method ${{item.init}} --backbone ${{item.backbone}} --width ${{{s}.width}} "
        f"--colour ${{{s}.colour}} --epochs ${{{s}.epochs}} --batch-size ${{{s}.batch_size}} --lr ${{{s}.lr}} "
        f"--schedule ${{{s}.schedule}} --seed ${{{s}.seed}} --reuse --data data/${{item.data}} --out {MODEL}",
        {"data": f"${{study.{set_name}}}", "backbone": "${study.backbones}", "init": "${study.inits}"},
        ("data/${item.data}",),
        (s,),
        ({MODEL: {"persist": True}},),
        cost=_pretrain_cost(set_name),
    )


def _tune(set_name: str) -> Stage:
    s = f"finetune_{set_name}"
    return Stage(
        f"tune_{set_name}",
        "tune",
        "tune",
        "Optuna per data × backbone × init × task at the tier's budget (0 trials: the configured values)",
        f"selfsup tune --task ${{item.task}} --init {MODEL} --data data/${{item.data}} "
        f"--budget ${{{s}.tune_budget}} --trials ${{{s}.tune_trials}} {_train_options(s)} --lr ${{{s}.lr}} "
        f"--out {TUNED}",
        {
            "data": f"${{study.{set_name}}}",
            "backbone": "${study.backbones}",
            "init": "${study.inits}",
            "task": f"${{{s}.tasks}}",
        },
        ("data/${item.data}", MODEL),
        (s,),
        (TUNED,),
        cost=_tune_cost(set_name),
    )


def _finetune(set_name: str) -> Stage:
    s = f"finetune_{set_name}"
    out = "results/finetune/${item.data}/${item.backbone}/${item.init}-${item.task}"
    return Stage(
        s,
        "finetune",
        "finetune",
        "data × backbone × init × task → results/finetune/DATA/BACKBONE/INIT-TASK",
        f"selfsup finetune --task ${{item.task}} --init {MODEL} --data data/${{item.data}} "
        f"--budgets ${{{s}.budgets}} --seeds ${{{s}.seeds}} {_train_options(s)} "
        f"--params-file {TUNED}/best_params.json --out {out}",
        {
            "data": f"${{study.{set_name}}}",
            "backbone": "${study.backbones}",
            "init": "${study.inits}",
            "task": f"${{{s}.tasks}}",
        },
        ("data/${item.data}", MODEL, f"{TUNED}/best_params.json"),
        (s,),
        ({out: {"persist": True}},),
        cost=_finetune_cost(set_name),
    )


def stages() -> list[Stage]:
    """Every stage of dvc.yaml, in its order."""
    ft = "finetune_single"
    frozen_model = "models/${item.data}/${item.backbone}/${item.method}"
    frozen_tuned = "tuned/${item.data}/${item.backbone}/${item.method}-${item.task}"
    frozen_out = "results/frozen/${item.data}/${item.backbone}/${item.method}-${item.task}-${item.protocol}"
    pair_model = "models/${item.pair.pretrain}/${item.backbone}/${item.init}"
    pair_tuned = "tuned/${item.pair.finetune}/${item.backbone}/${item.init}-${item.task}"
    pair_out = "results/transfer/${item.pair.pretrain}/${item.pair.finetune}/${item.backbone}/${item.init}-${item.task}"
    probe_out = "results/probe/${item.data}/${item.backbone}/${item.method}-${item.protocol}"
    readout_out = "results/readout/${item.data}/${item.backbone}/${item.init}"
    from selfsup.report import REPORT_FILES

    return [
        Stage(
            "render",
            "render",
            "render",
            "one stage per dataset: render@single → data/single, render@multi → data/multi",
            "selfsup render --set ${item.set} --variant=${item.variant} --count ${item.count} "
            "--resolution ${item.resolution} --seed ${render.seed} --workers ${render.workers} "
            "--samples ${render.samples} --denoise ${render.denoise} --replace --out data/${key}",
            "${datasets}",
            (),
            ("datasets.${key}", "render.seed", "render.samples", "render.denoise", "render.workers"),
            ({"data/${key}": {"persist": True}},),  # a killed render resumes from its finished shards
            cost=_render_cost,
        ),
        Stage(
            "import",
            "import",
            "import",
            "one stage per folder of real images: import@NAME → data/NAME (re-imported when the folder changes)",
            "selfsup import --from ${item.source} ${item.path} --resolution ${item.resolution} --fit ${item.fit} "
            "--seed ${item.seed} --replace --out data/${key}",
            "${imports}",
            ("${item.path}",),
            ("imports.${key}",),
            ("data/${key}",),
            cost=lambda params, item: (("none",), 0.0, 0.0),  # decoding is seconds next to training
        ),
        _pretrain("single"),
        _tune("single"),
        _finetune("single"),
        Stage(
            "frozen_single",
            "finetune",
            "finetune",
            "Fig. 8: frozen-k of some methods → results/frozen/DATA/BACKBONE/METHOD-TASK-PROTOCOL",
            "selfsup finetune --task ${item.task} --protocol ${item.protocol} "
            f"--init {frozen_model} --data data/${{item.data}} --budgets ${{{ft}.budgets}} --seeds ${{{ft}.seeds}} "
            f"{_train_options(ft)} --params-file {frozen_tuned}/best_params.json --out {frozen_out}",
            {
                "data": "${study.single}",
                "backbone": "${study.backbones}",
                "method": "${frozen.methods}",
                "task": "${frozen.tasks}",
                "protocol": "${frozen.protocols}",
            },
            ("data/${item.data}", frozen_model, f"{frozen_tuned}/best_params.json"),
            (ft, "frozen"),
            ({frozen_out: {"persist": True}},),
            cost=_finetune_cost("single"),
        ),
        Stage(
            "transfer_single",
            "finetune",
            "finetune",
            "Fig. 9: pretrained on one variant, finetuned on another → results/transfer/FROM/TO/BACKBONE/INIT-TASK",
            f"selfsup finetune --task ${{item.task}} --init {pair_model} --data data/${{item.pair.finetune}} "
            f"--budgets ${{{ft}.budgets}} --seeds ${{{ft}.seeds}} {_train_options(ft)} "
            f"--params-file {pair_tuned}/best_params.json --out {pair_out}",
            {
                "pair": "${transfer.pairs}",
                "backbone": "${study.backbones}",
                "init": "${transfer.inits}",
                "task": "${transfer.tasks}",
            },
            ("data/${item.pair.finetune}", pair_model, f"{pair_tuned}/best_params.json"),
            (ft, "transfer"),
            ({pair_out: {"persist": True}},),
            cost=_finetune_cost("single", lambda item: item["pair"]["finetune"]),
        ),
        _pretrain("multi"),
        _tune("multi"),
        _finetune("multi"),
        Stage(
            "probe",
            "probe",
            "probe",
            "frozen-feature probes on the single-object sets: → results/probe/DATA/BACKBONE/METHOD-PROTOCOL",
            "selfsup probe --protocol ${item.protocol} --task ${probe.task} --init " + frozen_model + " "
            f"--data data/${{item.data}} --budgets ${{{ft}.budgets}} --seeds ${{{ft}.seeds}} "
            f"--knn-metric ${{probe.knn_metric}} --k ${{probe.k}} --all-labels --out {probe_out}",
            {
                "data": "${study.single}",
                "backbone": "${study.backbones}",
                "method": "${probe.methods}",
                "protocol": "${probe.protocols}",
            },
            ("data/${item.data}", frozen_model),
            ("probe", f"{ft}.budgets", f"{ft}.seeds"),
            ({probe_out: {"persist": True}},),
            cost=_features_cost,
        ),
        Stage(
            "readout",
            "readout",
            "readout",
            "factor read-out of every init's frozen backbone → results/readout/DATA/BACKBONE/INIT",
            f"selfsup readout --data data/${{item.data}} --init {MODEL} --out {readout_out}",
            {"data": "${study.single}", "backbone": "${study.backbones}", "init": "${study.inits}"},
            ("data/${item.data}", MODEL),
            (),
            (readout_out,),
            cost=_features_cost,
        ),
        Stage(
            "report",
            "report",
            "report",
            "utility, analysis tables and the HTML report from every results folder",
            "selfsup report --results results --interpolation ${report.interpolation} "
            "--bootstrap ${report.bootstrap} --out reports",
            None,
            ("results",),
            ("report",),
            tuple(f"reports/{name}" for name in REPORT_FILES),
            {
                "metrics": [{"reports/metrics.json": {"cache": False}}],
                "plots": [
                    {"reports/plots/curves": {"x": "label_budget", "y": "mean", "template": "selfsup_curves"}},
                    {"reports/plots/utility": {"x": "label_budget", "y": "utility", "template": "selfsup_curves"}},
                ],
            },
            cost=_no_cost,
        ),
    ]


# ---------------------------------------------------------------- expansion (what DVC does with the templates)


def _resolve(ref: str, params: dict):
    """``${a.b}`` → params["a"]["b"]."""
    node = params
    for key in ref.removeprefix("${").removesuffix("}").split("."):
        node = node[key]
    return node


def _label(value, dim: str, i: int) -> str:
    """DVC names a matrix stage by its values joined with '-'; a dict value by the dimension and its index."""
    return f"{dim}{i}" if isinstance(value, (dict, list)) else str(value)


def expand(stage: Stage, params: dict) -> list[tuple[str, dict]]:
    """The (name, item) of every stage DVC makes of ``stage`` for ``params``."""
    if stage.loop is None:
        return [(stage.name, {})]
    if isinstance(stage.loop, str):  # foreach over a dict: item is the value, named by the key
        return [(f"{stage.name}@{key}", {**value, "key": key}) for key, value in _resolve(stage.loop, params).items()]
    dims = {dim: list(_resolve(ref, params)) for dim, ref in stage.loop.items()}
    out = []
    for combo in itertools.product(*(list(enumerate(v)) for v in dims.values())):
        item = {dim: value for dim, (_, value) in zip(dims, combo, strict=True)}
        name = "-".join(_label(value, dim, i) for dim, (i, value) in zip(dims, combo, strict=True))
        out.append((f"{stage.name}@{name}", item))
    return out


def _checked(params) -> dict:
    """Params (a mapping, complete or a profile's differences, or :class:`config.Params`) checked once."""
    from selfsup.data.render.quality import Quality

    if not isinstance(params, config.Params):
        try:
            params = config.parse(params)
        except UserError as e:
            raise UserError(f"params: {e}") from None
    Quality(params.render.samples, params.render.denoise).check()
    return dataclasses.asdict(params)


def plan(params: dict | config.Params) -> list[Job]:
    """Every stage of ``dvc.yaml`` for these params, with its work (:func:`selfsup.pipeline.plan.jobs`),
    after checking the values and the names the stages refer to."""
    from selfsup.models import BACKBONES
    from selfsup.pretrain.methods import METHODS

    params = _checked(params)

    datasets, study = params["datasets"], params["study"]
    for backbone in study["backbones"]:
        BACKBONES.get(backbone)
    for init in study["inits"]:
        if init != SCRATCH:
            METHODS.get(init)
    for set_name in SETS:
        ft = params[f"finetune_{set_name}"]
        for data in study[set_name]:
            if data in datasets and data in params["imports"]:
                raise UserError(f"dataset {data!r} is both under datasets and under imports: rename one")
            if data not in datasets and data not in params["imports"]:
                raise UserError(f"study.{set_name} names dataset {data!r}, which is not under datasets or imports")
            if data in params["imports"] and not Path(params["imports"][data]["path"]).exists():
                raise UserError(f"imports.{data}.path {params['imports'][data]['path']!r} does not exist")
            d = _entry(params, data)
            if d["set"] != set_name:
                raise UserError(f"dataset {data!r} is a {d['set']}-object set but is listed in study.{set_name}")
            n = d["count"]
            too_big = [b for b in [*ft["budgets"], ft["tune_budget"]] if b > TRAIN * n]
            if too_big:
                raise UserError(
                    f"label budget {max(too_big)} is larger than the train split of dataset {data!r} "
                    f"(about {TRAIN * n:.0f} of {n} images)"
                )
    ft_single = params["finetune_single"]

    def check_listed(section: str, key: str, names, allowed, where: str) -> None:
        for name in names:
            if name not in allowed:
                raise UserError(f"{section}.{key} names {name!r}, which is not in {where}")

    frozen = params["frozen"]  # Fig. 8: frozen-k finetuning of some pretrained methods
    check_listed("frozen", "methods", frozen["methods"], [i for i in study["inits"] if i != SCRATCH], "study.inits")
    check_listed("frozen", "tasks", frozen["tasks"], ft_single["tasks"], "finetune_single.tasks")
    check_listed("frozen", "protocols", frozen["protocols"], ["frozen-1", "frozen-2", "frozen-3"], "frozen-1/2/3")
    transfer = params["transfer"]  # Fig. 9: pretrained on one single-object set, finetuned on another
    check_listed("transfer", "inits", transfer["inits"], study["inits"], "study.inits")
    check_listed("transfer", "tasks", transfer["tasks"], ft_single["tasks"], "finetune_single.tasks")
    for i, pair in enumerate(transfer["pairs"]):
        if not isinstance(pair, dict) or set(pair) != {"pretrain", "finetune"}:
            raise UserError(f"transfer.pairs[{i}] must be {{pretrain: DATA, finetune: DATA}}, not {pair!r}")
        check_listed("transfer", "pairs", pair.values(), study["single"], "study.single")
    return jobs(params)


def jobs(params: dict) -> list[Job]:
    """Every stage of dvc.yaml for (checked) ``params``, with its work."""
    # an import's image count, read off its folder once here rather than by every job's cost
    imports = {k: {**v, "count": imported_count(v["source"], v["path"])} for k, v in params["imports"].items()}
    params = {**params, "imports": imports}
    out = []
    for stage in stages():
        for name, item in expand(stage, params):
            key, train, evaluate = stage.cost(params, item)
            out.append(Job(name, stage.kind, key, train, evaluate))
    return out


# ---------------------------------------------------------------- dvc.yaml

HEADER = """\
# GENERATED by `python -m selfsup.pipeline.plan` from src/selfsup/pipeline/plan.py: edit that, not this file
# (tests/pipeline/test_plan.py fails when this file is stale). The whole study: `dvc repro`.
# Every single-object dataset in study.single (and multi-object one in study.multi) pretrains its own backbones
# (the paper's design) and is finetuned / probed from them; study.backbones multiplies everything.
# Stage names: STAGE@DATA-BACKBONE-INIT[-TASK]; outputs under models|tuned|results/.../DATA/BACKBONE/.
# Code deps: the import closure of the stage's command module src/selfsup/cli/COMMAND.py (with the package
# and cli __init__ and cli/app.py), a folder where the whole folder is in it: an edit to one command's
# module re-runs only that command's stages. *_single and *_multi stages come from one template each: DVC's
# matrix cannot tie the dataset list (study.single / study.multi) to its set's params section.
"""


def _py_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def command_closure(command: str, package: Path = PKG) -> set[Path]:
    """The package files ``selfsup COMMAND`` runs: the package and cli ``__init__``, ``cli/app.py`` and
    the import closure of ``cli/COMMAND.py`` (the other command modules only register their commands)."""
    cli = package / "cli"
    start = {package / "__init__.py", cli / "__init__.py", cli / "app.py", cli / f"{command}.py"}
    return import_closure(start, package)


def fold(files: set[Path], package: Path = PKG) -> list[str]:
    """``files`` as dvc deps: a folder where every .py file under it is in ``files``, else the files."""
    root = package.parent.parent  # the repository

    def walk(folder: Path) -> list[Path]:
        inside = _py_files(folder)
        if inside and inside <= files and folder != package:
            return [folder]
        found = sorted(f for f in files if f.parent == folder)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"):
            if _py_files(sub) & files:
                found += walk(sub)
        return found

    return [str(p.relative_to(root)) for p in walk(package)]


def _stage_yaml(stage: Stage, package: Path) -> dict:
    body = {
        "cmd": stage.cmd,
        "deps": [*stage.deps, *fold(command_closure(stage.command, package), package)],
    }
    if stage.params:
        body["params"] = list(stage.params)
    body["outs"] = list(stage.outs)
    body.update(stage.extra)
    if stage.loop is None:
        return body
    if isinstance(stage.loop, str):
        return {"foreach": stage.loop, "do": body}
    return {"matrix": dict(stage.loop), **body}


def dvc_yaml(package: Path = PKG) -> str:
    """The text of dvc.yaml."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def long_strings(dumper, value):  # commands as folded blocks, like a hand-written dvc.yaml
        if len(value) > 100:
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
        return dumper.represent_scalar("tag:yaml.org,2002:str", value)

    Dumper.add_representer(str, long_strings)
    # a params.yaml written before the imports section existed has none: DVC's vars give the default (an
    # imports section in params.yaml wins)
    parts = [HEADER, "vars:\n- imports: {}\n", "stages:\n"]
    for stage in stages():
        text = yaml.dump({stage.name: _stage_yaml(stage, package)}, Dumper=Dumper, sort_keys=False, width=116)
        lines = text.splitlines()
        lines[0] += f"  # {stage.comment}"
        parts.append("".join(f"  {line}\n" for line in lines) + "\n")
    return "".join(parts).rstrip("\n") + "\n"


if __name__ == "__main__":  # python -m selfsup.pipeline.plan [PATH]: (re)write dvc.yaml
    import sys

    from selfsup.core.provenance import atomic_write_text

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "dvc.yaml")
    atomic_write_text(target, dvc_yaml())
    print(f"wrote {target} ({len(stages())} stages)")
