"""Check passwords against hashes another application stored, so its users can be imported.

Pure functions: no Flask, no database. Each format is checked the way the library that wrote it
checks it; a hash that is unknown, malformed or too costly to check is simply not a match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

import argon2
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError

# Threat: a corrupt or planted row whose parameters make one login burn minutes of CPU or
# gigabytes of memory. Each bound admits every library default shipped today, with room to grow.
MAX_PBKDF2_ITERATIONS = 10_000_000  # werkzeug 3.1 and Django 5.2 write 1,000,000
MAX_SCRYPT_COST = 2**21  # n * r * p; werkzeug writes 2**15 * 8 * 1, which takes 32 MiB
MAX_BCRYPT_COST = 16  # log2 of the rounds, each step doubles the work; libraries write 10-12
MAX_ARGON2_MEMORY_KIB = 2**21  # 2 GiB, RFC 9106's first recommended profile
MAX_ARGON2_WORK_KIB = 2**22  # memory_cost * time_cost; libsodium's "sensitive" is 1 GiB * 4
MAX_ARGON2_PARALLELISM = 64  # the argon2 C library starts one thread per lane

# What werkzeug 3.1's check_password_hash assumes when a hash names no parameters. No werkzeug
# release wrote such a hash (each records its parameters), and the value follows the installed
# werkzeug's DEFAULT_PBKDF2_ITERATIONS, so it is pinned here.
_WERKZEUG_PBKDF2_DEFAULTS = ["sha256", "1000000"]
_WERKZEUG_SCRYPT_DEFAULTS = ["32768", "8", "1"]
_WERKZEUG_PBKDF2_DIGESTS = ("sha1", "sha256", "sha512")  # werkzeug 0.9-0.11 wrote sha1
_PASSLIB_DIGESTS = {"pbkdf2": "sha1", "pbkdf2-sha256": "sha256", "pbkdf2-sha512": "sha512"}
_DJANGO_DIGESTS = {"pbkdf2_sha1": "sha1", "pbkdf2_sha256": "sha256"}

_FORMAT_PREFIXES = (
    (("$argon2id$", "$argon2i$", "$argon2d$"), "argon2"),
    (("$2a$", "$2b$", "$2y$"), "bcrypt"),
    (("scrypt:", "scrypt$"), "werkzeug-scrypt"),
    (("pbkdf2:", "pbkdf2$"), "werkzeug-pbkdf2"),
    (("$pbkdf2$", "$pbkdf2-sha256$", "$pbkdf2-sha512$"), "passlib-pbkdf2"),
    (("pbkdf2_sha1$", "pbkdf2_sha256$"), "django-pbkdf2"),
)
# A positive decimal without sign, zero padding, `_` or non-ASCII digits, all of which int()
# accepts; ten digits keep int() cheap and inside Python's digit limit.
_COUNT = re.compile(r"[1-9][0-9]{0,9}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")  # cost 4-31
_BCRYPT_MAX_PASSWORD_BYTES = 72
_ARGON2 = argon2.PasswordHasher()


def hash_format(stored: str) -> str | None:
    """The format `stored` belongs to by its prefix alone ("argon2", "bcrypt", "werkzeug-scrypt",
    "werkzeug-pbkdf2", "passlib-pbkdf2", "django-pbkdf2"), or None. The rest is not validated.
    """
    for prefixes, name in _FORMAT_PREFIXES:
        if stored.startswith(prefixes):
            return name
    return None


def is_argon2id(stored: str) -> bool:
    """True when `stored` is an argon2id hash, the variant this package writes; a host rehashes
    any other format after a successful login.
    """
    return stored.startswith("$argon2id$")


def verify_stored_hash(stored: str, password: str) -> bool:
    """True when `password` matches `stored`. False on a mismatch and for a hash that is unknown,
    malformed or costlier than the MAX_* bounds. Raises RuntimeError for a bcrypt hash when the
    `bcrypt` package is missing: a deployment error, not a wrong password.
    """
    name = hash_format(stored)
    if name is None:
        return False
    try:
        return _VERIFIERS[name](stored, password.encode())
    except UnicodeEncodeError:  # a lone surrogate, which no library could have hashed
        return False


def _verify_argon2(stored: str, secret: bytes) -> bool:
    try:
        parameters = argon2.extract_parameters(stored)
        if (
            parameters.memory_cost > MAX_ARGON2_MEMORY_KIB
            or parameters.memory_cost * parameters.time_cost > MAX_ARGON2_WORK_KIB
            or parameters.parallelism > MAX_ARGON2_PARALLELISM
        ):
            return False
        return _ARGON2.verify(stored, secret)
    except (InvalidHashError, VerificationError):
        return False


def _verify_bcrypt(stored: str, secret: bytes) -> bool:
    match = _BCRYPT.fullmatch(stored)
    if match is None or int(match[1]) > MAX_BCRYPT_COST:
        return False
    try:
        import bcrypt
    except ImportError:
        raise RuntimeError(
            "A stored password hash is bcrypt, but the 'bcrypt' package is not installed."
            " Install flask-token-auth[bcrypt] on this host and restart it."
        ) from None
    try:
        # The libraries that write bcrypt ignore bytes past 72; bcrypt>=5 raises instead.
        return bcrypt.checkpw(secret[:_BCRYPT_MAX_PASSWORD_BYTES], stored.encode())
    except ValueError:  # a salt the library rejects
        return False


def _verify_werkzeug_scrypt(stored: str, secret: bytes) -> bool:
    parsed = _split_werkzeug(stored)
    if parsed is None:
        return False
    parameters, salt, expected = parsed
    parameters = parameters or _WERKZEUG_SCRYPT_DEFAULTS
    if len(parameters) != 3 or not all(_COUNT.fullmatch(text) for text in parameters):
        return False
    n, r, p = map(int, parameters)
    if n * r * p > MAX_SCRYPT_COST:
        return False
    try:
        # OpenSSL needs 128 * r * (n + p + 2) bytes: 256 MiB for werkzeug's shape at the bound.
        derived = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=256 * MAX_SCRYPT_COST)
    except ValueError:  # n is not a power of two, or r dwarfs n and needs more memory
        return False
    return hmac.compare_digest(derived, expected)


def _verify_werkzeug_pbkdf2(stored: str, secret: bytes) -> bool:
    parsed = _split_werkzeug(stored)
    if parsed is None or len(parsed[0]) > 2:
        return False
    parameters, salt, expected = parsed
    digest, iterations = parameters + _WERKZEUG_PBKDF2_DEFAULTS[len(parameters) :]
    if digest not in _WERKZEUG_PBKDF2_DIGESTS:
        return False
    return _pbkdf2_matches(digest, secret, salt, iterations, expected)


def _verify_passlib_pbkdf2(stored: str, secret: bytes) -> bool:
    parts = stored.split("$")  # "", name, rounds, salt, checksum
    if len(parts) != 5:
        return False
    salt, checksum = _decode_adapted_base64(parts[3]), _decode_adapted_base64(parts[4])
    if salt is None or checksum is None:
        return False
    return _pbkdf2_matches(_PASSLIB_DIGESTS[parts[1]], secret, salt, parts[2], checksum)


def _verify_django_pbkdf2(stored: str, secret: bytes) -> bool:
    parts = stored.split("$")  # algorithm, iterations, salt, base64 of the derived key
    if len(parts) != 4 or (expected := _decode_base64(parts[3])) is None:
        return False
    return _pbkdf2_matches(_DJANGO_DIGESTS[parts[0]], secret, parts[2].encode(), parts[1], expected)


def _split_werkzeug(stored: str) -> tuple[list[str], bytes, bytes] | None:
    """The method's parameters, the salt's UTF-8 bytes and the digest of `method$salt$hex`."""
    parts = stored.split("$")
    if len(parts) != 3 or _HEX.fullmatch(parts[2]) is None:
        return None
    return parts[0].split(":")[1:], parts[1].encode(), bytes.fromhex(parts[2])


def _pbkdf2_matches(
    digest: str, secret: bytes, salt: bytes, iterations: str, expected: bytes
) -> bool:
    """Derive a key with PBKDF2-HMAC-`digest` and compare it; False past MAX_PBKDF2_ITERATIONS."""
    if _COUNT.fullmatch(iterations) is None or int(iterations) > MAX_PBKDF2_ITERATIONS:
        return False
    derived = hashlib.pbkdf2_hmac(digest, secret, salt, int(iterations))
    # Threat: a timing side channel that tells how much of the key a guess got right.
    return hmac.compare_digest(derived, expected)


def _decode_base64(text: str) -> bytes | None:
    """Standard base64 with its padding, rejecting any stray character; None when invalid."""
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def _decode_adapted_base64(text: str) -> bytes | None:
    """passlib's base64: `.` in place of `+` (which it also reads) and no padding."""
    return _decode_base64(text.replace(".", "+") + "=" * (-len(text) % 4))


_VERIFIERS: dict[str, Callable[[str, bytes], bool]] = {
    "argon2": _verify_argon2,
    "bcrypt": _verify_bcrypt,
    "werkzeug-scrypt": _verify_werkzeug_scrypt,
    "werkzeug-pbkdf2": _verify_werkzeug_pbkdf2,
    "passlib-pbkdf2": _verify_passlib_pbkdf2,
    "django-pbkdf2": _verify_django_pbkdf2,
}
