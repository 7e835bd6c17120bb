"""The HTTP contract of docs/http-api.md and docs/tokens.md, endpoint by endpoint.

Every rejected request is also shown to leave the database as it was. Rotation, reuse and
grace are covered in depth elsewhere; here only the endpoints' shape and effects.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from datetime import timedelta
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import db
from tests.conftest import app_with_tables
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import AUTH_TABLES
from tests.helpers import bearer
from tests.helpers import claims_of
from tests.helpers import CSRF_COOKIE
from tests.helpers import csrf_header
from tests.helpers import event_types
from tests.helpers import execute
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import refresh_cookie
from tests.helpers import register
from tests.helpers import rows
from tests.helpers import scalar
from tests.helpers import set_cookies
from tests.helpers import snapshot
from tests.helpers import token_hash

EMAIL = "ada@example.com"
OTHER_EMAIL = "bob@example.com"
NEW_PASSWORD = "a brand new passphrase"
OWN_ORIGIN = "http://localhost"  # the test client's scheme and host

REFRESH_TOKEN_PATTERN = re.compile(r"[0-9a-f]{64}")
# RFC 6750 section 3: error and error_description are quoted strings without '"' or '\'.
CHALLENGE_PATTERN = re.compile(
    r'Bearer realm="api", error="(?P<error>[\x20\x21\x23-\x5b\x5d-\x7e]+)", '
    r'error_description="(?P<description>[\x20\x21\x23-\x5b\x5d-\x7e]*)"'
)
REFRESH_COOKIE_AGE = str(7 * 24 * 3600)


@pytest.fixture
def app_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """No overrides, unless a test passes some with indirect parametrisation."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    return overrides


@pytest.fixture
def user(client: FlaskClient) -> dict[str, Any]:
    """Ada, registered."""
    return register(client)


@pytest.fixture
def access_token(client: FlaskClient, user: dict[str, Any]) -> str:
    """An access token of a fresh session of Ada's (browser transport: cookies are set)."""
    token: str = body(login(client))["access_token"]
    return token


# --- helpers -------------------------------------------------------------------------------


def body(response: TestResponse) -> dict[str, Any]:
    data = response.get_json(silent=True)
    assert isinstance(data, dict), response.get_data(as_text=True)
    return data


def assert_error(response: TestResponse, status: int, error: str) -> dict[str, Any]:
    """The one error shape, as JSON, with this status and code."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    data = body(response)
    assert set(data) == {"error", "error_description"}
    assert data["error"] == error
    assert isinstance(data["error_description"], str)
    assert data["error_description"]
    return data


def assert_challenge(response: TestResponse, error: str) -> None:
    """An RFC 6750 challenge naming `error` and repeating the JSON description."""
    header = response.headers.get("WWW-Authenticate", "")
    match = CHALLENGE_PATTERN.fullmatch(header)
    assert match is not None, f"not a valid RFC 6750 challenge: {header!r}"
    assert match["error"] == error
    assert match["description"] == body(response)["error_description"]


def assert_cookies_cleared(response: TestResponse) -> None:
    cookies = set_cookies(response)
    assert set(cookies) == {"refresh_token", CSRF_COOKIE}
    assert cookies["refresh_token"]["value"] == ""
    assert cookies["refresh_token"]["max-age"] == "0"
    assert cookies["refresh_token"]["path"] == "/auth"
    assert cookies[CSRF_COOKIE]["value"] == ""
    assert cookies[CSRF_COOKIE]["max-age"] == "0"
    assert cookies[CSRF_COOKIE]["path"] == "/"


def count(app: Flask, table: str) -> int:
    return int(scalar(app, f"SELECT COUNT(*) FROM {table}"))  # noqa: S608


def refresh_row(app: Flask, token: str) -> Any:
    found = rows(app, "SELECT * FROM refresh_tokens WHERE token_hash = :h", h=token_hash(token))
    assert len(found) == 1
    return found[0]


def session_row(app: Flask, session_id: str) -> Any:
    found = rows(app, "SELECT * FROM auth_sessions WHERE id = :id", id=session_id)
    assert len(found) == 1
    return found[0]


def session_id_of(access_token: str) -> str:
    session_id: str = claims_of(access_token)["sid"]
    return session_id


def resign(
    access_token: str,
    *,
    secret: str = SECRET,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A copy of `access_token` with changed claims or header, signed with `secret`."""
    payload = jwt.decode(access_token, options={"verify_signature": False})
    payload.update(claims)
    for name in drop:
        del payload[name]
    headers = {**jwt.get_unverified_header(access_token), **(header or {})}
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers)


# --- register ------------------------------------------------------------------------------


def test_register_creates_a_normalised_user(app: Flask, client: FlaskClient) -> None:
    response = client.post(
        "/auth/register", json={"email": "  Ada@Example.COM ", "password": PASSWORD}
    )

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    user = body(response)["user"]
    assert set(user) == {"id", "email", "role", "created_at"}
    assert user["email"] == EMAIL
    assert user["role"] == "user"
    assert datetime.fromisoformat(user["created_at"]).utcoffset() == timedelta(0)
    stored = rows(app, "SELECT * FROM users")
    assert len(stored) == 1
    assert stored[0].id == user["id"]
    assert stored[0].email == EMAIL
    assert stored[0].password_hash.startswith("$argon2id$")
    assert bool(stored[0].is_active) is True
    assert event_types(app) == ["register"]


