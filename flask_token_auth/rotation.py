"""Refresh-token rotation: spend the presented token, hand out its successor, detect reuse.

Exactly one of any number of concurrent requests presenting one token rotates it; a replay in
the grace window of its own rotation gets the session's live token; any other replay is reuse,
which revokes the session.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import scoped_session

from . import audit
from .errors import InvalidGrant
from .revocation import revoke_session
from .sessions import add_refresh_token
from .sessions import issue_tokens
from .sessions import SESSION_OVER
from .state import AuthState
from .state import ClientInfo
from .tokens import IssuedTokens
from .tokens import refresh_token_hash
from .tokens import successor_refresh_token
from .tokens import UserKey
from .users import DEFAULT_ROLE
from .users import UserModel

#: How many rotations a grace replay may be behind the live token (tabs sharing one cookie jar
#: can rotate a few times inside the window; a longer chain is treated as reuse).
MAX_GRACE_ROTATIONS = 10


@dataclasses.dataclass(frozen=True)
class _Statements:
    find_token: sa.Select[Any]
    lock_user: sa.Select[Any]
    touch_live_session: sa.Update
    claim_token: sa.Update


@functools.cache
def _statements(users: UserModel) -> _Statements:
    """The statements of a rotation for `users`, built once (building them cost an eighth of a
    refresh). The lookup reads plain columns, only those a rotation uses: loading ORM objects
    cost twice the query, and a driver may parse each column's description in Python (PyMySQL
    does). A user model without `role` or `is_active` columns reads constants in their place.
    """
    sessions, tokens = users.tables.AuthSession, users.tables.RefreshToken
    session_table, token_table = sessions.__table__, tokens.__table__
    role = users.role_column if users.role_column is not None else sa.null()
    active = users.active_column if users.active_column is not None else sa.true()
    now = bindparam("now", type_=sessions.expires_at.type)
    return _Statements(
        find_token=select(
            token_table.c.id,
            token_table.c.user_id,
            token_table.c.session_id,
            token_table.c.expires_at,
            session_table.c.expires_at.label("session_expires_at"),
            session_table.c.revoked_at.label("session_revoked_at"),
            role.label("role"),
            active.label("is_active"),
        )
        .select_from(
            token_table.join(session_table, token_table.c.session_id == session_table.c.id).join(
                users.key.table, token_table.c.user_id == users.key
            )
        )
        .where(token_table.c.token_hash == bindparam("token_hash")),
        lock_user=select(users.key)
        .where(users.key == bindparam("user_id", type_=users.key.type))
        .with_for_update(read=True),
        touch_live_session=update(sessions)
        .where(sessions.id == bindparam("session_id"), sessions.live_at(now))
        .values(last_used_at=now),
        claim_token=update(tokens)
        .where(tokens.id == bindparam("token_id"), tokens.used_at.is_(None))
        .values(used_at=now),
    )


def rotate_refresh_token(
    state: AuthState, *, presented: object, client: ClientInfo, now: datetime
) -> IssuedTokens:
    """Spend `presented` and return its successor, in one transaction. Commits.

    Of concurrent requests presenting one token, the conditional UPDATE lets exactly one
    rotate it. A replay within the grace window of the token's own rotation gets the
    session's live token; any other replay revokes the session (committed) and raises
    InvalidGrant.
    """
    token_hash = refresh_token_hash(presented)
    assert isinstance(presented, str)  # noqa: S101 (refresh_token_hash checked it)
    db_session, users = state.session, state.users
    statements = _statements(users)
    _begin_read_committed(db_session)
    # Statements go to the transaction's connection: the ORM adds nothing to them.
    connection = db_session.connection()
    token = connection.execute(statements.find_token, {"token_hash": token_hash}).one_or_none()
    if token is None:
        raise InvalidGrant("the refresh token is invalid")
    session_live = users.tables.AuthSession.is_live(
        revoked_at=token.session_revoked_at, expires_at=token.session_expires_at, now=now
    )
    is_active, role = token.is_active, token.role or DEFAULT_ROLE
    if users.reads_instance:  # `is_active` or `role` is Python (Flask-Login's UserMixin)
        user = db_session.get(users.model, token.user_id)
        is_active, role = user is not None and users.is_active(user), users.role_of(user)
    if not session_live or not is_active:
        raise InvalidGrant(SESSION_OVER)
    if now >= token.expires_at:
        raise InvalidGrant("the refresh token has expired")
    # Locks in one order everywhere, users then auth_sessions then refresh_tokens, so that no
    # cycle forms with a logout (the session row) or a password change (the user row, then
    # the sessions): the successor's foreign keys would otherwise take them in reverse.
    # (SQLite has no row locks: it serialises writers, and this would be a plain read.)
    if connection.dialect.name != "sqlite":
        connection.execute(statements.lock_user, {"user_id": token.user_id})
    # Threat: a refresh outliving a concurrent logout. The session must still be live when
    # its row is locked; a revocation that committed first ends this refresh.
    touched = connection.execute(
        statements.touch_live_session, {"session_id": token.session_id, "now": now}
    ).rowcount
    if touched != 1:
        raise InvalidGrant(SESSION_OVER)
    # Threat: double spend. The row count of this UPDATE, not an earlier SELECT, decides.
    claimed = connection.execute(
        statements.claim_token, {"token_id": token.id, "now": now}
    ).rowcount
    if claimed == 1:
        successor = successor_refresh_token(presented, secret_key=state.settings.jwt_secret_key)
        successor_expires_at = min(now + state.settings.refresh_token_ttl, token.session_expires_at)
        add_refresh_token(
            state,
            successor,
            user_id=token.user_id,
            session_id=token.session_id,
            expires_at=successor_expires_at,
            now=now,
            parent_id=token.id,
        )
        grace = False
    else:
        successor, successor_expires_at = _replayed_successor(
            state,
            presented,
            token_id=token.id,
            user_id=token.user_id,
            session_id=token.session_id,
            client=client,
            now=now,
        )
        grace = True
    audit.record_event(
        state,
        audit.REFRESHED,
        now=now,
        client=client,
        user_id=token.user_id,
        session_id=token.session_id,
        detail={"grace": True} if grace else None,
    )
    db_session.commit()
    # Signed after the commit, from values read before it: SQLite's write lock (and the
    # servers' row locks) are not held while the access token is signed.
    return issue_tokens(
        state,
        user_id=token.user_id,
        role=role,
        public=None,
        session_id=token.session_id,
        refresh_token=successor,
        refresh_expires_at=successor_expires_at,
        now=now,
    )


def _begin_read_committed(db_session: scoped_session) -> None:  # type: ignore[type-arg]
    """Run the rotation at READ COMMITTED, whatever the engine's default.

    The loser of a race must see the winner's committed successor: REPEATABLE READ would hide
    it (MariaDB) or fail the loser (PostgreSQL). SQLite serialises writers and needs nothing.
    An engine already at READ COMMITTED (`engine_options()`) is left as it is: on MariaDB,
    setting the level and restoring it costs four round trips.
    """
    session = db_session()
    bind = session.get_bind()
    if session.in_transaction() or bind.dialect.name == "sqlite":
        return
    # What each new connection is set to; unknown until the engine's first connection.
    default = getattr(bind.dialect, "default_isolation_level", None)
    if bind.get_execution_options().get("isolation_level", default) != "READ COMMITTED":
        session.connection(execution_options={"isolation_level": "READ COMMITTED"})


def _replayed_successor(
    state: AuthState,
    presented: str,
    *,
    token_id: int,
    user_id: UserKey,
    session_id: str,
    client: ClientInfo,
    now: datetime,
) -> tuple[str, datetime]:
    """The session's live token and its expiry, if this replay of a spent token comes within
    the grace window of the token's own rotation (`used_at`, which replays never move).

    Otherwise it is reuse: revoke the session, commit that, and raise InvalidGrant.
    """
    db_session, tokens, sessions = (
        state.session,
        state.tables.RefreshToken,
        state.tables.AuthSession,
    )
    # Locking reads see the latest commit even in an older snapshot (a host transaction left
    # at REPEATABLE READ): the concurrent winner's successor must not look like reuse.
    used_at, revoked_at = db_session.execute(
        select(tokens.used_at, sessions.revoked_at)
        .join(sessions, tokens.session_id == sessions.id)
        .where(tokens.id == token_id)
        .with_for_update()
    ).one()
    grace = state.settings.refresh_reuse_grace
    if (
        used_at is not None
        and revoked_at is None
        and grace.total_seconds() > 0
        and now - used_at <= grace
    ):
        live = _live_descendant(state, presented, session_id=session_id)
        if live is not None:
            return live
    # Committed before the 401: the failing request's rollback must not undo the revocation.
    revoke_session(
        state,
        user_id=user_id,
        session_id=session_id,
        reason="refresh_reuse_detected",
        client=client,
        now=now,
    )
    raise InvalidGrant("the refresh token was already used; the session has been revoked")


def _live_descendant(
    state: AuthState, token: str, *, session_id: str
) -> tuple[str, datetime] | None:
    """The unspent token the chain has reached from `token`, and its expiry.

    Each successor is derived from its predecessor with the server key, so the walk recomputes
    them and looks each up by its hash: nothing but hashes is stored. At most
    MAX_GRACE_ROTATIONS steps; None if the chain is longer, broken or of another session.
    """
    for _ in range(MAX_GRACE_ROTATIONS):
        step = _stored_successor(state, token, session_id=session_id)
        if step is None:
            return None
        token, used_at, expires_at = step
        if used_at is None:
            return token, expires_at
    return None


def _stored_successor(
    state: AuthState, token: str, *, session_id: str
) -> tuple[str, datetime | None, datetime] | None:
    """(successor, used_at, expires_at) of `token`'s successor in the session, derived under
    the current secret or, for a rotation that predates a key change, a fallback."""
    tokens = state.tables.RefreshToken
    for secret in state.settings.secret_keys:
        successor = successor_refresh_token(token, secret_key=secret)
        row = state.session.execute(
            select(tokens.used_at, tokens.expires_at)
            .where(
                tokens.token_hash == refresh_token_hash(successor),
                tokens.session_id == session_id,
            )
            .with_for_update()
        ).one_or_none()
        if row is not None:
            return successor, row.used_at, row.expires_at
    return None
