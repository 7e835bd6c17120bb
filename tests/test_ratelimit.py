"""Rate limits: 429 rate_limited with Retry-After, nothing changed, cookies kept."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import db
from flask_token_auth.ratelimit import REDIS_CONNECT_TIMEOUT
from flask_token_auth.ratelimit import REDIS_READ_TIMEOUT
from flask_token_auth.ratelimit import storage_options
from tests.conftest import app_with_tables
from tests.conftest import make_app
from tests.conftest import PASSWORD
from tests.helpers import assert_rate_limited
from tests.helpers import bearer
from tests.helpers import csrf_header
from tests.helpers import login
from tests.helpers import register
from tests.helpers import scalar
from tests.helpers import snapshot

LIMITED = {"AUTH_RATELIMIT_ENABLED": True}


def from_ip(ip: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": ip}}


@pytest.mark.parametrize("app_config", [LIMITED | {"AUTH_RATELIMIT_LOGIN": "3/minute"}])
def test_login_is_limited_per_ip(app: Flask, client: FlaskClient) -> None:
    register(client)
    wrong = {"email": "ada@example.com", "password": "wrong password"}
    for _ in range(3):
        assert client.post("/auth/login", json=wrong, **from_ip("192.0.2.7")).status_code == 401
    events = scalar(app, "SELECT COUNT(*) FROM auth_events")
    assert_rate_limited(client.post("/auth/login", json=wrong, **from_ip("192.0.2.7")))
    # The refused attempt was not even checked: no argon2 work, no event.
    assert scalar(app, "SELECT COUNT(*) FROM auth_events") == events
    # Another address is counted apart.
    assert client.post("/auth/login", json=wrong, **from_ip("192.0.2.8")).status_code == 401


@pytest.mark.parametrize("app_config", [LIMITED | {"AUTH_RATELIMIT_LOGIN_ACCOUNT": "2/minute"}])
def test_login_has_a_ceiling_per_account_across_ips(client: FlaskClient) -> None:
    register(client)
    wrong = {"email": " Ada@Example.com ", "password": "wrong password"}
    assert client.post("/auth/login", json=wrong, **from_ip("192.0.2.1")).status_code == 401
    assert client.post("/auth/login", json=wrong, **from_ip("192.0.2.2")).status_code == 401
    assert_rate_limited(client.post("/auth/login", json=wrong, **from_ip("192.0.2.3")))
    other = {"email": "bob@example.com", "password": "wrong password"}
    assert client.post("/auth/login", json=other, **from_ip("192.0.2.3")).status_code == 401


@pytest.mark.parametrize(
    "app_config",
    [
        LIMITED
        | {"AUTH_RATELIMIT_LOGIN_ADDRESS": "2/minute", "AUTH_RATELIMIT_LOGIN_ACCOUNT": "9/minute"}
    ],
)
def test_a_guesser_elsewhere_does_not_lock_the_owner_out(client: FlaskClient) -> None:
    register(client)
    wrong = {"email": "ada@example.com", "password": "wrong password"}
    for attacker in ("203.0.113.1", "203.0.113.2"):
        for _ in range(2):
            assert client.post("/auth/login", json=wrong, **from_ip(attacker)).status_code == 401
        assert_rate_limited(client.post("/auth/login", json=wrong, **from_ip(attacker)))

    right = {"email": "ada@example.com", "password": PASSWORD}
    assert client.post("/auth/login", json=right, **from_ip("192.0.2.50")).status_code == 200


@pytest.mark.parametrize(
    "app_config", [LIMITED | {"AUTH_RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0"}]
)
def test_an_unreachable_rate_limit_store_is_a_503_not_an_open_door(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    events = scalar(app, "SELECT COUNT(*) FROM auth_events")
    response = client.post("/auth/login", json={"email": "ada@example.com", "password": PASSWORD})

    assert response.status_code == 503
    assert response.json["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert "Set-Cookie" not in response.headers
    assert "rate-limit store unavailable" in caplog.text
    assert scalar(app, "SELECT COUNT(*) FROM auth_events") == events


@pytest.mark.parametrize("app_config", [LIMITED | {"AUTH_RATELIMIT_REGISTER": "1/hour"}])
def test_register_is_limited_and_adds_no_user(app: Flask, client: FlaskClient) -> None:
    register(client, "one@example.com")
    response = client.post(
        "/auth/register", json={"email": "two@example.com", "password": PASSWORD}
    )
    assert_rate_limited(response, window=3600)
    assert scalar(app, "SELECT COUNT(*) FROM users") == 1


@pytest.mark.parametrize("app_config", [LIMITED | {"AUTH_RATELIMIT_REFRESH": "1/minute"}])
def test_rate_limited_refresh_keeps_cookies_and_token(app: Flask, client: FlaskClient) -> None:
    register(client)
    login(client)
    https = {"base_url": "https://localhost"}
    assert client.post("/auth/refresh", headers=csrf_header(client), **https).status_code == 200
    cookie = client.get_cookie("refresh_token", path="/auth")
    assert cookie is not None
    assert_rate_limited(client.post("/auth/refresh", headers=csrf_header(client), **https))
    # A transient refusal logs no one out: same cookie, still unspent.
    assert client.get_cookie("refresh_token", path="/auth").value == cookie.value
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens WHERE used_at IS NULL") == 1


@pytest.mark.parametrize("app_config", [LIMITED | {"AUTH_RATELIMIT_PASSWORD": "1/minute"}])
def test_password_change_is_limited_per_user(app: Flask, client: FlaskClient) -> None:
    register(client)
    access = login(client).json["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    body = {"current_password": "wrong password", "new_password": "a new password"}
    assert client.post("/auth/password", json=body, headers=headers).status_code == 403
    hash_before = scalar(app, "SELECT password_hash FROM users")
    assert_rate_limited(client.post("/auth/password", json=body, headers=headers))
    assert scalar(app, "SELECT password_hash FROM users") == hash_before


def test_redis_counts_attempts_for_every_instance(tmp_path: Any) -> None:
    """Two app instances (as two workers or hosts would) share one Redis budget."""
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        if os.environ.get("TEST_REQUIRE_DATABASES") == "1":
            pytest.fail("TEST_REDIS_URL is not set but TEST_REQUIRE_DATABASES=1")
        pytest.skip("TEST_REDIS_URL is not set; Redis rate-limit test skipped")
    config = LIMITED | {"AUTH_RATELIMIT_STORAGE_URI": redis_url, "AUTH_RATELIMIT_LOGIN": "2/minute"}
    instances = [make_app(f"sqlite:///{tmp_path / 'shared.db'}", **config) for _ in range(2)]
    with instances[0].app_context():
        db.create_all()
    ip = f"198.51.100.{secrets.randbelow(250)}-{secrets.token_hex(4)}"  # a fresh counter per run
    wrong = {"email": "nobody@example.com", "password": "wrong password"}
    first, second = (instance.test_client() for instance in instances)
    assert first.post("/auth/login", json=wrong, **from_ip(ip)).status_code == 401
    assert second.post("/auth/login", json=wrong, **from_ip(ip)).status_code == 401
    assert_rate_limited(first.post("/auth/login", json=wrong, **from_ip(ip)))
    assert_rate_limited(second.post("/auth/login", json=wrong, **from_ip(ip)))
    for instance in instances:
        with instance.app_context():
            db.engine.dispose()


class HungRedis:
    """A TCP server that accepts connections and never answers: a Redis stuck mid-outage."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # so that the accepting thread notices `close`
        self.port: int = self._listener.getsockname()[1]
        self.accepted = threading.Event()
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._held.append(connection)
            self.accepted.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def hung_redis() -> Iterator[HungRedis]:
    server = HungRedis()
    try:
        yield server
    finally:
        server.close()


