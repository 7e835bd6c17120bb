"""Use cases about accounts: register, authenticate, change password, deactivate.

Registration and the password change are the built-in users table's: a host that keeps its
own users keeps its own sign-up and password changes, and those routes are off.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any
from typing import NoReturn

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy import select

from . import audit
from .errors import AccessDenied
from .errors import BadCredentials
from .errors import Conflict
from .errors import InvalidRequest
from .errors import NotFound
from .models import User
from .password_formats import is_argon2id
from .password_formats import verify_stored_hash
from .revocation import revoke_all_sessions
from .revocation import revoke_other_sessions
from .settings import AuthSettings
from .state import AuthState
from .state import ClientInfo
from .tokens import UserKey
from .users import EMAIL_FIELD
from .users import UserModel
from .validation import canonical_email
from .validation import checked_email
from .validation import checked_role

#: The longest login value looked up (threat: giant keys in the rate-limit store and the log).
MAX_LOGIN_LENGTH = 320


def require_builtin_users(state: AuthState, what: str) -> None:
    """NotFound (404) saying `what` is off when the host keeps its own users."""
    if not state.users.builtin:
        raise NotFound(f"{what} is off: this app keeps its own users and their passwords")


def require_column(state: AuthState, column: Any, name: str, what: str) -> None:
    """NotFound saying `what` is off when the user model has no `name` column."""
    if column is None:
        raise NotFound(f"{what} is off: the user model has no {name} column")


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
    """Create an active user of the built-in table; Conflict if the email is taken. Commits."""
    require_builtin_users(state, "registration")
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
    audit.record_event(state, audit.REGISTER, now=now, client=client, user_id=user.id)
    db_session.commit()
    return user


def login_value(users: UserModel, credentials: dict[str, Any]) -> tuple[str, str]:
    """(field, value) of the one login field `credentials` names; InvalidRequest otherwise."""
    named = [field for field in users.login_fields if field in credentials]
    if len(named) != 1:
        raise InvalidRequest(f"send one of: {', '.join(users.login_fields)}, and password")
    field, value = named[0], credentials[named[0]]
    if not isinstance(value, str):
        raise InvalidRequest(f"{field}: must be a string")
    if not value.strip() or len(value) > MAX_LOGIN_LENGTH:
        raise InvalidRequest(f"{field}: must be 1 to {MAX_LOGIN_LENGTH} characters")
    return field, canonical_email(value) if field == EMAIL_FIELD else value


def find_user(state: AuthState, field: str, value: str) -> Any:
    """The user whose `field` is `value`; None if none or several are.

    Emails compare canonically: the built-in table stores them so; a host's column is compared
    case-insensitively (a table too large for that needs an index on `lower(email)`).
    """
    users = state.users
    column = users.login_columns[field]
    if users.builtin:
        return state.session.scalar(select(users.model).where(column == value))
    if field == EMAIL_FIELD:
        condition = sa.func.lower(column) == value.lower()
    else:
        condition = column == value
    found = list(state.session.scalars(select(users.model).where(condition).limit(2)))
    if len(found) == 2:  # spellings the host keeps apart: only the exact one matches
        exact = [user for user in found if _spelled(getattr(user, field)) == _spelled(value)]
        return exact[0] if len(exact) == 1 else None
    return found[0] if found else None


def _spelled(value: Any) -> str:
    return unicodedata.normalize("NFKC", str(value)).strip()


def authenticate(
    state: AuthState, *, credentials: dict[str, Any], client: ClientInfo, now: datetime
) -> Any:
    """The active user with these credentials (a login field and `password`).

    Raises BadCredentials with one message for every failure, after the same password work,
    and commits a `login_failed` event first. Leaves a successful login uncommitted: a hash
    it upgraded (argon2 profile, or AUTH_UPGRADE_PASSWORD_HASHES) is written with the session.
    """
    users = state.users
    if not users.allows_password_login:
        raise NotFound("password login is off: the user model has no check_password or hash")
    field, value = login_value(users, credentials)
    password = credentials.get("password")
    if not isinstance(password, str):
        raise InvalidRequest("password: must be a string")
    user = find_user(state, field, value)
    matches = _password_matches(state, user, password)
    if user is None or not matches or not users.is_active(user):
        reason = (
            f"unknown_{field}"
            if user is None
            else ("wrong_password" if not matches else "inactive")
        )
        user_id = users.key_of(user) if user is not None else None
        fail_login(state, user_id=user_id, reason=reason, client=client, now=now)
    _upgrade_hash(state, user, password)
    return user


def _password_matches(state: AuthState, user: Any, password: str) -> bool:
    """Whether `password` is the user's, after the work a check costs even without a user."""
    users, passwords = state.users, state.passwords
    if users.builtin:
        return passwords.verify(user.password_hash if user else None, password)
    if user is None:
        passwords.spend_a_check()
        return False
    if users.checks_password:
        # The host's own check: its hash format, its pepper; the extension never writes it.
        return passwords.timed_check(lambda: bool(user.check_password(password)))
    stored = getattr(user, users.password_column.key)  # type: ignore[union-attr]
    if not isinstance(stored, str):
        passwords.spend_a_check()
        return False
    return passwords.timed_check(lambda: verify_stored_hash(stored, password))


