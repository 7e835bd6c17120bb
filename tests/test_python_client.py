"""The Python client (`flask_token_auth.client`) against the live app under gunicorn: stale
access tokens refreshed once, short-lived ones at half their life, one refresh shared by threads
and by tasks, a lost refresh answer recovered by a retry at once, the end of a session, and the
token stores."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
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
from tests.conftest import SECRET
from tests.helpers import call
from tests.helpers import claims_of
from tests.helpers import gunicorn
from tests.helpers import rows
from tests.helpers import scalar

pytestmark = pytest.mark.slow
server = test_gunicorn.server  # the fixture: gunicorn serving the app on the test database
#: The live tests: each starts gunicorn, so MariaDB's run, which adds nothing here, is left out.
two_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
#: What depends on the client and the clock alone.
one_database = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
EMAIL = "ada@example.com"
RACERS = 16
TIMEOUT = 30.0
#: How the access token goes stale: past its `exp` (refreshed before it is sent), or refused
#: by the server although its `exp` is an hour away (refreshed on the 401, and retried).
STALENESS = pytest.mark.parametrize("expired", [True, False], ids=["expired", "refused"])
Answer = Callable[[httpx.Request], httpx.Response]
#: Seconds an access token lives on `short_lived_server`, and how many lifetimes a test spans.
SHORT_TTL = 4
LIFETIMES = 2
#: Refreshes a minute from one address there: a client refreshing before each of its calls,
#: as it did with a 30 s margin and tokens of 30 s or less, meets it within the test.
REFRESH_LIMIT = 12
CALL_INTERVAL = 0.25


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
        # The refresh goes through the client that logged in: only a 401 is in the history.
        assert [past.status_code for past in response.history] == ([] if expired else [401])
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


class LoseRefreshAnswers(httpx.HTTPTransport):
    """The real transport, except that the answers to the first `lost` refreshes are lost: the
    server has rotated the token (or answered from its grace window), and the client sees a
    dropped connection."""

    def __init__(self, *, lost: int) -> None:
        super().__init__()
        self.lost = lost
        self.presented: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path == "/auth/refresh":
            self.presented.append(json.loads(request.content)["refresh_token"])
            if len(self.presented) <= self.lost:
                response.close()
                raise httpx.ReadError("the connection was lost", request=request)
        return response


class LoseRefreshAnswersAsync(httpx.AsyncHTTPTransport):
    """`LoseRefreshAnswers` for an AsyncClient."""

    def __init__(self, *, lost: int) -> None:
        super().__init__()
        self.lost = lost
        self.presented: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path == "/auth/refresh":
            self.presented.append(json.loads(request.content)["refresh_token"])
            if len(self.presented) <= self.lost:
                await response.aclose()
                raise httpx.ReadError("the connection was lost", request=request)
        return response


def assert_one_live_chain(app: Flask, auth: TokenAuth, *, refreshed: int) -> None:
    """`refreshed` answers (rotations, and replays in their grace window), no fork of the chain,
    the session kept, and the client holding its live token."""
    assert count_events(app, "refreshed") == refreshed
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 2
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NULL") == 1
    assert count_events(app, "refresh_reuse_detected") == 0
    assert holds_the_live_token(app, auth)


@two_databases
@pytest.mark.parametrize("callers", [1, RACERS])
def test_a_lost_refresh_answer_is_sent_again_at_once(server: str, app: Flask, callers: int) -> None:
    """The refresh whose answer was lost is retried once by the client, inside the grace
    window: every caller, the one that refreshed and those waiting on it, gets its answer."""
    register(server)
    transport = LoseRefreshAnswers(lost=1)
    auth = TokenAuth(MemoryTokenStore())
    with httpx.Client(base_url=server, auth=auth, transport=transport, timeout=TIMEOUT) as client:
        auth.log_in(client, EMAIL, PASSWORD)
        login_token = auth.store.load()
        auth.set_access_token(stale_token(expired=True))
        outcomes = race(callers, lambda: client.get("/auth/me").status_code)
        assert outcomes == [200] * callers
        assert client.get("/auth/me").status_code == 200  # with the new token, no refresh
    assert transport.presented == [login_token, login_token]  # exactly one retry
    assert auth.store.load() != login_token
    assert_one_live_chain(app, auth, refreshed=2)  # the rotation, then the retry's answer


@two_databases
def test_tasks_retry_a_lost_refresh_answer_at_once(server: str, app: Flask) -> None:
    register(server)
    transport = LoseRefreshAnswersAsync(lost=1)
    auth = TokenAuth(MemoryTokenStore())

    async def main() -> tuple[str | None, list[int]]:
        async with httpx.AsyncClient(
            base_url=server, auth=auth, transport=transport, timeout=TIMEOUT
        ) as client:
            await auth.log_in_async(client, EMAIL, PASSWORD)
            login_token = auth.store.load()
            auth.set_access_token(stale_token(expired=True))
            responses = await asyncio.gather(*(client.get("/auth/me") for _ in range(RACERS)))
        return login_token, [response.status_code for response in responses]

    login_token, statuses = asyncio.run(main())
    assert statuses == [200] * RACERS
    assert transport.presented == [login_token, login_token]
    assert auth.store.load() != login_token
    assert_one_live_chain(app, auth, refreshed=2)


@one_database
def test_a_refresh_lost_twice_is_raised_and_the_next_request_replays_it(
    server: str, app: Flask
) -> None:
    register(server)
    transport = LoseRefreshAnswers(lost=2)
    auth = TokenAuth(MemoryTokenStore())
    with httpx.Client(base_url=server, auth=auth, transport=transport, timeout=TIMEOUT) as client:
        auth.log_in(client, EMAIL, PASSWORD)
        login_token = auth.store.load()
        auth.set_access_token(stale_token(expired=True))
        with pytest.raises(httpx.ReadError):
            client.get("/auth/me")
        assert auth.store.load() == login_token  # kept, for the replay
        assert client.get("/auth/me").status_code == 200
    assert transport.presented == [login_token] * 3
    assert_one_live_chain(app, auth, refreshed=3)


@one_database
@pytest.mark.parametrize("attached", [True, False], ids=["attached", "not-attached"])
def test_a_restored_session_retries_through_the_client_attached(
    server: str, app: Flask, attached: bool
) -> None:
    """A session restored from the store, with no login in this process: its refreshes go
    through the client given to `attach`, else with the request, whose transport error httpx
    raises, and the next request replays the token."""
    register(server)
    status, _, body = call(server, "/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert status == 200
    store = MemoryTokenStore()
    store.save(body["refresh_token"])
    auth = TokenAuth(store, base_url=server)
    transport = LoseRefreshAnswers(lost=1)
    with httpx.Client(base_url=server, auth=auth, transport=transport, timeout=TIMEOUT) as client:
        if attached:
            auth.attach(client)
        else:
            with pytest.raises(httpx.ReadError):
                client.get("/auth/me")
        assert client.get("/auth/me").status_code == 200
    assert transport.presented == [body["refresh_token"]] * 2
    assert_one_live_chain(app, auth, refreshed=2)


class RecordCalls(httpx.HTTPTransport):
    """The real transport, noting every status, and for each refresh when it was sent and
    which access token the calls carried until then."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []
        self.refreshes: list[tuple[float, str]] = []
        self._access_token = ""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/refresh":
            self.refreshes.append((time.time(), self._access_token))
        elif "Authorization" in request.headers:
            self._access_token = request.headers["Authorization"].removeprefix("Bearer ")
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


