"""Flask-JWT-Extended serving the same JSON routes as the service, for the bench to compare.

`app`: stateless `@jwt_required()` (a signature check, no revocation lookup). `blocklist_app`:
the same routes with the database blocklist of Flask-JWT-Extended's documentation (Blocklist
and Token Revoking): a `TokenBlocklist` model in Flask-SQLAlchemy, queried by the token's `jti`
in a `token_in_blocklist_loader` on every request. `python bench/fjx_app.py` creates its table
(the documentation's `db.create_all()`), which the bench runs before serving it.
Installed in the bench environment only (`make bench` installs it), never a dependency of the
extension.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask import jsonify
from flask_jwt_extended import create_access_token
from flask_jwt_extended import get_jwt_identity
from flask_jwt_extended import jwt_required
from flask_jwt_extended import JWTManager
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = os.environ["SECRET_KEY"]
JWTManager(app)


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


def with_installed_drivers(url: str) -> str:
    """`url` with the drivers the bench installs, psycopg 3 and PyMySQL, where it names none
    (SQLAlchemy's defaults, psycopg2 and mysqlclient, are not installed): the same drivers as
    the other apps, without this app importing the extension."""
    parsed = sa.make_url(url)
    drivers = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}
    drivers |= {"mariadb": "mariadb+pymysql"}
    drivername = drivers.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=drivername).render_as_string(hide_password=False)


# Flask-JWT-Extended's documented database blocklist, on the bench's database.
blocklist_app = Flask(__name__)
blocklist_app.config.update(
    JWT_SECRET_KEY=os.environ["SECRET_KEY"],
    SQLALCHEMY_DATABASE_URI=with_installed_drivers(os.environ["DATABASE_URL"]),
)
blocklist_jwt = JWTManager(blocklist_app)
db = SQLAlchemy(blocklist_app)


class TokenBlocklist(db.Model):  # type: ignore[name-defined,misc]
    """A revoked token's `jti`, indexed: the documentation's model."""

    id: Mapped[int] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(sa.String(36), index=True)
    created_at: Mapped[datetime]


def check_if_token_revoked(jwt_header: dict[str, Any], jwt_payload: dict[str, Any]) -> bool:
    """The documentation's `token_in_blocklist_loader`: one query by `jti` per request."""
    jti = jwt_payload["jti"]
    revoked = db.session.execute(db.select(TokenBlocklist.id).filter_by(jti=jti)).scalar()
    return revoked is not None


# Called, not applied as a decorator: typed the same with Flask-JWT-Extended installed or not.
blocklist_jwt.token_in_blocklist_loader(check_if_token_revoked)
for rule, view in (("/healthz", health), ("/token", token), ("/api/hello", hello)):
    blocklist_app.add_url_rule(rule, view_func=view)


if __name__ == "__main__":
    with blocklist_app.app_context():
        db.create_all()
