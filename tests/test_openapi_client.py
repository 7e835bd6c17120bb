"""A client that openapi-python-client generates from the served OpenAPI document drives the
cookie transport: the document declares the refresh cookie, the CSRF cookie and the
X-CSRF-Token header of `/refresh`, so the generated function sends them (docs/http-api.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import call
from tests.helpers import gunicorn
from tests.helpers import scalar

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
#: Pinned: the names of the generated functions and arguments change between 0.x releases.
#: With python-dateutil, which the generated models import. In an environment of their own:
#: the generator caps httpx below the release the project is tested with.
GENERATOR = ("openapi-python-client==0.29.1", "python-dateutil")
#: Seconds each step may take: the first install downloads the generator; then it is cached.
INSTALL_SECONDS = 300
GENERATE_SECONDS = 120
RUN_SECONDS = 60
EMAIL = "ada@example.com"
#: What the generated client runs: a login answered in cookies, then a refresh whose cookies
#: and header are the generated function's arguments (a new client, with no cookie jar of the
#: login's; `__Host-csrf_token` is `field_host_csrf_token` there). Prints the statuses and the
#: Set-Cookie values of both answers.
COOKIE_SESSION = """
import json
import sys

from auth_api import Client
from auth_api.api.default import post_auth_login
from auth_api.api.default import post_auth_refresh
from auth_api.models import PostAuthLoginBody
from auth_api.models import TokenResponse


def cookies_of(response):
    pairs = (h.split(";", 1)[0].partition("=") for h in response.headers.get_list("set-cookie"))
    return {name: value for name, _, value in pairs}


base_url, email, password = sys.argv[1:]
with Client(base_url=base_url) as client:
    body = PostAuthLoginBody(email=email, password=password)
    login = post_auth_login.sync_detailed(client=client, body=body)
cookies = cookies_of(login)
with Client(base_url=base_url) as client:
    refresh = post_auth_refresh.sync_detailed(
        client=client,
        refresh_token=cookies["refresh_token"],
        field_host_csrf_token=cookies["__Host-csrf_token"],
        x_csrf_token=cookies["__Host-csrf_token"],
    )
print(json.dumps({
    "login": [login.status_code, cookies],
    "refresh": [refresh.status_code, cookies_of(refresh)],
    "parsed": isinstance(refresh.parsed, TokenResponse),
}))
"""


@pytest.fixture(scope="session")
def generator_python(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a virtualenv holding GENERATOR, kept in pytest's cache when there is one
    (`-p no:cacheprovider`: made again for each run)."""
    cache = getattr(pytestconfig, "cache", None)
    home = cache.mkdir("openapi-generator") if cache else tmp_path_factory.mktemp("generator")
    python = home / "bin" / "python"
    marker = home / "installed.txt"
    wanted = "\n".join(GENERATOR)
    if not marker.exists() or marker.read_text() != wanted:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(home)],
            check=True,
            timeout=INSTALL_SECONDS,
        )
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *GENERATOR],
            check=True,
            timeout=INSTALL_SECONDS,
        )
        marker.write_text(wanted)
    return python


@pytest.fixture
def secure_cookie_server(app: Flask, database_url: str, tmp_path: Path) -> Iterator[str]:
    """gunicorn with Secure, host-only cookies: the CSRF cookie is `__Host-csrf_token`."""
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "AUTH_COOKIE_SECURE": "true",
        "AUTH_RATELIMIT_ENABLED": "false",
    }
    with gunicorn("wsgi:app", env, tmp_path / "gunicorn.log", workers=1) as base:
        yield base


def test_a_generated_client_refreshes_with_the_cookie_and_the_csrf_header(
    generator_python: Path, secure_cookie_server: str, app: Flask, tmp_path: Path
) -> None:
    server = secure_cookie_server
    assert call(server, "/auth/register", {"email": EMAIL, "password": PASSWORD})[0] == 201
    (tmp_path / "generator.yaml").write_text("post_hooks: []\n")  # no formatting: faster
    generate = [
        str(generator_python),
        *("-m", "openapi_python_client", "generate"),
        *("--url", f"{server}/auth/openapi.json", "--config", "generator.yaml"),
        *("--meta", "none", "--output-path", "auth_api"),
    ]
    generated = subprocess.run(
        generate, cwd=tmp_path, capture_output=True, text=True, timeout=GENERATE_SECONDS
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr

    session = subprocess.run(
        [generator_python, "-c", COOKIE_SESSION, server, EMAIL, PASSWORD],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    assert session.returncode == 0, session.stderr
    answers = json.loads(session.stdout)
    login_status, login_cookies = answers["login"]
    refresh_status, refresh_cookies = answers["refresh"]
    assert (login_status, refresh_status, answers["parsed"]) == (200, 200, True)
    assert {"refresh_token", "__Host-csrf_token"} <= set(refresh_cookies)
    assert refresh_cookies["refresh_token"] != login_cookies["refresh_token"]  # rotated
    assert refresh_cookies["__Host-csrf_token"] != login_cookies["__Host-csrf_token"]
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens WHERE used_at IS NOT NULL") == 1
