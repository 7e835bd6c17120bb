"""AuthManager: wires settings, keys, the blueprint, error handlers and the CLI into an app."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from .audit import publish_on_commit
from .cli import auth_cli
from .db import add_tables_to
from .engines import register_url_schemes
from .error_handlers import register_error_handlers
from .keys import load_key_set
from .passwords import PasswordHasher
from .ratelimit import RateLimits
from .settings import AuthSettings
from .state import AuthState
from .state import EXTENSION_KEY
from .tokens import AccessTokenVerifier
from .transport import allow_trusted_origins
from .views import blueprint


class AuthManager:
    """The Flask extension: `auth = AuthManager(db=db)`, then `auth.init_app(app)`.

    `db` is the host's Flask-SQLAlchemy instance: our four tables join its metadata here, so
    the host's `db.create_all()` and `flask db migrate` include them. `json_errors` renders
    every error of the app as JSON; without it only the auth routes and auth failures are.
    """

    def __init__(
        self, app: Flask | None = None, *, db: SQLAlchemy, json_errors: bool = False
    ) -> None:
        if not isinstance(db, SQLAlchemy):
            raise TypeError("AuthManager(db=...) takes the app's Flask-SQLAlchemy instance")
        self.db = db
        self.json_errors = json_errors
        register_url_schemes()
        add_tables_to(db.metadata)
        publish_on_commit(db.session)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Check the configuration (RuntimeError naming the key) and register everything.

        Before or after the host's `db.init_app(app)`; once per app.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "AuthManager.init_app: this app is already set up; call init_app once per app."
            )
        settings = AuthSettings.from_config(app.config)
        keys = load_key_set(settings)
        app.extensions[EXTENSION_KEY] = AuthState(
            settings=settings,
            keys=keys,
            access_tokens=AccessTokenVerifier(
                keys=keys, settings=settings, cache_size=settings.access_token_cache_size
            ),
            passwords=PasswordHasher(settings.argon2_profile),
            rate_limits=RateLimits(
                settings.rate_limits,
                storage_uri=settings.ratelimit_storage_uri,
                enabled=settings.ratelimit_enabled,
            ),
            db=self.db,
        )
        app.register_blueprint(blueprint, url_prefix=settings.url_prefix)
        allow_trusted_origins(app, settings)
        register_error_handlers(app, json_errors=self.json_errors)
        app.cli.add_command(auth_cli)
