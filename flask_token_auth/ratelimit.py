"""Rate limits on the endpoints an attacker can hammer (threat: brute force and abuse)."""

from __future__ import annotations

import math
import time

from limits import parse
from limits import RateLimitItem
from limits import storage
from limits import strategies

from .errors import RateLimited


class RateLimits:
    """Named limits, e.g. {"login": "20/minute"}, counted in storage shared by `storage_uri`.

    `memory://` counts per process; give several workers or hosts one `redis://` URI.
    """

    def __init__(self, limits: dict[str, str], *, storage_uri: str, enabled: bool) -> None:
        self.enabled = enabled
        self._items: dict[str, RateLimitItem] = {name: parse(text) for name, text in limits.items()}
        self._limiter = strategies.FixedWindowRateLimiter(storage.storage_from_string(storage_uri))

    def hit(self, name: str, key: str) -> None:
        """Count one attempt under `name` for `key`; RateLimited with the wait once over."""
        if not self.enabled:
            return
        item = self._items[name]
        if not self._limiter.hit(item, name, key):
            reset_at = self._limiter.get_window_stats(item, name, key).reset_time
            raise RateLimited(
                "too many attempts; retry later",
                retry_after=max(1, math.ceil(reset_at - time.time())),
            )
