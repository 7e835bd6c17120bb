"""The routes of docs/http-api.md: parse input, call a use case, shape the response."""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from datetime import UTC
from pathlib import Path
from typing import Any

from flask import jsonify
from flask import request
from flask import Response
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import NotFound

from . import accounts
from . import devices
from . import introspection
from . import metrics
from . import revocation
from . import rotation
from . import sessions
from .blueprint import blueprint
from .decorators import auth_required
from .decorators import bearer_token_from_header
from .decorators import current_claims
from .decorators import current_user
from .decorators import signed_request_claims
from .error_handlers import REALM
from .error_handlers import render_auth_error
from .errors import AccessDenied
from .errors import Conflict
from .errors import InvalidGrant
from .errors import InvalidToken
from .errors import NotFound as SessionNotFound
from .openapi import openapi_document
from .state import auth_state
from .state import AuthState
from .tokens import UserKey
from .transactions import retried
from .transport import clear_token_cookies
from .transport import client_info
from .transport import client_key
from .transport import json_object
from .transport import REFRESH_COOKIE
from .transport import refresh_token_from_request
from .transport import token_response
from .transport import wants_body_transport
from .validation import is_session_id

# The blueprint with its routes: importing it from here is what registers them.
__all__ = ["blueprint"]

STATIC_DIRECTORY = Path(__file__).resolve().parent / "static"
logger = logging.getLogger(__name__)


@blueprint.post("/register")
def register() -> tuple[Response, int]:
    state = auth_state()
    accounts.require_builtin_users(state, "registration")
    state.rate_limits.hit("register", client_key())
    if not state.settings.allow_registration:
        raise AccessDenied("registration is closed")
    body = json_object()
    user = retried(
        accounts.register,
        state,
        email=body.get("email"),
        password=body.get("password"),
        client=client_info(),
        now=datetime.now(UTC),
    )
    return jsonify(user=user.to_public()), 201


@blueprint.post("/login")
def login() -> Response:
    state = auth_state()
    state.rate_limits.hit("login", client_key())
    body = json_object()
    field, value = accounts.login_value(state.users, body)
    account = f"{field}:{value}"
    # Every attempt per account from one address; failures alone per account from all
    # addresses, where a browser that logged in before is exempt (docs/security.md).
    state.rate_limits.hit("login_address", f"{account} {client_key()}")
    sent = devices.sent_device_value(body)
    now = datetime.now(UTC)
    with devices.failures_limited(state, account, sent=sent, now=now), metrics.timed("login"):
        issued = retried(sessions.login, state, credentials=body, client=client_info(), now=now)
    native = wants_body_transport()
    if native:  # native clients get no cookies: their device token comes in the body
        device = devices.device_value(state, account, sent=sent, now=now)
        extra = {} if device is None else {devices.DEVICE_FIELD: device}
        return token_response(state, issued, now=now, include_user=True, native=True, extra=extra)
    response = token_response(state, issued, now=now, include_user=True, native=False)
    devices.remember_device(response, state, account, now=now)
    _revoke_replaced_session(state, now=now)
    return response


def _revoke_replaced_session(state: AuthState, *, now: datetime) -> None:
    """Revoke the session of the refresh cookie this login replaces, whoever's it was.

    Threat: a session that no browser holds any more, yet whose tokens (copied, or still in
    another tab's memory) keep working. Never fails the login: an error is logged only.
    """
    replaced = request.cookies.get(REFRESH_COOKIE)
    if replaced is None:
        return
    try:
        owner = sessions.session_of_refresh_token(state, replaced)
        if owner is not None:
            _end_session(state, owner, reason="replaced_by_login", now=now)
    except SQLAlchemyError as error:
        state.session.rollback()
        logger.warning(
            "login: the session it replaced was not revoked (%s); it ends at its expiry or "
            "at a logout-all",
            type(error).__name__,
        )


@blueprint.post("/refresh")
def refresh() -> Response:
    state = auth_state()
    state.rate_limits.hit("refresh", client_key())
    presented = refresh_token_from_request(state, json_object(required=False))
    if presented is None:
        raise InvalidGrant("no refresh token was sent")
    now = datetime.now(UTC)
    with metrics.timed("refresh"):
        issued = retried(
            rotation.rotate_refresh_token,
            state,
            presented=presented.value,
            client=client_info(),
            now=now,
        )
    # A token goes back the way it came, whatever the headers: one from the body in the body
    # (a native client that ignores Set-Cookie), one from the HttpOnly cookie in the cookie
    # (threat: XSS reading it from a body).
    return token_response(
        state, issued, now=now, include_user=False, native=not presented.from_cookie
    )


def _end_session(
    state: AuthState, owner: tuple[str, UserKey], *, reason: str, now: datetime
) -> None:
    """Revoke the session `owner` names (its id, its user's key) for `reason`."""
    session_id, user_id = owner
    retried(
        revocation.revoke_session,
        state,
        user_id=user_id,
        session_id=session_id,
        reason=reason,
        client=client_info(),
        now=now,
    )


