"""Access tokens the server never issued are a 401 `invalid_token`, never a 5xx, and change
nothing: deep or oversized headers, `nbf` in the future, lifetimes longer than we issue,
timestamps no clock reaches (docs/security.md#threats-and-defences); and a failure inside our
own routes is JSON with our headers, while the host's own 500 page stays its own."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from werkzeug.test import TestResponse

from flask_token_auth import accounts
from flask_token_auth import AuthManager
from flask_token_auth.errors import InvalidToken
from flask_token_auth.state import auth_state
from flask_token_auth.tokens import MAX_ACCESS_TOKEN_LENGTH
from flask_token_auth.tokens import MAX_HEADER_SEGMENT_LENGTH
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import claims_of
from tests.helpers import login
from tests.helpers import register
from tests.helpers import snapshot

LEEWAY = 30
TTL = 900
PROTECTED = ["/auth/me", "/api/hello"]
CHALLENGE = 'Bearer realm="api", error="invalid_token", error_description='
SERVER_ERROR = {"error": "server_error", "error_description": "an unexpected error occurred"}


@pytest.fixture
def app_config() -> dict[str, Any]:
    return {"AUTH_JWT_LEEWAY": LEEWAY, "AUTH_ACCESS_TOKEN_TTL": TTL}


@pytest.fixture
def access_token(client: FlaskClient) -> str:
    """The access token of a registered user's live session: rows a refusal must not touch."""
    register(client)
    token: str = login(client, native=True).json["access_token"]
    return token


def b64url(data: str) -> str:
    return base64.urlsafe_b64encode(data.encode()).rstrip(b"=").decode()


def compact(header: str, payload: str = "{}") -> str:
    """A compact token from raw JSON texts, with a signature no key made."""
    return f"{b64url(header)}.{b64url(payload)}.{b64url('signature')}"


def nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def resign(app: Flask, access_token: str, **claims: Any) -> str:
    """`access_token` with changed claims, signed with the app's own key as only it could."""
    with app.app_context():
        keys = auth_state().keys
        payload = claims_of(access_token) | claims
        headers = {"kid": keys.signing_kid, "typ": "at+jwt"}
        return jwt.encode(payload, keys.signing_key, algorithm=keys.algorithm, headers=headers)


