"""Rate limits on the endpoints an attacker can hammer (threat: brute force and abuse)."""

from __future__ import annotations

import logging
import math
import time
import urllib.parse

from limits import parse
from limits import RateLimitItem
from limits import storage
from limits import strategies

from .errors import RateLimited
from .errors import TemporarilyUnavailable

logger = logging.getLogger(__name__)

#: Seconds to open a connection to a Redis store (threat: a Redis that accepts no connection
#: holding every login and refresh thread, and with them the workers' other routes).
REDIS_CONNECT_TIMEOUT = 0.1
#: Seconds to wait for each Redis answer (threat: a Redis that accepts but never answers
#: holding every login and refresh thread; redis-py 5 waits for ever, later releases 5 s).
REDIS_READ_TIMEOUT = 0.1
REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix"})


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
        self._items: dict[str, RateLimitItem] = {name: parse(text) for name, text in limits.items()}
        store = storage.storage_from_string(storage_uri, **storage_options(storage_uri))
        self._limiter = strategies.FixedWindowRateLimiter(store)

    def hit(self, name: str, key: str) -> None:
        """Count one attempt under `name` for `key`; RateLimited with the wait once over.

        TemporarilyUnavailable when the store cannot count: never an open door.
        """
        if not self.enabled:
            return
        item = self._items[name]
        try:
            allowed = self._limiter.hit(item, name, key)
        except Exception as error:  # any storage failure (Redis down, timeout): fail closed
            logger.warning("rate-limit store unavailable: %s: %s", type(error).__name__, error)
            raise TemporarilyUnavailable(
                "the rate-limit store is unavailable; retry shortly"
            ) from None
        if not allowed:
            reset_at = self._limiter.get_window_stats(item, name, key).reset_time
            raise RateLimited(
                "too many attempts; retry later",
                retry_after=max(1, math.ceil(reset_at - time.time())),
                limit=name,
            )
