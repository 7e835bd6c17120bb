"""The extension in a minimal host serving the same JSON routes as the other bench apps: the
protected `/api/hello`, the stateless `/api/stateless`, and the unprotected `/healthz`.

A host that keeps no Flask session: the secret goes to AUTH_JWT_SECRET_KEY, and SECRET_KEY
stays unset, so Flask opens no cookie session on each request (see bench/results.md).
Its tables come from `flask db upgrade`, which the bench runs first.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy

from flask_token_auth import auth_required
from flask_token_auth import AuthManager
from flask_token_auth import configure_sqlite
from flask_token_auth import current_claims
from flask_token_auth import engine_options
from flask_token_auth.engines import register_url_schemes

db = SQLAlchemy()
auth = AuthManager(db=db)
app = Flask(__name__)
# The same URLs and drivers as the service's: `mysql://` and the like, PyMySQL and psycopg 3.
register_url_schemes()
url = os.environ["DATABASE_URL"]
app.config.update(
    SQLALCHEMY_DATABASE_URI=url,
    SQLALCHEMY_ENGINE_OPTIONS=engine_options(url),
    AUTH_JWT_SECRET_KEY=os.environ["SECRET_KEY"],
    # What the bench sets (run.py): plain http, no rate limits.
    AUTH_COOKIE_SECURE=os.environ.get("AUTH_COOKIE_SECURE", "true") == "true",
    AUTH_RATELIMIT_ENABLED=os.environ.get("AUTH_RATELIMIT_ENABLED", "true") == "true",
)
db.init_app(app)
with app.app_context():
    configure_sqlite(db.engine)
auth.init_app(app)


@app.get("/healthz")
def health() -> Any:
    return jsonify(status="ok")


@app.get("/api/hello")
@auth_required
def hello() -> Any:
    return jsonify(message=f"hello, user {current_claims.user_id}")


@app.get("/api/stateless")
@auth_required(stateless=True)
def hello_stateless() -> Any:
    return jsonify(message=f"hello, user {current_claims.user_id}")
