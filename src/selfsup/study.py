"""The whole study as ``params.yaml`` describes it: what ``dvc repro`` will run (``plan``), what that
costs on this machine from a short measurement (``measure``, ``estimate``), and switching the params
file between the profiles in ``profiles/`` (``use_profile``).

The plan mirrors ``dvc.yaml`` stage for stage (same names), so the estimate can be limited to the
stages ``dvc status`` reports as changed. Costs are linear in images: seconds per image measured on a
few batches (at the configured batch size; smaller on a CPU, see ``_measured_batch``) times the images each stage pushes
through the network or renders. It is an estimate: evaluation passes are counted as forward passes,
Optuna's pruning and DVC's skipping of finished cells are not counted.
"""

from __future__ import annotations

import filecmp
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import checks
from .defaults import SCRATCH
from .errors import UserError
from .render.quality import Quality
from .scene import SPLIT_FRACTIONS

PROFILES = "profiles"
TRAIN, VAL, TEST = SPLIT_FRACTIONS


@dataclass(frozen=True)
class Job:
    """One dvc stage and the work in it, in images through the network (or rendered)."""

    stage: str  # the dvc stage name, e.g. pretrain_single@single-resnet9-rotation
    kind: str  # render | pretrain | tune | finetune | probe | readout
    key: tuple  # what its per-image cost depends on (see ``measure``)
    train_images: float = 0.0  # images through forward + backward (or rendered, for render)
    eval_images: float = 0.0  # images through a forward pass only


@dataclass
class Estimate:
    jobs: list[Job]
    seconds_per_image: dict = field(default_factory=dict)  # key → (train s/img, forward s/img)
    device: str = "cpu"

    def seconds(self, job: Job) -> float:
        train, fwd = self.seconds_per_image[job.key]
        return job.train_images * train + job.eval_images * fwd

    def by_kind(self) -> list[dict]:
        rows = {}
        for job in self.jobs:
            row = rows.setdefault(job.kind, {"stage": job.kind, "jobs": 0, "images": 0.0, "hours": 0.0})
            row["jobs"] += 1
            row["images"] += job.train_images + job.eval_images
            row["hours"] += self.seconds(job) / 3600
        return list(rows.values())

    @property
    def hours(self) -> float:
        return sum(self.seconds(j) for j in self.jobs) / 3600

    def to_json(self) -> dict:
        return {
            "device": self.device,
            "hours": self.hours,
            "by_stage": self.by_kind(),
            "seconds_per_image": {"|".join(map(str, k)): v for k, v in self.seconds_per_image.items()},
            "stages": [j.stage for j in self.jobs],
        }


def load_params(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"params file {str(path)!r} does not exist")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"params file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    needed = (
        "datasets",
        "render",
        "study",
        "pretrain_single",
        "pretrain_multi",
        "finetune_single",
        "finetune_multi",
        "probe",
        "frozen",
        "transfer",
    )
    missing = [k for k in needed if not isinstance(params, dict) or k not in params]
    if missing:
        raise UserError(f"params file {str(path)!r} lacks section(s) {', '.join(missing)}")
    return params


def check_params(params: dict) -> None:
    """The numbers of a params file, checked as the stages' own commands will check them (so a bad
    value fails here, before hours of earlier stages), and every key ``plan`` reads present."""

    def section(*path):
        node = params
        for key in path:
            if not isinstance(node, dict) or key not in node:
                raise UserError(f"params file lacks {'.'.join(path)}")
            node = node[key]
        return node

    try:
        for name in section("datasets"):
            checks.numbers(count=section("datasets", name, "count"), resolution=section("datasets", name, "resolution"))
        checks.numbers(
            seed=section("render", "seed"), samples=section("render", "samples"), workers=section("render", "workers")
        )
        Quality(section("render", "samples"), section("render", "denoise")).check()
        for set_name in ("single", "multi"):
            pre, ft = f"pretrain_{set_name}", f"finetune_{set_name}"
            checks.numbers(**{k: section(pre, k) for k in ("width", "epochs", "batch_size", "lr", "seed")})
            checks.numbers(
                **{k: section(ft, k) for k in ("steps", "epochs", "batch_size", "lr")},
                trials=section(ft, "tune_trials"),
                budget=section(ft, "tune_budget"),
            )
            checks.parse_int_list(section(ft, "budgets"), "label budget")
            checks.parse_int_list(section(ft, "seeds"), "seed")
            section(ft, "tasks")
        for key in ("inits", "backbones", "single", "multi"):
            section("study", key)
        section("probe", "methods")
        section("probe", "protocols")
        for key in ("methods", "tasks", "protocols"):
            section("frozen", key)
        for key in ("pairs", "inits", "tasks"):
            section("transfer", key)
    except UserError as e:
        raise UserError(f"params: {e}") from None


