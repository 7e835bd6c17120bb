"""Helpers shared by the tests: log in, read the database outside the request's session."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def csrf_header(client: FlaskClient) -> dict[str, str]:
    cookie = client.get_cookie("csrf_token")
    assert cookie is not None
    return {"X-CSRF-Token": cookie.value}


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


def execute(app: Flask, statement: str, **params: Any) -> None:
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text(statement), params)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


REPOSITORY = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def gunicorn(
    application: str, env: Mapping[str, str], log: Path, *, workers: int = 2
) -> Iterator[str]:
    """gunicorn serving `application` from the repository, with `env` over ours; its base URL
    once /healthz answers. Its output goes to `log`; it is stopped afterwards."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers)]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--bind", f"127.0.0.1:{port}", application],
            cwd=REPOSITORY,
            env={**os.environ, **env},
            stdout=output,
            stderr=output,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1).close()  # noqa: S310
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(
                            f"gunicorn did not start: {log.read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)
