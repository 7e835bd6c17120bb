"""`@auth_required`, `current_user` and `current_claims` for any view."""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Iterable
from datetime import datetime
from datetime import UTC
from typing import cast
from typing import overload
from typing import ParamSpec
from typing import TypeVar

from flask import g
from flask import request
from werkzeug.local import LocalProxy

from .errors import InsufficientScope
from .errors import InvalidToken
from .errors import MalformedAuthorization
from .errors import MissingCredentials
from .models import User
from .sessions import check_session
from .state import auth_state
from .tokens import AccessClaims
from .tokens import verify_access_token

P = ParamSpec("P")
R = TypeVar("R")


def bearer_token_from_header() -> str | None:
    """The Bearer token of the request; None if there is no Authorization for Bearer.

    Raises MalformedAuthorization (400) for a malformed Bearer header (RFC 6750 section 3.1).
    """
    header = request.headers.get("Authorization")
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None  # another scheme carries no Bearer credentials: a plain challenge
    token = token.strip()
    if not token or " " in token:
        raise MalformedAuthorization("the Authorization header must be: Bearer <token>")
    return token


def verify_request_token(*, check_revocation: bool = True) -> AccessClaims:
    """Verify the request's access token and, by default, that its session is still live."""
    token = bearer_token_from_header()
    if token is None:
        raise MissingCredentials("an access token is required")
    state = auth_state()
    now = datetime.now(UTC)
    claims = verify_access_token(token, keys=state.keys, settings=state.settings, now=now)
    if check_revocation:
        role = check_session(state, session_id=claims.session_id, user_id=claims.user_id, now=now)
        if role is None:
            raise InvalidToken("the session of this access token has ended")
        g._auth_role = role
    g._auth_claims = claims
    return claims


@overload
def auth_required(view: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def auth_required(
    *, roles: Iterable[str] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def auth_required(
    view: Callable[P, R] | None = None, /, *, roles: Iterable[str] | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid access token of a live session, and one of `roles` if given.

    The role is read from the database with the session check, so a demotion applies at
    once. OPTIONS requests pass through (CORS preflight carries no credentials).
    """
    if isinstance(roles, str):
        raise TypeError('roles takes a list of role names, e.g. roles=["admin"]')
    allowed = frozenset(roles) if roles is not None else None

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if request.method != "OPTIONS":
                verify_request_token()
                if allowed is not None and g._auth_role not in allowed:
                    raise InsufficientScope(
                        "this resource needs one of the roles: " + ", ".join(sorted(allowed))
                    )
            return view(*args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def _current_claims() -> AccessClaims:
    claims = g.get("_auth_claims")
    if claims is None:
        raise RuntimeError("current_claims is only available inside an @auth_required view.")
    return cast(AccessClaims, claims)


def _current_user() -> User:
    """The user row of the request's token, loaded on first use and cached on `g`."""
    if "_auth_user" not in g:
        g._auth_user = auth_state().session.get(User, _current_claims().user_id)
    return cast(User, g._auth_user)


#: The verified claims of the request's access token.
current_claims: AccessClaims = cast(AccessClaims, LocalProxy(_current_claims))
#: The authenticated user, loaded from the database only if the view uses it.
current_user: User = cast(User, LocalProxy(_current_user))
