"""The per-request hot path: verified tokens are remembered, the session check runs on a raw
pooled connection. Each test fails if a cost removed from it comes back or a check is lost."""

from __future__ import annotations

import base64
import secrets
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import config as service_config
from app import db
from flask_token_auth import auth_required
from flask_token_auth import current_user
from flask_token_auth.errors import InvalidToken
from flask_token_auth.keys import load_key_set
from flask_token_auth.models import AuthSession
from flask_token_auth.session_check import live_session_role
from flask_token_auth.settings import AuthSettings
from flask_token_auth.state import auth_state
from flask_token_auth.tokens import AccessClaims
from flask_token_auth.tokens import AccessTokenVerifier
from flask_token_auth.tokens import issue_access_token
from flask_token_auth.tokens import verify_access_token
from flask_token_auth.users import UserModel
from tests.conftest import app_with_tables
from tests.conftest import make_app
from tests.conftest import SECRET
from tests.conftest import server_database
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import register
from tests.pools import check_pool_of
from tests.pools import idle_check_connections

USERS = UserModel.builtin_users()

SETTINGS = AuthSettings.from_config({"TESTING": True, "SECRET_KEY": SECRET})
KEYS = load_key_set(SETTINGS)
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
INVALID_TOKEN = (401, "invalid_token")
SCHEMA_MISSING = {
    "error": "server_error",
    "error_description": "the server's database is not set up; its operator must migrate it",
}


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    """The reference app on a SQLite file of its own, which a test may break."""
    application = make_app(f"sqlite:///{tmp_path / 'hot.db'}")
    with application.app_context():
        db.create_all()
    yield application
    with application.app_context():
        db.engine.dispose()


def new_token(now: datetime = NOW) -> str:
    session_id = secrets.token_urlsafe(24)
    return issue_access_token(
        keys=KEYS, settings=SETTINGS, user_id=7, role="user", session_id=session_id, now=now
    )


def verifier(cache_size: int = 8) -> AccessTokenVerifier:
    return AccessTokenVerifier(keys=KEYS, settings=SETTINGS, cache_size=cache_size)


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    """The calls to `jwt.<name>` from now on; the real function still runs (a spy, not a mock)."""
    real = getattr(jwt, name)
    calls: list[object] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(f"flask_token_auth.tokens.jwt.{name}", spy)
    return calls


