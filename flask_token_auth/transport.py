"""How tokens travel: JSON bodies, the refresh and CSRF cookies, and the checks cookies need."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote
from urllib.parse import urlsplit

from flask import current_app
from flask import Flask
from flask import jsonify
from flask import request
from flask import Response
from flask_cors import CORS
from werkzeug.http import dump_cookie
from werkzeug.sansio.utils import host_is_trusted

from .errors import CsrfFailed
from .errors import InvalidRequest
from .sessions import IssuedTokens
from .settings import AuthSettings
from .state import AuthState
from .state import ClientInfo
from .tokens import csrf_token_for
from .tokens import tokens_match
from .validation import checked_form
from .validation import is_storable
from .validation import printable

REFRESH_COOKIE = "refresh_token"
CSRF_COOKIE = "csrf_token"
#: The CSRF cookie's name where it is Secure and host-only: no sibling subdomain can set it.
HOST_CSRF_COOKIE = "__Host-csrf_token"
CSRF_HEADER = "X-CSRF-Token"
TRANSPORT_HEADER = "X-Token-Transport"
MAX_USER_AGENT_LENGTH = 512
CORS_MAX_AGE_SECONDS = 600
#: What a page may ask of the host's routes opted in (`AuthManager.allow_trusted_origins`).
HOST_CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
HOST_CORS_HEADERS = ["Authorization", "Content-Type"]
DEFAULT_PORTS = {"http": 80, "https": 443}


def client_info() -> ClientInfo:
    """The request's address and user agent (behind a proxy, wrap the app in ProxyFix)."""
    user_agent = request.headers.get("User-Agent")
    return ClientInfo(
        ip=request.remote_addr,
        user_agent=printable(user_agent)[:MAX_USER_AGENT_LENGTH] if user_agent else None,
    )


def client_key() -> str:
    """What per-client rate limits count by: the client's address."""
    return request.remote_addr or "unknown"


def json_object(*, required: bool = True) -> dict[str, Any]:
    """The request body as a flat JSON object that every database can store; {} when optional
    and empty. InvalidRequest otherwise (see `validation.checked_form`)."""
    if not required and not request.get_data(cache=True):
        return {}
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the parser's own limit, about a thousand levels
        raise InvalidRequest("the body is nested far too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object sent as application/json")
    return checked_form(body)


def wants_body_transport() -> bool:
    """Native clients ask for the refresh token in the body, and get no cookies."""
    return request.headers.get(TRANSPORT_HEADER, "").strip().lower() == "body"


@dataclasses.dataclass(frozen=True)
class PresentedRefreshToken:
    value: str = dataclasses.field(repr=False)
    #: Came in the HttpOnly cookie: the answer must go back in cookies, never in the body.
    from_cookie: bool


def refresh_token_from_request(
    state: AuthState, body: dict[str, Any]
) -> PresentedRefreshToken | None:
    """The presented refresh token: the body's, else the cookie's after the CSRF check."""
    if "refresh_token" in body:
        token = body["refresh_token"]
        if not isinstance(token, str):
            raise InvalidRequest("refresh_token: must be a string")
        return PresentedRefreshToken(token, from_cookie=False)
    token = request.cookies.get(REFRESH_COOKIE)
    if token is None:
        return None
    _check_csrf(state, token)
    return PresentedRefreshToken(token, from_cookie=True)


def allow_trusted_origins(app: Flask, settings: AuthSettings) -> None:
    """CORS for the origins in AUTH_TRUSTED_ORIGINS, on the auth routes only: credentials
    allowed, each origin named (never `*`), preflights answered. Nothing when none is listed."""
    if not settings.trusted_origins:
        return
    CORS(
        app,
        # Anchored: flask-cors matches from the start only, and /authors is not ours.
        resources={re.escape(settings.url_prefix) + r"(/.*)?\Z": {}},
        origins=sorted(settings.trusted_origins),
        supports_credentials=True,
        allow_headers=["Content-Type", "Authorization", CSRF_HEADER, TRANSPORT_HEADER],
        methods=["GET", "POST", "DELETE"],
        max_age=CORS_MAX_AGE_SECONDS,
        # Leave the host's exception handling alone: every auth answer passes after_request.
        intercept_exceptions=False,
    )


