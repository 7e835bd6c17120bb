"""The session check's connections come from a SQLAlchemy pool made from the host engine's:
bounded, seen by the engine's pool listeners, recycled as it recycles, its own in a forked
worker, and a 503 (not a wait without end) when all are busy."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import datetime
from datetime import UTC
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask

from app import db
from flask_token_auth import engine_options
from flask_token_auth.session_check import DEFAULT_POOL_SIZE
from flask_token_auth.session_check import live_session_role
from flask_token_auth.users import UserModel
from tests.conftest import app_with_tables
from tests.conftest import server_database
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import register
from tests.pools import check_pool_of
from tests.pools import idle_check_connections

USERS = UserModel.builtin_users()
THREADS = 16
REQUESTS_PER_THREAD = 20


def engine_of(app: Flask) -> sa.Engine:
    with app.app_context():
        return db.engine


@contextlib.contextmanager
def app_on(url: str, config: dict[str, Any] | None = None, **pool_options: Any) -> Iterator[Flask]:
    """The reference app with `config`, and the extension's engine options and `pool_options`."""
    options = engine_options(url) | pool_options
    with app_with_tables(url, **(config or {}), SQLALCHEMY_ENGINE_OPTIONS=options) as application:
        yield application


def signed_in(app: Flask) -> str:
    client = app.test_client()
    register(client)
    access_token: str = login(client, native=True).json["access_token"]
    return access_token


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from server_database(request.param)


def server_connections(monitor: sa.Engine, database: str) -> int:
    """Connections to `database` on its server, the monitor's own left out."""
    if monitor.dialect.name == "postgresql":
        query = (
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
        )
    else:
        query = (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = :db AND ID <> CONNECTION_ID()"
        )
    with monitor.connect() as connection:
        return int(connection.scalar(sa.text(query), {"db": database}))


