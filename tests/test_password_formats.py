"""Checking passwords against hashes that other libraries wrote (flask_token_auth.password_formats).

Each format is checked with a hash from the library that writes it. passlib, bcrypt and Django are
imported with importorskip inside the tests, so this file imports without them.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from types import SimpleNamespace

import argon2
import pytest
import werkzeug.security
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from flask_token_auth.password_formats import hash_format
from flask_token_auth.password_formats import is_argon2id
from flask_token_auth.password_formats import MAX_ARGON2_MEMORY_KIB
from flask_token_auth.password_formats import MAX_ARGON2_PARALLELISM
from flask_token_auth.password_formats import MAX_ARGON2_WORK_KIB
from flask_token_auth.password_formats import MAX_BCRYPT_COST
from flask_token_auth.password_formats import MAX_PBKDF2_ITERATIONS
from flask_token_auth.password_formats import MAX_SCRYPT_COST
from flask_token_auth.password_formats import verify_stored_hash

PASSWORD = "pässwörd ✓"
WRONG = "pässwörd ✗"
# Well-formed bcrypt hashes: "$2b$04$" + 22 characters of salt + 31 of checksum.
BCRYPT_BODY = "KLy8aeYGO52L35sUdaawjOwofn4sbERhGe.jRSHA1T9XrbSSNuaYW"
HEX_DIGEST = "00" * 32
AB64_DIGEST = "A" * 43


@pytest.fixture(scope="module")
def passlib_hash() -> ModuleType:
    with warnings.catch_warnings():
        # passlib 1.7 imports the `crypt` module, deprecated since Python 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        module: ModuleType = pytest.importorskip("passlib.hash")
    return module


@pytest.fixture
def library_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace each key derivation and library check with a recorder that never matches."""
    calls: list[str] = []

    def recorder(name: str, result: object) -> Callable[..., object]:
        def record(*args: object, **kwargs: object) -> object:
            calls.append(name)
            return result

        return record

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", recorder("pbkdf2", b""))
    monkeypatch.setattr(hashlib, "scrypt", recorder("scrypt", b""))
    monkeypatch.setattr(argon2.PasswordHasher, "verify", recorder("argon2", False))
    monkeypatch.setitem(sys.modules, "bcrypt", SimpleNamespace(checkpw=recorder("bcrypt", False)))
    return calls


def cheap_argon2(kind: argon2.Type = argon2.Type.ID) -> argon2.PasswordHasher:
    return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=kind)


def assert_verifies(stored: str, password: str = PASSWORD) -> None:
    assert verify_stored_hash(stored, password) is True
    assert verify_stored_hash(stored, WRONG) is False


@pytest.mark.parametrize("method", ["scrypt", "scrypt:1024:8:2"])
def test_werkzeug_scrypt(method: str) -> None:
    stored = generate_password_hash(PASSWORD, method=method)
    assert hash_format(stored) == "werkzeug-scrypt"
    assert_verifies(stored)


@pytest.mark.parametrize(
    "method", ["pbkdf2:sha256:1000", "pbkdf2:sha512:1000", "pbkdf2:sha1:1000", "pbkdf2"]
)
def test_werkzeug_pbkdf2(method: str) -> None:
    stored = generate_password_hash(PASSWORD, method=method)
    assert hash_format(stored) == "werkzeug-pbkdf2"
    assert_verifies(stored)


@pytest.mark.parametrize(
    ("method", "digest"), [("pbkdf2", "sha256"), ("pbkdf2:sha1", "sha1"), ("scrypt", None)]
)
def test_werkzeug_defaults_for_missing_parameters(method: str, digest: str | None) -> None:
    """No werkzeug release wrote these; werkzeug 3.1 fills in its defaults, and so do we."""
    salt = "sälz ✓"  # hashed as its UTF-8 text, not decoded
    if digest is None:
        derived = hashlib.scrypt(
            PASSWORD.encode(), salt=salt.encode(), n=2**15, r=8, p=1, maxmem=2**26
        )
    else:
        derived = hashlib.pbkdf2_hmac(digest, PASSWORD.encode(), salt.encode(), 1_000_000)
    stored = f"{method}${salt}${derived.hex()}"
    if digest is None or werkzeug.security.DEFAULT_PBKDF2_ITERATIONS == 1_000_000:
        assert check_password_hash(stored, PASSWORD) is True  # werkzeug 3.1's own reading
    assert_verifies(stored)


