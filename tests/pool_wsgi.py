"""The reference service with its engine's pool sized from the environment (POOL_SIZE,
MAX_OVERFLOW, POOL_TIMEOUT), for the connection-limit tests, never in production."""

from __future__ import annotations

import os

from app import create_app
from flask_token_auth import engine_options

pool = {
    "pool_size": int(os.environ["POOL_SIZE"]),
    "max_overflow": int(os.environ["MAX_OVERFLOW"]),
    "pool_timeout": float(os.environ["POOL_TIMEOUT"]),
}
app = create_app({"SQLALCHEMY_ENGINE_OPTIONS": engine_options(os.environ["DATABASE_URL"]) | pool})
