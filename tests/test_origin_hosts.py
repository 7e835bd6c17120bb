"""The app's own origin is one of its configured hosts (Flask's TRUSTED_HOSTS or SERVER_NAME),
never whatever `Host` a request names: a page on a rebound name (DNS rebinding) can neither
register nor log in (docs/security.md, "The app's own origin")."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import TestResponse

import config as service_config
from flask_token_auth import AuthManager
from flask_token_auth import engine_options
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import AUTH_TABLES
from tests.helpers import register
from tests.helpers import snapshot

#: Flask 3.1 refuses a Host outside TRUSTED_HOSTS itself (400) before any view runs; under
#: Flask 3.0 the Origin check is what stops a rebound name.
FLASK_CHECKS_TRUSTED_HOSTS = "TRUSTED_HOSTS" in Flask.default_config
CREDENTIALS = {"email": "ada@example.com", "password": PASSWORD}
NEWCOMER = {"email": "eve@example.com", "password": PASSWORD}
REBOUND = [
    pytest.param({"Host": "evil.example", "Origin": "http://evil.example"}, id="default-port"),
    pytest.param(
        {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}, id="make-run-port"
    ),
]
STATE_CHANGING = [
    pytest.param("/auth/register", NEWCOMER, id="register"),
    pytest.param("/auth/login", CREDENTIALS, id="login"),
]


def assert_refused(
    response: TestResponse, status: int = 403, error: str | None = "csrf_failed"
) -> None:
    assert (response.status_code, (response.json or {}).get("error")) == (status, error)
    assert "Set-Cookie" not in response.headers


def assert_refused_host(
    response: TestResponse, flask_error: str | None = "invalid_request"
) -> None:
    """Refused for a Host outside TRUSTED_HOSTS: by Flask itself if it checks (a JSON error
    where the app renders errors as JSON), else by the Origin check."""
    if FLASK_CHECKS_TRUSTED_HOSTS:
        assert_refused(response, 400, flask_error)
    else:
        assert_refused(response)


# --- the reference service: TRUSTED_HOSTS localhost and 127.0.0.1 ---------------------------


def test_the_reference_service_trusts_localhost_and_127_0_0_1_unless_told_otherwise() -> None:
    assert service_config.from_environment({})["TRUSTED_HOSTS"] == ["localhost", "127.0.0.1"]
    read = service_config.from_environment({"TRUSTED_HOSTS": "api.example.com, .example.org,"})
    assert read["TRUSTED_HOSTS"] == ["api.example.com", ".example.org"]


@pytest.mark.parametrize(("path", "payload"), STATE_CHANGING)
@pytest.mark.parametrize("headers", REBOUND)
def test_a_page_on_a_rebound_name_can_neither_register_nor_log_in(
    app: Flask, client: FlaskClient, path: str, payload: dict[str, str], headers: dict[str, str]
) -> None:
    register(client)
    before = snapshot(app)

    response = client.post(path, json=payload, headers=headers)

    assert_refused_host(response)
    assert snapshot(app) == before  # no account, no session, not even a failed login recorded


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "http://localhost"}, id="test-client"),
        pytest.param({"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"}, id="make-run"),
        pytest.param({"Host": "localhost:8000", "Origin": "http://localhost:8000"}, id="localhost"),
        pytest.param({"Host": "127.0.0.1:8000", "Origin": "http://localhost:8000"}, id="sibling"),
    ],
)
def test_a_configured_hosts_own_origin_registers_and_logs_in(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    registered = client.post("/auth/register", json=CREDENTIALS, headers=headers)
    assert registered.status_code == 201, registered.json

    logged_in = client.post("/auth/login", json=CREDENTIALS, headers=headers)

    assert logged_in.status_code == 200, logged_in.json
    assert logged_in.json["csrf_token"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:9000"}, id="other"),
        pytest.param({"Host": "localhost", "Origin": "http://localhost:8080"}, id="named"),
        pytest.param({"Host": "localhost:8000", "Origin": "http://localhost"}, id="default"),
        pytest.param({"Host": "localhost", "Origin": "https://localhost"}, id="scheme"),
        pytest.param({"Host": "localhost", "Origin": "ftp://localhost"}, id="not-http"),
        pytest.param({"Host": "localhost", "Origin": "http://user@localhost"}, id="userinfo"),
        pytest.param({"Host": "localhost", "Origin": "http://localhost/path"}, id="path"),
        pytest.param({"Host": "localhost", "Origin": "http://localhost:99999"}, id="bad-port"),
    ],
)
def test_another_port_or_scheme_of_a_configured_host_is_refused(
    app: Flask, client: FlaskClient, headers: dict[str, str]
) -> None:
    register(client)
    before = snapshot(app)

    for path, payload in (("/auth/register", NEWCOMER), ("/auth/login", CREDENTIALS)):
        assert_refused(client.post(path, json=payload, headers=headers))

    assert snapshot(app) == before


@pytest.mark.parametrize("app_config", [{"TRUSTED_HOSTS": ["localhost:8443"]}])
def test_a_port_in_a_trusted_host_is_the_one_port_its_origin_may_have(
    app: Flask, client: FlaskClient
) -> None:
    """A proxy on :8443 in front of an app that sees `Host: localhost`."""
    own = client.post(
        "/auth/register", json=CREDENTIALS, headers={"Origin": "http://localhost:8443"}
    )
    assert own.status_code == 201
    before = snapshot(app)

    for origin in ("http://localhost", "http://localhost:8444"):
        refused = client.post("/auth/login", json=CREDENTIALS, headers={"Origin": origin})
        assert_refused(refused)

    assert snapshot(app) == before


@pytest.mark.parametrize("app_config", [{"TRUSTED_HOSTS": [".example.com"]}])
def test_a_dotted_trusted_host_admits_the_domain_and_its_subdomains_only(
    app: Flask, client: FlaskClient
) -> None:
    host = {"Host": "api.example.com"}
    assert client.post("/auth/register", json=CREDENTIALS, headers=host).status_code == 201
    for origin in ("http://example.com", "http://app.example.com", "http://a.b.example.com"):
        logged_in = client.post("/auth/login", json=CREDENTIALS, headers={**host, "Origin": origin})
        assert logged_in.status_code == 200, (origin, logged_in.json)
    before = snapshot(app)

    for origin in (
        "http://badexample.com",
        "http://example.com.evil.example",
        "http://example.org",
        "http://app.example.com:8000",
    ):
        refused = client.post("/auth/login", json=CREDENTIALS, headers={**host, "Origin": origin})
        assert_refused(refused)
    for headers in ({"Host": "example.com.evil.example"}, {"Host": "evil.example"}):
        origin = f"http://{headers['Host']}"
        rebound = client.post(
            "/auth/login", json=CREDENTIALS, headers={**headers, "Origin": origin}
        )
        assert_refused_host(rebound)

    assert snapshot(app) == before


@pytest.mark.parametrize("app_config", [{"TRUSTED_HOSTS": ["api.example.com"]}])
def test_behind_proxyfix_the_forwarded_host_is_still_compared_with_the_configured_hosts(
    app: Flask, client: FlaskClient
) -> None:
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1)  # type: ignore[method-assign]
    proxied = {"Host": "127.0.0.1:8000", "X-Forwarded-Proto": "https"}
    public = {**proxied, "X-Forwarded-Host": "api.example.com", "Origin": "https://api.example.com"}
    assert client.post("/auth/register", json=CREDENTIALS, headers=public).status_code == 201
    before = snapshot(app)

    rebound = {**proxied, "X-Forwarded-Host": "evil.example", "Origin": "https://evil.example"}
    assert_refused_host(client.post("/auth/login", json=CREDENTIALS, headers=rebound))

    assert snapshot(app) == before


@pytest.mark.parametrize("app_config", [{"AUTH_TRUSTED_ORIGINS": ["http://evil.example"]}])
def test_a_listed_origin_passes_whatever_the_configured_hosts(
    app: Flask, client: FlaskClient
) -> None:
    """AUTH_TRUSTED_ORIGINS is the operator's word; it is checked before the configured hosts."""
    listed = {"Origin": "http://evil.example"}
    assert client.post("/auth/register", json=CREDENTIALS, headers=listed).status_code == 201
    assert client.post("/auth/login", json=CREDENTIALS, headers=listed).status_code == 200