@pytest.fixture
def short_lived_server(app: Flask, database_url: str, tmp_path: Path) -> Iterator[str]:
    """gunicorn with access tokens of SHORT_TTL seconds and the refresh rate limit on, in one
    worker, so that one counter sees every refresh."""
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_ACCESS_TOKEN_TTL": str(SHORT_TTL),
        "AUTH_RATELIMIT_ENABLED": "true",
        "AUTH_RATELIMIT_REFRESH": f"{REFRESH_LIMIT}/minute",
    }
    with gunicorn("wsgi:app", env, tmp_path / "gunicorn.log", workers=1) as base:
        yield base


@one_database
def test_a_short_lived_access_token_is_refreshed_once_in_its_life(
    short_lived_server: str, app: Flask
) -> None:
    """With tokens shorter-lived than the 30 s margin, the margin is half their life: each is
    used for its first half and refreshed once, in its second, not before every call (which
    ran into the refresh rate limit's 429)."""
    register(short_lived_server)
    transport = RecordCalls()
    auth = TokenAuth(MemoryTokenStore())
    statuses = []
    with httpx.Client(
        base_url=short_lived_server, auth=auth, transport=transport, timeout=TIMEOUT
    ) as client:
        auth.log_in(client, EMAIL, PASSWORD)
        deadline = time.monotonic() + LIFETIMES * SHORT_TTL
        while time.monotonic() < deadline:
            statuses.append(client.get("/auth/me").status_code)
            time.sleep(CALL_INTERVAL)
    assert statuses == [200] * len(statuses)
    assert set(transport.statuses) == {200}  # no 401 (an expired token sent), no 429
    assert len(transport.refreshes) >= LIFETIMES
    # Each refresh replaced a token in the second half of its life, never earlier: with the
    # 30 s margin, each came at the first call after the token it replaced was issued.
    for sent_at, replaced in transport.refreshes:
        expires_at = claims_of(replaced)["exp"]
        assert expires_at - SHORT_TTL / 2 <= sent_at < expires_at
    assert count_events(app, "refreshed") == len(transport.refreshes)


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
