"""`make bench`: real gunicorn (2 workers) on loopback, one run, every figure a ratio.

Measures, against the same server in the same run:
- the protected route `/api/hello` (signature check + one session query), and the stateless
  `/api/stateless` (signature check only), against the unprotected `/healthz`;
- refresh (rotation: a conditional UPDATE, an INSERT and a COMMIT) against the same route;
- login against one argon2 verification timed in this process.
Prints a Markdown table and writes it to bench/results.md.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 8
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
PASSWORD = "correct horse battery"  # noqa: S105 (a benchmark user)
CREDENTIALS = {"email": "bench@example.com", "password": PASSWORD}
GUNICORN = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "sync"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def request(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    payload = json.dumps(body) if body is not None else None
    all_headers = {
        "Content-Type": "application/json",
        "X-Token-Transport": "body",
        **(headers or {}),
    }
    connection.request(method, path, body=payload, headers=all_headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data) if data else None


def load(port: int, make_request: Any, clients: int = CLIENTS) -> dict[str, float]:
    """Run `make_request(client_index)` from `clients` threads for SECONDS; rate and latencies."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + SECONDS

    def worker(index: int) -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            ok = make_request(index)
            latencies[index].append(time.perf_counter() - started)
            errors[index] += not ok

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    flat = sorted(value for values in latencies for value in values)
    if sum(errors):
        raise SystemExit(f"{sum(errors)} requests failed")
    return {
        "rate": len(flat) / elapsed,
        "p50": statistics.median(flat) * 1000,
        "p99": flat[int(len(flat) * 0.99) - 1] * 1000,
    }


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    database_url = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.db'}")
    env = os.environ | {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_hex(32),
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_RATELIMIT_ENABLED": "false",
        "FLASK_APP": "wsgi",
    }
    subprocess.run(
        [sys.executable, "-m", "flask", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    server, port = start_gunicorn("wsgi:app", env)
    fjx_server, fjx_port = start_gunicorn("fjx_app:app", env, folder="bench")
    try:
        for served in (port, fjx_port):
            for _ in range(100):
                try:
                    request(served, "GET", "/healthz")
                    break
                except OSError:
                    time.sleep(0.2)
        rows = run_benchmarks(port)
        rotation = next(
            figures for name, figures, _ in rows if name.startswith("POST /auth/refresh")
        )
        rows += compare_flask_jwt_extended(fjx_port, rotation)
        rows += prune_under_load(port, env, database_url, rotation)
    finally:
        for process in (server, fjx_server):
            process.terminate()
            process.wait(timeout=30)
    table = render(rows, database_url)
    print(table)
    (ROOT / "bench" / "results.md").write_text(table)


def start_gunicorn(
    application: str, env: dict[str, str], *, folder: str = "."
) -> tuple[subprocess.Popen[bytes], int]:
    """gunicorn with 2 sync workers (as labelled: gunicorn.conf.py's threads are for slow
    clients) serving `application` from `folder`; the process and its port."""
    port = free_port()
    server = subprocess.Popen(
        [*GUNICORN, "--chdir", str(ROOT / folder), "--bind", f"127.0.0.1:{port}", application],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, port


def compare_flask_jwt_extended(
    port: int, refresh: dict[str, float]
) -> list[tuple[str, dict[str, float], str]]:
    """The same plain and protected routes under Flask-JWT-Extended, and the write floor, in
    the same run; `refresh` is our rotation's figures."""
    bearer = {"Authorization": f"Bearer {request(port, 'GET', '/token')[1]['access_token']}"}
    plain = load(port, lambda _: request(port, "GET", "/healthz")[0] == 200)
    protected = load(port, lambda _: request(port, "GET", "/api/hello", headers=bearer)[0] == 200)
    inserts = load(port, lambda _: request(port, "POST", "/insert", {})[0] == 200)
    return [
        (
            "POST /insert (one INSERT and COMMIT, the floor)",
            inserts,
            f"refresh p50 = {refresh['p50'] / inserts['p50']:.2f} x this p50",
        ),
        ("Flask-JWT-Extended: GET /healthz", plain, "1.00 (its own)"),
        (
            "Flask-JWT-Extended: GET /api/hello (@jwt_required, stateless)",
            protected,
            f"{protected['rate'] / plain['rate']:.2f} of its unprotected",
        ),
    ]


PRUNE_ROWS = int(os.environ.get("BENCH_PRUNE_ROWS", "1000000"))


def prune_under_load(
    port: int, env: dict[str, str], database_url: str, refresh: dict[str, float]
) -> list[tuple[str, dict[str, float], str]]:
    """Refresh with PRUNE_ROWS expired tokens in the table, then while `flask auth prune`
    deletes them (in batches); `refresh` is the figures with a small table."""
    seed_expired_tokens(database_url, PRUNE_ROWS)
    # A session per client, each rotating its own chain.
    logins = [request(port, "POST", "/auth/login", CREDENTIALS)[1] for _ in range(CLIENTS)]
    tokens = [session["refresh_token"] for session in logins]

    def rotate(index: int) -> bool:
        status, body = request(port, "POST", "/auth/refresh", {"refresh_token": tokens[index]})
        if status == 200:
            tokens[index] = body["refresh_token"]
        return status == 200

    big = load(port, rotate)
    started = time.monotonic()
    pruning = subprocess.Popen(
        [sys.executable, "-m", "flask", "auth", "prune"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    during = load(port, rotate)
    output, _ = pruning.communicate(timeout=600)
    seconds = time.monotonic() - started
    label = f"{PRUNE_ROWS:,}"
    return [
        (
            f"POST /auth/refresh, {label} expired tokens in the table",
            big,
            f"p50 = {big['p50'] / refresh['p50']:.2f} x with a small table",
        ),
        (
            f"POST /auth/refresh during `flask auth prune` of them ({seconds:.0f} s)",
            during,
            f"p99 = {during['p99'] / big['p99']:.2f} x without the prune; "
            + output.decode().strip().split(";")[0],
        ),
    ]


def seed_expired_tokens(database_url: str, count: int) -> None:
    """`count` refresh tokens that expired a day ago, in one expired session of the bench user."""
    sys.path.insert(0, str(ROOT))
    import sqlalchemy as sa

    from flask_token_auth import AuthSession
    from flask_token_auth import RefreshToken
    from flask_token_auth import User
    from flask_token_auth.engines import register_url_schemes

    register_url_schemes()
    engine = sa.create_engine(database_url)
    past = datetime.now(UTC) - timedelta(days=1)
    with engine.begin() as connection:
        user_id = connection.execute(sa.select(User.id).limit(1)).scalar_one()
        connection.execute(
            sa.insert(AuthSession).values(
                id="bench-expired",
                user_id=user_id,
                created_at=past,
                last_used_at=past,
                expires_at=past,
            )
        )
    chunk = 20000
    for start in range(0, count, chunk):
        rows = [
            {
                "token_hash": f"{number:064x}",
                "user_id": user_id,
                "session_id": "bench-expired",
                "created_at": past,
                "expires_at": past,
            }
            for number in range(start, min(start + chunk, count))
        ]
        with engine.begin() as connection:
            connection.execute(sa.insert(RefreshToken), rows)
    engine.dispose()


def run_benchmarks(port: int) -> list[tuple[str, dict[str, float], str]]:
    request(port, "POST", "/auth/register", CREDENTIALS)
    credentials = CREDENTIALS
    sessions = [request(port, "POST", "/auth/login", credentials)[1] for _ in range(CLIENTS)]
    bearer = {"Authorization": f"Bearer {sessions[0]['access_token']}"}
    refresh_tokens = [session["refresh_token"] for session in sessions]

    def refresh(index: int) -> bool:
        status, body = request(
            port, "POST", "/auth/refresh", {"refresh_token": refresh_tokens[index]}
        )
        if status == 200:
            refresh_tokens[index] = body["refresh_token"]
        return status == 200

    public = load(port, lambda _: request(port, "GET", "/healthz")[0] == 200)
    protected = load(port, lambda _: request(port, "GET", "/api/hello", headers=bearer)[0] == 200)
    stateless = load(
        port, lambda _: request(port, "GET", "/api/stateless", headers=bearer)[0] == 200
    )
    rotations = load(port, refresh)
    logins = load(
        port, lambda _: request(port, "POST", "/auth/login", credentials)[0] == 200, clients=1
    )

    sys.path.insert(0, str(ROOT))
    from flask_token_auth.passwords import PasswordHasher

    hasher = PasswordHasher("rfc9106_low_memory")
    password_hash = hasher.hash(PASSWORD)
    verify_ms = (
        statistics.median(_timed(lambda: hasher.verify(password_hash, PASSWORD)) for _ in range(10))
        * 1000
    )
    return [
        ("GET /healthz (unprotected)", public, "1.00"),
        (
            "GET /api/hello (@auth_required)",
            protected,
            f"{protected['rate'] / public['rate']:.2f} of unprotected",
        ),
        (
            "GET /api/stateless (@auth_required(stateless=True))",
            stateless,
            f"{stateless['rate'] / public['rate']:.2f} of unprotected",
        ),
        (
            "POST /auth/refresh (rotation)",
            rotations,
            f"{rotations['rate'] / public['rate']:.2f} of unprotected",
        ),
        (
            "POST /auth/login (1 client)",
            logins,
            f"p50 = {logins['p50'] / verify_ms:.2f} x one argon2 verify ({verify_ms:.0f} ms)",
        ),
    ]


def _timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def render(rows: list[tuple[str, dict[str, float], str]], database_url: str) -> str:
    backend = database_url.split(":", 1)[0]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; gunicorn 2 sync workers, "
        f"{CLIENTS} client threads, {SECONDS:.0f} s each, {backend}.",
        "",
        "| what | requests/s | p50 ms | p99 ms | ratio (same run) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, figures, ratio in rows:
        rate, p50, p99 = figures["rate"], figures["p50"], figures["p99"]
        lines.append(f"| {name} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
