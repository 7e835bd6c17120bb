"""Refresh-token rotation, reuse detection, the grace window and concurrency (docs/tokens.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import db
from flask_token_auth import accounts
from flask_token_auth import rotation
from flask_token_auth import sessions
from flask_token_auth.errors import InvalidGrant
from flask_token_auth.models import AuthSession
from flask_token_auth.models import RefreshToken
from flask_token_auth.models import User
from flask_token_auth.rotation import MAX_GRACE_ROTATIONS
from flask_token_auth.state import auth_state
from flask_token_auth.state import ClientInfo
from flask_token_auth.tokens import issue_access_token
from flask_token_auth.tokens import successor_refresh_token
from tests.conftest import app_with_tables
from tests.conftest import make_app
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import CSRF_COOKIE
from tests.helpers import csrf_header
from tests.helpers import event_types
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import refresh_native
from tests.helpers import register
from tests.helpers import rows
from tests.helpers import scalar
from tests.helpers import token_hash

CLIENT = ClientInfo(ip="192.0.2.1", user_agent="pytest")
GRACE = timedelta(seconds=10)
MICRO = timedelta(microseconds=1)
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def token_row(app: Flask, token: str) -> Any:
    """The committed row of a token, with typed (aware UTC) datetimes."""
    with app.app_context(), db.engine.connect() as connection:
        query = sa.select(RefreshToken.__table__).where(
            RefreshToken.token_hash == token_hash(token)
        )
        return connection.execute(query).one()


def session_row(app: Flask, session_id: str) -> Any:
    with app.app_context(), db.engine.connect() as connection:
        query = sa.select(AuthSession.__table__).where(AuthSession.id == session_id)
        return connection.execute(query).one()


def service_login(app: Flask, now: datetime = T0) -> sessions.IssuedTokens:
    """Register and log in through the services, at a chosen time."""
    with app.test_request_context():
        state = auth_state()
        accounts.register(state, email="ada@example.com", password=PASSWORD, client=CLIENT, now=now)
        return sessions.login(
            state,
            credentials={"email": "ada@example.com", "password": PASSWORD},
            client=CLIENT,
            now=now,
        )


def service_rotate(app: Flask, token: str, now: datetime) -> sessions.IssuedTokens:
    with app.app_context():
        try:
            return rotation.rotate_refresh_token(
                auth_state(), presented=token, client=CLIENT, now=now
            )
        finally:
            # What a failing request's teardown does: roll back whatever is uncommitted.
            db.session.rollback()


# --- rotation over HTTP --------------------------------------------------------------------


def test_refresh_rotates_and_marks_the_old_token_used(app: Flask, client: FlaskClient) -> None:
    register(client)
    first = login(client, native=True).json["refresh_token"]
    response = refresh_native(client, first)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    second = response.json["refresh_token"]
    assert second != first
    old, new = token_row(app, first), token_row(app, second)
    assert old.used_at is not None
    assert new.used_at is None
    assert new.parent_id == old.id
    assert new.session_id == old.session_id
    assert refresh_native(client, second).status_code == 200
    assert event_types(app).count("refreshed") == 2


def test_cookie_refresh_rotates_cookie_and_csrf(app: Flask, client: FlaskClient) -> None:
    register(client)
    login(client)
    before = client.get_cookie("refresh_token", path="/auth")
    csrf_before = client.get_cookie(CSRF_COOKIE)
    assert before is not None
    assert csrf_before is not None
    response = client.post(
        "/auth/refresh", headers=csrf_header(client), base_url="https://localhost"
    )
    assert response.status_code == 200
    after = client.get_cookie("refresh_token", path="/auth")
    csrf_after = client.get_cookie(CSRF_COOKIE)
    assert after is not None
    assert csrf_after is not None
    assert after.value != before.value
    assert csrf_after.value != csrf_before.value
    assert token_row(app, before.value).used_at is not None
    # The previous CSRF value no longer works with the new cookie: 403, token unspent.
    stale = client.post(
        "/auth/refresh", headers={"X-CSRF-Token": csrf_before.value}, base_url="https://localhost"
    )
    assert stale.status_code == 403
    assert stale.json == {
        "error": "csrf_failed",
        "error_description": f"the X-CSRF-Token header must equal the {CSRF_COOKIE} cookie",
    }
    assert "Set-Cookie" not in stale.headers
    assert token_row(app, after.value).used_at is None


@pytest.mark.parametrize("app_config", [{"AUTH_REFRESH_REUSE_GRACE": 0}])
def test_reuse_revokes_the_session_and_its_access_tokens(app: Flask, client: FlaskClient) -> None:
    register(client)
    logged_in = login(client, native=True).json
    assert logged_in is not None
    first, access_token = logged_in["refresh_token"], logged_in["access_token"]
    second = refresh_native(client, first).json["refresh_token"]
    third = refresh_native(client, second).json["refresh_token"]
    # `first` was spent outside any grace window: reuse.
    response = refresh_native(client, first)
    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "the refresh token was already used; the session has been revoked",
    }
    session_id = token_row(app, first).session_id
    revoked = session_row(app, session_id)
    assert revoked.revoked_at is not None
    assert revoked.revoked_reason == "refresh_reuse_detected"
    assert event_types(app)[-1] == "refresh_reuse_detected"
    # The live token of the family and the session's access tokens die with it.
    assert refresh_native(client, third).status_code == 401
    me = client.get("/auth/me", headers=bearer(access_token))
    assert me.status_code == 401
    assert me.json["error"] == "invalid_token"


def test_reuse_revocation_is_committed_before_the_401(app: Flask) -> None:
    issued = service_login(app)
    successor = service_rotate(app, issued.refresh_token, T0 + timedelta(seconds=1))
    service_rotate(app, successor.refresh_token, T0 + timedelta(seconds=2))
    with pytest.raises(InvalidGrant):
        service_rotate(app, issued.refresh_token, T0 + timedelta(seconds=1) + GRACE + MICRO)
    # service_rotate rolled the session back, as a failing request would; the revocation stays.
    assert session_row(app, issued.session_id).revoked_reason == "refresh_reuse_detected"
    assert (
        scalar(app, "SELECT COUNT(*) FROM auth_events WHERE type = 'refresh_reuse_detected'") == 1
    )


def test_unknown_and_malformed_refresh_tokens_change_nothing(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    login(client, native=True)
    before = rows(app, "SELECT id, used_at FROM refresh_tokens ORDER BY id")
    for presented in ("0" * 64, "not-a-token", "A" * 64, "0" * 63):
        response = refresh_native(client, presented)
        assert response.status_code == 401
        assert response.json == {
            "error": "invalid_grant",
            "error_description": "the refresh token is invalid",
        }
    assert refresh_native(client, 12345).status_code == 400
    assert rows(app, "SELECT id, used_at FROM refresh_tokens ORDER BY id") == before
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NOT NULL") == 0


# --- the grace window -----------------------------------------------------------------------


def test_replay_at_the_edge_of_the_grace_window_gets_the_same_successor(app: Flask) -> None:
    issued = service_login(app)
    rotated_at = T0 + timedelta(minutes=1)
    first = service_rotate(app, issued.refresh_token, rotated_at)
    replay = service_rotate(app, issued.refresh_token, rotated_at + GRACE)
    assert replay.refresh_token == first.refresh_token
    assert replay.refresh_token == successor_refresh_token(
        issued.refresh_token, secret_key=app.config["SECRET_KEY"].encode()
    )
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2  # no sibling was forked
    assert session_row(app, issued.session_id).revoked_at is None
    # The window runs from the first rotation; the replay did not move it.
    assert token_row(app, issued.refresh_token).used_at == rotated_at


def test_replay_just_past_the_grace_window_is_reuse(app: Flask) -> None:
    issued = service_login(app)
    rotated_at = T0 + timedelta(minutes=1)
    first = service_rotate(app, issued.refresh_token, rotated_at)
    service_rotate(app, issued.refresh_token, rotated_at + timedelta(seconds=5))  # in grace
    with pytest.raises(InvalidGrant, match="already used"):
        service_rotate(app, issued.refresh_token, rotated_at + GRACE + timedelta(microseconds=1))
    assert session_row(app, issued.session_id).revoked_reason == "refresh_reuse_detected"
    with pytest.raises(InvalidGrant, match="session has ended"):
        service_rotate(app, first.refresh_token, rotated_at + GRACE + timedelta(seconds=1))


@pytest.mark.parametrize("rotations", [2, 3, 5, MAX_GRACE_ROTATIONS])
def test_a_replay_in_its_window_gets_the_live_token_however_far_the_chain_moved(
    app: Flask, rotations: int
) -> None:
    """Tabs sharing one cookie jar: the oldest cookie lands after others rotated several times."""
    issued = service_login(app)
    chain = [issued.refresh_token]
    for step in range(rotations):
        chain.append(service_rotate(app, chain[-1], T0 + timedelta(seconds=1 + step)).refresh_token)

    replay = service_rotate(app, issued.refresh_token, T0 + GRACE)

    assert replay.refresh_token == chain[-1]
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == rotations + 1  # no fork
    assert session_row(app, issued.session_id).revoked_at is None
    assert token_row(app, chain[-1]).used_at is None  # still the live token


def test_a_replay_just_outside_its_own_window_is_reuse_however_fresh_the_chain(
    app: Flask,
) -> None:
    issued = service_login(app)
    second = service_rotate(app, issued.refresh_token, T0 + timedelta(seconds=1))
    service_rotate(app, second.refresh_token, T0 + GRACE)  # the chain moved just now

    with pytest.raises(InvalidGrant, match="already used"):
        service_rotate(app, issued.refresh_token, T0 + timedelta(seconds=1) + GRACE + MICRO)

    assert session_row(app, issued.session_id).revoked_reason == "refresh_reuse_detected"


def test_a_chain_longer_than_the_walk_is_reuse(app: Flask) -> None:
    issued = service_login(app)
    token = issued.refresh_token
    for step in range(MAX_GRACE_ROTATIONS + 1):
        token = service_rotate(app, token, T0 + timedelta(milliseconds=10 * step)).refresh_token

    with pytest.raises(InvalidGrant, match="already used"):
        service_rotate(app, issued.refresh_token, T0 + timedelta(seconds=1))


@pytest.mark.parametrize("app_config", [{"AUTH_REFRESH_REUSE_GRACE": 0}])
def test_without_grace_any_replay_is_reuse(app: Flask) -> None:
    issued = service_login(app)
    service_rotate(app, issued.refresh_token, T0 + timedelta(seconds=1))
    with pytest.raises(InvalidGrant, match="already used"):
        service_rotate(app, issued.refresh_token, T0 + timedelta(seconds=1))
    assert session_row(app, issued.session_id).revoked_reason == "refresh_reuse_detected"


def test_grace_replay_over_http_keeps_both_tabs_logged_in(app: Flask, client: FlaskClient) -> None:
    register(client)
    login(client)
    refresh_cookie = client.get_cookie("refresh_token", path="/auth")
    assert refresh_cookie is not None
    old_token, old_csrf = refresh_cookie.value, csrf_header(client)
    first = client.post("/auth/refresh", headers=old_csrf, base_url="https://localhost")
    assert first.status_code == 200
    new_token = client.get_cookie("refresh_token", path="/auth").value
    # A second tab still holding the old cookie and CSRF value, a moment later.
    other_tab = app.test_client()
    other_tab.set_cookie("refresh_token", old_token, domain="localhost", path="/auth")
    other_tab.set_cookie(CSRF_COOKIE, old_csrf["X-CSRF-Token"], domain="localhost")
    second = other_tab.post("/auth/refresh", headers=old_csrf, base_url="https://localhost")
    assert second.status_code == 200
    assert other_tab.get_cookie("refresh_token", path="/auth").value == new_token
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NOT NULL") == 0


# --- lifetimes ------------------------------------------------------------------------------


def test_expired_refresh_token_is_refused_and_left_unspent(app: Flask) -> None:
    issued = service_login(app)
    with pytest.raises(InvalidGrant, match="has expired"):
        service_rotate(app, issued.refresh_token, T0 + timedelta(days=7))
    assert token_row(app, issued.refresh_token).used_at is None
    assert session_row(app, issued.session_id).revoked_at is None


@pytest.mark.parametrize(
    "app_config",
    [{"AUTH_SESSION_TTL": timedelta(days=1), "AUTH_REFRESH_TOKEN_TTL": timedelta(hours=20)}],
)
def test_rotation_is_capped_by_the_absolute_session_lifetime(app: Flask) -> None:
    issued = service_login(app)
    late = service_rotate(app, issued.refresh_token, T0 + timedelta(hours=19))
    # Sliding would give 19 h + 20 h; the session ends at 24 h.
    assert late.refresh_expires_at == T0 + timedelta(days=1)
    assert token_row(app, late.refresh_token).expires_at == T0 + timedelta(days=1)
    with pytest.raises(InvalidGrant, match="session has ended"):
        service_rotate(app, late.refresh_token, T0 + timedelta(days=1))
    assert token_row(app, late.refresh_token).used_at is None


def test_expired_and_tampered_access_tokens_are_refused(app: Flask, client: FlaskClient) -> None:
    register(client)
    access_token = login(client).json["access_token"]
    with app.app_context():
        state = auth_state()
        claims_of_live_session = client.get("/auth/me", headers=bearer(access_token)).json
        assert claims_of_live_session is not None
        expired = issue_access_token(
            keys=state.keys,
            settings=state.settings,
            user_id=claims_of_live_session["user"]["id"],
            role="user",
            session_id=claims_of_live_session["session_id"],
            now=datetime.now(UTC) - timedelta(minutes=16),
        )
    response = client.get("/auth/me", headers=bearer(expired))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="invalid_token", '
        'error_description="the access token has expired"'
    )
    header, payload, signature = access_token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    tampered = client.get("/auth/me", headers=bearer(f"{header}.{flipped}.{signature}"))
    assert tampered.status_code == 401
    assert tampered.json["error"] == "invalid_token"


# --- concurrency ----------------------------------------------------------------------------

THREADS = 12


def concurrent_refreshes(app: Flask, token: str) -> list[Any]:
    barrier = threading.Barrier(THREADS)
    responses: list[Any] = [None] * THREADS

    def refresh(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        responses[index] = refresh_native(client, token)

    threads = [threading.Thread(target=refresh, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def test_concurrent_refreshes_rotate_exactly_once(app: Flask, client: FlaskClient) -> None:
    register(client)
    token = login(client, native=True).json["refresh_token"]
    responses = concurrent_refreshes(app, token)
    assert [r.status_code for r in responses] == [200] * THREADS
    # Every request inside the grace window gets the one successor: no fork of the chain.
    assert len({r.json["refresh_token"] for r in responses}) == 1
    parent_id = token_row(app, token).id
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens WHERE parent_id = :p", p=parent_id) == 1
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NOT NULL") == 0


@pytest.mark.parametrize("app_config", [{"AUTH_REFRESH_REUSE_GRACE": 0}])
def test_concurrent_refreshes_without_grace_have_one_winner(
    app: Flask, client: FlaskClient
) -> None:
    register(client)
    token = login(client, native=True).json["refresh_token"]
    statuses = sorted(r.status_code for r in concurrent_refreshes(app, token))
    assert statuses == [200] + [401] * (THREADS - 1)
    parent_id = token_row(app, token).id
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens WHERE parent_id = :p", p=parent_id) == 1


# --- transient faults keep the client's cookies ---------------------------------------------


def test_database_outage_is_503_and_keeps_cookies(app: Flask, client: FlaskClient) -> None:
    register(client)
    login(client)
    # A real server that is not there: connection refused, no mock.
    down = make_app("postgresql://postgres@127.0.0.1:9/none")
    down_client = down.test_client()
    cookie = client.get_cookie("refresh_token", path="/auth")
    assert cookie is not None
    down_client.set_cookie("refresh_token", cookie.value, domain="localhost", path="/auth")
    down_client.set_cookie(CSRF_COOKIE, csrf_header(client)["X-CSRF-Token"], domain="localhost")
    response = down_client.post(
        "/auth/refresh", headers=csrf_header(client), base_url="https://localhost"
    )
    assert response.status_code == 503
    assert response.json == {
        "error": "temporarily_unavailable",
        "error_description": "the database is unavailable; retry shortly",
    }
    assert response.headers["Retry-After"] == "5"
    assert "Set-Cookie" not in response.headers
    assert token_row(app, cookie.value).used_at is None


@pytest.fixture
def repeatable_read_app(database_url: str) -> Iterator[Flask]:
    """The app on an engine left at REPEATABLE READ, as a host app's own engine may be."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no REPEATABLE READ level; it serialises writers")
    options = {"isolation_level": "REPEATABLE READ"}
    with app_with_tables(database_url, SQLALCHEMY_ENGINE_OPTIONS=options) as application:
        yield application


