"""argon2id password hashing with rehash on login and a constant-time miss for unknown users."""

from __future__ import annotations

import collections
import secrets
import statistics
import time
from collections.abc import Callable

import argon2
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError

# RFC 9106's two recommended profiles, and a cheap one that settings allow only under TESTING.
PROFILES = {
    "rfc9106_low_memory": argon2.profiles.RFC_9106_LOW_MEMORY,
    "rfc9106_high_memory": argon2.profiles.RFC_9106_HIGH_MEMORY,
    "test": argon2.Parameters(
        type=argon2.Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=1,
        memory_cost=8,
        parallelism=1,
    ),
}


#: How many recent checks of a host's passwords a miss is made to last like (their median).
TIMED_CHECKS = 64


class PasswordHasher:
    """Hashes and verifies passwords with one argon2id profile; times the checks of a host's
    own passwords so that a login for nobody lasts as long as one for somebody."""

    def __init__(self, profile: str) -> None:
        self._hasher = argon2.PasswordHasher.from_parameters(PROFILES[profile])
        # Threat: user enumeration by timing. Unknown emails are verified against this hash,
        # so a miss costs the same argon2 work as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        self._check_seconds: collections.deque[float] = collections.deque(maxlen=TIMED_CHECKS)

    def timed_check(self, check: Callable[[], bool]) -> bool:
        """`check()` (a host's `check_password`, or another format's verification), timed."""
        started = time.perf_counter()
        try:
            return check()
        finally:
            self._check_seconds.append(time.perf_counter() - started)

    def spend_a_check(self) -> None:
        """Last as long as a `timed_check` usually does (an argon2 check before the first).

        Threat: user enumeration by timing, where the host's hashes cost what ours do not.
        """
        if self._check_seconds:
            time.sleep(statistics.median(list(self._check_seconds)))
        else:
            self.verify(None, "")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no hash, spend the same time and return False."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and (
                password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the current profile's."""
        return self._hasher.check_needs_rehash(password_hash)
