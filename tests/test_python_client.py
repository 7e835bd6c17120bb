"""The Python client (`flask_token_auth.client`) against the live app under gunicorn: stale
access tokens refreshed once, one refresh shared by threads and by tasks, a lost refresh answer
recovered by a replay, the end of a session, and the token stores."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from flask_token_auth.client import FileTokenStore
from flask_token_auth.client import LoginFailed
from flask_token_auth.client import MemoryTokenStore
from flask_token_auth.client import RefreshFailed
from flask_token_auth.client import SessionEnded
from flask_token_auth.client import TokenAuth
from tests import test_gunicorn
from tests.conftest import PASSWORD
from tests.helpers import rows
from tests.helpers import scalar

pytestmark = pytest.mark.slow
server = test_gunicorn.server  # the fixture: gunicorn serving the app on the test database
#: The live tests: each starts gunicorn, so MariaDB's run, which adds nothing here, is left out.
two_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
EMAIL = "ada@example.com"
RACERS = 16
TIMEOUT = 30.0
#: How the access token goes stale: past its `exp` (refreshed before it is sent), or refused
#: by the server although its `exp` is an hour away (refreshed on the 401, and retried).
STALENESS = pytest.mark.parametrize("expired", [True, False], ids=["expired", "refused"])
Answer = Callable[[httpx.Request], httpx.Response]


def stale_token(*, expired: bool) -> str:
    """A JWT-shaped access token whose signature the server refuses."""

    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    expires_at = int(time.time()) + (-60 if expired else 3600)
    return f"{segment({'alg': 'HS256', 'typ': 'at+jwt'})}.{segment({'exp': expires_at})}.{'A' * 43}"


def register(server: str) -> None:
    body = {"email": EMAIL, "password": PASSWORD}
    assert httpx.post(f"{server}/auth/register", json=body).status_code == 201


def count_events(app: Flask, event_type: str) -> int:
    return int(scalar(app, "SELECT COUNT(*) FROM auth_events WHERE type = :t", t=event_type))


def holds_the_live_token(app: Flask, auth: TokenAuth) -> bool:
    """Whether the client's store holds the one unspent refresh token of the database."""
    query = "SELECT token_hash FROM refresh_tokens WHERE used_at IS NULL"
    stored = hashlib.sha256(bytes.fromhex(auth.store.load() or "")).hexdigest()
    return [row.token_hash for row in rows(app, query)] == [stored]


def race(callers: int, call: Callable[[], object]) -> list[object]:
    """`call` from `callers` threads released at once; what each returned or raised."""
    barrier = threading.Barrier(callers)

    def run(_: int) -> object:
        barrier.wait()
        try:
            return call()
        except Exception as error:  # the outcome is what the test compares
            return type(error)

    with ThreadPoolExecutor(max_workers=callers) as pool:
        return list(pool.map(run, range(callers)))


@two_databases
@STALENESS
def test_a_stale_access_token_is_refreshed_once(server: str, app: Flask, expired: bool) -> None:
    register(server)
    auth = TokenAuth(MemoryTokenStore())
    with httpx.Client(base_url=server, auth=auth, timeout=TIMEOUT) as client:
        auth.log_in(client, EMAIL, PASSWORD)
        login_token = auth.store.load()
        assert client.get("/auth/me").status_code == 200
        assert count_events(app, "refreshed") == 0
        auth.set_access_token(stale_token(expired=expired))
        response = client.get("/auth/me")
        assert response.status_code == 200
        assert response.json()["user"]["email"] == EMAIL
        # Before the call (the refresh's answer), or after its 401 (then the refresh's).
        assert [past.status_code for past in response.history] == ([200] if expired else [401, 200])
        assert count_events(app, "refreshed") == 1
        assert auth.store.load() != login_token
        assert holds_the_live_token(app, auth)
        assert client.get("/auth/me").status_code == 200  # with the new token, no refresh
        assert count_events(app, "refreshed") == 1
        auth.log_out(client)
    assert auth.store.load() is None
    assert scalar(app, "SELECT revoked_reason FROM auth_sessions") == "logout"


