"""An httpx client for the auth API in its native transport (`X-Token-Transport: body`).

    auth = TokenAuth(FileTokenStore("refresh_token"))
    with httpx.Client(base_url="https://api.example", auth=auth) as client:
        auth.log_in(client, "ada@example.com", "correct horse battery")
        print(client.get("/api/hello").json())  # refreshed and retried as needed
        auth.log_out(client)

Access tokens stay in memory; refresh tokens travel in JSON bodies, never in cookies, and live
in a TokenStore. Standalone: httpx and the standard library only (the `client` extra).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncGenerator
from collections.abc import Generator
from pathlib import Path
from typing import Any
from typing import Protocol
from typing import TypeVar

import httpx

BODY_TRANSPORT = {"X-Token-Transport": "body"}
#: Seconds: an access token that expires sooner than this, or than half its lifetime (`exp`
#: minus `iat`) if that is shorter, is refreshed before it is sent.
EXPIRY_MARGIN = 30.0
_SyncFlow = Generator[httpx.Request, httpx.Response, None]
_AsyncFlow = AsyncGenerator[httpx.Request, httpx.Response]
_Client = TypeVar("_Client", httpx.Client, httpx.AsyncClient)


class TokenAuthError(Exception):
    """A refused auth request; `status_code` and `error` as the server sent them, else None."""

    def __init__(self, message: str, *, status_code: int | None = None, error: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.error = error


class LoginFailed(TokenAuthError):
    """The login was refused (401 invalid_grant for bad credentials); the store is unchanged."""


class SessionEnded(TokenAuthError):
    """No session: the refresh token was refused (401 invalid_grant) or none is stored."""


class RefreshFailed(TokenAuthError):
    """The refresh failed for a reason that may pass (403, 429, 5xx): the store is kept."""


class TokenStore(Protocol):
    """Where the refresh token lives between runs. Implementations never log or repr it."""

    def load(self) -> str | None: ...
    def save(self, refresh_token: str) -> None: ...
    def clear(self) -> None: ...


class MemoryTokenStore:
    """The refresh token in this process only: the session ends with it."""

    _token: str | None = None

    def load(self) -> str | None:
        return self._token

    def save(self, refresh_token: str) -> None:
        self._token = refresh_token

    def clear(self) -> None:
        self._token = None

    def __repr__(self) -> str:
        """Whether a token is held, never the token (a repr ends up in logs and tracebacks)."""
        token = "None" if self._token is None else "<hidden>"
        return f"MemoryTokenStore(token={token})"


class FileTokenStore:
    """The refresh token in a file only its owner can read (0600), replaced atomically: a crash
    mid-save leaves the old token or the new one, never a torn file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> str | None:
        """The stored token, or None if the file is missing or empty."""
        try:
            return self.path.read_text(encoding="ascii") or None
        except FileNotFoundError:
            return None

    def save(self, refresh_token: str) -> None:
        """Write a temporary file beside the target (mkstemp: 0600), fsync, `os.replace` it."""
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="ascii") as file:
                file.write(refresh_token)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # else a power loss may bring back the old, spent token
        finally:
            os.close(directory)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"


