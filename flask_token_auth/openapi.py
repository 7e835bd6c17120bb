"""The OpenAPI 3.1 document of the blueprint, served at `<prefix>/openapi.json`.

A test keeps it equal to the registered routes; Schemathesis checks every answer against it.
"""

from __future__ import annotations

from typing import Any

from .accounts import MAX_LOGIN_LENGTH
from .devices import MAX_DEVICE_VALUE_LENGTH
from .settings import AuthSettings
from .tokens import REFRESH_TOKEN_BYTES
from .transport import CSRF_COOKIE
from .transport import CSRF_HEADER
from .transport import HOST_CSRF_COOKIE
from .transport import REFRESH_COOKIE
from .users import UserModel
from .validation import MAX_EMAIL_LENGTH

_ERROR = {"$ref": "#/components/schemas/Error"}
_TOKENS = {"$ref": "#/components/schemas/TokenResponse"}
_USER = {"$ref": "#/components/schemas/User"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_STRING = {"type": "string"}
_REFRESH_TOKEN = {"type": "string", "pattern": f"^[0-9a-f]{{{2 * REFRESH_TOKEN_BYTES}}}$"}
# What `validation.is_session_id` accepts (a test keeps the two equal); 64 is the column's length.
_SESSION_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "maxLength": 64}
_LOGIN_VALUE = {"type": "string", "maxLength": MAX_LOGIN_LENGTH}
_DEVICE = {"type": "string", "maxLength": MAX_DEVICE_VALUE_LENGTH}
_INTROSPECTION_REQUEST = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["token"],
                "properties": {"token": _STRING, "token_type_hint": _STRING},
            }
        }
    },
}
# RFC 7662 section 2.2: `active` alone when it is false.
_INTROSPECTION = {
    "type": "object",
    "required": ["active"],
    "properties": {
        "active": {"type": "boolean"},
        "token_type": {"const": "Bearer"},
        **{name: _STRING for name in ("iss", "aud", "sub", "sid", "role", "jti")},
        **{name: {"type": "integer"} for name in ("iat", "exp", "nbf")},
    },
}


def openapi_document(settings: AuthSettings, users: UserModel) -> dict[str, Any]:
    """The whole API under `settings.url_prefix`, for the app's users: a host's own users log
    in by its login fields, and registration and the password change are off (404) for them."""
    prefix = settings.url_prefix
    paths = _paths(settings, users.login_fields)
    if not users.builtin:
        del paths["/register"], paths["/password"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "flask-token-auth", "version": "1"},
        "paths": {f"{prefix}{path}": item for path, item in paths.items()},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
                # The cookie transport: the refresh cookie, and the CSRF header equal to the
                # CSRF cookie (docs/http-api.md#routes).
                "refreshCookie": {"type": "apiKey", "in": "cookie", "name": REFRESH_COOKIE},
                "csrfCookie": {"type": "apiKey", "in": "cookie", "name": _csrf_cookie(settings)},
                "csrfHeader": {"type": "apiKey", "in": "header", "name": CSRF_HEADER},
            },
            "schemas": _schemas() | ({} if users.builtin else {"User": _host_user(users)}),
        },
    }


def _csrf_cookie(settings: AuthSettings) -> str:
    """The CSRF cookie's name, by the rule of `transport.csrf_cookie_name` (a test keeps the
    two equal): `__Host-` where the cookies are Secure and host-only."""
    host_only = settings.cookie_secure and not settings.cookie_domain
    return HOST_CSRF_COOKIE if host_only else CSRF_COOKIE


def _cookie_credentials(settings: AuthSettings) -> list[dict[str, Any]]:
    """The cookie transport's parameters of /refresh and /logout: a browser sends the cookies
    by itself; the CSRF header is required with the refresh cookie, and only with it."""
    csrf_cookie = _csrf_cookie(settings)
    return [
        {
            "name": REFRESH_COOKIE,
            "in": "cookie",
            "required": False,
            "description": "The refresh token of the cookie transport (HttpOnly)",
            "schema": _REFRESH_TOKEN,
        },
        {
            "name": csrf_cookie,
            "in": "cookie",
            "required": False,
            "description": f"The CSRF value, sent with the {REFRESH_COOKIE} cookie",
            "schema": _STRING,
        },
        {
            "name": CSRF_HEADER,
            "in": "header",
            "required": False,
            "description": f"Required with the {REFRESH_COOKIE} cookie: the {csrf_cookie} value",
            "schema": _STRING,
        },
    ]


