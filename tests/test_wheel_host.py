"""The wheel in a host of its own: built, installed into a new virtualenv beside the README's
host files (whose package is named `app`), migrated with the README's commands, served by
gunicorn and driven over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import server_database
from tests.helpers import CSRF_COOKIE
from tests.helpers import gunicorn
from tests.helpers import port_of

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
README = REPOSITORY / "README.md"
COMMAND_TIMEOUT_SECONDS = 600
PASSWORD = "correct horse battery"
ADMIN_PASSWORD = "a long admin password"


def readme_host() -> tuple[dict[str, str], str]:
    """The host files (`# app/...` blocks) and the shell session of the README."""
    text = README.read_text()
    blocks = re.findall(r"```(python|sh)\n(.*?)```", text, flags=re.DOTALL)
    files = {
        code.split("\n", 1)[0].removeprefix("# "): code
        for language, code in blocks
        if language == "python" and code.startswith("# app/")
    }
    shell = [code for language, code in blocks if language == "sh" and code.startswith("# in the")]
    assert set(files) == {"app/__init__.py", "app/models.py", "app/views.py"}
    assert len(shell) == 1
    return files, shell[0]


def run(command: list[str | Path], **options: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
        **options,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, REPOSITORY])
    (built,) = dist.glob("flask_token_auth-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new, empty virtualenv (the README's `pip install` fills it)."""
    directory = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", directory])
    return directory


@pytest.fixture(params=["sqlite", "postgresql"])
def host_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'host.db'}"
    else:
        yield from server_database("postgresql")


class HostClient:
    """An HTTP client that keeps the auth cookies itself (the host serves plain http here,
    where a cookie jar would drop the Secure ones)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        connection.request(method, path, body=json.dumps(body) if body else None, headers=sent)
        response = connection.getresponse()
        data = response.read().decode()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        connection.close()
        content_type = response.headers.get("Content-Type", "")
        parsed = json.loads(data) if content_type.startswith("application/json") else data
        return response.status, content_type, parsed


#: The README's serving line: its worker count and its application.
README_GUNICORN = re.compile(r'gunicorn --workers (\d+) --bind 127\.0\.0\.1:8000 "(\w+:\w+\(\))"')


def serve(command: str, host_dir: Path, env: dict[str, str]) -> AbstractContextManager[str]:
    """The README's gunicorn command, in the host's folder with `env` alone, on a free port:
    gunicorn, giving the host's base URL once it answers."""
    match = README_GUNICORN.fullmatch(command.strip())
    assert match is not None, f"not the README's gunicorn command: {command}"
    workers, application = int(match[1]), match[2]
    log = host_dir / "gunicorn.log"
    return gunicorn(
        application, env, log, workers=workers, program=["gunicorn"], cwd=host_dir, inherited={}
    )


def test_the_readme_host_installs_migrates_and_serves(
    wheel: Path, venv: Path, host_database: str, tmp_path: Path
) -> None:
    files, shell = readme_host()
    host_dir = tmp_path / "host"
    for name, code in files.items():
        (host_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (host_dir / name).write_text(code)
    *setup, serve_line = [line for line in shell.splitlines() if line.strip()]
    script = "\n".join(setup).replace('"../flask-token-auth[', f'"{wheel}[')
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTH_")}
    env.update(PATH=f"{venv / 'bin'}:{env['PATH']}", DATABASE_URL=host_database)
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)

    # The README's commands, then the environment they leave, for gunicorn.
    result = run(["bash", "-euo", "pipefail", "-c", f"{script}\nenv -0"], cwd=host_dir, env=env)
    served_env = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)

    # The wheel ships the extension alone (typed), nothing named `app` or `config`.
    listing = "import importlib.metadata as m; print(*m.files('flask-token-auth'), sep='\\n')"
    listed = run([venv / "bin" / "python", "-c", listing], cwd=tmp_path)
    shipped = listed.stdout.split()
    assert {Path(name).parts[0] for name in shipped} == {
        "flask_token_auth",
        f"{wheel.name.split('-py3')[0]}.dist-info",
    }
    assert "flask_token_auth/py.typed" in shipped
    (revision,) = (host_dir / "migrations" / "versions").glob("*.py")
    generated = revision.read_text()
    for table in ("users", "auth_sessions", "refresh_tokens", "auth_events", "note"):
        assert f"op.create_table('{table}'" in generated
    assert "flask_token_auth" not in generated  # plain SQLAlchemy types only

    with serve(serve_line, host_dir, served_env) as base:
        drive_the_host(HostClient(port_of(base)))


def drive_the_host(client: HostClient) -> None:
    email = f"ada-{secrets.token_hex(4)}@example.com"
    status, _, body = client.call("POST", "/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201, body
    user_id = body["user"]["id"]
    status, _, body = client.call("POST", "/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, body
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert set(client.cookies) == {"refresh_token", CSRF_COOKIE, "device_token"}

    assert client.call("GET", "/notes", headers=bearer)[::2] == (200, {"user_id": user_id})
    assert client.call("GET", "/report", headers=bearer)[::2] == (200, {"role": "user"})
    assert client.call("GET", "/welcome")[::2] == (200, {"user_id": None})
    status, _, body = client.call("GET", "/admin", headers=bearer)
    assert (status, body["error"]) == (403, "insufficient_scope")
    status, _, body = client.call("GET", "/notes")
    assert (status, body["error"]) == (401, "missing_token")

    csrf = {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
    status, _, body = client.call("POST", "/auth/refresh", headers=csrf)
    assert status == 200, body
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.call("GET", "/notes", headers=bearer)[0] == 200

    status, content_type, _ = client.call("GET", "/nowhere")
    assert (status, content_type.split(";")[0]) == (404, "text/html")  # the host's own page

    admin = HostClient(client.port)
    status, _, body = admin.call(
        "POST", "/auth/login", {"email": "boss@example.com", "password": ADMIN_PASSWORD}
    )
    assert status == 200, body
    admin_bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert admin.call("GET", "/admin", headers=admin_bearer)[::2] == (
        200,
        {"email": "boss@example.com"},
    )

    csrf = {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
    assert client.call("POST", "/auth/logout", headers=csrf)[0] == 204
    status, _, body = client.call("GET", "/notes", headers=bearer)
    assert (status, body["error"]) == (401, "invalid_token")
