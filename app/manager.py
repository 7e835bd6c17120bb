"""AuthManager: wires settings, keys, the blueprint, error handlers and the CLI into an app."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from .cli import auth_cli
from .db import configure_sqlite
from .db import db as default_db
from .db import engine_options
from .error_handlers import register_error_handlers
from .keys import load_key_set
from .passwords import PasswordHasher
from .ratelimit import RateLimits
from .settings import AuthSettings
from .state import AuthState
from .state import EXTENSION_KEY
from .views import blueprint


class AuthManager:
    """The Flask extension. `AuthManager(app)` or `auth = AuthManager(); auth.init_app(app)`.

    `db`: the host app's SQLAlchemy instance, if it has one (our tables are in `app.db.Base`'s
    metadata); by default ours, initialised on the app if it is not yet.
    `json_errors`: render every error of the app (404, 405, 500, ...) as JSON too.
    """

    def __init__(
        self, app: Flask | None = None, *, db: SQLAlchemy | None = None, json_errors: bool = True
    ) -> None:
        self._db = db
        self._json_errors = json_errors
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate the configuration (RuntimeError naming the key) and register everything."""
        settings = AuthSettings.from_config(app.config)
        database = self._db or default_db
        initialised = app.extensions.get("sqlalchemy")
        if initialised is not None and initialised is not database:
            raise RuntimeError(
                "AuthManager: this app already has its own SQLAlchemy instance; "
                "pass it as AuthManager(db=db)."
            )
        if initialised is None:
            url = app.config.get("SQLALCHEMY_DATABASE_URI")
            if url:
                # Ours under the host's: what the host sets wins, what it leaves out is ours.
                host_options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {})
                app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(url) | host_options
            database.init_app(app)
            with app.app_context():
                configure_sqlite(database.engine)
        app.extensions[EXTENSION_KEY] = AuthState(
            settings=settings,
            keys=load_key_set(settings),
            passwords=PasswordHasher(settings.argon2_profile),
            rate_limits=RateLimits(
                settings.rate_limits,
                storage_uri=settings.ratelimit_storage_uri,
                enabled=settings.ratelimit_enabled,
            ),
            db=database,
        )
        app.register_blueprint(blueprint, url_prefix=settings.url_prefix)
        register_error_handlers(app, json_errors=self._json_errors)
        app.cli.add_command(auth_cli)
