"""Faults under real gunicorn: a worker killed in the middle of a rotation leaves nothing
half-written; a PostgreSQL server of the test's own, stopped under load, gives 503s in bounded
time, and service resumes when it is back, without restarting gunicorn."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_token_auth.tokens import successor_refresh_token
from tests.conftest import app_with_tables
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import call
from tests.helpers import free_port
from tests.helpers import gunicorn
from tests.helpers import rows
from tests.helpers import scalar
from tests.helpers import token_hash

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 3
BOUND_SECONDS = 10
#: The bound of a request made in a thread the test joins: no longer than the join waits.
REQUEST_SECONDS = 30


def serve(
    module: str, database_url: str, tmp_path: Path, **env: str
) -> AbstractContextManager[str]:
    """One worker of `module` on `database_url`: gunicorn, giving its base URL."""
    environment = {"DATABASE_URL": database_url, "SECRET_KEY": SECRET}
    environment |= {"AUTH_RATELIMIT_ENABLED": "false", **env}
    return gunicorn(module, environment, tmp_path / "gunicorn.log", workers=1)


def log_in(base: str) -> dict[str, Any]:
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    assert call(base, "/auth/register", credentials)[0] == 201
    status, _, tokens = call(base, "/auth/login", credentials)
    assert status == 200
    return tokens  # type: ignore[no-any-return]


# --- a worker killed in the middle of a rotation -------------------------------------------


def test_a_worker_killed_mid_rotation_leaves_exactly_one_working_token(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    pause_file = tmp_path / "pause"
    server = serve("tests.fault_wsgi:app", database_url, tmp_path, FAULT_PAUSE_FILE=str(pause_file))
    with server as base:
        old = log_in(base)["refresh_token"]
        pause_file.write_text("")
        outcome: list[Any] = []

        def rotate() -> None:
            try:
                body = {"refresh_token": old}
                outcome.append(call(base, "/auth/refresh", body, timeout=REQUEST_SECONDS))
            except Exception as error:  # the connection dies with the worker
                outcome.append(error)

        rotation = threading.Thread(target=rotate)
        rotation.start()
        deadline = time.monotonic() + 20
        while not pause_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = int(pause_file.read_text())  # paused after spending, before committing
        pause_file.unlink()
        os.kill(worker, signal.SIGKILL)
        rotation.join(timeout=30)
        assert len(outcome) == 1
        assert isinstance(outcome[0], Exception) or outcome[0][0] >= 500

        time.sleep(1)  # the master starts a new worker
        new = successor_refresh_token(old, secret_key=SECRET.encode())
        query = "SELECT used_at FROM refresh_tokens WHERE token_hash = :h"
        assert [row.used_at for row in rows(app, query, h=token_hash(old))] == [None]  # unspent
        query = "SELECT COUNT(*) FROM refresh_tokens WHERE token_hash = :h"
        assert scalar(app, query, h=token_hash(new)) == 0
        status, _, body = call(base, "/auth/refresh", {"refresh_token": new})
        assert (status, body["error"]) == (401, "invalid_grant")
        status, _, body = call(base, "/auth/refresh", {"refresh_token": old})
        assert status == 200, body


# --- a PostgreSQL server of our own, stopped under load ---------------------------------


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, list[str], list[str]]]:
    """A PostgreSQL cluster of this test's own: (URL, start command, stop command)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries or shutil.which("runuser") is None or os.geteuid() != 0:
        if os.environ.get("TEST_REQUIRE_DATABASES") == "1":
            pytest.fail("PostgreSQL server binaries and root are needed for the outage test")
        pytest.skip("PostgreSQL server binaries (and root, to run them as postgres) not found")
    bin_dir = binaries[-1]
    home = Path(tempfile.mkdtemp(prefix="auth-pg-"))
    home.chmod(0o755)
    data = home / "data"
    shutil.chown(home, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, f"{bin_dir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    # A log file of its own: the server must not hold our pipes open.
    log = ["-l", str(home / "server.log")]
    start = [*as_postgres, f"{bin_dir}/pg_ctl", "-D", str(data), *log, "-o", options, "-w", "start"]
    stop = [*as_postgres, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"]
    subprocess.run(start, check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres?connect_timeout=2", start, stop
    finally:
        subprocess.run(stop, check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_a_database_outage_is_503s_in_bounded_time_then_service_resumes(
    private_postgres: tuple[str, list[str], list[str]], tmp_path: Path
) -> None:
    url, start, stop = private_postgres
    with app_with_tables(url):
        server = serve("wsgi:app", url, tmp_path)
        with server as base:
            tokens = log_in(base)
            bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
            answers: list[tuple[float, int, Any, Any]] = []
            running = threading.Event()
            running.set()

            def load() -> None:
                while running.is_set():
                    started = time.monotonic()
                    answer = call(base, "/api/hello", headers=bearer, timeout=REQUEST_SECONDS)
                    status, headers, body = answer
                    answers.append((time.monotonic() - started, status, headers, body))

            workers = [threading.Thread(target=load) for _ in range(4)]
            for worker in workers:
                worker.start()
            time.sleep(1)
            subprocess.run(stop, check=True, capture_output=True)
            time.sleep(OUTAGE_SECONDS)
            during = len(answers)
            subprocess.run(start, check=True, capture_output=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and answers[-1][1] != 200:
                time.sleep(0.2)
            running.clear()
            for worker in workers:
                worker.join(timeout=30)

            statuses = {status for _, status, _, _ in answers}
            assert statuses == {200, 503}, statuses
            assert max(elapsed for elapsed, *_ in answers) < BOUND_SECONDS
            for _, status, headers, body in answers:
                if status == 503:
                    assert body["error"] == "temporarily_unavailable"
                    assert headers["Retry-After"] == "5"
            assert any(status == 503 for _, status, _, _ in answers[:during])
            assert answers[-1][1] == 200  # back without restarting gunicorn
            status, _, _ = call(base, "/auth/refresh", {"refresh_token": tokens["refresh_token"]})
            assert status == 200
