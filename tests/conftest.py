"""Fixtures: one suite, run against SQLite, PostgreSQL and MariaDB through `database_url`."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from sqlalchemy.engine import make_url

import config as service_config
from app import create_app
from app import db
from flask_token_auth.engines import register_url_schemes
from flask_token_auth.models import AuthEvent
from flask_token_auth.models import AuthSession
from flask_token_auth.models import RefreshToken
from flask_token_auth.models import User

SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"
SERVER_URLS = {"postgresql": "TEST_POSTGRES_URL", "mariadb": "TEST_MARIADB_URL"}


@pytest.fixture(autouse=True)
def _no_configuration_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable the reference service reads (`config.py`), and FLASK_DEBUG (Flask's
    DEBUG, which relaxes the secret checks), unset for each test: a developer's shell cannot
    change a result. A test sets what it means to read."""
    for name in list(os.environ):
        if name.startswith("AUTH_") or name in {*service_config.VARIABLES, "FLASK_DEBUG"}:
            monkeypatch.delenv(name)


@contextlib.contextmanager
def new_database(server_url: str) -> Iterator[str]:
    """The URL of a new, empty database on the server of `server_url`; dropped afterwards."""
    register_url_schemes()
    admin_url = make_url(server_url)
    name = f"auth_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        force = " WITH (FORCE)" if admin_url.get_backend_name() == "postgresql" else ""
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE {name}{force}"))
        admin.dispose()


def server_database(kind: str) -> Iterator[str]:
    variable = SERVER_URLS[kind]
    server_url = os.environ.get(variable)
    if not server_url:
        if os.environ.get("TEST_REQUIRE_DATABASES") == "1":
            pytest.fail(f"{variable} is not set but TEST_REQUIRE_DATABASES=1")
        pytest.skip(f"{variable} is not set; {kind} tests skipped")
    with new_database(server_url) as url:
        yield url


def empty_database(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a new, empty database of `kind`: a SQLite file, or one on a server."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'auth.db'}"
    else:
        yield from server_database(kind)


@pytest.fixture(scope="session", params=["sqlite", "postgresql", "mariadb"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of an empty database of each kind, shared by the tests of one session."""
    yield from empty_database(request.param, tmp_path_factory)


def make_app(database_url: str, **overrides: Any) -> Flask:
    config = {
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "AUTH_ARGON2_PROFILE": "test",
        "AUTH_COOKIE_SECURE": True,
        # Tests log in far more often than a person; the rate-limit tests turn it back on.
        "AUTH_RATELIMIT_ENABLED": False,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Overrides a test module may replace to configure its app."""
    return {}


@contextlib.contextmanager
def app_with_tables(database_url: str, **overrides: Any) -> Iterator[Flask]:
    """The reference app with its tables; emptied and disconnected afterwards.

    Yielded outside an app context: each test request gets its own, as in production.
    """
    application = make_app(database_url, **overrides)
    with application.app_context():
        db.create_all()
    try:
        yield application
    finally:
        with application.app_context(), db.engine.begin() as connection:
            for model in (AuthEvent, RefreshToken, AuthSession, User):
                connection.execute(sa.delete(model))
        with application.app_context():
            db.engine.dispose()


@pytest.fixture
def app(database_url: str, app_config: dict[str, Any]) -> Iterator[Flask]:
    """The reference app on a freshly emptied database."""
    with app_with_tables(database_url, **app_config) as application:
        yield application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture(scope="session", params=["sqlite", "postgresql", "mariadb"])
def each_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """As `database_url`, for a module whose own `database_url` is another database."""
    yield from empty_database(request.param, tmp_path_factory)
