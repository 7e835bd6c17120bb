"""Pruning: expired refresh tokens, ended sessions and old audit events, in small batches.

Each batch is a transaction of its own, so that no lock is held for long: a refresh running
alongside waits for one batch at most (on SQLite, one writer at a time). After each batch the
prune rests twice as long as the batch took, so it holds the database a third of the time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete
from sqlalchemy import or_
from sqlalchemy import select

from .state import AuthState

PRUNE_BATCH_SIZE = 1000
#: After each batch the prune rests this many times as long as the batch took.
PRUNE_REST_RATIO = 2


def prune(
    state: AuthState,
    *,
    now: datetime,
    batch_size: int = PRUNE_BATCH_SIZE,
    rest: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Delete expired refresh tokens, ended (expired or revoked) sessions with their tokens,
    and audit events older than AUTH_AUDIT_RETENTION; the counts. Commits every batch, then
    calls `rest` with twice the seconds the batch took.

    Spent tokens are kept until they expire: they are what reuse detection recognises.
    """
    sessions, tokens, events = (
        state.tables.AuthSession,
        state.tables.RefreshToken,
        state.tables.AuthEvent,
    )
    ended = or_(sessions.expires_at <= now, sessions.revoked_at.is_not(None))

    def delete_in_batches(model: Any, condition: sa.ColumnElement[bool]) -> int:
        return _delete_in_batches(state, model, condition, batch_size, rest)

    expired_tokens = delete_in_batches(tokens, tokens.expires_at <= now)
    tokens_of_ended = delete_in_batches(
        tokens, tokens.session_id.in_(select(sessions.id).where(ended))
    )
    ended_sessions = delete_in_batches(sessions, ended)
    old_events = delete_in_batches(events, events.at < now - state.settings.audit_retention)
    return {
        "refresh_tokens": expired_tokens + tokens_of_ended,
        "sessions": ended_sessions,
        "audit_events": old_events,
    }


def _delete_in_batches(
    state: AuthState,
    model: Any,
    condition: sa.ColumnElement[bool],
    batch_size: int,
    rest: Callable[[float], None],
) -> int:
    """Delete the rows of `model` matching `condition`, `batch_size` at a time; the count."""
    db_session = state.session
    deleted = 0
    while True:
        started = time.monotonic()
        # The ids first, then the rows by id: with one DELETE and a subquery of its own table,
        # MariaDB spent minutes on each batch of a million-row table.
        ids = list(db_session.scalars(select(model.id).where(condition).limit(batch_size)))
        if not ids:
            return deleted
        result = db_session.execute(
            delete(model).where(model.id.in_(ids)),
            execution_options={"synchronize_session": False},
        )
        deleted += int(result.rowcount)  # type: ignore[attr-defined]
        db_session.commit()
        # Threat: a prune starving the writers. SQLite's busy handler retries after sleeps of
        # up to 100 ms: a prune that took the lock back at once could keep a refresh waiting
        # for seconds, past its busy timeout.
        rest(PRUNE_REST_RATIO * (time.monotonic() - started))
