"""The audit trail: one row per security event, never a secret in it."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import scoped_session
from sqlalchemy.orm import Session

from .models import AuthEvent
from .state import ClientInfo

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
#: Events that may be an attack in progress: logged as warnings.
WARNING_EVENTS = frozenset({REFRESH_REUSE_DETECTED})

logger = logging.getLogger(__name__)


def record_event(
    db_session: Session | scoped_session,  # type: ignore[type-arg]
    event_type: str,
    *,
    now: datetime,
    client: ClientInfo,
    user_id: int | None = None,
    session_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an event to the caller's transaction and log one line; the caller commits."""
    db_session.add(
        AuthEvent(
            at=now,
            type=event_type,
            user_id=user_id,
            session_id=session_id,
            ip=client.ip,
            user_agent=client.user_agent,
            detail=detail,
        )
    )
    logger.log(
        logging.WARNING if event_type in WARNING_EVENTS else logging.INFO,
        "auth event %s user=%s session=%s ip=%s",
        event_type,
        user_id,
        session_id,
        client.ip,
    )
