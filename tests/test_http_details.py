"""HTTP details of the auth routes: a login that replaces a browser's session ends it, OPTIONS
and 405 name a path's own methods, the OpenAPI document carries the input checks
(docs/http-api.md, docs/security.md)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError
from werkzeug.test import TestResponse

from flask_token_auth import revocation
from flask_token_auth.validation import is_session_id
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import refresh_cookie
from tests.helpers import register
from tests.helpers import rows

BOB = "bob@example.com"


def login_session(client: FlaskClient, email: str = "ada@example.com") -> dict[str, str]:
    """Log in (cookie transport unless asked): the access token and its session id."""
    access_token = login(client, email).json["access_token"]
    me = client.get("/auth/me", headers=bearer(access_token))
    assert me.status_code == 200
    return {"access_token": access_token, "session_id": me.json["session_id"]}


def session_states(app: Flask) -> dict[str, str | None]:
    """Each session's revocation reason (None while it is live)."""
    return {
        row.id: row.revoked_reason
        for row in rows(app, "SELECT id, revoked_reason FROM auth_sessions")
    }


def assert_session_ended(app: Flask, access_token: str, refresh_token: str) -> None:
    me = app.test_client().get("/auth/me", headers=bearer(access_token))
    assert me.status_code == 401
    assert me.json is not None
    assert me.json["error"] == "invalid_token"
    refreshed = app.test_client().post(
        "/auth/refresh", json={"refresh_token": refresh_token}, headers=NATIVE
    )
    assert refreshed.status_code == 401
    assert refreshed.json is not None
    assert refreshed.json["error"] == "invalid_grant"


# A login that replaces the refresh cookie (docs/security.md, docs/http-api.md)


