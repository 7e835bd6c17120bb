"""The audit trail records every event with ip and user agent; no log line carries a secret."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("app_config", [{"AUTH_REFRESH_REUSE_GRACE": 0}])  # replays are reuse
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


def test_a_password_change_records_one_event_with_the_sessions_it_ended(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    others = [login(client, native=True).json for _ in range(2)]
    current = login(client, native=True).json
    me = client.get("/auth/me", headers=bearer(current["access_token"])).json
    changed = client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long password"},
        headers=bearer(current["access_token"]),
    )
    assert changed.status_code == 204

    [event] = rows(
        app, "SELECT type, session_id, detail FROM auth_events WHERE type = 'password_changed'"
    )
    assert event.session_id == me["session_id"]  # the session that asked, and was kept
    detail = event.detail if isinstance(event.detail, dict) else json.loads(event.detail)
    assert detail == {"reason": "password_changed", "sessions_revoked": 2}
    assert all(
        client.get("/auth/me", headers=bearer(o["access_token"])).status_code == 401 for o in others
    )
    assert (
        rows(app, "SELECT COUNT(*) AS n FROM auth_events WHERE type = 'session_revoked'")[0].n == 0
    )
