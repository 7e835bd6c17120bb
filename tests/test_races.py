"""Requests that race each other over HTTP, on every database (docs/tokens.md):
a revocation and a refresh of the same session, a password change and a login in flight."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from tests.conftest import PASSWORD
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import refresh_native
from tests.helpers import register
from tests.helpers import scalar

ROUNDS = 12
NEW_PASSWORD = "a brand new password"


def together(*calls: Callable[[], TestResponse]) -> list[TestResponse]:
    """Run the calls at the same moment, each in its own thread with its own client."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], TestResponse]) -> TestResponse:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def session_is_revoked(app: Flask, session_id: str) -> bool:
    revoked = scalar(app, "SELECT revoked_at FROM auth_sessions WHERE id = :id", id=session_id)
    return revoked is not None


def revoke_by(kind: str, app: Flask, access_token: str, session_id: str) -> TestResponse:
    client = app.test_client()
    if kind == "logout":
        return client.post("/auth/logout", headers=bearer(access_token))
    if kind == "logout-all":
        return client.post("/auth/logout-all", headers=bearer(access_token))
    # DELETE /sessions/{id} from another session of the same user.
    other = login(app.test_client(), native=True).json["access_token"]
    return client.delete(f"/auth/sessions/{session_id}", headers=bearer(other))


@pytest.mark.parametrize("kind", ["logout", "logout-all", "delete-session"])
def test_a_revocation_racing_a_refresh_always_wins(app: Flask, kind: str) -> None:
    register(app.test_client())
    for _ in range(ROUNDS):
        issued = login(app.test_client(), native=True).json
        me = app.test_client().get("/auth/me", headers=bearer(issued["access_token"])).json
        session_id = me["session_id"]

        refreshed, revoked = together(
            partial(refresh_native, app.test_client(), issued["refresh_token"]),
            partial(revoke_by, kind, app, issued["access_token"], session_id),
        )

        assert revoked.status_code == 204, revoked.json
        assert refreshed.status_code in (200, 401), refreshed.json
        assert session_is_revoked(app, session_id)
        if refreshed.status_code == 200:
            # Whatever the refresh got, the revocation that answered has ended it.
            after = refreshed.json
            client = app.test_client()
            assert client.get("/auth/me", headers=bearer(after["access_token"])).status_code == 401
            assert refresh_native(client, after["refresh_token"]).status_code == 401


def test_a_login_in_flight_during_a_password_change_ends_revoked(app: Flask) -> None:
    register(app.test_client())
    password = PASSWORD
    for round_number in range(ROUNDS):
        new_password = f"{NEW_PASSWORD} {round_number}"
        current = login(app.test_client(), password=password, native=True).json
        change = {"current_password": password, "new_password": new_password}
        credentials = {"email": "ada@example.com", "password": password}

        changed, logged_in = together(
            partial(
                app.test_client().post,
                "/auth/password",
                json=change,
                headers=bearer(current["access_token"]),
            ),
            partial(app.test_client().post, "/auth/login", json=credentials, headers=NATIVE),
        )

        assert changed.status_code == 204, changed.json
        assert logged_in.status_code in (200, 401), logged_in.json
        if logged_in.status_code == 200:
            # Logged in with the old password: once the change answered, that session is over.
            tokens = logged_in.json
            client = app.test_client()
            assert client.get("/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
            assert refresh_native(client, tokens["refresh_token"]).status_code == 401
        password = new_password
