"""The ``selfsup`` command line: thin shells over the library API (render, pretrain, finetune, probe, report).

Bad input prints one line (``error: ...``) and exits with status 2; nothing already written is touched.

May import: core, data, models, train, pretrain, evaluate, analyse, report, pipeline.
"""

from __future__ import annotations

import importlib
import sys

from selfsup.cli.app import app
from selfsup.core.errors import UserError

__all__ = ["app", "main"]

# one module per command, registered on `app` in this order (the order of `selfsup --help`); a stage of
# dvc.yaml depends on its command's module, not on the others
COMMANDS = (
    "render",
    "import",
    "pretrain",
    "finetune",
    "probe",
    "readout",
    "verify",
    "tune",
    "report",
    "profile",
    "study",
)
for _name in COMMANDS:
    importlib.import_module(f"selfsup.cli.{_name}")


def _usage_message(e, argv: list[str]) -> str:
    """Typer's message on one line, with the offending value when an option got a bad one."""
    msg = " ".join(e.format_message().split())
    param = getattr(e, "param", None)
    for opt in getattr(param, "opts", []) or []:
        for i, arg in reversed(list(enumerate(argv))):  # a repeated option: the last one counts
            if arg == opt and i + 1 < len(argv):
                return f"{msg} (got {argv[i + 1]!r})"
            if arg.startswith(opt + "="):
                return f"{msg} (got {arg.split('=', 1)[1]!r})"
    return msg


def _fail(message: str, code: int) -> None:
    """Print the one-line error and leave at once. Every stage's files and MLflow runs are closed by
    then (their ``with`` blocks have exited); skipping the interpreter's teardown avoids a race of
    native thread pools at exit that once in a few runs aborted a finished error path with
    "terminate called without an active exception" (exit 134 instead of 2)."""
    import os

    print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors for bad input, exit status 2."""
    from typer.exceptions import Abort, Exit, TyperException

    argv = sys.argv[1:] if argv is None else argv
    try:
        app(args=argv or ["--help"], standalone_mode=False, prog_name="selfsup")
    except UserError as e:
        _fail(f"error: {' '.join(str(e).split())}", 2)
    except TyperException as e:  # bad option, missing option, wrong type
        _fail(f"error: {_usage_message(e, argv)}", 2)
    except Exit as e:
        sys.exit(e.exit_code)
    except (Abort, KeyboardInterrupt):
        _fail("error: interrupted", 130)
    except Exception as e:  # a bug, not bad input: still one line (SELFSUP_DEBUG=1 shows the traceback)
        import os

        if os.environ.get("SELFSUP_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        if type(e).__module__.startswith("mlflow"):  # the tracking server refused (login, network): not a bug
            where = os.environ.get("MLFLOW_TRACKING_URI", "the local MLflow store")
            _fail(f"error: MLflow tracking at {where}: {' '.join(str(e).split())}", 2)
        _fail(
            f"error: internal error {type(e).__name__}: {first} (please report it; SELFSUP_DEBUG=1 shows the "
            "traceback)",
            1,
        )


if __name__ == "__main__":
    main()