def test_register_accepts_a_password_of_exactly_the_minimum_length(
    app: Flask, client: FlaskClient
) -> None:
    response = client.post("/auth/register", json={"email": EMAIL, "password": "x" * 8})

    assert response.status_code == 201
    assert count(app, "users") == 1


def test_register_refuses_a_taken_email_whatever_its_case(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    before = snapshot(app)

    response = client.post(
        "/auth/register", json={"email": " ADA@example.com", "password": "another password"}
    )

    assert_error(response, 409, "conflict")
    assert snapshot(app) == before


@pytest.mark.parametrize("app_config", [{"AUTH_ALLOW_REGISTRATION": False}], indirect=True)
def test_register_is_refused_when_registration_is_closed(app: Flask, client: FlaskClient) -> None:
    response = client.post("/auth/register", json={"email": EMAIL, "password": PASSWORD})

    assert_error(response, 403, "access_denied")
    assert "Set-Cookie" not in response.headers
    assert count(app, "users") == 0
    assert count(app, "auth_events") == 0


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"json": {"email": "not-an-email", "password": PASSWORD}}, id="bad-email"),
        pytest.param({"json": {"email": "ada@example", "password": PASSWORD}}, id="no-dot"),
        pytest.param({"json": {"email": EMAIL, "password": "x" * 7}}, id="short-password"),
        pytest.param({"json": {"email": EMAIL, "password": "x" * 257}}, id="long-password"),
        pytest.param({"json": {"email": 42, "password": PASSWORD}}, id="email-not-string"),
        pytest.param({"json": {"email": EMAIL, "password": 12345678}}, id="password-not-string"),
        pytest.param({"json": {"password": PASSWORD}}, id="email-missing"),
        pytest.param({"json": {"email": EMAIL}}, id="password-missing"),
        pytest.param({"json": [EMAIL, PASSWORD]}, id="json-array"),
        pytest.param({"data": {"email": EMAIL, "password": PASSWORD}}, id="form-body"),
        pytest.param({"data": '{"email": ', "content_type": "application/json"}, id="bad-json"),
        pytest.param({}, id="empty-body"),
    ],
)
def test_register_rejects_bad_input_and_adds_no_user(
    app: Flask, client: FlaskClient, request_kwargs: dict[str, Any]
) -> None:
    response = client.post("/auth/register", **request_kwargs)

    assert_error(response, 400, "invalid_request")
    assert count(app, "users") == 0
    assert count(app, "auth_events") == 0


# --- login ---------------------------------------------------------------------------------


def test_login_returns_tokens_and_sets_the_cookies(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    response = client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = body(response)
    assert set(data) == {"access_token", "token_type", "expires_in", "user", "csrf_token"}
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 900
    assert data["user"] == user
    cookies = set_cookies(response)
    assert set(cookies) == {"refresh_token", CSRF_COOKIE}
    refresh, csrf = cookies["refresh_token"], cookies[CSRF_COOKIE]
    # A page on another origin cannot read the API host's cookie: the value is in the JSON too.
    assert data["csrf_token"] == csrf["value"]
    assert REFRESH_TOKEN_PATTERN.fullmatch(refresh["value"])
    assert {"httponly", "secure"} <= set(refresh)
    assert refresh["samesite"] == "Strict"
    assert refresh["path"] == "/auth"
    assert refresh["max-age"] == REFRESH_COOKIE_AGE
    assert csrf["value"]
    assert "httponly" not in csrf
    assert "secure" in csrf
    assert csrf["samesite"] == "Strict"
    assert csrf["path"] == "/"
    assert csrf["max-age"] == REFRESH_COOKIE_AGE
    sessions = rows(app, "SELECT * FROM auth_sessions")
    assert len(sessions) == 1
    assert sessions[0].id == session_id_of(data["access_token"])
    assert sessions[0].user_id == user["id"]
    assert sessions[0].revoked_at is None
    stored = refresh_row(app, refresh["value"])
    assert stored.session_id == sessions[0].id
    assert stored.used_at is None
    assert stored.parent_id is None
    assert event_types(app) == ["register", "login_succeeded"]


def test_login_issues_an_access_token_with_the_contract_claims(
    client: FlaskClient, user: dict[str, Any]
) -> None:
    access_token = body(login(client))["access_token"]

    header = jwt.get_unverified_header(access_token)
    assert header["alg"] == "HS256"
    assert header["typ"] == "at+jwt"
    assert header["kid"]
    claims = jwt.decode(
        access_token,
        SECRET,
        algorithms=["HS256"],
        audience="flask-token-auth",
        issuer="flask-token-auth",
    )
    assert set(claims) == {"iss", "aud", "sub", "sid", "jti", "iat", "exp", "role"}
    assert claims["sub"] == str(user["id"])
    assert claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 60


def test_login_with_native_transport_returns_the_refresh_token_and_no_cookie(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    response = login(client, native=True)

    data = body(response)
    assert set(data) == {"access_token", "token_type", "expires_in", "user", "refresh_token"}
    assert REFRESH_TOKEN_PATTERN.fullmatch(data["refresh_token"])
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert refresh_row(app, data["refresh_token"]).used_at is None


def test_login_normalises_the_email(client: FlaskClient, user: dict[str, Any]) -> None:
    response = client.post("/auth/login", json={"email": " ADA@Example.com ", "password": PASSWORD})

    assert response.status_code == 200
    assert body(response)["user"]["email"] == EMAIL


@pytest.mark.parametrize(
    ("email", "password", "reason"),
    [
        pytest.param("nobody@example.com", PASSWORD, "unknown_email", id="unknown-email"),
        pytest.param(EMAIL, "wrong password", "wrong_password", id="wrong-password"),
        pytest.param(EMAIL, PASSWORD, "inactive", id="deactivated-user"),
    ],
)
def test_login_failures_look_alike_and_leave_the_cookies(
    app: Flask, client: FlaskClient, user: dict[str, Any], email: str, password: str, reason: str
) -> None:
    if reason == "inactive":
        execute(app, "UPDATE users SET is_active = :active", active=False)
    users_before = rows(app, "SELECT * FROM users")

    response = client.post("/auth/login", json={"email": email, "password": password})

    data = assert_error(response, 401, "invalid_grant")
    assert data["error_description"] == "invalid email or password"
    # Another tab's session is not this attempt's to end: a typo must not log the browser out.
    assert "Set-Cookie" not in response.headers
    assert count(app, "auth_sessions") == 0
    assert count(app, "refresh_tokens") == 0
    assert rows(app, "SELECT * FROM users") == users_before
    assert event_types(app) == ["register", "login_failed"]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"json": {"email": EMAIL}}, id="password-missing"),
        pytest.param({"json": {"password": PASSWORD}}, id="email-missing"),
        pytest.param({"json": {"email": EMAIL, "password": ["x"]}}, id="password-not-string"),
        pytest.param({"json": {"email": None, "password": PASSWORD}}, id="email-null"),
        pytest.param({"data": "not json", "content_type": "text/plain"}, id="text-body"),
        pytest.param({"data": "{", "content_type": "application/json"}, id="bad-json"),
    ],
)
def test_login_rejects_malformed_input_and_changes_nothing(
    app: Flask, client: FlaskClient, user: dict[str, Any], request_kwargs: dict[str, Any]
) -> None:
    before = snapshot(app)

    response = client.post("/auth/login", **request_kwargs)

    assert_error(response, 400, "invalid_request")
    assert snapshot(app) == before


