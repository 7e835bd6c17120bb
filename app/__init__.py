"""Token authentication for Flask: access JWTs and rotating, reuse-detecting refresh tokens."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask import jsonify
from flask_migrate import Migrate

from .db import db
from .db import normalise_database_url
from .decorators import auth_required
from .decorators import current_claims
from .decorators import current_user
from .manager import AuthManager

__all__ = ["AuthManager", "auth_required", "create_app", "current_claims", "current_user", "db"]

MIGRATIONS_DIRECTORY = str(Path(__file__).resolve().parent.parent / "migrations")


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """The reference service: config from `config.Config` (the environment), then `overrides`."""
    app = Flask(__name__, instance_relative_config=True)
    from config import Config  # the repository's config.py, read at call time

    app.config.from_object(Config)
    app.config.update(overrides or {})
    app.config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(app.config["DATABASE_URL"])
    AuthManager(app)
    Migrate(app, db, directory=MIGRATIONS_DIRECTORY, render_as_batch=True)
    _register_example_routes(app)
    return app


def _register_example_routes(app: Flask) -> None:
    """Two protected routes to try the extension with (see README)."""

    @app.get("/api/hello")
    @auth_required
    def hello() -> Any:
        return jsonify(message=f"hello, user {current_claims.user_id}")

    @app.get("/api/admin")
    @auth_required(roles=["admin"])
    def admin() -> Any:
        return jsonify(message=f"hello, admin {current_user.email}")

    @app.get("/healthz")
    def health() -> Any:
        return jsonify(status="ok")