def tamper_signature(token: str) -> str:
    """`token` with a middle character of its signature changed: other bytes, same length."""
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    changed = "B" if signature[middle] == "A" else "A"
    forged = signature[:middle] + changed + signature[middle + 1 :]

    def raw(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    assert raw(forged) != raw(signature)
    return f"{header}.{payload}.{forged}"


def queue_pool(engine: sa.Engine) -> sa.QueuePool:
    assert isinstance(engine.pool, sa.QueuePool)
    return engine.pool


def claims_of(app: Flask, access_token: str) -> AccessClaims:
    state = auth_state(app)
    now = datetime.now(UTC)
    return verify_access_token(access_token, keys=state.keys, settings=state.settings, now=now)


def logged_in(app: Flask) -> tuple[FlaskClient, AccessClaims, str]:
    """A client of a newly registered user, the claims of its access token, and the token."""
    client = app.test_client()
    register(client)
    access_token: str = login(client).json["access_token"]
    return client, claims_of(app, access_token), access_token


def test_a_token_used_again_skips_the_signature_check(
    sqlite_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One signature check for a fresh token, none for its second use; no header re-parse."""
    client, claims, access_token = logged_in(sqlite_app)
    decodes = count_calls(monkeypatch, "decode_complete")
    header_reads = count_calls(monkeypatch, "get_unverified_header")
    hello = {"message": f"hello, user {claims.user_id}"}

    first = client.get("/api/hello", headers=bearer(access_token))
    assert (first.status_code, first.json, len(decodes)) == (200, hello, 1)
    second = client.get("/api/hello", headers=bearer(access_token))
    assert (second.status_code, second.json, len(decodes)) == (200, hello, 1)
    assert header_reads == []


def test_a_cached_token_still_expires() -> None:
    """The lifetime is checked at each use, also when the signature verdict comes from the cache."""
    access = verifier()
    token = new_token()

    assert access.verify(token, now=NOW).user_id == 7
    assert access.signed_claims.cache_info().currsize == 1
    with pytest.raises(InvalidToken, match=r"^the access token has expired$"):
        access.verify(token, now=NOW + SETTINGS.access_token_ttl)
    with pytest.raises(InvalidToken, match=r"^the access token is not valid yet$"):
        access.verify(token, now=NOW - timedelta(seconds=1))
    assert access.signed_claims.cache_info()[:2] == (2, 1)  # hits, misses
    assert access.signed_claims.cache_info().currsize == 1


def test_a_tampered_token_is_refused_after_the_genuine_one_was_cached() -> None:
    """The cache is keyed by the whole token: a changed signature is checked, and refused."""
    access = verifier()
    token = new_token()
    access.verify(token, now=NOW)

    with pytest.raises(InvalidToken, match=r"^the access token is invalid$"):
        access.verify(tamper_signature(token), now=NOW)
    assert access.signed_claims.cache_info().currsize == 1
    assert access.verify(token, now=NOW).user_id == 7


def test_a_tampered_token_is_a_401_after_the_genuine_one_was_used(sqlite_app: Flask) -> None:
    """Over HTTP: the genuine token works, its tampered copy is `invalid_token`, then it works."""
    client, _, access_token = logged_in(sqlite_app)

    assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
    response = client.get("/api/hello", headers=bearer(tamper_signature(access_token)))
    assert (response.status_code, response.json["error"]) == INVALID_TOKEN
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer realm="api", error="invalid_token"'
    )
    assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200


def test_the_cache_is_bounded_and_can_be_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most `cache_size` tokens are kept; with 0 every use checks the signature again."""
    bounded = verifier(cache_size=2)
    for _ in range(5):
        bounded.verify(new_token(), now=NOW)
    assert bounded.signed_claims.cache_info().currsize == 2

    off = verifier(cache_size=0)
    token = new_token()
    decodes = count_calls(monkeypatch, "decode_complete")
    assert off.verify(token, now=NOW) == off.verify(token, now=NOW)
    assert len(decodes) == 2
    assert off.signed_claims.cache_info().currsize == 0


def test_the_cache_size_setting(tmp_path: Path) -> None:
    """AUTH_ACCESS_TOKEN_CACHE_SIZE: below 0 refused by name, 0 accepted, read from the env."""
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    with pytest.raises(RuntimeError, match=r"^AUTH_ACCESS_TOKEN_CACHE_SIZE: .*-1"):
        make_app(url, AUTH_ACCESS_TOKEN_CACHE_SIZE=-1)

    application = make_app(url, AUTH_ACCESS_TOKEN_CACHE_SIZE=0)
    assert auth_state(application).settings.access_token_cache_size == 0
    assert auth_state(application).access_tokens.signed_claims.cache_info().maxsize == 0
    assert SETTINGS.access_token_cache_size == 4096
    environment = {"AUTH_ACCESS_TOKEN_CACHE_SIZE": "0"}
    assert service_config.auth_settings(environment) == {"AUTH_ACCESS_TOKEN_CACHE_SIZE": 0}
    with application.app_context():
        db.engine.dispose()


def test_the_session_check_opens_no_orm_session(app: Flask) -> None:
    """The view runs with no ORM session in the registry: the check used a raw connection.

    The second route proves the probe sees a session once one is used (`current_user`)."""

    @app.get("/probe")
    @auth_required
    def probe() -> dict[str, bool]:
        return {"orm_session": db.session.registry.has()}

    @app.get("/probe-user")
    @auth_required
    def probe_user() -> dict[str, bool]:
        assert current_user.email == "ada@example.com"
        return {"orm_session": db.session.registry.has()}

    client, _, access_token = logged_in(app)

    response = client.get("/probe", headers=bearer(access_token))
    assert (response.status_code, response.json) == (200, {"orm_session": False})
    response = client.get("/probe-user", headers=bearer(access_token))
    assert (response.status_code, response.json) == (200, {"orm_session": True})


def test_live_session_role_on_every_database(app: Flask) -> None:
    """The live role, None for each reason a session is dead, a role change seen at once; on
    PostgreSQL the check's connections (autocommit) stay out of the engine's pool."""
    client, first, _ = logged_in(app)
    bob = register(client, "bob@example.com")["id"]
    second = claims_of(app, login(client, native=True).json["access_token"])
    with app.app_context():
        engine = db.engine
    now = datetime.now(UTC)

    def role(claims: AccessClaims, *, user_id: int = 0, at: datetime = now) -> str | None:
        return live_session_role(
            engine, USERS, session_id=claims.session_id, user_id=user_id or claims.user_id, now=at
        )

    def execute(statement: str, **params: Any) -> None:
        with engine.begin() as connection:
            connection.execute(sa.text(statement), params)

    with engine.connect() as connection:
        expires_at = connection.scalar(
            sa.select(AuthSession.expires_at).where(AuthSession.id == first.session_id)
        )
    assert expires_at is not None

    assert (role(first), role(second)) == ("user", "user")
    assert role(first, user_id=bob) is None
    assert role(first, at=expires_at) is None
    assert role(first, at=expires_at - timedelta(seconds=1)) == "user"
    # A whole second: SQLite compares the text, which must be written with its microseconds.
    whole = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(sa.update(AuthSession).values(expires_at=whole))
    assert role(first, at=whole) is None
    assert role(first, at=whole - timedelta(microseconds=1)) == "user"
    execute("UPDATE auth_sessions SET revoked_at = created_at WHERE id = :id", id=second.session_id)
    assert (role(first), role(second)) == ("user", None)
    execute("UPDATE users SET role = 'admin' WHERE id = :id", id=first.user_id)
    assert role(first) == "admin"
    execute("UPDATE users SET is_active = :active WHERE id = :id", active=False, id=first.user_id)
    assert role(first) is None

    if engine.dialect.name == "postgresql":
        engine.dispose()
        assert role(first) is None
        assert (queue_pool(engine).checkedin(), check_pool_of(engine).pool.checkedin()) == (0, 1)
        pooled = engine.raw_connection()
        try:
            assert pooled.driver_connection.autocommit is False
        finally:
            pooled.close()


def test_a_database_error_in_the_check_is_sqlalchemys_and_discards_the_connection(
    sqlite_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver error becomes SQLAlchemy's, parameters hidden; the connection is closed, not
    given back open, none stays checked out; over HTTP a missing table is the extension's
    `server_error`."""
    client, claims, access_token = logged_in(sqlite_app)
    with sqlite_app.app_context():
        engine = db.engine

    def check() -> str | None:
        return live_session_role(
            engine,
            USERS,
            session_id=claims.session_id,
            user_id=claims.user_id,
            now=datetime.now(UTC),
        )

    assert check() == "user"
    (driver,) = idle_check_connections(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE auth_sessions"))

    with pytest.raises(sa.exc.OperationalError) as caught:
        check()
    assert caught.value.hide_parameters is True
    assert "no such table: auth_sessions" in str(caught.value)
    assert claims.session_id not in str(caught.value)
    checked_out = (queue_pool(engine).checkedout(), check_pool_of(engine).pool.checkedout())
    assert (checked_out, idle_check_connections(engine)) == ((0, 0), [])
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        driver.cursor()

    response = client.get("/api/hello", headers=bearer(access_token))
    assert (response.status_code, response.json) == (500, SCHEMA_MISSING)
    assert "flask db upgrade" in caplog.text
    assert claims.session_id not in caplog.text
    checked_out = (queue_pool(engine).checkedout(), check_pool_of(engine).pool.checkedout())
    assert (checked_out, idle_check_connections(engine)) == ((0, 0), [])


@pytest.fixture
def postgresql_app() -> Iterator[Flask]:
    for url in server_database("postgresql"):
        with app_with_tables(url) as application:
            yield application


class _InterruptedLibpq:
    """A psycopg connection's libpq, interrupted in the middle of the check's query, as a
    gevent timeout or a worker's shutdown would."""

    def __init__(self, pgconn: Any) -> None:
        self._pgconn = pgconn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pgconn, name)

    def exec_prepared(self, *args: object) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_check_keeps_no_connection_and_the_pool_none_in_autocommit(
    postgresql_app: Flask,
) -> None:
    """Interrupted in the middle of a query, the check's connection is closed, not given back
    open; the check's connections, in autocommit, never reach the engine's pool, whose
    transactions stay transactions (a rollback undoes their work)."""
    with postgresql_app.app_context():
        engine = db.engine
    assert (
        live_session_role(engine, USERS, session_id="s" * 32, user_id=1, now=datetime.now(UTC))
        is None
    )
    (driver,) = idle_check_connections(engine)
    assert driver.autocommit is True
    driver.pgconn = _InterruptedLibpq(driver.pgconn)

    with pytest.raises(KeyboardInterrupt):
        live_session_role(engine, USERS, session_id="s" * 32, user_id=1, now=datetime.now(UTC))
    checked_out = (queue_pool(engine).checkedout(), check_pool_of(engine).pool.checkedout())
    assert (idle_check_connections(engine), driver.closed, checked_out) == ([], True, (0, 0))

    with engine.connect() as connection:
        assert connection.connection.dbapi_connection.autocommit is False
        connection.execute(sa.text("CREATE TABLE interrupted_check (x int)"))
        connection.rollback()
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT to_regclass('interrupted_check')")) is None


def test_a_connection_the_server_closed_is_replaced_within_the_check(
    postgresql_app: Flask,
) -> None:
    """What pool_pre_ping does for the pool: a check connection killed by the server (a
    restart, an idle timeout) costs the check one more try on a new connection, not a 503."""
    with postgresql_app.app_context():
        engine = db.engine
    client, claims, access_token = logged_in(postgresql_app)
    assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
    (driver,) = idle_check_connections(engine)
    with engine.connect() as connection:
        killed = connection.scalar(
            sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": driver.info.backend_pid}
        )
    assert killed is True

    response = client.get("/api/hello", headers=bearer(access_token))
    assert (response.status_code, response.json) == (
        200,
        {"message": f"hello, user {claims.user_id}"},
    )
    (replacement,) = idle_check_connections(engine)
    assert (driver.closed, replacement is driver, replacement.closed) == (True, False, False)


def test_the_hosts_own_routes_pay_for_no_hook_of_ours(sqlite_app: Flask) -> None:
    """The extension adds no app-wide hook past the first request (which checks that no host
    route took the auth prefix): JSON for unknown paths under its prefix comes from a route of
    its own, nosniff and no-store from the blueprint and the error responses, as the answers
    show."""
    ours = "flask_token_auth"

    def our_hooks() -> list[str]:
        hooks = [
            *sqlite_app.before_request_funcs.get(None, []),
            *sqlite_app.after_request_funcs.get(None, []),
            *sqlite_app.teardown_request_funcs.get(None, []),
            *sqlite_app.url_value_preprocessors.get(None, []),
        ]
        return [f.__name__ for f in hooks if ours in f.__module__]

    assert our_hooks() == ["check_once"]
    client = sqlite_app.test_client()
    host = client.get("/healthz")
    assert our_hooks() == []
    unknown = client.get("/auth/nowhere")
    refused = client.get("/api/hello")
    host = client.get("/healthz")
    assert (unknown.status_code, unknown.headers["X-Content-Type-Options"]) == (404, "nosniff")
    assert (refused.status_code, refused.headers["X-Content-Type-Options"]) == (401, "nosniff")
    assert (host.status_code, "X-Content-Type-Options" in host.headers) == (200, False)


@pytest.mark.parametrize(
    "respell",
    [
        lambda token: token + "=",  # padding
        lambda token: token[:-2] + "!" + token[-2:],  # a character outside base64url
        lambda token: token.replace(".", "..", 1),  # an empty segment
        lambda token: " " + token,
    ],
)
def test_only_the_compact_form_is_verified_or_remembered(respell: Any) -> None:
    """One token cannot be spelled many ways into the cache (some PyJWT releases skip stray
    characters): anything but unpadded base64url segments is refused before PyJWT sees it."""
    checker, token = verifier(), new_token()
    checker.verify(token, now=NOW)

    with pytest.raises(InvalidToken, match=r"^the access token is malformed$"):
        checker.verify(respell(token), now=NOW)
    assert checker.signed_claims.cache_info().currsize == 1


def test_a_connection_in_use_during_dispose_is_closed_when_given_back(sqlite_app: Flask) -> None:
    """`engine.dispose()` (a failover, new credentials) reaches the check too: its idle
    connections close, and one in use at the time closes when given back, never to be taken or
    left idle again."""
    logged_in(sqlite_app)
    with sqlite_app.app_context():
        engine = db.engine
    pool = check_pool_of(engine)
    in_use, idle = pool.take(), pool.take()
    idle.release()
    assert idle_check_connections(engine) == [idle.driver]

    engine.dispose()
    in_use.release()
    assert idle_check_connections(engine) == []
    for closed in (idle.driver, in_use.driver):
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            closed.cursor()
    fresh = pool.take()
    assert fresh.driver not in (idle.driver, in_use.driver)
    fresh.release()