def test_the_refusal_names_the_apps_own_origin_here(client: FlaskClient) -> None:
    register(client)
    refused = client.post("/auth/login", json=CREDENTIALS, headers={"Origin": "http://localhost:1"})

    assert_refused(refused)
    description = refused.json["error_description"]
    assert "http://localhost:1" in description
    assert "own origin here is http://localhost)" in description
    assert "AUTH_TRUSTED_ORIGINS" in description


# --- bare hosts: Flask's defaults, then SERVER_NAME ------------------------------------------


@dataclasses.dataclass
class BareHost:
    """A bare Flask app with the extension: no TRUSTED_HOSTS, no SERVER_NAME unless given."""

    app: Flask
    db: SQLAlchemy

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.app.app_context(), self.db.engine.connect() as connection:
            return {
                table: [
                    tuple(row)
                    for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))  # noqa: S608
                ]
                for table in AUTH_TABLES
            }


@pytest.fixture
def bare_host(database_url: str) -> Iterator[Callable[..., BareHost]]:
    """Bare hosts on the database of `database_url`; their rows deleted afterwards."""
    made: list[BareHost] = []

    def make(**config: Any) -> BareHost:
        db = SQLAlchemy()
        auth = AuthManager(db=db)
        app = Flask("host")
        app.config.update(
            SECRET_KEY=SECRET,
            TESTING=True,
            AUTH_ARGON2_PROFILE="test",
            AUTH_RATELIMIT_ENABLED=False,
            SQLALCHEMY_DATABASE_URI=database_url,
            SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
            **config,
        )
        db.init_app(app)
        auth.init_app(app)
        with app.app_context():
            db.create_all()
        made.append(BareHost(app, db))
        return made[-1]

    yield make
    for host in made:
        with host.app.app_context(), host.db.engine.begin() as connection:
            for table in ("auth_events", "refresh_tokens", "auth_sessions", "users"):
                connection.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608
        with host.app.app_context():
            host.db.engine.dispose()


