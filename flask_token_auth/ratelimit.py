"""Rate limits on the endpoints an attacker can hammer (threat: brute force and abuse)."""

from __future__ import annotations

import logging
import math
import time
import urllib.parse
from collections.abc import Callable
from typing import TypeVar

from limits import parse
from limits import RateLimitItem
from limits import storage
from limits import strategies

from .errors import RateLimited
from .errors import TemporarilyUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds to open a connection to a Redis store (threat: a Redis that accepts no connection
#: holding every login and refresh thread, and with them the workers' other routes).
REDIS_CONNECT_TIMEOUT = 0.1
#: Seconds to wait for each Redis answer (threat: a Redis that accepts but never answers
#: holding every login and refresh thread; redis-py 5 waits for ever, later releases 5 s).
REDIS_READ_TIMEOUT = 0.1
REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix"})
#: Failed logins one known device (a valid device cookie) may make per window; past it the
#: cookie is no longer honoured and its attempts meet the account's ceiling (threat: a stolen
#: device cookie used to guess past that ceiling).
LOGIN_DEVICE_LIMIT = "10/hour"


def storage_options(storage_uri: str) -> dict[str, float]:
    """Connection options `limits` passes on to redis-py for `storage_uri`.

    Short timeouts for a Redis URI, none for any other store; a timeout the URI already sets
    in its query (`?socket_timeout=0.5`) is left to it.
    """
    parts = urllib.parse.urlsplit(storage_uri)
    if parts.scheme not in REDIS_SCHEMES:
        return {}
    defaults = {
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        "socket_timeout": REDIS_READ_TIMEOUT,
    }
    in_uri = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    return {name: value for name, value in defaults.items() if name not in in_uri}


class RateLimits:
    """Named limits, e.g. {"login": "20/minute"}, counted in storage shared by `storage_uri`.

    `memory://` counts per process; give several workers or hosts one `redis://` URI, reached
    with the timeouts of `storage_options`.
    """

    def __init__(self, limits: dict[str, str], *, storage_uri: str, enabled: bool) -> None:
        self.enabled = enabled
        named = {"login_device": LOGIN_DEVICE_LIMIT} | limits
        self._items: dict[str, RateLimitItem] = {name: parse(text) for name, text in named.items()}
        store = storage.storage_from_string(storage_uri, **storage_options(storage_uri))
        self._limiter = strategies.FixedWindowRateLimiter(store)

    def hit(self, name: str, key: str) -> None:
        """Count one attempt under `name` for `key`; RateLimited with the wait once over.

        TemporarilyUnavailable when the store cannot count: never an open door.
        """
        if self.enabled and not self._store(self._limiter.hit, name, key):
            raise self._refusal(name, key)

    def check(self, name: str, key: str) -> None:
        """RateLimited with the wait if `key` has used up `name`; counts nothing.

        For limits counted only on failure (`count`), checked before the work they guard.
        """
        if not self.allows(name, key):
            raise self._refusal(name, key)

    def allows(self, name: str, key: str) -> bool:
        """Whether `key` has some of `name` left; counts nothing (True when limits are off)."""
        return not self.enabled or self._store(self._limiter.test, name, key)

    def count(self, name: str, key: str) -> None:
        """Count one attempt under `name` for `key` without refusing it (it is answered
        already); the next `check` refuses once the limit is used up."""
        if self.enabled:
            self._store(self._limiter.hit, name, key)

    def _store(self, operation: Callable[[RateLimitItem, str, str], T], name: str, key: str) -> T:
        try:
            return operation(self._items[name], name, key)
        except Exception as error:  # any storage failure (Redis down, timeout): fail closed
            logger.warning("rate-limit store unavailable: %s: %s", type(error).__name__, error)
            raise TemporarilyUnavailable(
                "the rate-limit store is unavailable; retry shortly"
            ) from None

    def _refusal(self, name: str, key: str) -> RateLimited:
        reset_at = self._store(self._limiter.get_window_stats, name, key).reset_time
        return RateLimited(
            "too many attempts; retry later",
            retry_after=max(1, math.ceil(reset_at - time.time())),
            limit=name,
        )
