"""Kinds of setting: how a value is checked, its type of value, and how the docs show it."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from limits import parse

_UNITS = ((86400, "days"), (3600, "h"), (60, "min"))
_LISTS = (list, tuple, set, frozenset)
_ORIGIN = re.compile(r"https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


class SettingError(ValueError):
    """A value a setting cannot take: what is wrong (`problem`) and what to do (`fix`)."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


class Kind:
    """A value taken as it is; subclasses check it."""

    #: Kept out of reprs and never shown.
    secret = False
    #: The type of value, as `settings.setting_types()` names it to hosts that read text.
    value_type = "text"

    def check(self, value: Any) -> Any:
        """The value as the extension uses it; SettingError if it cannot be."""
        return value

    def show(self, default: Any) -> str:
        """How the configuration reference shows the default."""
        return "none" if default in (None, (), frozenset()) else f"`{default}`"


class Text(Kind):
    """A non-empty string; with `path`, one that starts and does not end with a slash."""

    def __init__(self, *, path: bool = False) -> None:
        self.path = path

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise SettingError("must be a non-empty string", "set it")
        if self.path and (not value.startswith("/") or value.endswith("/")):
            raise SettingError(f"{value!r} is not a path", "use a path such as /auth")
        return value


class OptionalText(Kind):
    """A non-empty string, or None for "not set"."""

    def check(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise SettingError("must be a non-empty string or unset", "set it or leave it out")
        return value


class Choice(Kind):
    def __init__(self, options: frozenset[str]) -> None:
        self.options = options

    def check(self, value: Any) -> str:
        if value not in self.options:
            raise SettingError(f"{value!r} is not supported", f"use one of {self._listed()}")
        return str(value)

    def show(self, default: Any) -> str:
        others = ", ".join(f"`{option}`" for option in sorted(self.options - {default}))
        return f"`{default}` (or {others})"

    def _listed(self) -> str:
        return ", ".join(sorted(self.options))


class Flag(Kind):
    value_type = "boolean"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise SettingError(f"must be true or false, got {value!r}", "use a boolean")
        return value

    def show(self, default: Any) -> str:
        return f"`{str(default).lower()}`"


class PositiveInt(Kind):
    """A whole number above zero, or at least zero with `allow_zero`."""

    value_type = "integer"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def check(self, value: Any) -> int:
        least = 0 if self.allow_zero else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            kind = "a whole number, 0 or more" if self.allow_zero else "a positive integer"
            raise SettingError(f"must be {kind}, got {value!r}", "fix the value")
        return value

    def show(self, default: Any) -> str:
        return str(default)


class Duration(Kind):
    """A timedelta or a number of seconds; positive unless `allow_zero`."""

    value_type = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def check(self, value: Any) -> timedelta:
        if isinstance(value, timedelta):
            duration = value
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            duration = timedelta(seconds=value)
        else:
            raise SettingError(f"{value!r} is not a duration", "use a timedelta or seconds")
        if duration < timedelta(0) or (duration == timedelta(0) and not self.allow_zero):
            raise SettingError(f"must be positive, got {value!r}", "use a positive duration")
        return duration

    def show(self, default: Any) -> str:
        seconds = int(default.total_seconds())
        for size, unit in _UNITS:
            if seconds and seconds % size == 0:
                return f"{seconds // size} {unit}"
        return f"{seconds} s"


class Origins(Kind):
    """Origins such as https://app.example.com[:port], compared without a trailing slash.

    Nothing else: a wildcard or a `null` would admit pages no one listed.
    """

    value_type = "list"

    def check(self, value: Any) -> frozenset[str]:
        if not isinstance(value, _LISTS) or not all(isinstance(item, str) for item in value):
            raise SettingError(f"must be a list of strings, got {value!r}", "use a list")
        origins = frozenset(origin.rstrip("/") for origin in value)
        for origin in sorted(origins):
            if not _ORIGIN.fullmatch(origin):
                raise SettingError(
                    f"{origin!r} is not an origin", "write scheme://host[:port], no path or *"
                )
        return origins


class RateLimit(Kind):
    def check(self, value: Any) -> str:
        try:
            parse(value)
        except (ValueError, TypeError):
            raise SettingError(f"{value!r} is not a rate limit", 'use e.g. "10/minute"') from None
        return str(value)


class Secret(Kind):
    """Bytes or text; None when unset (the caller falls back or refuses)."""

    secret = True
    fix = "set a random string"

    def check(self, value: Any) -> bytes | None:
        if not value:
            return None
        if not isinstance(value, str | bytes):
            raise SettingError("must be text or bytes", self.fix)
        return value.encode() if isinstance(value, str) else bytes(value)


class Secrets(Kind):
    """A list of old secrets, each exactly as written."""

    secret = True
    value_type = "secrets"

    def check(self, value: Any) -> tuple[bytes, ...]:
        if value is None:
            return ()
        if not isinstance(value, _LISTS) or not all(isinstance(v, str | bytes) for v in value):
            raise SettingError("must be a list of secrets", "use a list")
        return tuple(item.encode() if isinstance(item, str) else bytes(item) for item in value)


class Pem(Secret):
    """A PEM key as text or bytes; None when unset."""

    fix = "paste the key's PEM"


class PublicKeys(Kind):
    """PEM public keys, each with an optional `kid`: a mapping kid -> PEM, or texts (a list, or
    one text) of entries `[kid=NAME] PEM`, separated by line breaks or commas."""

    value_type = "list"

    def check(self, value: Any) -> tuple[tuple[str | None, bytes], ...]:
        if isinstance(value, Mapping):
            items: list[tuple[Any, Any]] = list(value.items())
            if not all(isinstance(pem, str | bytes) for _, pem in items):
                raise SettingError("must be PEM public keys", "map each kid to a PEM text")
        elif isinstance(value, str | bytes):
            items = _named_pems(value)
        elif value is None or isinstance(value, _LISTS):
            if not all(isinstance(text, str | bytes) for text in value or ()):
                raise SettingError("must be PEM public keys", "use a list of PEM texts")
            items = [item for text in value or () for item in _named_pems(text)]
        else:
            raise SettingError("must be PEM public keys", "use a list of PEM texts")
        for kid, _ in items:
            if kid is not None and not (isinstance(kid, str) and is_kid(kid)):
                raise SettingError(
                    f"{kid!r} is not a kid", "name a key with 1 to 128 letters, digits, . _ or -"
                )
        return tuple((kid, pem.encode() if isinstance(pem, str) else pem) for kid, pem in items)


def is_kid(name: str) -> bool:
    """Whether `name` can name a key: in a JWS header, the JWKS and `kid=NAME` alike."""
    return _KID.fullmatch(name) is not None


def _named_pems(text: str | bytes) -> list[tuple[str | None, str]]:
    """The `[kid=NAME] PEM` entries of `text`; SettingError for anything else in it."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise SettingError("a key is not PEM text", "paste the PEM as it was printed") from None
    entries: list[tuple[str | None, str]] = []
    position = 0
    while text[position:].strip(_SEPARATORS):
        entry = _NAMED_PEM.match(text, position)
        if entry is None:
            # The first line only: a private key pasted here by mistake stays out of the logs.
            shown = text[position:].strip(_SEPARATORS).splitlines()[0][:40]
            raise SettingError(
                f"expected `kid=NAME` or a PEM key at {shown!r}",
                "write each key as its PEM, with a line `kid=NAME` before it to name it",
            )
        entries.append((entry["kid"], entry["pem"]))
        position = entry.end()
    return entries


# An RFC 7515 `kid` we accept: one that the environment syntax `kid=NAME` can carry.
_KID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SEPARATORS = " \t\r\n,"
_NAMED_PEM = re.compile(
    r"[\s,]*(?:kid=(?P<kid>\S+)\s+)?"
    r"(?P<pem>-----BEGIN (?P<label>[A-Z0-9 ]+)-----.*?-----END (?P=label)-----)[ \t]*\r?\n?",
    re.DOTALL,
)


class ClientSecrets(Kind):
    """Client credentials, client id -> secret: a mapping, or texts `client_id:secret`. A secret
    written `sha256:` and 64 hex digits is that digest of the secret. Kept as SHA-256 digests."""

    secret = True
    value_type = "secrets"

    def check(self, value: Any) -> tuple[tuple[str, bytes], ...]:
        if value is None:
            return ()
        if isinstance(value, Mapping):
            pairs = list(value.items())
        elif isinstance(value, _LISTS) and all(isinstance(text, str) for text in value):
            pairs = [_client_pair(text) for text in value]
        else:
            raise SettingError(
                "must map client ids to secrets",
                'use {"client-id": "secret"} or "client-id:secret"',
            )
        digests: dict[str, bytes] = {}
        for client_id, secret in pairs:
            if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
                raise SettingError(
                    f"{client_id!r} is not a client id", "use 1 to 128 letters, digits, . _ ~ or -"
                )
            if client_id in digests:
                raise SettingError(f"the client {client_id} is listed twice", "list it once")
            digests[client_id] = _secret_digest(client_id, secret)
        return tuple(sorted(digests.items()))


def _client_pair(text: str) -> tuple[str, str]:
    client_id, colon, secret = text.partition(":")
    if not colon:
        # Threat: a secret in the logs. A text without a colon may be one; it is not shown.
        raise SettingError("an entry has no colon", "write each client as client_id:secret")
    return client_id, secret


def _secret_digest(client_id: str, secret: Any) -> bytes:
    if isinstance(secret, str) and _HASHED_SECRET.fullmatch(secret):
        return bytes.fromhex(secret.removeprefix("sha256:"))
    if not isinstance(secret, str) or not _CLIENT_SECRET.fullmatch(secret):
        raise SettingError(
            f"the secret of the client {client_id} is not 16 to 256 letters, digits, . _ ~ or -",
            "generate one with `flask auth client-secret`",
        )
    return hashlib.sha256(secret.encode()).digest()


# RFC 6749 section 2.3.1 form-encodes both before HTTP Basic: with unreserved characters only,
# a client that does and one that does not send the same bytes.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_CLIENT_SECRET = re.compile(r"[A-Za-z0-9._~-]{16,256}")
_HASHED_SECRET = re.compile(r"sha256:[0-9a-f]{64}")
