"""Real gunicorn, several worker processes, one database: no `database is locked`, no 5xx,
and concurrent refreshes of one token rotate it exactly once across processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import free_port
from tests.helpers import scalar

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
SESSIONS = 8
RACERS_PER_TOKEN = 4


@pytest.fixture
def server(app: Flask, database_url: str) -> Iterator[str]:
    """gunicorn serving the reference app on the test database (tables made by `app`)."""
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_RATELIMIT_ENABLED": "false",
    }
    command = [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS)]
    process = subprocess.Popen(
        [*command, "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start: {process.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert b"database is locked" not in errors
    assert b"Traceback" not in errors, errors.decode()[-3000:]


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 (a loopback URL the test built)
        url,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Token-Transport": "body",
            **(headers or {}),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.mark.slow
def test_workers_share_one_database_without_errors(server: str, app: Flask) -> None:
    status, _ = post(f"{server}/auth/register", {"email": "ada@example.com", "password": PASSWORD})
    assert status == 201
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
        logins = list(
            pool.map(lambda _: post(f"{server}/auth/login", credentials), range(SESSIONS))
        )
    assert [status for status, _ in logins] == [200] * SESSIONS
    tokens = [body["refresh_token"] for _, body in logins]

    # Every token presented by several requests at once, spread over the workers.
    racers = [token for token in tokens for _ in range(RACERS_PER_TOKEN)]
    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        results = list(
            pool.map(lambda t: post(f"{server}/auth/refresh", {"refresh_token": t}), racers)
        )
    assert [status for status, _ in results] == [200] * len(racers)
    successors: dict[str, set[str]] = {}
    for token, (_, body) in zip(racers, results, strict=True):
        successors.setdefault(token, set()).add(body["refresh_token"])
    assert all(len(found) == 1 for found in successors.values())  # one successor per token
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2 * SESSIONS
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens WHERE used_at IS NOT NULL") == SESSIONS

    # Then every session keeps rotating in parallel with the others.
    def rotate_chain(token: str) -> list[int]:
        statuses = []
        for _ in range(5):
            status, body = post(f"{server}/auth/refresh", {"refresh_token": token})
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
    port = int(server.rsplit(":", 1)[1])
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