@pytest.mark.parametrize("handler", ["pbkdf2_sha256", "pbkdf2_sha512", "pbkdf2_sha1"])
def test_passlib_pbkdf2(passlib_hash: ModuleType, handler: str) -> None:
    stored = getattr(passlib_hash, handler).hash(PASSWORD)
    assert hash_format(stored) == "passlib-pbkdf2"
    assert_verifies(stored)


@pytest.mark.parametrize(
    "stored",
    [
        # Published in Django's tests/auth_tests/test_hashers.py (test_low_level_pbkdf2*).
        "pbkdf2_sha256$390000$seasalt2$geC/uZ92nRXDSjSxeoiBqYyRcrLzMm8xK3ro1QS1uo8=",
        "pbkdf2_sha1$390000$seasalt2$aDapRanzW8aHTz97v2TcfHzWD+I=",
    ],
)
def test_django_published_vectors(stored: str) -> None:
    assert hash_format(stored) == "django-pbkdf2"
    assert_verifies(stored, "lètmein")


@pytest.mark.parametrize("hasher", ["PBKDF2PasswordHasher", "PBKDF2SHA1PasswordHasher"])
def test_django_pbkdf2(hasher: str) -> None:
    hashers = pytest.importorskip("django.contrib.auth.hashers")
    django_hasher = getattr(hashers, hasher)()
    stored = django_hasher.encode(PASSWORD, django_hasher.salt())
    assert hash_format(stored) == "django-pbkdf2"
    assert_verifies(stored)


@pytest.mark.parametrize(("prefix", "rounds"), [(b"2b", 4), (b"2a", 4), (b"2b", 12)])
def test_bcrypt(prefix: bytes, rounds: int) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds, prefix)).decode()
    assert hash_format(stored) == "bcrypt"
    assert_verifies(stored)


def test_bcrypt_2y_is_php_name_for_2b() -> None:
    bcrypt = pytest.importorskip("bcrypt")
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    assert_verifies("$2y$" + stored.removeprefix("$2b$"))


def test_bcrypt_uses_the_first_72_bytes() -> None:
    bcrypt = pytest.importorskip("bcrypt")
    password = "a" + "ä" * 40  # 81 bytes; byte 72 splits an "ä"
    stored = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(4)).decode()
    assert verify_stored_hash(stored, password) is True
    assert verify_stored_hash(stored, password + "anything after byte 72") is True
    assert verify_stored_hash(stored, password[:36]) is False


def test_bcrypt_missing_is_a_deployment_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bcrypt", None)
    with pytest.raises(RuntimeError, match=r"Install flask-token-auth\[bcrypt\]"):
        verify_stored_hash("$2b$04$" + BCRYPT_BODY, PASSWORD)
    assert verify_stored_hash("$2b$04$" + BCRYPT_BODY[:-1], PASSWORD) is False


def test_argon2id_with_argon2_cffi_defaults() -> None:
    stored = argon2.PasswordHasher().hash(PASSWORD)
    assert hash_format(stored) == "argon2"
    assert is_argon2id(stored) is True
    assert_verifies(stored)


@pytest.mark.parametrize("kind", [argon2.Type.I, argon2.Type.D])
def test_argon2i_and_argon2d(kind: argon2.Type) -> None:
    stored = cheap_argon2(kind).hash(PASSWORD)
    assert hash_format(stored) == "argon2"
    assert is_argon2id(stored) is False
    assert_verifies(stored)


def test_argon2_version_1_2_hash_without_v() -> None:
    # Published in Django's tests/auth_tests/test_hashers.py (test_argon2), minus "argon2".
    assert_verifies(
        "$argon2i$m=8,t=1,p=1$c29tZXNhbHQ$gwQOXSNhxiOxPOA0+PY10P9QFO"
        "4NAYysnqRt1GSQLE55m+2GYDt9FEjPMHhP2Cuf0nOEXXMocVrsJAtNSsKyfg",
        "secret",
    )


