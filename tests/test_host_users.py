"""A host that keeps its own users (README, "Already have users?"): its `User` model and table,
its hashes, its keys (integer, UUID, string); the extension's tables tied to them, logins by the
host's fields, and the Python API host code starts and ends sessions with."""

from __future__ import annotations

import base64
import hashlib
import statistics
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import argon2
import pytest
import sqlalchemy as sa
from flask import Flask
from flask import jsonify
from flask import request
from flask import Response
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from flask_token_auth import auth_required
from flask_token_auth import AuthManager
from flask_token_auth import configure_sqlite
from flask_token_auth import current_claims
from flask_token_auth import current_user
from flask_token_auth import engine_options
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import claims_of
from tests.helpers import CSRF_COOKIE
from tests.helpers import NATIVE
from tests.helpers import set_cookies

PASSWORD = "correct horse battery"
KEY_KINDS = ("integer", "uuid", "string")
OUR_TABLES = {"auth_sessions", "refresh_tokens", "auth_events"}


def host_model(db: SQLAlchemy, key_kind: str, *, check_password: bool = True) -> type[Any]:
    """The host's own `User`, in table `user`, werkzeug hashes, its primary key of `key_kind`."""
    key: Any = {
        "integer": mapped_column(sa.Integer, primary_key=True),
        "uuid": mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4),
        "string": mapped_column(sa.String(40), primary_key=True),
    }[key_kind]

    class User(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "user"
        id: Mapped[Any] = key
        username: Mapped[str] = mapped_column(sa.String(64), unique=True)
        email: Mapped[str] = mapped_column(sa.String(120), unique=True)
        password_hash: Mapped[str | None] = mapped_column(sa.String(256))
        is_active: Mapped[bool] = mapped_column(default=True)
        role: Mapped[str | None] = mapped_column(sa.String(32))

    if check_password:
        User.check_password = lambda self, password: check_password_hash(
            self.password_hash, password
        )
    return User


@pytest.fixture(params=KEY_KINDS)
def key_kind(request: pytest.FixtureRequest, database_url: str) -> str:
    kind: str = request.param
    if kind == "uuid" and not database_url.startswith("postgresql"):
        pytest.skip("UUID keys are tested on PostgreSQL, their native type")
    if kind == "string" and database_url.startswith("postgresql"):
        pytest.skip("string keys are tested on SQLite and MariaDB")
    return kind


def configured_app(
    db: SQLAlchemy, api_auth: AuthManager, database_url: str, **config: Any
) -> Flask:
    """A bare Flask app on `database_url`, with `db` and `api_auth` set up as a host does."""
    app = Flask("host")
    app.config.update(
        SECRET_KEY=SECRET,
        TESTING=True,
        AUTH_ARGON2_PROFILE="test",
        AUTH_COOKIE_SECURE=True,
        AUTH_RATELIMIT_ENABLED=False,
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
        **config,
    )
    db.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine)
    api_auth.init_app(app)
    return app


def app_with_tables(db: SQLAlchemy, api_auth: AuthManager, database_url: str) -> Flask:
    """`configured_app` with `db`'s tables made anew (the reference service's auth tables,
    left by other modules, dropped first)."""
    app = configured_app(db, api_auth, database_url)
    with app.app_context():
        db.drop_all()
        db.create_all()
    return app


