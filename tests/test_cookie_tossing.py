"""Cookie tossing: a sibling subdomain can write cookies for the parent domain, which our host
receives, but not a `__Host-` cookie. Where the cookies are Secure and host-only the CSRF cookie
is `__Host-csrf_token`, and the CSRF value is bound to the refresh token presented, so a tossed
pair (the attacker's own session's refresh token and CSRF value) logs no browser into the
attacker's session (docs/security.md)."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import CSRF_COOKIE
from tests.helpers import csrf_header
from tests.helpers import login
from tests.helpers import register
from tests.helpers import set_cookies
from tests.helpers import snapshot

ATTACKER = "mallory@example.com"
CSRF_FAILED = {
    "error": "csrf_failed",
    "error_description": f"the X-CSRF-Token header must equal the {CSRF_COOKIE} cookie",
}


def attackers_pair(app: Flask) -> tuple[str, str]:
    """The refresh token and its bound CSRF value of a session of the attacker's own."""
    attacker = app.test_client()
    register(attacker, ATTACKER)
    answer = login(attacker, ATTACKER)
    cookie = attacker.get_cookie("refresh_token", path="/auth")
    assert cookie is not None
    return cookie.value, answer.json["csrf_token"]


def toss(client: FlaskClient, refresh_token: str, csrf: str) -> None:
    """The attacker's cookies set for the parent domain, the refresh one on a longer path so
    that a browser sends it first."""
    client.set_cookie("refresh_token", refresh_token, domain=".localhost", path="/auth/refresh")
    client.set_cookie("csrf_token", csrf, domain=".localhost")


def test_secure_host_only_cookies_use_the_host_prefix(client: FlaskClient) -> None:
    register(client)
    cookies = set_cookies(login(client))
    assert set(cookies) == {"refresh_token", "__Host-csrf_token"}
    csrf = cookies["__Host-csrf_token"]
    assert (csrf["path"], "secure" in csrf, "domain" in csrf) == ("/", True, False)


@pytest.mark.parametrize(
    "app_config",
    [{"AUTH_COOKIE_SECURE": False}, {"AUTH_COOKIE_DOMAIN": "example.com"}],
    ids=["plain http", "a domain"],
)
def test_without_secure_host_only_cookies_the_name_stays(client: FlaskClient) -> None:
    """`__Host-` requires Secure, Path=/ and no Domain: browsers drop it otherwise."""
    register(client)
    assert set(set_cookies(login(client))) == {"refresh_token", "csrf_token"}


def test_a_tossed_pair_logs_no_browser_into_the_attackers_session(app: Flask) -> None:
    """A browser without a session of its own: its script finds only the tossed `csrf_token`
    and sends it; the server reads `__Host-csrf_token` alone."""
    tossed_refresh, tossed_csrf = attackers_pair(app)
    victim = app.test_client()
    toss(victim, tossed_refresh, tossed_csrf)
    before = snapshot(app)

    answer = victim.post("/auth/refresh", headers={"X-CSRF-Token": tossed_csrf})

    assert (answer.status_code, answer.json) == (403, CSRF_FAILED)
    assert snapshot(app) == before


def test_a_tossed_refresh_cookie_beside_the_victims_own_is_refused(app: Flask) -> None:
    """A logged-in browser sends the tossed refresh cookie first (its path is longer), then its
    own, with its own CSRF value: not bound to the first, so 403 and neither session rotates."""
    tossed_refresh, _ = attackers_pair(app)
    victim = app.test_client()
    register(victim)
    login(victim)
    own_refresh = victim.get_cookie("refresh_token", path="/auth")
    assert own_refresh is not None
    own_csrf = csrf_header(victim)["X-CSRF-Token"]
    # As a browser writes it: the longest path first, the host-only and tossed cookies mixed.
    cookie = (
        f"refresh_token={tossed_refresh}; refresh_token={own_refresh.value}; "
        f"{CSRF_COOKIE}={own_csrf}; csrf_token={own_csrf}"
    )
    before = snapshot(app)

    answer = app.test_client(use_cookies=False).post(
        "/auth/refresh",
        headers={"X-CSRF-Token": own_csrf},
        environ_overrides={"HTTP_COOKIE": cookie},
    )

    assert (answer.status_code, answer.json) == (403, CSRF_FAILED)
    assert snapshot(app) == before
