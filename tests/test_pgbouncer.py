"""PostgreSQL through PgBouncer in transaction pooling with AUTH_PGBOUNCER (docs/operations.md):
concurrent and repeated refreshes, the session check, logout racing a refresh, on a database
made on the server and reached through PgBouncer by the same name (`TEST_PGBOUNCER_URL`).
And, on every database, no driver message carrying a value of our tables into a log."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

import config as service_config
from app import create_app
from app import db
from flask_token_auth import engine_options
from tests.conftest import app_with_tables
from tests.conftest import new_database
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import gunicorn
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import register
from tests.helpers import scalar
from tests.pools import idle_check_connections

# The races and the cross-host rotation of their own modules, run again here through PgBouncer.
from tests.test_cross_host import (
    test_sixty_four_refreshes_over_two_hosts_rotate_once as test_sixty_four_refreshes_over_two_hosts_rotate_once,  # noqa: E501
)
from tests.test_races import (
    test_a_login_in_flight_during_a_password_change_ends_revoked as test_a_login_in_flight_during_a_password_change_ends_revoked,  # noqa: E501
)
from tests.test_races import (
    test_a_revocation_racing_a_refresh_always_wins as test_a_revocation_racing_a_refresh_always_wins,  # noqa: E501
)

RACERS = 50
# Rounds of them, so that each pooled connection runs a statement more than 5 times.
ROUNDS = 5
# Well past psycopg's prepare_threshold (5 uses of a statement on a connection).
SEQUENTIAL = 200
HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
PGBOUNCER = {"AUTH_PGBOUNCER": True}


@pytest.fixture(scope="module", params=["postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database made on the server (TEST_POSTGRES_URL), by its URL through PgBouncer."""
    pgbouncer_url, server_url = (
        os.environ.get("TEST_PGBOUNCER_URL"),
        os.environ.get("TEST_POSTGRES_URL"),
    )
    if not pgbouncer_url or not server_url:
        missing = "TEST_PGBOUNCER_URL" if not pgbouncer_url else "TEST_POSTGRES_URL"
        if os.environ.get("TEST_REQUIRE_DATABASES") == "1":
            pytest.fail(f"{missing} is not set but TEST_REQUIRE_DATABASES=1")
        pytest.skip(f"{missing} is not set; PgBouncer tests skipped")
    with new_database(server_url) as url:
        name = make_url(url).database
        yield make_url(pgbouncer_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def app(database_url: str, app_config: dict[str, Any]) -> Iterator[Flask]:
    """The reference app through PgBouncer, with AUTH_PGBOUNCER."""
    with app_with_tables(database_url, **{**PGBOUNCER, **app_config}) as application:
        yield application


@pytest.fixture
def two_hosts(app: Flask, database_url: str, tmp_path: Path) -> Iterator[list[str]]:
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "AUTH_RATELIMIT_ENABLED": "false",
        "AUTH_PGBOUNCER": "true",
    }
    with ExitStack() as stack:
        yield [
            stack.enter_context(gunicorn("wsgi:app", env, tmp_path / f"host{n}.log"))
            for n in (1, 2)
        ]


def refresh(app: Flask, refresh_token: str) -> TestResponse:
    return app.test_client().post(
        "/auth/refresh", json={"refresh_token": refresh_token}, headers=NATIVE
    )


def concurrent_refreshes(app: Flask, refresh_token: str) -> list[TestResponse]:
    """RACERS refreshes of one token at the same moment, each thread with its own client."""
    barrier = threading.Barrier(RACERS)

    def run(_: int) -> TestResponse:
        barrier.wait()
        return refresh(app, refresh_token)

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(run, range(RACERS)))


def statuses(responses: list[TestResponse]) -> list[int]:
    return sorted(response.status_code for response in responses)


# engine_options and the setting (no database needed)


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://db.internal/app", "postgres://db.internal/app"]
)
def test_engine_options_turn_prepared_statements_off_for_psycopg(url: str) -> None:
    assert engine_options(url, pgbouncer=True)["connect_args"] == {"prepare_threshold": None}
    assert "connect_args" not in engine_options(url)


@pytest.mark.parametrize(
    "url", ["mysql+pymysql://db.internal/app", "postgresql+psycopg2://db.internal/app"]
)
def test_engine_options_leave_other_drivers_alone(url: str) -> None:
    assert engine_options(url, pgbouncer=True) == engine_options(url)


def test_the_reference_service_reads_the_flag_from_the_environment() -> None:
    environ = {"AUTH_PGBOUNCER": "true", "DATABASE_URL": "postgresql+psycopg://db.internal/app"}
    configuration = service_config.from_environment(environ)

    assert configuration["AUTH_PGBOUNCER"] is True
    application = create_app({**configuration, "SECRET_KEY": SECRET, "TESTING": True})
    options = application.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"] == {"prepare_threshold": None}


