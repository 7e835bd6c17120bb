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
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any
from typing import Protocol
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from .users import UserModel

if TYPE_CHECKING:
    from .libpq import LibpqQuery


@functools.cache
def live_session_statement(users: UserModel) -> sa.Select[Any]:
    """The role of the user, if the session is live and the user (still there and) active; no
    row otherwise. A role of NULL, or a model without a `role` column, gives ''; a model
    without an `is_active` column counts every user active."""
    sessions = users.tables.AuthSession
    role: sa.ColumnElement[Any] = sa.literal_column("''")
    if users.role_column is not None:
        role = users.role_column if users.builtin else sa.func.coalesce(users.role_column, role)
    conditions = [
        sessions.id == sa.bindparam("session_id"),
        sessions.user_id == sa.bindparam("user_id"),
        sessions.live_at(sa.bindparam("now", type_=sessions.expires_at.type)),
    ]
    if users.active_column is not None:
        conditions.append(users.active_column == sa.true())
    return (
        sa.select(role)
        .select_from(sessions)
        .join(users.key.table, sessions.user_id == users.key)
        .where(*conditions)
    )


@dataclasses.dataclass(frozen=True)
class _DriverQuery:
    """A statement compiled for one dialect: its SQL and how to make its driver parameters."""

    sql: str
    names: tuple[str, ...]  # the parameters, in the order of a positional paramstyle
    positional: bool
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]  # those that have one
    libpq: LibpqQuery | None  # on psycopg 3, the same statement for libpq

    def parameters(self, values: dict[str, Any]) -> Any:
        """The driver's parameters from `values` (processed in place)."""
        for name, processor in self.processors:
            values[name] = processor(values[name])
        return tuple(values[name] for name in self.names) if self.positional else values


@functools.lru_cache(maxsize=16)
def _compiled(statement: sa.Select[Any], dialect: Dialect) -> _DriverQuery:
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ()) if dialect.positional else tuple(compiled.binds)
    processors = {
        # The dialect's own type (SQLite's DATETIME writes a string with microseconds).
        name: bind.type.dialect_impl(dialect).bind_processor(dialect)
        for name, bind in compiled.binds.items()
    }
    return _DriverQuery(
        sql=compiled.string,
        names=names,
        positional=dialect.positional,
        processors=tuple((name, p) for name, p in processors.items() if p is not None),
        libpq=_libpq_query(compiled.string, names) if dialect.driver == "psycopg" else None,
    )


def _libpq_query(sql: str, names: tuple[str, ...]) -> LibpqQuery:
    """psycopg's `%(name)s` placeholders as libpq's `$1`, numbered in the order of `names`."""
    from .libpq import LibpqQuery

    for number, name in enumerate(names, start=1):
        sql = sql.replace(f"%({name})s", f"${number}")
    return LibpqQuery(sql.encode(), names)


def live_session_role(
    engine: sa.Engine,
    users: UserModel,
    *,
    session_id: str,
    user_id: Any,
    now: datetime,
    pgbouncer: bool = False,
) -> str | None:
    """The user's role ('' if `users` has no role column) if the session is live at `now`
    and the user active; else None.

    Raises SQLAlchemy's DBAPIError subclasses, as a Core query would, parameters hidden;
    RuntimeError if `pgbouncer` (AUTH_PGBOUNCER) and the engine's psycopg prepares statements.
    """
    query = _compiled(live_session_statement(users), engine.dialect)
    parameters = query.parameters({"session_id": session_id, "user_id": user_id, "now": now})
    check = _check_prepared_statements_off if pgbouncer and query.libpq is not None else None
    if not isinstance(engine.pool, sa.QueuePool):
        # In-memory SQLite (one shared connection), NullPool: the engine's own pool, as is.
        take = _checked(lambda: _Pooled(engine.raw_connection()), check)
        return _run(engine, query, parameters, take)
    kept = _kept_connections(engine)
    try:
        take = _checked(lambda: kept.take(engine), check)
        return _run(engine, query, parameters, take, may_retry=True)
    except _Disconnected:
        # A kept connection the server had closed (a restart, an idle timeout): once more, on
        # a new one from the engine's pool; the others kept are likely dead too.
        kept.close_all()
        take = _checked(lambda: kept.take(engine, new=True), check)
        return _run(engine, query, parameters, take)


def _checked(
    take: Callable[[], _Connection], check: Callable[[Any], None] | None
) -> Callable[[], _Connection]:
    if check is None:
        return take

    def take_and_check() -> _Connection:
        connection = take()
        try:
            check(connection.driver)
        except BaseException:
            connection.discard()
            raise
        return connection

    return take_and_check


