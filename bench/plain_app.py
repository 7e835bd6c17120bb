"""The bench's yardsticks: Flask alone serving the same JSON route as the others (`/healthz`),
the same route after one `SELECT 1` on the bench's database (`/roundtrip`), the least any
per-request database check costs, the floor of a write, one INSERT and its COMMIT
(`/insert`), for a refresh to be compared with, and the floor of a login, one argon2
verification (`/argon2`)."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask import jsonify
from flask import request

from flask_token_auth import configure_sqlite
from flask_token_auth import engine_options
from flask_token_auth.engines import register_url_schemes
from flask_token_auth.passwords import PasswordHasher

app = Flask(__name__)
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


# A driver connection in autocommit, opened in the worker on its first request and kept.
roundtrip_engine = sa.create_engine(os.environ["DATABASE_URL"], isolation_level="AUTOCOMMIT")
kept: list[Any] = []


@app.get("/roundtrip")
def roundtrip() -> Any:
    """`/healthz` after one `SELECT 1` through the driver's cursor on a kept connection: what
    a session check pays for its round trip alone, whatever it asks."""
    if not kept:
        kept.append(roundtrip_engine.raw_connection().driver_connection)
    cursor = kept[0].cursor()
    cursor.execute("SELECT 1")
    cursor.fetchone()
    cursor.close()
    return jsonify(status="ok")


@app.post("/insert")
def insert() -> Any:
    """One INSERT and its COMMIT: the least any write endpoint can cost on this database."""
    with engine.begin() as connection:
        connection.execute(floor.insert().values(value=os.urandom(16).hex()))
    return jsonify(status="ok")


# The service's profile, and a hash made at start, as a user's is at registration.
hasher = PasswordHasher("rfc9106_low_memory")
password_hash = hasher.hash("correct horse battery")


@app.post("/argon2")
def argon2() -> Any:
    """One argon2 verification of the posted password: the least any login can cost."""
    password = request.get_json()["password"]
    return jsonify(verified=hasher.verify(password_hash, password))
