"""Failures as `{"error", "error_description"}` JSON, never an HTML page or a trace."""

from __future__ import annotations

import logging
import traceback

from flask import Blueprint
from flask import Flask
from flask import jsonify
from flask import request
from flask import Response
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import default_exceptions
from werkzeug.exceptions import HTTPException

from . import metrics
from .engines import database_failure
from .engines import describe_database_error
from .errors import AuthError
from .errors import MissingCredentials
from .errors import RateLimited
from .errors import TemporarilyUnavailable
from .events import AuthEventRecord
from .events import publish
from .events import RATE_LIMITED
from .state import auth_state
from .transport import clear_token_cookies

REALM = "api"
_HTTP_ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}
logger = logging.getLogger(__name__)


def render_auth_error(error: AuthError) -> Response:
    """The JSON error, the RFC 6750 challenge where it applies, cookies cleared if final."""
    response = jsonify(error=error.error, error_description=error.description)
    response.status_code = error.status_code
    metrics.count_refusal(error.error)
    if isinstance(error, RateLimited):
        publish(
            [
                AuthEventRecord(
                    type=RATE_LIMITED, ip=request.remote_addr, detail={"limit": error.limit}
                )
            ]
        )
    if isinstance(error, MissingCredentials):
        response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
    elif error.bearer_challenge:
        # RFC 6750 section 3: no '"' or '\\' inside the quoted error_description.
        description = error.description.replace('"', "'").replace("\\", "/")
        response.headers["WWW-Authenticate"] = (
            f'Bearer realm="{REALM}", error="{error.error}", error_description="{description}"'
        )
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    if error.clears_cookies:
        clear_token_cookies(response, auth_state())
    return _with_our_headers(response)


def render_http_exception(error: HTTPException) -> Response:
    code = error.code or 500
    response = jsonify(
        error=_HTTP_ERROR_CODES.get(code, "http_error"), error_description=error.description
    )
    response.status_code = code
    for name, value in error.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def render_unexpected_error(error: Exception) -> Response:
    """An HTTP error, a database failure (503, or 500 naming a missing table), or a bug (500)."""
    if isinstance(error, HTTPException):
        return render_http_exception(error)
    failure = database_failure(error)
    if isinstance(failure, TemporarilyUnavailable):
        auth_state().discard_session()
    if failure is not None:
        return render_auth_error(failure)
    if isinstance(error, sa_exc.StatementError):
        # Threat: a token hash or an email copied from the statement's parameters into a log.
        error.hide_parameters = True
    if isinstance(error, sa_exc.DBAPIError):
        # Threat: a value of our tables (a token hash) quoted in the server's own message,
        # `DETAIL: Key (token_hash)=(...)`: the code and the frames, never the text.
        frames = "".join(traceback.format_tb(error.__traceback__))
        logger.error("unhandled %s\n%s", describe_database_error(error), frames)
    else:
        logger.error("unhandled %s", type(error).__name__, exc_info=error)
    response = jsonify(error="server_error", error_description="an unexpected error occurred")
    response.status_code = 500
    return _with_our_headers(response)


def _with_our_headers(response: Response) -> Response:
    """`response` with `no-store` and `nosniff`, set here rather than left to the blueprint's
    hook: these answers are ours on the host's routes too, and on any path that skips it."""
    # Threat: an answer about credentials kept by a shared cache or the browser's history.
    response.headers["Cache-Control"] = "no-store"
    # Threat: a browser sniffing a JSON answer into HTML or script.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def register_error_handlers(scope: Flask | Blueprint, *, json_errors: bool) -> None:
    """AuthError always; every other error too when `json_errors`.

    Flask looks in a blueprint's handlers before the app's, so a scope gets the whole set; but
    it looks for a status code's handlers (the host's `errorhandler(404)`) before any class's,
    so HTTP errors are registered by code too.
    """
    scope.register_error_handler(AuthError, render_auth_error)
    if json_errors:
        scope.register_error_handler(HTTPException, render_http_exception)
        for code in default_exceptions:
            scope.register_error_handler(code, render_http_exception)
        scope.register_error_handler(Exception, render_unexpected_error)
