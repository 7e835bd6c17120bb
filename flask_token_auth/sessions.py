"""Use cases about sessions: login, refresh-token rotation, the session check, listing, pruning.

Revoking sessions (logout and the rest) is in `revocation`.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import scoped_session

from . import audit
from .accounts import authenticate
from .accounts import fail_login
from .errors import InvalidGrant
from .models import AuthSession
from .models import RefreshToken
from .models import User
from .revocation import revoke_session
from .state import AuthState
from .state import ClientInfo
from .tokens import issue_access_token
from .tokens import new_refresh_token
from .tokens import refresh_token_hash
from .tokens import successor_refresh_token

SESSION_OVER = "the session has ended; log in again"


@dataclasses.dataclass(frozen=True, kw_only=True)
class IssuedTokens:
    """What a login or a refresh hands to the client."""

    access_token: str = dataclasses.field(repr=False)
    expires_in: int
    refresh_token: str = dataclasses.field(repr=False)
    refresh_expires_at: datetime
    session_id: str
    user: User | None = None


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
    _add_refresh_token(
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
        fail_login(state, user_id=user_id, reason="password_changed", client=client, now=now)
    db_session.commit()
    return _issue(state, user, auth_session.id, refresh_token, refresh_expires_at, now=now)


def rotate_refresh_token(
    state: AuthState, *, presented: object, client: ClientInfo, now: datetime
) -> IssuedTokens:
    """Spend `presented` and return its successor, in one transaction. Commits.

    Of concurrent requests presenting one token, the conditional UPDATE lets exactly one
    rotate it. A replay within the grace window of the token's own rotation gets the same
    successor; any other replay revokes the session (committed) and raises InvalidGrant.
    """
    token_hash = refresh_token_hash(presented)
    assert isinstance(presented, str)  # noqa: S101 (refresh_token_hash checked it)
    db_session = state.session
    _begin_read_committed(db_session)
    row = db_session.execute(
        select(RefreshToken, AuthSession, User)
        .join(AuthSession, RefreshToken.session_id == AuthSession.id)
        .join(User, RefreshToken.user_id == User.id)
        .where(RefreshToken.token_hash == token_hash)
    ).one_or_none()
    if row is None:
        raise InvalidGrant("the refresh token is invalid")
    token, auth_session, user = row
    if not auth_session.is_live(now) or not user.is_active:
        raise InvalidGrant(SESSION_OVER)
    if now >= token.expires_at:
        raise InvalidGrant("the refresh token has expired")
    # Locks in one order everywhere, users then auth_sessions then refresh_tokens, so that no
    # cycle forms with a logout (the session row) or a password change (the user row, then
    # the sessions): the successor's foreign keys would otherwise take them in reverse.
    db_session.execute(select(User.id).where(User.id == user.id).with_for_update(read=True))
    # Threat: a refresh outliving a concurrent logout. The session must still be live when
    # its row is locked; a revocation that committed first ends this refresh.
    touched = db_session.execute(
        update(AuthSession)
        .where(AuthSession.id == auth_session.id, AuthSession.live_at(now))
        .values(last_used_at=now),
        execution_options={"synchronize_session": False},
    ).rowcount  # type: ignore[attr-defined]
    if touched != 1:
        raise InvalidGrant(SESSION_OVER)
    # Threat: double spend. The row count of this UPDATE, not an earlier SELECT, decides.
    claimed = db_session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
        .values(used_at=now),
        execution_options={"synchronize_session": False},
    ).rowcount  # type: ignore[attr-defined]
    if claimed == 1:
        successor = successor_refresh_token(presented, secret_key=state.settings.jwt_secret_key)
        successor_expires_at = min(now + state.settings.refresh_token_ttl, auth_session.expires_at)
        _add_refresh_token(
            db_session,
            successor,
            user_id=user.id,
            session_id=auth_session.id,
            expires_at=successor_expires_at,
            now=now,
            parent_id=token.id,
        )
        grace = False
    else:
        successor, successor_expires_at = _replayed_successor(
            state, token, presented, client=client, now=now
        )
        grace = True
    audit.record_event(
        db_session,
        audit.REFRESHED,
        now=now,
        client=client,
        user_id=user.id,
        session_id=auth_session.id,
        detail={"grace": True} if grace else None,
    )
    db_session.commit()
    return _issue(state, user, auth_session.id, successor, successor_expires_at, now=now)


def _add_refresh_token(
    db_session: scoped_session,  # type: ignore[type-arg]
    token: str,
    *,
    user_id: int,
    session_id: str,
    expires_at: datetime,
    now: datetime,
    parent_id: int | None = None,
) -> None:
    """Add the row of a new refresh token: its hash, never the token itself."""
    db_session.add(
        RefreshToken(
            token_hash=refresh_token_hash(token),
            user_id=user_id,
            session_id=session_id,
            created_at=now,
            expires_at=expires_at,
            parent_id=parent_id,
        )
    )


def _begin_read_committed(db_session: scoped_session) -> None:  # type: ignore[type-arg]
    """Run the rotation at READ COMMITTED, whatever the engine's default.

    The loser of a race must see the winner's committed successor: REPEATABLE READ would hide
    it (MariaDB) or fail the loser (PostgreSQL). SQLite serialises writers and needs nothing.
    """
    session = db_session()
    if session.get_bind().dialect.name != "sqlite" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "READ COMMITTED"})


def _replayed_successor(
    state: AuthState, token: RefreshToken, presented: str, *, client: ClientInfo, now: datetime
) -> tuple[str, datetime]:
    """The successor and its expiry if this replay of a spent token is within grace.

    Otherwise it is reuse: revoke the session, commit that, and raise InvalidGrant.
    """
    db_session = state.session
    # Locking reads see the latest commit even in an older snapshot (a host transaction left
    # at REPEATABLE READ): the concurrent winner's successor must not look like reuse.
    used_at, revoked_at = db_session.execute(
        select(RefreshToken.used_at, AuthSession.revoked_at)
        .join(AuthSession, RefreshToken.session_id == AuthSession.id)
        .where(RefreshToken.id == token.id)
        .with_for_update()
    ).one()
    child = db_session.execute(
        select(RefreshToken.token_hash, RefreshToken.used_at, RefreshToken.expires_at)
        .where(RefreshToken.parent_id == token.id)
        .with_for_update()
    ).one_or_none()
    grace = state.settings.refresh_reuse_grace
    # Only the immediate predecessor of the live token: its successor is still unspent.
    if (
        used_at is not None
        and revoked_at is None
        and grace.total_seconds() > 0
        and now - used_at <= grace
        and child is not None
        and child.used_at is None
    ):
        # Derived under the current secret, or under a fallback if the rotation predates it.
        for secret in state.settings.secret_keys:
            successor = successor_refresh_token(presented, secret_key=secret)
            if refresh_token_hash(successor) == child.token_hash:
                return successor, child.expires_at
    # Committed before the 401: the failing request's rollback must not undo the revocation.
    revoke_session(
        state,
        user_id=token.user_id,
        session_id=token.session_id,
        reason="refresh_reuse_detected",
        client=client,
        now=now,
    )
    raise InvalidGrant("the refresh token was already used; the session has been revoked")


def _issue(
    state: AuthState,
    user: User,
    session_id: str,
    refresh_token: str,
    refresh_expires_at: datetime,
    *,
    now: datetime,
) -> IssuedTokens:
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
        user=user,
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


# Built once: this runs on every protected request, and building it costs a third of the check.
_SESSION_STATUS = (
    select(AuthSession.revoked_at, AuthSession.expires_at, User.is_active, User.role)
    .join(User, AuthSession.user_id == User.id)
    .where(AuthSession.id == bindparam("session_id"), AuthSession.user_id == bindparam("user_id"))
)


def check_session(state: AuthState, *, session_id: str, user_id: int, now: datetime) -> str | None:
    """The user's current role if the session is live and the user active; else None.

    One primary-key query on the request's connection (Core, no ORM objects); runs on every
    protected request (logout means logout).
    """
    row = (
        state.session.connection()
        .execute(_SESSION_STATUS, {"session_id": session_id, "user_id": user_id})
        .one_or_none()
    )
    if row is None or row.revoked_at is not None or now >= row.expires_at or not row.is_active:
        return None
    role: str = row.role
    return role


def live_sessions(state: AuthState, *, user_id: int, now: datetime) -> list[AuthSession]:
    """The user's sessions that are neither revoked nor expired, newest first."""
    return list(
        state.session.scalars(
            select(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.live_at(now))
            .order_by(AuthSession.created_at.desc(), AuthSession.id)
        )
    )


def prune(state: AuthState, *, now: datetime) -> dict[str, int]:
    """Delete expired refresh tokens and ended (expired or revoked) sessions; counts. Commits.

    Spent tokens are kept until they expire: they are what reuse detection recognises.
    """
    db_session = state.session
    ended = or_(AuthSession.expires_at <= now, AuthSession.revoked_at.is_not(None))
    ended_ids = select(AuthSession.id).where(ended).scalar_subquery()
    tokens = db_session.execute(
        delete(RefreshToken).where(
            or_(RefreshToken.expires_at <= now, RefreshToken.session_id.in_(ended_ids))
        ),
        execution_options={"synchronize_session": False},
    ).rowcount  # type: ignore[attr-defined]
    sessions = db_session.execute(
        delete(AuthSession).where(ended), execution_options={"synchronize_session": False}
    ).rowcount  # type: ignore[attr-defined]
    db_session.commit()
    return {"refresh_tokens": int(tokens), "sessions": int(sessions)}
