"""Configuration of the reference service, read from the environment.

Every key of `app.settings.DEFAULTS` can be set by the environment variable of the same name:
durations in seconds, booleans `true`/`false`, lists comma-separated.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.settings import DEFAULTS

INSTANCE = Path(__file__).resolve().parent / "instance"
SECRET_KEY_FILE = INSTANCE / "secret_key"


def _secret_key() -> str | None:
    """SECRET_KEY from the environment, else from instance/secret_key (`make run` writes it)."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    if SECRET_KEY_FILE.exists():
        return SECRET_KEY_FILE.read_text().strip()
    return None


def _parse(key: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.strip().lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return raw.strip().lower() == "true"
        if isinstance(default, timedelta):
            return timedelta(seconds=float(raw))
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, tuple):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
    except ValueError as exc:
        raise RuntimeError(f"{key}: cannot read {raw!r} from the environment ({exc}).") from None
    return raw


def from_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, Any]:
    """The AUTH_* keys set in `environ`, parsed to the types of their defaults."""
    return {
        key: _parse(key, environ[key], default)
        for key, default in DEFAULTS.items()
        if key in environ
    }


class Config:
    DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{INSTANCE / 'auth.db'}")
    SECRET_KEY = _secret_key()
    # Old secrets that still verify after a key change (comma-separated), as Flask reads them.
    SECRET_KEY_FALLBACKS = tuple(
        key for key in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if key
    )
    # Threat: memory exhaustion by huge bodies; the API takes small JSON objects only.
    MAX_CONTENT_LENGTH = 64 * 1024


for _key, _value in from_environment().items():
    setattr(Config, _key, _value)
