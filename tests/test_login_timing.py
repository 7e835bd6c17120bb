"""Login takes about the same time whether the email exists or not (threat: enumeration)."""

from __future__ import annotations

import statistics
import time

import pytest
from flask.testing import FlaskClient

from tests.helpers import register

ROUNDS = 7


def timed_failed_login(client: FlaskClient, email: str) -> float:
    started = time.perf_counter()
    response = client.post("/auth/login", json={"email": email, "password": "wrong password"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "invalid email or password",
    }
    return elapsed


# The real argon2 profile: with the cheap test one, hashing would be lost in the noise.
@pytest.mark.parametrize(
    "app_config", [{"AUTH_ARGON2_PROFILE": "rfc9106_low_memory", "DEBUG": True}]
)
@pytest.mark.slow
def test_unknown_email_costs_as_much_as_a_wrong_password(client: FlaskClient) -> None:
    register(client)
    known, unknown = [], []
    for _ in range(ROUNDS):  # interleaved, so that load on a shared machine hits both alike
        known.append(timed_failed_login(client, "ada@example.com"))
        unknown.append(timed_failed_login(client, "nobody@example.com"))
    ratio = statistics.median(unknown) / statistics.median(known)
    # A skipped argon2 verification would make the ratio about 0.01.
    assert 0.5 < ratio < 2.0