def test_empty_password_matches_only_its_own_hash() -> None:
    assert verify_stored_hash("", "") is False
    stored = generate_password_hash("", method="pbkdf2:sha256:1000")
    assert verify_stored_hash(stored, "") is True
    assert verify_stored_hash(stored, " ") is False


def test_passwords_are_not_unicode_normalized() -> None:
    stored = generate_password_hash("é", method="pbkdf2:sha256:1000")  # U+00E9
    assert verify_stored_hash(stored, "e\u0301") is False


@pytest.mark.parametrize(
    "stored",
    [
        generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
        cheap_argon2().hash(PASSWORD),
    ],
)
def test_lone_surrogate_password_is_no_match(stored: str) -> None:
    assert verify_stored_hash(stored, PASSWORD + "\ud800") is False


@pytest.mark.parametrize(
    "stored",
    [
        "",
        " ",
        PASSWORD,
        "md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3",  # Django's salted MD5
        "sha1$$6d138ca3ae545631b3abd71a4f076ce759c5700b",
        "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",  # md5-crypt
        "$6$rounds=5000$salt$hash",  # sha512-crypt
        "$2x$04$" + BCRYPT_BODY,  # crypt_blowfish's buggy 8-bit variant
        "$2$04$" + BCRYPT_BODY,
        "argon2$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q",  # Django's wrapper
        "bcrypt_sha256$$2b$04$" + BCRYPT_BODY,
        "pbkdf2_sha512$1000$salt$hash",
        "!unusable-django-password",
        "{SSHA}c2FsdA==",
        "$ARGON2ID$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q",
        "SCRYPT:32768:8:1$salt$" + HEX_DIGEST,
    ],
)
def test_unknown_formats(stored: str) -> None:
    assert hash_format(stored) is None
    assert verify_stored_hash(stored, PASSWORD) is False


@pytest.mark.parametrize(
    "stored",
    [
        "$argon2id$",
        "$argon2id$v=19$m=65536,t=3,p=4$",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$",
        "$argon2id$v=19$m=8,t=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q",
        "$argon2id$v=19$m=x,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q",
        "$argon2id$v=19$m=-8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q",
        "$argon2id$v=19$m=8,t=1,p=0$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q$",
        "$argon2id$v=19$m=8,t=1,p=1$c2Fsd✓HNhbHQ$YC9+jJCrQhs5R6db7LlN8Q",
        "$2b$",
        "$2b$04$",
        "$2b$04$" + BCRYPT_BODY[:-1],
        "$2b$04$" + BCRYPT_BODY + "x",
        "$2b$04$" + BCRYPT_BODY + "\n",
        "$2b$4$" + BCRYPT_BODY,
        "$2b$03$" + BCRYPT_BODY,  # below bcrypt's minimum cost
        "$2b$32$" + BCRYPT_BODY,  # above its maximum
        "$2b$04$" + BCRYPT_BODY[:-1] + "✓",
        "scrypt:",
        "scrypt$salt",
        "scrypt:1024:8:1$salt$",
        "scrypt:1024:8:1$salt$abc",  # odd number of hex digits
        "scrypt:1024:8:1$salt$" + HEX_DIGEST.upper(),
        "scrypt:1024:8:1$salt$" + HEX_DIGEST + "$00",
        "scrypt:1024:8$salt$" + HEX_DIGEST,
        "scrypt:1024:8:1:1$salt$" + HEX_DIGEST,
        "scrypt:1000:8:1$salt$" + HEX_DIGEST,  # n is not a power of two
        "scrypt:1:8:1$salt$" + HEX_DIGEST,
        "scrypt:0:8:1$salt$" + HEX_DIGEST,
        "scrypt:+1024:8:1$salt$" + HEX_DIGEST,
        "pbkdf2:",
        "pbkdf2:sha256:1000$salt",
        "pbkdf2:sha256:1000$salt$",
        "pbkdf2:sha256:1000$salt$0g" + HEX_DIGEST[2:],
        "pbkdf2:md5:1000$salt$" + HEX_DIGEST,
        "pbkdf2:sha256:1000:1$salt$" + HEX_DIGEST,
        "pbkdf2:sha256:$salt$" + HEX_DIGEST,
        "pbkdf2:sha256:0$salt$" + HEX_DIGEST,
        "pbkdf2:sha256:-1$salt$" + HEX_DIGEST,
        "pbkdf2:sha256:01000$salt$" + HEX_DIGEST,
        "pbkdf2:sha256:1_000$salt$" + HEX_DIGEST,
        "pbkdf2:sha256: 1000$salt$" + HEX_DIGEST,
        "pbkdf2:sha256:\u0661\u0660\u0660\u0660$salt$" + HEX_DIGEST,  # int() reads these
        "pbkdf2:sha256:1000$sa\ud800lt$" + HEX_DIGEST,
        "$pbkdf2-sha256$",
        "$pbkdf2-sha256$1000$c2FsdA",
        "$pbkdf2-sha256$1000$c2FsdA$",
        "$pbkdf2-sha256$1000$c2FsdA$" + AB64_DIGEST + "$",
        "$pbkdf2-sha256$1000$c2F!dA$" + AB64_DIGEST,
        "$pbkdf2-sha256$1000$c2FsdA$" + AB64_DIGEST[:-2],  # one character past a 4-group
        "$pbkdf2-sha256$1000$c2FsdA$" + AB64_DIGEST[:-1] + "✓",
        "$pbkdf2-sha256$01000$c2FsdA$" + AB64_DIGEST,
        "$pbkdf2-sha256$x$c2FsdA$" + AB64_DIGEST,
        "$pbkdf2$1000$c2FsdA$" + AB64_DIGEST,  # sha1 with a sha256-sized checksum
        "pbkdf2_sha256$",
        "pbkdf2_sha256$1000$salt",
        "pbkdf2_sha256$1000$salt$",
        "pbkdf2_sha256$1000$salt$not base64!",
        "pbkdf2_sha256$1000$salt$c2FsdA",  # missing padding
        "pbkdf2_sha256$1000$salt$c2FsdA==$",
        "pbkdf2_sha256$abc$salt$c2FsdA==",
        "pbkdf2_sha256$0$salt$c2FsdA==",
    ],
)
def test_malformed_hashes_are_no_match(stored: str) -> None:
    assert hash_format(stored) is not None
    assert verify_stored_hash(stored, PASSWORD) is False


