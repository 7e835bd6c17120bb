"""The reference service: the extension in a Flask app, used exactly as any host uses it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

import config
from flask_token_auth import AuthManager
from flask_token_auth import configure_sqlite
from flask_token_auth import engine_options

from .routes import demo

__all__ = ["api_auth", "create_app", "db", "migrate"]

MIGRATIONS_DIRECTORY = str(Path(__file__).resolve().parent.parent / "migrations")

db = SQLAlchemy()
migrate = Migrate()
# The service is an API: every error page, not only the auth routes', is JSON.
api_auth = AuthManager(db=db, json_errors=True)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """The service configured from the environment (`config.py`), then `overrides`."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(config.from_environment())
    app.config.update(overrides or {})
    url = app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    # AUTH_PGBOUNCER is checked when init_app reads it; the engine needs it first.
    pgbouncer = app.config.get("AUTH_PGBOUNCER") is True
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(url, pgbouncer=pgbouncer))
    db.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine)
    migrate.init_app(app, db, directory=MIGRATIONS_DIRECTORY, render_as_batch=True)
    api_auth.init_app(app)
    app.register_blueprint(demo)
    # A page on an origin of AUTH_TRUSTED_ORIGINS calls /api/ too; nothing while none is listed.
    api_auth.allow_trusted_origins(app, paths=["/api/"])
    return app