def test_a_hung_rate_limit_store_is_a_fast_503_and_spares_other_routes(
    database_url: str, hung_redis: HungRedis
) -> None:
    """A Redis that never answers costs a login the store's timeouts, not the worker's threads
    (docs/operations.md, Databases; docs/security.md, Threats and defences).
    """
    hung_uri = f"redis://127.0.0.1:{hung_redis.port}/0"
    with (
        app_with_tables(database_url) as unlimited,
        app_with_tables(database_url, **LIMITED, AUTH_RATELIMIT_STORAGE_URI=hung_uri) as limited,
    ):
        # An access token issued by an app with limits off (same secret, same database).
        register(unlimited.test_client())
        access = login(unlimited.test_client()).json["access_token"]
        before = snapshot(limited)

        answers: dict[str, tuple[Any, float]] = {}

        def timed(name: str, method: str, path: str, **kwargs: Any) -> None:
            started = time.monotonic()
            response = limited.test_client().open(path, method=method, **kwargs)
            answers[name] = (response, time.monotonic() - started)

        body = {"email": "ada@example.com", "password": PASSWORD}
        login_thread = threading.Thread(
            target=timed, args=("login", "POST", "/auth/login"), kwargs={"json": body}
        )
        login_thread.start()
        # Side by side: the protected route is asked while the login waits on the store.
        assert hung_redis.accepted.wait(timeout=5)
        timed("hello", "GET", "/api/hello", headers=bearer(access))
        login_thread.join(timeout=30)
        assert not login_thread.is_alive(), "the login is still waiting on the hung store"

        response, login_seconds = answers["login"]
        assert response.status_code == 503
        assert response.json["error"] == "temporarily_unavailable"
        assert response.headers["Retry-After"] == "5"
        assert "Set-Cookie" not in response.headers
        assert login_seconds < 0.5
        hello, hello_seconds = answers["hello"]
        assert hello.status_code == 200
        assert hello_seconds < login_seconds
        assert snapshot(limited) == before


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "redis://127.0.0.1:6379/0",
            {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_timeout": REDIS_READ_TIMEOUT},
        ),
        (
            "rediss://:secret@redis.example:6380/1",
            {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_timeout": REDIS_READ_TIMEOUT},
        ),
        (
            "redis+unix:///run/redis.sock?db=2",
            {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_timeout": REDIS_READ_TIMEOUT},
        ),
        # The operator's own choice in the URI wins.
        (
            "redis://127.0.0.1:6379/0?socket_timeout=2",
            {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT},
        ),
        (
            "redis://127.0.0.1:6379/0?socket_connect_timeout=1&socket_timeout=2",
            {},
        ),
        ("memory://", {}),
    ],
)
def test_redis_stores_get_short_timeouts_unless_the_uri_sets_its_own(
    uri: str, expected: dict[str, float]
) -> None:
    assert storage_options(uri) == expected


def test_a_timeout_in_the_uri_reaches_the_redis_client() -> None:
    redis = pytest.importorskip("redis")
    uri = "redis://127.0.0.1:6379/0?socket_timeout=2"
    client = redis.from_url(uri, **storage_options(uri))
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == 2.0
    assert options["socket_connect_timeout"] == REDIS_CONNECT_TIMEOUT
    client.close()