def _upgrade_hash(state: AuthState, user: Any, password: str) -> None:
    users, passwords = state.users, state.passwords
    if users.builtin:
        if passwords.needs_rehash(user.password_hash):
            user.password_hash = passwords.hash(password)
        return
    column = users.password_column
    if users.checks_password or column is None or not state.settings.upgrade_password_hashes:
        return
    stored = getattr(user, column.key)
    if not is_argon2id(stored) or passwords.needs_rehash(stored):
        setattr(user, column.key, passwords.hash(password))


def fail_login(
    state: AuthState, *, user_id: UserKey | None, reason: str, client: ClientInfo, now: datetime
) -> NoReturn:
    """Roll back the attempt, commit a `login_failed` event, raise BadCredentials."""
    db_session = state.session
    db_session.rollback()
    audit.record_event(
        state,
        audit.LOGIN_FAILED,
        now=now,
        client=client,
        user_id=user_id,
        detail={"reason": reason},
    )
    db_session.commit()
    raise BadCredentials(f"invalid {' or '.join(state.users.login_fields)} or password")


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
    require_builtin_users(state, "the password change")
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


def user_by_login(state: AuthState, login: str) -> Any:
    """The user whom `login` names in one of the login fields, tried in order; NotFound
    otherwise."""
    users = state.users
    for field in users.login_fields:
        value = canonical_email(login) if field == EMAIL_FIELD else login
        user = find_user(state, field, value)
        if user is not None:
            return user
    raise NotFound(f"no user with {' or '.join(users.login_fields)} {login}")


def deactivate(state: AuthState, *, login: str, client: ClientInfo, now: datetime) -> int:
    """Block the user's logins and revoke all its sessions; the count revoked. Commits."""
    require_column(state, state.users.active_column, "is_active", "deactivation")
    user = user_by_login(state, login)
    user.is_active = False
    # Records user_deactivated, with the count of sessions it ended, in the same commit.
    return revoke_all_sessions(
        state, user_id=state.users.key_of(user), reason="deactivated", client=client, now=now
    )


def activate(state: AuthState, *, login: str, client: ClientInfo, now: datetime) -> Any:
    """Let a deactivated user log in again (its old sessions stay revoked). Commits."""
    require_column(state, state.users.active_column, "is_active", "activation")
    user = user_by_login(state, login)
    user.is_active = True
    audit.record_event(
        state, audit.USER_ACTIVATED, now=now, client=client, user_id=state.users.key_of(user)
    )
    state.session.commit()
    return user


def set_role(state: AuthState, *, login: str, role: str, client: ClientInfo, now: datetime) -> Any:
    """Give the user `role` (checked); it applies at the user's next request. Commits."""
    require_column(state, state.users.role_column, "role", "setting a role")
    user = user_by_login(state, login)
    previous, user.role = user.role, checked_role(role)
    audit.record_event(
        state,
        audit.ROLE_CHANGED,
        now=now,
        client=client,
        user_id=state.users.key_of(user),
        detail={"from": previous, "to": user.role},
    )
    state.session.commit()
    return user
