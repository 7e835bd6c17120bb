"""The one exception family; every failure the API shows is an AuthError."""

from __future__ import annotations


class AuthError(Exception):
    """A failure rendered as `{"error", "error_description"}` with `status_code`."""

    status_code = 400
    error = "invalid_request"
    #: Sent as RFC 6750 `WWW-Authenticate` when the failure is about an access token.
    bearer_challenge = False
    #: A definitive "session over": the client's refresh cookies are cleared.
    clears_cookies = False
    #: Seconds the client should wait before trying again, sent as `Retry-After`.
    retry_after: int | None = None

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidRequest(AuthError):
    """Malformed input: bad JSON, a missing or wrongly typed field, a malformed header."""


class MissingCredentials(AuthError):
    """No access token was sent (RFC 6750 section 3.1: a challenge with no error code)."""

    status_code = 401
    error = "missing_token"
    bearer_challenge = True


class InvalidToken(AuthError):
    """The access token is bad, expired, revoked or of the wrong type."""

    status_code = 401
    error = "invalid_token"
    bearer_challenge = True


class InsufficientScope(AuthError):
    """Authenticated, but the role does not allow this resource."""

    status_code = 403
    error = "insufficient_scope"
    bearer_challenge = True


class InvalidGrant(AuthError):
    """A refresh token that cannot be used: the session is over for this client."""

    status_code = 401
    error = "invalid_grant"
    clears_cookies = True


class BadCredentials(InvalidGrant):
    """A failed login. It ends nothing: other tabs' cookies stay (a mistyped password in one
    tab must not log the whole browser out)."""

    clears_cookies = False


class CsrfFailed(AuthError):
    """A cookie-authenticated request without a matching CSRF token or from a foreign origin."""

    status_code = 403
    error = "csrf_failed"


class AccessDenied(AuthError):
    """The caller may not do this (registration closed, wrong current password)."""

    status_code = 403
    error = "access_denied"


class NotFound(AuthError):
    status_code = 404
    error = "not_found"


class Conflict(AuthError):
    status_code = 409
    error = "conflict"


class TemporarilyUnavailable(AuthError):
    """The database cannot be reached; retry later."""

    status_code = 503
    error = "temporarily_unavailable"
    retry_after = 5


class SchemaMissing(AuthError):
    """The auth tables do not exist: a set-up mistake (run the migrations), not an outage."""

    status_code = 500
    error = "server_error"


class MalformedAuthorization(InvalidRequest):
    """An Authorization header for Bearer that is not `Bearer <token>`."""

    bearer_challenge = True


class RateLimited(AuthError):
    """Too many attempts; `retry_after` seconds until the next is counted."""

    status_code = 429
    error = "rate_limited"

    def __init__(self, description: str, *, retry_after: int, limit: str) -> None:
        super().__init__(description)
        self.retry_after: int | None = retry_after
        #: The name of the limit that was reached (login, refresh, ...).
        self.limit = limit