@blueprint.post("/logout")
def logout() -> Response:
    """Revoke the session named by the refresh token, else by the access token; idempotent."""
    state = auth_state()
    now = datetime.now(UTC)
    presented = refresh_token_from_request(state, json_object(required=False))
    owner = sessions.session_of_refresh_token(state, presented.value) if presented else None
    if owner is None and bearer_token_from_header() is not None:
        try:
            # A second logout with the same access token still answers 204.
            claims = signed_request_claims(state, now=now)
        except InvalidToken:
            claims = None
        owner = (claims.session_id, claims.user_id) if claims else None
    if owner is not None:
        _end_session(state, owner, reason="logout", now=now)
    response = Response(status=204)
    clear_token_cookies(response, state)
    return response


@blueprint.post("/logout-all")
@auth_required
def logout_all() -> Response:
    state = auth_state()
    retried(
        revocation.revoke_all_sessions,
        state,
        user_id=current_claims.user_id,
        reason="logout_all",
        client=client_info(),
        now=datetime.now(UTC),
        current_session_id=current_claims.session_id,
    )
    response = Response(status=204)
    clear_token_cookies(response, state)
    return response


@blueprint.get("/me")
@auth_required
def me() -> Response:
    return jsonify(
        user=auth_state().users.to_public(current_user), session_id=current_claims.session_id
    )


@blueprint.get("/sessions")
@auth_required
def list_sessions() -> Response:
    return jsonify(
        sessions=session_list(
            auth_state(),
            user_id=current_claims.user_id,
            current_session_id=current_claims.session_id,
        )
    )


def session_list(
    state: AuthState, *, user_id: UserKey, current_session_id: str | None
) -> list[dict[str, Any]]:
    """The user's live sessions as the API lists them, newest first."""
    return [
        {
            "id": auth_session.id,
            "created_at": auth_session.created_at.isoformat(),
            "last_used_at": auth_session.last_used_at.isoformat(),
            "expires_at": auth_session.expires_at.isoformat(),
            "user_agent": auth_session.user_agent,
            "ip": auth_session.ip,
            "current": auth_session.id == current_session_id,
        }
        for auth_session in sessions.live_sessions(state, user_id=user_id, now=datetime.now(UTC))
    ]


@blueprint.delete("/sessions/<session_id>")
@auth_required
def revoke_session(session_id: str) -> Response:
    if not is_session_id(session_id) or not retried(
        revocation.revoke_session,
        auth_state(),
        user_id=current_claims.user_id,
        session_id=session_id,
        reason="revoked_by_user",
        client=client_info(),
        now=datetime.now(UTC),
    ):
        raise SessionNotFound("no such session")
    return Response(status=204)


@blueprint.post("/password")
@auth_required
def change_password() -> Response:
    state = auth_state()
    accounts.require_builtin_users(state, "the password change")
    state.rate_limits.hit("password", str(current_claims.user_id))
    body = json_object()
    retried(
        accounts.change_password,
        state,
        user_id=current_claims.user_id,
        session_id=current_claims.session_id,
        current_password=body.get("current_password"),
        new_password=body.get("new_password"),
        client=client_info(),
        now=datetime.now(UTC),
    )
    return Response(status=204)


@blueprint.get("/cookie-check")
def cookie_check() -> Response:
    """204 if the refresh cookie came, with the CSRF header bound to it: what a refresh needs,
    checked without rotating (the browser module asks after a login). 409 if it did not come:
    the browser refused it (a Secure cookie over http, a cookie of another site)."""
    if refresh_token_from_request(auth_state(), {}) is None:
        raise Conflict(
            "the refresh cookie did not come with this request: the browser refused it (a "
            "Secure cookie over http, or a cookie of another site) or was never sent one"
        )
    return Response(status=204)


@blueprint.get("/client.js")
def browser_client() -> Response:
    """The browser module (ES module, no dependencies); its types at client.d.ts."""
    return _static("client.js", "text/javascript")


@blueprint.get("/client.d.ts")
def browser_client_types() -> Response:
    return _static("client.d.ts", "application/typescript")


@blueprint.get("/react.js")
def react_binding() -> Response:
    """`AuthProvider` and `useAuth()` over client.js, an ES module that imports `react` by its
    bare name (an import map or a bundler resolves it); its types at react.d.ts."""
    return _static("react.js", "text/javascript")


@blueprint.get("/react.d.ts")
def react_binding_types() -> Response:
    return _static("react.d.ts", "application/typescript")


def _static(name: str, mimetype: str) -> Response:
    response = Response(_static_file(name), mimetype=mimetype)
    response.headers["Cache-Control"] = "no-cache"  # revalidate: a new version arrives at once
    return response


@functools.cache
def _static_file(name: str) -> bytes:
    return (STATIC_DIRECTORY / name).read_bytes()


@blueprint.get("/openapi.json")
def openapi() -> Response:
    state = auth_state()
    return jsonify(openapi_document(state.settings, state.users))


@blueprint.get("/jwks.json")
def jwks() -> Response:
    state = auth_state()
    response = jsonify(state.keys.jwks())
    max_age = int(state.settings.jwks_max_age.total_seconds())
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response


@blueprint.post("/introspect")
def introspect() -> Response:
    """RFC 7662 introspection for the resource servers of AUTH_INTROSPECTION_CLIENTS; none: 404."""
    state = auth_state()
    if not state.settings.introspection_clients:
        raise NotFound()
    try:
        introspection.authenticated_client(state, request.authorization, address=client_key())
    except introspection.InvalidClient as error:
        response = render_auth_error(error)
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
        return response
    token = introspection.presented_token(request.mimetype, request.form)
    return jsonify(introspection.introspect(state, token, now=datetime.now(UTC)))
