"""Security events reach operators once committed: a log line, a blinker signal, metrics
(docs/operations.md#operating-it); never a token, a password or a hash in any of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from datetime import UTC
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import generate_latest

from app import db
from flask_token_auth import audit
from flask_token_auth.events import auth_event
from flask_token_auth.events import AuthEventRecord
from flask_token_auth.state import auth_state
from flask_token_auth.state import ClientInfo
from tests.conftest import PASSWORD
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import register
from tests.helpers import rows

GRACE_SECONDS = 0.5


@pytest.fixture
def received(app: Flask) -> Iterator[list[tuple[Any, AuthEventRecord]]]:
    events: list[tuple[Any, AuthEventRecord]] = []

    def receive(sender: Any, *, event: AuthEventRecord) -> None:
        events.append((sender, event))

    auth_event.connect(receive)
    yield events
    auth_event.disconnect(receive)


def metric(name: str, **labels: str) -> float:
    """The current value of one sample of the default registry (0 if absent)."""
    text = generate_latest().decode()
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("app_config", [{"AUTH_REFRESH_REUSE_GRACE": GRACE_SECONDS}])
def test_each_committed_event_is_logged_signalled_and_counted(
    app: Flask,
    client: FlaskClient,
    received: list[tuple[Any, AuthEventRecord]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="flask_token_auth")
    reuse_before = metric("flask_token_auth_events_total", type="refresh_reuse_detected")
    grace_before = metric("flask_token_auth_refreshes_total", outcome="grace")
    revoked_before = metric("flask_token_auth_revocations_total", reason="refresh_reuse_detected")
    refused_before = metric("flask_token_auth_refusals_total", error="invalid_grant")

    register(client)
    first = login(client, native=True).json["refresh_token"]
    second = client.post("/auth/refresh", json={"refresh_token": first}, headers=NATIVE).json
    replay = client.post("/auth/refresh", json={"refresh_token": first}, headers=NATIVE)
    assert replay.json["refresh_token"] == second["refresh_token"]  # a grace replay
    third = client.post(
        "/auth/refresh", json={"refresh_token": second["refresh_token"]}, headers=NATIVE
    ).json
    time.sleep(GRACE_SECONDS)  # `first` is now spent longer ago than the window
    reuse = client.post("/auth/refresh", json={"refresh_token": first}, headers=NATIVE)
    assert reuse.status_code == 401

    types = [event.type for _, event in received]
    assert types == [
        "register",
        "login_succeeded",
        "refreshed",
        "refreshed",
        "refreshed",
        "refresh_reuse_detected",
    ]
    assert all(sender is app for sender, _ in received)
    assert received[-1][1].detail == {"reason": "refresh_reuse_detected", "sessions_revoked": 1}
    lines = [r for r in caplog.records if r.getMessage().startswith("auth event ")]
    assert [r.getMessage().split()[2] for r in lines] == types
    assert lines[-1].levelno == logging.WARNING
    assert lines[-1].auth_event["type"] == "refresh_reuse_detected"  # type: ignore[attr-defined]
    assert (
        metric("flask_token_auth_events_total", type="refresh_reuse_detected") == reuse_before + 1
    )
    assert metric("flask_token_auth_refreshes_total", outcome="grace") == grace_before + 1
    assert (
        metric("flask_token_auth_revocations_total", reason="refresh_reuse_detected")
        == revoked_before + 1
    )
    assert metric("flask_token_auth_refusals_total", error="invalid_grant") == refused_before + 1

    secrets = [PASSWORD, first, second["refresh_token"], third["refresh_token"]]
    secrets += [second["access_token"], third["access_token"]]
    secrets += [row.token_hash for row in rows(app, "SELECT token_hash FROM refresh_tokens")]
    secrets += [row.password_hash for row in rows(app, "SELECT password_hash FROM users")]
    published = caplog.text + generate_latest().decode() + repr(received)
    for secret in secrets:
        assert secret not in published


def test_an_event_of_a_rolled_back_transaction_is_never_published(
    app: Flask, received: list[tuple[Any, AuthEventRecord]]
) -> None:
    with app.app_context():
        audit.record_event(
            auth_state(), "login_succeeded", now=datetime.now(UTC), client=ClientInfo(), user_id=1
        )
        db.session.rollback()
        db.session.commit()

    assert received == []
    assert rows(app, "SELECT * FROM auth_events") == []


@pytest.mark.parametrize(
    "app_config", [{"AUTH_RATELIMIT_ENABLED": True, "AUTH_RATELIMIT_LOGIN": "1/minute"}]
)
def test_a_rate_limited_request_is_logged_and_signalled(
    client: FlaskClient,
    received: list[tuple[Any, AuthEventRecord]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = {"email": "ada@example.com", "password": "wrong password"}
    client.post("/auth/login", json=wrong)
    assert client.post("/auth/login", json=wrong).status_code == 429

    assert received[-1][1] == AuthEventRecord(
        type="rate_limited", ip="127.0.0.1", detail={"limit": "login"}
    )
    assert "auth event rate_limited" in caplog.text


def test_the_reference_service_serves_the_metrics(client: FlaskClient) -> None:
    register(client)
    access = login(client, native=True).json["access_token"]
    client.get("/auth/me", headers=bearer(access))

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert "flask_token_auth_operation_seconds_count" in response.get_data(as_text=True)


def test_a_failing_receiver_is_logged_and_the_request_still_succeeds(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, *, event: AuthEventRecord) -> None:
        raise RuntimeError("a subscriber's bug")

    auth_event.connect(broken)
    try:
        response = client.post(
            "/auth/register", json={"email": "ada@example.com", "password": PASSWORD}
        )
    finally:
        auth_event.disconnect(broken)

    assert response.status_code == 201
    assert "a receiver of auth_event failed on register" in caplog.text
    assert rows(app, "SELECT type FROM auth_events")[0].type == "register"