def plan(params: dict) -> list[Job]:
    """Every stage of ``dvc.yaml`` for these params, with its work; checks the names it refers to."""
    from .methods import METHODS, default_backbone
    from .models import BACKBONES

    check_params(params)

    datasets, study = params["datasets"], params["study"]
    jobs: list[Job] = []
    for name, d in datasets.items():
        jobs.append(
            Job(
                f"render@{name}",
                "render",
                ("render", d["set"], d["resolution"], params["render"]["samples"], params["render"]["denoise"]),
                train_images=d["count"],
            )
        )
    for backbone in study["backbones"]:
        BACKBONES.get(backbone)
    for init in study["inits"]:
        if init != SCRATCH:
            METHODS.get(init)
    for set_name in ("single", "multi"):
        pre, ft = params[f"pretrain_{set_name}"], params[f"finetune_{set_name}"]
        for data in study[set_name]:
            if data not in datasets:
                raise UserError(f"study.{set_name} names dataset {data!r}, which is not under datasets")
            d = datasets[data]
            if d["set"] != set_name:
                raise UserError(f"dataset {data!r} is a {d['set']}-object set but is listed in study.{set_name}")
            n = d["count"]
            too_big = [
                b for b in checks.parse_int_list(ft["budgets"], "label budget") + [ft["tune_budget"]] if b > TRAIN * n
            ]
            if too_big:
                raise UserError(
                    f"label budget {max(too_big)} is larger than the train split of dataset {data!r} "
                    f"(about {TRAIN * n:.0f} of {n} images)"
                )
            res = d["resolution"]
            for backbone in study["backbones"]:
                for init in study["inits"]:
                    tag = f"{data}-{backbone}-{init}"
                    if init == SCRATCH:
                        jobs.append(Job(f"pretrain_{set_name}@{tag}", "pretrain", ("none",)))
                    else:
                        steps = max(1, int(TRAIN * n) // pre["batch_size"])
                        jobs.append(
                            Job(
                                f"pretrain_{set_name}@{tag}",
                                "pretrain",
                                (
                                    "pretrain",
                                    init,
                                    default_backbone(init, backbone),
                                    pre["width"],
                                    res,
                                    min(pre["batch_size"], 512),
                                ),
                                train_images=pre["epochs"] * steps * pre["batch_size"],
                            )
                        )
                    sup = ("supervised", backbone, pre["width"], res, set_name == "multi", min(ft["batch_size"], 512))
                    cells = len(checks.parse_int_list(ft["budgets"], "label budget")) * len(
                        checks.parse_int_list(ft["seeds"], "seed")
                    )
                    per_run = ft["steps"] * ft["batch_size"], ft["epochs"] * VAL * n + TEST * n
                    for task in ft["tasks"]:
                        trials = ft["tune_trials"]
                        jobs.append(
                            Job(
                                f"tune_{set_name}@{tag}-{task}",
                                "tune",
                                sup,
                                trials * per_run[0],
                                trials * ft["epochs"] * VAL * n,
                            )
                        )
                        jobs.append(
                            Job(
                                f"finetune_{set_name}@{tag}-{task}",
                                "finetune",
                                sup,
                                cells * per_run[0],
                                cells * per_run[1],
                            )
                        )
    ft_single = params["finetune_single"]
    single_cells = len(checks.parse_int_list(ft_single["budgets"], "label budget")) * len(
        checks.parse_int_list(ft_single["seeds"], "seed")
    )

    def single_finetune(stage: str, data: str, backbone: str) -> Job:
        n = datasets[data]["count"]
        key = ("supervised", backbone, params["pretrain_single"]["width"], datasets[data]["resolution"], False)
        return Job(
            stage,
            "finetune",
            (*key, min(ft_single["batch_size"], 512)),
            single_cells * ft_single["steps"] * ft_single["batch_size"],
            single_cells * (ft_single["epochs"] * VAL * n + TEST * n),
        )

    def check_listed(section: str, key: str, names, allowed, where: str) -> None:
        for name in names:
            if name not in allowed:
                raise UserError(f"{section}.{key} names {name!r}, which is not in {where}")

    frozen = params["frozen"]  # Fig. 8: frozen-k finetuning of some pretrained methods
    check_listed("frozen", "methods", frozen["methods"], [i for i in study["inits"] if i != SCRATCH], "study.inits")
    check_listed("frozen", "tasks", frozen["tasks"], ft_single["tasks"], "finetune_single.tasks")
    check_listed("frozen", "protocols", frozen["protocols"], ["frozen-1", "frozen-2", "frozen-3"], "frozen-1/2/3")
    for data in study["single"]:
        for backbone in study["backbones"]:
            for method in frozen["methods"]:
                for task in frozen["tasks"]:
                    for protocol in frozen["protocols"]:
                        tag = f"{data}-{backbone}-{method}-{task}-{protocol}"
                        jobs.append(single_finetune(f"frozen_single@{tag}", data, backbone))
    transfer = params["transfer"]  # Fig. 9: pretrained on one single-object set, finetuned on another
    check_listed("transfer", "inits", transfer["inits"], study["inits"], "study.inits")
    check_listed("transfer", "tasks", transfer["tasks"], ft_single["tasks"], "finetune_single.tasks")
    for i, pair in enumerate(transfer["pairs"]):
        if not isinstance(pair, dict) or set(pair) != {"pretrain", "finetune"}:
            raise UserError(f"transfer.pairs[{i}] must be {{pretrain: DATA, finetune: DATA}}, not {pair!r}")
        check_listed("transfer", "pairs", pair.values(), study["single"], "study.single")
        for backbone in study["backbones"]:
            for init in transfer["inits"]:
                for task in transfer["tasks"]:
                    tag = f"pair{i}-{backbone}-{init}-{task}"
                    jobs.append(single_finetune(f"transfer_single@{tag}", pair["finetune"], backbone))
    probes = params["probe"]  # the frozen-feature probes of `selfsup probe`
    for data in study["single"]:
        for backbone in study["backbones"]:
            width, res = params["pretrain_single"]["width"], datasets[data]["resolution"]
            key = ("supervised", backbone, width, res, False, min(params["finetune_single"]["batch_size"], 512))
            for method in probes["methods"]:
                for protocol in probes["protocols"]:  # features of every image once; the fits are cheap
                    jobs.append(
                        Job(f"probe@{data}-{backbone}-{method}-{protocol}", "probe", key, 0.0, datasets[data]["count"])
                    )
    for data in study["single"]:  # the factor read-out: features of every image once, then small fits
        for backbone in study["backbones"]:
            width, res = params["pretrain_single"]["width"], datasets[data]["resolution"]
            key = ("supervised", backbone, width, res, False, min(params["finetune_single"]["batch_size"], 512))
            for init in study["inits"]:
                jobs.append(Job(f"readout@{data}-{backbone}-{init}", "readout", key, 0.0, datasets[data]["count"]))
    jobs.append(Job("report", "report", ("none",)))
    return jobs


def pending(jobs: list[Job], cwd: str | Path = ".") -> tuple[list[Job], str]:
    """The jobs ``dvc status`` reports as changed (what ``dvc repro`` would run), and a note on how
    that was decided."""
    try:
        r = subprocess.run(
            [sys.executable, "-m", "dvc", "status", "--json"], cwd=cwd, capture_output=True, text=True, timeout=600
        )
        changed = json.loads(r.stdout) if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        changed = None
    if changed is None:
        return jobs, "every stage (dvc status did not answer)"
    todo = [j for j in jobs if j.stage in changed]
    return todo, f"{len(todo)} of {len(jobs)} stages that dvc status reports as changed"


# ---------------------------------------------------------------- measurement


def _time_steps(objective, n_items: int, batch: int, steps: int, device) -> float:
    """Seconds per image of training steps, after one warm-up step."""
    from .train import TrainConfig, fit

    marks: list[float] = []

    def tick(step: int, total: int) -> None:
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        marks.append(time.perf_counter())

    fit(objective, n_items, TrainConfig(epochs=1, steps_per_epoch=steps + 1, batch_size=batch), progress=tick)
    return (marks[-1] - marks[0]) / (steps * batch)


def _time_forward(model, res: int, batch: int, device, reps: int = 2) -> float:
    import torch

    from .augment import map_batches

    images = torch.randint(0, 256, (batch * reps, res, res, 3), dtype=torch.uint8).numpy()
    model.eval()
    map_batches(model, images[:batch], device, batch)  # warm-up
    t0 = time.perf_counter()
    map_batches(model, images, device, batch)
    return (time.perf_counter() - t0) / len(images)


def _measured_batch(batch: int, backbone: str, width: float, res: int, device) -> int:
    """The batch timed: the configured one on a GPU; on a CPU at most 64 images of 64² for a narrow
    network, fewer for larger images and a wide ResNet50 (a full-width ResNet50 at 128² with four
    rotations of 64 images needs > 24 GB of activations)."""
    if device.type == "cuda":
        return batch
    heavy = 4 if backbone.startswith("resnet50") and width >= 0.5 else 1
    return max(2, min(batch, int(64 * (64 / res) ** 2 / heavy)))


def _measure_training(key: tuple, device, steps: int) -> tuple[float, float]:
    import torch

    from .finetune import SupervisedModel, SupervisedObjective
    from .methods import create_method
    from .models import create_backbone
    from .pretrain import PretrainObjective
    from .tasks import get_task

    torch.manual_seed(0)
    if key[0] == "pretrain":
        _, method, backbone, width, res, batch = key
        batch = _measured_batch(batch, backbone, width, res, device)
        net = (
            create_method(method, create_backbone(backbone, width=width))
            .to(device)
            .to(memory_format=torch.channels_last)
        )
        images = torch.randint(0, 256, (batch * 2, res, res, 3), dtype=torch.uint8, device=device)
        return _time_steps(PretrainObjective(net, images), len(images), batch, steps, device), 0.0
    _, backbone, width, res, dense, batch = key
    batch = _measured_batch(batch, backbone, width, res, device)
    task = get_task("segmentation" if dense else "classification")
    bb = create_backbone(backbone, width=width)
    model = SupervisedModel(bb, task.head(bb.out_dim), dense).to(device).to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (batch * 2, res, res, 3), dtype=torch.uint8, device=device)
    shape = (len(images), res // 8, res // 8) if dense else (len(images),)
    targets = torch.zeros(shape, dtype=torch.long, device=device)
    train = _time_steps(
        SupervisedObjective(model, task, images, targets, pad=res // 8), len(images), batch, steps, device
    )
    return train, _time_forward(model, res, batch, device)


def _measure_render(set_name: str, resolution: int, samples: int, denoise: str, n: int = 3) -> float:
    """Seconds per image of a Blender worker (every core as Cycles threads), after one warm-up image."""
    from .render import measure_render_worker

    ctx = mp.get_context("spawn")  # bpy lives only in the worker
    try:
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            return pool.submit(measure_render_worker, set_name, resolution, Quality(samples, denoise), n).result()
    except BrokenProcessPool:
        raise UserError(
            "the render measurement's Blender worker died (is bpy installed with its system "
            "libraries? run scripts/setup.sh)"
        ) from None


def measure(jobs: list[Job], progress: Callable[[str], None] = lambda msg: None, steps: int = 2) -> Estimate:
    """Seconds per image for every distinct cost key of ``jobs`` on this machine's device."""
    from .train import default_device

    device = default_device()
    est = Estimate(jobs, device=str(device))
    for key in dict.fromkeys(j.key for j in jobs):
        progress(" ".join(map(str, key)))
        if key[0] == "none":
            est.seconds_per_image[key] = (0.0, 0.0)
        elif key[0] == "render":
            est.seconds_per_image[key] = (_measure_render(*key[1:]), 0.0)
        else:
            import torch

            try:
                est.seconds_per_image[key] = _measure_training(key, device, steps)
            except torch.OutOfMemoryError:
                raise UserError(
                    f"{' '.join(map(str, key))}: one training step does not fit in {device} memory; "
                    "lower that stage's batch_size"
                ) from None
    return est


# ---------------------------------------------------------------- profiles


def profiles(root: str | Path = ".") -> dict[str, Path]:
    folder = Path(root) / PROFILES
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def current_profile(root: str | Path = ".") -> str | None:
    """The profile ``params.yaml`` is a copy of, if any."""
    params = Path(root) / "params.yaml"
    if not params.is_file():
        return None
    return next((name for name, p in profiles(root).items() if filecmp.cmp(p, params, shallow=False)), None)


def use_profile(name: str, root: str | Path = ".", force: bool = False) -> Path | None:
    """Copy ``profiles/NAME.yaml`` over ``params.yaml``. Edits in params.yaml that are in no profile
    are kept: without ``force`` that is an error; with it they go to ``params.yaml.bak`` (returned)."""
    found = profiles(root)
    if name not in found:
        raise UserError(f"unknown profile {name!r}: choose from {', '.join(found) or '(no profiles/ folder here)'}")
    params = Path(root) / "params.yaml"
    backup = None
    if params.is_file() and current_profile(root) is None:
        if not force:
            raise UserError(
                "params.yaml has edits that are in no profile: save them as profiles/NAME.yaml, "
                "or pass --force to move them to params.yaml.bak"
            )
        backup = params.with_name("params.yaml.bak")
        shutil.copyfile(params, backup)
    load_params(found[name])
    tmp = params.with_name("params.yaml.tmp")
    shutil.copyfile(found[name], tmp)
    tmp.replace(params)
    return backup
