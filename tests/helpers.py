"""Helpers shared by the tests: log in, read cookies and tokens, read the database outside the
request's session, serve the app under gunicorn and call it over HTTP."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from email.message import Message
from pathlib import Path
from typing import Any

import jwt
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import db
from tests.conftest import PASSWORD

NATIVE = {"X-Token-Transport": "body"}


def register(
    client: FlaskClient, email: str = "ada@example.com", password: str = PASSWORD
) -> dict[str, Any]:
    response = client.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.json
    user: dict[str, Any] = response.json["user"]
    return user


def login(
    client: FlaskClient,
    email: str = "ada@example.com",
    password: str = PASSWORD,
    *,
    native: bool = False,
) -> TestResponse:
    response = client.post(
        "/auth/login", json={"email": email, "password": password}, headers=NATIVE if native else {}
    )
    assert response.status_code == 200, response.json
    return response


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def refresh_native(client: FlaskClient, refresh_token: object) -> TestResponse:
    """A refresh with the token in the body, as a native client sends it."""
    return client.post("/auth/refresh", json={"refresh_token": refresh_token}, headers=NATIVE)


#: The CSRF cookie of the test apps, whose cookies are Secure and host-only.
CSRF_COOKIE = "__Host-csrf_token"


def csrf_header(client: FlaskClient) -> dict[str, str]:
    """The header a page's script sends: the CSRF cookie's value (`__Host-csrf_token`, else
    `csrf_token` where the cookies are not Secure or have a domain)."""
    cookie = client.get_cookie(CSRF_COOKIE) or client.get_cookie("csrf_token")
    assert cookie is not None
    return {"X-CSRF-Token": cookie.value}


def refresh_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("refresh_token", path="/auth")
    assert cookie is not None
    return cookie.value


def set_cookies(response: TestResponse) -> dict[str, dict[str, str]]:
    """The Set-Cookie headers by cookie name: {"value": ..., attribute (lower case): value}."""
    cookies: dict[str, dict[str, str]] = {}
    for header in response.headers.getlist("Set-Cookie"):
        pair, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = pair.partition("=")
        parsed = {"value": value}
        for attribute in attributes:
            key, _, attribute_value = attribute.partition("=")
            parsed[key.lower()] = attribute_value
        assert name not in cookies, f"{name} set twice"
        cookies[name] = parsed
    return cookies


def claims_of(access_token: str) -> dict[str, Any]:
    """The claims of `access_token`, its signature unchecked."""
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def token_hash(refresh_token: str) -> str:
    """What the database stores of a refresh token."""
    return hashlib.sha256(bytes.fromhex(refresh_token)).hexdigest()


def assert_rate_limited(response: TestResponse, *, window: int = 60) -> None:
    """A 429 whose Retry-After is within the limit's `window` (seconds), no cookie touched."""
    assert response.status_code == 429
    assert response.json == {
        "error": "rate_limited",
        "error_description": "too many attempts; retry later",
    }
    assert 1 <= int(response.headers["Retry-After"]) <= window
    assert "Set-Cookie" not in response.headers


def rows(app: Flask, query: str, **params: Any) -> list[sa.Row[Any]]:
    """Rows read on a connection of their own: what is committed, not the request's session."""
    with app.app_context(), db.engine.connect() as connection:
        return list(connection.execute(sa.text(query), params))


def scalar(app: Flask, query: str, **params: Any) -> Any:
    with app.app_context(), db.engine.connect() as connection:
        return connection.execute(sa.text(query), params).scalar()


AUTH_TABLES = ("users", "auth_sessions", "refresh_tokens", "auth_events")


def snapshot(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every committed row of every auth table, to prove a rejected request changed nothing."""
    return {
        table: [tuple(row) for row in rows(app, f"SELECT * FROM {table} ORDER BY id")]  # noqa: S608
        for table in AUTH_TABLES
    }


def event_types(app: Flask) -> list[str]:
    return [row.type for row in rows(app, "SELECT type FROM auth_events ORDER BY id")]


def execute(app: Flask, statement: str, **params: Any) -> None:
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text(statement), params)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_of(base_url: str) -> int:
    port = urllib.parse.urlsplit(base_url).port
    assert port is not None, base_url
    return port


REPOSITORY = Path(__file__).resolve().parent.parent
#: How long gunicorn has to answer its first request (its workers boot slowly on a busy
#: machine), then to stop once told to.
GUNICORN_START_SECONDS = 60
GUNICORN_STOP_SECONDS = 30


def log_tail(log: Path, characters: int = 3000) -> str:
    return log.read_text(errors="replace")[-characters:] if log.exists() else "(no log)"


def _answers(url: str) -> bool:
    """Whether a worker answers `url`: any answer but a 5xx (a host without /healthz says 404)."""
    try:
        urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 (a loopback URL we built)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code < 500
    except (OSError, http.client.HTTPException):  # refused, cut off or no worker yet
        return False
    return True


@contextlib.contextmanager
def gunicorn(
    application: str,
    env: Mapping[str, str],
    log: Path,
    *,
    workers: int = 2,
    threads: int | None = None,
    program: Sequence[str] = (sys.executable, "-m", "gunicorn"),
    cwd: Path = REPOSITORY,
    inherited: Mapping[str, str] = os.environ,
) -> Iterator[str]:
    """gunicorn serving `application` from `cwd` on a free loopback port, with `env` over
    `inherited`: its base URL, once a worker answers. `threads=None` leaves them to the config
    file gunicorn reads in `cwd` (the repository's gunicorn.conf.py). Its output goes to `log`,
    whose tail is in the assertion when it does not start and noted on any exception the block
    raises. Stopped on the way out: SIGTERM, then SIGKILL to its process group."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [*program, "--workers", str(workers)]
    if threads is not None:
        command += ["--threads", str(threads)]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--bind", f"127.0.0.1:{port}", application],
            cwd=cwd,
            env={**inherited, **env},
            stdout=output,
            stderr=output,
            start_new_session=True,  # its workers go with it, even on SIGKILL
        )
    try:
        deadline = time.monotonic() + GUNICORN_START_SECONDS
        while not _answers(f"{base}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                state = "exited" if process.poll() is not None else "did not answer"
                raise AssertionError(f"gunicorn {state}; its log ends:\n{log_tail(log)}")
            time.sleep(0.2)
        try:
            yield base
        except Exception as error:
            error.add_note(f"gunicorn's log ({log}) ends:\n{log_tail(log)}")
            raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=GUNICORN_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def call(
    base: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 60,
) -> tuple[int, Message, Any]:
    """(status, headers, JSON body) of a request to a live server, the tokens in the body: a POST
    of `body` as JSON, or a GET without one. Never raises for an HTTP status."""
    request = urllib.request.Request(  # noqa: S310 (a loopback URL the test built)
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **NATIVE, **(headers or {})},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, json.loads(error.read() or b"null")
