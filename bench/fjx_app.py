"""Flask-JWT-Extended serving the same JSON routes as the service, for the bench to compare.

Stateless `@jwt_required()` (a signature check, no revocation lookup). Installed in the bench
environment only (`make bench` installs it), never a dependency of the extension.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask import jsonify
from flask_jwt_extended import create_access_token
from flask_jwt_extended import get_jwt_identity
from flask_jwt_extended import jwt_required
from flask_jwt_extended import JWTManager

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
