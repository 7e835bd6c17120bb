"""Clients on other origins and of other kinds: CORS for trusted origins only, a refresh token
answered the way it came, and a 403 for a foreign Origin that says how to admit it."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_token_auth.settings import AuthSettings
from tests.conftest import PASSWORD
from tests.helpers import CSRF_COOKIE
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import register
from tests.helpers import set_cookies
from tests.helpers import snapshot

TRUSTED = "https://app.example"
STRANGER = "https://evil.example"
CREDENTIALS = {"email": "ada@example.com", "password": PASSWORD}


def preflight(client: FlaskClient, origin: str, path: str = "/auth/refresh") -> TestResponse:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-csrf-token",
        },
    )


@pytest.mark.parametrize("app_config", [{"AUTH_TRUSTED_ORIGINS": [TRUSTED]}])
def test_a_trusted_origin_gets_cors_with_credentials_never_a_star(client: FlaskClient) -> None:
    answer = preflight(client, TRUSTED)
    assert answer.status_code == 200
    headers = answer.headers
    assert headers["Access-Control-Allow-Origin"] == TRUSTED
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "x-csrf-token" in headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in headers["Access-Control-Allow-Methods"]

    register(client)
    logged_in = client.post("/auth/login", json=CREDENTIALS, headers={"Origin": TRUSTED})
    assert logged_in.status_code == 200
    assert logged_in.headers["Access-Control-Allow-Origin"] == TRUSTED
    assert logged_in.headers["Access-Control-Allow-Credentials"] == "true"
    assert logged_in.json["csrf_token"]  # readable by the page, which cannot read our cookie


@pytest.mark.parametrize("app_config", [{"AUTH_TRUSTED_ORIGINS": [TRUSTED]}])
def test_an_unlisted_origin_gets_no_cors_and_a_403_that_names_the_fix(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    before = snapshot(app)
    answer = preflight(client, STRANGER)
    assert "Access-Control-Allow-Origin" not in answer.headers

    refused = client.post("/auth/login", json=CREDENTIALS, headers={"Origin": STRANGER})

    assert refused.status_code == 403
    assert refused.json["error"] == "csrf_failed"
    assert STRANGER in refused.json["error_description"]
    assert "http://localhost" in refused.json["error_description"]  # the app's own origin
    assert "AUTH_TRUSTED_ORIGINS" in refused.json["error_description"]
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert snapshot(app) == before  # not even a failed login recorded


@pytest.mark.parametrize("app_config", [{"AUTH_TRUSTED_ORIGINS": [TRUSTED]}])
def test_cors_stays_on_the_auth_routes(client: FlaskClient) -> None:
    answer = client.get("/healthz", headers={"Origin": TRUSTED})
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_without_trusted_origins_there_is_no_cors(client: FlaskClient) -> None:
    answer = preflight(client, TRUSTED)
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_a_token_sent_in_the_body_is_answered_in_the_body_whatever_the_headers(
    client: FlaskClient,
) -> None:
    """A native client that asked for body transport at login only, then forgot the header."""
    register(client)
    token = login(client, native=True).json["refresh_token"]

    response = client.post("/auth/refresh", json={"refresh_token": token})

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    again = client.post("/auth/refresh", json={"refresh_token": response.json["refresh_token"]})
    assert again.status_code == 200


def test_a_browser_login_without_the_transport_header_gets_cookies(client: FlaskClient) -> None:
    register(client)
    response = client.post("/auth/login", json=CREDENTIALS)
    assert "refresh_token" not in response.get_json()
    assert set(set_cookies(response)) == {"refresh_token", CSRF_COOKIE}
    assert (
        client.post("/auth/login", json=CREDENTIALS, headers=NATIVE).headers.get("Set-Cookie")
        is None
    )


@pytest.mark.parametrize("app_config", [{"AUTH_TRUSTED_ORIGINS": [TRUSTED]}])
def test_cors_does_not_reach_a_host_route_that_starts_like_the_prefix(
    app: Flask, client: FlaskClient
) -> None:
    app.add_url_rule("/authors", "authors", lambda: {"authors": []})

    answer = client.get("/authors", headers={"Origin": TRUSTED})

    assert answer.status_code == 200
    assert "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.parametrize(
    "origin", ["*", "null", "https://*.example.com", "https://app.example/path", "app.example"]
)
def test_a_trusted_origin_must_be_an_origin(origin: str) -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_TRUSTED_ORIGINS: .* is not an origin"):
        AuthSettings.from_config({"SECRET_KEY": "s" * 32, "AUTH_TRUSTED_ORIGINS": [origin]})
