"""Use cases about sessions: login, a session the host starts itself, listing.

Rotating a refresh token is in `rotation`; revoking sessions (logout and the rest) in
`revocation`.
"""

from __future__ import annotations

import functools
import secrets
from datetime import datetime
from typing import Any
from typing import cast

import sqlalchemy as sa
from sqlalchemy import select

from . import audit
from .accounts import authenticate
from .accounts import fail_login
from .errors import AccessDenied
from .errors import InvalidGrant
from .models import AuthSessionColumns
from .models import AuthTables
from .state import AuthState
from .state import ClientInfo
from .tokens import issue_access_token
from .tokens import IssuedTokens
from .tokens import new_refresh_token
from .tokens import refresh_token_hash
from .tokens import UserKey

__all__ = ["IssuedTokens", "live_sessions", "login", "session_of_refresh_token", "start_session"]

SESSION_OVER = "the session has ended; log in again"


def login(
    state: AuthState, *, credentials: dict[str, Any], client: ClientInfo, now: datetime
) -> IssuedTokens:
    """Authenticate by a login field and password, open a session with its first refresh
    token. Commits."""
    user = authenticate(state, credentials=credentials, client=client, now=now)
    return _open_session(state, user, client=client, now=now, detail=None)


def start_session(
    state: AuthState, user: Any, *, client: ClientInfo, now: datetime
) -> IssuedTokens:
    """Open a session for `user`, whom the host verified its own way. Commits (the request's
    session, with whatever the host added to it). AccessDenied if the user is not active."""
    if not state.users.is_active(user):
        raise AccessDenied("this user is not active")
    return _open_session(state, user, client=client, now=now, detail={"by": "host"})


def _open_session(
    state: AuthState, user: Any, *, client: ClientInfo, now: datetime, detail: dict[str, Any] | None
) -> IssuedTokens:
    users, settings, db_session = state.users, state.settings, state.session
    user_id = users.key_of(user)
    verified = users.recheck_values(user)
    # Read before the commit, which expires the instance: reading it after costs a query.
    role, public = users.role_of(user), users.to_public(user)
    auth_session = state.tables.AuthSession(
        id=secrets.token_urlsafe(24),
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        expires_at=now + settings.session_ttl,
        user_agent=client.user_agent,
        ip=client.ip,
    )
    refresh_token = new_refresh_token()
    refresh_expires_at = min(now + settings.refresh_token_ttl, auth_session.expires_at)
    db_session.add(auth_session)
    add_refresh_token(
        state,
        refresh_token,
        user_id=user_id,
        session_id=auth_session.id,
        expires_at=refresh_expires_at,
        now=now,
    )
    audit.record_event(
        state,
        audit.LOGIN_SUCCEEDED,
        now=now,
        client=client,
        user_id=user_id,
        session_id=auth_session.id,
        detail=detail,
    )
    # Threat: a password change (or a deactivation, or the user's deletion) that commits while
    # this login is in flight. Read again under a lock, after the session row exists: either
    # the change waits for this commit and then revokes the new session, or it has committed
    # and this login fails.
    current = db_session.execute(
        select(*users.recheck_columns).where(users.key == user_id).with_for_update(read=True)
    ).one_or_none()
    if current is None or tuple(current) != verified:
        reason = "deleted" if current is None else users.recheck_failure(tuple(current))
        fail_login(state, user_id=user_id, reason=reason, client=client, now=now)
    issued = issue_tokens(
        state,
        user_id=user_id,
        role=role,
        public=public,
        session_id=auth_session.id,
        refresh_token=refresh_token,
        refresh_expires_at=refresh_expires_at,
        now=now,
    )
    db_session.commit()
    return issued


def add_refresh_token(
    state: AuthState,
    token: str,
    *,
    user_id: UserKey,
    session_id: str,
    expires_at: datetime,
    now: datetime,
    parent_id: int | None = None,
) -> None:
    """Insert the row of a new refresh token: its hash, never the token itself."""
    db_session = state.session
    db_session.flush()  # a login's new session row goes first: the token refers to it
    db_session.connection().execute(
        _insert_refresh_token(state.tables),
        {
            "token_hash": refresh_token_hash(token),
            "user_id": user_id,
            "session_id": session_id,
            "created_at": now,
            "expires_at": expires_at,
            "parent_id": parent_id,
        },
    )


@functools.cache
def _insert_refresh_token(tables: AuthTables) -> sa.Insert:
    # A Core INSERT, built once: the ORM's unit of work costs more than the row.
    return sa.insert(cast(sa.Table, tables.RefreshToken.__table__))


def issue_tokens(
    state: AuthState,
    *,
    user_id: UserKey,
    role: str,
    public: dict[str, Any] | None,
    session_id: str,
    refresh_token: str,
    refresh_expires_at: datetime,
    now: datetime,
) -> IssuedTokens:
    """The tokens to hand out, with `public` as what the answer shows of the user."""
    access_token = issue_access_token(
        keys=state.keys,
        settings=state.settings,
        user_id=user_id,
        role=role,
        session_id=session_id,
        now=now,
    )
    return IssuedTokens(
        access_token=access_token,
        expires_in=int(state.settings.access_token_ttl.total_seconds()),
        refresh_token=refresh_token,
        refresh_expires_at=refresh_expires_at,
        session_id=session_id,
        user=public,
    )


def session_of_refresh_token(state: AuthState, presented: object) -> tuple[str, UserKey] | None:
    """(session id, user id) of a known refresh token, spent or not; None if unknown."""
    try:
        token_hash = refresh_token_hash(presented)
    except InvalidGrant:
        return None
    tokens = state.tables.RefreshToken
    row = state.session.execute(
        select(tokens.session_id, tokens.user_id).where(tokens.token_hash == token_hash)
    ).one_or_none()
    return None if row is None else (row.session_id, row.user_id)


def live_sessions(state: AuthState, *, user_id: UserKey, now: datetime) -> list[AuthSessionColumns]:
    """The user's sessions that are neither revoked nor expired, newest first."""
    sessions = state.tables.AuthSession
    return list(
        state.session.scalars(
            select(sessions)
            .where(sessions.user_id == user_id, sessions.live_at(now))
            .order_by(sessions.created_at.desc(), sessions.id)
        )
    )
