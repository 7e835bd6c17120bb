"""A guesser cannot lock the owner out: failed logins count per account only on failure, and a
browser that logged in before (its device cookie) passes the account's ceiling
(docs/security.md, Design choices; docs/http-api.md, Errors)."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from datetime import UTC
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_token_auth.devices import DEVICE_COOKIE
from flask_token_auth.devices import device_nonce
from flask_token_auth.devices import DEVICE_TOKEN_LIFETIME
from flask_token_auth.devices import new_device_token
from flask_token_auth.ratelimit import LOGIN_DEVICE_LIMIT
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import assert_rate_limited
from tests.helpers import NATIVE
from tests.helpers import register
from tests.helpers import set_cookies
from tests.helpers import snapshot

HTTPS = {"base_url": "https://localhost"}
ACCOUNT = "email:ada@example.com"
RIGHT = {"email": "ada@example.com", "password": PASSWORD}
WRONG = {"email": "ada@example.com", "password": "wrong password"}
CEILING = 3
LIMITED = {
    "AUTH_RATELIMIT_ENABLED": True,
    "AUTH_RATELIMIT_LOGIN_ACCOUNT": f"{CEILING}/hour",
    # Room for a device's failures from one address: the account's ceiling is what is tested.
    "AUTH_RATELIMIT_LOGIN_ADDRESS": "100/minute",
    "AUTH_RATELIMIT_LOGIN": "100/minute",
}
DEVICE_FAILURES = int(LOGIN_DEVICE_LIMIT.split("/")[0])
HOUR = 3600  # the window of the account's and the device's limits, in seconds


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Rate limits on, as in production, with a small ceiling per account."""
    return LIMITED


def attempt(client: FlaskClient, body: dict[str, str], ip: str, **kwargs: Any) -> TestResponse:
    return client.post(
        "/auth/login", json=body, environ_base={"REMOTE_ADDR": ip}, **HTTPS, **kwargs
    )


def guess_past_the_ceiling(app: Flask, body: dict[str, str] = WRONG) -> None:
    """A stranger's wrong passwords from as many addresses as the ceiling allows."""
    for number in range(CEILING):
        assert attempt(app.test_client(), body, f"203.0.113.{number}").status_code == 401


def known_browser(app: Flask) -> FlaskClient:
    """A browser the owner logged in from: it holds the account's device cookie."""
    browser = app.test_client()
    assert attempt(browser, RIGHT, "192.0.2.10").status_code == 200
    assert browser.get_cookie(DEVICE_COOKIE, path="/auth") is not None
    return browser


