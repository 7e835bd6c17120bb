"""Real gunicorn, several worker processes, one database: no `database is locked`, no 5xx,
and concurrent refreshes of one token rotate it exactly once across processes."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import call
from tests.helpers import gunicorn
from tests.helpers import log_tail
from tests.helpers import port_of
from tests.helpers import scalar

WORKERS = 4
SESSIONS = 8
RACERS_PER_TOKEN = 4


@pytest.fixture
def server(app: Flask, database_url: str, tmp_path: Path) -> Iterator[str]:
    """gunicorn serving the reference app on the test database (tables made by `app`); its log
    shows no `database is locked` and no traceback once it has stopped."""
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_RATELIMIT_ENABLED": "false",
    }
    log = tmp_path / "gunicorn.log"
    with gunicorn("wsgi:app", env, log, workers=WORKERS) as base:
        yield base
    output = log.read_text()
    assert "database is locked" not in output, log_tail(log)
    assert "Traceback" not in output, log_tail(log)


@pytest.mark.slow
def test_workers_share_one_database_without_errors(server: str, app: Flask) -> None:
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    assert call(server, "/auth/register", credentials)[0] == 201
    with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
        logins = list(pool.map(lambda _: call(server, "/auth/login", credentials), range(SESSIONS)))
    assert [status for status, _, _ in logins] == [200] * SESSIONS
    tokens = [body["refresh_token"] for _, _, body in logins]

    # Every token presented by several requests at once, spread over the workers.
    racers = [token for token in tokens for _ in range(RACERS_PER_TOKEN)]
    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        results = list(
            pool.map(lambda t: call(server, "/auth/refresh", {"refresh_token": t}), racers)
        )
    assert [status for status, _, _ in results] == [200] * len(racers)
    successors: dict[str, set[str]] = {}
    for token, (_, _, body) in zip(racers, results, strict=True):
        successors.setdefault(token, set()).add(body["refresh_token"])
    assert all(len(found) == 1 for found in successors.values())  # one successor per token
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2 * SESSIONS
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens WHERE used_at IS NOT NULL") == SESSIONS

    # Then every session keeps rotating in parallel with the others.
    def rotate_chain(token: str) -> list[int]:
        statuses = []
        for _ in range(5):
            status, _, body = call(server, "/auth/refresh", {"refresh_token": token})
            statuses.append(status)
            token = body["refresh_token"]
        return statuses

    live = [found.pop() for found in successors.values()]
    with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
        chains = list(pool.map(rotate_chain, live))
    assert chains == [[200] * 5] * SESSIONS
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NOT NULL") == 0


@pytest.mark.slow
def test_slow_clients_cannot_stall_the_service(server: str) -> None:
    """More clients than workers send headers and then trickle a body; others still get in."""
    port = port_of(server)
    slow = []
    for _ in range(WORKERS + 2):
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        connection.sendall(
            b"POST /auth/login HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        slow.append(connection)
    try:
        started = time.monotonic()
        with urllib.request.urlopen(f"{server}/healthz", timeout=10) as response:  # noqa: S310
            assert response.status == 200
        assert time.monotonic() - started < 2
    finally:
        for connection in slow:
            connection.close()
