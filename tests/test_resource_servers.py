"""The resource servers of docs/resource-servers.md against the reference service under
gunicorn: an Express one (tests/node/express-resource-server.mjs, run by Node) and a FastAPI one
(tests/fastapi_resource_server.py, through its TestClient). Each has a route that asks the
auth server (introspection) and one that verifies tokens with the JWKS alone: after a logout
the first refuses the token at once, the second accepts it until it expires."""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flask_token_auth.keys import generate_key_pair_pem
from tests.conftest import app_with_tables
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.fastapi_resource_server import create_resource_server
from tests.helpers import bearer
from tests.helpers import call
from tests.helpers import gunicorn
from tests.helpers import log_tail
from tests.node_tools import node_lines
from tests.node_tools import node_packages

pytestmark = pytest.mark.slow

ALGORITHM = "ES256"
ISSUER = AUDIENCE = "flask-token-auth"
CLIENT_ID = "orders-api"
CLIENT_SECRET = "orders-api-secret-0123456789"
WRONG_SECRET = "orders-api-secret-wrong-000"
CREDENTIALS = {"email": "ada@example.com", "password": PASSWORD}
REPOSITORY = Path(__file__).resolve().parent.parent
#: (status, JSON body) of a GET of a resource server's path with these headers.
Get = Callable[[str, dict[str, str]], tuple[int, Any]]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The reference service on SQLite under gunicorn, signing with an ES256 key, with the
    orders API an introspection client (by the SHA-256 of its secret): its URL with `/auth`."""
    directory = tmp_path_factory.mktemp("auth-server")
    url = f"sqlite:///{directory / 'auth.db'}"
    digest = hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()
    env = {
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET,
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_RATELIMIT_ENABLED": "false",
        "AUTH_JWT_ALGORITHM": ALGORITHM,
        "AUTH_JWT_PRIVATE_KEY": generate_key_pair_pem(ALGORITHM)[0],
        "AUTH_INTROSPECTION_CLIENTS": f"{CLIENT_ID}:sha256:{digest},other:{'x' * 16}",
    }
    log = directory / "gunicorn.log"
    with app_with_tables(url), gunicorn("wsgi:app", env, log, workers=1) as base:
        assert call(base, "/auth/register", CREDENTIALS)[0] == 201
        yield f"{base}/auth"
    assert "Traceback" not in log.read_text(), log_tail(log)


def new_access_token(auth_url: str) -> str:
    status, _, body = call(auth_url.removesuffix("/auth"), "/auth/login", CREDENTIALS)
    assert status == 200, body
    token: str = body["access_token"]
    return token


def logout(auth_url: str, token: str) -> None:
    status, _, _ = call(auth_url.removesuffix("/auth"), "/auth/logout", {}, bearer(token))
    assert status == 204


def check_resource_server(auth_url: str, get: Get, get_unknown: Get) -> None:
    """docs/resource-servers.md: both routes take a live session's token; after its logout,
    the introspecting route refuses it at once and the JWKS-only one still takes it. A resource
    server whose secret the auth server does not know (`get_unknown`) cannot introspect: 503."""
    token = new_access_token(auth_url)
    status, me = get("/introspected/me", bearer(token))
    assert status == 200, me
    assert set(me) == {"sub", "sid", "role"}
    assert me["role"] == "user"
    assert get("/jwks/me", bearer(token)) == (200, me)
    assert get_unknown("/introspected/me", bearer(token))[0] == 503
    assert get_unknown("/jwks/me", bearer(token)) == (200, me)

    logout(auth_url, token)

    assert get("/introspected/me", bearer(token))[0] == 401
    assert get("/jwks/me", bearer(token)) == (200, me)
    for path in ("/introspected/me", "/jwks/me"):
        assert get(path, {})[0] == 401
        assert get(path, bearer("not-a-token"))[0] == 401
        assert get(path, {"Authorization": f"Basic {token}"})[0] == 401


def fastapi_get(client_secret: str, auth_url: str, clients: contextlib.ExitStack) -> Get:
    """The GET of the FastAPI resource server with `client_secret`, through its TestClient."""
    app = create_resource_server(
        auth_url=auth_url,
        client_id=CLIENT_ID,
        client_secret=client_secret,
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithm=ALGORITHM,
    )
    client = clients.enter_context(TestClient(app))

    def get(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        response = client.get(path, headers=headers)
        return response.status_code, response.json()

    return get


def test_the_fastapi_resource_server(auth_server: str) -> None:
    with contextlib.ExitStack() as clients:
        check_resource_server(
            auth_server,
            fastapi_get(CLIENT_SECRET, auth_server, clients),
            fastapi_get(WRONG_SECRET, auth_server, clients),
        )


@pytest.fixture
def express(auth_server: str) -> Iterator[Callable[[str], Get]]:
    """Starts the Express resource server with a client secret: its GET. Stopped after."""
    node_packages()
    with contextlib.ExitStack() as servers:

        def start(secret: str) -> Get:
            env = {
                "AUTH_URL": auth_server,
                "CLIENT_ID": CLIENT_ID,
                "CLIENT_SECRET": secret,
                "ISSUER": ISSUER,
                "AUDIENCE": AUDIENCE,
                "ALGORITHM": ALGORITHM,
            }
            server = servers.enter_context(node_lines("serve-express.mjs", env))
            port = json.loads(server.next_line())["port"]
            return lambda path, headers: get_json(f"http://127.0.0.1:{port}{path}", headers)

        yield start


def get_json(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (a loopback URL)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_the_express_resource_server(auth_server: str, express: Callable[[str], Get]) -> None:
    check_resource_server(auth_server, express(CLIENT_SECRET), express(WRONG_SECRET))


def test_the_docs_show_the_tested_code() -> None:
    """docs/resource-servers.md holds both examples as they are tested here."""
    page = (REPOSITORY / "docs" / "resource-servers.md").read_text()
    for example in ("tests/node/express-resource-server.mjs", "tests/fastapi_resource_server.py"):
        assert (REPOSITORY / example).read_text() in page, f"paste {example} into the page"