def allow_trusted_origins_under(app: Flask, settings: AuthSettings, paths: Sequence[str]) -> None:
    """CORS for AUTH_TRUSTED_ORIGINS on the host's routes under `paths` too, as on the auth
    routes (which keep their own): credentials allowed, each origin named, preflights
    answered, and `Vary: Origin` on every answer there. Nothing when no origin is listed."""
    if not settings.trusted_origins:
        return
    under = "|".join(re.escape(path) + (".*" if path.endswith("/") else "(/.*)?") for path in paths)
    auth_routes = re.escape(settings.url_prefix) + r"(/|\Z)"
    covered = re.compile(rf"(?!{auth_routes})(?:{under})\Z", re.DOTALL)
    CORS(
        app,
        # Compiled: every flask-cors release then matches it alike, case included.
        resources={covered: {}},
        origins=sorted(settings.trusted_origins),
        supports_credentials=True,
        allow_headers=HOST_CORS_HEADERS,
        methods=HOST_CORS_METHODS,
        max_age=CORS_MAX_AGE_SECONDS,
        always_send=False,  # a request without Origin is no CORS request
        vary_header=False,  # added below, to every answer: flask-cors skips it for one origin
        intercept_exceptions=False,
    )

    def vary_by_origin(response: Response) -> Response:
        # Threat: a cache handing the answer made for one origin (or none) to another.
        if covered.match(unquote(request.path)):
            response.vary.add("Origin")
        return response

    app.after_request(vary_by_origin)


def check_origin(state: AuthState) -> None:
    """403 csrf_failed for a request whose Origin is neither the app's own nor trusted.

    The app's own origins are its configured hosts (`configured_hosts`) on the request's
    scheme, never the host the request names. Threats: a cross-site page driving a
    state-changing request (CSRF, login CSRF, or a forced logout that clears cookies even when
    no cookie was sent), and a page on a rebound name (DNS rebinding), whose requests name its
    own host. Clients that send no Origin (native apps, curl) pass.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin.rstrip("/") in state.settings.trusted_origins:
        return
    hosts = configured_hosts(current_app.config)
    if not _is_own_origin(origin, hosts):
        raise CsrfFailed(_origin_refusal(origin, hosts))


def configured_hosts(config: Mapping[str, Any]) -> list[str]:
    """The hosts the app serves by its configuration: Flask's TRUSTED_HOSTS (read here under
    Flask 3.0 too, which ignores it) and SERVER_NAME, read at each request as Flask reads them.
    Entries are `host[:port]`; `.example.com` also admits every subdomain."""
    trusted = config.get("TRUSTED_HOSTS") or []
    hosts = [trusted] if isinstance(trusted, str) else list(trusted)
    server_name = config.get("SERVER_NAME")
    return [*hosts, server_name] if server_name else hosts


def _is_own_origin(origin: str, hosts: list[str]) -> bool:
    """Whether `origin` is one of `hosts` on this request's scheme, at the port its entry
    names, else at the port this request came to."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:  # a port that is not one
        return False
    if (
        parts.scheme != request.scheme
        or not parts.hostname
        or "@" in parts.netloc
        or origin.rstrip("/") != f"{parts.scheme}://{parts.netloc}"
    ):
        return False
    default_port = DEFAULT_PORTS.get(parts.scheme)
    # A rebound page targets our port anyway: only the name sets it apart, and the name must
    # come from the configuration. The port tells apart another service on one of our names.
    request_port = _port_in(request.host) or default_port
    origin_port = default_port if port is None else port
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    for host in hosts:
        _, has_port, port_text = host.partition(":")  # as Werkzeug splits a trusted host
        if has_port and not (port_text.isascii() and port_text.isdigit()):
            continue
        if origin_port == (int(port_text) if has_port else request_port) and host_is_trusted(
            hostname, [host]
        ):
            return True
    return False


def _port_in(host: str) -> int | None:
    """The port a `host[:port]` names, None if none (or none that is a port)."""
    try:
        return urlsplit(f"//{host}").port
    except ValueError:
        return None


def _origin_refusal(origin: str, hosts: list[str]) -> str:
    """What a refused Origin is told: what the app compared it with, and how to admit it."""
    refused = f"requests from the origin {_shown(origin)} are not allowed"
    if not hosts:
        return (
            f"{refused}: this app names no host of its own to compare it with; set TRUSTED_HOSTS "
            "(or SERVER_NAME) to the host names it serves, or list the origin in "
            "AUTH_TRUSTED_ORIGINS"
        )
    # Behind a proxy that rewrites Host, the origin here is not the browser's until ProxyFix
    # (x_host, x_proto) says so: the message shows which one the app saw.
    here = f"{request.scheme}://{request.host}"
    if _is_own_origin(here, hosts):
        seen = f"this app's own origin here is {_shown(here)}"
    else:
        seen = f"the host {_shown(request.host)} is not in TRUSTED_HOSTS or SERVER_NAME"
    return f"{refused} ({seen}); list it in AUTH_TRUSTED_ORIGINS, or behind a proxy apply ProxyFix"


