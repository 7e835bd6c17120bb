"""The deployments of docs/clients.md in headless Chromium over https: the page and the API on
one origin, on sibling subdomains, and on two sites. gunicorn serves the reference service with
a throwaway certificate that Chromium trusts by its key (`--ignore-certificate-errors-spki-list`),
and Chromium maps the test host names to the loopback address.

Chromium runs with its default settings, and they block third-party cookies: a cookie that an
API on another site sets for a page's `fetch` is not stored unless it is Partitioned (CHIPS),
and a partitioned one is kept for that top-level site and sent back to the API from its pages.

Skipped where Chromium is not installed; TEST_REQUIRE_BROWSER=1 turns the skip into a failure.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import http.server
import ipaddress
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import helpers
from tests.conftest import app_with_tables
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.helpers import gunicorn
from tests.test_browser import chromium

pytestmark = pytest.mark.slow
#: The names the certificate covers; Chromium resolves every `*.test` name to 127.0.0.1.
CERTIFICATE_NAMES = ("*.example.test", "*.site-a.test", "*.site-b.test")
EMAIL = "ada@example.com"
#: Milliseconds any one browser step may take: a hang fails fast, the module stays short.
STEP_TIMEOUT_MS = 15_000


@dataclasses.dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path
    #: base64 of the SHA-256 of its public key, as `--ignore-certificate-errors-spki-list` takes.
    spki_sha256: str


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for the test names and 127.0.0.1, valid for an hour."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flask-token-auth tests")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in CERTIFICATE_NAMES]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Certificate(
        certfile, keyfile, base64.b64encode(hashlib.sha256(public_key).digest()).decode()
    )


@pytest.fixture(scope="module")
def browser(certificate: Certificate) -> Iterator[Any]:
    trusted = f"--ignore-certificate-errors-spki-list={certificate.spki_sha256}"
    with chromium("--host-resolver-rules=MAP *.test 127.0.0.1", trusted) as launched:
        yield launched


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile: no cookies, no storage."""
    browser_context = browser.new_context()
    browser_context.set_default_timeout(STEP_TIMEOUT_MS)
    yield browser_context
    browser_context.close()


@contextlib.contextmanager
def https_service(tmp_path: Path, certificate: Certificate, host: str, **env: str) -> Iterator[str]:
    """The reference service under gunicorn over https on a SQLite file of its own, answering
    to `host` (and 127.0.0.1): its origin, `https://{host}:{port}`."""
    database = f"sqlite:///{tmp_path / f'{host}.db'}"
    with app_with_tables(database):
        pass
    program = (
        *(sys.executable, "-m", "gunicorn"),
        *("--certfile", str(certificate.certfile), "--keyfile", str(certificate.keyfile)),
    )
    service_env = {
        "DATABASE_URL": database,
        "SECRET_KEY": SECRET,
        "TRUSTED_HOSTS": f"{host},127.0.0.1",
        **env,
    }
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            # The helper waits for an answer on http://127.0.0.1:port/healthz: ask over https,
            # trusting the throwaway certificate.
            plain_answers = helpers._answers
            patch.setattr(helpers, "_answers", lambda url: plain_answers("https" + url[4:]))
            patch.setenv("SSL_CERT_FILE", str(certificate.certfile))
            base = stack.enter_context(
                gunicorn(
                    "wsgi:app", service_env, tmp_path / f"{host}.log", workers=1, program=program
                )
            )
        yield base.replace("http://127.0.0.1", f"https://{host}")


SPA = """<!doctype html><script type="module">
const api = new URLSearchParams(location.search).get("api");
const { createAuthClient } = await import(`${api}/auth/client.js`);
window.auth = createAuthClient({ apiOrigin: api });
window.me = () => window.auth.fetch(`${api}/auth/me`).then((r) => r.status);
document.body.dataset.ready = "true";
</script><body></body>"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = SPA.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def https_page(certificate: Certificate, host: str) -> Iterator[str]:
    """A page on `host` over https that loads the browser module from the API origin given as
    `?api=`: the page's origin."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certificate.certfile, certificate.keyfile)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def cookie_jar(context: Any) -> dict[str, tuple[str, str | None]]:
    """The browser's cookies by name: (domain, partition key), None where unpartitioned."""
    return {
        cookie["name"]: (cookie["domain"], cookie.get("partitionKey"))
        for cookie in context.cookies()
    }


def open_page(context: Any, page_origin: str, api: str) -> Any:
    page = context.new_page()
    page.goto(f"{page_origin}/?api={api}")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    return page


def sign_in_from_the_page(context: Any, page_origin: str, api: str) -> Any:
    """A page of `page_origin` registers and logs in to `api`; its protected call answers."""
    page = open_page(context, page_origin, api)
    assert page.evaluate("window.auth.restore()") is False
    page.evaluate(f"window.auth.register('{EMAIL}', '{PASSWORD}')")
    page.evaluate(f"window.auth.login('{EMAIL}', '{PASSWORD}')")
    assert page.evaluate("window.me()") == 200
    return page


