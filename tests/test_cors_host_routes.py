"""A page on a listed origin calls the host's own `@auth_required` routes: CORS from
AUTH_TRUSTED_ORIGINS where the host opts in with `allow_trusted_origins` (docs/host-app.md,
"Your routes from other origins"); the reference service opts in for `/api/`."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import request
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from werkzeug.test import TestResponse

from flask_token_auth import auth_required
from flask_token_auth import AuthManager
from flask_token_auth import current_claims
from flask_token_auth.models import AuthEvent
from flask_token_auth.models import AuthSession
from flask_token_auth.models import RefreshToken
from flask_token_auth.models import User
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import register

TRUSTED = "https://app.example"
STRANGER = "https://evil.example"
HOST_CONFIG = {"SECRET_KEY": SECRET, "TESTING": True, "AUTH_ARGON2_PROFILE": "test"}


@pytest.fixture
def app_config() -> dict[str, Any]:
    """The reference service with one listed origin: it opts in for `/api/` by itself."""
    return {"AUTH_TRUSTED_ORIGINS": [TRUSTED]}


def preflight(
    client: FlaskClient,
    path: str,
    origin: str = TRUSTED,
    *,
    method: str = "GET",
    headers: str = "authorization",
) -> TestResponse:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def cors_headers(response: TestResponse) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def varies_by_origin(response: TestResponse) -> bool:
    return "origin" in {
        value.strip().lower()
        for header in response.headers.getlist("Vary")
        for value in header.split(",")
    }


def assert_allowed(response: TestResponse, origin: str = TRUSTED) -> None:
    """The CORS headers of an answer a page on `origin` may read, its cookies included."""
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers.getlist("Access-Control-Allow-Origin") == [origin]  # never `*`
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert varies_by_origin(response)


# --- the reference service -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/hello", "/api/stateless", "/api/admin"])
def test_a_listed_origin_preflight_of_a_protected_route_is_answered(
    client: FlaskClient, path: str
) -> None:
    answer = preflight(client, path, headers="authorization, content-type")

    assert answer.status_code == 200  # Flask's own OPTIONS answer: @auth_required never runs
    assert_allowed(answer)
    methods = {
        method.strip() for method in answer.headers["Access-Control-Allow-Methods"].split(",")
    }
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= methods
    assert answer.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert answer.headers["Access-Control-Max-Age"] == "600"
    # The CSRF header is the auth routes' alone.
    assert (
        preflight(client, path, headers="x-csrf-token").headers.get("Access-Control-Allow-Headers")
        is None
    )


def test_a_listed_origin_calls_a_protected_route_with_its_bearer_token(
    client: FlaskClient,
) -> None:
    user = register(client)
    access_token = login(client, native=True).json["access_token"]

    answer = client.get("/api/hello", headers={"Origin": TRUSTED, **bearer(access_token)})

    assert answer.status_code == 200
    assert answer.json == {"message": f"hello, user {user['id']}"}
    assert_allowed(answer)
    assert "Access-Control-Allow-Methods" not in answer.headers  # not a preflight


def test_a_refusal_on_a_protected_route_is_readable_by_the_listed_page(
    client: FlaskClient,
) -> None:
    """The browser module reads a 401's `error` to decide whether to refresh."""
    answer = client.get("/api/hello", headers={"Origin": TRUSTED, **bearer("not-a-token")})

    assert answer.status_code == 401
    assert answer.json["error"] == "invalid_token"
    assert_allowed(answer)


def test_an_unlisted_origin_gets_no_cors_headers(client: FlaskClient) -> None:
    register(client)
    access_token = login(client, native=True).json["access_token"]

    refused = preflight(client, "/api/hello", STRANGER)
    answered = client.get("/api/hello", headers={"Origin": STRANGER, **bearer(access_token)})
    without_origin = client.get("/api/hello", headers=bearer(access_token))

    assert cors_headers(refused) == {}
    assert answered.status_code == 200  # its browser, not the server, keeps the page from it
    assert cors_headers(answered) == {}
    assert cors_headers(without_origin) == {}  # no Origin, no CORS request
    # Each answer depends on the Origin: a cache must not hand one origin's to another.
    assert all(map(varies_by_origin, (refused, answered, without_origin)))


def test_the_service_opts_in_for_its_api_routes_only(client: FlaskClient) -> None:
    assert_allowed(preflight(client, "/api/hello"))
    for path in ("/healthz", "/metrics", "/"):
        answer = client.get(path, headers={"Origin": TRUSTED})
        assert cors_headers(answer) == {}, path
        assert not varies_by_origin(answer), path


# --- a host's own app ------------------------------------------------------------------------

orders = Blueprint("orders", __name__)


