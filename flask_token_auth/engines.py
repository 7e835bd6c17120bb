"""Database engines: the URLs operators write, safe options, and what a driver error means."""

from __future__ import annotations

import logging
from importlib.util import find_spec
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.mysql import mariadb
from sqlalchemy.engine import make_url

from .errors import AuthError
from .errors import SchemaMissing
from .errors import TemporarilyUnavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000
_PSYCOPG = ("sqlalchemy.dialects.postgresql.psycopg", "dialect")
_PSYCOPG2 = ("sqlalchemy.dialects.postgresql.psycopg2", "dialect")
_PYMYSQL = ("sqlalchemy.dialects.mysql.pymysql", "dialect")
# PostgreSQL's SQLSTATE and MariaDB's error number for "no such table".
_POSTGRES_UNDEFINED_TABLE = "42P01"
_MYSQL_NO_SUCH_TABLE = 1146
# Serialisation failure and deadlock: PostgreSQL's SQLSTATEs, MariaDB's error number.
_POSTGRES_CONFLICTS = frozenset({"40001", "40P01"})
_MYSQL_DEADLOCK = 1213
# MariaDB's client library numbers its own errors (no server, lost connection) from 2000.
_MYSQL_CLIENT_ERRORS = range(2000, 3000)
logger = logging.getLogger(__name__)


def register_url_schemes() -> None:
    """Let SQLAlchemy read the URLs operators write with the drivers that are installed.

    `postgres://`, which SQLAlchemy refuses, means psycopg 3 (or psycopg2 if that is the one
    installed). `postgresql://`, `mysql://` and `mariadb://` get psycopg 3 and PyMySQL only
    where their default drivers (psycopg2, mysqlclient) are missing, so a URL that works
    keeps its driver. A process-wide registration in SQLAlchemy's dialect registry, which the
    extension never makes itself: a host that reads such URLs calls it before building its
    engine. Idempotent.
    """
    has_psycopg, has_psycopg2 = _installed("psycopg"), _installed("psycopg2")
    if has_psycopg or has_psycopg2:
        registry.register("postgres", *(_PSYCOPG if has_psycopg else _PSYCOPG2))
    if has_psycopg and not has_psycopg2:
        registry.register("postgresql", *_PSYCOPG)
    if _installed("pymysql") and not _installed("MySQLdb"):
        registry.register("mysql", *_PYMYSQL)
        registry.register("mariadb", __name__, "MariaDBPyMySQL")


def _installed(module: str) -> bool:
    return find_spec(module) is not None


#: The MariaDB dialect over PyMySQL, as `mariadb+pymysql://` gives it.
MariaDBPyMySQL = mariadb.loader("pymysql")


def engine_options(url: str, *, pgbouncer: bool = False) -> dict[str, Any]:
    """`SQLALCHEMY_ENGINE_OPTIONS` that suit the extension on the database of `url`.

    `pgbouncer` (AUTH_PGBOUNCER): PostgreSQL through PgBouncer in transaction pooling, where
    consecutive transactions of one client run on different server connections; on psycopg 3,
    no prepared statements then (`prepare_threshold=None`).
    """
    # Threat: a driver error copying hashes from its SQL parameters into a log line.
    options: dict[str, Any] = {"hide_parameters": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        return options
    if pgbouncer and _driver(parsed) == "psycopg":
        # psycopg prepares a statement after 5 uses on a connection; behind PgBouncer another
        # client's transaction finds it, or misses its own: 500s, and a server message that
        # can quote another statement's parameters.
        options["connect_args"] = {"prepare_threshold": None}
    # READ COMMITTED: a refresh that loses the conditional UPDATE must then see the winner's
    # committed successor (MariaDB's default REPEATABLE READ would hide it).
    return options | {"pool_pre_ping": True, "isolation_level": "READ COMMITTED"}


def _driver(url: sa.URL) -> str:
    """The driver SQLAlchemy gives `url` (`postgresql://` is psycopg 3 only where
    `register_url_schemes` said so)."""
    try:
        return url.get_driver_name()
    except (ImportError, sa_exc.NoSuchModuleError):
        return url.drivername.partition("+")[2]


def configure_sqlite(engine: sa.Engine) -> None:
    """On a SQLite engine, set WAL and a busy timeout on every new connection, so that several
    gunicorn workers share the file without `database is locked`; foreign keys on. Call it
    before the engine's first connection; other engines are left alone."""
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    if cursor.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def database_failure(error: BaseException) -> AuthError | None:
    """What a database error means to a client, logged with its cause; None if it is a bug.

    A missing table is a set-up mistake (run the migrations); a connection that fails, times
    out or deadlocks beyond retry is an outage worth retrying.
    """
    if is_missing_table(error):
        # This message names a table, never a value: shown.
        original = error.orig if isinstance(error, sa_exc.DBAPIError) else error
        logger.error(
            "the auth tables are missing (%s: %s): run `flask db upgrade`",
            describe_database_error(error),
            _first_line(original),
        )
        return SchemaMissing("the server's database is not set up; its operator must migrate it")
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        logger.warning("database unavailable: %s", describe_database_error(error))
        return TemporarilyUnavailable("the database is unavailable; retry shortly")
    return None


def is_missing_table(error: BaseException) -> bool:
    """True for "no such table" on SQLite, PostgreSQL and MariaDB."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    original = error.orig
    if isinstance(error, sa_exc.OperationalError) and "no such table" in str(original):
        return True
    if getattr(original, "sqlstate", None) == _POSTGRES_UNDEFINED_TABLE:
        return True
    return _mysql_error_number(original) == _MYSQL_NO_SUCH_TABLE


def is_conflict(error: BaseException) -> bool:
    """True when the database gave up this transaction for another's sake: running it again
    can succeed (a deadlock victim, a serialisation failure)."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    original = error.orig
    if getattr(original, "sqlstate", None) in _POSTGRES_CONFLICTS:
        return True
    return _mysql_error_number(original) == _MYSQL_DEADLOCK


def _mysql_error_number(original: BaseException | None) -> object:
    arguments: tuple[object, ...] = getattr(original, "args", ())
    return arguments[0] if arguments else None


def describe_database_error(error: BaseException) -> str:
    """The error's classes and the database's code (SQLSTATE, MariaDB's error number, SQLite's
    error name): what a log line may say of it.

    Threat: a server's message quoting a value of our tables (`Key (token_hash)=(...)`, an
    input that failed to parse) into a log; `hide_parameters` hides only the parameters
    SQLAlchemy prints, not the server's text. Only a client library's own connection failure,
    raised before any statement reached the server, is shown with its message.
    """
    if not isinstance(error, sa_exc.DBAPIError):  # SQLAlchemy's own, a pool timeout
        return f"{type(error).__name__}: {_first_line(error)}"
    original = error.orig
    name = f"{type(error).__name__} ({type(original).__module__}.{type(original).__name__})"
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is not None:
        return f"{name}, SQLSTATE {sqlstate}"
    number = _mysql_error_number(original)
    if isinstance(number, int):
        if number in _MYSQL_CLIENT_ERRORS:
            return f"{name}, error {number}: {_first_line(original)}"
        return f"{name}, error {number}"
    sqlite_name = getattr(original, "sqlite_errorname", None)
    if sqlite_name is not None:
        return f"{name}, {sqlite_name}"
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        return f"{name}: {_first_line(original)}"  # no code: psycopg's own, before the server
    return name


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else ""
