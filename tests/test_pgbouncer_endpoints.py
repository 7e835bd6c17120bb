"""The black-box endpoint tests (every route's answers, headers and database effects) run again
on PostgreSQL through PgBouncer in transaction pooling, with AUTH_PGBOUNCER."""

from __future__ import annotations

from tests.test_endpoints import *  # noqa: F403
from tests.test_pgbouncer import app as app
from tests.test_pgbouncer import database_url as database_url
