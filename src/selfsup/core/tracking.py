"""MLflow bookkeeping shared by every stage: params, tags (git commit, dataset hash), metrics, the
dataset each run read (an MLflow dataset input) and the pretrained backbones (the Model Registry).

The tracking store is MLflow's default (``sqlite:///mlflow.db`` in the working directory, no
server needed) unless ``MLFLOW_TRACKING_URI`` points elsewhere. Runs go to the experiment
``selfsup`` unless ``MLFLOW_EXPERIMENT_NAME`` says otherwise. Under ``mlflow run`` the stage
logs into the run that ``mlflow run`` created. ``SELFSUP_TRACKING=off`` turns tracking off (nothing is
logged or registered, MLflow is not imported): for machines without MLflow, such as the GPU check.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
from collections.abc import Iterator

import pandas as pd

from selfsup.core import checks, stores
from selfsup.core.errors import Diverged, UserError
from selfsup.core.provenance import git_commit, sqlite_init_lock

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # two lines per (cell) run on a server
DEFAULT_EXPERIMENT = "selfsup"
# MLflow 3's UI opens an experiment on its GenAI overview unless this tag says it trains models
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
MODEL_ARTIFACTS = "backbone"  # the run's artifact folder a registered model version points at


def enabled() -> bool:
    """Whether runs are tracked (``SELFSUP_TRACKING=off`` says no)."""
    return os.environ.get("SELFSUP_TRACKING", "on").lower() not in ("off", "0", "false", "no")


def _mlflow():
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep stage output readable
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return mlflow


# MLflow's own request settings for the check at start: one retry, 3 s a request (its defaults retry with
# back-off for minutes, so a typo in the URI or a server that is down looked like a hang): at most
# 3 + 1 + 3 s for a server that accepts connections but never answers
CHECK_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
}
STORE_HINT = "start the server, or set MLFLOW_TRACKING_URI to a local store such as sqlite:///mlflow.db"
_checked: set[str] = set()


def _short_reason(e: Exception) -> str:
    text = " ".join(str(getattr(e, "message", None) or e).split())
    for pattern in (r"\[Errno -?\d+\] ([^'\")]+)", r"(timed out)", r"(Name or service not known)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip()
    return text[:160]


def check_store() -> None:
    """Check the tracking store once per process, before a stage does any work: a server must answer
    within seconds (:data:`CHECK_SETTINGS`), an SQLite file or a store folder must be usable, a database
    needs its driver and must answer. Else a one-line error naming the URI and what to do."""
    if not enabled():
        return
    uri = _mlflow().get_tracking_uri()
    if uri in _checked:
        return
    what = f"MLflow tracking store {stores.shown(uri)!r} (MLFLOW_TRACKING_URI)"
    scheme = uri.split(":", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        saved = {k: os.environ.get(k) for k in CHECK_SETTINGS}
        os.environ.update(CHECK_SETTINGS)
        try:
            _mlflow().MlflowClient(uri).search_experiments(max_results=1)
        except Exception as e:  # refused or timed out; or it answered with an error (a login refused)
            text = " ".join(str(getattr(e, "message", None) or e).split())
            if "failed with error code" in text or "RestException" in type(e).__name__:
                raise UserError(f"MLflow tracking at {stores.shown(uri)}: {text}") from None
            raise UserError(
                f"MLflow tracking server {stores.shown(uri)!r} is not reachable ({_short_reason(e)}): {STORE_HINT}"
            ) from None
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    elif scheme == "sqlite":
        db = checks.sqlite_path(uri)
        if db is not None:
            checks.sqlite_file(db, what)
    elif scheme in ("file", ""):
        checks.output_folder(uri[len("file://") :] if scheme else uri, what)
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        stores.check_database_url(uri, what)
        stores.check_database_server(uri, what, STORE_HINT)
    if scheme not in ("http", "https", "databricks"):  # then open it (a file that is no database, a scheme
        try:  # MLflow has no store for) as the stage would, before the stage does any work
            with sqlite_init_lock(uri):  # (a fresh SQLite store is created here, as the first run would)
                _mlflow().MlflowClient(uri).search_experiments(max_results=1)
        except Exception as e:
            text = " ".join(str(getattr(e, "message", None) or e).split())
            raise UserError(f"MLflow tracking at {stores.shown(uri)}: {text}") from None
    _checked.add(uri)


@contextlib.contextmanager
def run(
    stage: str,
    params: dict,
    dataset=None,
    tags: dict | None = None,
    nested: bool = False,
    run_name: str | None = None,
    parent_run_id: str | None = None,
) -> Iterator[object]:
    """An MLflow run for one stage (or a nested child run) with params and provenance tags.
    ``dataset`` (a :class:`selfsup.data.dataset.Dataset`) is logged as the run's dataset input and tags
    ``dataset_hash``. ``parent_run_id`` nests the run under a run of another process (a shared Optuna
    study's run). With tracking off: ``None``, and nothing is logged."""
    if not enabled():
        yield None
        return
    mlflow = _mlflow()
    active = mlflow.active_run()
    if parent_run_id and active is not None and active.info.run_id == parent_run_id:
        nested, parent_run_id = True, None  # the parent is this process's own active run
    if not nested and active is None and "MLFLOW_RUN_ID" not in os.environ:
        # resolve the experiment by name against the current tracking URI every time: mlflow caches the
        # last experiment id (also in MLFLOW_EXPERIMENT_ID), which is wrong once the tracking URI changes
        with sqlite_init_lock(mlflow.get_tracking_uri()):
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT))
    with mlflow.start_run(
        run_name=run_name, nested=nested, tags={"mlflow.parentRunId": parent_run_id} if parent_run_id else None
    ) as active:
        if not nested:  # also under `mlflow run`, which made the experiment itself
            client = mlflow.MlflowClient()
            if client.get_experiment(active.info.experiment_id).tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
                client.set_experiment_tag(active.info.experiment_id, *EXPERIMENT_KIND)
        commit = git_commit()
        all_tags = {"stage": stage, "host": platform.node(), **(tags or {})}
        if commit:
            all_tags.update({"git_commit": commit, "mlflow.source.git.commit": commit})
        if dataset is not None:
            all_tags["dataset_hash"] = dataset.dataset_hash
            log_dataset(dataset)
        mlflow.set_tags({k: str(v) for k, v in all_tags.items()})
        # under `mlflow run` the run already holds the entry point's parameters; MLflow forbids changing them
        existing = mlflow.get_run(active.info.run_id).data.params
        mlflow.log_params({k: str(v) for k, v in params.items() if k not in existing})
        try:
            yield active
        except Diverged as e:  # the run ends FAILED (MLflow's exit); the tag says why
            mlflow.set_tag("diverged", str(e)[:4000])
            raise


