"""`flask db upgrade|check|downgrade` as an operator runs them, on empty databases."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app import db
from tests.conftest import make_app
from tests.conftest import new_database
from tests.conftest import PASSWORD
from tests.helpers import bearer

REPOSITORY = Path(__file__).resolve().parent.parent
AUTH_TABLES = {"users", "auth_sessions", "refresh_tokens", "auth_events"}
FLASK_TIMEOUT_SECONDS = 120


@pytest.fixture
def empty_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database with no table at all, on the same server as `database_url`; dropped after."""
    if make_url(database_url).get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    with new_database(database_url) as url:
        yield url


def flask(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app wsgi ARGS` in the repository, configured by the environment only."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AUTH_")}
    environment.update(DATABASE_URL=database_url, SECRET_KEY=secrets.token_hex(32))
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=FLASK_TIMEOUT_SECONDS,
        check=False,
    )


def table_names(database_url: str) -> set[str]:
    engine = sa.create_engine(database_url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def unique_column_sets(database_url: str, table: str) -> set[tuple[str, ...]]:
    """Columns covered by a unique constraint or a unique index (MariaDB reports either)."""
    engine = sa.create_engine(database_url)
    try:
        inspector = sa.inspect(engine)
        constraints = {
            tuple(str(name) for name in constraint["column_names"])
            for constraint in inspector.get_unique_constraints(table)
        }
        indexes = {
            tuple(str(name) for name in index["column_names"])
            for index in inspector.get_indexes(table)
            if index["unique"]
        }
        return constraints | indexes
    finally:
        engine.dispose()


def test_upgrade_then_check_reports_no_drift(empty_database_url: str) -> None:
    assert table_names(empty_database_url) == set()

    upgrade = flask(empty_database_url, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr

    check = flask(empty_database_url, "db", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout
    assert table_names(empty_database_url) == AUTH_TABLES | {"alembic_version"}
    # The unique indexes the contract names: one account per email, one row per token hash.
    assert ("email",) in unique_column_sets(empty_database_url, "users")
    assert ("token_hash",) in unique_column_sets(empty_database_url, "refresh_tokens")


def test_downgrade_base_removes_the_tables_and_upgrade_again(empty_database_url: str) -> None:
    upgrade = flask(empty_database_url, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr

    downgrade = flask(empty_database_url, "db", "downgrade", "base")

    assert downgrade.returncode == 0, downgrade.stderr
    assert table_names(empty_database_url) & AUTH_TABLES == set()
    # Nothing left behind (an index, a constraint) that would stop a second upgrade.
    again = flask(empty_database_url, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert table_names(empty_database_url) >= AUTH_TABLES


def test_check_detects_a_database_that_is_not_upgraded(empty_database_url: str) -> None:
    check = flask(empty_database_url, "db", "check")

    assert check.returncode != 0
    assert "No new upgrade operations detected" not in check.stdout
    assert table_names(empty_database_url) & AUTH_TABLES == set()


def test_migrated_schema_serves_the_app(empty_database_url: str) -> None:
    upgrade = flask(empty_database_url, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    application = make_app(empty_database_url)
    client = application.test_client()
    try:
        response = client.post(
            "/auth/register", json={"email": "ada@example.com", "password": PASSWORD}
        )
        assert response.status_code == 201, response.json
        response = client.post(
            "/auth/login",
            json={"email": "ada@example.com", "password": PASSWORD},
            headers={"X-Token-Transport": "body"},
        )
        assert response.status_code == 200, response.json
        tokens = response.json
        assert isinstance(tokens, dict)
        response = client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert response.status_code == 200, response.json
        response = client.post(
            "/auth/refresh",
            json={"refresh_token": tokens["refresh_token"]},
            headers={"X-Token-Transport": "body"},
        )
        assert response.status_code == 200, response.json
    finally:
        with application.app_context():
            db.engine.dispose()


def test_a_database_without_the_tables_says_to_migrate(
    empty_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    application = make_app(empty_database_url)
    client = application.test_client()
    try:
        response = client.post(
            "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        hello = client.get("/api/hello", headers=bearer("not-even-a-token"))
    finally:
        with application.app_context():
            db.engine.dispose()

    # A set-up mistake, not an outage: no Retry-After, and the log says what to run.
    assert response.status_code == 500
    assert response.json["error"] == "server_error"
    assert "Retry-After" not in response.headers
    assert "run `flask db upgrade`" in caplog.text
    assert hello.status_code == 401  # a bad token is refused before the database is asked
    assert table_names(empty_database_url) == set()
