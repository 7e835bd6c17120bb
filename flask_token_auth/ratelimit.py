"""Rate limits on the endpoints an attacker can hammer (threat: brute force and abuse)."""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits import RateLimitItem
from limits import storage
from limits import strategies

from .errors import RateLimited
from .errors import TemporarilyUnavailable

logger = logging.getLogger(__name__)


class RateLimits:
    """Named limits, e.g. {"login": "20/minute"}, counted in storage shared by `storage_uri`.

    `memory://` counts per process; give several workers or hosts one `redis://` URI.
    """

    def __init__(self, limits: dict[str, str], *, storage_uri: str, enabled: bool) -> None:
        self.enabled = enabled
        self._items: dict[str, RateLimitItem] = {name: parse(text) for name, text in limits.items()}
        self._limiter = strategies.FixedWindowRateLimiter(storage.storage_from_string(storage_uri))

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
