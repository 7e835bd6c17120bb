"""argon2id password hashing with rehash on login and a constant-time miss for unknown users."""

from __future__ import annotations

import secrets

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


class PasswordHasher:
    """Hashes and verifies passwords with one argon2id profile."""

    def __init__(self, profile: str) -> None:
        self._hasher = argon2.PasswordHasher.from_parameters(PROFILES[profile])
        # Threat: user enumeration by timing. Unknown emails are verified against this hash,
        # so a miss costs the same argon2 work as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

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