def log_dataset(ds, context: str = "training") -> None:
    """Record dataset ``ds`` (a :class:`selfsup.data.dataset.Dataset`) as an input of the active run: name =
    set and variant, digest = the dataset hash, source = the folder as the stage was given it (the DVC
    path in the pipeline)."""
    if not enabled():
        return
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    source = LocalArtifactDatasetSource(str(ds.path))
    dataset = MetaDataset(source, name=f"{ds.set_name} {ds.variant}", digest=ds.dataset_hash)
    _mlflow().log_input(dataset, context=context)


def tracking_uri() -> str:
    """The current tracking store's URI, a relative sqlite path made absolute."""
    uri = _mlflow().get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
    return uri


def register_model(name: str, files: list, tags: dict) -> int:
    """Log ``files`` under the active run's ``backbone/`` artifacts and register them as a new version
    of model ``name`` (created on first use) with lineage ``tags``; returns the version number."""
    mlflow = _mlflow()
    for f in files:
        mlflow.log_artifact(str(f), MODEL_ARTIFACTS)
    active = mlflow.active_run()
    client = mlflow.MlflowClient()
    with contextlib.suppress(mlflow.exceptions.MlflowException):  # it exists (any other fault: the next call)
        client.create_registered_model(name, description="selfsup pretrained backbones (meta.json says how)")
    version = client.create_model_version(
        name,
        source=f"{active.info.artifact_uri}/{MODEL_ARTIFACTS}",
        run_id=active.info.run_id,
        tags={k: str(v) for k, v in tags.items()},
    )
    return int(version.version)


def download_model(uri: str, dst: str) -> str:
    """The files of model version ``uri`` (``models:/NAME/VERSION``) of the current tracking store,
    downloaded into folder ``dst``; an unknown name or version is a one-line error."""
    mlflow = _mlflow()
    try:
        return mlflow.artifacts.download_artifacts(uri, dst_path=dst)
    except mlflow.exceptions.MlflowException as e:
        raise UserError(f"--init {uri!r}: {str(e.message).splitlines()[0]}") from None


def set_tags(tags: dict) -> None:
    if not enabled():
        return
    _mlflow().set_tags({k: str(v) for k, v in tags.items()})


def log_params(params: dict) -> None:
    if not enabled():
        return
    _mlflow().log_params({k: str(v) for k, v in params.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    if not enabled():
        return
    _mlflow().log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_artifact(path, artifact_path: str | None = None) -> None:
    if not enabled():
        return
    _mlflow().log_artifact(str(path), artifact_path)


def experiment_runs(experiment: str | None = None) -> pd.DataFrame:
    """Every ended run (finished, failed or killed: ``status``) of ``experiment`` (default:
    ``MLFLOW_EXPERIMENT_NAME`` or ``selfsup``) in the current tracking store, one row per run:
    ``run_id``, ``parent_id``, ``stage``, ``run_name``, ``start``, ``wall_s``, tags as ``tag.*``,
    params as ``param.*``, metrics as ``metric.*``. Empty when the experiment does not exist."""
    mlflow = _mlflow()
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    exp = mlflow.MlflowClient().get_experiment_by_name(name)
    if exp is None:
        return pd.DataFrame(columns=["run_id", "status", "parent_id", "stage", "run_name", "start", "wall_s"])
    rows = []
    for r in mlflow.MlflowClient().search_runs([exp.experiment_id], max_results=50000):
        if r.info.status == "RUNNING":
            continue
        tags = r.data.tags
        rows.append(
            {
                "run_id": r.info.run_id,
                "status": r.info.status,
                "parent_id": tags.get("mlflow.parentRunId"),
                "stage": tags.get("stage"),
                "run_name": r.info.run_name,
                "start": pd.Timestamp(r.info.start_time, unit="ms"),
                "wall_s": (r.info.end_time - r.info.start_time) / 1000 if r.info.end_time else float("nan"),
                **{f"tag.{k}": v for k, v in tags.items() if not k.startswith("mlflow.")},
                **{f"param.{k}": v for k, v in r.data.params.items()},
                **{f"metric.{k}": v for k, v in r.data.metrics.items()},
            }
        )
    return pd.DataFrame(rows)
