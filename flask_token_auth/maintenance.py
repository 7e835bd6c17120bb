"""Pruning: expired refresh tokens, ended sessions and old audit events, in small batches.

Each batch is a transaction of its own, so that no lock is held for long: a refresh running
alongside waits for one batch at most (on SQLite, one writer at a time).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete
from sqlalchemy import or_
from sqlalchemy import select

from .models import AuthEvent
from .models import AuthSession
from .models import RefreshToken
from .state import AuthState

PRUNE_BATCH_SIZE = 1000


def prune(state: AuthState, *, now: datetime, batch_size: int = PRUNE_BATCH_SIZE) -> dict[str, int]:
    """Delete expired refresh tokens, ended (expired or revoked) sessions with their tokens,
    and audit events older than AUTH_AUDIT_RETENTION; the counts. Commits every batch.

    Spent tokens are kept until they expire: they are what reuse detection recognises.
    """
    ended = or_(AuthSession.expires_at <= now, AuthSession.revoked_at.is_not(None))
    expired_tokens = _delete_in_batches(
        state, RefreshToken, RefreshToken.expires_at <= now, batch_size
    )
    tokens_of_ended = _delete_in_batches(
        state,
        RefreshToken,
        RefreshToken.session_id.in_(select(AuthSession.id).where(ended)),
        batch_size,
    )
    sessions = _delete_in_batches(state, AuthSession, ended, batch_size)
    events = _delete_in_batches(
        state, AuthEvent, AuthEvent.at < now - state.settings.audit_retention, batch_size
    )
    return {
        "refresh_tokens": expired_tokens + tokens_of_ended,
        "sessions": sessions,
        "audit_events": events,
    }


def _delete_in_batches(
    state: AuthState, model: Any, condition: sa.ColumnElement[bool], batch_size: int
) -> int:
    """Delete the rows of `model` matching `condition`, `batch_size` at a time; the count."""
    db_session = state.session
    deleted = 0
    while True:
        ids = list(db_session.scalars(select(model.id).where(condition).limit(batch_size)))
        if not ids:
            return deleted
        result = db_session.execute(
            delete(model).where(model.id.in_(ids)),
            execution_options={"synchronize_session": False},
        )
        deleted += int(result.rowcount)  # type: ignore[attr-defined]
        db_session.commit()
