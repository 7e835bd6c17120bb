"""The blueprint and what it does around every request: JSON for unknown paths under its prefix,
OPTIONS and 405 naming a path's own methods, the Origin check, no-store and nosniff, the
transaction ended. Its routes are in `views`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import current_app
from flask import Flask
from flask import request
from flask import Response
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound
from werkzeug.exceptions import RequestEntityTooLarge

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
    allowed = _methods_of_path()
    raise MethodNotAllowed(valid_methods=allowed) if allowed else NotFound()


def _methods_of_path() -> list[str]:
    """The methods the request's path has routes for, `_unknown_path` aside: werkzeug's own
    list would name every method, since that rule matches every path."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _METHODS:
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != _UNKNOWN_PATH_ENDPOINT:
            allowed.append(method)
    return allowed


_UNKNOWN_PATH_ENDPOINT = f"{blueprint.name}.{_unknown_path.__name__}"


#: The largest body the auth routes read, whatever the host's MAX_CONTENT_LENGTH.
MAX_BODY_BYTES = 64 * 1024


@blueprint.before_request
def _limit_body_reject_foreign_origin() -> None:
    # Threat: memory and parsing cost of giant bodies, in a host that set no limit of its own.
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    try:
        request.max_content_length = min(
            request.max_content_length or MAX_BODY_BYTES, MAX_BODY_BYTES
        )
    except AttributeError:  # Flask 3.0: a chunked body is bounded by MAX_CONTENT_LENGTH only
        pass
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        check_origin(auth_state())


@blueprint.before_request
def _answer_options() -> Response | None:
    """Flask's automatic OPTIONS answer, with only the path's own methods in `Allow`.
    flask-cors adds its preflight headers to it in after_request, as to Flask's."""
    rule = request.url_rule
    if request.method != "OPTIONS" or not getattr(rule, "provide_automatic_options", False):
        return None
    response = current_app.response_class()
    response.allow.update(_methods_of_path())
    return response


def routes_under(app: Flask, prefix: str) -> list[str]:
    """The app's own routes at or under `prefix` (those of this blueprint aside)."""
    return [
        f"{rule.endpoint} {rule.rule}"
        for rule in app.url_map.iter_rules()
        if not rule.endpoint.startswith(f"{blueprint.name}.")
        and (rule.rule == prefix or rule.rule.startswith(f"{prefix}/"))
    ]


def refuse_routes_under(app: Flask, prefix: str) -> None:
    """RuntimeError if a route of the host's is at or under `prefix`: it would shadow an auth
    route, or an auth route it (a JSON 400 for the host's own login form)."""
    taken = routes_under(app, prefix)
    if taken:
        raise RuntimeError(
            f"AuthManager: the app's own routes are under the auth prefix {prefix!r} "
            f"({', '.join(taken[:3])}); set AUTH_URL_PREFIX to a path of its own, such as "
            "'/api/auth'."
        )


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


@blueprint.teardown_request
def _end_transaction(error: BaseException | None) -> None:
    """End what is left of the request's transaction (a read) before Flask-SQLAlchemy's
    teardown does: a connection the server closed after the answer was built (a restart, a
    failover) would fail that teardown's rollback into the server's HTML 500 for a request that
    succeeded. Here the failure is dropped with the connection."""
    state = auth_state()
    if not state.session.registry.has() or not state.session().in_transaction():
        return
    try:
        state.session.rollback()
    except SQLAlchemyError:
        state.discard_session()
