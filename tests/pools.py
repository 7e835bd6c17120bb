"""What tests read of the session check's pool for an engine (SQLAlchemy's private queue)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from flask_token_auth.session_check import check_pool
from flask_token_auth.session_check import CheckPool


def check_pool_of(engine: sa.Engine) -> CheckPool:
    pool = check_pool(engine)
    assert pool is not None, "the engine's pool is not a QueuePool"
    return pool


def idle_check_connections(engine: sa.Engine) -> list[Any]:
    """The DBAPI connections idle in the check's pool, oldest first; an entry whose connection
    was closed (invalidated, to reconnect when next taken) is left out."""
    records = check_pool_of(engine).pool._pool.queue  # type: ignore[attr-defined]
    return [record.dbapi_connection for record in records if record.dbapi_connection is not None]
