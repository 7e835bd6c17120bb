"""The README's "Already have users?" host, taken from an app that already has its users and
its Alembic history to the same app serving tokens for them: the wheel built and installed into
a new virtualenv, the README's files and commands, gunicorn, HTTP; on SQLite, PostgreSQL and
MariaDB, with integer, UUID and string primary keys."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import re
import secrets
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from werkzeug.security import check_password_hash

from tests.conftest import server_database
from tests.helpers import CSRF_COOKIE
from tests.helpers import port_of
from tests.test_wheel_host import HostClient
from tests.test_wheel_host import README
from tests.test_wheel_host import run
from tests.test_wheel_host import serve
from tests.test_wheel_host import venv  # noqa: F401 (a fixture)
from tests.test_wheel_host import wheel  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

SECTION = "\n## Already have users?\n"
SHELL_MARKER = "# from the folder that holds blog/"
FILES = {"blog/__init__.py", "blog/models.py", "blog/routes.py", "blog/api.py"}
ADDED = re.compile(r"^.*  # new\b.*\n", flags=re.MULTILINE)  # the README's marked lines
# What the app had installed before the extension came (drivers for the test's databases).
HOST_PACKAGES = ["Flask-SQLAlchemy", "Flask-Migrate", "Flask-Login", "gunicorn"]
HOST_PACKAGES += ["psycopg[binary]", "PyMySQL"]
DRIVERS = {"postgresql": "postgresql+psycopg", "mariadb": "mysql+pymysql"}
AUTH_TABLES = {"auth_sessions", "refresh_tokens", "auth_events"}
PREFIX = "/api/auth"
BODY = {"X-Token-Transport": "body"}
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"

INTEGER_KEY = "    id: Mapped[int] = mapped_column(primary_key=True)\n"
LOADER = "db.session.get(User, int(id))"
# The model's key as a host with another kind of key writes it: (module, column, user_loader).
OTHER_KEYS = {
    "uuid": (
        "uuid",
        "Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)",
        "uuid.UUID(id)",
    ),
    "string": (
        "secrets",
        "Mapped[str] = mapped_column(db.String(36), primary_key=True, "
        "default=lambda: f'u-{secrets.token_hex(8)}')",
        "id",
    ),
}
CASES = [
    ("sqlite", "integer"),
    ("postgresql", "integer"),
    ("mariadb", "integer"),
    ("postgresql", "uuid"),
    ("sqlite", "string"),
    ("mariadb", "string"),
]

CREATE_USERS = """
import json, sys
from blog import create_app, db
from blog.models import User

with create_app().app_context():
    users = [User(username=name, email=f"{name}@example.com") for name in ("ada", "bob", "cy")]
    for user in users:
        user.set_password(sys.argv[1])
    db.session.add_all(users)
    db.session.commit()
    print(json.dumps({user.username: str(user.id) for user in users}))
"""
EMAILED_LINKS = """
import json, sys
from blog import create_app
from blog.models import links

with create_app().app_context():
    print(json.dumps({purpose: links(purpose).dumps(sys.argv[1]) for purpose in sys.argv[2:]}))
"""
DELETE_USER = """
import sys
from sqlalchemy import select
from blog import create_app, db
from blog.models import User

with create_app().app_context():
    db.session.delete(db.session.scalar(select(User).filter_by(username=sys.argv[1])))
    db.session.commit()
"""
CREATE_APP = "from blog import create_app; create_app()"


def readme_blog() -> tuple[dict[str, str], str]:
    """The `# blog/...` files and the shell session of the README's "Already have users?"."""
    section = README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(python|sh)\n(.*?)```", section, flags=re.DOTALL)
    files = {
        code.split("\n", 1)[0].removeprefix("# "): code
        for language, code in blocks
        if language == "python" and code.startswith("# blog/")
    }
    shell = [
        code for language, code in blocks if language == "sh" and code.startswith(SHELL_MARKER)
    ]
    assert set(files) == FILES
    assert len(shell) == 1
    return files, shell[0]


def with_primary_key(models: str, key: str) -> str:
    """The README's model with an integer (as written), UUID or string primary key."""
    if key == "integer":
        return models
    module, column, loaded = OTHER_KEYS[key]
    assert models.count(INTEGER_KEY) == 1
    assert models.count(LOADER) == 1
    marker, rest = models.split("\n", 1)
    return f"{marker}\nimport {module}\n{rest}".replace(INTEGER_KEY, f"    id: {column}\n").replace(
        LOADER, f"db.session.get(User, {loaded})"
    )


def before_the_extension(files: dict[str, str]) -> dict[str, str]:
    """The app as it was: the README's files less the lines marked `# new` and `blog/api.py`."""
    host = {name: ADDED.sub("", code) for name, code in files.items() if name != "blog/api.py"}
    assert not [name for name, code in host.items() if re.search("api_auth|token_auth|AUTH_", code)]
    return host