def _host_user(users: UserModel) -> dict[str, Any]:
    fields = {"id": {"type": ["integer", "string"]}, "role": _STRING}
    return {
        "type": "object",
        "required": list(fields),
        "properties": fields | {name: {} for name in users.login_fields},
    }


def _paths(settings: AuthSettings, login_fields: tuple[str, ...]) -> dict[str, Any]:
    # The checks of docs/http-api.md#input, so that a client learns them before a 400.
    new_password = {
        "type": "string",
        "minLength": settings.password_min_length,
        "maxLength": settings.password_max_length,
    }
    email = {"type": "string", "format": "email", "maxLength": MAX_EMAIL_LENGTH}
    credentials = _form({"email": email, "password": new_password}, required=True)
    login = _form({"email": _LOGIN_VALUE, "password": _STRING}, required=True)
    if login_fields != ("email",):  # one of the login fields, and the password
        login = _form(
            {name: _LOGIN_VALUE for name in login_fields} | {"password": _STRING}, required=False
        )
        schema = login["content"]["application/json"]["schema"]
        schema["required"] = ["password"]
        schema["oneOf"] = [{"required": [name]} for name in login_fields]
        login["required"] = True
    # A native client's device tokens, from its last login's answer (docs/security.md).
    login["content"]["application/json"]["schema"]["properties"]["device_token"] = _DEVICE
    refresh_token = _form({"refresh_token": _REFRESH_TOKEN}, required=False)
    cookie_credentials = _cookie_credentials(settings)
    return {
        "/register": {
            "post": _operation(
                "Create an account",
                body=credentials,
                answers={"201": _json({"type": "object", "properties": {"user": _USER}})},
            )
        },
        "/login": {
            "post": _operation(
                "Log in: open a session",
                body=login,
                transport=True,
                answers={"200": _json(_TOKENS)},
            )
        },
        "/refresh": {
            "post": _operation(
                "Rotate the refresh token (cookie and X-CSRF-Token, or the body)",
                body=refresh_token,
                transport=True,
                credential_parameters=cookie_credentials,
                answers={"200": _json(_TOKENS)},
            )
        },
        "/logout": {
            "post": _operation(
                "End this session (refresh cookie, body token or access token); idempotent",
                body=refresh_token,
                credential_parameters=cookie_credentials,
                # The access token, or the cookies and the CSRF header, or the body's token.
                security=[*_BEARER, {"refreshCookie": [], "csrfCookie": [], "csrfHeader": []}, {}],
                answers={"204": {"description": "logged out, cookies cleared"}},
            )
        },
        "/logout-all": {
            "post": _operation(
                "End every session of the user",
                bearer=True,
                answers={"204": {"description": "every session revoked"}},
            )
        },
        "/me": {
            "get": _operation(
                "The user and the session of the access token",
                bearer=True,
                answers={
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["user", "session_id"],
                            "properties": {"user": _USER, "session_id": _STRING},
                        }
                    )
                },
            )
        },
        "/sessions": {
            "get": _operation(
                "The user's live sessions",
                bearer=True,
                answers={
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["sessions"],
                            "properties": {
                                "sessions": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Session"},
                                }
                            },
                        }
                    )
                },
            )
        },
        "/sessions/{session_id}": {
            "delete": _operation(
                "Revoke one of the user's sessions",
                bearer=True,
                path_parameter=("session_id", _SESSION_ID),
                answers={"204": {"description": "revoked"}},
            )
        },
        "/password": {
            "post": _operation(
                "Change the password; every other session is revoked",
                bearer=True,
                body=_form(
                    {"current_password": _STRING, "new_password": new_password}, required=True
                ),
                answers={"204": {"description": "changed"}},
            )
        },
        "/jwks.json": {
            "get": _operation(
                "The public verification keys (empty for HMAC)",
                answers={
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["keys"],
                            "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
                        }
                    )
                },
            )
        },
        "/introspect": {
            "post": {
                **_operation(
                    "RFC 7662: whether an access token is active now (its session checked), for "
                    "the resource servers of AUTH_INTROSPECTION_CLIENTS; 404 when there are none",
                    body=_INTROSPECTION_REQUEST,
                    answers={"200": _json(_INTROSPECTION)},
                ),
                "security": [{"basic": []}],
            }
        },
        "/cookie-check": {
            "get": _operation(
                "Whether the refresh cookie came, with an X-CSRF-Token header bound to it "
                "(what a refresh needs), without rotating; 409 if it did not",
                answers={"204": {"description": "the browser keeps the session's cookies"}},
            )
        },
        "/client.js": {
            "get": _operation(
                "The browser client, an ES module",
                answers={"200": _text("text/javascript")},
            )
        },
        "/client.d.ts": {
            "get": _operation(
                "The browser client's TypeScript declarations",
                answers={"200": _text("application/typescript")},
            )
        },
        "/react.js": {
            "get": _operation(
                "The React binding of the browser client, an ES module importing `react`",
                answers={"200": _text("text/javascript")},
            )
        },
        "/react.d.ts": {
            "get": _operation(
                "The React binding's TypeScript declarations",
                answers={"200": _text("application/typescript")},
            )
        },
        "/openapi.json": {
            "get": _operation("This document", answers={"200": _json({"type": "object"})})
        },
    }