@orders.route("/orders", methods=["GET", "POST"])
@auth_required
def order_list() -> Any:
    if request.method == "POST":
        return {"created_by": current_claims.user_id}, 201
    return {"orders": [], "user_id": current_claims.user_id}


HostMaker = Callable[..., Flask]


@pytest.fixture
def make_host(database_url: str) -> Iterator[HostMaker]:
    """Makes a bare Flask app on `database_url` with its own blueprint at /v1 and a route at
    /v1beta, opted in for `paths` (None: not opted in); rows and engines cleared afterwards."""
    made: list[tuple[Flask, SQLAlchemy]] = []

    def make(*, paths: list[str] | None, **config: Any) -> Flask:
        db = SQLAlchemy()
        api_auth = AuthManager(db=db)
        app = Flask("host")
        app.config.update(
            HOST_CONFIG,
            SQLALCHEMY_DATABASE_URI=database_url,
            AUTH_TRUSTED_ORIGINS=[TRUSTED],
            **config,
        )
        db.init_app(app)
        api_auth.init_app(app)
        app.register_blueprint(orders, url_prefix="/v1")
        app.add_url_rule("/v1beta/orders", "beta_orders", auth_required(lambda: {"orders": []}))
        made.append((app, db))
        with app.app_context():
            db.create_all()
        if paths is not None:
            api_auth.allow_trusted_origins(app, paths=paths)
        return app

    yield make
    for index, (app, db) in enumerate(made):
        with app.app_context():
            if index == 0:
                with db.engine.begin() as connection:
                    for model in (AuthEvent, RefreshToken, AuthSession, User):
                        connection.execute(sa.delete(model))
            db.engine.dispose()


def test_a_host_blueprint_opted_in_answers_a_listed_origin(make_host: HostMaker) -> None:
    client = make_host(paths=["/v1"]).test_client()
    user = register(client)
    access_token = login(client, native=True).json["access_token"]

    asked = preflight(client, "/v1/orders", method="POST", headers="content-type, authorization")
    created = client.post(
        "/v1/orders", json={}, headers={"Origin": TRUSTED, **bearer(access_token)}
    )

    assert asked.status_code == 200
    assert_allowed(asked)
    assert asked.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert "POST" in asked.headers["Access-Control-Allow-Methods"]
    assert created.status_code == 201
    assert created.json == {"created_by": user["id"]}
    assert_allowed(created)
    # `/v1` is a path, not a string prefix: /v1beta is not under it.
    assert cors_headers(preflight(client, "/v1beta/orders")) == {}
    assert cors_headers(preflight(client, "/v1/orders", STRANGER)) == {}


def test_without_the_opt_in_a_hosts_routes_get_no_cors(make_host: HostMaker) -> None:
    """AUTH_TRUSTED_ORIGINS alone opens the auth routes only; the call opens the host's."""
    closed = make_host(paths=None).test_client()
    opened = make_host(paths=["/v1/"]).test_client()

    auth = preflight(closed, "/auth/refresh", method="POST")
    assert auth.status_code == 200
    assert auth.headers["Access-Control-Allow-Origin"] == TRUSTED
    assert cors_headers(preflight(closed, "/v1/orders")) == {}
    assert cors_headers(closed.get("/v1/orders", headers={"Origin": TRUSTED})) == {}
    assert_allowed(preflight(opened, "/v1/orders"))
    assert_allowed(opened.get("/v1/orders", headers={"Origin": TRUSTED}))  # its 401


def test_every_path_opted_in_leaves_the_auth_routes_their_own_cors(make_host: HostMaker) -> None:
    client = make_host(paths=["/"], AUTH_URL_PREFIX="/v1/auth").test_client()

    auth = preflight(client, "/v1/auth/refresh", method="POST", headers="x-csrf-token")
    host = preflight(client, "/v1beta/orders", headers="x-csrf-token, authorization")

    assert auth.headers["Access-Control-Allow-Origin"] == TRUSTED
    assert auth.headers["Access-Control-Allow-Headers"] == "x-csrf-token"
    assert_allowed(host)
    assert host.headers["Access-Control-Allow-Headers"] == "authorization"


def test_the_opt_in_is_checked_when_called() -> None:
    api_auth = AuthManager(db=SQLAlchemy())
    app = Flask("host")
    app.config.update(HOST_CONFIG, SQLALCHEMY_DATABASE_URI="sqlite://")

    with pytest.raises(RuntimeError, match=r"init_app\(app\) first"):
        api_auth.allow_trusted_origins(app, paths=["/api/"])
    api_auth.init_app(app)
    with pytest.raises(TypeError, match=r'paths=\["/api/"\]'):
        api_auth.allow_trusted_origins(app, paths="/api/")
    for paths in ([], ["api/"], ["/auth"], ["/auth/sessions"]):
        with pytest.raises(ValueError, match=r"^paths: "):
            api_auth.allow_trusted_origins(app, paths=paths)
