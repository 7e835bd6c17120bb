"""Device tokens: a browser or app that logged in to an account before is known to it, and
passes the account's ceiling on failed logins (threat: a guesser elsewhere locking the owner
out).

The scheme of OWASP's "Slow Down Online Guessing Attacks with Device Cookies": failures from a
known device count against that device alone; the rest count against the account. A browser
keeps its tokens in the `device_token` cookie; a native client (the body transport) gets them
as `device_token` in the login's JSON answer and sends them back in the next login's body.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import request
from flask import Response

from .errors import BadCredentials
from .errors import InvalidRequest
from .state import AuthState
from .transport import add_cookie

DEVICE_COOKIE = "device_token"
#: The login body's and the native token response's field.
DEVICE_FIELD = "device_token"
#: How long a browser stays known to an account after its last successful login there.
DEVICE_TOKEN_LIFETIME = timedelta(days=365)
#: Accounts one browser is known to (a shared computer); the oldest is forgotten first.
MAX_DEVICE_TOKENS = 5
NONCE_BYTES = 16
# `issued.nonce.signature`: seconds since 1970, then hex.
_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9a-f]{32})\.([0-9a-f]{64})")
_SEPARATOR = "~"
#: The most a device value can be: MAX_DEVICE_TOKENS tokens and their separators.
MAX_DEVICE_VALUE_LENGTH = MAX_DEVICE_TOKENS * (12 + 1 + 32 + 1 + 64) + MAX_DEVICE_TOKENS - 1


def new_device_token(account: str, *, secret_key: bytes, now: datetime) -> str:
    """A device token for `account` (`field:value`, as the login view names it): a random
    nonce and the time, signed with the server's key."""
    issued = str(int(now.timestamp()))
    nonce = secrets.token_hex(NONCE_BYTES)
    return f"{issued}.{nonce}.{_signature(secret_key, account, issued, nonce)}"


def device_nonce(
    token: str, account: str, *, secret_keys: tuple[bytes, ...], now: datetime
) -> str | None:
    """The nonce of `token` if the server signed it for `account` less than
    DEVICE_TOKEN_LIFETIME ago; None for any other token (forged, another account's, old)."""
    parts = _TOKEN.fullmatch(token)
    if parts is None:
        return None
    issued, nonce, signature = parts.groups()
    if now.timestamp() - int(issued) > DEVICE_TOKEN_LIFETIME.total_seconds():
        return None
    signed = any(
        hmac.compare_digest(signature, _signature(secret, account, issued, nonce))
        for secret in secret_keys  # a token signed before a key change is still honoured
    )
    return nonce if signed else None


def _signature(secret_key: bytes, account: str, issued: str, nonce: str) -> str:
    message = b"\x00".join((b"device", account.encode(), issued.encode(), nonce.encode()))
    return hmac.new(secret_key, message, hashlib.sha256).hexdigest()


def sent_device_value(body: dict[str, Any]) -> str | None:
    """The `device_token` of a login body (a native client's device), None without one;
    InvalidRequest if it is not a string of at most MAX_DEVICE_VALUE_LENGTH characters."""
    value = body.get(DEVICE_FIELD)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DEVICE_VALUE_LENGTH:
        raise InvalidRequest(
            f"{DEVICE_FIELD}: must be a string of at most {MAX_DEVICE_VALUE_LENGTH} characters"
        )
    return value


@contextlib.contextmanager
def failures_limited(
    state: AuthState, account: str, *, sent: str | None, now: datetime
) -> Iterator[None]:
    """Guard a login to `account`: RateLimited before any work once its failures are used up,
    and one failure counted if the block raises BadCredentials. `sent`: the device value of a
    native client's login body, if any.

    Failures count against the request's known device for the account while it has some left,
    else against the account's ceiling (unknown accounts alike, so a 429 reveals nothing).
    """
    limits = state.rate_limits
    nonce = presented_device(state, account, sent=sent, now=now)
    if nonce is not None and limits.allows("login_device", nonce):
        name, key = "login_device", nonce
    else:
        name, key = "login_account", account
        limits.check(name, key)
    try:
        yield
    except BadCredentials:
        # Concurrent attempts may each pass the check before one is counted: the ceiling can
        # be overrun by the requests in flight, each still limited per address.
        limits.count(name, key)
        raise


def presented_device(
    state: AuthState, account: str, *, sent: str | None, now: datetime
) -> str | None:
    """The nonce of this request's device token for `account`, if its device cookie or `sent`
    holds one."""
    secret_keys = state.settings.secret_keys
    for token in _presented_tokens(sent):
        nonce = device_nonce(token, account, secret_keys=secret_keys, now=now)
        if nonce is not None:
            return nonce
    return None


def remember_device(response: Response, state: AuthState, account: str, *, now: datetime) -> None:
    """Set the device cookie after a successful login to `account` (HttpOnly, Path = the auth
    prefix). Nothing when the rate limits are off: it would exempt the browser from nothing."""
    value = device_value(state, account, sent=None, now=now)
    if value is None:
        return
    add_cookie(
        response,
        state.settings,
        DEVICE_COOKIE,
        value,
        max_age=int(DEVICE_TOKEN_LIFETIME.total_seconds()),
        path=state.settings.url_prefix,
        httponly=True,  # threat: XSS carrying the token to a guesser's own requests
    )


def device_value(state: AuthState, account: str, *, sent: str | None, now: datetime) -> str | None:
    """What a device keeps after a successful login to `account`: a new token for it first,
    then the device's tokens for other accounts (from its cookie or `sent`). None when the
    rate limits are off."""
    if not state.rate_limits.enabled:
        return None
    settings = state.settings
    others = [
        token
        for token in _presented_tokens(sent)
        if device_nonce(token, account, secret_keys=settings.secret_keys, now=now) is None
    ]
    fresh = new_device_token(account, secret_key=settings.jwt_secret_key, now=now)
    return _SEPARATOR.join([fresh, *others][:MAX_DEVICE_TOKENS])


def _presented_tokens(sent: str | None) -> list[str]:
    """The well-formed tokens of `sent`, else of the request's device cookie, at most
    MAX_DEVICE_TOKENS."""
    value = sent if sent is not None else request.cookies.get(DEVICE_COOKIE, "")
    tokens = value.split(_SEPARATOR, MAX_DEVICE_TOKENS)[:MAX_DEVICE_TOKENS]
    return [token for token in tokens if _TOKEN.fullmatch(token)]