class TokenAuth(httpx.Auth):
    """Bearer access tokens for one server's httpx.Client or AsyncClient, refreshed as needed.

    A missing access token, or one expiring within 30 s or half its lifetime if shorter, is
    refreshed before the request; on a 401 `invalid_token` it is refreshed and the request
    retried, once. Concurrent requests (threads; tasks of one event loop) share one refresh.
    Refreshes go through the client given to `log_in` or `attach` while it is open: one cut
    off by a transport error is sent again at once, the same token inside the server's grace
    window (10 s) getting the session's live one; a second error is raised, the old token kept
    for the next request to replay. Without such a client, the refresh goes with the request,
    and its transport error is raised at once (httpx lets no auth flow catch it).
    `prefix`: the auth routes' path from the server's root.
    `device_token`: the value of `self.device_token` after an earlier login, kept by the app
    across runs: failed logins from a known device do not count against the account's
    ceiling, so a guesser elsewhere cannot lock its owner out of this app.
    """

    requires_response_body = True

    def __init__(
        self,
        store: TokenStore,
        *,
        prefix: str = "/auth",
        base_url: str | None = None,
        device_token: str | None = None,
    ) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"prefix must be a path such as '/auth', not {prefix!r}")
        self.store = store
        self.prefix = prefix
        #: This device's token from the server's last login answer (not a secret of the
        #: session: it survives log_out; keep it to pass to the next TokenAuth).
        self.device_token = device_token
        # Threat: tokens sent to another host. Only this server's requests carry them; it is
        # `base_url`, or the client's base_url at log_in.
        self._server = httpx.URL(base_url) if base_url else None
        self._token_paths = {f"{prefix}/{name}" for name in ("login", "register", "refresh")}
        # The clients refreshes go through (weak: the app owns them), one per kind of flow.
        self._client: weakref.ref[httpx.Client] | None = None
        self._async_client: weakref.ref[httpx.AsyncClient] | None = None
        # (access token, generation) in one attribute, so that no reader sees them mixed.
        self._current: tuple[str | None, int] = (None, 0)
        self._thread_lock = threading.Lock()
        self._async_lock = asyncio.Lock()

    def set_access_token(self, access_token: str | None) -> None:
        """Replace the access token held in memory (None: refresh before the next request)."""
        self._current = (access_token, self._current[1])

    def attach(self, client: httpx.Client | httpx.AsyncClient) -> None:
        """Send refreshes through `client` (`log_in` does this), so that one whose answer is
        lost is sent again; its base_url is the server unless `base_url` named one. For a
        session restored from the store, where no login runs."""
        self._url(client, "refresh")  # checks the base_url, and takes it as the server
        if isinstance(client, httpx.AsyncClient):
            self._async_client = weakref.ref(client)
        else:
            self._client = weakref.ref(client)

    def log_in(self, client: httpx.Client, email: str, password: str) -> None:
        """POST {prefix}/login; save the refresh token, keep the access token. LoginFailed."""
        self.attach(client)
        response = client.post(self._url(client, "login"), **_native(self._login(email, password)))
        with self._thread_lock:
            self._adopt(response.status_code, response.read(), LoginFailed)

    async def log_in_async(self, client: httpx.AsyncClient, email: str, password: str) -> None:
        """`log_in` on an AsyncClient."""
        self.attach(client)
        body = self._login(email, password)
        response = await client.post(self._url(client, "login"), **_native(body))
        async with self._async_lock:
            self._adopt(response.status_code, await response.aread(), LoginFailed)

    def _login(self, email: str, password: str) -> dict[str, str]:
        body = {"email": email, "password": password}
        if self.device_token is not None:
            body["device_token"] = self.device_token
        return body

    def log_out(self, client: httpx.Client) -> None:
        """Clear the store, then POST {prefix}/logout with the token it held; httpx's
        HTTPStatusError unless that succeeds (the local tokens are gone all the same)."""
        with self._thread_lock:  # after a refresh in flight, so that its token is the one sent
            body = self._forget()
        if body:
            client.post(self._url(client, "logout"), **_native(body)).raise_for_status()

    async def log_out_async(self, client: httpx.AsyncClient) -> None:
        """`log_out` on an AsyncClient."""
        async with self._async_lock:
            body = self._forget()
        if body:
            (await client.post(self._url(client, "logout"), **_native(body))).raise_for_status()

    def sync_auth_flow(self, request: httpx.Request) -> _SyncFlow:
        if not self._ours(request.url) or request.url.path in self._token_paths:
            yield request
            return
        request.read()  # a retry sends the body again
        access, generation = self._current
        for retry in (False, True):
            if access is None or _expires_soon(access):
                with self._thread_lock:
                    step = self._begin_refresh(request, generation)
                    if isinstance(step, httpx.Request):
                        client = _open(self._client)
                        if client is None:
                            refreshed = yield step
                            refreshed.read()
                        else:
                            refreshed = _send_refresh(client, step)
                        step = self._adopt(refreshed.status_code, refreshed.content, RefreshFailed)
                    access, generation = step
            request.headers["Authorization"] = f"Bearer {access}"
            response = yield request
            if retry or response.status_code != 401 or not _token_refused(response.read()):
                return
            access = None  # refreshed next, unless another request did since `generation`

    async def async_auth_flow(self, request: httpx.Request) -> _AsyncFlow:
        if not self._ours(request.url) or request.url.path in self._token_paths:
            yield request
            return
        await request.aread()
        access, generation = self._current
        for retry in (False, True):
            if access is None or _expires_soon(access):
                async with self._async_lock:
                    step = self._begin_refresh(request, generation)
                    if isinstance(step, httpx.Request):
                        client = _open(self._async_client)
                        if client is None:
                            refreshed = yield step
                            await refreshed.aread()
                        else:
                            refreshed = await _send_refresh_async(client, step)
                        step = self._adopt(refreshed.status_code, refreshed.content, RefreshFailed)
                    access, generation = step
            request.headers["Authorization"] = f"Bearer {access}"
            response = yield request
            if retry or response.status_code != 401 or not _token_refused(await response.aread()):
                return
            access = None

    def _url(self, client: httpx.Client | httpx.AsyncClient, name: str) -> httpx.URL:
        if not client.base_url.host:
            raise ValueError("the client needs a base_url: httpx.Client(base_url=..., auth=auth)")
        if self._server is None:
            self._server = client.base_url
        return self._server.join(f"{self.prefix}/{name}")

    def _ours(self, url: httpx.URL) -> bool:
        server = self._server
        return server is not None and (url.scheme, url.host, url.port) == (
            server.scheme,
            server.host,
            server.port,
        )

    def _forget(self) -> dict[str, str]:
        """Clear the store and the access token; the logout body of the token they held."""
        refresh_token = self.store.load()
        self.store.clear()
        self._current = (None, self._current[1] + 1)
        return {"refresh_token": refresh_token} if refresh_token else {}

    def _begin_refresh(self, request: httpx.Request, seen: int) -> tuple[str, int] | httpx.Request:
        """Under the flow's lock: the access token another request got since generation
        `seen`, else the refresh request to send (SessionEnded if no token is stored). The
        access token is dropped first: should the refresh fail or its answer be lost, the
        next request refreshes again, replaying the stored token."""
        access, generation = self._current
        if generation != seen and access is not None:
            return access, generation
        self._current = (None, generation)
        refresh_token = self.store.load()
        if refresh_token is None:
            raise SessionEnded("no refresh token is stored: log in first")
        return httpx.Request(
            "POST",
            request.url.copy_with(path=f"{self.prefix}/refresh", query=None, fragment=None),
            # _ours(request.url) held: this is the server's own origin.
            json={"refresh_token": refresh_token},
            headers=BODY_TRANSPORT,
            extensions={k: v for k, v in request.extensions.items() if k == "timeout"},
        )

    def _adopt(self, status: int, content: bytes, failure: type[TokenAuthError]) -> tuple[str, int]:
        """From a 200 token answer (login or refresh), save the refresh token, then take the
        access token and a new generation. Else raise `failure`, or on a refresh's 401
        invalid_grant clear the store and raise SessionEnded."""
        body = _json_strings(content)
        if status == 200 and "access_token" in body and "refresh_token" in body:
            # Saved first: the old token is spent now, and a crash must not lose the new one.
            self.store.save(body["refresh_token"])
            self.device_token = body.get("device_token", self.device_token)
            self._current = (body["access_token"], self._current[1] + 1)
            return body["access_token"], self._current[1]
        error = body.get("error")
        if failure is RefreshFailed and status == 401 and error == "invalid_grant":
            self.store.clear()
            failure = SessionEnded
        description = body.get("error_description", "no access_token and refresh_token")
        advice = {SessionEnded: "; log in again", RefreshFailed: "; the session is kept"}
        message = f"{status} {error or 'error'}: {description}{advice.get(failure, '')}"
        raise failure(message, status_code=status, error=error)


