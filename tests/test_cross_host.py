"""Two gunicorn instances (two workers each) on one database, as two hosts would be: 64
concurrent refreshes of one token spread over both rotate it exactly once, every replay gets
the live token, and nothing answers 5xx, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import call
from tests.helpers import gunicorn
from tests.helpers import scalar

pytestmark = pytest.mark.slow
RACERS = 64


@pytest.fixture
def two_hosts(app: Flask, database_url: str, tmp_path: Path) -> Iterator[list[str]]:
    env = {"DATABASE_URL": database_url, "SECRET_KEY": SECRET, "AUTH_RATELIMIT_ENABLED": "false"}
    with ExitStack() as stack:
        yield [
            stack.enter_context(gunicorn("wsgi:app", env, tmp_path / f"host{n}.log"))
            for n in (1, 2)
        ]


def test_sixty_four_refreshes_over_two_hosts_rotate_once(app: Flask, two_hosts: list[str]) -> None:
    first, second = two_hosts
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    assert call(first, "/auth/register", credentials)[0] == 201
    status, _, tokens = call(second, "/auth/login", credentials)
    assert status == 200
    token = tokens["refresh_token"]

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        answers = list(
            pool.map(
                lambda n: call(two_hosts[n % 2], "/auth/refresh", {"refresh_token": token}),
                range(RACERS),
            )
        )

    assert [status for status, _, _ in answers] == [200] * RACERS
    assert len({body["refresh_token"] for _, _, body in answers}) == 1  # all got the live token
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2  # one rotation, no fork
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NOT NULL") == 0
    live = answers[0][2]["refresh_token"]
    assert call(first, "/auth/refresh", {"refresh_token": live})[0] == 200
