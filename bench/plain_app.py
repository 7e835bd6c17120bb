"""The bench's yardsticks: Flask alone serving the same JSON route as the others (`/healthz`),
and the floor of a write, one INSERT and its COMMIT on the bench's database (`/insert`), for a
refresh to be compared with."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask import jsonify

from flask_token_auth import configure_sqlite
from flask_token_auth import engine_options
from flask_token_auth.engines import register_url_schemes

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


@app.post("/insert")
def insert() -> Any:
    """One INSERT and its COMMIT: the least any write endpoint can cost on this database."""
    with engine.begin() as connection:
        connection.execute(floor.insert().values(value=os.urandom(16).hex()))
    return jsonify(status="ok")