def reload_and_sign_out(page: Any, context: Any) -> None:
    """After a reload the page gets a token by the refresh cookie alone; logging out clears
    the session's cookies, and the next reload finds no session."""
    page.reload()
    page.wait_for_selector("body[data-ready=true]", state="attached")
    assert page.evaluate("window.auth.loggedIn") is False  # nothing kept but the cookies
    assert page.evaluate("window.auth.restore()") is True
    assert page.evaluate("window.me()") == 200
    page.evaluate("window.auth.logout()")
    assert set(cookie_jar(context)) == {"device_token"}  # the browser stays known to the account
    page.reload()
    page.wait_for_selector("body[data-ready=true]", state="attached")
    assert page.evaluate("window.auth.restore()") is False


@pytest.mark.parametrize(
    ("partitioned", "partition"),
    [("false", None), ("true", "https://example.test")],
    ids=["default cookies", "partitioned cookies"],
)
def test_same_origin(
    context: Any,
    certificate: Certificate,
    tmp_path: Path,
    partitioned: str,
    partition: str | None,
) -> None:
    """The demo page and the API on one origin, with the default cookie settings; Partitioned
    changes nothing there (the partition is the page's own site)."""
    with https_service(
        tmp_path, certificate, "app.example.test", AUTH_COOKIE_PARTITIONED=partitioned
    ) as origin:
        page = context.new_page()
        page.goto(origin + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.evaluate(f"window.demoAuth.register('{EMAIL}', '{PASSWORD}')")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("#login")
        page.wait_for_selector("#signed-in:not([hidden])")
        host = "app.example.test"
        assert cookie_jar(context) == {
            "refresh_token": (host, partition),
            "__Host-csrf_token": (host, partition),
            "device_token": (host, partition),
        }
        assert page.evaluate("document.cookie").startswith("__Host-csrf_token=")

        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#signed-in")  # restored by the refresh cookie
        assert page.evaluate("window.demoAuth.fetch('/api/hello').then((r) => r.status)") == 200

        page.click("#logout")
        page.wait_for_selector("#signed-out:not([hidden])")
        assert set(cookie_jar(context)) == {"device_token"}
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#signed-out")


@pytest.mark.parametrize(
    ("partitioned", "partition"),
    [("false", None), ("true", "https://example.test")],
    ids=["default cookies", "partitioned cookies"],
)
def test_sibling_subdomains(
    context: Any,
    certificate: Certificate,
    tmp_path: Path,
    partitioned: str,
    partition: str | None,
) -> None:
    """A page on app.example.test and the API on api.example.test: one site, so SameSite=Strict
    cookies on the parent domain go with the page's requests."""
    with https_page(certificate, "app.example.test") as page_origin:
        with https_service(
            tmp_path,
            certificate,
            "api.example.test",
            AUTH_COOKIE_DOMAIN="example.test",
            AUTH_COOKIE_PARTITIONED=partitioned,
            AUTH_TRUSTED_ORIGINS=page_origin,
        ) as api:
            page = sign_in_from_the_page(context, page_origin, api)
            assert cookie_jar(context) == {
                "refresh_token": (".example.test", partition),
                "csrf_token": (".example.test", partition),
                "device_token": (".example.test", partition),
            }
            reload_and_sign_out(page, context)


def test_cross_site_with_partitioned_cookies(
    context: Any, certificate: Certificate, tmp_path: Path
) -> None:
    """A page on site-a.test and the API on site-b.test: Chromium keeps the partitioned
    cookies for the page's site and sends them back to the API from its pages only."""
    with https_page(certificate, "app.site-a.test") as page_origin:
        with https_service(
            tmp_path,
            certificate,
            "api.site-b.test",
            AUTH_COOKIE_SAMESITE="None",
            AUTH_COOKIE_PARTITIONED="true",
            AUTH_TRUSTED_ORIGINS=page_origin,
        ) as api:
            page = sign_in_from_the_page(context, page_origin, api)
            partition = "https://site-a.test"
            assert cookie_jar(context) == {
                "refresh_token": ("api.site-b.test", partition),
                "__Host-csrf_token": ("api.site-b.test", partition),
                "device_token": ("api.site-b.test", partition),
            }
            # GET /auth/cookie-check without a CSRF header: 403 where the refresh cookie came,
            # 409 where it did not. It comes from the page's site, not on the API's own site.
            check = f"{api}/auth/cookie-check"
            assert (
                page.evaluate(
                    "(url) => fetch(url, {credentials: 'include'}).then((r) => r.status)", check
                )
                == 403
            )
            assert context.new_page().goto(check).status == 409
            reload_and_sign_out(page, context)


def test_cross_site_without_partitioned_cookies_the_login_is_refused(
    context: Any, certificate: Certificate, tmp_path: Path
) -> None:
    """Third-party cookies are blocked: with SameSite=None alone Chromium drops the API's
    cookies, and the module's login rejects with CookiesRefused rather than keep a session that
    the first refresh would end."""
    with https_page(certificate, "app.site-a.test") as page_origin:
        with https_service(
            tmp_path,
            certificate,
            "api.site-b.test",
            AUTH_COOKIE_SAMESITE="None",
            AUTH_TRUSTED_ORIGINS=page_origin,
        ) as api:
            page = open_page(context, page_origin, api)
            page.evaluate(f"window.auth.register('{EMAIL}', '{PASSWORD}')")

            login = page.evaluate(
                f"window.auth.login('{EMAIL}', '{PASSWORD}').then(() => 'ok', (e) => e.name)"
            )

            assert login == "CookiesRefused"
            assert context.cookies() == []
            assert page.evaluate("window.auth.loggedIn") is False