def _operation(
    summary: str,
    *,
    answers: dict[str, Any],
    body: dict[str, Any] | None = None,
    bearer: bool = False,
    transport: bool = False,
    path_parameter: tuple[str, dict[str, Any]] | None = None,
    credential_parameters: list[dict[str, Any]] | None = None,
    security: list[dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": answers | {"default": {"description": "an error", **_json(_ERROR)}},
    }
    parameters = []
    if transport:
        parameters.append(
            {
                "name": "X-Token-Transport",
                "in": "header",
                "required": False,
                "description": "`body`: the refresh token in the JSON, no cookies (native apps)",
                "schema": {"type": "string", "enum": ["body", "cookie"]},
            }
        )
    parameters += credential_parameters or []
    if path_parameter:
        name, schema = path_parameter
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    if bearer or security:
        operation["security"] = _BEARER if bearer else security
    return operation


def _form(fields: dict[str, Any], *, required: bool) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields}
    if required:
        schema["required"] = list(fields)
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "JSON", "content": {"application/json": {"schema": schema}}}


def _text(media_type: str) -> dict[str, Any]:
    return {"description": media_type, "content": {media_type: {"schema": _STRING}}}


def _schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["error", "error_description"],
            "properties": {"error": _STRING, "error_description": _STRING},
        },
        "User": {
            "type": "object",
            "required": ["id", "email", "role", "created_at"],
            "properties": {
                "id": {"type": "integer"},
                "email": _STRING,
                "role": _STRING,
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "TokenResponse": {
            "type": "object",
            "required": ["access_token", "token_type", "expires_in"],
            "properties": {
                "access_token": _STRING,
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer"},
                "refresh_token": _REFRESH_TOKEN,
                "csrf_token": _STRING,
                "device_token": _DEVICE,
                "user": _USER,
            },
        },
        "Session": {
            "type": "object",
            "required": ["id", "created_at", "last_used_at", "expires_at", "current"],
            "properties": {
                "id": _STRING,
                "created_at": {"type": "string", "format": "date-time"},
                "last_used_at": {"type": "string", "format": "date-time"},
                "expires_at": {"type": "string", "format": "date-time"},
                "user_agent": {"type": ["string", "null"]},
                "ip": {"type": ["string", "null"]},
                "current": {"type": "boolean"},
            },
        },
    }
