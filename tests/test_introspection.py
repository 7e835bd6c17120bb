"""RFC 7662 token introspection at `POST /auth/introspect` (docs/http-api.md,
docs/resource-servers.md): for the resource servers of AUTH_INTROSPECTION_CLIENTS, which
authenticate with HTTP Basic; a revoked session's access token is inactive at once. On SQLite,
PostgreSQL and MariaDB."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import config as service_config
from flask_token_auth.settings import AuthSettings
from flask_token_auth.state import auth_state
from flask_token_auth.tokens import issue_access_token
from tests.conftest import app_with_tables
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import claims_of
from tests.helpers import execute
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import register
from tests.helpers import snapshot

CLIENT_ID = "orders-api"
CLIENT_SECRET = "orders-api-secret-0123456789"
#: A client configured by the SHA-256 of its secret.
HASHED_ID = "billing"
HASHED_SECRET = "billing-secret-9876543210"
CLIENTS = {
    CLIENT_ID: CLIENT_SECRET,
    HASHED_ID: "sha256:" + hashlib.sha256(HASHED_SECRET.encode()).hexdigest(),
}
ACTIVE_MEMBERS = {"active", "token_type", "iss", "aud", "sub", "sid", "role", "jti", "iat", "exp"}


@pytest.fixture
def app_config() -> dict[str, Any]:
    return {"AUTH_INTROSPECTION_CLIENTS": CLIENTS}


@pytest.fixture
def access_token(client: FlaskClient) -> str:
    """An access token of a fresh session of Ada's."""
    register(client)
    token: str = login(client, native=True).json["access_token"]
    return token