def assert_invalid_token(response: TestResponse, description: str | None = None) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.json is not None
    assert response.json["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Traceback" not in response.get_data(as_text=True)
    if description is not None:
        assert response.json["error_description"] == description


# --- the header segment --------------------------------------------------------------------

HOSTILE_HEADERS = {
    # As deep as fits under the whole token's cap, and past the JSON parser's recursion limit.
    "nested objects": nested_objects(1000),
    "nested arrays": "[" * 2500 + "]" * 2500,
    # Deeper still: the whole token is too large.
    "nested objects, too large": nested_objects(1100),
    "a valid header padded past the cap": json.dumps(
        {"alg": "HS256", "typ": "at+jwt", "kid": "k", "pad": "x" * MAX_HEADER_SEGMENT_LENGTH}
    ),
}


@pytest.mark.parametrize("header", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS)
@pytest.mark.parametrize("path", PROTECTED)
def test_a_hostile_header_is_a_401(
    app: Flask, client: FlaskClient, access_token: str, path: str, header: str
) -> None:
    token = compact(header)
    before = snapshot(app)

    assert_invalid_token(client.get(path, headers=bearer(token)))
    assert snapshot(app) == before


@pytest.mark.parametrize("header", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS)
def test_logout_ignores_a_hostile_access_token(
    app: Flask, client: FlaskClient, access_token: str, header: str
) -> None:
    before = snapshot(app)

    response = client.post("/auth/logout", headers=bearer(compact(header)))

    assert response.status_code == 204, response.get_data(as_text=True)
    assert snapshot(app) == before
    assert client.get("/auth/me", headers=bearer(access_token)).status_code == 200


def test_the_nested_headers_fit_under_the_whole_tokens_cap() -> None:
    # So the header's own bound, not the token's, is what refuses them.
    for name in ("nested objects", "nested arrays"):
        assert len(compact(HOSTILE_HEADERS[name])) <= MAX_ACCESS_TOKEN_LENGTH


def test_a_real_header_is_far_below_the_headers_bound(access_token: str) -> None:
    assert len(access_token.split(".")[0]) < MAX_HEADER_SEGMENT_LENGTH // 4


# --- lifetime claims -----------------------------------------------------------------------


@pytest.mark.parametrize("path", PROTECTED)
def test_a_token_before_its_nbf_is_refused_beyond_the_leeway(
    app: Flask, client: FlaskClient, access_token: str, path: str
) -> None:
    now = int(datetime.now(UTC).timestamp())
    within = resign(app, access_token, nbf=now + LEEWAY - 10)
    beyond = resign(app, access_token, nbf=now + LEEWAY + 60)
    before = snapshot(app)

    assert client.get(path, headers=bearer(within)).status_code == 200
    response = client.get(path, headers=bearer(beyond))
    assert_invalid_token(response, "the access token is not valid yet")
    assert snapshot(app) == before


@pytest.mark.parametrize("path", PROTECTED)
def test_a_lifetime_longer_than_we_issue_is_refused(
    app: Flask, client: FlaskClient, access_token: str, path: str
) -> None:
    issued_at = claims_of(access_token)["iat"]
    longest = resign(app, access_token, exp=issued_at + TTL + LEEWAY)
    longer = resign(app, access_token, exp=issued_at + TTL + LEEWAY + 1)
    for_ever = resign(app, access_token, exp=issued_at + 10 * 365 * 24 * 3600)

    assert client.get(path, headers=bearer(longest)).status_code == 200
    assert_invalid_token(client.get(path, headers=bearer(longer)))
    assert_invalid_token(client.get(path, headers=bearer(for_ever)))


HUGE = 10**400
HUGE_CLAIMS = {
    "exp": {"exp": HUGE},
    "iat": {"iat": HUGE},
    "nbf": {"nbf": HUGE},
    "iat and exp": {"iat": HUGE, "exp": HUGE + TTL},
    "negative exp": {"exp": -HUGE},
    "a float nbf": {"nbf": 1.5},
    "a string nbf": {"nbf": "0"},
}


@pytest.mark.parametrize("claims", HUGE_CLAIMS.values(), ids=HUGE_CLAIMS)
@pytest.mark.parametrize("path", PROTECTED)
def test_timestamps_no_clock_reaches_are_a_401(
    app: Flask, client: FlaskClient, access_token: str, path: str, claims: dict[str, Any]
) -> None:
    before = snapshot(app)

    assert_invalid_token(client.get(path, headers=bearer(resign(app, access_token, **claims))))
    assert snapshot(app) == before


def test_nbf_is_checked_at_every_use_of_a_cached_verdict(app: Flask, access_token: str) -> None:
    now = datetime.now(UTC)
    token = resign(app, access_token, nbf=int(now.timestamp()) + 100)
    with app.app_context():
        verifier = auth_state().access_tokens
        later = verifier.verify(token, now=now + timedelta(seconds=100))
        hits = verifier.signed_claims.cache_info().hits

        with pytest.raises(InvalidToken, match="not valid yet"):
            verifier.verify(token, now=now)
        assert verifier.signed_claims.cache_info().hits == hits + 1
    assert later.not_before == int(now.timestamp()) + 100


# --- failures are ours in JSON, the host's stay the host's ---------------------------------


def fail(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug with a secret-detail in it")


def assert_our_server_error(response: TestResponse) -> None:
    assert response.status_code == 500
    assert response.json == SERVER_ERROR
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    assert "secret-detail" not in body


def test_a_bug_in_our_route_is_json_with_our_headers(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accounts, "register", fail)
    before = snapshot(app)

    response = client.post("/auth/register", json={"email": "a@example.com", "password": PASSWORD})

    assert_our_server_error(response)
    assert snapshot(app) == before


def test_a_bug_in_a_host_route_is_our_json_when_the_host_asks(app: Flask) -> None:
    # The reference service passes json_errors=True: its own routes' failures are ours too.
    app.add_url_rule("/broken", "broken", fail)

    assert_our_server_error(app.test_client().get("/broken"))


@pytest.fixture
def bare_host(database_url: str) -> Iterator[Flask]:
    """A host with its own error pages: AuthManager(db=db), no json_errors."""
    db = SQLAlchemy()
    auth = AuthManager(db=db)
    host = Flask("host")
    host.config.update(
        SECRET_KEY=SECRET,
        TESTING=True,
        # Flask's own 500 page instead of the exception re-raised into the test.
        PROPAGATE_EXCEPTIONS=False,
        AUTH_ARGON2_PROFILE="test",
        AUTH_RATELIMIT_ENABLED=False,
        SQLALCHEMY_DATABASE_URI=database_url,
    )
    db.init_app(host)
    auth.init_app(host)
    host.add_url_rule("/broken", "broken", fail)
    yield host
    with host.app_context():
        db.engine.dispose()


def test_a_bug_in_a_host_route_keeps_the_hosts_500_page(bare_host: Flask) -> None:
    response = bare_host.test_client().get("/broken")

    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert "Internal Server Error" in response.get_data(as_text=True)
    assert "X-Content-Type-Options" not in response.headers


def test_a_bug_in_our_route_is_json_in_a_host_with_its_own_500_page(
    bare_host: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accounts, "register", fail)

    response = bare_host.test_client().post(
        "/auth/register", json={"email": "a@example.com", "password": PASSWORD}
    )

    assert_our_server_error(response)