@two_databases
@STALENESS
def test_threads_share_one_refresh(server: str, app: Flask, expired: bool) -> None:
    register(server)
    auth = TokenAuth(MemoryTokenStore())
    with httpx.Client(base_url=server, auth=auth, timeout=TIMEOUT) as client:
        auth.log_in(client, EMAIL, PASSWORD)
        auth.set_access_token(stale_token(expired=expired))
        outcomes = race(RACERS, lambda: client.get("/auth/me").status_code)
    assert outcomes == [200] * RACERS
    assert count_events(app, "refreshed") == 1
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2
    assert holds_the_live_token(app, auth)


@two_databases
@STALENESS
def test_tasks_share_one_refresh(server: str, app: Flask, expired: bool) -> None:
    register(server)
    auth = TokenAuth(MemoryTokenStore())

    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=server, auth=auth, timeout=TIMEOUT) as client:
            await auth.log_in_async(client, EMAIL, PASSWORD)
            auth.set_access_token(stale_token(expired=expired))
            responses = await asyncio.gather(*(client.get("/auth/me") for _ in range(RACERS)))
            assert holds_the_live_token(app, auth)
            await auth.log_out_async(client)
        return [response.status_code for response in responses]

    assert asyncio.run(main()) == [200] * RACERS
    assert count_events(app, "refreshed") == 1
    assert auth.store.load() is None
    assert scalar(app, "SELECT revoked_reason FROM auth_sessions") == "logout"


class LoseFirstRefreshAnswer(httpx.HTTPTransport):
    """The real transport, except that the answer to the first refresh is lost: the server
    has rotated the token, and the client sees a dropped connection."""

    def __init__(self) -> None:
        super().__init__()
        self.presented: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path == "/auth/refresh":
            self.presented.append(json.loads(request.content)["refresh_token"])
            if len(self.presented) == 1:
                response.close()
                raise httpx.ReadError("the connection was lost", request=request)
        return response


@two_databases
@pytest.mark.parametrize("callers", [1, RACERS])
def test_a_lost_refresh_answer_is_recovered_by_a_replay(
    server: str, app: Flask, callers: int
) -> None:
    """The caller whose refresh lost its answer gets the transport error; a request waiting
    on that refresh, or the next one, replays the same token and gets the live one."""
    register(server)
    transport = LoseFirstRefreshAnswer()
    auth = TokenAuth(MemoryTokenStore())
    with httpx.Client(base_url=server, auth=auth, transport=transport, timeout=TIMEOUT) as client:
        auth.log_in(client, EMAIL, PASSWORD)
        login_token = auth.store.load()
        auth.set_access_token(stale_token(expired=True))
        outcomes = race(callers, lambda: client.get("/auth/me").status_code)
        assert Counter(outcomes) == Counter({httpx.ReadError: 1, 200: callers - 1})
        assert client.get("/auth/me").status_code == 200
    assert transport.presented == [login_token, login_token]
    assert count_events(app, "refreshed") == 2  # the rotation, then the replay in its grace
    assert auth.store.load() != login_token
    assert holds_the_live_token(app, auth)
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2  # no fork of the chain
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NULL") == 1
    assert count_events(app, "refresh_reuse_detected") == 0


@two_databases
def test_a_revoked_session_ends_the_client_session(server: str, app: Flask) -> None:
    register(server)
    auth = TokenAuth(MemoryTokenStore())
    with httpx.Client(base_url=server, auth=auth, timeout=TIMEOUT) as client:
        with pytest.raises(LoginFailed) as refused:
            auth.log_in(client, EMAIL, "not the password")
        assert (refused.value.status_code, refused.value.error) == (401, "invalid_grant")
        assert auth.store.load() is None
        auth.log_in(client, EMAIL, PASSWORD)
        authorization = client.get("/auth/me").request.headers["Authorization"]
        revoke = httpx.post(f"{server}/auth/logout-all", headers={"Authorization": authorization})
        assert revoke.status_code == 204
        with pytest.raises(SessionEnded) as ended:
            client.get("/auth/me")  # 401 invalid_token, then the refresh's 401 invalid_grant
        assert (ended.value.status_code, ended.value.error) == (401, "invalid_grant")
        assert auth.store.load() is None
        with pytest.raises(SessionEnded, match="log in first"):
            client.get("/auth/me")
    assert scalar(app, "SELECT revoked_reason FROM auth_sessions") == "logout_all"
    assert count_events(app, "refreshed") == 0
    assert count_events(app, "refresh_reuse_detected") == 0


