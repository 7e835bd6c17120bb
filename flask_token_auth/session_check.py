"""The session check that runs on every protected request: one query on the driver itself.

A primary-key lookup costs the driver a few microseconds; SQLAlchemy's Connection, execution
context, result and pool checkout around it cost ten times that, and on PostgreSQL and MariaDB
the pool's pre-ping, BEGIN and ROLLBACK are three more round trips. So the statement is
compiled once per dialect and run on driver connections kept for it, in autocommit, with
SQLAlchemy's error wrapping and disconnect handling done here. Each worker process keeps up to
MAX_KEPT of them open beside the engine's pool.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import weakref
from collections.abc import Callable
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from typing import Protocol

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

    Raises SQLAlchemy's DBAPIError subclasses, as a Core query would, parameters hidden.
    """
    query = _compiled(engine.dialect)
    parameters = query.parameters({"session_id": session_id, "user_id": user_id, "now": now})
    if not isinstance(engine.pool, sa.QueuePool):
        # In-memory SQLite (one shared connection), NullPool: the engine's own pool, as is.
        return _run(engine, query, parameters, lambda: _Pooled(engine.raw_connection()))
    kept = _kept_connections(engine)
    try:
        return _run(engine, query, parameters, lambda: kept.take(engine))
    except _Disconnected:
        # A kept connection the server had closed (a restart, an idle timeout): once more, on
        # a new one; the others kept are likely dead too.
        kept.close_all()
        return _run(engine, query, parameters, lambda: kept.take(engine))


class _Connection(Protocol):
    driver: Any
    kept: bool

    def release(self) -> None: ...
    def discard(self) -> None: ...


class _Disconnected(Exception):
    """A kept connection turned out dead; the check may run again on a new one."""


def _run(
    engine: sa.Engine, query: _DriverQuery, parameters: Any, take: Callable[[], _Connection]
) -> str | None:
    """The query on a connection from `take`, given back only if all went well."""
    dialect = engine.dialect
    connection = None
    try:
        connection = take()
        cursor = connection.driver.cursor()
        cursor.execute(query.sql, parameters)
        row = cursor.fetchone()
        cursor.close()
    except BaseException as error:
        # Whatever stopped the check (a driver error, a timeout, an interrupt), the connection
        # is closed, never used again half-way through a query.
        if connection is not None:
            connection.discard()
        if not isinstance(error, dialect.loaded_dbapi.Error):
            raise
        disconnected = connection is None or dialect.is_disconnect(error, connection.driver, None)
        if disconnected and connection is not None and connection.kept:
            raise _Disconnected from error
        raise sa.exc.DBAPIError.instance(
            query.sql,
            parameters,
            error,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=disconnected,
            dialect=dialect,
        ) from error
    connection.release()
    return None if row is None else str(row[0])


class _Pooled:
    """A connection of the engine's pool, for the length of one check."""

    kept = False

    def __init__(self, pooled: Any) -> None:
        self._pooled = pooled
        self.driver = pooled.dbapi_connection

    def release(self) -> None:
        self._pooled.close()

    def discard(self) -> None:
        self._pooled.invalidate()
        self._pooled.close()


#: Idle connections kept per engine and process; more in use at once are closed after use.
MAX_KEPT = 8


class _KeptConnections:
    """Driver connections of one engine, in autocommit, kept between checks.

    Taking one is a list pop: no pool checkout, no pre-ping, no reset on return, and on
    PostgreSQL and MariaDB no BEGIN or ROLLBACK, so a check is one round trip. They come from
    the engine's pool, detached, so they have the host's connect arguments and listeners.
    Thread-safe (a list's pop and append are atomic); a forked process opens its own.
    """

    def __init__(self) -> None:
        self.idle: list[Any] = []
        self._pid = os.getpid()

    def take(self, engine: sa.Engine) -> _Kept:
        if self._pid != os.getpid():  # never a parent's connection in a forked worker
            self.idle, self._pid = [], os.getpid()
        driver: Any
        try:
            driver = self.idle.pop()
        except IndexError:
            pooled = engine.raw_connection()
            driver = pooled.dbapi_connection
            pooled.detach()
            try:
                engine.dialect.set_isolation_level(driver, "AUTOCOMMIT")
            except BaseException:
                _close(driver)
                raise
        return _Kept(self, driver)

    def close_all(self) -> None:
        idle, self.idle = self.idle, []
        for driver in idle:
            _close(driver)


class _Kept:
    kept = True

    def __init__(self, owner: _KeptConnections, driver: Any) -> None:
        self._owner = owner
        self.driver = driver

    def release(self) -> None:
        if len(self._owner.idle) < MAX_KEPT:
            self._owner.idle.append(self.driver)
        else:
            _close(self.driver)

    def discard(self) -> None:
        _close(self.driver)


def _close(driver: Any) -> None:
    try:
        driver.close()
    except Exception:  # noqa: S110 (already broken: nothing more to do with it)
        pass


_KEPT: weakref.WeakKeyDictionary[sa.Engine, _KeptConnections] = weakref.WeakKeyDictionary()
_KEPT_LOCK = threading.Lock()


def _kept_connections(engine: sa.Engine) -> _KeptConnections:
    kept = _KEPT.get(engine)
    if kept is None:
        with _KEPT_LOCK:
            kept = _KEPT.get(engine)
            if kept is None:
                kept = _KEPT[engine] = _KeptConnections()
                # `engine.dispose()` closes them with the pool's.
                sa.event.listen(engine, "engine_disposed", lambda _: kept.close_all())
    return kept
