"""A native app is a known device too: its login answer carries `device_token`, and a later
login that sends it back passes the account's ceiling on failed logins, as a browser's device
cookie does (docs/security.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from flask import Flask

from flask_token_auth.client import MemoryTokenStore
from flask_token_auth.client import TokenAuth
from flask_token_auth.devices import MAX_DEVICE_TOKENS
from flask_token_auth.devices import MAX_DEVICE_VALUE_LENGTH
from tests.helpers import assert_rate_limited
from tests.helpers import NATIVE
from tests.helpers import register
from tests.helpers import snapshot
from tests.test_lockout import attempt
from tests.test_lockout import guess_past_the_ceiling
from tests.test_lockout import LIMITED
from tests.test_lockout import RIGHT
from tests.test_lockout import WRONG


@pytest.fixture
def app_config() -> dict[str, Any]:
    return LIMITED


def native_login(app: Flask, body: dict[str, Any], ip: str = "192.0.2.20") -> Any:
    return attempt(app.test_client(), body, ip, headers=NATIVE)


def test_a_native_login_answers_a_device_token_and_sets_no_cookie(app: Flask) -> None:
    register(app.test_client())
    response = native_login(app, RIGHT)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    device = response.json["device_token"]
    assert len(device.split("~")) == 1
    assert 0 < len(device) <= MAX_DEVICE_VALUE_LENGTH


def test_the_native_device_logs_in_past_a_guessers_ceiling(app: Flask) -> None:
    register(app.test_client())
    device = native_login(app, RIGHT).json["device_token"]
    guess_past_the_ceiling(app)

    assert_rate_limited(native_login(app, RIGHT), window=3600)
    assert_rate_limited(native_login(app, {**RIGHT, "device_token": "1.2.3"}), window=3600)
    known = native_login(app, {**RIGHT, "device_token": device})
    assert known.status_code == 200
    # Each login answers a fresh token for this account, the device's others kept after it.
    assert known.json["device_token"] != device


def test_a_native_device_keeps_its_tokens_for_other_accounts(app: Flask) -> None:
    register(app.test_client())
    register(app.test_client(), "bob@example.com")
    ada = native_login(app, RIGHT).json["device_token"]
    bob = {"email": "bob@example.com", "password": RIGHT["password"]}
    both = native_login(app, {**bob, "device_token": ada}).json["device_token"]
    assert both.split("~")[1] == ada
    guess_past_the_ceiling(app)
    assert native_login(app, {**RIGHT, "device_token": both}).status_code == 200
    assert len(both.split("~")) <= MAX_DEVICE_TOKENS


TOO_LONG = "x" * (MAX_DEVICE_VALUE_LENGTH + 1)
NOT_A_DEVICE_VALUE = (
    f"device_token: must be a string of at most {MAX_DEVICE_VALUE_LENGTH} characters"
)


@pytest.mark.parametrize(
    ("device_token", "description"),
    [
        (17, NOT_A_DEVICE_VALUE),
        (TOO_LONG, NOT_A_DEVICE_VALUE),
        (["1.2.3"], "device_token: must be a single value, not a list or an object"),
    ],
    ids=["number", "too long", "list"],
)
def test_a_device_token_that_is_no_string_of_its_size_is_a_400_that_changes_nothing(
    app: Flask, device_token: Any, description: str
) -> None:
    register(app.test_client())
    before = snapshot(app)
    response = native_login(app, {**RIGHT, "device_token": device_token})
    assert (response.status_code, response.json) == (
        400,
        {"error": "invalid_request", "error_description": description},
    )
    assert snapshot(app) == before


def test_a_null_device_token_is_none_sent(app: Flask) -> None:
    register(app.test_client())
    assert native_login(app, {**RIGHT, "device_token": None}).status_code == 200


def test_a_wrong_password_from_the_known_device_is_still_401(app: Flask) -> None:
    register(app.test_client())
    device = native_login(app, RIGHT).json["device_token"]
    guess_past_the_ceiling(app)
    refused = native_login(app, {**WRONG, "device_token": device})
    assert (refused.status_code, refused.json["error"]) == (401, "invalid_grant")


def test_the_python_client_sends_back_the_device_token_it_was_given(app: Flask) -> None:
    """`TokenAuth.device_token` is set by a login's answer and sent with the next login."""
    register(app.test_client())
    sent: list[Any] = []
    flask_client = app.test_client()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        answer = flask_client.post(
            request.url.path,
            data=request.content,
            headers=dict(request.headers),
            environ_base={"REMOTE_ADDR": "192.0.2.30"},
        )
        return httpx.Response(answer.status_code, content=answer.data)

    auth = TokenAuth(MemoryTokenStore())
    with httpx.Client(
        base_url="https://localhost", transport=httpx.MockTransport(handler)
    ) as client:
        auth.log_in(client, RIGHT["email"], RIGHT["password"])
        first = auth.device_token
        assert first is not None
        guess_past_the_ceiling(app)
        auth.log_in(client, RIGHT["email"], RIGHT["password"])

    assert b'"device_token"' not in sent[0]
    assert f'"device_token": "{first}"'.encode() in sent[1].replace(b'":"', b'": "')
    assert auth.device_token not in (None, first)
