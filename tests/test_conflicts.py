"""A real deadlock, provoked on PostgreSQL and MariaDB, is recognised and retried by the server."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import DBAPIError

from app import db
from flask_token_auth.engines import database_failure
from flask_token_auth.engines import is_conflict
from flask_token_auth.errors import TemporarilyUnavailable
from flask_token_auth.state import auth_state
from flask_token_auth.state import AuthState
from flask_token_auth.transactions import MAX_ATTEMPTS
from flask_token_auth.transactions import retried


def provoke_deadlock(app: Flask) -> DBAPIError:
    """Two transactions lock two rows in opposite orders; the database kills one."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            pytest.skip("SQLite serialises writers: no deadlock to provoke")
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE deadlock_rows (id INT PRIMARY KEY, n INT)"))
            connection.execute(sa.text("INSERT INTO deadlock_rows VALUES (1, 0), (2, 0)"))
        barrier = threading.Barrier(2)
        errors: list[DBAPIError] = []

        def lock(first: int, second: int) -> None:
            with engine.connect() as connection:
                update = sa.text("UPDATE deadlock_rows SET n = n + 1 WHERE id = :id")
                try:
                    connection.execute(update, {"id": first})
                    barrier.wait()
                    connection.execute(update, {"id": second})
                    connection.commit()
                except DBAPIError as error:
                    errors.append(error)
                    connection.rollback()

        threads = [threading.Thread(target=lock, args=pair) for pair in ((1, 2), (2, 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE deadlock_rows"))
    assert len(errors) == 1
    return errors[0]


def test_a_real_deadlock_is_a_conflict_and_retried(app: Flask) -> None:
    deadlock = provoke_deadlock(app)
    assert is_conflict(deadlock)
    attempts: list[AuthState] = []

    def use_case(state: AuthState) -> str:
        attempts.append(state)
        if len(attempts) < MAX_ATTEMPTS:
            raise deadlock
        return "done"

    with app.test_request_context():
        assert retried(use_case, auth_state()) == "done"
    assert len(attempts) == MAX_ATTEMPTS


def test_a_conflict_that_persists_is_a_503(app: Flask) -> None:
    deadlock = provoke_deadlock(app)
    attempts: list[AuthState] = []

    def use_case(state: AuthState) -> None:
        attempts.append(state)
        raise deadlock

    with app.test_request_context(), pytest.raises(DBAPIError) as raised:
        retried(use_case, auth_state())
    assert len(attempts) == MAX_ATTEMPTS
    assert isinstance(database_failure(raised.value), TemporarilyUnavailable)


def test_other_database_errors_are_not_retried(app: Flask) -> None:
    attempts: list[AuthState] = []

    def use_case(state: AuthState) -> None:
        attempts.append(state)
        state.session.execute(sa.text("SELECT * FROM no_such_table"))

    with app.test_request_context(), pytest.raises(DBAPIError):
        retried(use_case, auth_state())
    assert len(attempts) == 1
