"""Kinds of setting: how a value is checked, its type of value, and how the docs show it."""

from __future__ import annotations

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
    """PEM public keys: a list, or a mapping kid -> PEM."""

    value_type = "list"

    def check(self, value: Any) -> tuple[tuple[str | None, bytes], ...]:
        if isinstance(value, Mapping):
            items: list[tuple[str | None, Any]] = list(value.items())
        elif isinstance(value, str | bytes):
            items = [(None, value)]
        elif value is None or isinstance(value, _LISTS):
            items = [(None, pem) for pem in value or ()]
        else:
            raise SettingError("must be PEM public keys", "use a list of PEM texts")
        if not all(isinstance(pem, str | bytes) for _, pem in items):
            raise SettingError("must be PEM public keys", "use a list of PEM texts")
        return tuple((kid, pem.encode() if isinstance(pem, str) else pem) for kid, pem in items)
