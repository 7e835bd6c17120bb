"""The extension in a host's own Flask app: its plain SQLAlchemy, its models, its error pages."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from flask_token_auth import auth_required
from flask_token_auth import AuthManager
from flask_token_auth import current_claims
from flask_token_auth import current_user
from flask_token_auth import User
from flask_token_auth.db import Base
from flask_token_auth.error_handlers import render_unexpected_error
from flask_token_auth.sessions import IssuedTokens
from flask_token_auth.settings import AuthSettings
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import register

HOST_CONFIG = {"SECRET_KEY": SECRET, "TESTING": True, "AUTH_ARGON2_PROFILE": "test"}
AUTH_TABLES = {"users", "auth_sessions", "refresh_tokens", "auth_events"}


def host_routes(app: Flask) -> None:
    @app.get("/orders")
    @auth_required
    def orders() -> Any:
        return {"user_id": current_claims.user_id, "role": current_claims.role}

    @app.get("/async-orders")
    @auth_required
    async def async_orders() -> Any:
        return {"user_id": current_claims.user_id}

    @app.get("/admin")
    @auth_required(roles=["admin"])
    def admin() -> Any:
        return {"email": current_user.email, "role": current_claims.role}

    @app.get("/greeting")
    @auth_required(optional=True)
    def greeting() -> Any:
        return {"user_id": current_claims.user_id if current_claims else None}


def make_host(
    database_url: str, *, json_errors: bool = False, db: SQLAlchemy | None = None, **config: Any
) -> tuple[Flask, SQLAlchemy]:
    """A host as the README shows it: its own plain SQLAlchemy, then AuthManager(db=db)."""
    db = db or SQLAlchemy()
    auth = AuthManager(db=db, json_errors=json_errors)
    app = Flask("host")
    app.config.update(HOST_CONFIG, SQLALCHEMY_DATABASE_URI=database_url, **config)
    db.init_app(app)
    auth.init_app(app)
    host_routes(app)
    return app, db


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[Flask, SQLAlchemy]]:
    app, db = make_host(f"sqlite:///{tmp_path / 'host.db'}")
    with app.app_context():
        db.create_all()
    yield app, db
    with app.app_context():
        db.engine.dispose()


def set_role(app: Flask, db: SQLAlchemy, role: str) -> None:
    with app.app_context():
        db.session.execute(sa.text("UPDATE users SET role = :role"), {"role": role})
        db.session.commit()


def test_the_hosts_create_all_makes_our_tables_beside_its_own(tmp_path: Path) -> None:
    db = SQLAlchemy()

    class Order(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))

    AuthManager(db=db)
    app = Flask("host")
    app.config.update(HOST_CONFIG, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'h.db'}")
    db.init_app(app)
    with app.app_context():
        db.create_all()
        inspector = sa.inspect(db.engine)
        assert set(inspector.get_table_names()) == AUTH_TABLES | {"orders"}
        assert inspector.get_foreign_keys("orders")[0]["referred_table"] == "users"
        db.engine.dispose()


def test_sync_and_async_views_are_protected(host: tuple[Flask, SQLAlchemy]) -> None:
    client = host[0].test_client()
    user = register(client)
    access_token = login(client).json["access_token"]

    assert client.get("/orders", headers=bearer(access_token)).json == {
        "user_id": user["id"],
        "role": "user",
    }
    response = client.get("/async-orders", headers=bearer(access_token))
    assert (response.status_code, response.json) == (200, {"user_id": user["id"]})
    response = client.get("/async-orders")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_role_refusal_and_the_enforced_role_in_the_claims(host: tuple[Flask, SQLAlchemy]) -> None:
    app, db = host
    client = app.test_client()
    register(client)
    access_token = login(client).json["access_token"]

    refused = client.get("/admin", headers=bearer(access_token))
    assert (refused.status_code, refused.json["error"]) == (403, "insufficient_scope")

    set_role(app, db, "admin")  # the token still says "user"
    allowed = client.get("/admin", headers=bearer(access_token))
    assert allowed.json == {"email": "ada@example.com", "role": "admin"}
    set_role(app, db, "user")  # a demotion applies at the next request, claims included
    assert client.get("/orders", headers=bearer(access_token)).json["role"] == "user"
    assert client.get("/admin", headers=bearer(access_token)).status_code == 403


def test_optional_auth_gives_claims_only_with_a_valid_token(
    host: tuple[Flask, SQLAlchemy],
) -> None:
    client = host[0].test_client()
    user = register(client)
    access_token = login(client).json["access_token"]

    assert client.get("/greeting").json == {"user_id": None}
    assert client.get("/greeting", headers=bearer(access_token)).json == {"user_id": user["id"]}
    bad = client.get("/greeting", headers=bearer(access_token[:-4] + "AAAA"))
    assert (bad.status_code, bad.json["error"]) == (401, "invalid_token")
    malformed = client.get("/greeting", headers={"Authorization": "Bearer a b"})
    assert (malformed.status_code, malformed.json["error"]) == (400, "invalid_request")


def test_the_hosts_own_error_pages_stay_its_own(host: tuple[Flask, SQLAlchemy]) -> None:
    client = host[0].test_client()

    page = client.get("/nowhere")
    assert page.status_code == 404
    assert page.content_type.startswith("text/html")
    ours = client.get("/auth/nowhere")
    assert (ours.status_code, ours.json["error"]) == (404, "not_found")


def test_init_app_before_the_hosts_db_init_app_just_works(tmp_path: Path) -> None:
    db = SQLAlchemy()
    auth = AuthManager(db=db)
    app = Flask("host")
    app.config.update(HOST_CONFIG, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'h.db'}")
    auth.init_app(app)
    db.init_app(app)
    host_routes(app)
    with app.app_context():
        db.create_all()
    client = app.test_client()
    register(client)
    response = client.get("/orders", headers=bearer(login(client).json["access_token"]))
    assert response.status_code == 200
    with app.app_context():
        db.engine.dispose()


def test_a_second_init_app_says_what_to_do(host: tuple[Flask, SQLAlchemy]) -> None:
    app, db = host
    with pytest.raises(RuntimeError, match=r"already set up; call init_app once per app"):
        AuthManager(db=db).init_app(app)


def test_a_host_table_named_like_ours_is_refused_clearly() -> None:
    db = SQLAlchemy()

    class Account(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(RuntimeError, match=r"already has a table named 'users'"):
        AuthManager(db=db)


def test_two_managers_on_one_metadata_share_the_tables() -> None:
    db = SQLAlchemy()
    AuthManager(db=db)
    AuthManager(db=db)

    assert AUTH_TABLES <= set(db.metadata.tables)


def test_missing_tables_name_the_migration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, db = make_host(f"sqlite:///{tmp_path / 'empty.db'}")
    client = app.test_client()

    response = client.post("/auth/login", json={"email": "a@example.com", "password": PASSWORD})

    assert response.status_code == 500
    assert response.json["error"] == "server_error"
    assert "flask db upgrade" in caplog.text
    assert "no such table" in caplog.text
    result = app.test_cli_runner().invoke(args=["auth", "sessions", "a@example.com"])
    assert result.exit_code == 1
    assert "run `flask db upgrade` first" in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        db.engine.dispose()


def test_an_unreachable_database_on_a_host_route_is_a_503(
    host: tuple[Flask, SQLAlchemy], tmp_path: Path
) -> None:
    client = host[0].test_client()
    register(client)
    access_token = login(client).json["access_token"]
    unreachable, db = make_host(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")

    response = unreachable.test_client().get("/orders", headers=bearer(access_token))

    assert response.status_code == 503
    assert response.json["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"] == "5"
    with unreachable.app_context():
        db.engine.dispose()


def test_json_errors_when_the_host_asks(tmp_path: Path) -> None:
    app, db = make_host(f"sqlite:///{tmp_path / 'h.db'}", json_errors=True)

    response = app.test_client().get("/nowhere")

    assert (response.status_code, response.json["error"]) == (404, "not_found")
    with app.app_context():
        db.engine.dispose()


def test_auth_errors_stay_json_when_the_host_keeps_its_error_pages(tmp_path: Path) -> None:
    app, db = make_host(f"sqlite:///{tmp_path / 'h.db'}", MAX_CONTENT_LENGTH=1024)
    client = app.test_client()

    too_big = client.post("/auth/login", json={"email": "a@example.com", "password": "x" * 2048})

    assert too_big.status_code == 413
    assert too_big.json["error"] == "request_too_large"
    with app.app_context():
        db.engine.dispose()


def test_an_unexpected_error_on_an_auth_route_is_json_without_a_trace(tmp_path: Path) -> None:
    app, db = make_host(f"sqlite:///{tmp_path / 'h.db'}")
    with app.app_context():
        db.create_all()
        # A row the ORM cannot load: reading it raises inside the view, a genuine 500.
        db.session.execute(
            sa.text(
                "INSERT INTO users (email, password_hash, role, is_active, created_at,"
                " password_changed_at) VALUES ('ada@example.com', 'x', 'user', 1, 'garbage',"
                " 'garbage')"
            )
        )
        db.session.commit()
    response = app.test_client().post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 500
    assert response.json == {
        "error": "server_error",
        "error_description": "an unexpected error occurred",
    }
    assert "Traceback" not in response.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()


def test_security_events_log_under_the_extensions_name(
    host: tuple[Flask, SQLAlchemy], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_token_auth")
    client = host[0].test_client()
    register(client)
    client.post("/auth/login", json={"email": "ada@example.com", "password": "wrong password"})

    names = {record.name for record in caplog.records if "auth event" in record.getMessage()}
    assert names == {"flask_token_auth.events"}


def test_roles_given_as_a_string_or_with_optional_are_refused() -> None:
    with pytest.raises(TypeError, match="list of role names"):
        auth_required(roles="admin")
    with pytest.raises(TypeError, match="optional=True cannot require roles"):
        auth_required(roles=["admin"], optional=True)


def test_secrets_stay_out_of_reprs() -> None:
    settings = AuthSettings.from_config(HOST_CONFIG)
    assert SECRET not in repr(settings)
    issued = IssuedTokens(
        access_token="access-value",
        expires_in=900,
        refresh_token="refresh-value",
        refresh_expires_at=datetime.now(UTC),
        session_id="s",
        user={"id": 1},
    )
    assert "access-value" not in repr(issued)
    assert "refresh-value" not in repr(issued)


def test_a_database_bug_is_logged_without_the_statements_parameters(
    host: tuple[Flask, SQLAlchemy], caplog: pytest.LogCaptureFixture
) -> None:
    app, db = host
    insert = sa.text(
        "INSERT INTO users (email, password_hash, role, is_active, created_at,"
        " password_changed_at) VALUES (:email, 'x', 'user', 1, '2030-01-01', '2030-01-01')"
    )
    email = "-".join(("secret", "parameter")) + "@example.com"  # not in the traceback's source
    with app.app_context():
        db.session.execute(insert, {"email": email})
        db.session.commit()
        try:
            db.session.execute(insert, {"email": email})
        except sa.exc.IntegrityError as error:
            response = render_unexpected_error(error)
        db.session.rollback()

    assert response.status_code == 500
    assert "IntegrityError" in caplog.text
    assert "secret-parameter" not in caplog.text


def test_a_host_model_relates_to_users_with_an_explicit_join(tmp_path: Path) -> None:
    db = SQLAlchemy()

    class Note(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
        # The README's recipe: our User maps our own copy of `users`, so name the join.
        user: Mapped[User] = relationship(
            User, primaryjoin=lambda: Note.user_id == User.id, foreign_keys=lambda: [Note.user_id]
        )

    app, _ = make_host(f"sqlite:///{tmp_path / 'h.db'}", db=db)
    with app.app_context():
        db.create_all()
    user = register(app.test_client())
    with app.app_context():
        db.session.add(Note(user_id=user["id"]))
        db.session.commit()
        note = db.session.scalars(sa.select(Note)).one()
        assert note.user.email == "ada@example.com"
        db.engine.dispose()


def test_our_tables_keep_their_constraint_names_in_any_host_metadata() -> None:
    db = SQLAlchemy(metadata=sa.MetaData())  # no naming convention of its own
    AuthManager(db=db)

    def names(metadata: sa.MetaData) -> dict[str, list[str]]:
        """Each table's constraint and index names as DDL will write them ("None": unnamed)."""
        return {
            table.name: sorted(
                [str(c.name) for c in table.constraints] + [str(i.name) for i in table.indexes]
            )
            for table in metadata.sorted_tables
        }

    copies = names(db.metadata)
    assert copies == names(Base.metadata)
    assert all(name.startswith(("pk_", "uq_", "fk_", "ix_")) for n in copies.values() for name in n)


def test_a_host_metadata_with_a_schema_is_refused_clearly() -> None:
    with pytest.raises(RuntimeError, match=r"schema 'shop'.*default schema"):
        AuthManager(db=SQLAlchemy(metadata=sa.MetaData(schema="shop")))
