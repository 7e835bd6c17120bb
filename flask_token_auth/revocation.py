"""Revoking sessions: one, all of a user's, or all but one. Each records its event and commits.

A revoked session ends its refresh tokens and its access tokens at once: every refresh and
every protected request checks the session row. The event recorded is the one of the reason
(`audit.REVOCATION_EVENTS`), with the count revoked.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy import update

from . import audit
from .state import AuthState
from .state import ClientInfo
from .tokens import UserKey


def revoke_session(
    state: AuthState,
    *,
    user_id: UserKey,
    session_id: str,
    reason: str,
    client: ClientInfo,
    now: datetime,
) -> bool:
    """Revoke one live session of the user; False, and no event, if it is not one (unknown,
    another user's, already ended). Commits."""
    revoked = _revoke_record_commit(
        state,
        state.tables.AuthSession.id == session_id,
        user_id=user_id,
        session_id=session_id,
        reason=reason,
        client=client,
        now=now,
        record_none=False,
    )
    return revoked == 1


def revoke_all_sessions(
    state: AuthState,
    *,
    user_id: UserKey,
    reason: str,
    client: ClientInfo,
    now: datetime,
    current_session_id: str | None = None,
) -> int:
    """Revoke every live session of the user; the count. Records the event even when there
    was none to revoke (the action happened). Commits.

    `current_session_id` names, in the audit trail, the session the request came from.
    """
    _lock_user(state, user_id)
    return _revoke_record_commit(
        state,
        sa.true(),
        user_id=user_id,
        session_id=current_session_id,
        reason=reason,
        client=client,
        now=now,
        record_none=True,
    )


def revoke_other_sessions(
    state: AuthState,
    *,
    user_id: UserKey,
    keep_session_id: str,
    reason: str,
    client: ClientInfo,
    now: datetime,
) -> int:
    """Revoke every live session of the user but `keep_session_id` (named in the audit trail
    as the session the request came from); the count. Records the event always. Commits."""
    _lock_user(state, user_id)
    return _revoke_record_commit(
        state,
        state.tables.AuthSession.id != keep_session_id,
        user_id=user_id,
        session_id=keep_session_id,
        reason=reason,
        client=client,
        now=now,
        record_none=True,
    )


def _lock_user(state: AuthState, user_id: UserKey) -> None:
    """Lock the user's row before its sessions, in the order a refresh takes them.

    Threat: a login in flight outliving a revocation of every session, as an UPDATE sees only
    the sessions committed when it runs. A login holds the user row shared from its last
    check to its commit: the revocation waits for it and then sees its session.
    """
    users = state.users
    state.session.execute(select(users.key).where(users.key == user_id).with_for_update())


def _revoke_record_commit(
    state: AuthState,
    scope: sa.ColumnElement[bool],
    *,
    user_id: UserKey,
    session_id: str | None,
    reason: str,
    client: ClientInfo,
    now: datetime,
    record_none: bool,
) -> int:
    """Mark the user's live sessions within `scope` revoked, record the event of `reason`
    (unless none was and not `record_none`), and commit the whole transaction, with whatever
    the caller changed before."""
    db_session, sessions = state.session, state.tables.AuthSession
    revoked = int(
        db_session.execute(
            update(sessions)
            .where(sessions.user_id == user_id, sessions.live_at(now), scope)
            .values(revoked_at=now, revoked_reason=reason),
            execution_options={"synchronize_session": False},
        ).rowcount  # type: ignore[attr-defined]
    )
    if revoked or record_none:
        audit.record_event(
            state,
            audit.REVOCATION_EVENTS.get(reason, audit.SESSION_REVOKED),
            now=now,
            client=client,
            user_id=user_id,
            session_id=session_id,
            detail={"reason": reason, "sessions_revoked": revoked},
        )
    db_session.commit()
    return revoked
