"""The bench's yardsticks: Flask-JWT-Extended serving the same JSON routes, and the floor of a
write, one INSERT and its COMMIT on the bench's database, for a refresh to be compared with.

Stateless `@jwt_required()` (a signature check, no revocation lookup). Installed in the bench
environment only (`make bench` installs it), never a dependency of the extension.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask import jsonify
from flask_jwt_extended import create_access_token
from flask_jwt_extended import get_jwt_identity
from flask_jwt_extended import jwt_required
from flask_jwt_extended import JWTManager

from flask_token_auth import configure_sqlite
from flask_token_auth import engine_options
from flask_token_auth.engines import register_url_schemes

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = os.environ["SECRET_KEY"]
JWTManager(app)
# The same URLs and engine settings as the service's own (WAL on SQLite, READ COMMITTED).
register_url_schemes()
engine = sa.create_engine(os.environ["DATABASE_URL"], **engine_options(os.environ["DATABASE_URL"]))
configure_sqlite(engine)
floor = sa.Table(
    "bench_floor",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.String(64)),
)
floor.create(engine, checkfirst=True)


@app.get("/healthz")
def health() -> Any:
    return jsonify(status="ok")


@app.get("/token")
def token() -> Any:
    return jsonify(access_token=create_access_token(identity="1"))


@app.get("/api/hello")
@jwt_required()  # type: ignore[untyped-decorator]
def hello() -> Any:
    return jsonify(message=f"hello, user {get_jwt_identity()}")


@app.post("/insert")
def insert() -> Any:
    """One INSERT and its COMMIT: the least any write endpoint can cost on this database."""
    with engine.begin() as connection:
        connection.execute(floor.insert().values(value=os.urandom(16).hex()))
    return jsonify(status="ok")