REAL_HASHES = [
    cheap_argon2().hash(PASSWORD),
    generate_password_hash(PASSWORD, method="scrypt:1024:8:1"),
    generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
    # Written by passlib 1.7.4 and Django 5.2 for PASSWORD, at 1000 rounds.
    "$pbkdf2-sha256$1000$lRKi1BoDYOx9T8nZu7dWSg$HwY16k.EwsxdCMoGJHnxYJgUdscXL17x7D0imoHB20I",
    "pbkdf2_sha256$1000$tf5tWrCYvsGuFmTAqIRxTM$ryf7SxA11jUf7eADabuC8OyJEHHUYLDez9Fxh22A/Lk=",
]


@pytest.mark.parametrize("stored", REAL_HASHES)
@pytest.mark.parametrize("cut", [0, 1, 2, 5, 30])
def test_truncated_real_hashes_are_no_match(stored: str, cut: int) -> None:
    assert verify_stored_hash(stored[: len(stored) - cut], PASSWORD) is (cut == 0)


def test_truncated_bcrypt_hash_is_no_match() -> None:
    bcrypt = pytest.importorskip("bcrypt")
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    assert verify_stored_hash(stored, PASSWORD) is True
    for cut in (1, 2, 31, 53):
        assert verify_stored_hash(stored[:-cut], PASSWORD) is False


ARGON2_REST = "$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q"