def _shown(text: str) -> str:
    """Request text fit to echo in an error description."""
    return text[:200] if is_storable(text) and text.isprintable() else "?"


def csrf_cookie_name(state: AuthState) -> str:
    """`__Host-csrf_token` when the cookies are Secure and host-only (no AUTH_COOKIE_DOMAIN),
    else `csrf_token`.

    Threat: cookie tossing. A sibling subdomain can set a `refresh_token` cookie for our host
    (Domain=the parent), its own session's, with the CSRF value bound to it, to log the
    victim's browser into the attacker's session. It cannot set a `__Host-` cookie, and the
    CSRF value must be bound to the refresh token presented, so a tossed refresh cookie fails
    the check. The refresh cookie keeps its name: `__Host-` requires `Path=/`, and it is sent
    to the auth prefix only.
    """
    settings = state.settings
    return (
        HOST_CSRF_COOKIE if settings.cookie_secure and not settings.cookie_domain else CSRF_COOKIE
    )


def _check_csrf(state: AuthState, refresh_token: str) -> None:
    # Threat: CSRF. Double submit, bound to this refresh token, compared in constant time.
    header = request.headers.get(CSRF_HEADER, "")
    cookie_name = csrf_cookie_name(state)
    cookie = request.cookies.get(cookie_name, "")
    bound = any(
        tokens_match(header, csrf_token_for(refresh_token, secret_key=secret))
        for secret in state.settings.secret_keys  # a value made before a key change still binds
    )
    if not (header and tokens_match(header, cookie) and bound):
        raise CsrfFailed(f"the {CSRF_HEADER} header must equal the {cookie_name} cookie")


def token_response(
    state: AuthState,
    issued: IssuedTokens,
    *,
    now: datetime,
    include_user: bool,
    native: bool,
    extra: Mapping[str, str] | None = None,
) -> Response:
    """The token JSON (with the `extra` fields), the refresh token in the body (`native`) or in
    cookies (browser)."""
    body: dict[str, Any] = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        **(extra or {}),
    }
    if include_user:
        body["user"] = issued.user
    if native:
        body["refresh_token"] = issued.refresh_token
        return jsonify(body)
    csrf = csrf_token_for(issued.refresh_token, secret_key=state.settings.jwt_secret_key)
    # In the JSON too: a page on another origin cannot read the API host's cookie.
    body["csrf_token"] = csrf
    response = jsonify(body)
    max_age = max(0, int((issued.refresh_expires_at - now).total_seconds()))
    _set_cookie(response, state, REFRESH_COOKIE, issued.refresh_token, max_age=max_age)
    _set_cookie(response, state, csrf_cookie_name(state), csrf, max_age=max_age)
    return response


def clear_token_cookies(response: Response, state: AuthState) -> None:
    """Expire both cookies (only on a definitive end of the session)."""
    _set_cookie(response, state, REFRESH_COOKIE, "", max_age=0)
    _set_cookie(response, state, csrf_cookie_name(state), "", max_age=0)


def _set_cookie(
    response: Response, state: AuthState, name: str, value: str, *, max_age: int
) -> None:
    refresh = name == REFRESH_COOKIE
    add_cookie(
        response,
        state.settings,
        name,
        value,
        max_age=max_age,
        # The refresh token goes only to the auth endpoints and never to scripts (XSS);
        # the CSRF value must be readable by the page's scripts to be echoed in a header.
        path=state.settings.url_prefix if refresh else "/",
        httponly=refresh,
    )


def add_cookie(
    response: Response,
    settings: AuthSettings,
    name: str,
    value: str,
    *,
    max_age: int,
    path: str,
    httponly: bool,
) -> None:
    """Add a Set-Cookie header for `name` with the AUTH_COOKIE_* settings: Secure, SameSite,
    Domain, and Partitioned with AUTH_COOKIE_PARTITIONED."""
    header = dump_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=httponly,
        secure=settings.cookie_secure,
        samesite=settings.cookie_samesite,
        domain=settings.cookie_domain,
        max_size=response.max_cookie_size,
    )
    if settings.cookie_partitioned:
        header = add_partitioned_attribute(header)
    response.headers.add("Set-Cookie", header)


def add_partitioned_attribute(header: str) -> str:
    """`header` with the Partitioned attribute last, as Werkzeug 3.1 writes it: the
    `partitioned` argument of `dump_cookie` is new in 3.1, and 3.0 is supported."""
    return f"{header}; Partitioned"