class Host:
    """A bare Flask app with its own users, its routes, and the extension as `api_auth`."""

    def __init__(
        self,
        database_url: str,
        key_kind: str,
        *,
        check_password: bool = True,
        login_fields: tuple[str, ...] = ("username", "email"),
        **config: Any,
    ) -> None:
        self.db = db = SQLAlchemy()
        self.User = host_model(db, key_kind, check_password=check_password)
        self.key_kind = key_kind
        self.api_auth = AuthManager(db=db, user_model="User", login_fields=login_fields)
        self.app = configured_app(db, self.api_auth, database_url, **config)
        self.routes()

    def routes(self) -> None:
        app, api_auth, User = self.app, self.api_auth, self.User

        @app.get("/profile")
        @auth_required
        def profile() -> Any:
            assert isinstance(current_user._get_current_object(), User)
            return {"username": current_user.username, "user_id": str(current_claims.user_id)}

        @app.post("/oauth/callback")
        def oauth_callback() -> Response:
            user = self.db.session.scalar(sa.select(User).filter_by(username=request.args["u"]))
            return api_auth.login_response(user)

        @app.post("/reset-password")
        def reset_password() -> Any:
            user = self.db.session.scalar(sa.select(User).filter_by(username=request.args["u"]))
            user.password_hash = generate_password_hash(request.args["p"])
            self.db.session.commit()
            return jsonify(revoked=api_auth.revoke_sessions(user, reason="password_reset"))

    def add_user(self, username: str, *, password_hash: str | None = None, **columns: Any) -> Any:
        """A user created by the host's own code; its key."""
        with self.app.app_context():
            user = self.User(
                username=username,
                email=f"{username.title()}@Example.com",
                password_hash=password_hash or generate_password_hash(PASSWORD),
                **columns,
            )
            if self.key_kind == "string":
                user.id = f"user-{username}"
            self.db.session.add(user)
            self.db.session.commit()
            return user.id

    def user_row(self, username: str) -> Any:
        with self.app.app_context(), self.db.engine.connect() as connection:
            table = self.User.__table__
            return connection.execute(sa.select(table).where(table.c.username == username)).one()

    def count(self, table: str) -> int:
        with self.app.app_context(), self.db.engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())  # noqa: S608


@pytest.fixture
def make_host(database_url: str) -> Iterator[Callable[..., Host]]:
    """Hosts on the database of `database_url`, their tables dropped afterwards."""
    made: list[Host] = []

    def make(key_kind: str = "integer", **options: Any) -> Host:
        host = Host(database_url, key_kind, **options)
        with host.app.app_context():
            host.db.drop_all()  # the reference service's auth tables, left by other modules
            host.db.create_all()
        made.append(host)
        return host

    yield make
    for host in made:
        with host.app.app_context():
            host.db.drop_all()
            host.db.engine.dispose()


@pytest.fixture
def host(make_host: Callable[..., Host], key_kind: str) -> Host:
    return make_host(key_kind)


def log_in(client: FlaskClient, field: str, value: str, password: str = PASSWORD) -> Any:
    return client.post("/auth/login", json={field: value, "password": password}, headers=NATIVE)


# --- tables ---------------------------------------------------------------------------------


def test_our_tables_take_the_hosts_key_type_and_refer_to_its_table(host: Host) -> None:
    """No `users` table of ours: `user_id` of the host's key type, tied to its `user` table."""
    assert set(host.db.metadata.tables) == OUR_TABLES | {"user"}
    with host.app.app_context():
        inspector = sa.inspect(host.db.engine)
        assert OUR_TABLES | {"user"} <= set(inspector.get_table_names())
        dialect = host.db.engine.dialect
        key_type = type(host.User.__table__.c.id.type.dialect_impl(dialect))
        for table in ("auth_sessions", "refresh_tokens"):
            (foreign_key,) = [
                fk for fk in inspector.get_foreign_keys(table) if fk["referred_table"] == "user"
            ]
            assert foreign_key["constrained_columns"] == ["user_id"]
            assert foreign_key["options"]["ondelete"].upper() == "CASCADE"
        for table in OUR_TABLES:
            column = host.db.metadata.tables[table].c.user_id
            assert type(column.type.dialect_impl(dialect)) is key_type


# --- login ----------------------------------------------------------------------------------


def test_existing_users_log_in_by_username_or_email_and_the_hash_is_never_rewritten(
    host: Host,
) -> None:
    key = host.add_user("susan")
    before = host.user_row("susan")
    client = host.app.test_client()
    for field, value in (
        ("username", "susan"),
        ("email", "susan@example.com"),
        ("email", " SUSAN@example.COM"),
    ):
        response = log_in(client, field, value)
        assert response.status_code == 200, response.json
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json
        assert body["user"] == {
            "id": key if host.key_kind != "uuid" else str(key),
            "role": "user",
            "username": "susan",
            "email": "Susan@Example.com",
        }
        assert claims_of(body["access_token"])["sub"] == str(key)
        profile = client.get("/profile", headers=bearer(body["access_token"]))
        assert profile.json == {"username": "susan", "user_id": str(key)}
        me = client.get("/auth/me", headers=bearer(body["access_token"]))
        assert me.json["user"]["username"] == "susan"
        refreshed = client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.json
    assert host.user_row("susan") == before  # the host's hash, exactly as it wrote it
    assert host.count("auth_sessions") == 3