def test_concurrent_refreshes_rotate_once_under_repeatable_read(repeatable_read_app: Flask) -> None:
    client = repeatable_read_app.test_client()
    register(client)
    token = login(client, native=True).json["refresh_token"]
    responses = concurrent_refreshes(repeatable_read_app, token)
    assert [r.status_code for r in responses] == [200] * THREADS
    assert len({r.json["refresh_token"] for r in responses}) == 1
    assert scalar(repeatable_read_app, "SELECT COUNT(*) FROM refresh_tokens") == 2


def test_grace_replay_in_an_already_open_repeatable_read_transaction(
    repeatable_read_app: Flask,
) -> None:
    """A host that queried before the refresh: the replay must still see the successor."""
    issued = service_login(repeatable_read_app)
    first = service_rotate(repeatable_read_app, issued.refresh_token, T0 + timedelta(seconds=1))
    with repeatable_read_app.app_context():
        db_session = db.session
        # The snapshot is taken by this read, before the rotation below commits.
        db_session.execute(sa.select(User.id)).all()
        state = auth_state()
        with repeatable_read_app.app_context():  # a concurrent request rotates meanwhile
            second = rotation.rotate_refresh_token(
                state, presented=first.refresh_token, client=CLIENT, now=T0 + timedelta(seconds=2)
            )
        replay_at = T0 + timedelta(seconds=3)
        try:
            replay = rotation.rotate_refresh_token(
                state, presented=first.refresh_token, client=CLIENT, now=replay_at
            )
        except sa.exc.OperationalError:
            # PostgreSQL refuses the stale UPDATE (serialization failure): a 503 that keeps
            # the cookies; the client's retry, in a new transaction, is then in grace.
            assert db.engine.dialect.name == "postgresql"
            db_session.rollback()
            replay = rotation.rotate_refresh_token(
                state, presented=first.refresh_token, client=CLIENT, now=replay_at
            )
        assert replay.refresh_token == second.refresh_token
    assert session_row(repeatable_read_app, issued.session_id).revoked_at is None