def test_a_host_with_server_name_only_admits_that_hosts_origin(
    bare_host: Callable[..., BareHost],
) -> None:
    host = bare_host(SERVER_NAME="api.example.com")
    client = host.app.test_client()  # its requests name SERVER_NAME, as Flask's client builds them
    own = {"Origin": "http://api.example.com"}
    assert client.post("/auth/register", json=CREDENTIALS, headers=own).status_code == 201
    assert client.post("/auth/login", json=CREDENTIALS, headers=own).status_code == 200
    before = host.snapshot()

    for origin in (
        "http://api.example.com:8000",
        "http://app.example.com",
        "https://api.example.com",
    ):
        assert_refused(client.post("/auth/login", json=CREDENTIALS, headers={"Origin": origin}))
    rebound = {"Host": "evil.example", "Origin": "http://evil.example"}
    for path, payload in (("/auth/register", NEWCOMER), ("/auth/login", CREDENTIALS)):
        if FLASK_CHECKS_TRUSTED_HOSTS:
            refused = client.post(path, json=payload, headers=rebound)
            assert_refused(refused)
            assert (
                "evil.example is not in TRUSTED_HOSTS or SERVER_NAME"
                in (refused.json["error_description"])
            )
        else:  # Flask 3.0 routes no other host than SERVER_NAME's: a 404, with a warning
            with pytest.warns(UserWarning, match="doesn't match configured server name"):
                assert client.post(path, json=payload, headers=rebound).status_code == 404

    assert host.snapshot() == before


def test_a_host_with_a_port_in_server_name_admits_that_port_only(
    bare_host: Callable[..., BareHost],
) -> None:
    host = bare_host(SERVER_NAME="localhost:8443")
    client = host.app.test_client()
    own = {"Origin": "http://localhost:8443"}
    assert client.post("/auth/register", json=CREDENTIALS, headers=own).status_code == 201
    before = host.snapshot()

    refused = client.post("/auth/login", json=CREDENTIALS, headers={"Origin": "http://localhost"})

    assert_refused(refused)
    assert host.snapshot() == before


def test_a_host_that_configured_no_host_admits_listed_origins_and_no_origin_only(
    bare_host: Callable[..., BareHost],
) -> None:
    """Nothing to compare an Origin with: the request's own Host would admit any rebound name."""
    host = bare_host(AUTH_TRUSTED_ORIGINS=["https://app.example"])
    client = host.app.test_client()
    assert host.app.config.get("TRUSTED_HOSTS") is None
    assert host.app.config.get("SERVER_NAME") is None
    before = host.snapshot()

    for origin in ("http://localhost", "http://evil.example"):
        for path, payload in (("/auth/register", CREDENTIALS), ("/auth/login", CREDENTIALS)):
            headers = {"Host": origin.removeprefix("http://"), "Origin": origin}
            refused = client.post(path, json=payload, headers=headers)
            assert_refused(refused)
            description = refused.json["error_description"]
            assert "set TRUSTED_HOSTS" in description
            assert "AUTH_TRUSTED_ORIGINS" in description
    assert host.snapshot() == before

    assert client.post("/auth/register", json=CREDENTIALS).status_code == 201  # native, curl
    listed = {"Origin": "https://app.example"}
    assert client.post("/auth/login", json=CREDENTIALS, headers=listed).status_code == 200


def test_a_bare_host_that_sets_trusted_hosts_admits_its_origin(
    bare_host: Callable[..., BareHost],
) -> None:
    """Read by the extension under Flask 3.0 too, which has no TRUSTED_HOSTS of its own."""
    host = bare_host(TRUSTED_HOSTS=["localhost"])
    client = host.app.test_client()
    own = {"Origin": "http://localhost"}
    assert client.post("/auth/register", json=CREDENTIALS, headers=own).status_code == 201
    before = host.snapshot()

    rebound = {"Host": "evil.example", "Origin": "http://evil.example"}
    refused = client.post("/auth/login", json=CREDENTIALS, headers=rebound)
    assert_refused_host(refused, flask_error=None)  # the host's own error page, not ours

    assert host.snapshot() == before
