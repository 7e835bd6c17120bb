"""Configuration of the reference service, read from the environment when `create_app` runs.

`DATABASE_URL`, `SECRET_KEY`, `SECRET_KEY_FALLBACKS`, `TRUSTED_HOSTS` and every AUTH_* key of
the extension can be set by the environment variable of the same name: durations in seconds,
booleans `true`/`false`, lists comma-separated. The extension checks typed values only; the
text is read here, by the type of value the extension declares for each key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import NamedTuple

from flask_token_auth.engines import register_url_schemes
from flask_token_auth.settings import setting_types

INSTANCE = Path(__file__).resolve().parent / "instance"
SECRET_KEY_FILE = INSTANCE / "secret_key"
# Threat: memory exhaustion by huge bodies; the API takes small JSON objects only.
MAX_CONTENT_LENGTH = 64 * 1024
# Threat: DNS rebinding. The names the service answers to, and so its own origins for the
# Origin check; Flask 3.1 also refuses any other Host (400). `make run` serves 127.0.0.1.
DEFAULT_TRUSTED_HOSTS = "localhost,127.0.0.1"
#: The variables read besides the extension's AUTH_* keys.
VARIABLES = ("DATABASE_URL", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "TRUSTED_HOSTS")


def from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The service's Flask configuration from `environ`; RuntimeError naming a variable whose
    text cannot be read. Lets SQLAlchemy read `postgres://` and `mysql://` URLs, as operators
    write them, with the installed drivers (process-wide: `register_url_schemes`)."""
    register_url_schemes()
    return {
        "DATABASE_URL": environ.get("DATABASE_URL", f"sqlite:///{INSTANCE / 'auth.db'}"),
        "SECRET_KEY": _secret_key(environ),
        # Old secrets that still verify after a key change, as Flask reads them.
        "SECRET_KEY_FALLBACKS": _secrets(environ.get("SECRET_KEY_FALLBACKS", "")),
        "TRUSTED_HOSTS": _names(environ.get("TRUSTED_HOSTS", DEFAULT_TRUSTED_HOSTS)),
        "MAX_CONTENT_LENGTH": MAX_CONTENT_LENGTH,
        **auth_settings(environ),
    }


def auth_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The extension's AUTH_* keys present in `environ`, each read by its type of value;
    RuntimeError naming the variable whose text cannot be read."""
    return {
        key: _read(key, environ[key], value_type)
        for key, value_type in setting_types().items()
        if key in environ
    }


class _Reader(NamedTuple):
    """How a type of value is written in the environment; what to write if it is misread."""

    read: Callable[[str], Any]
    problem: str = ""
    fix: str = ""


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word not in ("true", "false"):
        raise ValueError(text)
    return word == "true"


def _seconds(text: str) -> timedelta:
    return timedelta(seconds=float(text))


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _secrets(text: str) -> list[str]:
    """Comma-separated, each kept exactly as written: a space may be part of a secret."""
    return [secret for secret in text.split(",") if secret]


_READERS = {
    "text": _Reader(str),
    "boolean": _Reader(_boolean, "expected true or false", "write true or false"),
    "integer": _Reader(int, "not an integer", "write a whole number"),
    "duration": _Reader(_seconds, "not a number of seconds", "write seconds, e.g. 900"),
    "list": _Reader(_names),
    "secrets": _Reader(_secrets),
}


def _read(key: str, text: str, value_type: str) -> Any:
    reader = _READERS[value_type]
    try:
        return reader.read(text)
    except (ValueError, OverflowError):  # OverflowError: seconds beyond any timedelta
        raise RuntimeError(
            f"{key}: cannot read {text!r} from the environment ({reader.problem}); {reader.fix}."
        ) from None


def _secret_key(environ: Mapping[str, str]) -> str | None:
    """SECRET_KEY from the environment, else from instance/secret_key (`make run` writes it)."""
    if environ.get("SECRET_KEY"):
        return environ["SECRET_KEY"]
    if SECRET_KEY_FILE.exists():
        return SECRET_KEY_FILE.read_text().strip()
    return None