@dataclasses.dataclass
class Case:
    kind: str
    key: str
    url: str  # with the driver named: the app before the extension maps no URL scheme


@pytest.fixture(params=CASES, ids=[f"{kind}-{key}" for kind, key in CASES])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    kind, key = request.param
    if kind == "sqlite":
        yield Case(kind, key, f"sqlite:///{tmp_path / 'blog.db'}")
        return
    for url in server_database(kind):
        with_driver = make_url(url).set(drivername=DRIVERS[kind])
        yield Case(kind, key, with_driver.render_as_string(hide_password=False))


def venv_env(directory: Path) -> dict[str, str]:
    """Ours, less what would reach into the repository or configure the extension."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AUTH_", "FLASK_")) and name not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    env.pop("DATABASE_URL", None)
    env["PATH"] = f"{directory / 'bin'}:{env['PATH']}"
    return env


@pytest.fixture(scope="module")
def blog_venv(venv: Path, wheel: Path) -> Path:  # noqa: F811 (the imported fixtures)
    """The virtualenv of an app that has users: its own packages, then the README's `pip`."""
    _, shell = readme_blog()
    (install,) = [line for line in shell.splitlines() if line.startswith("pip install ")]
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", *HOST_PACKAGES])
    script = install.replace('"../flask-token-auth[', f'"{wheel}[')
    run(["bash", "-euo", "pipefail", "-c", script], env=venv_env(venv))
    return venv


@dataclasses.dataclass
class Blog:
    """The host app's folder, and its commands run in the virtualenv."""

    venv: Path
    folder: Path
    env: dict[str, str]

    def write(self, files: dict[str, str]) -> None:
        for name, code in files.items():
            (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / name).write_text(code)

    def shell(self, script: str) -> str:
        command: list[str | Path] = ["bash", "-euo", "pipefail", "-c", script]
        return run(command, cwd=self.folder, env=self.env).stdout

    def python(self, code: str, *arguments: str) -> str:
        command: list[str | Path] = [self.venv / "bin" / "python", "-c", code, *arguments]
        return run(command, cwd=self.folder, env=self.env).stdout

    def revisions(self) -> set[Path]:
        return set((self.folder / "migrations" / "versions").glob("*.py"))


