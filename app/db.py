"""The declarative base, the shared `db`, portable column types and engine set-up per database."""

from __future__ import annotations

from datetime import datetime
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLITE_BUSY_TIMEOUT_MS = 10_000


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


#: The reference app's database handle; a host app may pass its own to AuthManager.
db = SQLAlchemy(model_class=Base)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on every database, stored as naive UTC with microseconds.

    SQLite and MariaDB keep no time zone and MariaDB drops fractions unless asked (fsp=6).
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def exact_string(length: int) -> sa.types.TypeEngine[str]:
    """A string compared byte for byte on every database.

    MariaDB's default collation ignores case and accents: `josé@` would match `jose@`.
    """
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


# Drivers installed by default for the URLs operators write.
_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def normalise_database_url(url: str) -> str:
    """Map `postgres://`, `postgresql://`, `mysql://` and `mariadb://` to the installed drivers."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise RuntimeError(f"DATABASE_URL: {url!r} is not a URL; use e.g. sqlite:///app.db.")
    driver = _DRIVERS.get(scheme, scheme)
    normalised = f"{driver}://{rest}"
    if driver == "mysql+pymysql" and "charset=" not in rest:
        normalised += ("&" if "?" in rest else "?") + "charset=utf8mb4"
    return normalised


def engine_options(url: str) -> dict[str, Any]:
    """Engine options that make each database safe for concurrent refreshes."""
    # Threat: a driver error copying hashes from its SQL parameters into a log line.
    options: dict[str, Any] = {"hide_parameters": True}
    if make_url(url).get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        return options
    # READ COMMITTED everywhere: a refresh that loses the conditional UPDATE must then see the
    # winner's committed successor (MariaDB's default REPEATABLE READ would hide it).
    return options | {"pool_pre_ping": True, "isolation_level": "READ COMMITTED"}


def configure_sqlite(engine: sa.Engine) -> None:
    """On a SQLite engine, set WAL and a busy timeout on every new connection, so that several
    gunicorn workers share the file without `database is locked`; foreign keys on."""
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