# Through PgBouncer


@pytest.mark.slow
def test_fifty_concurrent_refreshes_of_one_token_rotate_it_once(app: Flask) -> None:
    register(app.test_client())
    for round_number in range(1, ROUNDS + 1):
        token = login(app.test_client(), native=True).json["refresh_token"]

        answers = concurrent_refreshes(app, token)

        assert statuses(answers) == [200] * RACERS, [
            a.json for a in answers if a.status_code >= 500
        ]
        assert len({answer.json["refresh_token"] for answer in answers}) == 1  # the live token
        assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2 * round_number  # no fork


@pytest.mark.slow
@pytest.mark.parametrize("app_config", [{"AUTH_REFRESH_REUSE_GRACE": 0}])
def test_without_grace_one_of_fifty_concurrent_refreshes_wins(app: Flask) -> None:
    register(app.test_client())
    for _ in range(ROUNDS):
        token = login(app.test_client(), native=True).json["refresh_token"]

        answers = concurrent_refreshes(app, token)

        assert statuses(answers) == [200] + [401] * (RACERS - 1), [
            a.json for a in answers if a.status_code >= 500
        ]
        assert {a.json["error"] for a in answers if a.status_code == 401} == {"invalid_grant"}


@pytest.mark.slow
def test_two_hundred_protected_requests_and_refreshes_in_a_row(app: Flask) -> None:
    register(app.test_client())
    tokens = login(app.test_client(), native=True).json
    client = app.test_client()
    for _ in range(SEQUENTIAL):
        hello = client.get("/api/hello", headers=bearer(tokens["access_token"]))
        assert hello.status_code == 200, hello.json
        refreshed = client.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, headers=NATIVE
        )
        assert refreshed.status_code == 200, refreshed.json
        tokens = refreshed.json

    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == SEQUENTIAL + 1


@pytest.mark.slow
def test_the_session_check_sends_its_statement_unnamed_and_sees_a_logout(app: Flask) -> None:
    client = app.test_client()
    register(client)
    access_token = login(client, native=True).json["access_token"]
    assert client.get("/api/hello", headers=bearer(access_token)).status_code == 200
    with app.app_context():
        engine = db.engine
    kept = idle_check_connections(engine)
    assert kept
    assert all(driver.prepare_threshold is None for driver in kept)

    assert client.post("/auth/logout", headers=bearer(access_token)).status_code == 204

    refused = client.get("/api/hello", headers=bearer(access_token))
    assert refused.status_code == 401
    assert refused.json["error"] == "invalid_token"


@pytest.mark.slow
def test_the_flag_with_an_engine_that_prepares_is_refused_at_the_first_check(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine options are the host's; the first session check finds out and says so."""
    prepared = {**PGBOUNCER, "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url)}
    with app_with_tables(database_url, **prepared) as application:
        client = application.test_client()
        register(client)
        access_token = login(client, native=True).json["access_token"]

        answer = client.get("/api/hello", headers=bearer(access_token))

    assert answer.status_code == 500
    assert "AUTH_PGBOUNCER is true but the engine's psycopg connections prepare" in caplog.text


# Log hygiene, on every database


@pytest.fixture
def any_database_app(each_database_url: str) -> Iterator[Flask]:
    """The reference app on each database of the suite (SQLite, PostgreSQL, MariaDB)."""
    with app_with_tables(each_database_url) as application:
        yield application


def test_a_unique_violation_on_a_token_hash_logs_no_hash(
    any_database_app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two logins handed the same refresh token: the second insert violates the unique
    `refresh_tokens.token_hash`, whose server message quotes the hash on MariaDB and
    PostgreSQL (`DETAIL: Key (token_hash)=(...)`); the log names the error, not the value."""
    register(any_database_app.test_client())
    monkeypatch.setattr("flask_token_auth.sessions.new_refresh_token", lambda: "ab" * 32)
    login(any_database_app.test_client(), native=True)
    caplog.clear()

    with caplog.at_level(logging.DEBUG):
        answer = any_database_app.test_client().post(
            "/auth/login",
            json={"email": "ada@example.com", "password": "correct horse battery"},
            headers=NATIVE,
        )

    assert answer.status_code == 500
    assert answer.json["error"] == "server_error"
    assert "IntegrityError" in caplog.text
    formatter = logging.Formatter()
    for record in caplog.records:
        assert not HASH_PATTERN.search(formatter.format(record)), formatter.format(record)
