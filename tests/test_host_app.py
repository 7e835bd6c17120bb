"""The extension in a host's own Flask app, as the README shows it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from datetime import UTC
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from app import auth_required
from app import AuthManager
from app import current_claims
from app import current_user
from app import db
from app.db import Base
from app.sessions import IssuedTokens
from app.settings import AuthSettings
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import register

HOST_CONFIG = {"SECRET_KEY": SECRET, "TESTING": True, "AUTH_ARGON2_PROFILE": "test"}


def host_routes(app: Flask) -> None:
    @app.get("/orders")
    @auth_required
    def orders() -> Any:
        return {"user_id": current_claims.user_id}

    @app.get("/admin")
    @auth_required(roles=["admin"])
    def admin() -> Any:
        return {"email": current_user.email}


@pytest.fixture
def host_app(tmp_path: Any) -> Iterator[Flask]:
    """A plain Flask app using the extension with our `db`, as in the README."""
    app = Flask("host")
    app.config.update(HOST_CONFIG, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}")
    AuthManager().init_app(app)
    host_routes(app)
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.engine.dispose()


def test_readme_example_protects_host_routes(host_app: Flask) -> None:
    client = host_app.test_client()
    user = register(client)
    access_token = login(client).json["access_token"]
    assert client.get("/orders", headers=bearer(access_token)).json == {"user_id": user["id"]}
    response = client.get("/admin", headers=bearer(access_token))
    assert response.status_code == 403
    assert response.json["error"] == "insufficient_scope"


def test_our_engine_options_go_under_the_hosts(tmp_path: Any) -> None:
    app = Flask("host")
    app.config.update(
        HOST_CONFIG,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}",
        SQLALCHEMY_ENGINE_OPTIONS={"echo_pool": False},
    )
    AuthManager(app)
    with app.app_context():
        assert db.engine.hide_parameters is True  # ours, kept beside the host's option
        with db.engine.connect() as connection:
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert (journal, busy) == ("wal", 10_000)
        db.engine.dispose()


def test_a_host_sqlalchemy_instance_is_used_when_given(tmp_path: Any) -> None:
    host_db = SQLAlchemy(model_class=Base)
    app = Flask("host")
    app.config.update(HOST_CONFIG, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'own.db'}")
    host_db.init_app(app)
    AuthManager(app, db=host_db)
    host_routes(app)
    with app.app_context():
        host_db.create_all()
    client = app.test_client()
    register(client)
    access_token = login(client).json["access_token"]
    assert client.get("/orders", headers=bearer(access_token)).status_code == 200
    with app.app_context():
        count = host_db.session.execute(host_db.text("SELECT COUNT(*) FROM auth_sessions"))
        assert count.scalar() == 1
        host_db.engine.dispose()


def test_a_host_sqlalchemy_instance_must_be_passed(tmp_path: Any) -> None:
    app = Flask("host")
    app.config.update(HOST_CONFIG, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'own.db'}")
    SQLAlchemy().init_app(app)
    with pytest.raises(RuntimeError, match=r"pass it as AuthManager\(db=db\)"):
        AuthManager(app)


def test_roles_given_as_a_string_are_refused() -> None:
    with pytest.raises(TypeError, match="list of role names"):
        auth_required(roles="admin")


def test_secrets_stay_out_of_reprs() -> None:
    settings = AuthSettings.from_config(HOST_CONFIG)
    assert SECRET not in repr(settings)
    issued = IssuedTokens(
        access_token="access-value",
        expires_in=900,
        refresh_token="refresh-value",
        refresh_expires_at=datetime.now(UTC),
        session_id="s",
    )
    assert "access-value" not in repr(issued)
    assert "refresh-value" not in repr(issued)


def test_login_with_the_host_password(host_app: Flask) -> None:
    client = host_app.test_client()
    register(client, "host@example.com", PASSWORD)
    assert login(client, "host@example.com").status_code == 200


def test_auth_errors_stay_json_when_the_host_keeps_its_error_pages(tmp_path: Any) -> None:
    app = Flask("host")
    app.config.update(
        HOST_CONFIG,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}",
        MAX_CONTENT_LENGTH=1024,
    )
    AuthManager(app, json_errors=False)
    client = app.test_client()
    too_big = client.post("/auth/login", json={"email": "a@example.com", "password": "x" * 2048})
    assert too_big.status_code == 413
    assert too_big.json["error"] == "request_too_large"
    # The host's own pages are its business: its 404 stays HTML.
    assert client.get("/nowhere").content_type.startswith("text/html")
    with app.app_context():
        db.engine.dispose()


def test_an_unexpected_error_on_an_auth_route_is_json_without_a_trace(tmp_path: Any) -> None:
    app = Flask("host")
    app.config.update(HOST_CONFIG, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}")
    AuthManager(app, json_errors=False)
    with app.app_context():
        db.create_all()
        # A row the ORM cannot load: reading it raises inside the view, a genuine 500.
        db.session.execute(
            db.text(
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
