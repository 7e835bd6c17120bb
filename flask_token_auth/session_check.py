"""The session check that runs on every protected request: one query on a pool of its own.

A primary-key lookup costs the driver a few microseconds; SQLAlchemy's Connection, execution
context and result around it cost ten times that, and on PostgreSQL and MariaDB the engine
pool's pre-ping, BEGIN and ROLLBACK are three more round trips. So the statement is compiled
once per dialect and run on the DBAPI connections of a small pool kept for the check
(`CheckPool`): a SQLAlchemy pool made from the host engine's, with its connect function
(connect arguments), its pool events (connect, checkout, checkin: a listener on the host's
engine sees the check) and its recycle time, in autocommit, without pre-ping or reset on
return, so that a check is one round trip. SQLAlchemy's error wrapping and disconnect handling
are done here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
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

#: Connections of the check's pool per engine and process (AUTH_SESSION_CHECK_POOL_SIZE's
#: default). Each check holds one for a single round trip.
DEFAULT_POOL_SIZE = 2
_AUTOCOMMIT = "flask_token_auth.autocommit"


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
    pool_size: int = DEFAULT_POOL_SIZE,
) -> str | None:
    """The user's role ('' if `users` has no role column) if the session is live at `now`
    and the user active; else None. `pool_size`: of the check's pool (see `CheckPool`), fixed
    by the first check on `engine`.

    Raises SQLAlchemy's DBAPIError subclasses, as a Core query would, parameters hidden, and
    its TimeoutError when the check's pool has no connection free in time; RuntimeError if
    `pgbouncer` (AUTH_PGBOUNCER) and the engine's psycopg prepares statements.
    """
    query = _compiled(live_session_statement(users), engine.dialect)
    parameters = query.parameters({"session_id": session_id, "user_id": user_id, "now": now})
    check = _check_prepared_statements_off if pgbouncer and query.libpq is not None else None
    pool = check_pool(engine, pool_size)
    if pool is None:
        # In-memory SQLite (one shared connection), NullPool: the engine's own pool, as is.
        take = _checked(lambda: _Pooled(engine.raw_connection()), check)
        return _run(engine, query, parameters, take)
    try:
        return _run(engine, query, parameters, _checked(pool.take, check), may_retry=True)
    except _Disconnected:
        # A connection the server had closed (a restart, an idle timeout): its pool's other
        # idle ones are likely dead too. Once more, on a new pool's new connection.
        pool.replace()
        return _run(engine, query, parameters, _checked(pool.take, check))


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
    ours: bool  # a connection of the check's pool: libpq may run on it directly

    def release(self) -> None: ...
    def discard(self) -> None: ...


class _Disconnected(Exception):
    """A connection of the check's pool turned out dead; the check may run again."""


def _run(
    engine: sa.Engine,
    query: _DriverQuery,
    parameters: Any,
    take: Callable[[], _Connection],
    *,
    may_retry: bool = False,
) -> str | None:
    """The query on a connection from `take`, given back if all went well, else discarded
    (the engine pool's goes back to its pool either way). A dead connection raises
    _Disconnected if `may_retry`, else SQLAlchemy's error as any other."""
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
    if query.libpq is not None and connection.ours:
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

    ours = False

    def __init__(self, pooled: Any) -> None:
        self._pooled = pooled
        self.driver = pooled.dbapi_connection

    def release(self) -> None:
        self._pooled.close()

    discard = release


class CheckPool:
    """The session check's connections to one engine's database, in one process.

    A `QueuePool` of `size` connections, no overflow, made as the engine's pool would remake
    itself (`Pool.recreate`): the same connect function, pool events and recycle time, and the
    same wait for a free connection (then SQLAlchemy's TimeoutError); but no pre-ping and no
    reset on return, and each connection set to autocommit once, when it is first taken. A
    process holds at most `size` of them, besides the engine's own pool. After a fork the child
    makes its own pool and never touches its parent's connections.
    """

    def __init__(self, engine: sa.Engine, size: int) -> None:
        # `engine.dispose()` recreates the engine's pool with the same arguments and events.
        self._engine_pool: Any = engine.pool
        self._dialect = engine.dialect
        self.size = size
        self.pool = self._new_pool()
        self._pid = os.getpid()

    def take(self) -> _Checked:
        """A connection in autocommit, for one check; give it back with release() or, after
        any error, discard()."""
        if self._pid != os.getpid():
            self.pool, self._pid = self._new_pool(), os.getpid()
        source = self.pool
        pooled: Any = source.connect()
        if not pooled.info.get(_AUTOCOMMIT):
            try:
                self._dialect.set_isolation_level(pooled.dbapi_connection, "AUTOCOMMIT")
            except BaseException:
                pooled.invalidate()
                raise
            pooled.info[_AUTOCOMMIT] = True
        return _Checked(pooled, lambda: source is self.pool)

    def replace(self) -> None:
        """A new pool, the idle connections of the old one closed (as `Engine.dispose` does);
        those in use, or taken from it while it is replaced, are closed when given back (kept
        idle in a pool no one takes from, they would hold server slots until collected)."""
        old, self.pool = self.pool, self._new_pool()
        if self._pid == os.getpid():
            old.dispose()

    def _new_pool(self) -> sa.QueuePool:
        # Pool.recreate() with our own size, pre-ping and reset: its arguments are private.
        engine_pool = self._engine_pool
        return sa.QueuePool(
            engine_pool._creator,
            pool_size=self.size,
            max_overflow=0,
            timeout=engine_pool.timeout(),
            recycle=engine_pool._recycle,
            pre_ping=False,
            reset_on_return=None,
            logging_name="flask_token_auth.session_check",
            _dispatch=engine_pool.dispatch,
            dialect=engine_pool._dialect,
        )


class _Checked:
    ours = True

    def __init__(self, pooled: Any, current: Callable[[], bool]) -> None:
        self._pooled = pooled
        self._current = current  # whether its pool is still the one checks take from
        self.driver = pooled.dbapi_connection

    def release(self) -> None:
        if self._current():
            self._pooled.close()
        else:
            self._pooled.invalidate()

    def discard(self) -> None:
        self._pooled.invalidate()


_POOLS_LOCK = threading.Lock()
# On the engine itself: the check's pool shares the engine pool's events, whose listeners hold
# the engine, so a registry outside it would keep every engine alive.
_POOL_ATTRIBUTE = "_flask_token_auth_check_pool"


def check_pool(engine: sa.Engine, size: int = DEFAULT_POOL_SIZE) -> CheckPool | None:
    """The check's pool for `engine` in this process; None if the engine's pool is not a
    QueuePool (in-memory SQLite, NullPool): the check then uses the engine's own."""
    pool: CheckPool | None = getattr(engine, _POOL_ATTRIBUTE, None)
    if pool is None:
        if not isinstance(engine.pool, sa.QueuePool):
            return None
        with _POOLS_LOCK:
            pool = getattr(engine, _POOL_ATTRIBUTE, None)
            if pool is None:
                pool = CheckPool(engine, size)
                setattr(engine, _POOL_ATTRIBUTE, pool)
                # `engine.dispose()` closes them with the pool's.
                sa.event.listen(engine, "engine_disposed", _replace_on_dispose(pool))
    return pool


def _replace_on_dispose(pool: CheckPool) -> Callable[[sa.Engine], None]:
    return lambda _: pool.replace()