def test_the_owners_known_browser_logs_in_past_a_guessers_ceiling(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    browser = known_browser(app)
    guess_past_the_ceiling(app)

    before = snapshot(app)
    # A stranger, from a new address or the owner's own, is refused before any work.
    assert_rate_limited(attempt(app.test_client(), WRONG, "203.0.113.99"), window=HOUR)
    assert_rate_limited(attempt(app.test_client(), RIGHT, "192.0.2.10"), window=HOUR)
    assert snapshot(app) == before

    response = attempt(browser, RIGHT, "192.0.2.10")
    assert response.status_code == 200
    assert response.json["user"]["email"] == "ada@example.com"


def test_a_known_browsers_wrong_password_is_401_past_the_ceiling(app: Flask) -> None:
    register(app.test_client())
    browser = known_browser(app)
    guess_past_the_ceiling(app)
    assert attempt(browser, WRONG, "192.0.2.10").status_code == 401
    assert attempt(browser, RIGHT, "192.0.2.10").status_code == 200


def test_unknown_logins_meet_the_ceiling_too(app: Flask) -> None:
    """A failure is counted whether the account exists or not: the 429 tells nothing."""
    nobody = {"email": "nobody@example.com", "password": "wrong password"}
    guess_past_the_ceiling(app, nobody)
    assert_rate_limited(attempt(app.test_client(), nobody, "203.0.113.99"), window=HOUR)


def test_successful_logins_do_not_count_toward_the_ceiling(app: Flask) -> None:
    register(app.test_client())
    for number in range(CEILING * 2):  # new browsers each time: no device cookie helps
        assert attempt(app.test_client(), RIGHT, f"192.0.2.{number}").status_code == 200
    guess_past_the_ceiling(app)
    assert_rate_limited(attempt(app.test_client(), WRONG, "203.0.113.99"), window=HOUR)


def test_a_forged_device_cookie_is_not_honoured(app: Flask) -> None:
    register(app.test_client())
    guess_past_the_ceiling(app)
    stranger = app.test_client()
    now = datetime.now(UTC)
    forged = new_device_token(ACCOUNT, secret_key=b"not the server's key " * 2, now=now)
    stranger.set_cookie(DEVICE_COOKIE, forged, path="/auth")
    assert_rate_limited(attempt(stranger, RIGHT, "192.0.2.10"), window=HOUR)


def test_another_accounts_device_cookie_is_not_honoured(app: Flask) -> None:
    register(app.test_client())
    register(app.test_client(), "bob@example.com")
    bobs_browser = app.test_client()
    bob = {"email": "bob@example.com", "password": PASSWORD}
    assert attempt(bobs_browser, bob, "192.0.2.20").status_code == 200
    guess_past_the_ceiling(app)
    assert_rate_limited(attempt(bobs_browser, RIGHT, "192.0.2.20"), window=HOUR)
    # Bob's own account is untouched by the guesses at Ada's.
    assert attempt(bobs_browser, bob, "192.0.2.20").status_code == 200


def test_a_device_cookie_that_failed_too_often_is_no_longer_honoured(app: Flask) -> None:
    register(app.test_client())
    browser = known_browser(app)
    # Its failures count against the device alone: past the account's ceiling, still 401.
    for _ in range(DEVICE_FAILURES):
        assert attempt(browser, WRONG, "192.0.2.10").status_code == 401
    guess_past_the_ceiling(app)  # the account had no failures until now
    before = snapshot(app)
    assert_rate_limited(attempt(browser, RIGHT, "192.0.2.10"), window=HOUR)
    assert snapshot(app) == before


def test_the_device_cookie_is_httponly_secure_strict_under_the_prefix(app: Flask) -> None:
    register(app.test_client())
    response = attempt(app.test_client(), RIGHT, "192.0.2.10")
    device = set_cookies(response)[DEVICE_COOKIE]
    assert {"httponly", "secure"} <= set(device)
    assert (device["samesite"], device["path"]) == ("Strict", "/auth")
    assert device["max-age"] == str(int(DEVICE_TOKEN_LIFETIME.total_seconds()))


def test_a_native_login_sets_no_cookie(app: Flask) -> None:
    register(app.test_client())
    response = attempt(app.test_client(), RIGHT, "192.0.2.10", headers=NATIVE)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_a_browser_stays_known_to_each_account_it_logged_in_to(app: Flask) -> None:
    register(app.test_client())
    register(app.test_client(), "bob@example.com")
    browser = known_browser(app)
    bob = {"email": "bob@example.com", "password": PASSWORD}
    assert attempt(browser, bob, "192.0.2.10").status_code == 200
    guess_past_the_ceiling(app)
    assert attempt(browser, RIGHT, "192.0.2.10").status_code == 200


@pytest.mark.parametrize("app_config", [{}])
def test_no_device_cookie_while_rate_limits_are_off(app: Flask) -> None:
    register(app.test_client())
    response = attempt(app.test_client(), RIGHT, "192.0.2.10")
    assert response.status_code == 200
    cookies = set_cookies(response)
    assert "refresh_token" in cookies  # a browser's login: its cookies, but no device's
    assert DEVICE_COOKIE not in cookies


def test_device_tokens_are_bound_to_the_account_the_key_and_a_lifetime() -> None:
    now = datetime.now(UTC)
    key, old_key = SECRET.encode(), b"the key before the rotation " * 2
    token = new_device_token(ACCOUNT, secret_key=key, now=now)
    assert device_nonce(token, ACCOUNT, secret_keys=(key,), now=now) == token.split(".")[1]
    assert device_nonce(token, "email:bob@example.com", secret_keys=(key,), now=now) is None
    assert device_nonce(token, ACCOUNT, secret_keys=(old_key,), now=now) is None
    later = now + DEVICE_TOKEN_LIFETIME + timedelta(seconds=1)
    assert device_nonce(token, ACCOUNT, secret_keys=(key,), now=later) is None
    older = new_device_token(ACCOUNT, secret_key=old_key, now=now)
    assert device_nonce(older, ACCOUNT, secret_keys=(key, old_key), now=now) is not None
    issued, nonce, signature = token.split(".")
    assert (
        device_nonce(f"{issued}.{nonce}.{'0' * 64}", ACCOUNT, secret_keys=(key,), now=now) is None
    )
    assert (
        device_nonce(f"{int(issued) + 1}.{nonce}.{signature}", ACCOUNT, secret_keys=(key,), now=now)
        is None
    )
