"""The React binding (`/auth/react.js`) in real headless Chromium, with React 19 from npm.

The page (tests/react) has no bundler: its import map names React, which the test bundles once
with esbuild into one ES module, since React ships CommonJS only. The JS packages are pinned by
tests/react/package-lock.json and installed by `npm ci` when tests/react/node_modules is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import test_browser
from tests.conftest import PASSWORD
from tests.test_browser import serve_page
from tests.test_browser import Site

pytestmark = pytest.mark.slow
REACT = Path(__file__).resolve().parent / "react"
NPM_SECONDS = 300
# The Chromium of the browser tests, shared by their fixture.
browser = test_browser.browser


def run(command: list[str], *, cwd: Path = REACT) -> None:
    """`command`, failing the test with its output when it fails."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=NPM_SECONDS, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


@pytest.fixture(scope="module")
def react_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's folder: its page and script, and React with ReactDOM bundled as react.js."""
    if shutil.which("npm") is None:
        if os.environ.get("TEST_REQUIRE_BROWSER") == "1":
            pytest.fail("npm is missing but TEST_REQUIRE_BROWSER=1")
        pytest.skip("npm is not installed; the React test is skipped")
    # npm ci writes this file last: a folder it did not finish is installed again.
    if not (REACT / "node_modules" / ".package-lock.json").exists():
        run(["npm", "ci", "--prefix", str(REACT), "--no-audit", "--no-fund"])
    directory = tmp_path_factory.mktemp("react-page")
    esbuild = REACT / "node_modules" / ".bin" / "esbuild"
    bundle = ["--bundle", "--format=esm", '--define:process.env.NODE_ENV="development"']
    run([str(esbuild), "react-vendor.js", *bundle, f"--outfile={directory / 'react.js'}"])
    for name in ("index.html", "demo.js"):
        shutil.copy(REACT / name, directory / name)
    return directory


def test_use_auth_follows_the_session_in_every_tab(
    browser: Any, react_page: Path, tmp_path: Path
) -> None:
    """docs/clients.md, React: `useAuth()` gives the user, login, logout and fetch; a login or
    a logout in one tab shows in the others, and a reload restores the session."""
    server, origin = serve_page(react_page)
    try:
        with Site(tmp_path, AUTH_TRUSTED_ORIGINS=origin) as site:
            site.register("ada@example.com")
            context = browser.new_context()
            tabs = [context.new_page(), context.new_page()]
            for tab in tabs:
                tab.goto(f"{origin}/index.html?api={site.base}")
                tab.wait_for_selector("#signed-out")
            first, second = tabs

            first.fill("input[name=email]", "ada@example.com")
            first.fill("input[name=password]", PASSWORD)
            first.click("#login")

            for tab in tabs:
                assert tab.text_content("#who", timeout=10000) == "ada@example.com"
            second.click("#sessions")  # its fetch: the token the other tab's login announced
            second.wait_for_selector("#output:text('200: 1 session(s)')")
            second.reload()
            assert second.text_content("#who", timeout=10000) == "ada@example.com"

            second.click("#logout")

            for tab in tabs:
                tab.wait_for_selector("#signed-out")
            assert site.count("login_succeeded") == 1
            assert site.count("logout") == 1
            context.close()
    finally:
        server.shutdown()
        server.server_close()
