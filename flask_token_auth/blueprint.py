"""The blueprint and what it does around every request: JSON for unknown paths under its prefix,
the Origin check, no-store and nosniff. Its routes are in `views`."""

from __future__ import annotations

from flask import Blueprint
from flask import request
from flask import Response
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound
from werkzeug.routing import RequestRedirect

from .error_handlers import register_error_handlers
from .error_handlers import render_http_exception
from .state import auth_state
from .transport import check_origin

# Named apart from the "auth" blueprints many hosts already have.
blueprint = Blueprint("token_auth", __name__)
# JSON on the auth routes even when the host keeps its own error pages (json_errors=False).
register_error_handlers(blueprint, json_errors=True)


@blueprint.before_app_request
def _json_for_unknown_auth_paths() -> Response | None:
    """Unknown paths and methods under our prefix answer JSON; the host's stay the host's."""
    error = request.routing_exception
    if error is None:
        return None
    if not _under_prefix(request.path):
        return None
    if isinstance(error, RequestRedirect):
        # `//refresh` or a trailing slash: no redirect built from the Host header, a 404.
        error = NotFound()
    if isinstance(error, NotFound | MethodNotAllowed):
        return _no_store_nosniff(render_http_exception(error))
    return None


@blueprint.before_request
def _reject_foreign_origin() -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        check_origin(auth_state())


@blueprint.after_request
def _no_store_nosniff(response: Response) -> Response:
    """On every answer under our prefix (auth failures on the host's routes get the same from
    `render_auth_error`): no app-wide hook, so the host's own routes pay nothing."""
    # Threat: tokens kept by a shared cache or the browser's history.
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    # Threat: a browser sniffing a JSON answer into HTML or script.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _under_prefix(path: str) -> bool:
    prefix = auth_state().settings.url_prefix
    return path == prefix or path.startswith(prefix + "/")