def test_a_wrong_password_and_an_unknown_login_are_one_answer_and_change_nothing(
    host: Host,
) -> None:
    host.add_user("susan")
    client = host.app.test_client()
    answers = [
        log_in(client, "username", "susan", "wrong password"),
        log_in(client, "username", "nobody"),
        log_in(client, "email", "nobody@example.com"),
    ]
    for response in answers:
        assert (response.status_code, response.json) == (
            401,
            {
                "error": "invalid_grant",
                "error_description": "invalid username or email or password",
            },
        )
    assert host.count("auth_sessions") == 0
    assert host.count("refresh_tokens") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"username": "susan", "email": "susan@example.com", "password": PASSWORD},
        {"username": 7, "password": PASSWORD},
        {"username": "x" * 321, "password": PASSWORD},
        {"username": "susan"},
        {"login": "susan", "password": PASSWORD},
    ],
)
def test_a_login_that_names_no_single_field_is_a_400(host: Host, body: dict[str, Any]) -> None:
    host.add_user("susan")
    response = host.app.test_client().post("/auth/login", json=body)
    assert (response.status_code, response.json["error"]) == (400, "invalid_request")
    assert host.count("auth_sessions") == 0
    assert host.count("auth_events") == 0


def test_routes_and_commands_the_host_owns_are_off(host: Host) -> None:
    host.add_user("susan")
    client = host.app.test_client()
    response = client.post("/auth/register", json={"email": "a@example.com", "password": PASSWORD})
    assert (response.status_code, response.json["error"]) == (404, "not_found")
    assert "off" in response.json["error_description"]
    access_token = log_in(client, "username", "susan").json["access_token"]
    response = client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long one"},
        headers=bearer(access_token),
    )
    assert (response.status_code, response.json["error"]) == (404, "not_found")
    runner = host.app.test_cli_runner()
    result = runner.invoke(args=["auth", "create-user", "a@example.com"], input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert "create-user is off: this app keeps its own users" in result.output
    assert host.count("user") == 1


def test_the_cli_finds_host_users_by_any_login_field(host: Host) -> None:
    host.add_user("susan")
    client = host.app.test_client()
    log_in(client, "username", "susan")
    runner = host.app.test_cli_runner()
    listed = runner.invoke(args=["auth", "sessions", "susan@example.com"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.endswith("1 live sessions\n")
    revoked = runner.invoke(args=["auth", "revoke", "susan"])
    assert (revoked.exit_code, revoked.output) == (0, "revoked 1 sessions of susan\n")


# --- what the host's model says -------------------------------------------------------------


def test_a_user_the_host_deletes_can_use_no_token(host: Host) -> None:
    host.add_user("susan")
    client = host.app.test_client()
    body = log_in(client, "username", "susan").json
    with host.app.app_context():
        host.db.session.execute(sa.delete(host.User).where(host.User.username == "susan"))
        host.db.session.commit()
    response = client.get("/profile", headers=bearer(body["access_token"]))
    assert (response.status_code, response.json["error"]) == (401, "invalid_token")
    response = client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert (response.status_code, response.json["error"]) == (401, "invalid_grant")


def test_an_inactive_user_cannot_log_in_and_a_deactivation_applies_at_once(host: Host) -> None:
    host.add_user("susan")
    host.add_user("bob", is_active=False)
    client = host.app.test_client()
    assert log_in(client, "username", "bob").status_code == 401
    body = log_in(client, "username", "susan").json
    with host.app.app_context():
        host.db.session.execute(sa.update(host.User).values(is_active=False))
        host.db.session.commit()
    assert client.get("/profile", headers=bearer(body["access_token"])).status_code == 401
    response = client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert response.status_code == 401


def test_the_role_column_applies_at_once(make_host: Callable[..., Host]) -> None:
    host = make_host("integer")

    @host.app.get("/admin")
    @auth_required(roles=["admin"])
    def admin() -> Any:
        return {"role": current_claims.role}

    host.add_user("susan", role="admin")
    client = host.app.test_client()
    access_token = log_in(client, "username", "susan").json["access_token"]
    assert client.get("/admin", headers=bearer(access_token)).json == {"role": "admin"}
    with host.app.app_context():
        host.db.session.execute(sa.update(host.User).values(role=None))
        host.db.session.commit()
    assert client.get("/admin", headers=bearer(access_token)).status_code == 403


def test_a_python_is_active_property_is_honoured_at_login_and_refresh(
    make_host: Callable[..., Host], database_url: str
) -> None:
    """As Flask-Login's `UserMixin.is_active`: not a column, so read from the instance."""
    db = SQLAlchemy()

    class Member(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "member"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(sa.String(120))
        password_hash: Mapped[str] = mapped_column(sa.String(256))
        banned: Mapped[bool] = mapped_column(default=False)

        @property
        def is_active(self) -> bool:
            return not self.banned

        def check_password(self, password: str) -> bool:
            return check_password_hash(self.password_hash, password)

    app = app_with_tables(
        db, AuthManager(db=db, user_model=Member, login_fields=("email",)), database_url
    )
    with app.app_context():
        db.session.add_all(
            [
                Member(email="ok@example.com", password_hash=generate_password_hash(PASSWORD)),
                Member(
                    email="no@example.com",
                    password_hash=generate_password_hash(PASSWORD),
                    banned=True,
                ),
            ]
        )
        db.session.commit()
    try:
        client = app.test_client()
        assert log_in(client, "email", "no@example.com").status_code == 401
        body = log_in(client, "email", "ok@example.com").json
        assert body["user"] == {"id": 1, "role": "user", "email": "ok@example.com"}
        with app.app_context():
            db.session.execute(sa.update(Member).values(banned=True))
            db.session.commit()
        response = client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert (response.status_code, response.json["error"]) == (401, "invalid_grant")
    finally:
        with app.app_context():
            db.drop_all()
            db.engine.dispose()


# --- the Python API -------------------------------------------------------------------------


def test_start_session_gives_tokens_that_work_as_a_logins(host: Host) -> None:
    key = host.add_user("susan")
    with host.app.test_request_context():
        user = host.db.session.get(host.User, key)
        issued = host.api_auth.start_session(user)
        listed = host.api_auth.sessions(user)
    assert [entry["id"] for entry in listed] == [issued.session_id]
    assert listed[0]["current"] is False
    client = host.app.test_client()
    profile = client.get("/profile", headers=bearer(issued.access_token))
    assert profile.json["username"] == "susan"
    refreshed = client.post("/auth/refresh", json={"refresh_token": issued.refresh_token})
    assert refreshed.status_code == 200
    with host.app.app_context(), host.db.engine.connect() as connection:
        events = connection.execute(sa.text("SELECT type, detail FROM auth_events ORDER BY id"))
        assert [row[0] for row in events] == ["login_succeeded", "refreshed"]


def test_login_response_answers_as_the_login_route_with_the_origin_check(host: Host) -> None:
    host.add_user("susan")
    client = host.app.test_client()
    browser = client.post("/oauth/callback?u=susan")
    assert browser.status_code == 200
    assert browser.headers["Cache-Control"] == "no-store"
    assert browser.headers["X-Content-Type-Options"] == "nosniff"
    assert {"refresh_token", CSRF_COOKIE} <= set(set_cookies(browser))
    assert browser.json["user"]["username"] == "susan"
    assert set(browser.json or {}) == {
        "access_token",
        "token_type",
        "expires_in",
        "csrf_token",
        "user",
    }
    native = client.post("/oauth/callback?u=susan", headers=NATIVE)
    assert set(native.json or {}) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "user",
    }
    foreign = client.post("/oauth/callback?u=susan", headers={"Origin": "https://evil.example"})
    assert (foreign.status_code, foreign.json["error"]) == (403, "csrf_failed")
    assert host.count("auth_sessions") == 2


def test_a_host_password_reset_with_revoke_sessions_ends_every_session(host: Host) -> None:
    host.add_user("susan")
    client = host.app.test_client()
    first = log_in(client, "username", "susan").json
    second = log_in(client, "email", "susan@example.com").json
    response = client.post("/reset-password?u=susan&p=a+new+long+password")
    assert response.json == {"revoked": 2}
    for body in (first, second):
        assert client.get("/profile", headers=bearer(body["access_token"])).status_code == 401
        refreshed = client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert refreshed.status_code == 401
    assert log_in(client, "username", "susan").status_code == 401
    assert log_in(client, "username", "susan", "a new long password").status_code == 200
    with host.app.app_context(), host.db.engine.connect() as connection:
        reasons = connection.execute(
            sa.text(
                "SELECT DISTINCT revoked_reason FROM auth_sessions WHERE revoked_at IS NOT NULL"
            )
        )
        assert [row[0] for row in reasons] == ["password_reset"]


def test_a_password_changed_while_a_login_is_in_flight_fails_that_login(
    make_host: Callable[..., Host], key_kind: str
) -> None:
    """The host's reset commits between the login's password check and its commit: the login
    reads the hash again under a lock and fails, leaving no session."""
    host = make_host(key_kind)
    host.add_user("susan")
    engine_app = host.app

    def check_then_reset(self: Any, password: str) -> bool:
        matches = check_password_hash(self.password_hash, password)
        with engine_app.app_context(), host.db.engine.begin() as connection:
            connection.execute(
                sa.update(host.User.__table__).values(
                    password_hash=generate_password_hash("new one!")
                )
            )
        return matches

    host.User.check_password = check_then_reset
    response = log_in(host.app.test_client(), "username", "susan")
    assert (response.status_code, response.json["error"]) == (401, "invalid_grant")
    assert host.count("auth_sessions") == 0


def test_the_python_api_refuses_what_is_not_a_user(host: Host) -> None:
    with host.app.test_request_context(), pytest.raises(TypeError):
        host.api_auth.start_session(object())
    with host.app.test_request_context(), pytest.raises(ValueError, match="reason"):
        host.api_auth.revoke_sessions(host.User(), reason="not an identifier")


# --- out of the host's way -------------------------------------------------------------------


def test_a_host_route_under_the_prefix_is_refused_at_init_or_first_request(
    database_url: str,
) -> None:
    db = SQLAlchemy()
    api_auth = AuthManager(db=db)
    app = Flask("crowded")
    app.config.update(SECRET_KEY=SECRET, TESTING=True, SQLALCHEMY_DATABASE_URI=database_url)
    app.add_url_rule("/auth/login", "web_login", lambda: "form")
    db.init_app(app)
    with pytest.raises(RuntimeError, match="AUTH_URL_PREFIX") as refused:
        api_auth.init_app(app)
    assert "web_login /auth/login" in str(refused.value)

    late = Flask("late")
    late.config.update(SECRET_KEY=SECRET, TESTING=True, SQLALCHEMY_DATABASE_URI=database_url)
    AuthManager(db=SQLAlchemy()).init_app(late)
    late.add_url_rule("/auth/reset", "web_reset", lambda: "form")
    with pytest.raises(RuntimeError, match="AUTH_URL_PREFIX"):
        late.test_client().get("/auth/reset")

    moved = Flask("moved")
    moved.config.update(
        SECRET_KEY=SECRET,
        TESTING=True,
        SQLALCHEMY_DATABASE_URI=database_url,
        AUTH_URL_PREFIX="/api/auth",
    )
    moved.add_url_rule("/auth/login", "web_login", lambda: "form")
    AuthManager(db=SQLAlchemy()).init_app(moved)
    assert moved.test_client().get("/auth/login").text == "form"


def test_json_errors_under_the_prefix_beside_the_hosts_404_handler_and_413(host: Host) -> None:
    app = host.app

    @app.errorhandler(404)
    def page_not_found(error: Exception) -> tuple[str, int]:
        return "<h1>not here</h1>", 404

    client = app.test_client()
    assert client.get("/nowhere").text == "<h1>not here</h1>"
    response = client.get("/auth/nowhere")
    assert (response.status_code, response.json["error"]) == (404, "not_found")
    response = client.patch("/auth/logout")
    assert (response.status_code, response.json["error"]) == (405, "method_not_allowed")
    response = client.post(
        "/auth/login", data="x" * (64 * 1024 + 1), content_type="application/json"
    )
    assert (response.status_code, response.json["error"]) == (413, "request_too_large")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_concurrent_logins_of_one_host_user_each_open_a_session(host: Host) -> None:
    host.add_user("susan")
    statuses: list[int] = []

    def one() -> None:
        statuses.append(log_in(host.app.test_client(), "username", "susan").status_code)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 4
    assert host.count("auth_sessions") == 4


# --- the host's stored hashes, without its check_password -----------------------------------


def django_pbkdf2(password: str) -> str:
    """Django's `pbkdf2_sha256$iterations$salt$base64` (its PBKDF2PasswordHasher's format)."""
    salt, iterations = "seasalt2024", 100_000
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(key).decode()}"


def passlib_pbkdf2(password: str) -> str:
    with warnings.catch_warnings():  # passlib 1.7 imports `crypt`, deprecated in 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        passlib_hash = pytest.importorskip("passlib.hash")
    stored: str = passlib_hash.pbkdf2_sha256.hash(password)
    return stored


def bcrypt_hash(password: str) -> str:
    bcrypt = pytest.importorskip("bcrypt")
    stored: str = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return stored


HASH_FORMATS: dict[str, Callable[[str], str]] = {
    "argon2id": lambda password: argon2.PasswordHasher().hash(password),
    "bcrypt": bcrypt_hash,
    "werkzeug-scrypt": lambda password: generate_password_hash(password, "scrypt"),
    "werkzeug-pbkdf2": lambda password: generate_password_hash(password, "pbkdf2:sha256:1000"),
    "passlib-pbkdf2": passlib_pbkdf2,
    "django-pbkdf2": django_pbkdf2,
}


@pytest.mark.parametrize("upgrade", [False, True], ids=["kept", "upgraded"])
@pytest.mark.parametrize("hash_format", list(HASH_FORMATS))
def test_each_stored_hash_format_logs_in_and_is_upgraded_only_when_configured(
    make_host: Callable[..., Host], hash_format: str, upgrade: bool
) -> None:
    stored = HASH_FORMATS[hash_format](PASSWORD)
    host = make_host(check_password=False, AUTH_UPGRADE_PASSWORD_HASHES=upgrade)
    host.add_user("susan", password_hash=stored)
    client = host.app.test_client()
    assert log_in(client, "username", "susan", "wrong password").status_code == 401
    assert host.user_row("susan").password_hash == stored
    assert log_in(client, "username", "susan").status_code == 200
    after = host.user_row("susan").password_hash
    if upgrade:  # to argon2id with the app's own profile (the test one here)
        assert after.startswith("$argon2id$v=19$m=8,t=1,p=1$")
        assert log_in(client, "email", "susan@example.com").status_code == 200
    else:
        assert after == stored


def test_a_missing_or_unknown_hash_refuses_the_login(make_host: Callable[..., Host]) -> None:
    host = make_host(check_password=False)
    host.add_user("susan", password_hash="md5$abc$def")
    host.add_user("bob")
    with host.app.app_context():
        host.db.session.execute(
            sa.update(host.User).filter_by(username="bob").values(password_hash=None)
        )
        host.db.session.commit()
    client = host.app.test_client()
    assert log_in(client, "username", "susan").status_code == 401
    assert log_in(client, "username", "bob").status_code == 401


# --- timing (threat: telling known logins from unknown ones) --------------------------------

TIMING_ROUNDS = 9


def failed_login_seconds(client: FlaskClient, username: str) -> float:
    started = time.perf_counter()
    response = log_in(client, "username", username, "wrong password")
    elapsed = time.perf_counter() - started
    assert (response.status_code, response.json["error"]) == (401, "invalid_grant")
    return elapsed


@pytest.mark.slow
@pytest.mark.parametrize("check_password", [True, False], ids=["check_password", "stored-hash"])
def test_an_unknown_login_costs_as_much_as_a_wrong_password(
    make_host: Callable[..., Host], database_url: str, check_password: bool
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the padding is the database's business nowhere: SQLite shows it")
    host = make_host(check_password=check_password)
    host.add_user("susan", password_hash=generate_password_hash(PASSWORD, "scrypt"))
    client = host.app.test_client()
    known, unknown = [], []
    for _ in range(TIMING_ROUNDS):  # interleaved: load on a shared machine hits both alike
        known.append(failed_login_seconds(client, "susan"))
        unknown.append(failed_login_seconds(client, "nobody"))
    ratio = statistics.median(unknown) / statistics.median(known)
    # Without the padding, an unknown login skips werkzeug's scrypt: about 0.05.
    assert 0.5 < ratio < 2.0, (ratio, known, unknown)


def test_the_openapi_document_shows_the_hosts_login_fields(host: Host) -> None:
    document = host.app.test_client().get("/auth/openapi.json").json
    assert "/auth/register" not in document["paths"]
    assert "/auth/password" not in document["paths"]
    login = document["paths"]["/auth/login"]["post"]["requestBody"]["content"]
    schema = login["application/json"]["schema"]
    assert schema["oneOf"] == [{"required": ["username"]}, {"required": ["email"]}]
    assert set(document["components"]["schemas"]["User"]["properties"]) == {
        "id",
        "role",
        "username",
        "email",
    }


def test_a_user_model_the_extension_cannot_use_is_refused_at_init_app(database_url: str) -> None:
    def init(model: Any, login_fields: tuple[str, ...] = ("email",)) -> None:
        db = SQLAlchemy()
        user_class = host_model(db, "integer")  # kept: the registry holds its classes weakly
        app = Flask("refused")
        app.config.update(SECRET_KEY=SECRET, TESTING=True, SQLALCHEMY_DATABASE_URI=database_url)
        db.init_app(app)
        AuthManager(db=db, user_model=model, login_fields=login_fields).init_app(app)
        del user_class

    with pytest.raises(RuntimeError, match=r"no model of that name is mapped on db\.Model"):
        init("Member")
    with pytest.raises(RuntimeError, match="'nickname' is not a mapped column of User"):
        init("User", ("email", "nickname"))
    with pytest.raises(TypeError, match="login_fields takes a list"):
        AuthManager(db=SQLAlchemy(), user_model="User", login_fields="email")
    with pytest.raises(TypeError, match="login_fields needs user_model"):
        AuthManager(db=SQLAlchemy(), login_fields=("username",))


def test_user_json_shapes_what_the_api_shows_of_a_host_user(database_url: str) -> None:
    db = SQLAlchemy()
    User = host_model(db, "integer")
    api_auth = AuthManager(
        db=db,
        user_model=User,
        login_fields=("username",),
        user_json=lambda user: {"id": user.id, "name": user.username.title()},
    )
    app = app_with_tables(db, api_auth, database_url)
    with app.app_context():
        db.session.add(
            User(
                username="susan",
                email="s@example.com",
                password_hash=generate_password_hash(PASSWORD),
            )
        )
        db.session.commit()
    try:
        body = log_in(app.test_client(), "username", "susan").json
        assert body["user"] == {"id": 1, "name": "Susan"}
    finally:
        with app.app_context():
            db.drop_all()
            db.engine.dispose()


def test_revoke_sessions_ends_a_login_that_was_in_flight(
    make_host: Callable[..., Host], database_url: str
) -> None:
    """A login paused between its last check (the user row read under a shared lock) and its
    commit: the host's revoke_sessions waits for it, and its session is revoked too."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers: the login holds the database until it commits")
    host = make_host("integer")
    key = host.add_user("susan")
    with host.app.app_context():
        engine = host.db.engine
    checked, release = threading.Event(), threading.Event()
    login_thread: list[threading.Thread] = []

    def pause_after_the_check(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        shared = "FOR SHARE" in statement or "LOCK IN SHARE MODE" in statement
        if shared and threading.current_thread() in login_thread:
            checked.set()
            release.wait(timeout=30)

    answers: dict[str, Any] = {}

    def log_in_susan() -> None:
        answers["login"] = log_in(host.app.test_client(), "username", "susan")

    def revoke() -> None:
        with host.app.test_request_context():
            user = host.db.session.get(host.User, key)
            answers["revoked"] = host.api_auth.revoke_sessions(user)

    sa.event.listen(engine, "after_cursor_execute", pause_after_the_check)
    try:
        login_thread.append(threading.Thread(target=log_in_susan))
        login_thread[0].start()
        assert checked.wait(timeout=30)
        revoker = threading.Thread(target=revoke)
        revoker.start()
        revoker.join(timeout=1)
        assert revoker.is_alive()  # waiting for the login's commit
        release.set()
        login_thread[0].join(timeout=30)
        revoker.join(timeout=30)
    finally:
        release.set()
        sa.event.remove(engine, "after_cursor_execute", pause_after_the_check)
    assert answers["login"].status_code == 200
    assert answers["revoked"] == 1
    access_token = answers["login"].json["access_token"]
    assert host.app.test_client().get("/profile", headers=bearer(access_token)).status_code == 401