@pytest.mark.parametrize(
    ("stored", "reaches"),
    [
        (f"pbkdf2:sha256:{MAX_PBKDF2_ITERATIONS}$salt${HEX_DIGEST}", "pbkdf2"),
        (f"pbkdf2:sha256:{MAX_PBKDF2_ITERATIONS + 1}$salt${HEX_DIGEST}", None),
        (f"pbkdf2:sha512:{2**40}$salt${HEX_DIGEST}", None),
        (f"pbkdf2:sha256:{'9' * 5000}$salt${HEX_DIGEST}", None),  # past int()'s digit limit
        (f"$pbkdf2-sha256${MAX_PBKDF2_ITERATIONS}$c2FsdA${AB64_DIGEST}", "pbkdf2"),
        (f"$pbkdf2-sha256${2**32 - 1}$c2FsdA${AB64_DIGEST}", None),
        (f"pbkdf2_sha256${MAX_PBKDF2_ITERATIONS}$salt$c2FsdA==", "pbkdf2"),
        (f"pbkdf2_sha256${2**31}$salt$c2FsdA==", None),
        (f"scrypt:{MAX_SCRYPT_COST // 8}:8:1$salt${HEX_DIGEST}", "scrypt"),
        (f"scrypt:{MAX_SCRYPT_COST // 4}:8:1$salt${HEX_DIGEST}", None),
        (f"scrypt:2:1:{MAX_SCRYPT_COST}$salt${HEX_DIGEST}", None),
        (f"scrypt:{2**30}:{2**30}:{2**30}$salt${HEX_DIGEST}", None),
        (f"$2b${MAX_BCRYPT_COST}${BCRYPT_BODY}", "bcrypt"),
        (f"$2b${MAX_BCRYPT_COST + 1}${BCRYPT_BODY}", None),
        (f"$2b$31${BCRYPT_BODY}", None),
        (f"$argon2id$v=19$m={MAX_ARGON2_MEMORY_KIB},t=2,p=4{ARGON2_REST}", "argon2"),
        (f"$argon2id$v=19$m={MAX_ARGON2_MEMORY_KIB * 2},t=1,p=4{ARGON2_REST}", None),
        (f"$argon2id$v=19$m={2**20},t={MAX_ARGON2_WORK_KIB // 2**20 + 1},p=4{ARGON2_REST}", None),
        (f"$argon2id$v=19$m={2**12},t=1000000,p=4{ARGON2_REST}", None),
        (f"$argon2id$v=19$m=65536,t=3,p={MAX_ARGON2_PARALLELISM}{ARGON2_REST}", "argon2"),
        (f"$argon2id$v=19$m=65536,t=3,p={MAX_ARGON2_PARALLELISM + 1}{ARGON2_REST}", None),
    ],
)
def test_costs_past_the_bounds_are_never_computed(
    library_calls: list[str], stored: str, reaches: str | None
) -> None:
    """A corrupt row cannot make one login burn minutes; a cost at the bound is computed."""
    assert verify_stored_hash(stored, PASSWORD) is False
    assert library_calls == ([reaches] if reaches else [])


@pytest.mark.parametrize(
    ("stored", "name"),
    [
        ("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q", "argon2"),
        ("$argon2i$...", "argon2"),
        ("$argon2d$...", "argon2"),
        ("$2a$...", "bcrypt"),
        ("$2b$...", "bcrypt"),
        ("$2y$...", "bcrypt"),
        ("scrypt:32768:8:1$salt$00", "werkzeug-scrypt"),
        ("scrypt$salt$00", "werkzeug-scrypt"),
        ("pbkdf2:sha256:600000$salt$00", "werkzeug-pbkdf2"),
        ("pbkdf2$salt$00", "werkzeug-pbkdf2"),
        ("$pbkdf2-sha256$29000$...", "passlib-pbkdf2"),
        ("$pbkdf2-sha512$25000$...", "passlib-pbkdf2"),
        ("$pbkdf2$131000$...", "passlib-pbkdf2"),
        ("pbkdf2_sha256$1000000$...", "django-pbkdf2"),
        ("pbkdf2_sha1$1000000$...", "django-pbkdf2"),
    ],
)
def test_hash_format_names(stored: str, name: str) -> None:
    assert hash_format(stored) == name


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q", True),
        ("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q", False),
        ("$2b$04$" + BCRYPT_BODY, False),
        ("argon2$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q", False),
        ("", False),
    ],
)
def test_is_argon2id(stored: str, expected: bool) -> None:
    assert is_argon2id(stored) is expected


def test_passlib_adapted_base64_reads_dot_and_plus(passlib_hash: ModuleType) -> None:
    handler = passlib_hash.pbkdf2_sha256.using(rounds=1000, salt=b"\xfb\xef\xbe" * 6)
    stored = handler.hash(PASSWORD)
    dots = "." * 24  # the salt's standard base64 is "+" * 24
    assert stored.split("$")[3] == dots
    assert_verifies(stored)
    assert_verifies(stored.replace(dots, "+" * 24))  # passlib reads both
