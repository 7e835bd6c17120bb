"""Configuration of the reference service, read from the environment when `create_app` runs.

`DATABASE_URL`, `SECRET_KEY`, `SECRET_KEY_FALLBACKS`, `TRUSTED_HOSTS` and every AUTH_* key of
the extension can be set by the environment variable of the same name: durations in seconds,
booleans `true`/`false`, lists comma-separated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask_token_auth import settings_from_environment

INSTANCE = Path(__file__).resolve().parent / "instance"
SECRET_KEY_FILE = INSTANCE / "secret_key"
# Threat: memory exhaustion by huge bodies; the API takes small JSON objects only.
MAX_CONTENT_LENGTH = 64 * 1024
# Threat: DNS rebinding. The names the service answers to, and so its own origins for the
# Origin check; Flask 3.1 also refuses any other Host (400). `make run` serves 127.0.0.1.
DEFAULT_TRUSTED_HOSTS = "localhost,127.0.0.1"


def from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The service's Flask configuration from `environ`."""
    return {
        "DATABASE_URL": environ.get("DATABASE_URL", f"sqlite:///{INSTANCE / 'auth.db'}"),
        "SECRET_KEY": _secret_key(environ),
        # Old secrets that still verify after a key change, as Flask reads them.
        "SECRET_KEY_FALLBACKS": [
            key for key in environ.get("SECRET_KEY_FALLBACKS", "").split(",") if key
        ],
        "TRUSTED_HOSTS": _names(environ.get("TRUSTED_HOSTS", DEFAULT_TRUSTED_HOSTS)),
        "MAX_CONTENT_LENGTH": MAX_CONTENT_LENGTH,
        **settings_from_environment(environ),
    }


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _secret_key(environ: Mapping[str, str]) -> str | None:
    """SECRET_KEY from the environment, else from instance/secret_key (`make run` writes it)."""
    if environ.get("SECRET_KEY"):
        return environ["SECRET_KEY"]
    if SECRET_KEY_FILE.exists():
        return SECRET_KEY_FILE.read_text().strip()
    return None