def _open(reference: weakref.ref[_Client] | None) -> _Client | None:
    """The client `reference` holds, unless it is gone or closed."""
    client = reference() if reference else None
    return None if client is None or client.is_closed else client


def _send_refresh(client: httpx.Client, refresh: httpx.Request) -> httpx.Response:
    """Send `refresh`, and once more at once if a transport error cuts it off."""
    try:
        return client.send(refresh, auth=None, follow_redirects=False)
    except httpx.TransportError:
        # The server may have rotated the token and lost the answer: the same token, inside
        # the grace window, gets the session's live one. Later, it would end the session.
        return client.send(refresh, auth=None, follow_redirects=False)


async def _send_refresh_async(client: httpx.AsyncClient, refresh: httpx.Request) -> httpx.Response:
    """`_send_refresh` on an AsyncClient."""
    try:
        return await client.send(refresh, auth=None, follow_redirects=False)
    except httpx.TransportError:
        return await client.send(refresh, auth=None, follow_redirects=False)


def _expires_soon(access_token: str) -> bool:
    """Whether the JWT's `exp`, read without verification (the server verifies), is within
    EXPIRY_MARGIN or half the token's lifetime, whichever is shorter: a token that lives 20 s
    is refreshed once in its life, not before every request. A token without a readable `exp`
    counts as expiring; one without a readable `iat`, as having a long life."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        expires_at, issued_at = claims["exp"], claims.get("iat")
    except (IndexError, ValueError, TypeError, KeyError, AttributeError):
        return True
    if not _is_time(expires_at):
        return True
    remaining: float = expires_at - time.time()
    lifetime: float = expires_at - issued_at if _is_time(issued_at) else 2 * EXPIRY_MARGIN
    return remaining < min(EXPIRY_MARGIN, lifetime / 2)


def _is_time(value: object) -> bool:
    """Whether a claim's value is a number of seconds (JSON's true and false are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _token_refused(content: bytes) -> bool:
    """Whether a 401's body says `invalid_token`: refreshing may help (not for missing_token)."""
    return _json_strings(content).get("error") == "invalid_token"


def _json_strings(content: bytes) -> dict[str, str]:
    """The string members of a JSON object; {} if `content` is not one."""
    try:
        body = json.loads(content)
    except ValueError:
        return {}
    items = body.items() if isinstance(body, dict) else ()
    return {name: value for name, value in items if isinstance(value, str)}


def _native(body: dict[str, str]) -> dict[str, Any]:
    """Options of a POST to the auth routes: native transport, and none of this auth's flow."""
    return {"json": body, "headers": BODY_TRANSPORT, "auth": None}
