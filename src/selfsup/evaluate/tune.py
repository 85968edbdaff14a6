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
run (made by the worker that created the study). The best parameters go to ``OUT/best_params.json``
(:mod:`selfsup.evaluate.tuned`), which ``selfsup finetune --params-file`` reads. "Study" in this module is
always an Optuna study (the whole DVC study is :mod:`selfsup.pipeline.plan`'s).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from selfsup.core import checks, stores, tracking
from selfsup.core.defaults import DEFAULT_BACKBONE, DEFAULT_COLOUR, DEFAULT_WIDTH, SCRATCH
from selfsup.core.errors import Diverged, UserError
from selfsup.core.provenance import sqlite_init_lock
from selfsup.evaluate.finetune import FinetuneConfig, check_config, parse_protocol, train_model
from selfsup.evaluate.sweep import prepare
from selfsup.evaluate.tuned import write_best
from selfsup.train.schedule import SCHEDULES, check_schedule

if TYPE_CHECKING:
    from selfsup.pretrain.run import PretrainConfig
SPACE = {"lr": (1e-4, 1e-2), "weight_decay": (1e-6, 1e-2), "schedule": tuple(SCHEDULES)}


STORAGE_HINT = (
    "start the database server, or give another --storage (a journal file ending in .log works on a shared disk)"
)


def storage_for(storage: str | None, out: Path) -> optuna.storages.BaseStorage | str:
    """``None`` → SQLite in OUT; a URL → that database; a path ending in .log → a journal file. Checked
    before any data is read: an SQLite file or journal like ``--out`` (its folder must exist), a database
    for its driver and, with a server, one connection bounded in time (a server that is down is an error
    in seconds)."""
    if storage is None:
        return f"sqlite:///{(out / 'optuna.db').resolve()}"
    if "://" in storage:
        url = stores.check_database_url(storage, "Optuna storage")
        if url.startswith("sqlite"):
            return url
        stores.check_database_server(url, "Optuna storage", STORAGE_HINT)
        return optuna.storages.RDBStorage(url, engine_kwargs=stores.engine_kwargs(url))
    if storage.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        checks.store_file(storage, f"Optuna journal {storage!r}")
        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    raise UserError(
        f"unknown Optuna storage {storage!r}: give a database URL (sqlite:///..., postgresql://...) "
        "or a journal file path ending in .log"
    )


def suggest(trial: optuna.Trial, base):
    """``base`` (a ``FinetuneConfig`` or ``PretrainConfig``) with a sampled lr, weight decay and schedule."""
    return replace(
        base,
        lr=trial.suggest_float("lr", *SPACE["lr"], log=True),
        weight_decay=trial.suggest_float("weight_decay", *SPACE["weight_decay"], log=True),
        schedule=trial.suggest_categorical("schedule", SPACE["schedule"]),
    )


def tune(
    task: str,
    data: str | Path,
    out: str | Path,
    init: str | Path | None = None,
    budget: int = 100,
    trials: int = 20,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    protocol: str = "finetune",
    config: FinetuneConfig = FinetuneConfig(),
    progress: bool = True,
) -> dict:
    """Run (or join) the study; returns and writes the best parameters when the study is complete."""
    checks.numbers(trials=trials, budget=budget, seed=seed)
    check_config(config)
    frozen = parse_protocol(protocol)
    out = checks.output_folder(out)
    store = storage_for(storage, out)  # a bad URL fails before any data is read
    sweep = prepare(task, data, init, [budget], [seed], DEFAULT_BACKBONE, DEFAULT_WIDTH, DEFAULT_COLOUR)
    out.mkdir(parents=True, exist_ok=True)
    name = study_name or f"{sweep.method}-{task}-{protocol}-n{budget}"
    if trials == 0:  # nothing to search: the configured values are the answer
        return write_best(
            out,
            name,
            trials,
            None,
            {"lr": config.lr, "weight_decay": config.weight_decay, "schedule": config.schedule},
            {},
        )
    params = {
        "task": task,
        "method": sweep.method,
        "protocol": protocol,
        "budget": budget,
        "trials": trials,
        "study": name,
        "storage": str(storage or "sqlite (OUT/optuna.db)"),
        **asdict(config),
    }
    metric = sweep.task.metric
    tags = {"method": sweep.method, "task": task}

    def run_trial(trial: optuna.Trial, parent_id: str) -> float:
        cfg = suggest(trial, config)
        with tracking.run(
            "trial",
            {**trial.params, "trial": trial.number},
            sweep.ds,
            tags={**tags, "trial": trial.number},
            run_name=f"trial-{trial.number}",
            parent_run_id=parent_id,
        ):
            last = [math.nan]

            def report(epoch: int, val: dict) -> None:
                last[0] = val[metric]
                _tell_pruner(trial, val[metric], epoch)

            train_model(sweep, budget, seed, frozen, "frozen" if frozen else "train", cfg, None, on_val=report)
            tracking.log_metrics({f"val_{metric}": last[0]})
            return last[0]

    return _run_optuna_study(out, name, store, seed, trials, params, sweep.ds, tags, run_trial, metric)


def tune_pretrain(
    base: PretrainConfig,
    data: str | Path,
    out: str | Path,
    trials: int = 20,
    storage: str | None = None,
    study_name: str | None = None,
) -> dict:
    """Tune pretraining ``base``: learning rate, weight decay, schedule and the method's own knobs
    (``Method.knobs``), scored by an online linear probe's accuracy on the val split after every
    epoch (pruned by the median rule); ``base.seed`` also seeds the sampler. Trials pretrain into
    ``OUT/trials/N`` (deleted when done); each is an MLflow pretrain run nested under the study's run.
    ``best_params.json`` feeds ``selfsup pretrain --params-file``."""
    import shutil

    from selfsup.data.dataset import load_dataset
    from selfsup.pretrain.methods import METHODS, method_knobs
    from selfsup.pretrain.run import pretrain

    checks.numbers(trials=trials)
    base.check()
    check_schedule(base.schedule)
    method, seed = base.method, base.seed
    if method == SCRATCH:
        raise UserError("scratch has nothing to pretrain: tune its finetuning (selfsup tune without --pretrain)")
    METHODS.get(method)
    ds = load_dataset(data)
    if ds.set_name != "single":
        raise UserError(
            f"pretraining is scored by a linear probe of the class: {str(data)!r} is a {ds.set_name}-object dataset"
        )
    out = checks.output_folder(out)
    store = storage_for(storage, out)
    tracking.check_store()
    out.mkdir(parents=True, exist_ok=True)
    backbone = base.backbone or DEFAULT_BACKBONE
    name = study_name or f"pretrain-{method}-{backbone}"
    knobs = method_knobs(method)
    if trials == 0:
        return write_best(
            out, name, trials, None, {"lr": base.lr, "weight_decay": base.weight_decay, "schedule": base.schedule}, {}
        )
    params = {
        "method": method,
        "trials": trials,
        "study": name,
        "epochs": base.epochs,
        "batch_size": base.batch_size,
        "width": base.width,
        "backbone": backbone,
        "storage": str(storage or "sqlite (OUT/optuna.db)"),
    }
    tags = {"method": method, "task": "pretrain"}

    def run_trial(trial: optuna.Trial, parent_id: str) -> float:
        kwargs = {}
        for knob, (low, high, scale) in knobs.items():
            kwargs[knob] = (
                trial.suggest_int(knob, int(low), int(high))
                if scale == "int"
                else trial.suggest_float(knob, low, high, log=scale == "log")
            )
        cfg = replace(suggest(trial, base), method_kwargs=kwargs, online_probe=True)
        folder = out / "trials" / str(trial.number)
        last = [math.nan]

        def tell(epoch: int, logs: dict) -> None:
            last[0] = logs["probe_val_acc"]
            _tell_pruner(trial, last[0], epoch)

        try:
            pretrain(
                cfg,
                data,
                folder,
                progress=False,
                on_epoch_cb=tell,
                parent_run_id=parent_id,
                run_name=f"trial-{trial.number}",
                replace=True,
                register=False,  # a trial's throw-away backbone is no model version
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return last[0]

    return _run_optuna_study(out, name, store, seed, trials, params, ds, tags, run_trial, "probe_acc")


def _tell_pruner(trial: optuna.Trial, value: float, epoch: int) -> None:
    """Give the pruner this epoch's validation value; stop the trial if it falls behind."""
    trial.report(value, epoch)
    if trial.should_prune():
        tracking.set_tags({"optuna_state": "pruned"})
        raise optuna.TrialPruned()


def _run_optuna_study(
    out: Path,
    name: str,
    store,
    seed: int,
    trials: int,
    params: dict,
    dataset,
    tags: dict,
    run_trial,
    metric: str,
) -> dict:
    """Create or join study ``name`` in storage ``store`` (from :func:`storage_for`), work on it until it
    has ``trials`` trials, write the best."""
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    with sqlite_init_lock(store if isinstance(store, str) else ""):  # workers starting together on a new file
        try:
            try:
                study = optuna.create_study(
                    study_name=name, storage=store, direction="maximize", sampler=sampler, pruner=pruner
                )
                creator = True
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)
                creator = False
        except SQLAlchemyError as e:
            shown = stores.shown(store) if isinstance(store, str) else "the storage"
            reason = str(e.orig if getattr(e, "orig", None) else e).splitlines()[0]
            raise UserError(f"cannot open Optuna storage {shown!r}: {reason}") from None
    if creator:
        with tracking.run("tune", params, dataset, tags=tags, run_name=f"tune-{name}") as parent:
            study.set_user_attr("mlflow_run_id", parent.info.run_id)
            _work(study, trials, parent.info.run_id, run_trial)
    else:
        _work(study, trials, _wait_for_attr(study, "mlflow_run_id"), run_trial)
    done = [t for t in study.get_trials(deepcopy=False) if t.number < trials]
    states = {s.name.lower(): sum(t.state == s for t in done) for s in optuna.trial.TrialState}
    states["diverged"] = sum("diverged" in t.user_attrs for t in done)  # (counted among the pruned)
    finished = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise UserError(f"study {name!r}: no trial finished (states {states})")
    best = max(finished, key=lambda t: t.value)
    return write_best(out, name, trials, best.value, best.params, states, metric)


def _wait_for_attr(study: optuna.Study, key: str, timeout: float = 60.0) -> str:
    t0 = time.monotonic()
    while key not in study.user_attrs:
        if time.monotonic() - t0 > timeout:
            raise UserError(f"study {study.study_name!r} has no {key} after {timeout:.0f} s: its creator died early")
        time.sleep(0.5)
    return study.user_attrs[key]


def _work(study: optuna.Study, trials: int, parent_id: str, run_trial) -> None:
    """Ask for trials until the study's trial numbers pass ``trials``."""
    while True:
        trial = study.ask()
        if trial.number >= trials:
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        try:
            value = run_trial(trial, parent_id)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        except Diverged as e:  # pruned (never best), and said so in the trial and in best_params.json
            trial.set_user_attr("diverged", str(e))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, value)
