"""What importing the package costs (docs/clients.md, docs/architecture.md "Public modules"): the
Python client loads httpx and none of the server side, and the package root resolves its public
names on first access."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import flask_token_auth
from flask_token_auth import manager

ROOT = Path(__file__).resolve().parent.parent
#: Top-level packages of the server side, none of which a native app or CLI should load.
SERVER_SIDE = {
    "flask",
    "werkzeug",
    "flask_sqlalchemy",
    "sqlalchemy",
    "argon2",
    "jwt",
    "cryptography",
}
#: Measured on CPython 3.11 with httpx 0.29: the client's import adds 249 modules (httpx alone
#: 206), where the eager package root added 717. The bound leaves 30 % for other versions.
MAX_MODULES_ADDED = 325


def modules_added_by(statement: str) -> list[str]:
    """The modules that `statement` adds to sys.modules in a fresh interpreter, sorted."""
    script = "\n".join(
        [
            "import json, sys",
            "before = set(sys.modules)",
            statement,
            "print(json.dumps(sorted(set(sys.modules) - before)))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    added: list[str] = json.loads(result.stdout)
    return added


def test_the_client_loads_none_of_the_server_side() -> None:
    added = modules_added_by("import flask_token_auth.client")
    print(f"import flask_token_auth.client: {len(added)} modules")

    assert "httpx" in added
    assert [name for name in added if name.partition(".")[0] in SERVER_SIDE] == []
    ours = [name for name in added if name.partition(".")[0] == "flask_token_auth"]
    assert ours == ["flask_token_auth", "flask_token_auth.client"]
    assert len(added) < MAX_MODULES_ADDED


def test_the_version_loads_no_submodule() -> None:
    added = modules_added_by("import flask_token_auth; flask_token_auth.__version__")

    assert [name for name in added if name.startswith("flask_token_auth")] == ["flask_token_auth"]


@pytest.mark.parametrize("name", flask_token_auth.__all__)
def test_each_public_name_resolves(name: str) -> None:
    value = getattr(flask_token_auth, name)

    assert getattr(flask_token_auth, name) is value
    assert name in dir(flask_token_auth)


def test_the_lazy_names_are_the_public_names() -> None:
    assert sorted(flask_token_auth._MODULE_OF) == sorted(flask_token_auth.__all__)


def test_public_names_are_the_submodules_objects() -> None:
    from flask_token_auth import AuthManager
    from flask_token_auth import current_user
    from flask_token_auth import decorators
    from flask_token_auth import models
    from flask_token_auth import User

    assert AuthManager is manager.AuthManager
    assert User is models.User
    assert current_user is decorators.current_user


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'flask_token_auth' has no attribute 'Nope'"):
        flask_token_auth.Nope  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(flask_token_auth, "auth_manager")
    with pytest.raises(ImportError, match="cannot import name 'Nope'"):
        from flask_token_auth import Nope  # type: ignore[attr-defined]  # noqa: F401
