"""`@auth_required`, `current_user` and `current_claims` for any view."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from collections.abc import Iterable
from datetime import datetime
from datetime import UTC
from typing import Any
from typing import cast
from typing import overload
from typing import ParamSpec
from typing import TypeVar

from flask import current_app
from flask import g
from flask import request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import StatementError
from werkzeug.local import LocalProxy

from .engines import database_failure
from .errors import InsufficientScope
from .errors import InvalidToken
from .errors import MalformedAuthorization
from .errors import MissingCredentials
from .session_check import live_session_role
from .state import auth_state
from .state import AuthState
from .tokens import AccessClaims
from .users import DEFAULT_ROLE

P = ParamSpec("P")
R = TypeVar("R")
# Our names on `g`, prefixed so as not to meet the host's.
_CLAIMS = "_flask_token_auth_claims"
_USER = "_flask_token_auth_user"
_NOT_SET = object()


def bearer_token_from_header() -> str | None:
    """The Bearer token of the request; None if there is no Authorization for Bearer.

    Raises MalformedAuthorization (400) for a malformed Bearer header (RFC 6750 section 3.1).
    """
    # The WSGI environ's own key: what `request.headers` would read, without building it.
    header: str | None = request.environ.get("HTTP_AUTHORIZATION")
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None  # another scheme carries no Bearer credentials: a plain challenge
    token = token.strip()
    if not token or " " in token:
        raise MalformedAuthorization("the Authorization header must be: Bearer <token>")
    return token


def verify_request_token() -> AccessClaims:
    """The verified claims of the request's access token, whose session must be live and user
    active; the role in them is the one read from the database just now.

    Raises MissingCredentials, MalformedAuthorization, InvalidToken, or TemporarilyUnavailable
    when the database cannot be asked. Makes the claims `current_claims`.
    """
    state = auth_state()
    now = datetime.now(UTC)
    claims = live_claims(state, signed_request_claims(state, now=now), now=now)
    if claims is None:
        raise InvalidToken("the session of this access token has ended")
    setattr(g, _CLAIMS, claims)
    return claims


def live_claims(state: AuthState, claims: AccessClaims, *, now: datetime) -> AccessClaims | None:
    """`claims` with the role read from the database just now, if their session is live and
    the user active; None otherwise. TemporarilyUnavailable when the database cannot be asked."""
    role = _session_role(state, claims, now=now)
    if role is None:
        return None
    if state.users.role_column is not None:  # else the role of the login stands
        role = role or DEFAULT_ROLE
        if role != claims.role:
            claims = dataclasses.replace(claims, role=role)
    return claims


def signed_request_claims(state: AuthState, *, now: datetime) -> AccessClaims:
    """The claims of the request's access token, checked as a JWT only: whether its session
    still lives is not asked (logout uses it to name the session to end)."""
    token = bearer_token_from_header()
    if token is None:
        raise MissingCredentials("an access token is required")
    return state.access_tokens.verify(token, now=now)


def _stateless_claims() -> AccessClaims:
    claims = signed_request_claims(auth_state(), now=datetime.now(UTC))
    setattr(g, _CLAIMS, claims)
    return claims


def _session_role(state: AuthState, claims: AccessClaims, *, now: datetime) -> str | None:
    """The role if the session is live; a database failure is a TemporarilyUnavailable."""
    try:
        return live_session_role(
            state.db.engine,
            state.users,
            session_id=claims.session_id,
            user_id=claims.user_id,
            now=now,
            pgbouncer=state.settings.pgbouncer,
            pool_size=state.settings.session_check_pool_size,
        )
    except SQLAlchemyError as error:
        failure = database_failure(error)
        if failure is None:
            if isinstance(error, StatementError):  # on its way to the host's error log
                error.hide_parameters = True
            raise
        raise failure from None


@overload
def auth_required(view: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def auth_required(
    *, roles: Iterable[str] | None = None, optional: bool = False, stateless: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def auth_required(
    view: Callable[P, R] | None = None,
    /,
    *,
    roles: Iterable[str] | None = None,
    optional: bool = False,
    stateless: bool = False,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid access token of a live session, and one of `roles` if given.

    The role is read from the database with the session check, so a demotion applies at
    once, and `current_claims.role` is that role. With `optional`, a request without a Bearer
    token reaches the view with `current_claims` falsy; a bad token is still refused. Sync
    and async views alike; OPTIONS requests pass through (a CORS preflight has no credentials).

    `stateless`: the signature and claims only, no database query. It gives up "logout means
    logout" and live roles on that route: a revoked session's token, and the role in it, work
    there until the token expires (AUTH_ACCESS_TOKEN_TTL).
    """
    if isinstance(roles, str):
        raise TypeError('roles takes a list of role names, e.g. roles=["admin"]')
    if optional and roles is not None:
        raise TypeError("optional=True cannot require roles: a request without a token has none")
    allowed = frozenset(roles) if roles is not None else None

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        # Decided once: Flask's ensure_sync returns a plain function as it is.
        is_async = inspect.iscoroutinefunction(view)

        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if request.method != "OPTIONS":
                if optional and bearer_token_from_header() is None:
                    setattr(g, _CLAIMS, None)
                else:
                    claims = _stateless_claims() if stateless else verify_request_token()
                    if allowed is not None and claims.role not in allowed:
                        raise InsufficientScope(
                            "this resource needs one of the roles: " + ", ".join(sorted(allowed))
                        )
            if is_async:
                result: R = current_app.ensure_sync(view)(*args, **kwargs)
                return result
            return view(*args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def request_claims() -> AccessClaims | None:
    """The claims an `@auth_required` view of this request verified; None elsewhere."""
    claims = g.get(_CLAIMS)
    return claims if isinstance(claims, AccessClaims) else None


def _current_claims() -> AccessClaims | None:
    claims = g.get(_CLAIMS, _NOT_SET)
    if claims is _NOT_SET:
        raise RuntimeError("current_claims is only available inside an @auth_required view.")
    return cast(AccessClaims | None, claims)


def _current_user() -> Any:
    """The user of the request's token (an instance of the app's user model), loaded on first
    use and cached on `g`."""
    if _USER not in g:
        claims = _current_claims()
        state = auth_state()
        user = state.session.get(state.users.model, claims.user_id) if claims else None
        setattr(g, _USER, user)
    return getattr(g, _USER)


#: The verified claims of the request's access token (falsy in an optional view without one).
current_claims: AccessClaims = cast(AccessClaims, LocalProxy(_current_claims))
#: The authenticated user (the built-in `User`, or the host's model), loaded from the database
#: only if the view uses it.
current_user: Any = LocalProxy(_current_user)
