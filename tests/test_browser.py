"""The browser module and the demo page in real headless Chromium (Debian's), under gunicorn.

Skipped with the reason where Chromium is not installed; `.ci/run` installs it and sets
TEST_REQUIRE_BROWSER=1, which turns a skip into a failure.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import app_with_tables
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import call
from tests.helpers import gunicorn

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
PLAIN_HTTP_HOST = "app.test"
# Flags that keep a headless Chromium off the network it cannot reach and out of the sandbox
# that root cannot use.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Names under .test served by 127.0.0.1, such as PLAIN_HTTP_HOST: http on them is no secure
    # context (Chromium treats 127.0.0.1 and localhost as secure and keeps their Secure cookies).
    "--host-resolver-rules=MAP *.test 127.0.0.1",
]
SCREENSHOT = os.environ.get("DEMO_SCREENSHOT")


@contextlib.contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    """Debian's Chromium under Playwright, with CHROMIUM_ARGS and `extra_args`; the test is
    skipped without it, or fails under TEST_REQUIRE_BROWSER=1."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing but TEST_REQUIRE_BROWSER=1")
        pytest.skip(
            f"{CHROMIUM} is not installed (apt-get install chromium); browser tests skipped"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


class Site:
    """The reference service under gunicorn on a SQLite file of its own."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.database = f"sqlite:///{tmp_path / f'site-{secrets.token_hex(3)}.db'}"
        self.name = secrets.token_hex(3)  # names its log
        self.env = {
            "DATABASE_URL": self.database,
            "SECRET_KEY": SECRET,
            "AUTH_COOKIE_SECURE": "false",
            "AUTH_RATELIMIT_ENABLED": "false",
            **env,
        }
        self.tmp_path = tmp_path

    def __enter__(self) -> Site:
        with app_with_tables(self.database):
            pass
        self.server = gunicorn("wsgi:app", self.env, self.tmp_path / f"gunicorn-{self.name}.log")
        self.base = self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    def count(self, event_type: str) -> int:
        import sqlalchemy as sa

        engine = sa.create_engine(self.database)
        with engine.connect() as connection:
            query = sa.text("SELECT COUNT(*) FROM auth_events WHERE type = :t")
            count: int = connection.execute(query, {"t": event_type}).scalar_one()
        engine.dispose()
        return count

    def register(self, email: str) -> None:
        status, _, body = call(self.base, "/auth/register", {"email": email, "password": PASSWORD})
        assert status == 201, body


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with Site(tmp_path) as running:
        yield running


def open_signed_in_tab(context: Any, site: Site) -> Any:
    """Another tab of the demo page in `context`, signed in by the session it shares."""
    tab = context.new_page()
    tab.goto(site.base + "/")
    tab.wait_for_selector("#signed-in:not([hidden])")
    return tab


def log_in_on_the_demo_page(page: Any, site: Site, email: str) -> None:
    page.goto(site.base + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_selector("#signed-in:not([hidden])")


def test_demo_page_register_login_reload_and_storage(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(site.base + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#email", "ada@example.com")
    page.fill("#password", PASSWORD)
    page.click("#register")
    page.wait_for_function("document.getElementById('output').textContent.startsWith('Registered')")
    page.click("#login")
    page.wait_for_selector("#signed-in:not([hidden])")
    assert page.text_content("#who") == "ada@example.com"
    page.click("#hello")
    page.wait_for_function("document.getElementById('output').textContent.includes('hello, user')")
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)

    # Nothing but the CSRF value is visible to scripts; the access token lives in memory only.
    stored = page.evaluate(
        "() => ({local: {...localStorage}, session: {...sessionStorage}, cookie: document.cookie,"
        " access: window.demoAuth.accessToken})"
    )
    assert stored["local"] == {}
    assert stored["session"] == {}
    assert [c.split("=")[0] for c in stored["cookie"].split("; ")] == ["csrf_token"]
    assert call(site.base, "/auth/me", headers=bearer(stored["access"]))[0] == 200
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["refresh_token"]["httpOnly"] is True
    assert cookies["refresh_token"]["value"] not in stored["cookie"]

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.is_visible("#signed-in")
    assert page.text_content("#who") == "ada@example.com"

    # Logout clears everything: the cookies, the token in memory, the page.
    old_access = page.evaluate("window.demoAuth.accessToken")
    assert call(site.base, "/auth/me", headers=bearer(old_access))[0] == 200
    page.click("#logout")
    page.wait_for_selector("#signed-out:not([hidden])")
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("window.demoAuth.accessToken") is None
    assert {c["name"] for c in context.cookies()} == set()
    assert call(site.base, "/auth/me", headers=bearer(old_access))[0] == 401
    context.close()


def test_twenty_calls_after_expiry_make_exactly_one_refresh(browser: Any, tmp_path: Path) -> None:
    with Site(tmp_path, AUTH_ACCESS_TOKEN_TTL="2") as site:
        site.register("ada@example.com")
        context = browser.new_context()
        page = context.new_page()
        page.clock.install()
        log_in_on_the_demo_page(page, site, "ada@example.com")
        page.clock.pause_at(int(time.time() * 1000) + 100)  # no timer fires from here on
        time.sleep(2.5)  # the access token expires on the server
        page.clock.set_system_time(int(time.time() * 1000))
        before = site.count("refreshed")

        statuses = page.evaluate(
            "async () => Promise.all(Array.from({length: 20},"
            " () => window.demoAuth.fetch('/api/hello').then((r) => r.status)))"
        )

        assert statuses == [200] * 20
        assert site.count("refreshed") == before + 1
        context.close()


def test_twenty_401s_for_one_access_token_make_exactly_one_refresh(
    browser: Any, tmp_path: Path
) -> None:
    """The token a request carried decides whether its 401 needs a refresh, not when the 401
    came back: the ones that arrive after the refresh are sent again with its token."""
    with Site(tmp_path, AUTH_ACCESS_TOKEN_TTL="2") as site:
        site.register("ada@example.com")
        context = browser.new_context()
        page = context.new_page()
        page.clock.install()
        log_in_on_the_demo_page(page, site, "ada@example.com")
        # The page's clock stands still from here: the module believes its token fresh and
        # sends it with every request, and the server, whose clock runs, answers 401.
        page.clock.pause_at(int(time.time() * 1000) + 100)
        time.sleep(2.5)
        refreshes: list[str] = []
        page.on(
            "request",
            lambda r: refreshes.append(r.method) if r.url == site.base + "/auth/refresh" else None,
        )
        before = site.count("refreshed")

        statuses = page.evaluate(
            "async () => Promise.all(Array.from({length: 20},"
            " () => window.demoAuth.fetch('/api/hello').then((r) => r.status)))"
        )

        assert statuses == [200] * 20
        assert refreshes == ["POST"]
        assert site.count("refreshed") == before + 1
        context.close()


def test_three_tabs_refreshing_together_all_stay_logged_in(browser: Any, site: Site) -> None:
    site.register("ada@example.com")
    context = browser.new_context()
    first = context.new_page()
    log_in_on_the_demo_page(first, site, "ada@example.com")
    tabs = [first, open_signed_in_tab(context, site), open_signed_in_tab(context, site)]

    # With the module: one refresh at a time across the tabs, the others take its result.
    for tab in tabs:
        tab.evaluate("window.__done = window.demoAuth.refresh().then(() => 'ok', (e) => e.name)")
    assert [tab.evaluate("window.__done") for tab in tabs] == ["ok"] * 3
    assert [
        tab.evaluate("window.demoAuth.fetch('/auth/me').then((r) => r.status)") for tab in tabs
    ] == [200] * 3

    # With plain fetch and no coordination at all: the server's grace keeps everyone in.
    plain = (
        "window.__plain = fetch('/auth/refresh', {method: 'POST', credentials: 'include',"
        " headers: {'X-CSRF-Token': document.cookie.split('csrf_token=')[1]}})"
        ".then((r) => r.status)"
    )
    for tab in tabs:
        tab.evaluate(plain)
    assert [tab.evaluate("window.__plain") for tab in tabs] == [200] * 3
    assert site.count("refresh_reuse_detected") == 0
    context.close()


def test_reuse_in_one_tab_logs_every_tab_out_without_a_loop(browser: Any, tmp_path: Path) -> None:
    with Site(tmp_path, AUTH_REFRESH_REUSE_GRACE="1") as site:
        site.register("ada@example.com")
        context = browser.new_context()
        first = context.new_page()
        log_in_on_the_demo_page(first, site, "ada@example.com")
        second = open_signed_in_tab(context, site)
        stolen = {c["name"]: c["value"] for c in context.cookies()}
        first.evaluate("window.demoAuth.refresh()")
        time.sleep(1.5)  # the stolen token is now spent for longer than the grace window
        replay = urllib.request.Request(  # noqa: S310 (a thief replays the old cookie)
            site.base + "/auth/refresh",
            method="POST",
            headers={
                "Cookie": "; ".join(f"{name}={value}" for name, value in stolen.items()),
                "X-CSRF-Token": stolen["csrf_token"],
            },
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(replay, timeout=10)  # noqa: S310
        assert refused.value.code == 401
        requests: list[str] = []
        for tab in (first, second):
            tab.on(
                "request", lambda r: requests.append(r.url) if "/auth/refresh" in r.url else None
            )

        outcome = second.evaluate("window.demoAuth.refresh().then(() => 'ok', (e) => e.name)")

        assert outcome == "SessionEnded"
        for tab in (first, second):
            tab.wait_for_selector("#signed-out:not([hidden])")
        first.evaluate("window.demoAuth.fetch('/api/hello').then((r) => r.status)")
        time.sleep(1)
        assert len(requests) == 1  # one refresh found the session over; no loop after it
        assert site.count("refresh_reuse_detected") == 1
        context.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_page(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler: Callable[..., Any] = partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


SPA = """<!doctype html><script type="module">
import {{ createAuthClient }} from "{api}/auth/client.js";
const auth = createAuthClient({{ apiOrigin: "{api}" }});
window.run = async () => {{
  const steps = {{}};
  try {{ await auth.login("ada@example.com", "{password}"); steps.login = "ok"; }}
  catch (e) {{ steps.login = e.name || "error"; }}
  steps.me = await auth.fetch("{api}/auth/me").then((r) => r.status, (e) => e.name);
  steps.refresh = await auth.refresh().then(() => "ok", (e) => e.name);
  steps.logout = await fetch("{api}/auth/logout", {{method: "POST", credentials: "include",
    headers: {{"X-CSRF-Token": localStorage.getItem("flask-token-auth:csrf:{api}") || ""}}}})
    .then((r) => r.status, (e) => e.name);
  return steps;
}};
document.body.dataset.ready = "true";
</script><body></body>"""
# A page on an origin that is not listed cannot even load the module (no CORS for it): it
# tries the API with plain fetch, as an attacker's page would.
STRANGER = """<!doctype html><script type="module">
const post = (path, body, headers = {{}}) => fetch("{api}/auth" + path, {{method: "POST",
  credentials: "include", headers: {{"Content-Type": "application/json", ...headers}},
  body: JSON.stringify(body)}}).then((r) => r.status, (e) => e.name);
window.run = async () => ({{
  login: await post("/login", {{email: "ada@example.com", password: "{password}"}}),
  refresh: await post("/refresh", {{}}, {{"X-CSRF-Token": document.cookie}}),
  logout: await post("/logout", {{}}),
}});
document.body.dataset.ready = "true";
</script><body></body>"""


def test_a_listed_origin_works_end_to_end_and_another_cannot(browser: Any, tmp_path: Path) -> None:
    pages = tmp_path / "spa"
    pages.mkdir()
    listed, listed_origin = serve_page(pages)
    stranger, stranger_origin = serve_page(pages)
    try:
        with Site(tmp_path, AUTH_TRUSTED_ORIGINS=listed_origin) as site:
            (pages / "index.html").write_text(SPA.format(api=site.base, password=PASSWORD))
            (pages / "stranger.html").write_text(STRANGER.format(api=site.base, password=PASSWORD))
            site.register("ada@example.com")
            context = browser.new_context()
            page = context.new_page()
            page.goto(listed_origin + "/index.html")
            page.wait_for_selector("body[data-ready=true]", state="attached")
            assert page.evaluate("window.run()") == {
                "login": "ok",
                "me": 200,
                "refresh": "ok",
                "logout": 204,
            }

            other = context.new_page()
            page.evaluate("window.run()")  # logged in again from the listed page
            other.goto(stranger_origin + "/stranger.html")
            other.wait_for_selector("body[data-ready=true]", state="attached")
            # The browser's preflight finds no CORS for this origin: nothing is even sent.
            assert other.evaluate("window.run()") == {
                "login": "TypeError",
                "refresh": "TypeError",
                "logout": "TypeError",
            }
            assert site.count("refreshed") == 2  # only the listed page's two runs
            assert site.count("logout") == 2
            context.close()
    finally:
        for server in (listed, stranger):
            server.shutdown()
            server.server_close()


# A page on another origin with the module pointed at the API, for the tests to drive.
CLIENT_PAGE = """<!doctype html><script type="module">
import {{ createAuthClient }} from "{api}/auth/client.js";
window.auth = createAuthClient({{ apiOrigin: "{api}" }});
window.login = () => window.auth.login("ada@example.com", "{password}")
  .then(() => "ok", (e) => [e.name, e.message]);
window.get = (input) => window.auth.fetch(input)
  .then(async (r) => [r.status, r.headers.get("Content-Type")]);
document.body.dataset.ready = "true";
</script><body></body>"""


def test_a_relative_url_goes_to_the_api_origin_with_the_token(browser: Any, tmp_path: Path) -> None:
    """docs/clients.md, In the browser: with `apiOrigin`, `auth.fetch("/path")` is the API's
    `/path` (an auth route here: the host's /api/ routes answer no other origin by default)."""
    pages = tmp_path / "relative"
    pages.mkdir()
    server, origin = serve_page(pages)
    try:
        with Site(tmp_path, AUTH_TRUSTED_ORIGINS=origin) as site:
            (pages / "index.html").write_text(CLIENT_PAGE.format(api=site.base, password=PASSWORD))
            site.register("ada@example.com")
            page = browser.new_context().new_page()
            page.goto(origin + "/index.html")
            page.wait_for_selector("body[data-ready=true]", state="attached")
            assert page.evaluate("window.login()") == "ok"
            sent: list[str] = []
            page.on("request", lambda r: sent.append(r.url))

            answers = [
                page.evaluate(f"window.get({argument})")
                for argument in ('"/auth/me"', '"auth/sessions?limit=1"')
            ]
            # An absolute URL on the page's own origin stays there, without the token.
            own = page.evaluate(f'window.get("{origin}/index.html")')

            assert answers == [[200, "application/json"]] * 2
            assert own == [200, "text/html"]
            assert sent == [
                f"{site.base}/auth/me",
                f"{site.base}/auth/sessions?limit=1",
                f"{origin}/index.html",
            ]
    finally:
        server.shutdown()
        server.server_close()


COOKIES_REFUSED = ("AUTH_COOKIE_SECURE", "backend-for-frontend", "docs/clients.md")


def test_login_rejects_when_secure_cookies_come_over_plain_http(
    browser: Any, tmp_path: Path
) -> None:
    """The browser drops Secure cookies sent over http: login() says so and ends the session
    at once, instead of the first refresh logging the user out."""
    with Site(
        tmp_path, AUTH_COOKIE_SECURE="true", TRUSTED_HOSTS=f"127.0.0.1,{PLAIN_HTTP_HOST}"
    ) as site:
        site.register("ada@example.com")
        context = browser.new_context()
        page = context.new_page()
        page.goto(site.base.replace("127.0.0.1", PLAIN_HTTP_HOST) + "/")
        page.wait_for_selector("body[data-ready=true]")

        outcome = page.evaluate(
            f"window.demoAuth.login('ada@example.com', '{PASSWORD}')"
            ".then(() => 'ok', (e) => [e.name, e.message])"
        )

        assert outcome[0] == "CookiesRefused"
        assert all(words in outcome[1] for words in COOKIES_REFUSED), outcome[1]
        assert page.evaluate("window.demoAuth.loggedIn") is False
        assert context.cookies() == []
        assert site.count("login_succeeded") == 1
        assert site.count("logout") == 1  # the session no browser can keep is over
        context.close()


def test_login_rejects_when_an_api_on_another_site_cannot_set_cookies(
    browser: Any, tmp_path: Path
) -> None:
    """A page on localhost and the API on 127.0.0.1 are two sites: the browser refuses the
    API's SameSite=Strict cookies, and login() says so."""
    pages = tmp_path / "other-site"
    pages.mkdir()
    server, same_site_origin = serve_page(pages)
    origin = same_site_origin.replace("127.0.0.1", "localhost")
    try:
        with Site(tmp_path, AUTH_TRUSTED_ORIGINS=origin) as site:
            (pages / "index.html").write_text(CLIENT_PAGE.format(api=site.base, password=PASSWORD))
            site.register("ada@example.com")
            context = browser.new_context()
            page = context.new_page()
            page.goto(origin + "/index.html")
            page.wait_for_selector("body[data-ready=true]", state="attached")

            outcome = page.evaluate("window.login()")

            assert outcome[0] == "CookiesRefused"
            assert all(words in outcome[1] for words in COOKIES_REFUSED), outcome[1]
            assert context.cookies() == []
            assert site.count("logout") == 1
            context.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def axios_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """axios from the npm registry (its browser build), for the interceptor test."""
    if shutil.which("npm") is None:
        if os.environ.get("TEST_REQUIRE_BROWSER") == "1":
            pytest.fail("npm is missing but TEST_REQUIRE_BROWSER=1")
        pytest.skip("npm is not installed; the axios test is skipped")
    directory = tmp_path_factory.mktemp("axios")
    subprocess.run(
        ["npm", "pack", "axios@1", "--silent"], cwd=directory, check=True, capture_output=True
    )
    (tarball,) = directory.glob("axios-*.tgz")
    subprocess.run(["tar", "xzf", tarball.name], cwd=directory, check=True)
    return directory / "package" / "dist" / "axios.min.js"


AXIOS_PAGE = """<!doctype html><script src="axios.min.js"></script><script type="module">
import {{ createAuthClient }} from "{api}/auth/client.js";
const auth = createAuthClient({{ apiOrigin: "{api}" }});
auth.installAxios(axios);
window.auth = auth;
window.me = () => axios.get("{api}/auth/me").then((r) => r.status, (e) => e.response?.status);
document.body.dataset.ready = "true";
</script><body></body>"""


def test_the_axios_interceptor_attaches_and_refreshes(
    browser: Any, axios_script: Path, tmp_path: Path
) -> None:
    pages = tmp_path / "axios-page"
    pages.mkdir()
    shutil.copy(axios_script, pages / "axios.min.js")
    server, origin = serve_page(pages)
    try:
        with Site(tmp_path, AUTH_TRUSTED_ORIGINS=origin, AUTH_ACCESS_TOKEN_TTL="2") as site:
            (pages / "index.html").write_text(AXIOS_PAGE.format(api=site.base))
            site.register("ada@example.com")
            page = browser.new_context().new_page()
            page.clock.install()
            page.goto(origin + "/index.html")
            page.wait_for_selector("body[data-ready=true]", state="attached")
            assert page.evaluate("window.me()") == 401  # no token yet: nothing to attach
            page.evaluate(f"window.auth.login('ada@example.com', '{PASSWORD}')")
            assert page.evaluate("window.me()") == 200  # Bearer attached by the interceptor
            page.clock.pause_at(int(time.time() * 1000) + 100)
            time.sleep(2.5)  # the access token expires on the server
            page.clock.set_system_time(int(time.time() * 1000))
            before = site.count("refreshed")

            assert page.evaluate("window.me()") == 200  # refreshed first, then sent

            assert site.count("refreshed") == before + 1
    finally:
        server.shutdown()
        server.server_close()
