"""The audit trail: one row per security event, never a secret in it."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import scoped_session
from sqlalchemy.orm import Session

from .events import AuthEventRecord
from .events import publish
from .models import AuthTables
from .state import AuthState
from .state import ClientInfo
from .tokens import UserKey

REGISTER = "register"
LOGIN_SUCCEEDED = "login_succeeded"
LOGIN_FAILED = "login_failed"
REFRESHED = "refreshed"
REFRESH_REUSE_DETECTED = "refresh_reuse_detected"
LOGOUT = "logout"
LOGOUT_ALL = "logout_all"
SESSION_REVOKED = "session_revoked"
PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an event name)
USER_DEACTIVATED = "user_deactivated"
USER_ACTIVATED = "user_activated"
ROLE_CHANGED = "role_changed"
#: The event a revocation records, by its reason; any other reason records SESSION_REVOKED.
REVOCATION_EVENTS = {
    "logout": LOGOUT,
    "logout_all": LOGOUT_ALL,
    "refresh_reuse_detected": REFRESH_REUSE_DETECTED,
    "password_changed": PASSWORD_CHANGED,
    "deactivated": USER_DEACTIVATED,
}
PENDING_KEY = "flask_token_auth_events"


@functools.cache
def _insert_event(tables: AuthTables) -> sa.Insert:
    # A Core INSERT, built once: the ORM's unit of work costs more than the row.
    return sa.insert(cast(sa.Table, tables.AuthEvent.__table__))


def record_event(
    state: AuthState,
    event_type: str,
    *,
    now: datetime,
    client: ClientInfo,
    user_id: UserKey | None = None,
    session_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Insert an event in the caller's transaction; it is published (log line, signal,
    metrics) when that transaction commits. The caller commits."""
    db_session = state.session
    db_session.connection().execute(
        _insert_event(state.tables),
        {
            "at": now,
            "type": event_type,
            "user_id": user_id,
            "session_id": session_id,
            "ip": client.ip,
            "user_agent": client.user_agent,
            "detail": detail,
        },
    )
    record = AuthEventRecord(
        type=event_type, user_id=user_id, session_id=session_id, ip=client.ip, detail=detail
    )
    db_session.info.setdefault(PENDING_KEY, []).append(record)


def publish_on_commit(db_session: scoped_session) -> None:  # type: ignore[type-arg]
    """Publish the events of each transaction of `db_session`'s sessions when it commits;
    forget them when it rolls back."""
    if not sa.event.contains(db_session, "after_commit", _publish_pending):
        sa.event.listen(db_session, "after_commit", _publish_pending)
        sa.event.listen(db_session, "after_rollback", _forget_pending)


def _publish_pending(session: Session) -> None:
    publish(session.info.pop(PENDING_KEY, []))


def _forget_pending(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)
