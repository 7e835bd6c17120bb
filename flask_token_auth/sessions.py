"""Use cases about sessions: login, the session check, listing.

Rotating a refresh token is in `rotation`; revoking sessions (logout and the rest) in
`revocation`.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime
from typing import Any
from typing import cast

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import scoped_session

from . import audit
from .accounts import authenticate
from .accounts import fail_login
from .errors import InvalidGrant
from .models import AuthSession
from .models import RefreshToken
from .models import User
from .state import AuthState
from .state import ClientInfo
from .tokens import issue_access_token
from .tokens import new_refresh_token
from .tokens import refresh_token_hash

SESSION_OVER = "the session has ended; log in again"


@dataclasses.dataclass(frozen=True, kw_only=True)
class IssuedTokens:
    """What a login or a refresh hands to the client."""

    access_token: str = dataclasses.field(repr=False)
    expires_in: int
    refresh_token: str = dataclasses.field(repr=False)
    refresh_expires_at: datetime
    session_id: str
    #: The user as the API shows it (`User.to_public()`).
    user: dict[str, Any]


def login(
    state: AuthState, *, email: object, password: object, client: ClientInfo, now: datetime
) -> IssuedTokens:
    """Authenticate, open a session with its first refresh token. Commits."""
    user = authenticate(state, email=email, password=password, client=client, now=now)
    user_id, verified_change = user.id, user.password_changed_at
    settings = state.settings
    auth_session = AuthSession(
        id=secrets.token_urlsafe(24),
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        expires_at=now + settings.session_ttl,
        user_agent=client.user_agent,
        ip=client.ip,
    )
    refresh_token = new_refresh_token()
    refresh_expires_at = min(now + settings.refresh_token_ttl, auth_session.expires_at)
    db_session = state.session
    db_session.add(auth_session)
    add_refresh_token(
        db_session,
        refresh_token,
        user_id=user.id,
        session_id=auth_session.id,
        expires_at=refresh_expires_at,
        now=now,
    )
    audit.record_event(
        db_session,
        audit.LOGIN_SUCCEEDED,
        now=now,
        client=client,
        user_id=user.id,
        session_id=auth_session.id,
    )
    # Threat: a password change that commits while this login is in flight. Read again under
    # a lock, after the session row exists: either the change waits for this commit and then
    # revokes the new session, or it has committed and this login fails.
    current = db_session.execute(
        select(User.password_changed_at, User.is_active)
        .where(User.id == user_id)
        .with_for_update(read=True)
    ).one()
    if current.password_changed_at != verified_change or not current.is_active:
        reason = "inactive" if not current.is_active else "password_changed"
        fail_login(state, user_id=user_id, reason=reason, client=client, now=now)
    # Built before the commit, which expires the rows: reading them after costs a query each.
    issued = issue_tokens(state, user, auth_session.id, refresh_token, refresh_expires_at, now=now)
    db_session.commit()
    return issued


def add_refresh_token(
    db_session: scoped_session,  # type: ignore[type-arg]
    token: str,
    *,
    user_id: int,
    session_id: str,
    expires_at: datetime,
    now: datetime,
    parent_id: int | None = None,
) -> None:
    """Insert the row of a new refresh token: its hash, never the token itself."""
    db_session.flush()  # a login's new session row goes first: the token refers to it
    db_session.connection().execute(
        _INSERT_REFRESH_TOKEN,
        {
            "token_hash": refresh_token_hash(token),
            "user_id": user_id,
            "session_id": session_id,
            "created_at": now,
            "expires_at": expires_at,
            "parent_id": parent_id,
        },
    )


# A Core INSERT, built once: the ORM's unit of work costs more than the row.
_INSERT_REFRESH_TOKEN = sa.insert(cast(sa.Table, RefreshToken.__table__))


def issue_tokens(
    state: AuthState,
    user: User,
    session_id: str,
    refresh_token: str,
    refresh_expires_at: datetime,
    *,
    now: datetime,
) -> IssuedTokens:
    """The tokens to hand out. It reads `user`: call it before a commit expires a persistent
    one (a transient one, as rotation builds, can follow the commit)."""
    access_token = issue_access_token(
        keys=state.keys,
        settings=state.settings,
        user_id=user.id,
        role=user.role,
        session_id=session_id,
        now=now,
    )
    return IssuedTokens(
        access_token=access_token,
        expires_in=int(state.settings.access_token_ttl.total_seconds()),
        refresh_token=refresh_token,
        refresh_expires_at=refresh_expires_at,
        session_id=session_id,
        user=user.to_public(),
    )


def session_of_refresh_token(state: AuthState, presented: object) -> tuple[str, int] | None:
    """(session id, user id) of a known refresh token, spent or not; None if unknown."""
    try:
        token_hash = refresh_token_hash(presented)
    except InvalidGrant:
        return None
    row = state.session.execute(
        select(RefreshToken.session_id, RefreshToken.user_id).where(
            RefreshToken.token_hash == token_hash
        )
    ).one_or_none()
    return None if row is None else (row.session_id, row.user_id)


def live_sessions(state: AuthState, *, user_id: int, now: datetime) -> list[AuthSession]:
    """The user's sessions that are neither revoked nor expired, newest first."""
    return list(
        state.session.scalars(
            select(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.live_at(now))
            .order_by(AuthSession.created_at.desc(), AuthSession.id)
        )
    )