# --- refresh -------------------------------------------------------------------------------


def test_cookie_refresh_rotates_both_cookies(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    old_token = refresh_cookie(client)
    old_csrf = csrf_header(client)

    response = client.post("/auth/refresh", headers=old_csrf)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = body(response)
    assert set(data) == {"access_token", "token_type", "expires_in", "csrf_token"}
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 900
    assert session_id_of(data["access_token"]) == session_id_of(access_token)
    cookies = set_cookies(response)
    assert data["csrf_token"] == cookies[CSRF_COOKIE]["value"]
    assert set(cookies) == {"refresh_token", CSRF_COOKIE}
    new_token = cookies["refresh_token"]["value"]
    assert REFRESH_TOKEN_PATTERN.fullmatch(new_token)
    assert new_token != old_token
    assert cookies[CSRF_COOKIE]["value"] != old_csrf["X-CSRF-Token"]
    assert cookies["refresh_token"]["max-age"] == REFRESH_COOKIE_AGE
    assert "httponly" in cookies["refresh_token"]
    old_row, new_row = refresh_row(app, old_token), refresh_row(app, new_token)
    assert old_row.used_at is not None
    assert new_row.used_at is None
    assert new_row.parent_id == old_row.id
    assert new_row.session_id == old_row.session_id
    assert event_types(app)[-1] == "refreshed"
    assert client.get("/auth/me", headers=bearer(data["access_token"])).status_code == 200


def test_native_refresh_takes_and_returns_the_token_in_the_body(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    old_token = body(login(client, native=True))["refresh_token"]

    response = client.post("/auth/refresh", json={"refresh_token": old_token}, headers=NATIVE)

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    data = body(response)
    assert set(data) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert REFRESH_TOKEN_PATTERN.fullmatch(data["refresh_token"])
    assert data["refresh_token"] != old_token
    assert refresh_row(app, old_token).used_at is not None
    assert refresh_row(app, data["refresh_token"]).used_at is None


@pytest.mark.parametrize(
    "csrf",
    [
        pytest.param(None, id="header-missing"),
        pytest.param("", id="header-empty"),
        pytest.param("0" * 64, id="header-wrong"),
    ],
)
def test_cookie_refresh_without_the_csrf_header_is_refused_and_changes_nothing(
    app: Flask, client: FlaskClient, access_token: str, csrf: str | None
) -> None:
    token = refresh_cookie(client)
    before = snapshot(app)

    response = client.post("/auth/refresh", headers={} if csrf is None else {"X-CSRF-Token": csrf})

    assert_error(response, 403, "csrf_failed")
    assert "Set-Cookie" not in response.headers
    assert refresh_row(app, token).used_at is None
    assert snapshot(app) == before


def test_cookie_refresh_refuses_a_csrf_value_not_bound_to_the_token(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    # An attacker able to write cookies (a sibling subdomain) sets both to a value of its own.
    token = refresh_cookie(client)
    client.set_cookie("csrf_token", "f" * 64)
    before = snapshot(app)

    response = client.post("/auth/refresh", headers={"X-CSRF-Token": "f" * 64})

    assert_error(response, 403, "csrf_failed")
    assert refresh_row(app, token).used_at is None
    assert snapshot(app) == before


def test_cookie_refresh_refuses_the_csrf_value_of_the_previous_token(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    old_csrf = csrf_header(client)
    assert client.post("/auth/refresh", headers=old_csrf).status_code == 200
    token = refresh_cookie(client)
    before = snapshot(app)

    response = client.post("/auth/refresh", headers=old_csrf)

    assert_error(response, 403, "csrf_failed")
    assert refresh_row(app, token).used_at is None
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://localhost.evil.example", "https://localhost", "null"]
)
def test_cookie_refresh_from_a_foreign_origin_is_refused(
    app: Flask, client: FlaskClient, access_token: str, origin: str
) -> None:
    token = refresh_cookie(client)
    before = snapshot(app)

    response = client.post("/auth/refresh", headers={**csrf_header(client), "Origin": origin})

    assert_error(response, 403, "csrf_failed")
    assert "Set-Cookie" not in response.headers
    assert refresh_row(app, token).used_at is None
    assert snapshot(app) == before


def test_cookie_refresh_never_returns_the_token_in_the_body(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    """XSS can read the CSRF value and ask for body transport; the token stays in the cookie."""
    old_token = refresh_cookie(client)
    headers = {**csrf_header(client), "X-Token-Transport": "body"}

    response = client.post("/auth/refresh", headers=headers)

    assert response.status_code == 200
    assert set(body(response)) == {"access_token", "token_type", "expires_in", "csrf_token"}
    cookies = set_cookies(response)
    assert set(cookies) == {"refresh_token", CSRF_COOKIE}
    assert refresh_row(app, cookies["refresh_token"]["value"]).parent_id == (
        refresh_row(app, old_token).id
    )


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/auth/logout", None),
        ("/auth/refresh", None),
        ("/auth/login", {"email": EMAIL, "password": PASSWORD}),
        ("/auth/register", {"email": OTHER_EMAIL, "password": PASSWORD}),
    ],
)
def test_a_cross_site_request_without_cookies_is_refused_and_clears_nothing(
    app: Flask, client: FlaskClient, user: dict[str, Any], path: str, payload: Any
) -> None:
    """A foreign page's form post carries no SameSite cookie, yet must not clear ours."""
    before = snapshot(app)
    stranger = app.test_client()  # no cookies, as a cross-site POST under SameSite=Strict

    response = stranger.post(path, json=payload, headers={"Origin": "https://evil.example"})

    assert_error(response, 403, "csrf_failed")
    assert "Set-Cookie" not in response.headers
    assert snapshot(app) == before


def test_cookie_refresh_from_the_apps_own_origin_succeeds(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    token = refresh_cookie(client)

    response = client.post("/auth/refresh", headers={**csrf_header(client), "Origin": OWN_ORIGIN})

    assert response.status_code == 200
    assert refresh_row(app, token).used_at is not None


@pytest.mark.parametrize(
    "app_config", [{"AUTH_TRUSTED_ORIGINS": ("https://app.example/",)}], indirect=True
)
def test_cookie_refresh_from_a_trusted_origin_succeeds(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    token = refresh_cookie(client)

    response = client.post(
        "/auth/refresh", headers={**csrf_header(client), "Origin": "https://app.example"}
    )

    assert response.status_code == 200
    assert refresh_row(app, token).used_at is not None


@pytest.mark.parametrize(
    "refresh_token",
    [
        pytest.param("0" * 64, id="unknown"),
        pytest.param("not-a-token", id="malformed"),
        pytest.param("A" * 64, id="upper-case"),
        pytest.param("", id="empty"),
    ],
)
def test_refresh_with_a_bad_token_is_invalid_grant_and_clears_cookies(
    app: Flask, client: FlaskClient, user: dict[str, Any], refresh_token: str
) -> None:
    login(client, native=True)
    before = snapshot(app)

    response = client.post("/auth/refresh", json={"refresh_token": refresh_token}, headers=NATIVE)

    assert_error(response, 401, "invalid_grant")
    assert_cookies_cleared(response)
    assert snapshot(app) == before


def test_refresh_without_any_token_is_invalid_grant(app: Flask, client: FlaskClient) -> None:
    response = client.post("/auth/refresh")

    assert_error(response, 401, "invalid_grant")
    assert_cookies_cleared(response)
    assert all(count(app, table) == 0 for table in AUTH_TABLES)


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"json": {"refresh_token": 42}}, id="token-not-string"),
        pytest.param({"json": ["x"]}, id="json-array"),
        pytest.param({"data": "{", "content_type": "application/json"}, id="bad-json"),
    ],
)
def test_refresh_with_a_malformed_body_is_invalid_request(
    app: Flask, client: FlaskClient, user: dict[str, Any], request_kwargs: dict[str, Any]
) -> None:
    login(client, native=True)
    before = snapshot(app)

    response = client.post("/auth/refresh", headers=NATIVE, **request_kwargs)

    assert_error(response, 400, "invalid_request")
    assert "Set-Cookie" not in response.headers
    assert snapshot(app) == before


