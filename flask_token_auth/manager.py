"""AuthManager: wires settings, keys, users, the blueprint, error handlers and the CLI into an
app, and is the Python API host code starts and ends sessions with."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from datetime import UTC
from typing import Any

from flask import Flask
from flask import has_request_context
from flask import Response
from flask_sqlalchemy import SQLAlchemy

from . import metrics
from . import revocation
from . import sessions
from .audit import publish_on_commit
from .blueprint import refuse_routes_under
from .cli import auth_cli
from .db import add_tables_to
from .decorators import request_claims
from .error_handlers import register_error_handlers
from .keys import load_key_set
from .passwords import PasswordHasher
from .ratelimit import RateLimits
from .settings import AuthSettings
from .settings import setting_defaults
from .state import auth_state
from .state import AuthState
from .state import ClientInfo
from .state import EXTENSION_KEY
from .tokens import AccessTokenVerifier
from .tokens import IssuedTokens
from .transactions import retried
from .transport import allow_trusted_origins
from .transport import allow_trusted_origins_under
from .transport import check_origin
from .transport import client_info
from .transport import token_response
from .transport import wants_body_transport
from .users import UserModel
from .views import blueprint
from .views import session_list


class AuthManager:
    """The Flask extension: `api_auth = AuthManager(db=db)`, then `api_auth.init_app(app)`.

    `db` is the host's Flask-SQLAlchemy instance: our tables join its metadata, so the host's
    `db.create_all()` and `flask db migrate` include them. Without `user_model` the extension
    keeps its own `users` table; with it (the host's mapped class, or its name on `db.Model`)
    the host's users sign in by any of `login_fields`, and `user_json` may shape what the API
    shows of them. `json_errors` renders every error of the app as JSON; without it only the
    auth routes and auth failures are.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy,
        user_model: type[Any] | str | None = None,
        login_fields: Sequence[str] | None = None,
        user_json: Callable[[Any], dict[str, Any]] | None = None,
        json_errors: bool = False,
    ) -> None:
        if not isinstance(db, SQLAlchemy):
            raise TypeError("AuthManager(db=...) takes the app's Flask-SQLAlchemy instance")
        if isinstance(login_fields, str):
            raise TypeError('login_fields takes a list of column names, e.g. ("email",)')
        if user_model is None and login_fields not in (None, ("email",), ["email"]):
            raise TypeError("login_fields needs user_model: the built-in users log in by email")
        self.db = db
        self.json_errors = json_errors
        self._user_model = user_model
        self._login_fields = tuple(login_fields or ("email",))
        self._user_json = user_json
        self._users: UserModel | None = None
        publish_on_commit(db.session)
        if user_model is None or not isinstance(user_model, str):
            self._resolve_users()
        if app is not None:
            self.init_app(app)

    def _resolve_users(self) -> UserModel:
        """The users, resolved once (a model named by a string, at the first init_app), with
        our tables added to the host's metadata."""
        if self._users is None:
            if self._user_model is None:
                users = UserModel.builtin_users()
                add_tables_to(self.db.metadata, [users.model.__table__, *users.tables.tables])
            else:
                users = UserModel.of_host(
                    self.db,
                    self._user_model,
                    login_fields=self._login_fields,
                    user_json=self._user_json,
                )
                add_tables_to(users.key.table.metadata, users.tables.tables)
            self._users = users
        return self._users

    def init_app(self, app: Flask) -> None:
        """Write each AUTH_* key's default into `app.config` where unset (`setdefault`), check
        the configuration (RuntimeError naming the key) and register everything.

        Before or after the host's `db.init_app(app)`; once per app. A route of the host's
        under AUTH_URL_PREFIX is refused here, or at the first request if registered later.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "AuthManager.init_app: this app is already set up; call init_app once per app."
            )
        for key, default in setting_defaults().items():
            app.config.setdefault(key, default)
        settings = AuthSettings.from_config(app.config)
        refuse_routes_under(app, settings.url_prefix)
        users = self._resolve_users()
        keys = load_key_set(settings)
        app.extensions[EXTENSION_KEY] = AuthState(
            settings=settings,
            keys=keys,
            access_tokens=AccessTokenVerifier(
                keys=keys,
                settings=settings,
                cache_size=settings.access_token_cache_size,
                parse_subject=users.parse_key,
            ),
            passwords=PasswordHasher(settings.argon2_profile),
            rate_limits=RateLimits(
                settings.rate_limits,
                storage_uri=settings.ratelimit_storage_uri,
                enabled=settings.ratelimit_enabled,
            ),
            db=self.db,
            users=users,
        )
        app.register_blueprint(blueprint, url_prefix=settings.url_prefix)
        allow_trusted_origins(app, settings)
        register_error_handlers(app, json_errors=self.json_errors)
        app.cli.add_command(auth_cli)
        _check_routes_at_first_request(app, settings.url_prefix)

    def allow_trusted_origins(self, app: Flask, *, paths: Sequence[str]) -> None:
        """CORS for the origins in AUTH_TRUSTED_ORIGINS on the app's own routes under `paths`
        too (path prefixes: `/api` is /api and what is under it, never /apiary), as on the auth
        routes: credentials allowed, `Authorization` and `Content-Type` headers, preflights
        answered, `Vary: Origin`. After `init_app`; nothing while no origin is listed."""
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, AuthState):
            raise RuntimeError(
                "AuthManager.allow_trusted_origins: call init_app(app) first; the origins are "
                "its AUTH_TRUSTED_ORIGINS."
            )
        if isinstance(paths, str):
            raise TypeError('paths takes a list of path prefixes, e.g. paths=["/api/"]')
        prefix = state.settings.url_prefix
        if not paths:
            raise ValueError('paths: no path given; name your routes\' prefixes, e.g. ["/api/"]')
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"paths: {path!r} is not a path; write one such as /api/")
            if path.rstrip("/") == prefix or path.startswith(prefix + "/"):
                raise ValueError(
                    f"paths: {path!r} is under AUTH_URL_PREFIX, whose routes answer its "
                    "trusted origins already; name your own routes' prefix"
                )
        allow_trusted_origins_under(app, state.settings, paths)

    # --- the Python API: host code starts and ends sessions itself ------------------------

    def start_session(self, user: Any) -> IssuedTokens:
        """A new session for `user` (an instance of the user model), whom the host verified
        its own way (an OAuth callback, its login form): its tokens, as a login issues them.

        Commits the request's database session, with what the host added to it first.
        AccessDenied if the user is not active; TypeError if it is not a user.
        """
        state = _prepared(user)
        with metrics.timed("login"):
            return retried(
                sessions.start_session, state, user, client=_client(), now=datetime.now(UTC)
            )

    def login_response(self, user: Any) -> Response:
        """What `POST /auth/login` would answer for `user` on this request: the Origin check,
        then cookies and CSRF for a browser or the body transport on `X-Token-Transport: body`,
        with `Cache-Control: no-store`. Call it from a view."""
        state = auth_state()
        check_origin(state)
        issued = self.start_session(user)
        response = token_response(
            state, issued, now=datetime.now(UTC), include_user=True, native=wants_body_transport()
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def revoke_sessions(self, user: Any, *, keep: str | None = None, reason: str = "host") -> int:
        """End every live session of `user` but the session id `keep`; how many ended.

        Committed before it returns (with what the host changed first, such as a new password).
        `reason` goes to the audit trail and the metrics: a short identifier.
        """
        if not isinstance(reason, str) or not reason.isidentifier() or len(reason) > 64:
            raise ValueError("reason: a short identifier, such as 'password_reset'")
        state = _prepared(user)
        user_id = state.users.key_of(user)
        now = datetime.now(UTC)
        if keep is None:
            return retried(
                revocation.revoke_all_sessions,
                state,
                user_id=user_id,
                reason=reason,
                client=_client(),
                now=now,
            )
        return retried(
            revocation.revoke_other_sessions,
            state,
            user_id=user_id,
            keep_session_id=keep,
            reason=reason,
            client=_client(),
            now=now,
        )

    def sessions(self, user: Any) -> list[dict[str, Any]]:
        """The live sessions of `user`, newest first, as `GET /auth/sessions` lists them."""
        state = auth_state()
        claims = request_claims() if has_request_context() else None
        return session_list(
            state,
            user_id=state.users.key_of(user),
            current_session_id=claims.session_id if claims else None,
        )


def _prepared(user: Any) -> AuthState:
    """The app's state, once `user` is known to be a user and the host's pending changes are
    committed (a retried use case rolls back only its own work)."""
    state = auth_state()
    state.users.key_of(user)
    state.session.commit()
    return state


def _client() -> ClientInfo:
    return client_info() if has_request_context() else ClientInfo()


def _check_routes_at_first_request(app: Flask, prefix: str) -> None:
    """Refuse, at the first request, a host route under `prefix` registered after init_app;
    the hook then removes itself, so the host's requests run none of our code."""

    def check_once() -> None:
        refuse_routes_under(app, prefix)
        hooks = app.before_request_funcs.get(None, [])
        # A new list: Flask may be iterating the old one right now.
        app.before_request_funcs[None] = [hook for hook in hooks if hook is not check_once]

    app.before_request_funcs.setdefault(None, []).append(check_once)
