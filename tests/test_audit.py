"""The audit trail records every event with ip and user agent; no log line carries a secret."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import register
from tests.helpers import rows


def test_full_session_is_audited_and_logs_no_secret(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = NATIVE | {"User-Agent": "audit-test/1.0"}
    register(client)
    client.post("/auth/login", json={"email": "ada@example.com", "password": "wrong password"})
    issued = login(client, native=True).json
    first, access = issued["refresh_token"], issued["access_token"]
    second = client.post("/auth/refresh", json={"refresh_token": first}, headers=headers).json
    second_access = second["access_token"]
    third = client.post(
        "/auth/refresh", json={"refresh_token": second["refresh_token"]}, headers=headers
    ).json
    reuse = client.post("/auth/refresh", json={"refresh_token": first}, headers=headers)
    assert reuse.status_code == 401
    relogin = login(client, native=True).json
    new_password = "another long password"
    changed = client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(relogin["access_token"]),
    )
    assert changed.status_code == 204
    assert client.post("/auth/logout", headers=bearer(relogin["access_token"])).status_code == 204

    events = rows(app, "SELECT type, ip, user_agent FROM auth_events ORDER BY id")
    assert [event.type for event in events] == [
        "register",
        "login_failed",
        "login_succeeded",
        "refreshed",
        "refreshed",
        "refresh_reuse_detected",
        "login_succeeded",
        "password_changed",
        "logout",
    ]
    assert all(event.ip == "127.0.0.1" for event in events)
    assert events[3].user_agent == "audit-test/1.0"

    secrets = [PASSWORD, new_password, first, access, second_access, third["refresh_token"]]
    secrets += [row.token_hash for row in rows(app, "SELECT token_hash FROM refresh_tokens")]
    secrets += [row.password_hash for row in rows(app, "SELECT password_hash FROM users")]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "refresh_reuse_detected" in logged  # the log did capture the events
    for secret in secrets:
        assert secret not in logged