def test_connections_under_many_threads_stay_within_the_two_pools(server_url: str) -> None:
    """16 threads of protected requests and host queries on an engine of `pool_size=1,
    max_overflow=0`: the server never sees more than that one plus the check's pool."""
    database = sa.make_url(server_url).database
    assert database is not None
    monitor = sa.create_engine(sa.make_url(server_url).set(database="test"), poolclass=sa.NullPool)
    with app_on(server_url, pool_size=1, max_overflow=0, pool_timeout=30) as app:
        access_token = signed_in(app)
        engine = engine_of(app)
        engine.dispose()  # the sign-up's connections: counted from none
        most, statuses, done = [0], [], threading.Event()

        def watch() -> None:
            while not done.is_set():
                most[0] = max(most[0], server_connections(monitor, database))
                time.sleep(0.005)

        def requests() -> None:
            client = app.test_client()
            for number in range(REQUESTS_PER_THREAD):
                statuses.append(client.get("/api/hello", headers=bearer(access_token)).status_code)
                if number % 4 == 0:
                    with engine.connect() as connection:
                        connection.execute(sa.text("SELECT 1"))

        watcher = threading.Thread(target=watch)
        watcher.start()
        workers = [threading.Thread(target=requests) for _ in range(THREADS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.set()
        watcher.join()

        assert statuses == [200] * (THREADS * REQUESTS_PER_THREAD)
        assert 2 <= most[0] <= 1 + DEFAULT_POOL_SIZE
        assert server_connections(monitor, database) <= 1 + DEFAULT_POOL_SIZE
        assert check_pool_of(engine).pool.checkedout() == 0
    monitor.dispose()


def test_the_engines_pool_listeners_see_the_check(database_url: str) -> None:
    """A `connect` listener (a `SET ROLE`, a `search_path`, SQLite's pragmas) runs on the
    check's connections, and `checkout`/`checkin` listeners see each check."""
    with app_on(database_url) as app:
        access_token = signed_in(app)
        engine = engine_of(app)
        engine.dispose()  # the check's connections too: the next one is new
        seen: list[tuple[str, Any]] = []
        for event in ("connect", "checkout", "checkin"):
            sa.event.listen(
                engine, event, lambda driver, *_, name=event: seen.append((name, driver))
            )

        response = app.test_client().get("/api/hello", headers=bearer(access_token))

        assert response.status_code == 200
        (driver,) = idle_check_connections(engine)
        assert seen == [("connect", driver), ("checkout", driver), ("checkin", driver)]
        if engine.dialect.name == "sqlite":  # the engine's own connect listener ran too
            assert driver.execute("PRAGMA busy_timeout").fetchone() == (10_000,)


def test_the_check_recycles_its_connections_as_the_engine_does(database_url: str) -> None:
    with app_on(database_url, pool_recycle=1) as app:
        access_token = signed_in(app)
        client = app.test_client()
        engine = engine_of(app)
        assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
        (first,) = idle_check_connections(engine)
        assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
        assert idle_check_connections(engine) == [first]

        time.sleep(1.1)
        assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
        (second,) = idle_check_connections(engine)
        assert second is not first


def test_a_check_waits_for_a_free_connection_then_answers_503(database_url: str) -> None:
    """All the check's connections taken (a stalled database): after the engine's
    `pool_timeout` (whole seconds under Flask-SQLAlchemy) the request is a 503 with
    Retry-After, and served again once one is back."""
    with app_on(database_url, {"AUTH_SESSION_CHECK_POOL_SIZE": 1}, pool_timeout=1) as app:
        access_token = signed_in(app)
        client = app.test_client()
        assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
        pool = check_pool_of(engine_of(app))
        assert (pool.size, pool.pool.size()) == (1, 1)
        taken = [pool.take()]

        started = time.monotonic()
        refused = client.get("/api/hello", headers=bearer(access_token))
        waited = time.monotonic() - started

        assert (refused.status_code, refused.json["error"]) == (503, "temporarily_unavailable")
        assert refused.headers["Retry-After"].isdigit()
        assert 1 <= waited < 3
        taken.pop().release()
        assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_worker_opens_its_own_connections(server_url: str) -> None:
    """gunicorn forks its workers from a master that may have run a check (`--preload`, a
    warm-up): the child opens its own connection and never uses or closes the parent's."""
    with app_on(server_url) as app:
        access_token = signed_in(app)
        engine = engine_of(app)
        claims = jwt.decode(access_token, options={"verify_signature": False})

        def check() -> str | None:
            return live_session_role(
                engine,
                USERS,
                session_id=claims["sid"],
                user_id=int(claims["sub"]),
                now=datetime.now(UTC),
            )

        assert check() == "user"
        (parents,) = idle_check_connections(engine)
        parent_server_id = server_id(parents)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child reports through the pipe)
            try:
                role = check()
                (own,) = idle_check_connections(engine)
                os.write(write, f"{role} {server_id(own)}".encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(child, 0)
        role, child_server_id = os.read(read, 200).decode().split()
        os.close(read)

        assert (role, child_server_id != str(parent_server_id)) == ("user", True)
        assert check() == "user"
        assert idle_check_connections(engine) == [parents]
        assert server_id(parents) == parent_server_id


def server_id(driver: Any) -> int:
    """The server's id of a DBAPI connection (PostgreSQL's backend pid, MariaDB's thread id)."""
    cursor = driver.cursor()
    cursor.execute(
        "SELECT pg_backend_pid()" if hasattr(driver, "pgconn") else "SELECT CONNECTION_ID()"
    )
    (value,) = cursor.fetchone()
    cursor.close()
    return int(value)


def test_an_engine_dropped_by_the_host_is_collected_with_its_check_pool(tmp_path: Any) -> None:
    """The check's pool shares the engine pool's listeners, which hold the engine: kept in a
    registry beside the engine, every engine a process ever made would stay alive."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dropped.db'}")
    pool = check_pool_of(engine)
    taken = pool.take()
    taken.release()
    engine_ref, pool_ref = weakref.ref(engine), weakref.ref(pool)
    engine.dispose()
    del engine, pool, taken
    gc.collect()
    assert (engine_ref(), pool_ref()) == (None, None)
