"""AUTH_COOKIE_PARTITIONED: the Partitioned attribute (CHIPS) on the refresh, CSRF and device
cookies, for an API a page on another site calls (docs/clients.md, docs/configuration.md)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.http import dump_cookie

from config import from_environment
from flask_token_auth import transport
from flask_token_auth.settings import AuthSettings
from tests.helpers import csrf_header
from tests.helpers import login
from tests.helpers import register
from tests.helpers import set_cookies

BROWSER_COOKIES = {"refresh_token", "__Host-csrf_token", "device_token"}


@pytest.fixture
def app_config() -> dict[str, Any]:
    # Rate limits on: the device cookie is set only where they are.
    return {"AUTH_RATELIMIT_ENABLED": True}


def test_by_default_no_cookie_is_partitioned(app: Flask, client: FlaskClient) -> None:
    assert app.config["AUTH_COOKIE_PARTITIONED"] is False
    register(client)

    cookies = set_cookies(login(client))

    assert set(cookies) == BROWSER_COOKIES
    assert [name for name, cookie in cookies.items() if "partitioned" in cookie] == []


PARTITIONED = {"AUTH_RATELIMIT_ENABLED": True, "AUTH_COOKIE_PARTITIONED": True}


@pytest.mark.parametrize(
    ("app_config", "csrf_cookie"),
    [
        (PARTITIONED, "__Host-csrf_token"),
        (
            {**PARTITIONED, "AUTH_COOKIE_SAMESITE": "None", "AUTH_COOKIE_DOMAIN": "example.com"},
            "csrf_token",
        ),
    ],
    ids=["host-only", "a domain"],
)
def test_partitioned_cookies_carry_the_attribute(
    app: Flask, client: FlaskClient, csrf_cookie: str
) -> None:
    register(client)

    answer = login(client)

    cookies = set_cookies(answer)
    assert set(cookies) == {"refresh_token", csrf_cookie, "device_token"}
    for name, cookie in cookies.items():
        assert "secure" in cookie, name
        assert cookie["samesite"] == app.config["AUTH_COOKIE_SAMESITE"], name
        assert cookie.get("domain") == app.config["AUTH_COOKIE_DOMAIN"], name
    for header in answer.headers.getlist("Set-Cookie"):
        assert header.endswith("; Partitioned"), header
        assert header.count("Partitioned") == 1, header


@pytest.mark.parametrize("app_config", [PARTITIONED], ids=["partitioned"])
def test_rotated_and_cleared_cookies_stay_partitioned(client: FlaskClient) -> None:
    """A browser keys a partitioned cookie by its partition too: an unpartitioned Set-Cookie
    would neither replace nor delete it."""
    register(client)
    login(client)

    refreshed = client.post("/auth/refresh", headers=csrf_header(client))

    assert refreshed.status_code == 200, refreshed.json
    rotated = set_cookies(refreshed)
    assert set(rotated) == {"refresh_token", "__Host-csrf_token"}
    assert all(cookie["partitioned"] == "" for cookie in rotated.values())

    logout = client.post("/auth/logout", headers=csrf_header(client))

    assert logout.status_code == 204
    cleared = set_cookies(logout)
    assert set(cleared) == {"refresh_token", "__Host-csrf_token"}
    assert all(
        (cookie["value"], cookie["max-age"], cookie["partitioned"]) == ("", "0", "")
        for cookie in cleared.values()
    )


def test_partitioned_needs_secure_cookies() -> None:
    config = {"SECRET_KEY": "s" * 32, "AUTH_COOKIE_PARTITIONED": True, "AUTH_COOKIE_SECURE": False}
    with pytest.raises(
        RuntimeError,
        match=r"^AUTH_COOKIE_PARTITIONED: needs AUTH_COOKIE_SECURE \(browsers drop",
    ):
        AuthSettings.from_config(config)


def test_partitioned_must_be_a_boolean() -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_COOKIE_PARTITIONED: must be true or false"):
        AuthSettings.from_config({"SECRET_KEY": "s" * 32, "AUTH_COOKIE_PARTITIONED": "true"})


def test_the_reference_service_reads_it_from_the_environment() -> None:
    assert from_environment({"AUTH_COOKIE_PARTITIONED": "true"})["AUTH_COOKIE_PARTITIONED"] is True


def test_the_attribute_is_written_as_werkzeug_3_1_writes_it() -> None:
    """Werkzeug 3.0 (the supported floor) cannot write it, so the extension appends it; where
    Werkzeug can, both agree."""
    options: dict[str, Any] = {"path": "/auth", "httponly": True, "secure": True}
    header = dump_cookie("refresh_token", "abc", samesite="None", **options)

    assert transport.add_partitioned_attribute(header) == (
        "refresh_token=abc; Secure; HttpOnly; Path=/auth; SameSite=None; Partitioned"
    )
    if "partitioned" in inspect.signature(dump_cookie).parameters:
        for samesite in ("None", "Lax", "Strict"):
            plain = dump_cookie("refresh_token", "abc", samesite=samesite, **options)
            native = dump_cookie(
                "refresh_token", "abc", samesite=samesite, partitioned=True, **options
            )
            assert transport.add_partitioned_attribute(plain) == native
