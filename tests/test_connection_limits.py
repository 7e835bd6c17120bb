"""Connections bounded and given back: gunicorn workers on a PostgreSQL role with few
connection slots answer 503 with Retry-After (never 500) while the slots are gone, are served
again within seconds once they are back, and then hold no more than their pools' size."""

from __future__ import annotations

import contextlib
import itertools
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from app import db
from flask_token_auth.session_check import DEFAULT_POOL_SIZE
from tests.conftest import make_app
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.conftest import server_database
from tests.helpers import bearer
from tests.helpers import gunicorn

pytestmark = pytest.mark.slow

LIMIT = 14  # the role's connection slots
WORKERS = 3  # gunicorn's, 8 threads each (gunicorn.conf.py)
POOL_SIZE, MAX_OVERFLOW = 1, 4  # up to 1 + 4 + 2 per worker: 21 in all, past the limit
CLIENTS = 24
NATIVE = {"X-Token-Transport": "body"}


@pytest.fixture
def limited_url() -> Iterator[str]:
    """A new database owned by a new role that may open LIMIT connections."""
    for server_url in server_database("postgresql"):
        admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        role, name = f"auth_limited_{secrets.token_hex(4)}", f"auth_limited_{secrets.token_hex(4)}"
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {LIMIT}"))
            connection.execute(sa.text(f"CREATE DATABASE {name} OWNER {role}"))
        try:
            url = sa.make_url(server_url).set(username=role, database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
                connection.execute(sa.text(f"DROP ROLE {role}"))
            admin.dispose()


def connections_of(admin: sa.Engine, role: str) -> int:
    with admin.connect() as connection:
        query = "SELECT COUNT(*) FROM pg_stat_activity WHERE usename = :role"
        return int(connection.scalar(sa.text(query), {"role": role}))


@contextlib.contextmanager
def no_slot_left(admin: sa.Engine, role: str) -> Iterator[None]:
    """The role's slots gone, as when other clients took them all (and its open connections
    ended, as by a restart); given back afterwards."""
    with admin.connect() as connection:
        connection.execute(sa.text(f"ALTER ROLE {role} CONNECTION LIMIT 0"))
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"),
            {"role": role},
        )
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"ALTER ROLE {role} CONNECTION LIMIT {LIMIT}"))


def test_workers_answer_503_while_slots_are_gone_and_recover_within_seconds(
    limited_url: str, tmp_path: Path
) -> None:
    application = make_app(limited_url)
    with application.app_context():
        db.create_all()
        db.engine.dispose()
    role = sa.make_url(limited_url).username
    assert role is not None
    admin_url = sa.make_url(limited_url).set(username="postgres", database="postgres")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    env = {
        "DATABASE_URL": limited_url,
        "SECRET_KEY": SECRET,
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_RATELIMIT_ENABLED": "false",
        "POOL_SIZE": str(POOL_SIZE),
        "MAX_OVERFLOW": str(MAX_OVERFLOW),
        "POOL_TIMEOUT": "2",
    }
    log = tmp_path / "gunicorn.log"
    with gunicorn("tests.pool_wsgi:app", env, log, workers=WORKERS) as base:
        tokens = [signed_up(base, number) for number in range(CLIENTS)]
        answers: list[httpx.Response] = []
        stop = threading.Event()

        def load(index: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                for number in itertools.count():
                    if stop.is_set():
                        return
                    # The session check's pool, then the engine's (the session list).
                    path = "/api/hello" if number % 2 else "/auth/sessions"
                    answers.append(client.get(path, headers=bearer(tokens[index])))

        threads = [threading.Thread(target=load, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        with no_slot_left(admin, role):
            overloaded = len(answers)
            time.sleep(2)
            during = answers[overloaded:]
        back = time.monotonic()
        recovered_after = None
        while time.monotonic() - back < 10:
            recent = answers[-CLIENTS:]
            if len(recent) == CLIENTS and all(a.status_code == 200 for a in recent):
                recovered_after = time.monotonic() - back
                break
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join()
        time.sleep(1)
        idle = connections_of(admin, role)
        with admin.connect() as connection:
            idle_states = connection.execute(
                sa.text(
                    "SELECT state, backend_start, left(query, 60) FROM pg_stat_activity "
                    "WHERE usename = :role"
                ),
                {"role": role},
            ).all()

    admin.dispose()
    statuses = {answer.status_code for answer in answers}
    refused = [answer for answer in during if answer.status_code == 503]
    assert statuses <= {200, 503}, log.read_text()[-3000:]
    assert refused, "no request was refused while every slot was taken"
    assert all(answer.headers.get("Retry-After", "").isdigit() for answer in refused)
    assert {answer.json()["error"] for answer in refused} == {"temporarily_unavailable"}
    assert recovered_after is not None
    assert recovered_after < 5
    assert idle <= WORKERS * (POOL_SIZE + DEFAULT_POOL_SIZE), idle_states


def signed_up(base: str, number: int) -> str:
    email = f"user{number}@example.com"
    with httpx.Client(base_url=base, timeout=30) as client:
        assert (
            client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code
            == 201
        )
        answer = client.post(
            "/auth/login", json={"email": email, "password": PASSWORD}, headers=NATIVE
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token
