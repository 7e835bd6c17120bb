"""The blueprint and what it does around every request: JSON for unknown paths under its prefix,
the Origin check, no-store and nosniff. Its routes are in `views`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import current_app
from flask import request
from flask import Response
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound

from .error_handlers import register_error_handlers
from .state import auth_state
from .transport import check_origin


class _ExactPathBlueprint(Blueprint):
    """Its routes match their path exactly: `//refresh` is not `/refresh`, so that werkzeug
    builds no redirect from the Host header and `_unknown_path` answers a 404."""

    def add_url_rule(self, *args: Any, **options: Any) -> None:
        options.setdefault("merge_slashes", False)
        super().add_url_rule(*args, **options)


# Named apart from the "auth" blueprints many hosts already have.
blueprint = _ExactPathBlueprint("token_auth", __name__)
# JSON on the auth routes even when the host keeps its own error pages (json_errors=False).
register_error_handlers(blueprint, json_errors=True)


# Every method of RFC 9110 and PATCH: a path of ours answers each one in JSON.
_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


@blueprint.route("", methods=_METHODS, provide_automatic_options=False)
@blueprint.route("/", methods=_METHODS, provide_automatic_options=False)
@blueprint.route("/<path:unknown>", methods=_METHODS, provide_automatic_options=False)
def _unknown_path(unknown: str = "") -> Response:
    """JSON for paths under our prefix that no route matches (werkzeug tries this rule last),
    and 405 with `Allow` for a route asked with another method. A route of ours rather than an
    app-wide hook, so the host's own routes pay nothing for it."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _METHODS:
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.append(method)
    raise MethodNotAllowed(valid_methods=allowed) if allowed else NotFound()


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