def mock_client(store: MemoryTokenStore, answer: Answer) -> httpx.Client:
    """A client whose requests `answer` answers, with `store` holding a refresh token."""
    store.save("c" * 64)
    transport = httpx.MockTransport(answer)
    auth = TokenAuth(store, base_url="http://api.test")
    return httpx.Client(base_url="http://api.test", auth=auth, transport=transport)


@pytest.mark.parametrize("status", [403, 429, 500, 503])
def test_a_refresh_failure_that_may_pass_keeps_the_store(status: int) -> None:
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(status, json={"error": "x", "error_description": "try again"})

    store = MemoryTokenStore()
    with mock_client(store, answer) as client, pytest.raises(RefreshFailed) as failed:
        client.get("/api/hello")
    assert (failed.value.status_code, failed.value.error) == (status, "x")
    assert store.load() == "c" * 64
    assert paths == ["/auth/refresh"]  # the request itself was not sent


def test_the_new_refresh_token_is_saved_before_the_new_access_token_is_sent() -> None:
    store = MemoryTokenStore()
    access_token = stale_token(expired=False)  # an `exp` an hour away: sent as it is
    sent: list[tuple[httpx.Request, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request, store.load()))
        if request.url.path == "/auth/refresh":
            tokens = {"access_token": access_token, "refresh_token": "d" * 64}
            return httpx.Response(200, json=tokens)
        status = 401 if request.url.path == "/auth/login" else 200
        return httpx.Response(status, json={"error": "invalid_token"})

    with mock_client(store, answer) as client:
        assert client.get("/api/hello").status_code == 200
        assert client.post("/auth/login", json={}).status_code == 401  # an auth route: no refresh
    [(refresh, before), (hello, saved), (login, _)] = sent
    assert (refresh.method, refresh.url.path, before) == ("POST", "/auth/refresh", "c" * 64)
    assert refresh.headers["X-Token-Transport"] == "body"
    assert json.loads(refresh.content) == {"refresh_token": "c" * 64}
    assert "Authorization" not in refresh.headers
    assert "Cookie" not in refresh.headers
    assert (hello.headers["Authorization"], saved) == (f"Bearer {access_token}", "d" * 64)
    assert "Authorization" not in login.headers


def test_the_memory_store_repr_says_whether_it_holds_a_token_never_which() -> None:
    store = MemoryTokenStore()
    assert repr(store) == "MemoryTokenStore(token=None)"
    store.save("d" * 64)
    assert repr(store) == "MemoryTokenStore(token=<hidden>)"
    store.clear()
    assert repr(store) == "MemoryTokenStore(token=None)"


def test_no_token_goes_to_another_host() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    store = MemoryTokenStore()
    with mock_client(store, answer) as client:
        client.get("https://evil.example/x")
        client.get("http://api.test:8080/x")  # another port is another origin

    assert [request.url.path for request in sent] == ["/x", "/x"]  # no refresh went anywhere
    assert all("Authorization" not in request.headers for request in sent)
    assert store.load() == "c" * 64


def test_the_file_store_replaces_its_file_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "refresh_token"
    store = FileTokenStore(path)
    assert store.load() is None
    store.save("a" * 64)
    assert path.read_bytes() == b"a" * 64
    first_file = path.stat().st_ino
    store.save("b" * 64)
    assert store.load() == "b" * 64
    assert path.stat().st_ino != first_file  # a new file renamed over the old one
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["refresh_token"]

    def disk_full(descriptor: int) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="no space left"):
        store.save("c" * 64)
    monkeypatch.undo()
    assert store.load() == "b" * 64  # the old token, whole
    assert os.listdir(tmp_path) == ["refresh_token"]  # and no temporary file left
    assert repr(store) == f"FileTokenStore({str(path)!r})"
    store.clear()
    store.clear()
    assert store.load() is None
    assert os.listdir(tmp_path) == []