PAST = datetime(2000, 1, 1)  # naive: the columns hold naive UTC on every database
SESSION_ENDINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "revoked": (
        "UPDATE auth_sessions SET revoked_at = :past, revoked_reason = 'logout'",
        {"past": PAST},
    ),
    "expired-token": ("UPDATE refresh_tokens SET expires_at = :past", {"past": PAST}),
    "expired-session": ("UPDATE auth_sessions SET expires_at = :past", {"past": PAST}),
    "deactivated": ("UPDATE users SET is_active = :active", {"active": False}),
}


@pytest.mark.parametrize("ending", sorted(SESSION_ENDINGS))
def test_refresh_of_an_ended_session_is_invalid_grant(
    app: Flask, client: FlaskClient, user: dict[str, Any], ending: str
) -> None:
    token = body(login(client, native=True))["refresh_token"]
    statement, params = SESSION_ENDINGS[ending]
    execute(app, statement, **params)
    before = snapshot(app)

    response = client.post("/auth/refresh", json={"refresh_token": token}, headers=NATIVE)

    assert_error(response, 401, "invalid_grant")
    assert_cookies_cleared(response)
    assert refresh_row(app, token).used_at is None
    assert snapshot(app) == before


# --- logout --------------------------------------------------------------------------------


def test_cookie_logout_revokes_the_session_and_clears_cookies(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    session_id = session_id_of(access_token)

    response = client.post("/auth/logout", headers=csrf_header(client))

    assert response.status_code == 204
    assert response.get_data() == b""
    assert_cookies_cleared(response)
    assert client.get_cookie("refresh_token", path="/auth") is None
    assert client.get_cookie(CSRF_COOKIE) is None
    revoked = session_row(app, session_id)
    assert revoked.revoked_at is not None
    assert revoked.revoked_reason == "logout"
    assert event_types(app)[-1] == "logout"


def test_logout_is_idempotent(app: Flask, client: FlaskClient, access_token: str) -> None:
    assert client.post("/auth/logout", headers=csrf_header(client)).status_code == 204
    before = snapshot(app)

    response = client.post("/auth/logout")

    assert response.status_code == 204
    assert_cookies_cleared(response)
    assert snapshot(app) == before


def test_native_logout_revokes_the_session_of_the_body_token(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    tokens = body(login(client, native=True))

    response = client.post(
        "/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=NATIVE
    )

    assert response.status_code == 204
    session = session_row(app, session_id_of(tokens["access_token"]))
    assert session.revoked_at is not None
    assert session.revoked_reason == "logout"
    refused = client.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, headers=NATIVE
    )
    assert_error(refused, 401, "invalid_grant")


def test_logout_with_only_the_access_token_twice(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    access_token = body(login(client, native=True))["access_token"]
    session_id = session_id_of(access_token)

    first = client.post("/auth/logout", headers=bearer(access_token))

    assert first.status_code == 204
    assert_cookies_cleared(first)
    revoked = session_row(app, session_id)
    assert revoked.revoked_at is not None
    assert revoked.revoked_reason == "logout"
    before = snapshot(app)
    second = client.post("/auth/logout", headers=bearer(access_token))
    assert second.status_code == 204
    assert snapshot(app) == before
    assert event_types(app).count("logout") == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="csrf-missing"),
        pytest.param({"X-CSRF-Token": "0" * 64}, id="csrf-wrong"),
        pytest.param({"Origin": "https://evil.example"}, id="foreign-origin"),
    ],
)
def test_cookie_logout_without_csrf_proof_is_refused_and_keeps_the_session(
    app: Flask, client: FlaskClient, access_token: str, headers: dict[str, str]
) -> None:
    if "Origin" in headers:
        headers = {**csrf_header(client), **headers}
    before = snapshot(app)

    response = client.post("/auth/logout", headers=headers)

    assert_error(response, 403, "csrf_failed")
    assert "Set-Cookie" not in response.headers
    assert snapshot(app) == before
    assert session_row(app, session_id_of(access_token)).revoked_at is None


