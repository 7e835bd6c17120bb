"""Our declarative base, portable column types, and copies of our tables for the host's metadata.

The models map to tables of our own `Base`; `add_tables_to(db.metadata)` puts equal copies in
the host's metadata, so that the host's `db.create_all()` and `flask db migrate` see them.
"""

from __future__ import annotations

from datetime import datetime
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Marks a host's metadata that holds our tables, so that a second AuthManager on it finds them.
OWNER_INFO_KEY = "flask_token_auth"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on every database, stored as naive UTC with microseconds.

    SQLite and MariaDB keep no time zone and MariaDB drops fractions unless asked (fsp=6).
    """

    impl = sa.DateTime
    cache_ok = True
    #: What the column is in DDL: what migrations write (they cannot import this class).
    ddl_type = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

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


def add_tables_to(metadata: sa.MetaData, tables: list[sa.Table]) -> None:
    """Copy `tables` into a host's `metadata`, with plain SQLAlchemy types in their columns
    (the host's migrations then import nothing of ours).

    Idempotent. RuntimeError if the host already has a table of one of their names.
    """
    if metadata.info.get(OWNER_INFO_KEY):
        return
    if metadata.schema is not None:
        raise RuntimeError(
            f"AuthManager: your metadata puts tables in the schema {metadata.schema!r}; the "
            "extension's tables live in the default schema: use a metadata without one."
        )
    names = [table.name for table in tables]
    for name in names:
        if name in metadata.tables:
            raise RuntimeError(
                f"AuthManager: your metadata already has a table named {name!r}; the "
                f"extension's tables are {', '.join(names)} (see the README on apps that "
                "already have users)."
            )
    for table in tables:
        copy = table.to_metadata(metadata)
        for column in copy.columns:
            if isinstance(column.type, UTCDateTime):
                column.type = UTCDateTime.ddl_type
    metadata.info[OWNER_INFO_KEY] = True
