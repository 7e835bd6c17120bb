"""GET /auth/cookie-check, which the browser module asks after a login (docs/http-api.md):
whether the browser sent the refresh cookie with a CSRF header bound to it, checked without
rotating anything. The browser's side is in test_browser.py."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import csrf_header
from tests.helpers import login
from tests.helpers import register
from tests.helpers import snapshot


def test_with_the_cookies_the_check_is_a_204_that_changes_nothing(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    login(client)
    before = snapshot(app)

    response = client.get("/auth/cookie-check", headers=csrf_header(client))

    assert response.status_code == 204
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert snapshot(app) == before


def test_without_the_refresh_cookie_the_check_is_a_409(client: FlaskClient) -> None:
    response = client.get("/auth/cookie-check", headers={"X-CSRF-Token": "a" * 64})

    assert response.status_code == 409
    assert response.json["error"] == "conflict"
    assert "the refresh cookie did not come" in response.json["error_description"]
    assert "Set-Cookie" not in response.headers


def test_a_csrf_header_not_bound_to_the_cookie_is_a_403_that_changes_nothing(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    login(client)
    before = snapshot(app)

    missing = client.get("/auth/cookie-check")
    wrong = client.get("/auth/cookie-check", headers={"X-CSRF-Token": "a" * 64})

    assert [missing.status_code, wrong.status_code] == [403, 403]
    assert missing.json["error"] == wrong.json["error"] == "csrf_failed"
    assert "Set-Cookie" not in missing.headers
    assert "Set-Cookie" not in wrong.headers
    assert snapshot(app) == before
