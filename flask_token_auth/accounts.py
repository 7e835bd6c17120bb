"""Use cases about accounts: register, authenticate, change password, deactivate."""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

from sqlalchemy import exc
from sqlalchemy import select

from . import audit
from .errors import AccessDenied
from .errors import BadCredentials
from .errors import Conflict
from .errors import InvalidRequest
from .errors import NotFound
from .models import User
from .revocation import revoke_all_sessions
from .revocation import revoke_other_sessions
from .settings import AuthSettings
from .state import AuthState
from .state import ClientInfo
from .validation import canonical_email
from .validation import checked_email
from .validation import checked_role

BAD_CREDENTIALS = "invalid email or password"


def check_new_password(password: object, settings: AuthSettings, *, field: str) -> str:
    """The password if its length is within policy; InvalidRequest naming `field` otherwise."""
    if not isinstance(password, str):
        raise InvalidRequest(f"{field}: must be a string")
    if len(password) < settings.password_min_length:
        raise InvalidRequest(f"{field}: must be at least {settings.password_min_length} characters")
    if len(password) > settings.password_max_length:
        raise InvalidRequest(f"{field}: must be at most {settings.password_max_length} characters")
    return password


def register(
    state: AuthState,
    *,
    email: object,
    password: object,
    role: str = "user",
    client: ClientInfo,
    now: datetime,
) -> User:
    """Create an active user; Conflict if the email is taken. Commits."""
    email = checked_email(email)
    role = checked_role(role)
    password = check_new_password(password, state.settings, field="password")
    db_session = state.session
    if db_session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists")
    user = User(
        email=email,
        password_hash=state.passwords.hash(password),
        role=role,
        is_active=True,
        created_at=now,
        password_changed_at=now,
    )
    db_session.add(user)
    try:
        db_session.flush()
    except exc.IntegrityError:  # a concurrent registration of the same email won
        db_session.rollback()
        raise Conflict("an account with this email already exists") from None
    audit.record_event(db_session, audit.REGISTER, now=now, client=client, user_id=user.id)
    db_session.commit()
    return user


def authenticate(
    state: AuthState, *, email: object, password: object, client: ClientInfo, now: datetime
) -> User:
    """The active user with these credentials, its hash upgraded if the profile changed.

    Raises BadCredentials with one message for every failure, after the same argon2 work,
    and commits a `login_failed` event first. Leaves a successful login uncommitted.
    """
    if not isinstance(password, str) or not isinstance(email, str):
        raise InvalidRequest("email and password: must be strings")
    db_session = state.session
    user = db_session.scalar(select(User).where(User.email == canonical_email(email)))
    matches = state.passwords.verify(user.password_hash if user else None, password)
    if user is None or not matches or not user.is_active:
        reason = (
            "unknown_email" if user is None else ("wrong_password" if not matches else "inactive")
        )
        fail_login(state, user_id=user.id if user else None, reason=reason, client=client, now=now)
    if state.passwords.needs_rehash(user.password_hash):
        user.password_hash = state.passwords.hash(password)
    return user


def fail_login(
    state: AuthState, *, user_id: int | None, reason: str, client: ClientInfo, now: datetime
) -> NoReturn:
    """Roll back the attempt, commit a `login_failed` event, raise BadCredentials."""
    db_session = state.session
    db_session.rollback()
    audit.record_event(
        db_session,
        audit.LOGIN_FAILED,
        now=now,
        client=client,
        user_id=user_id,
        detail={"reason": reason},
    )
    db_session.commit()
    raise BadCredentials(BAD_CREDENTIALS)


def change_password(
    state: AuthState,
    *,
    user_id: int,
    session_id: str,
    current_password: object,
    new_password: object,
    client: ClientInfo,
    now: datetime,
) -> None:
    """Replace the password and revoke every other session of the user. Commits.

    AccessDenied (403, so clients do not take it for an expired access token) on a wrong
    current password.
    """
    if not isinstance(current_password, str):
        raise InvalidRequest("current_password: must be a string")
    new_password = check_new_password(new_password, state.settings, field="new_password")
    db_session = state.session
    user = db_session.get(User, user_id)
    if user is None or not state.passwords.verify(user.password_hash, current_password):
        raise AccessDenied("the current password is incorrect")
    user.password_hash = state.passwords.hash(new_password)
    user.password_changed_at = now
    # Records password_changed, with the count of sessions it ended, in the same commit.
    revoke_other_sessions(
        state,
        user_id=user_id,
        keep_session_id=session_id,
        reason="password_changed",
        client=client,
        now=now,
    )


def user_by_email(state: AuthState, email: str) -> User:
    """The user with this email (compared canonically); NotFound otherwise."""
    user = state.session.scalar(select(User).where(User.email == canonical_email(email)))
    if user is None:
        raise NotFound(f"no user with email {email}")
    return user


def deactivate(state: AuthState, *, email: str, client: ClientInfo, now: datetime) -> int:
    """Block the user's logins and revoke all its sessions; the count revoked. Commits."""
    user = user_by_email(state, email)
    user.is_active = False
    # Records user_deactivated, with the count of sessions it ended, in the same commit.
    return revoke_all_sessions(state, user_id=user.id, reason="deactivated", client=client, now=now)


def activate(state: AuthState, *, email: str, client: ClientInfo, now: datetime) -> User:
    """Let a deactivated user log in again (its old sessions stay revoked). Commits."""
    user = user_by_email(state, email)
    user.is_active = True
    audit.record_event(state.session, audit.USER_ACTIVATED, now=now, client=client, user_id=user.id)
    state.session.commit()
    return user


def set_role(state: AuthState, *, email: str, role: str, client: ClientInfo, now: datetime) -> User:
    """Give the user `role` (checked); it applies at the user's next request. Commits."""
    user = user_by_email(state, email)
    previous, user.role = user.role, checked_role(role)
    audit.record_event(
        state.session,
        audit.ROLE_CHANGED,
        now=now,
        client=client,
        user_id=user.id,
        detail={"from": previous, "to": user.role},
    )
    state.session.commit()
    return user