def basic(client_id: str, secret: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def introspect(
    client: FlaskClient, token: str, headers: dict[str, str] | None = None
) -> TestResponse:
    """The request RFC 7662 section 2.1 describes, form-encoded, as the orders API."""
    return client.post(
        "/auth/introspect",
        data={"token": token},
        headers=basic(CLIENT_ID, CLIENT_SECRET) if headers is None else headers,
    )


def assert_inactive(response: TestResponse) -> None:
    assert response.status_code == 200
    assert response.json == {"active": False}
    assert response.headers["Cache-Control"] == "no-store"


def assert_error(response: TestResponse, status: int, error: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json is not None
    assert set(response.json) == {"error", "error_description"}
    assert response.json["error"] == error


def test_an_active_token_is_described(client: FlaskClient, access_token: str) -> None:
    """RFC 7662 section 2.2: `active`, and the members that apply to our access tokens."""
    claims = claims_of(access_token)

    for headers in (basic(CLIENT_ID, CLIENT_SECRET), basic(HASHED_ID, HASHED_SECRET)):
        response = introspect(client, access_token, headers)

        assert response.status_code == 200
        assert response.mimetype == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.json == {
            "active": True,
            "token_type": "Bearer",
            "iss": "flask-token-auth",
            "aud": "flask-token-auth",
            "sub": claims["sub"],
            "sid": claims["sid"],
            "role": "user",
            "jti": claims["jti"],
            "iat": claims["iat"],
            "exp": claims["exp"],
        }
        assert set(response.json) == ACTIVE_MEMBERS


def test_the_role_is_the_one_of_the_database_now(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    """As `@auth_required`: a role changed after the token was issued applies at once."""
    execute(app, "UPDATE users SET role = 'admin'")

    response = introspect(client, access_token)

    assert response.json["active"] is True
    assert response.json["role"] == "admin"
    assert claims_of(access_token)["role"] == "user"


def test_a_revoked_sessions_token_is_inactive_at_once(
    client: FlaskClient, access_token: str
) -> None:
    assert introspect(client, access_token).json["active"] is True

    logout = client.post("/auth/logout", headers={**NATIVE, **bearer(access_token)})

    assert logout.status_code == 204
    assert_inactive(introspect(client, access_token))


def test_a_deactivated_users_token_is_inactive(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    execute(app, "UPDATE users SET is_active = :no", no=False)

    assert_inactive(introspect(client, access_token))


def test_an_expired_token_is_inactive(app: Flask, client: FlaskClient, access_token: str) -> None:
    """A token of the same live session, issued an access TTL and a minute ago."""
    claims = claims_of(access_token)
    with app.app_context():
        state = auth_state()
        expired = issue_access_token(
            keys=state.keys,
            settings=state.settings,
            user_id=int(claims["sub"]),
            role="user",
            session_id=claims["sid"],
            now=datetime.now(UTC) - state.settings.access_token_ttl - timedelta(minutes=1),
        )

    assert_inactive(introspect(client, expired))
    assert introspect(client, access_token).json["active"] is True


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "0" * 64,  # the shape of a refresh token: only access tokens are introspected
        "x" * 9000,
        "é",
    ],
)
def test_anything_but_an_active_access_token_is_inactive(
    app: Flask, client: FlaskClient, access_token: str, token: str
) -> None:
    before = snapshot(app)

    assert_inactive(introspect(client, token))
    assert snapshot(app) == before


def test_a_token_signed_by_another_key_is_inactive(client: FlaskClient, access_token: str) -> None:
    header, payload, signature = access_token.split(".")
    tampered = f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"

    assert_inactive(introspect(client, tampered))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(CLIENT_ID, "orders-api-secret-0123456788"),
        basic("unknown-api", CLIENT_SECRET),
        basic(HASHED_ID, CLIENTS[HASHED_ID]),  # the configured digest is not the secret
        basic(HASHED_ID, CLIENTS[HASHED_ID].removeprefix("sha256:")),
        basic(CLIENT_ID, ""),
        basic("", CLIENT_SECRET),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer " + CLIENT_SECRET},
    ],
    ids=[
        "none",
        "wrong-secret",
        "unknown-client",
        "digest-as-secret",
        "hex-as-secret",
        "empty-secret",
        "empty-client",
        "malformed",
        "bearer",
    ],
)
def test_bad_client_credentials_are_a_401_with_a_basic_challenge(
    app: Flask, client: FlaskClient, access_token: str, headers: dict[str, str]
) -> None:
    """RFC 6749 section 5.2, as RFC 7662 section 2.1 asks: 401 `invalid_client` and a
    challenge for the scheme the client is to use; the token's status is not revealed."""
    before = snapshot(app)

    response = introspect(client, access_token, headers)

    assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="api"'
    assert response.headers["Cache-Control"] == "no-store"
    assert snapshot(app) == before


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"token": "x"}', "application/json"),
        ("", "application/x-www-form-urlencoded"),
        ("token=", "application/x-www-form-urlencoded"),
        ("token_type_hint=access_token", "application/x-www-form-urlencoded"),
        ("token=a&token=b", "application/x-www-form-urlencoded"),
    ],
    ids=["json", "empty", "empty-token", "no-token", "two-tokens"],
)
def test_a_request_without_one_form_token_is_a_400(
    client: FlaskClient, access_token: str, body: str, content_type: str
) -> None:
    response = client.post(
        "/auth/introspect",
        data=body,
        headers={**basic(CLIENT_ID, CLIENT_SECRET), "Content-Type": content_type},
    )

    assert_error(response, 400, "invalid_request")


def test_the_token_type_hint_is_ignored(client: FlaskClient, access_token: str) -> None:
    response = client.post(
        "/auth/introspect",
        data={"token": access_token, "token_type_hint": "refresh_token"},
        headers=basic(CLIENT_ID, CLIENT_SECRET),
    )

    assert response.json["active"] is True


def test_introspection_is_on_only_with_clients(app: Flask, database_url: str) -> None:
    """AUTH_INTROSPECTION_CLIENTS unset: a 404, as for a path that does not exist."""
    register(app.test_client())
    with app_with_tables(database_url) as without_clients:
        for application in (app, without_clients):
            client = application.test_client()
            token = login(client, native=True).json["access_token"]

            response = introspect(client, token)

            if application is app:
                assert response.json["active"] is True
            else:
                assert_error(response, 404, "not_found")
                assert response.json == client.post("/auth/no-such-route").json