def _check_prepared_statements_off(driver: Any) -> None:
    """Behind PgBouncer in transaction pooling, the host's psycopg must not prepare: its
    statements would land on other clients' server connections (500s, and server messages
    quoting other statements). Checked on the connection itself, however the host set it."""
    if driver.prepare_threshold is not None:
        raise RuntimeError(
            "AUTH_PGBOUNCER is true but the engine's psycopg connections prepare statements "
            f"(prepare_threshold={driver.prepare_threshold}); build the engine with "
            "engine_options(url, pgbouncer=True), or connect_args={'prepare_threshold': None}."
        )


class _Connection(Protocol):
    driver: Any
    kept: bool  # only the check uses it: libpq may run on it directly

    def release(self) -> None: ...
    def discard(self) -> None: ...


class _Disconnected(Exception):
    """A kept connection turned out dead; the check may run again on a new one."""


def _run(
    engine: sa.Engine,
    query: _DriverQuery,
    parameters: Any,
    take: Callable[[], _Connection],
    *,
    may_retry: bool = False,
) -> str | None:
    """The query on a connection from `take`, kept only if all went well (the engine pool's
    goes back to its pool either way). A dead connection raises _Disconnected if `may_retry`,
    else SQLAlchemy's error as any other."""
    dialect = engine.dialect
    connection = None
    try:
        connection = take()
        role = _fetch_role(connection, query, parameters)
    except BaseException as error:
        # Whatever stopped the check (a driver error, a timeout, an interrupt), the connection
        # is not used again half-way through a query.
        if connection is not None:
            connection.discard()
        if not isinstance(error, dialect.loaded_dbapi.Error):
            raise
        disconnected = connection is None or dialect.is_disconnect(error, connection.driver, None)
        if disconnected and may_retry and connection is not None:
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
    return role


def _fetch_role(connection: _Connection, query: _DriverQuery, parameters: Any) -> str | None:
    if query.libpq is not None and connection.kept:
        return query.libpq.first_value(connection.driver, parameters)
    cursor = connection.driver.cursor()
    cursor.execute(query.sql, parameters)
    row = cursor.fetchone()
    cursor.close()
    return None if row is None else str(row[0])


class _Pooled:
    """A connection of the engine's pool, for the length of one check. Given back to the pool
    even after an error: its reset-on-return deals with it, as for any Core query (closing it
    would empty an in-memory SQLite database)."""

    kept = False

    def __init__(self, pooled: Any) -> None:
        self._pooled = pooled
        self.driver = pooled.dbapi_connection

    def release(self) -> None:
        self._pooled.close()

    discard = release


#: Idle connections kept per engine and process; more in use at once are closed after use.
MAX_KEPT = 8
#: A kept connection is replaced after this long, as a pool recycles: a failover or a new
#: password reaches the check too.
KEPT_FOR_SECONDS = 300.0


class _KeptConnections:
    """Driver connections of one engine, in autocommit, kept between checks.

    Taking one is a list pop: no pool checkout, no pre-ping, no reset on return, and on
    PostgreSQL and MariaDB no BEGIN or ROLLBACK, so a check is one round trip. They come from
    the engine's pool, detached, so they have the host's connect arguments and listeners.
    Thread-safe (a list's pop and append are atomic); a forked process opens its own and never
    touches its parent's.
    """

    def __init__(self) -> None:
        self.idle: list[tuple[Any, float]] = []  # (driver connection, when opened)
        self.generation = 0  # counts close_all(): older connections are not kept again
        self._pid = os.getpid()

    def take(self, engine: sa.Engine, *, new: bool = False) -> _Kept:
        self._forget_if_forked()
        now = time.monotonic()
        driver: Any
        while self.idle and not new:
            try:
                driver, opened = self.idle.pop()
            except IndexError:  # another thread took the last one
                break
            if now - opened < KEPT_FOR_SECONDS:
                return _Kept(self, driver, opened, self.generation)
            _close(driver)
        pooled = engine.raw_connection()
        driver = pooled.dbapi_connection
        pooled.detach()
        try:
            engine.dialect.set_isolation_level(driver, "AUTOCOMMIT")
        except BaseException:
            _close(driver)
            raise
        return _Kept(self, driver, now, self.generation)

    def close_all(self) -> None:
        """Close the idle ones; those in use are closed when given back."""
        if self._forget_if_forked():
            return
        self.generation += 1
        idle, self.idle = self.idle, []
        for driver, _ in idle:
            _close(driver)

    def _forget_if_forked(self) -> bool:
        """After a fork, drop the parent's connections without closing them (closing would end
        the parent's sessions on the server, through the shared sockets)."""
        if self._pid == os.getpid():
            return False
        self.idle, self._pid = [], os.getpid()
        return True


class _Kept:
    kept = True

    def __init__(
        self, owner: _KeptConnections, driver: Any, opened: float, generation: int
    ) -> None:
        self._owner = owner
        self.driver = driver
        self._opened = opened
        self._generation = generation

    def release(self) -> None:
        owner = self._owner
        if owner.generation == self._generation and len(owner.idle) < MAX_KEPT:
            owner.idle.append((self.driver, self._opened))
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
