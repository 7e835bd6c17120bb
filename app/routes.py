"""The service's own routes: the demo page, two protected routes, a health check, metrics."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint
from flask import jsonify
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import generate_latest

from flask_token_auth import auth_required
from flask_token_auth import current_claims
from flask_token_auth import current_user

demo = Blueprint("demo", __name__)


DEMO_PAGE = Path(__file__).resolve().parent / "static" / "index.html"


@demo.get("/")
def index() -> Response:
    """The demo page: register, log in, call a protected route, sessions, log out."""
    return Response(DEMO_PAGE.read_bytes(), mimetype="text/html")


@demo.get("/api/hello")
@auth_required
def hello() -> Response:
    return jsonify(message=f"hello, user {current_claims.user_id}")


@demo.get("/api/stateless")
@auth_required(stateless=True)
def hello_stateless() -> Response:
    """The signature only, no session query: still answers after a logout (see docs/tokens.md)."""
    return jsonify(message=f"hello, user {current_claims.user_id}")


@demo.get("/api/admin")
@auth_required(roles=["admin"])
def admin() -> Response:
    return jsonify(message=f"hello, admin {current_user.email}")


@demo.get("/healthz")
def health() -> Response:
    return jsonify(status="ok")


@demo.get("/metrics")
def metrics() -> Response:
    """The extension's counters and histograms, in the Prometheus text format (per worker:
    set PROMETHEUS_MULTIPROC_DIR to add up several gunicorn workers)."""
    return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