def test_failed_client_authentications_are_rate_limited(database_url: str) -> None:
    """AUTH_RATELIMIT_INTROSPECTION counts failures only, per client address."""
    with app_with_tables(
        database_url,
        AUTH_INTROSPECTION_CLIENTS=CLIENTS,
        AUTH_RATELIMIT_ENABLED=True,
        AUTH_RATELIMIT_INTROSPECTION="2/minute",
    ) as application:
        client = application.test_client()
        register(client)
        token = login(client, native=True).json["access_token"]
        for _ in range(3):
            assert introspect(client, token).json["active"] is True
        wrong = basic(CLIENT_ID, "orders-api-secret-wrong-000")
        for _ in range(2):
            assert introspect(client, token, wrong).status_code == 401

        refused = introspect(client, token)

        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1


# The setting


def settings(clients: Any) -> AuthSettings:
    return AuthSettings.from_config({"SECRET_KEY": SECRET, "AUTH_INTROSPECTION_CLIENTS": clients})


def test_clients_from_the_environment() -> None:
    """docs/configuration.md: comma-separated `client_id:secret`, or `client_id:sha256:<hex>`."""
    environment = {"AUTH_INTROSPECTION_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET},{HASHED_ID}:"}
    environment["AUTH_INTROSPECTION_CLIENTS"] += CLIENTS[HASHED_ID]

    read = settings(service_config.auth_settings(environment)["AUTH_INTROSPECTION_CLIENTS"])

    assert read.introspection_clients == settings(CLIENTS).introspection_clients
    assert dict(read.introspection_clients) == {
        HASHED_ID: hashlib.sha256(HASHED_SECRET.encode()).digest(),
        CLIENT_ID: hashlib.sha256(CLIENT_SECRET.encode()).digest(),
    }
    assert CLIENT_SECRET not in repr(read)


@pytest.mark.parametrize(
    ("clients", "problem"),
    [
        ({CLIENT_ID: "short-secret"}, "the secret of the client orders-api is not 16 to 256"),
        ({CLIENT_ID: "a secret with spaces in it"}, "the secret of the client orders-api"),
        ({"two words": CLIENT_SECRET}, "'two words' is not a client id"),
        ({CLIENT_ID: "sha256:abc"}, "the secret of the client orders-api"),
        ([f"{CLIENT_ID}-{CLIENT_SECRET}"], "an entry has no colon"),
        ([f"{CLIENT_ID}:{CLIENT_SECRET}", f"{CLIENT_ID}:{HASHED_SECRET}"], "listed twice"),
        ("orders-api:" + CLIENT_SECRET, "must map client ids to secrets"),
    ],
)
def test_clients_that_cannot_be_used_are_refused_without_their_secret(
    clients: Any, problem: str
) -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_INTROSPECTION_CLIENTS: ") as raised:
        settings(clients)

    assert problem in str(raised.value)
    for secret in (CLIENT_SECRET, HASHED_SECRET, "short-secret", "a secret with spaces"):
        assert secret not in str(raised.value)


def test_the_cli_prints_a_secret_and_its_entry(database_url: str) -> None:
    """`flask auth client-secret ID` (docs/operations.md#command-line): the entry holds the
    secret's digest only, and the secret it prints authenticates."""
    with app_with_tables(database_url) as application:
        result = application.test_cli_runner().invoke(args=["auth", "client-secret", "search"])
    assert result.exit_code == 0, result.output
    secret_line, entry_line = result.output.splitlines()
    secret = secret_line.rsplit(" ", 1)[1]
    entry = entry_line.rsplit(" ", 1)[1]
    assert entry == "search:sha256:" + hashlib.sha256(secret.encode()).hexdigest()

    with app_with_tables(database_url, AUTH_INTROSPECTION_CLIENTS=[entry]) as application:
        client = application.test_client()
        register(client)
        token = login(client, native=True).json["access_token"]
        assert introspect(client, token, basic("search", secret)).json["active"] is True

        bad = application.test_cli_runner().invoke(args=["auth", "client-secret", "a:b"])
        assert bad.exit_code == 2
        assert "'a:b' is not a client id" in bad.output
