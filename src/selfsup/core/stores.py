"""The stores a run writes to that a URL names (the MLflow tracking store, an Optuna storage), checked
before any work: a file path must be usable (:func:`selfsup.core.checks.store_file`), a database needs
its driver, and a server must answer within seconds, not after minutes of retries.

Each check is a one-line :class:`~selfsup.core.errors.UserError` naming the URL (never its password)
and what to do.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from selfsup.core import checks
from selfsup.core.errors import UserError

CONNECT_TIMEOUT_S = 5  # per attempt: what a server that is up answers well within
DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "psycopg[binary]",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
    "pg8000": "pg8000",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}
# the connect-timeout argument of each DB-API driver (seconds)
CONNECT_TIMEOUT_ARG = {
    "psycopg2": "connect_timeout",
    "psycopg": "connect_timeout",
    "pymysql": "connect_timeout",
    "mysqldb": "connect_timeout",
    "pg8000": "timeout",
}


def shown(url: str) -> str:
    """The URL as messages show it: without a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def check_database_url(url: str, what: str) -> str:
    """A database URL SQLAlchemy can use here: a known scheme and an installed driver (else a one-line
    error that names the package to install); an SQLite file is checked like ``--out``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(
            f"invalid {what} URL {url.split('@')[-1]!r}: give e.g. sqlite:///optuna.db or "
            "postgresql://user:password@host/db"
        ) from None
    show = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise UserError(
            f"unknown database scheme {parsed.drivername!r} in {what} {show!r}: use sqlite, "
            "postgresql or mysql (or a journal file ending in .log)"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        module = (getattr(e, "name", None) or str(e)).split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        raise UserError(
            f"{what} {show!r} needs the database driver {module}, which is not installed: pip install {package}"
        ) from None
    db = checks.sqlite_path(url)
    if db is not None:
        checks.sqlite_file(db, f"{what} {show!r}")
    return url


# a driver's further timeouts for the check's own connection only (a server that accepts the connection
# but never answers); the storage's connections keep no read timeout, a long query is not a dead server
CHECK_TIMEOUT_ARGS = {"pymysql": ("read_timeout", "write_timeout"), "mysqldb": ("read_timeout", "write_timeout")}


def engine_kwargs(url: str, check: bool = False) -> dict:
    """SQLAlchemy engine arguments that bound a connection attempt to :data:`CONNECT_TIMEOUT_S` (with
    ``check``: every read and write of the connection too)."""
    from sqlalchemy.engine import make_url

    driver = make_url(url).get_dialect().driver
    args = [CONNECT_TIMEOUT_ARG[driver]] if driver in CONNECT_TIMEOUT_ARG else []
    args += list(CHECK_TIMEOUT_ARGS.get(driver, ())) if check else []
    return {"connect_args": {a: CONNECT_TIMEOUT_S for a in args}} if args else {}


def check_database_server(url: str, what: str, hint: str) -> None:
    """One connection to the database server of ``url`` (not SQLite), bounded in time: a server that is
    down or unreachable is a one-line error now, not a traceback or a wait."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    if url.startswith("sqlite"):
        return
    engine = create_engine(url, **engine_kwargs(url, check=True))
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as e:
        reason = " ".join(str(getattr(e, "orig", None) or e).split())[:200]
        raise UserError(f"{what} {shown(url)!r} is not reachable ({reason}): {hint}") from None
    finally:
        engine.dispose()