def test_a_refresh_signs_its_access_token_after_the_commit(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No lock is held while the access token is signed (on SQLite, the whole database's):
    when it is, another connection already sees the presented token spent."""
    register(client)
    token = login(client, native=True).json["refresh_token"]
    spent_when_signed: list[bool] = []
    sign = issue_access_token

    def spy(**claims: Any) -> str:
        spent_when_signed.append(token_row(app, token).used_at is not None)
        return sign(**claims)

    monkeypatch.setattr(sessions, "issue_access_token", spy)
    response = refresh_native(client, token)

    assert response.status_code == 200
    assert spent_when_signed == [True]


@pytest.mark.parametrize("engine_level", ["READ COMMITTED", "REPEATABLE READ"])
def test_a_refresh_sets_the_isolation_level_only_on_an_engine_at_another(
    database_url: str, engine_level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an engine at READ COMMITTED (`engine_options()`), a rotation adds no statement to set
    the level and restore it (four round trips on MariaDB); on another, it runs at READ
    COMMITTED and the connection goes back to the pool at the engine's level."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no isolation levels to set; it serialises writers")
    options = {"isolation_level": engine_level}
    with app_with_tables(database_url, SQLALCHEMY_ENGINE_OPTIONS=options) as application:
        client = application.test_client()
        register(client)
        token = login(client, native=True).json["refresh_token"]
        with application.app_context():
            dialect = db.engine.dialect
        levels: list[str] = []
        set_isolation_level = dialect.set_isolation_level

        def spy(dbapi_connection: Any, level: Any) -> None:
            levels.append(level)
            set_isolation_level(dbapi_connection, level)

        monkeypatch.setattr(dialect, "set_isolation_level", spy)
        response = client.post("/auth/refresh", json={"refresh_token": token}, headers=NATIVE)

    assert response.status_code == 200
    expected = [] if engine_level == "READ COMMITTED" else ["READ COMMITTED", engine_level]
    assert levels == expected


# --- changing the secret -------------------------------------------------------------------

NEW_SECRET = "new-secret-" + "y" * 40


def test_a_secret_change_with_fallbacks_keeps_everyone_logged_in(
    app: Flask, client: FlaskClient, database_url: str
) -> None:
    register(client)
    login(client)
    access_token = client.post(
        "/auth/refresh", headers=csrf_header(client), base_url="https://localhost"
    ).json["access_token"]
    old_cookie = client.get_cookie("refresh_token", path="/auth")
    old_csrf = csrf_header(client)
    assert old_cookie is not None
    rotated = make_app(database_url, SECRET_KEY=NEW_SECRET, SECRET_KEY_FALLBACKS=[SECRET])
    after = rotated.test_client()
    after.set_cookie("refresh_token", old_cookie.value, domain="localhost", path="/auth")
    after.set_cookie(CSRF_COOKIE, old_csrf["X-CSRF-Token"], domain="localhost")
    # The old access token verifies by its kid; the old CSRF value binds under the fallback.
    assert after.get("/auth/me", headers=bearer(access_token)).status_code == 200
    response = after.post("/auth/refresh", headers=old_csrf, base_url="https://localhost")
    assert response.status_code == 200
    assert after.get_cookie("refresh_token", path="/auth").value != old_cookie.value
    with rotated.app_context():
        db.engine.dispose()


def test_a_grace_replay_across_a_secret_change_gets_the_same_successor(
    app: Flask, database_url: str
) -> None:
    issued = service_login(app)
    first = service_rotate(app, issued.refresh_token, T0 + timedelta(seconds=1))
    rotated = make_app(database_url, SECRET_KEY=NEW_SECRET, SECRET_KEY_FALLBACKS=[SECRET])
    replay = service_rotate(rotated, issued.refresh_token, T0 + timedelta(seconds=2))
    assert replay.refresh_token == first.refresh_token
    with rotated.app_context():
        db.engine.dispose()


def test_a_secret_change_without_fallbacks_refuses_the_old_values(
    app: Flask, client: FlaskClient, database_url: str
) -> None:
    register(client)
    access_token = login(client).json["access_token"]
    rotated = make_app(database_url, SECRET_KEY=NEW_SECRET)
    after = rotated.test_client()
    response = after.get("/auth/me", headers=bearer(access_token))
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    with rotated.app_context():
        db.engine.dispose()


def test_login_and_refresh_read_nothing_after_their_commit(app: Flask, client: FlaskClient) -> None:
    """The rows a commit expires are not read again (a query each, measured on PostgreSQL);
    a refresh sends exactly its statements and reads only the columns it uses."""
    register(client)
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0].upper())

    def committed(connection: Any) -> None:
        statements.append("COMMIT")

    columns: list[int] = []

    def count_columns(connection: Any, cursor: Any, *args: Any) -> None:
        columns.append(len(cursor.description or ()))

    sa.event.listen(engine, "before_cursor_execute", record)
    sa.event.listen(engine, "after_cursor_execute", count_columns)
    sa.event.listen(engine, "commit", committed)
    try:
        token = login(client, native=True).json["refresh_token"]
        assert statements[-1] == "COMMIT"
        statements.clear()
        columns.clear()
        assert refresh_native(client, token).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
        sa.event.remove(engine, "after_cursor_execute", count_columns)
        sa.event.remove(engine, "commit", committed)
    # Find the token, lock its user (no row locks on SQLite), touch the session, spend the
    # token, insert its successor and an event: no attribute loaded on its own, nothing after.
    lock = [] if engine.dialect.name == "sqlite" else ["SELECT"]
    assert statements == ["SELECT", *lock, "UPDATE", "UPDATE", "INSERT", "INSERT", "COMMIT"]
    # The lookup reads the 8 columns a rotation uses, not its three rows' 24.
    assert columns[0] == 8
