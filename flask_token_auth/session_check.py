"""The session check that runs on every protected request: one query on the driver itself.

A primary-key lookup costs the driver a few microseconds; SQLAlchemy's Connection, execution
context and result around it cost ten times that. So the statement is compiled once per
dialect, and run on a pooled DBAPI connection, with SQLAlchemy's error wrapping and disconnect
handling done here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from .models import AuthSession
from .models import User

# The role of the user, if the session is live and the user active; no row otherwise.
_LIVE_SESSION_ROLE = (
    sa.select(User.role)
    .join_from(AuthSession, User, AuthSession.user_id == User.id)
    .where(
        AuthSession.id == sa.bindparam("session_id"),
        AuthSession.user_id == sa.bindparam("user_id"),
        AuthSession.live_at(sa.bindparam("now", type_=AuthSession.expires_at.type)),
        User.is_active == sa.true(),
    )
)


@dataclasses.dataclass(frozen=True)
class _DriverQuery:
    """A statement compiled for one dialect: its SQL and how to make its driver parameters."""

    sql: str
    names: tuple[str, ...] | None  # the order of positional parameters; None if named
    processors: Mapping[str, Callable[[Any], Any] | None]

    def parameters(self, values: Mapping[str, Any]) -> Any:
        processed = {
            name: processor(values[name]) if processor else values[name]
            for name, processor in self.processors.items()
        }
        return processed if self.names is None else tuple(processed[n] for n in self.names)


@functools.lru_cache(maxsize=16)
def _compiled(dialect: Dialect) -> _DriverQuery:
    compiled = _LIVE_SESSION_ROLE.compile(dialect=dialect)
    return _DriverQuery(
        sql=compiled.string,
        names=tuple(compiled.positiontup or ()) if dialect.positional else None,
        processors={
            # The dialect's own type (SQLite's DATETIME writes a string with microseconds).
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        },
    )


def live_session_role(
    engine: sa.Engine, *, session_id: str, user_id: int, now: datetime
) -> str | None:
    """The user's role if the session is live at `now` and the user active; else None.

    Raises SQLAlchemy's DBAPIError subclasses, as a Core query would, parameters hidden. A
    connection that saw an error is discarded (pool_pre_ping finds any others a restart
    killed).
    """
    dialect = engine.dialect
    query = _compiled(dialect)
    parameters = query.parameters({"session_id": session_id, "user_id": user_id, "now": now})
    # On PostgreSQL a lone read in autocommit saves the BEGIN and ROLLBACK round trips (psycopg
    # switches client-side); SQLite and PyMySQL would pay statements to switch it back and forth.
    autocommit = dialect.name == "postgresql"
    connection = None
    try:
        connection = engine.raw_connection()
        driver: Any = connection.driver_connection
        if autocommit:
            driver.autocommit = True
        cursor = connection.cursor()
        cursor.execute(query.sql, parameters)
        row = cursor.fetchone()
        cursor.close()
        if autocommit:
            driver.autocommit = False
    except BaseException as error:
        # Whatever stopped the check (a driver error, a timeout, an interrupt), the connection
        # is discarded, never returned to the pool half-configured.
        if connection is not None:
            connection.invalidate()
        if not isinstance(error, dialect.loaded_dbapi.Error):
            raise
        raise sa.exc.DBAPIError.instance(
            query.sql,
            parameters,
            error,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=connection is None or dialect.is_disconnect(error, driver, None),
            dialect=dialect,
        ) from error
    finally:
        if connection is not None:
            connection.close()
    return None if row is None else str(row[0])
