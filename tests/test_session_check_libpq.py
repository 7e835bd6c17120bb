"""On PostgreSQL the session check runs its statement through libpq, prepared once on each
connection of its pool: no psycopg cursor, and the same answers and errors as one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from datetime import UTC
from typing import Any

import jwt
import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask

from app import db
from flask_token_auth import engine_options
from flask_token_auth.libpq import STATEMENT_NAME
from flask_token_auth.session_check import live_session_role
from flask_token_auth.users import UserModel
from tests.conftest import app_with_tables
from tests.conftest import server_database
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import register
from tests.pools import idle_check_connections

USERS = UserModel.builtin_users()

SCHEMA_MISSING = {
    "error": "server_error",
    "error_description": "the server's database is not set up; its operator must migrate it",
}


@pytest.fixture
def postgresql_app() -> Iterator[Flask]:
    for url in server_database("postgresql"):
        with app_with_tables(url) as application:
            yield application


def engine_of(app: Flask) -> sa.Engine:
    with app.app_context():
        return db.engine


def kept_driver(engine: sa.Engine) -> Any:
    """The one idle connection of the check's pool (a psycopg Connection)."""
    (driver,) = idle_check_connections(engine)
    return driver


def prepared_statements(driver: Any) -> list[str]:
    with driver.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements ORDER BY name", prepare=False)
        return [name for (name,) in cursor.fetchall()]


def _no_cursor(*args: object, **kwargs: object) -> None:
    raise AssertionError("the check opened a psycopg cursor")


def test_the_check_is_one_prepared_statement_run_without_a_cursor(
    postgresql_app: Flask,
) -> None:
    client = postgresql_app.test_client()
    register(client)
    access_token = login(client).json["access_token"]
    assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
    driver = kept_driver(engine_of(postgresql_app))
    assert prepared_statements(driver) == [STATEMENT_NAME.decode()]
    driver.cursor = _no_cursor

    for _ in range(3):
        assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
    assert kept_driver(engine_of(postgresql_app)) is driver
    del driver.cursor
    assert prepared_statements(driver) == [STATEMENT_NAME.decode()]


def test_a_statement_gone_from_its_connection_is_prepared_again(postgresql_app: Flask) -> None:
    """`DISCARD ALL` (a pooler's reset) between two checks costs one more round trip, not a
    failed request."""
    client = postgresql_app.test_client()
    register(client)
    access_token = login(client).json["access_token"]
    assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
    driver = kept_driver(engine_of(postgresql_app))
    driver.execute("DISCARD ALL")
    assert prepared_statements(driver) == []

    response = client.get("/api/hello", headers=bearer(access_token))
    assert response.status_code == 200
    assert kept_driver(engine_of(postgresql_app)) is driver
    assert prepared_statements(driver) == [STATEMENT_NAME.decode()]


def test_a_host_without_prepared_statements_gets_none_from_the_check(
    postgresql_app: Flask,
) -> None:
    """`prepare_threshold=None` (PgBouncer in transaction mode) is the host's word: the check
    then sends its statement unnamed, with the same answers."""
    client = postgresql_app.test_client()
    register(client)
    access_token = login(client).json["access_token"]
    claims = jwt.decode(access_token, options={"verify_signature": False})
    session_id, user_id = claims["sid"], int(claims["sub"])
    url = engine_of(postgresql_app).url
    engine = sa.create_engine(
        url, connect_args={"prepare_threshold": None}, **engine_options(url.render_as_string())
    )
    now = datetime.now(UTC)
    try:
        assert (
            live_session_role(engine, USERS, session_id=session_id, user_id=user_id, now=now)
            == "user"
        )
        assert (
            live_session_role(engine, USERS, session_id="s" * 32, user_id=user_id, now=now) is None
        )
        assert prepared_statements(kept_driver(engine)) == []
    finally:
        engine.dispose()


def test_a_database_error_through_libpq_is_psycopgs_then_sqlalchemys(
    postgresql_app: Flask,
) -> None:
    """The same exception a cursor would raise, wrapped by SQLAlchemy with its parameters
    hidden; the connection is closed, not kept; over HTTP a missing table is a 500 that tells
    the operator to migrate."""
    client = postgresql_app.test_client()
    register(client)
    access_token = login(client).json["access_token"]
    assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
    engine = engine_of(postgresql_app)
    driver = kept_driver(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE auth_sessions RENAME TO auth_sessions_away"))
    try:
        with pytest.raises(sa.exc.ProgrammingError) as caught:
            live_session_role(engine, USERS, session_id="s" * 32, user_id=1, now=datetime.now(UTC))
        assert isinstance(caught.value.orig, psycopg.errors.UndefinedTable)
        assert caught.value.orig.sqlstate == "42P01"
        assert 'relation "auth_sessions" does not exist' in str(caught.value)
        assert caught.value.hide_parameters is True
        assert (driver.closed, idle_check_connections(engine)) == (True, [])

        response = client.get("/api/hello", headers=bearer(access_token))
        assert (response.status_code, response.json) == (500, SCHEMA_MISSING)
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE auth_sessions_away RENAME TO auth_sessions"))
    assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
