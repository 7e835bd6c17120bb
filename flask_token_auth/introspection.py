"""RFC 7662 token introspection: a resource server asks whether an access token is active now.

The answer runs the check of `@auth_required`, so a token whose session was revoked is
inactive at once. Resource servers authenticate with HTTP Basic, as AUTH_INTROSPECTION_CLIENTS
lists them.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from werkzeug.datastructures import Authorization
from werkzeug.datastructures import MultiDict

from .decorators import live_claims
from .errors import AuthError
from .errors import InvalidRequest
from .errors import InvalidToken
from .state import AuthState

FORM_MIMETYPE = "application/x-www-form-urlencoded"
# The digest an unknown client id is compared with, so that it costs what a wrong secret does.
_NO_CLIENT = bytes(hashlib.sha256().digest_size)


class InvalidClient(AuthError):
    """Client authentication failed (RFC 6749 section 5.2); the view adds the Basic challenge."""

    status_code = 401
    error = "invalid_client"


def authenticated_client(
    state: AuthState, authorization: Authorization | None, *, address: str
) -> str:
    """The client id of the request's HTTP Basic credentials if AUTH_INTROSPECTION_CLIENTS lists
    them. Raises InvalidClient, counted against `address` (AUTH_RATELIMIT_INTROSPECTION), or
    RateLimited once that address has failed too often."""
    state.rate_limits.check("introspection", address)
    client_id = authorization.username if authorization else None
    secret = authorization.password if authorization else None
    if authorization is None or authorization.type != "basic" or not client_id or secret is None:
        state.rate_limits.count("introspection", address)
        raise InvalidClient("authenticate with the client's id and secret (HTTP Basic)")
    expected = dict(state.settings.introspection_clients).get(client_id, _NO_CLIENT)
    # Threat: a timing oracle on the secret. Digests of the secret, compared in constant time.
    if not hmac.compare_digest(hashlib.sha256(secret.encode()).digest(), expected):
        state.rate_limits.count("introspection", address)
        raise InvalidClient("the client id or secret is wrong")
    return client_id


def presented_token(mimetype: str, form: MultiDict[str, str]) -> str:
    """The one `token` parameter of a form-encoded body (RFC 7662 section 2.1); InvalidRequest
    otherwise. `token_type_hint` is ignored: access tokens are the only kind introspected."""
    if mimetype != FORM_MIMETYPE:
        raise InvalidRequest(f"the body must be {FORM_MIMETYPE}, with a token parameter")
    tokens = form.getlist("token")
    if len(tokens) != 1 or not tokens[0]:
        raise InvalidRequest("send the token to introspect as one token parameter")
    return tokens[0]


def introspect(state: AuthState, token: str, *, now: datetime) -> dict[str, Any]:
    """RFC 7662 section 2.2: `{"active": false}` unless `token` is an access token that verifies
    and whose session is live now (the query of `@auth_required`); then its claims, with the
    role read just now. Raises TemporarilyUnavailable when the database cannot be asked."""
    try:
        claims = state.access_tokens.verify(token, now=now)
    except InvalidToken:
        return {"active": False}
    live = live_claims(state, claims, now=now)
    if live is None:
        return {"active": False}
    answer: dict[str, Any] = {
        "active": True,
        "token_type": "Bearer",
        "iss": state.settings.jwt_issuer,
        "aud": state.settings.jwt_audience,
        "sub": str(live.user_id),
        "sid": live.session_id,
        "role": live.role,  # as `current_claims.role`: read just now
        "jti": live.token_id,
        "iat": live.issued_at,
        "exp": live.expires_at,
    }
    if live.not_before is not None:
        answer["nbf"] = live.not_before
    return answer
