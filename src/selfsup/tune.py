"""Hyperparameter search with Optuna: one study per (method, task, budget tier).

A trial finetunes one cell (the tier's label budget, one seed) with sampled learning rate, weight
decay and schedule, reports the validation metric (held-out models, never test) after every epoch
so the median pruner can stop poor trials, and returns the last one. TPE proposes the parameters.

Several workers (processes or machines) share a study through its storage: an SQLite file by
default (``OUT/optuna.db``), any database URL (``postgresql://...``), or a journal file (a path
ending in ``.log``, safe on shared file systems). The study stops at exactly ``trials`` trials
however many workers run it: trial numbers come from the storage, and a worker that draws a number
past the end marks that trial failed (user attribute ``over_budget``) and stops, so scratch and
every method get the same number of trials. Each trial is an MLflow run nested under the study's
run (made by the worker that created the study). The best parameters go to ``OUT/best_params.json``,
which ``selfsup finetune --params-file`` reads.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import optuna

from . import tracking
from .errors import UserError
from .finetune import FinetuneConfig, check_config, parse_protocol, prepare, train_model
from .provenance import atomic_write_json
from .schedule import SCHEDULES

BEST_FILE = "best_params.json"
SPACE = {"lr": (1e-4, 1e-2), "weight_decay": (1e-6, 1e-2), "schedule": tuple(SCHEDULES)}


def storage_for(storage: str | None, out: Path) -> optuna.storages.BaseStorage | str:
    """``None`` → SQLite in OUT; a URL → that database; a path ending in .log → a journal file."""
    if storage is None:
        return f"sqlite:///{(out / 'optuna.db').resolve()}"
    if "://" in storage:
        return storage
    if storage.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    raise UserError(f"unknown Optuna storage {storage!r}: give a database URL (sqlite:///..., postgresql://...) "
                    "or a journal file path ending in .log")


def suggest(trial: optuna.Trial, base: FinetuneConfig) -> FinetuneConfig:
    return replace(base, lr=trial.suggest_float("lr", *SPACE["lr"], log=True),
                   weight_decay=trial.suggest_float("weight_decay", *SPACE["weight_decay"], log=True),
                   schedule=trial.suggest_categorical("schedule", SPACE["schedule"]))


def tune(task: str, data: str | Path, out: str | Path, init: str | Path | None = None, budget: int = 100,
         trials: int = 20, seed: int = 0, storage: str | None = None, study_name: str | None = None,
         protocol: str = "finetune", config: FinetuneConfig = FinetuneConfig(), progress: bool = True) -> dict:
    """Run (or join) the study; returns and writes the best parameters when the study is complete."""
    if trials < 0:
        raise UserError(f"invalid number of trials {trials}: must be ≥ 0")
    check_config(config)
    frozen = parse_protocol(protocol)
    sweep = prepare(task, data, init, [budget], [seed], "resnet9", 0.25, "rgb")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = study_name or f"{sweep.method}-{task}-{protocol}-n{budget}"
    if trials == 0:  # nothing to search: the configured values are the answer
        return _write_best(out, name, trials, None, {"lr": config.lr, "weight_decay": config.weight_decay,
                                                    "schedule": config.schedule}, {})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage_for(storage, out)
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    metric = sweep.task.metric
    try:
        study = optuna.create_study(study_name=name, storage=store, direction="maximize", sampler=sampler,
                                    pruner=pruner)
        creator = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)
        creator = False
    params = {"task": task, "method": sweep.method, "protocol": protocol, "budget": budget, "trials": trials,
              "study": name, "storage": str(storage or "sqlite (OUT/optuna.db)"), **asdict(config)}
    if creator:
        with tracking.run("tune", params, sweep.ds.dataset_hash, tags={"method": sweep.method, "task": task},
                          run_name=f"tune-{name}") as parent:
            study.set_user_attr("mlflow_run_id", parent.info.run_id)
            _work(study, sweep, frozen, budget, seed, trials, config, metric, parent.info.run_id)
    else:
        parent_id = _wait_for_attr(study, "mlflow_run_id")
        _work(study, sweep, frozen, budget, seed, trials, config, metric, parent_id)
    done = [t for t in study.get_trials(deepcopy=False) if t.number < trials]
    states = {s.name.lower(): sum(t.state == s for t in done) for s in optuna.trial.TrialState}
    finished = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise UserError(f"study {name!r}: no trial finished (states {states})")
    best = max(finished, key=lambda t: t.value)
    return _write_best(out, name, trials, best.value, best.params, states, metric)


def _wait_for_attr(study: optuna.Study, key: str, timeout: float = 60.0) -> str:
    t0 = time.monotonic()
    while key not in study.user_attrs:
        if time.monotonic() - t0 > timeout:
            raise UserError(f"study {study.study_name!r} has no {key} after {timeout:.0f} s: its creator died early")
        time.sleep(0.5)
    return study.user_attrs[key]


def _work(study, sweep, frozen, budget, seed, trials, config, metric, parent_id) -> None:
    """Ask for trials until the study's trial numbers pass ``trials``."""
    while True:
        trial = study.ask()
        if trial.number >= trials:
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        cfg = suggest(trial, config)
        tags = {"trial": trial.number, "method": sweep.method, "task": sweep.task.name}
        try:
            with tracking.run("trial", {**trial.params, "trial": trial.number}, sweep.ds.dataset_hash, tags=tags,
                              run_name=f"trial-{trial.number}", parent_run_id=parent_id):
                last = [math.nan]

                def report(epoch: int, val: dict) -> None:
                    last[0] = val[metric]
                    trial.report(val[metric], epoch)
                    if trial.should_prune():
                        tracking.set_tags({"optuna_state": "pruned"})
                        raise optuna.TrialPruned()

                train_model(sweep, budget, seed, frozen, "frozen" if frozen else "train", cfg, None, on_val=report)
                value = last[0]
                tracking.log_metrics({f"val_{metric}": value})
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, value)


def _write_best(out: Path, name: str, trials: int, value, params: dict, states: dict, metric: str = "") -> dict:
    best = {"study": name, "trials": trials, "trial_states": states, "metric": f"val_{metric}" if metric else "",
            "best_value": value, "params": params}
    atomic_write_json(out / BEST_FILE, best)
    return best


def read_best(path: str | Path, base: FinetuneConfig) -> FinetuneConfig:
    """``base`` with the lr, weight decay and schedule of a ``best_params.json``."""
    import json

    path = Path(path)
    try:
        params = json.loads(path.read_text())["params"]
        return replace(base, lr=float(params["lr"]), weight_decay=float(params["weight_decay"]),
                       schedule=str(params["schedule"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read tuned parameters from {str(path)!r}: {e!r}") from None