def user_table(url: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The `user` table's shape (columns, keys, indexes) and its rows by username."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        shape = {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"])
                for column in inspector.get_columns("user")
            ],
            "primary_key": inspector.get_pk_constraint("user")["constrained_columns"],
            "indexes": sorted(
                (str(index["name"]), tuple(index["column_names"]), index["unique"])
                for index in inspector.get_indexes("user")
            ),
            "unique": sorted(
                (str(unique["name"]), tuple(unique["column_names"]))
                for unique in inspector.get_unique_constraints("user")
            ),
            "foreign_keys": inspector.get_foreign_keys("user"),
        }
        table = sa.Table("user", sa.MetaData(), autoload_with=engine)
        with engine.connect() as connection:
            rows = {row.username: row._asdict() for row in connection.execute(sa.select(table))}
        return shape, rows
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def check_the_extension_tables(url: str) -> None:
    """`user_id` of the host key's type everywhere; cascading foreign keys from two tables."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)

        def type_of(table: str, name: str) -> str:
            (column,) = [c for c in inspector.get_columns(table) if c["name"] == name]
            return str(column["type"])

        key_type = type_of("user", "id")
        assert {table: type_of(table, "user_id") for table in AUTH_TABLES} == dict.fromkeys(
            AUTH_TABLES, key_type
        )
        for table in AUTH_TABLES:
            to_users = [
                (
                    key["constrained_columns"],
                    key["referred_columns"],
                    key["options"].get("ondelete"),
                )
                for key in inspector.get_foreign_keys(table)
                if key["referred_table"] == "user"
            ]
            expected = [] if table == "auth_events" else [(["user_id"], ["id"], "CASCADE")]
            assert to_users == expected, table
    finally:
        engine.dispose()


def upgrade_and_downgrade(revision: str) -> tuple[str, str]:
    upgrade = revision.split("def upgrade()", 1)[1].split("def downgrade()", 1)
    return upgrade[0], upgrade[1]


def without_index_drops(revision: str) -> str:
    """The README's edit for MariaDB and MySQL: `downgrade()` less its `drop_index` lines and
    the `with op.batch_alter_table` lines above them (a dropped table takes its indexes)."""
    upgrade, downgrade = revision.split("def downgrade()", 1)
    batches = r"    with op\.batch_alter_table\(.*\n(?:        batch_op\.drop_index\(.*\n)+\n?"
    edited = re.sub(r"    op\.drop_index\(.*\n", "", re.sub(batches, "", downgrade))
    assert "drop_index" not in edited
    assert edited.count("op.drop_table(") == len(AUTH_TABLES)
    return f"{upgrade}def downgrade(){edited}"


def access_subject(access_token: str) -> Any:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


def bearer(body: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['access_token']}"}


def post_form(port: int, path: str, fields: dict[str, str]) -> int:
    """A form posted as a browser does, to the host's own pages."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    connection.request("POST", path, body=urllib.parse.urlencode(fields), headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def test_an_app_with_users_adds_the_extension(blog_venv: Path, case: Case, tmp_path: Path) -> None:
    files, shell = readme_blog()
    files["blog/models.py"] = with_primary_key(files["blog/models.py"], case.key)
    blog = Blog(blog_venv, tmp_path / "blog", venv_env(blog_venv))
    blog.env.update(FLASK_APP="blog", SECRET_KEY=secrets.token_hex(32), DATABASE_URL=case.url)

    # Before the extension: the app, its Alembic history, its users and their werkzeug hashes.
    blog.write(before_the_extension(files))
    blog.shell("flask db init\nflask db migrate -m users\nflask db upgrade")
    (users_revision,) = blog.revisions()
    assert re.findall(r"op\.create_table\('(\w+)'", users_revision.read_text()) == ["user"]
    ids = json.loads(blog.python(CREATE_USERS, PASSWORD))
    shape, rows = user_table(case.url)
    assert set(rows) == {"ada", "bob", "cy"}
    assert rows["ada"]["password_hash"].startswith("scrypt:")

    # The prefix of microblog's `auth` blueprint is refused, naming the setting.
    init = files["blog/__init__.py"]
    (prefix_line,) = [line for line in init.splitlines(keepends=True) if "AUTH_URL_PREFIX" in line]
    blog.write({**files, "blog/__init__.py": init.replace(prefix_line, "")})
    command: list[str | Path] = [blog_venv / "bin" / "python", "-c", CREATE_APP]
    refused = subprocess.run(
        command, cwd=blog.folder, env=blog.env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert "RuntimeError" in refused.stderr
    assert "AUTH_URL_PREFIX" in refused.stderr

    # The README's app and commands: one revision with the extension's three tables alone.
    blog.write(files)
    *setup, serve_line = [line for line in shell.splitlines() if line.strip()]
    blog.shell("\n".join(line for line in setup if not line.startswith("pip install ")))
    (auth_revision,) = blog.revisions() - {users_revision}
    generated = auth_revision.read_text()
    upgrade, downgrade = upgrade_and_downgrade(generated)
    assert set(re.findall(r"op\.create_table\('(\w+)'", upgrade)) == AUTH_TABLES
    assert len(re.findall(r"op\.create_table\(", upgrade)) == len(AUTH_TABLES)
    assert "op.alter_" not in upgrade
    assert "op.drop_" not in upgrade
    assert "create_table('user'" not in upgrade
    for step in (upgrade, downgrade):
        assert set(re.findall(r"batch_alter_table\('(\w+)'", step)) <= AUTH_TABLES
    assert set(re.findall(r"op\.drop_table\('(\w+)'", downgrade)) == AUTH_TABLES
    assert len(re.findall(r"op\.drop_table\(", downgrade)) == len(AUTH_TABLES)
    assert "op.alter_" not in downgrade
    assert "flask_token_auth" not in generated  # plain SQLAlchemy types
    assert tables(case.url) == {"alembic_version", "user"} | AUTH_TABLES
    check_the_extension_tables(case.url)
    assert user_table(case.url) == (shape, rows)

    with serve(serve_line, blog.folder, blog.env) as base:
        drive_the_blog(blog, port_of(base), ids, case.key)

    # The host's rows: ada only logged in, so her hash is the one the host wrote.
    after_shape, after = user_table(case.url)
    assert after_shape == shape
    assert set(after) == {"ada", "cy"}
    assert after["ada"] == rows["ada"]
    assert {**after["cy"], "password_hash": None} == {**rows["cy"], "password_hash": None}
    assert after["cy"]["password_hash"] != rows["cy"]["password_hash"]
    assert check_password_hash(after["cy"]["password_hash"], NEW_PASSWORD)

    # One step down drops the extension's tables and leaves the host's.
    if case.kind == "mariadb":
        auth_revision.write_text(without_index_drops(generated))
    blog.shell("flask db downgrade")
    assert tables(case.url) == {"alembic_version", "user"}
    assert user_table(case.url) == (shape, after)


def drive_the_blog(blog: Blog, port: int, ids: dict[str, str], key: str) -> None:
    def user(name: str) -> dict[str, Any]:
        id_ = int(ids[name]) if key == "integer" else ids[name]
        return {"id": id_, "role": "user", "username": name, "email": f"{name}@example.com"}

    def whoami(client: HostClient, headers: dict[str, str]) -> tuple[int, Any]:
        status, _, body = client.call("GET", "/api/whoami", headers=headers)
        return status, body if status == 200 else body["error"]

    # The site's own pages stay its own.
    status, content_type, page = HostClient(port).call("GET", "/auth/login")
    assert (status, content_type.split(";")[0]) == (200, "text/html")
    assert "Sign in" in page

    # A browser logs in by username: cookies, CSRF, and the host's user.
    browser = HostClient(port)
    for wrong in ({"username": "ada", "password": "not her password"}, {"username": "eve"}):
        status, _, body = browser.call("POST", f"{PREFIX}/login", {"password": PASSWORD, **wrong})
        assert (status, body["error"]) == (401, "invalid_grant")
    assert browser.cookies == {}
    status, _, body = browser.call(
        "POST", f"{PREFIX}/login", {"username": "ada", "password": PASSWORD}
    )
    assert status == 200, body
    assert set(body) == {"access_token", "token_type", "expires_in", "user", "csrf_token"}
    assert (body["token_type"], body["user"]) == ("Bearer", user("ada"))
    assert set(browser.cookies) == {"refresh_token", CSRF_COOKIE, "device_token"}
    assert body["csrf_token"] == browser.cookies[CSRF_COOKIE]
    assert access_subject(body["access_token"]) == ids["ada"]
    ada = bearer(body)
    status, _, me = browser.call("GET", f"{PREFIX}/me", headers=ada)
    assert status == 200, me
    assert set(me) == {"user", "session_id"}
    assert me["user"] == user("ada")
    assert whoami(browser, ada) == (200, {"username": "ada"})  # current_user: the host's User

    refreshed = browser.cookies["refresh_token"]
    csrf = {"X-CSRF-Token": browser.cookies[CSRF_COOKIE]}
    status, _, body = browser.call("POST", f"{PREFIX}/refresh", headers=csrf)
    assert status == 200, body
    assert browser.cookies["refresh_token"] != refreshed
    ada = bearer(body)
    assert whoami(browser, ada) == (200, {"username": "ada"})

    # A native app logs in by email, spelt in another case, and refreshes in the body.
    native = HostClient(port)
    login = {"email": "ADA@Example.COM", "password": PASSWORD}
    status, _, body = native.call("POST", f"{PREFIX}/login", login, headers=BODY)
    assert status == 200, body
    assert body["user"] == user("ada")
    assert native.cookies == {}
    status, _, body = native.call(
        "POST", f"{PREFIX}/refresh", {"refresh_token": body["refresh_token"]}
    )
    assert status == 200, body
    ada_native = body["refresh_token"]
    status, _, body = browser.call("GET", f"{PREFIX}/sessions", headers=ada)
    assert status == 200, body
    assert len(body["sessions"]) == 2
    assert [item["id"] for item in body["sessions"] if item["current"]] == [me["session_id"]]

    # Sign-up and passwords are the host's.
    status, _, body = native.call(
        "POST", f"{PREFIX}/register", {"email": "eve@example.com", **login}
    )
    assert (status, body["error"]) == (404, "not_found")
    assert "off" in body["error_description"]
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    status, _, body = browser.call("POST", f"{PREFIX}/password", change, headers=ada)
    assert (status, body["error"]) == (404, "not_found")
    assert "off" in body["error_description"]

    # The host's sign-in link ends in login_response: the body, or cookies and CSRF.
    links = json.loads(blog.python(EMAILED_LINKS, "cy@example.com", "sign-in", "reset"))
    phone, laptop = HostClient(port), HostClient(port)
    status, _, body = phone.call("POST", "/api/sign-in-link", {"token": "forged"}, headers=BODY)
    assert (status, body) == (401, {"error": "invalid_grant"})
    status, _, body = phone.call(
        "POST", "/api/sign-in-link", {"token": links["sign-in"]}, headers=BODY
    )
    assert status == 200, body
    assert (body["token_type"], body["user"]) == ("Bearer", user("cy"))
    assert phone.cookies == {}
    cy_phone, cy_phone_refresh = bearer(body), body["refresh_token"]
    status, _, body = laptop.call("POST", "/api/sign-in-link", {"token": links["sign-in"]})
    assert status == 200, body
    assert "refresh_token" not in body
    assert set(laptop.cookies) == {"refresh_token", CSRF_COOKIE}
    assert body["csrf_token"] == laptop.cookies[CSRF_COOKIE]
    cy_laptop = bearer(body)
    assert whoami(phone, cy_phone) == (200, {"username": "cy"})
    assert whoami(laptop, cy_laptop) == (200, {"username": "cy"})

    # The host's password reset ends every session of the account, and only of that one.
    assert (
        post_form(port, f"/auth/reset_password/{links['reset']}", {"password": NEW_PASSWORD}) == 302
    )
    assert whoami(phone, cy_phone) == (401, "invalid_token")
    assert whoami(laptop, cy_laptop) == (401, "invalid_token")
    status, _, body = phone.call("POST", f"{PREFIX}/refresh", {"refresh_token": cy_phone_refresh})
    assert (status, body["error"]) == (401, "invalid_grant")
    csrf = {"X-CSRF-Token": laptop.cookies[CSRF_COOKIE]}
    status, _, body = laptop.call("POST", f"{PREFIX}/refresh", headers=csrf)
    assert (status, body["error"]) == (401, "invalid_grant")
    status, _, body = phone.call(
        "POST", f"{PREFIX}/login", {"username": "cy", "password": PASSWORD}
    )
    assert (status, body["error"]) == (401, "invalid_grant")
    cy_login = {"username": "cy", "password": NEW_PASSWORD}
    status, _, body = phone.call("POST", f"{PREFIX}/login", cy_login, headers=BODY)
    assert status == 200, body
    assert body["user"] == user("cy")
    assert whoami(browser, ada) == (200, {"username": "ada"})

    # A user the host deletes can use none of their tokens.
    tablet = HostClient(port)
    bob_login = {"username": "bob", "password": PASSWORD}
    status, _, body = tablet.call("POST", f"{PREFIX}/login", bob_login, headers=BODY)
    assert status == 200, body
    bob, bob_refresh = bearer(body), body["refresh_token"]
    assert whoami(tablet, bob) == (200, {"username": "bob"})
    blog.python(DELETE_USER, "bob")
    assert whoami(tablet, bob) == (401, "invalid_token")
    status, _, body = tablet.call("POST", f"{PREFIX}/refresh", {"refresh_token": bob_refresh})
    assert (status, body["error"]) == (401, "invalid_grant")

    # The CLI takes any login field.
    listed = blog.shell("flask auth sessions ada@example.com").splitlines()
    assert listed[-1] == "2 live sessions"
    assert me["session_id"] in "\n".join(listed)
    assert "revoked 2 sessions" in blog.shell("flask auth revoke ada")
    blog.shell("flask auth prune")
    assert whoami(browser, ada) == (401, "invalid_token")
    status, _, body = native.call("POST", f"{PREFIX}/refresh", {"refresh_token": ada_native})
    assert (status, body["error"]) == (401, "invalid_grant")