def test_access_token_of_a_logged_out_session_is_refused(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    assert client.post("/auth/logout", headers=csrf_header(client)).status_code == 204
    before = snapshot(app)

    response = client.get("/auth/me", headers=bearer(access_token))

    assert_error(response, 401, "invalid_token")
    assert_challenge(response, "invalid_token")
    assert snapshot(app) == before


# --- logout-all ----------------------------------------------------------------------------


def test_logout_all_revokes_every_session_of_the_user(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    first = body(login(client, native=True))["access_token"]
    second = body(login(client, native=True))["access_token"]
    register(client, OTHER_EMAIL)
    bystander = body(login(client, OTHER_EMAIL, native=True))["access_token"]

    response = client.post("/auth/logout-all", headers=bearer(first))

    assert response.status_code == 204
    for access_token in (first, second):
        session = session_row(app, session_id_of(access_token))
        assert session.revoked_at is not None
        assert session.revoked_reason == "logout_all"
        assert_error(client.get("/auth/me", headers=bearer(access_token)), 401, "invalid_token")
    assert session_row(app, session_id_of(bystander)).revoked_at is None
    assert client.get("/auth/me", headers=bearer(bystander)).status_code == 200
    assert "logout_all" in event_types(app)


def test_logout_all_needs_an_access_token(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    before = snapshot(app)

    response = client.post("/auth/logout-all", headers=csrf_header(client))

    assert_error(response, 401, "missing_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert snapshot(app) == before


# --- me and sessions -----------------------------------------------------------------------


def test_me_returns_the_user_and_the_session(
    client: FlaskClient, user: dict[str, Any], access_token: str
) -> None:
    response = client.get("/auth/me", headers=bearer(access_token))

    assert response.status_code == 200
    assert body(response) == {"user": user, "session_id": session_id_of(access_token)}


def test_sessions_lists_the_live_sessions_and_marks_the_current_one(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    phone = body(
        client.post(
            "/auth/login",
            json={"email": EMAIL, "password": PASSWORD},
            headers={**NATIVE, "User-Agent": "phone/1.0"},
        )
    )["access_token"]
    laptop = body(
        client.post(
            "/auth/login",
            json={"email": EMAIL, "password": PASSWORD},
            headers={**NATIVE, "User-Agent": "laptop/2.0"},
        )
    )["access_token"]
    ended = body(login(client, native=True))["access_token"]
    assert client.post("/auth/logout", headers=bearer(ended)).status_code == 204
    register(client, OTHER_EMAIL)
    login(client, OTHER_EMAIL, native=True)

    response = client.get("/auth/sessions", headers=bearer(laptop))

    assert response.status_code == 200
    listed = {session["id"]: session for session in body(response)["sessions"]}
    assert set(listed) == {session_id_of(phone), session_id_of(laptop)}
    for session in listed.values():
        assert set(session) == {
            "id",
            "created_at",
            "last_used_at",
            "expires_at",
            "user_agent",
            "ip",
            "current",
        }
        assert session["ip"] == "127.0.0.1"
        created = datetime.fromisoformat(session["created_at"])
        assert datetime.fromisoformat(session["expires_at"]) - created == timedelta(days=30)
        assert datetime.fromisoformat(session["last_used_at"]) == created
    assert listed[session_id_of(laptop)]["current"] is True
    assert listed[session_id_of(laptop)]["user_agent"] == "laptop/2.0"
    assert listed[session_id_of(phone)]["current"] is False
    assert listed[session_id_of(phone)]["user_agent"] == "phone/1.0"


def test_deleting_an_own_session_revokes_it(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    current = body(login(client, native=True))["access_token"]
    other = body(login(client, native=True))["access_token"]
    other_id = session_id_of(other)

    response = client.delete(f"/auth/sessions/{other_id}", headers=bearer(current))

    assert response.status_code == 204
    revoked = session_row(app, other_id)
    assert revoked.revoked_at is not None
    assert session_row(app, session_id_of(current)).revoked_at is None
    assert event_types(app)[-1] == "session_revoked"
    assert_error(client.get("/auth/me", headers=bearer(other)), 401, "invalid_token")
    assert client.get("/auth/me", headers=bearer(current)).status_code == 200


@pytest.mark.parametrize("target", ["other-users", "unknown", "already-revoked"])
def test_deleting_a_session_that_is_not_ones_own_live_one_is_not_found(
    app: Flask, client: FlaskClient, user: dict[str, Any], target: str
) -> None:
    access_token = body(login(client, native=True))["access_token"]
    register(client, OTHER_EMAIL)
    bob_session = session_id_of(body(login(client, OTHER_EMAIL, native=True))["access_token"])
    if target == "other-users":
        session_id = bob_session
    elif target == "unknown":
        session_id = "no-such-session"
    else:
        ended = body(login(client, native=True))["access_token"]
        assert client.post("/auth/logout", headers=bearer(ended)).status_code == 204
        session_id = session_id_of(ended)
    before = snapshot(app)

    response = client.delete(f"/auth/sessions/{session_id}", headers=bearer(access_token))

    assert_error(response, 404, "not_found")
    assert snapshot(app) == before
    assert session_row(app, bob_session).revoked_at is None


# --- password ------------------------------------------------------------------------------


def test_password_change_revokes_the_other_sessions_only(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    current = body(login(client, native=True))["access_token"]
    other = body(login(client, native=True))["access_token"]
    hash_before = scalar(app, "SELECT password_hash FROM users")

    response = client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(current),
    )

    assert response.status_code == 204
    assert scalar(app, "SELECT password_hash FROM users") != hash_before
    revoked = session_row(app, session_id_of(other))
    assert revoked.revoked_at is not None
    assert revoked.revoked_reason == "password_changed"
    assert session_row(app, session_id_of(current)).revoked_at is None
    assert client.get("/auth/me", headers=bearer(current)).status_code == 200
    assert_error(client.get("/auth/me", headers=bearer(other)), 401, "invalid_token")
    old = client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert_error(old, 401, "invalid_grant")
    login(client, password=NEW_PASSWORD)
    assert "password_changed" in event_types(app)


def test_password_change_with_a_wrong_current_password_is_refused(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    before = snapshot(app)

    response = client.post(
        "/auth/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=bearer(access_token),
    )

    assert_error(response, 403, "access_denied")
    assert "Set-Cookie" not in response.headers
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"current_password": PASSWORD, "new_password": "x" * 7}, id="short"),
        pytest.param({"current_password": PASSWORD, "new_password": 12345678}, id="not-string"),
        pytest.param({"current_password": PASSWORD}, id="new-missing"),
        pytest.param({"new_password": NEW_PASSWORD}, id="current-missing"),
        pytest.param([PASSWORD, NEW_PASSWORD], id="json-array"),
    ],
)
def test_password_change_rejects_bad_input_and_keeps_the_hash(
    app: Flask, client: FlaskClient, access_token: str, payload: Any
) -> None:
    before = snapshot(app)

    response = client.post("/auth/password", json=payload, headers=bearer(access_token))

    assert_error(response, 400, "invalid_request")
    assert snapshot(app) == before


# --- protected resources (RFC 6750) --------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/hello", "/auth/me", "/auth/sessions"])
@pytest.mark.parametrize("authorization", [None, "", "Basic abc"])
def test_no_bearer_credentials_is_a_plain_challenge(
    app: Flask, client: FlaskClient, access_token: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    before = snapshot(app)

    response = client.get(path, headers=headers)

    assert_error(response, 401, "missing_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert snapshot(app) == before


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer  ", "Bearer a b"])
def test_a_malformed_bearer_header_is_invalid_request(
    app: Flask, client: FlaskClient, access_token: str, authorization: str
) -> None:
    before = snapshot(app)

    response = client.get("/api/hello", headers={"Authorization": authorization})

    assert_error(response, 400, "invalid_request")
    assert snapshot(app) == before
    assert_challenge(response, "invalid_request")


TOKEN_MUTATIONS: dict[str, Callable[[str], str]] = {
    "expired": lambda token: resign(token, iat=int(time.time()) - 1000, exp=int(time.time()) - 100),
    "wrong-typ": lambda token: resign(token, header={"typ": "JWT"}),
    "no-typ": lambda token: resign(token, header={"typ": None}),
    "other-secret": lambda token: resign(token, secret="another-secret-" + "y" * 40),
    "wrong-issuer": lambda token: resign(token, iss="someone-else"),
    "wrong-audience": lambda token: resign(token, aud="another-api"),
    "no-sid": lambda token: resign(token, drop=("sid",)),
    "no-role": lambda token: resign(token, drop=("role",)),
    "unknown-kid": lambda token: resign(token, header={"kid": "hs-0000000000000000"}),
    "alg-none": lambda token: jwt.encode(
        claims_of(token),
        "",
        algorithm="none",
        headers={"typ": "at+jwt", "kid": jwt.get_unverified_header(token)["kid"]},
    ),
    "tampered-signature": lambda token: token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"),
    "not-a-jwt": lambda token: "not-a-jwt",
    "refresh-token": lambda token: "0" * 64,
}


@pytest.mark.parametrize("mutation", sorted(TOKEN_MUTATIONS))
def test_a_bad_access_token_is_invalid_token(
    app: Flask, client: FlaskClient, access_token: str, mutation: str
) -> None:
    bad_token = TOKEN_MUTATIONS[mutation](access_token)
    before = snapshot(app)

    response = client.get("/api/hello", headers=bearer(bad_token))

    assert_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer realm="api", error="invalid_token", error_description="'
    )
    assert_challenge(response, "invalid_token")
    assert snapshot(app) == before


def test_access_token_of_a_deactivated_user_is_refused(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    execute(app, "UPDATE users SET is_active = :active", active=False)
    before = snapshot(app)

    response = client.get("/auth/me", headers=bearer(access_token))

    assert_error(response, 401, "invalid_token")
    assert_challenge(response, "invalid_token")
    assert snapshot(app) == before


def test_protected_route_accepts_a_valid_token(
    client: FlaskClient, user: dict[str, Any], access_token: str
) -> None:
    response = client.get("/api/hello", headers=bearer(access_token))

    assert response.status_code == 200
    assert body(response) == {"message": f"hello, user {user['id']}"}


def test_role_protected_route_refuses_another_role(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    before = snapshot(app)

    response = client.get("/api/admin", headers=bearer(access_token))

    assert_error(response, 403, "insufficient_scope")
    assert "Set-Cookie" not in response.headers
    assert_challenge(response, "insufficient_scope")
    assert snapshot(app) == before


def test_role_is_read_from_the_database_at_each_request(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    execute(app, "UPDATE users SET role = 'admin'")

    response = client.get("/api/admin", headers=bearer(access_token))

    assert response.status_code == 200
    assert body(response) == {"message": f"hello, admin {EMAIL}"}


# --- generic HTTP errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/no-such-page"),
        ("GET", "/auth/no-such-endpoint"),
        ("GET", "/auth"),
        ("POST", "/auth/"),
        ("OPTIONS", "/auth/no-such-endpoint"),
        ("PATCH", "/auth/login/more"),
    ],
)
def test_unknown_route_is_a_json_404(
    app: Flask, client: FlaskClient, method: str, path: str
) -> None:
    response = client.open(path, method=method)

    assert_error(response, 404, "not_found")
    assert all(count(app, table) == 0 for table in AUTH_TABLES)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/auth/login", "POST"),
        ("PUT", "/auth/me", "GET"),
        ("POST", "/auth/jwks.json", "GET"),
        ("PATCH", "/auth/logout", "POST"),
        ("GET", "/auth/sessions/some-session-id", "DELETE"),
    ],
)
def test_wrong_method_is_a_json_405(
    app: Flask, client: FlaskClient, method: str, path: str, allowed: str
) -> None:
    response = client.open(path, method=method)

    assert_error(response, 405, "method_not_allowed")
    assert allowed in {value.strip() for value in response.headers["Allow"].split(",")}
    assert all(count(app, table) == 0 for table in AUTH_TABLES)


def test_another_url_prefix_moves_the_routes_and_their_json_errors(database_url: str) -> None:
    with app_with_tables(database_url, AUTH_URL_PREFIX="/api/v1/auth") as moved:
        client = moved.test_client()
        credentials = {"email": "ada@example.com", "password": PASSWORD}
        assert client.post("/api/v1/auth/register", json=credentials).status_code == 201
        assert client.post("/api/v1/auth/login", json=credentials).status_code == 200
        assert_error(client.get("/api/v1/auth/nowhere"), 404, "not_found")
        assert_error(client.get("/api/v1/auth/login"), 405, "method_not_allowed")
        assert_error(client.post("/auth/login"), 404, "not_found")


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login", "/auth/refresh"])
def test_oversized_body_is_a_json_413(
    app: Flask, client: FlaskClient, user: dict[str, Any], path: str
) -> None:
    before = snapshot(app)
    padding = "x" * (64 * 1024)

    response = client.post(path, json={"email": EMAIL, "password": PASSWORD, "padding": padding})

    assert_error(response, 413, "request_too_large")
    assert "Set-Cookie" not in response.headers
    assert snapshot(app) == before


# --- what the database holds ---------------------------------------------------------------


def test_database_holds_no_token_and_no_password_in_clear(
    app: Flask, client: FlaskClient, user: dict[str, Any]
) -> None:
    first = body(login(client, native=True))
    second = body(
        client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}, headers=NATIVE)
    )
    secrets_sent = [
        PASSWORD,
        first["refresh_token"],
        second["refresh_token"],
        first["access_token"],
        second["access_token"],
    ]

    dump = "\n".join(
        "|".join(str(value) for value in row) for table in snapshot(app).values() for row in table
    )

    # The dump is real: it holds the hashes, the user's email and the argon2id hash.
    assert token_hash(second["refresh_token"]) in dump
    assert EMAIL in dump
    assert "$argon2id$" in dump
    for secret in secrets_sent:
        assert secret not in dump
        assert secret.upper() not in dump.upper()
    stored_hashes = {row.token_hash for row in rows(app, "SELECT token_hash FROM refresh_tokens")}
    assert stored_hashes == {
        token_hash(first["refresh_token"]),
        token_hash(second["refresh_token"]),
    }


def test_emails_differing_only_by_accent_are_different_accounts(
    app: Flask, client: FlaskClient
) -> None:
    """MariaDB's default collation would take josé@ for jose@ and log one in as the other."""
    register(client, "jose@example.com")
    register(client, "josé@example.com", "another long password")
    assert count(app, "users") == 2
    response = client.post("/auth/login", json={"email": "josé@example.com", "password": PASSWORD})
    assert_error(response, 401, "invalid_grant")
    logged_in = login(client, "josé@example.com", "another long password")
    assert body(logged_in)["user"]["email"] == "josé@example.com"


@pytest.mark.parametrize("app_config", [{"AUTH_ALLOW_REGISTRATION": False}], indirect=True)
def test_closed_registration_is_403_whatever_the_body(app: Flask, client: FlaskClient) -> None:
    response = client.post("/auth/register", data="not json", content_type="text/plain")
    assert_error(response, 403, "access_denied")
    assert count(app, "users") == 0


@pytest.mark.parametrize("app_config", [{"AUTH_COOKIE_DOMAIN": "example.com"}])
def test_cookies_go_to_the_configured_domain_and_are_cleared_there(client: FlaskClient) -> None:
    register(client)
    issued = client.post("/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    cookies = set_cookies(issued)
    assert cookies["refresh_token"]["domain"] == "example.com"
    assert cookies["csrf_token"]["domain"] == "example.com"

    response = client.post("/auth/logout", headers=bearer(issued.json["access_token"]))

    assert response.status_code == 204
    cleared = set_cookies(response)
    assert cleared["refresh_token"] == cleared["refresh_token"] | {
        "value": "",
        "domain": "example.com",
    }
    assert cleared["csrf_token"]["domain"] == "example.com"


def test_every_answer_of_the_extension_says_nosniff(client: FlaskClient) -> None:
    register(client)
    access = client.post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    ).json["access_token"]
    answers = [
        client.get("/auth/me", headers=bearer(access)),  # 200
        client.get("/auth/me"),  # 401 on our route
        client.get("/api/hello"),  # 401 on a host route
        client.get("/api/hello", headers=bearer(access)),  # the host's own success
        client.post("/auth/login", data="{", content_type="application/json"),  # 400
        client.get("/auth/nowhere"),  # 404 under the prefix
    ]
    assert [answer.headers.get("X-Content-Type-Options") for answer in answers] == [
        "nosniff",
        "nosniff",
        "nosniff",
        None,
        "nosniff",
        "nosniff",
    ]


# A host that lists no TRUSTED_HOSTS: Flask 3.1 would otherwise refuse the Host itself (400).
@pytest.mark.parametrize("app_config", [{"TRUSTED_HOSTS": None}])
@pytest.mark.parametrize("path", ["/auth//refresh", "/auth/refresh/", "/auth//login"])
def test_no_redirect_is_built_from_the_host_header(
    app: Flask, client: FlaskClient, path: str
) -> None:
    before = snapshot(app)
    response = client.post(path, headers={"Host": "evil.example"})

    assert snapshot(app) == before
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert "Location" not in response.headers


def test_a_stateless_route_asks_no_database_and_outlives_a_logout(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    access = client.post(
        "/auth/login", json={"email": EMAIL, "password": PASSWORD}, headers=NATIVE
    ).json["access_token"]
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get("/api/stateless", headers=bearer(access)).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert statements == []

    assert client.post("/auth/logout", headers=bearer(access)).status_code == 204
    assert client.get("/api/hello", headers=bearer(access)).status_code == 401
    # The trade-off docs/tokens.md states: the signature alone says nothing of the logout.
    assert client.get("/api/stateless", headers=bearer(access)).status_code == 200
    forged = client.get("/api/stateless", headers=bearer(access[:-4] + "AAAA"))
    assert (forged.status_code, forged.json["error"]) == (401, "invalid_token")