def test_a_second_login_in_one_browser_revokes_the_session_it_replaces(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    first = login_session(client)
    first_refresh = refresh_cookie(client)

    second = login_session(client)

    assert session_states(app) == {
        first["session_id"]: "replaced_by_login",
        second["session_id"]: None,
    }
    assert_session_ended(app, first["access_token"], first_refresh)
    assert client.get("/auth/me", headers=bearer(second["access_token"])).status_code == 200
    revoked = rows(
        app,
        "SELECT type, session_id, detail FROM auth_events WHERE session_id = :id "
        "AND type != 'login_succeeded'",
        id=first["session_id"],
    )
    assert [(row.type, row.session_id) for row in revoked] == [
        ("session_revoked", first["session_id"])
    ]


def test_the_replaced_session_is_revoked_whoever_it_belonged_to(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    register(client, BOB)
    ada = login_session(client)
    ada_refresh = refresh_cookie(client)

    bob = login_session(client, BOB)

    assert session_states(app) == {ada["session_id"]: "replaced_by_login", bob["session_id"]: None}
    assert_session_ended(app, ada["access_token"], ada_refresh)


def test_a_body_transport_login_leaves_the_browser_session_alone(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    browser = login(client).json
    assert browser is not None
    other_browser = login(app.test_client()).json
    assert other_browser is not None

    native = login(client, native=True).json  # carries the cookie, but asks for the body
    assert native is not None

    assert set(session_states(app).values()) == {None}
    for tokens in (browser, other_browser, native):
        me = client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200


@pytest.mark.parametrize("cookie", ["not-a-token", "0" * 64])
def test_a_login_with_an_unknown_refresh_cookie_succeeds_and_revokes_nothing(
    app: Flask, client: FlaskClient, cookie: str
) -> None:
    register(client)
    other = login(app.test_client()).json
    assert other is not None
    client.set_cookie("refresh_token", cookie, path="/auth")

    logged_in = login(client).json
    assert logged_in is not None

    assert set(session_states(app).values()) == {None}
    assert refresh_cookie(client) != cookie


def test_a_failed_revocation_never_fails_the_login(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(client)
    first = login_session(client)

    def unavailable(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("UPDATE auth_sessions", {}, Exception("server closed"))

    monkeypatch.setattr(revocation, "revoke_session", unavailable)
    second = login_session(client)

    assert session_states(app) == {first["session_id"]: None, second["session_id"]: None}
    assert client.get("/auth/me", headers=bearer(second["access_token"])).status_code == 200


def test_a_failed_login_leaves_the_browser_session_alone(app: Flask, client: FlaskClient) -> None:
    register(client)
    first = login_session(client)

    refused = client.post("/auth/login", json={"email": "ada@example.com", "password": "wrong!!!"})

    assert refused.status_code == 401
    assert session_states(app) == {first["session_id"]: None}


# OPTIONS and 405 under the prefix (docs/http-api.md)


def allowed(response: TestResponse) -> set[str]:
    return {method.strip() for method in response.headers["Allow"].split(",")}


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/auth/refresh", {"POST", "OPTIONS"}),
        ("/auth/login", {"POST", "OPTIONS"}),
        ("/auth/me", {"GET", "HEAD", "OPTIONS"}),
        ("/auth/sessions", {"GET", "HEAD", "OPTIONS"}),
        ("/auth/sessions/some-session-id", {"DELETE", "OPTIONS"}),
        ("/auth/openapi.json", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_options_names_only_the_methods_of_the_path(
    client: FlaskClient, path: str, methods: set[str]
) -> None:
    answer = client.options(path)

    assert answer.status_code == 200
    assert allowed(answer) == methods
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("method", "path", "methods"),
    [
        ("GET", "/auth/refresh", {"POST", "OPTIONS"}),
        ("PUT", "/auth/me", {"GET", "HEAD", "OPTIONS"}),
        ("TRACE", "/auth/sessions/some-session-id", {"DELETE", "OPTIONS"}),
    ],
)
def test_a_405_names_only_the_methods_of_the_path(
    client: FlaskClient, method: str, path: str, methods: set[str]
) -> None:
    answer = client.open(path, method=method)

    assert answer.status_code == 405
    assert allowed(answer) == methods


@pytest.mark.parametrize("app_config", [{"AUTH_TRUSTED_ORIGINS": ["https://app.example"]}])
def test_a_preflight_from_a_trusted_origin_names_only_the_methods_of_the_path(
    client: FlaskClient,
) -> None:
    answer = client.options(
        "/auth/refresh",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )

    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert allowed(answer) == {"POST", "OPTIONS"}


def test_the_hosts_own_routes_keep_flasks_options_answer(app: Flask) -> None:
    answer = app.test_client().options("/healthz")

    assert answer.status_code == 200
    assert allowed(answer) == {"GET", "HEAD", "OPTIONS"}
    assert "X-Content-Type-Options" not in answer.headers  # no hook of ours ran


# The OpenAPI document carries the input checks (docs/http-api.md#input)


def request_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["paths"][path]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


@pytest.mark.parametrize(
    "app_config", [{"AUTH_PASSWORD_MIN_LENGTH": 12, "AUTH_PASSWORD_MAX_LENGTH": 100}]
)
def test_the_document_carries_the_input_checks(client: FlaskClient) -> None:
    document = client.get("/auth/openapi.json").json
    assert document is not None
    password = {"type": "string", "minLength": 12, "maxLength": 100}

    register_fields = request_schema(document, "/auth/register")["properties"]
    assert register_fields == {
        "email": {"type": "string", "format": "email", "maxLength": 254},
        "password": password,
    }
    assert request_schema(document, "/auth/password")["properties"]["new_password"] == password
    assert request_schema(document, "/auth/login")["properties"]["email"] == {
        "type": "string",
        "maxLength": 320,
    }
    token = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    for path in ("/auth/refresh", "/auth/logout"):
        assert request_schema(document, path)["properties"]["refresh_token"] == token
    (session_id,) = document["paths"]["/auth/sessions/{session_id}"]["delete"]["parameters"]
    assert session_id["schema"] == {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{1,64}$",
        "maxLength": 64,
    }


@pytest.mark.parametrize(
    "session_id",
    ["a", "Mrtdkm01fNgHjNZ0ohq0gex-3lkH_BcO", "x" * 64, "", "x" * 65, "a.b", "a b", "é", "a/b"],
)
def test_the_documented_session_id_is_the_one_the_route_accepts(
    client: FlaskClient, session_id: str
) -> None:
    document = client.get("/auth/openapi.json").json
    assert document is not None
    (parameter,) = document["paths"]["/auth/sessions/{session_id}"]["delete"]["parameters"]
    schema = parameter["schema"]

    documented = re.search(schema["pattern"], session_id) is not None
    assert documented == is_session_id(session_id)
