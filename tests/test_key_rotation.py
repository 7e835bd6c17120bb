"""Rotating the signing key without a gap (docs/operations.md#rotating-the-signing-key).

Verifiers hold the JWKS as other services do: jose's `createRemoteJWKSet` in a long-lived Node
process and PyJWT's `PyJWKClient`, both through an HTTP cache that keeps the key set for its
max-age. gunicorn serves each stage's configuration behind one address (a blue-green deploy:
the next server starts, the address moves to it, the old one stops). Through the staged
rotation no token is refused anywhere; a switch without it is refused by both. The waits are
scaled down: the JWKS max-age, jose's cooldown and the access TTL are seconds here.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import Result

from app import db
from flask_token_auth.keys import generate_key_pair_pem
from flask_token_auth.keys import load_key_set
from flask_token_auth.settings import AuthSettings
from tests.conftest import app_with_tables
from tests.conftest import make_app
from tests.conftest import PASSWORD
from tests.conftest import SECRET
from tests.front import Front
from tests.front import front
from tests.helpers import bearer
from tests.helpers import call
from tests.helpers import claims_of
from tests.helpers import gunicorn
from tests.helpers import log_tail
from tests.node_tools import jose_verifier
from tests.node_tools import JoseVerifier
from tests.node_tools import node_packages

ALGORITHM = "EdDSA"
ISSUER = AUDIENCE = "flask-token-auth"
CREDENTIALS = {"email": "ada@example.com", "password": PASSWORD}
OLD, NEW = "2025-07", "2026-01"
#: Seconds, scaled down from 300 (AUTH_JWKS_MAX_AGE's default) and 30 (the refetch cooldown of
#: jose's createRemoteJWKSet, and of PyJWKClient in the PyJWT releases that have one).
MAX_AGE = 6
COOLDOWN = 3
#: The wait between publishing a key and signing with it: the max-age, at least the cooldown.
PUBLICATION_WAIT = max(MAX_AGE, COOLDOWN)
ACCESS_TTL = 6


@pytest.fixture(scope="module")
def key_pairs() -> dict[str, tuple[str, str]]:
    return {kid: generate_key_pair_pem(ALGORITHM) for kid in (OLD, NEW)}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A SQLite file with the tables, shared by the servers of every stage."""
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    with app_with_tables(url):
        yield url


def published(keys: dict[str, tuple[str, str]], *kids: str) -> str:
    """AUTH_JWT_PUBLIC_KEYS in the environment's syntax: each key's `kid=NAME`, then its PEM."""
    return "".join(f"kid={kid}\n{keys[kid][1]}" for kid in kids)


class Rollout:
    """Servers of one configuration after another behind `fronts`: `start` one, `switch` the
    fronts to it (the one before stops)."""

    def __init__(self, fronts: list[Front], env: dict[str, str], logs: Path) -> None:
        self.fronts = fronts
        self.env = env
        self.logs = logs
        self.servers = contextlib.ExitStack()
        self.live: contextlib.ExitStack | None = None
        self.count = 0

    def start(self, **config: str) -> tuple[contextlib.ExitStack, str]:
        self.count += 1
        server = self.servers.enter_context(contextlib.ExitStack())
        log = self.logs / f"gunicorn-{self.count}.log"
        base = server.enter_context(gunicorn("wsgi:app", {**self.env, **config}, log, workers=1))
        return server, base

    def switch(self, started: tuple[contextlib.ExitStack, str]) -> float:
        """Move the fronts to the started server; when they moved (time.monotonic())."""
        server, base = started
        for each in self.fronts:
            each.upstream = base
        moved = time.monotonic()
        if self.live is not None:
            self.live.close()
        self.live = server
        return moved

    def deploy(self, **config: str) -> float:
        return self.switch(self.start(**config))

    def close(self) -> None:
        """Stop every server started; none logged a traceback."""
        self.servers.close()
        for log in sorted(self.logs.glob("gunicorn-*.log")):
            assert "Traceback" not in log.read_text(), log_tail(log)


@contextlib.contextmanager
def rollout(fronts: list[Front], database: str, tmp_path: Path) -> Iterator[Rollout]:
    env = {
        "DATABASE_URL": database,
        "SECRET_KEY": SECRET,
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_RATELIMIT_ENABLED": "false",
        "AUTH_JWT_ALGORITHM": ALGORITHM,
        "AUTH_JWKS_MAX_AGE": str(MAX_AGE),
        "AUTH_ACCESS_TOKEN_TTL": str(ACCESS_TTL),
    }
    deployed = Rollout(fronts, env, tmp_path)
    try:
        yield deployed
    finally:
        deployed.close()


def pyjwt_verify(client: jwt.PyJWKClient, token: str) -> str:
    """ "ok", or the name of PyJWT's error."""
    try:
        key = client.get_signing_key_from_jwt(token).key
        jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER, audience=AUDIENCE)
    except jwt.PyJWTError as error:
        return type(error).__name__
    return "ok"


def pyjwk_client(url: str, *, cooldown: float | None = None) -> jwt.PyJWKClient:
    """A PyJWKClient of `url`; `cooldown` replaces its refetch cooldown, in the releases that
    have one (`cooldown_duration`, 30 s)."""
    if (
        cooldown is not None
        and "cooldown_duration" in inspect.signature(jwt.PyJWKClient).parameters
    ):
        return jwt.PyJWKClient(url, cooldown_duration=cooldown)
    return jwt.PyJWKClient(url)


def new_token(base: str) -> str:
    status, _, body = call(base, "/auth/login", CREDENTIALS)
    assert status == 200, body
    token: str = body["access_token"]
    return token


class Verifiers:
    """jose, PyJWKClient and the server itself, asked about every token still unexpired."""

    def __init__(self, base: str, jose: JoseVerifier, pyjwks: jwt.PyJWKClient) -> None:
        self.base = base
        self.jose = jose
        self.pyjwks = pyjwks
        self.tokens: list[str] = []

    def check_all(self) -> list[tuple[str, str, object]]:
        """(kid, verifier, answer) of each refusal of a token more than a second from expiry."""
        refusals: list[tuple[str, str, object]] = []
        for token in self.tokens:
            if claims_of(token)["exp"] - time.time() < 1:
                continue
            kid = jwt.get_unverified_header(token)["kid"]
            jose = self.jose.verify(token)
            if not jose["ok"]:
                refusals.append((kid, "jose", jose))
            pyjwt = pyjwt_verify(self.pyjwks, token)
            if pyjwt != "ok":
                refusals.append((kid, "PyJWKClient", pyjwt))
            status, _, body = call(self.base, "/auth/me", headers=bearer(token))
            if status != 200:
                refusals.append((kid, "server", body))
        return refusals

    def issue_and_check(self) -> str:
        token = new_token(self.base)
        self.tokens.append(token)
        assert self.check_all() == []
        return token


@pytest.mark.slow
def test_a_staged_rotation_refuses_no_token(
    key_pairs: dict[str, tuple[str, str]], database: str, tmp_path: Path
) -> None:
    """Tokens issued before, during and after the stages (one key, (a) publish the next, (b)
    wait the JWKS max-age and the verifiers' cooldown, (c) sign with it, (d) retire the old
    one an access TTL later) all verify, for every verifier, until they expire."""
    node_packages()
    old_private, new_private = key_pairs[OLD][0], key_pairs[NEW][0]
    with (
        front(cache=True) as cdn,
        rollout([cdn], database, tmp_path) as stages,
        jose_verifier(
            f"{cdn.base}/auth/jwks.json",
            algorithm=ALGORITHM,
            issuer=ISSUER,
            audience=AUDIENCE,
            cooldown_ms=COOLDOWN * 1000,
        ) as jose,
    ):
        both = published(key_pairs, OLD, NEW)
        stages.deploy(
            AUTH_JWT_PRIVATE_KEY=old_private, AUTH_JWT_PUBLIC_KEYS=published(key_pairs, OLD)
        )
        # The servers of (a) and (c), started now: each stage begins the moment it is decided.
        publishing = stages.start(AUTH_JWT_PRIVATE_KEY=old_private, AUTH_JWT_PUBLIC_KEYS=both)
        signing = stages.start(AUTH_JWT_PRIVATE_KEY=new_private, AUTH_JWT_PUBLIC_KEYS=both)
        assert call(cdn.base, "/auth/register", CREDENTIALS)[0] == 201
        pyjwks = pyjwk_client(f"{cdn.base}/auth/jwks.json", cooldown=COOLDOWN)
        verifiers = Verifiers(cdn.base, jose, pyjwks)
        # Every verifier, and the cache, now holds the key set of one key.
        assert jwt.get_unverified_header(verifiers.issue_and_check())["kid"] == OLD

        # (a) Publish the next key: in the JWKS and verifying, not signing.
        publication = stages.switch(publishing)
        assert jwt.get_unverified_header(verifiers.issue_and_check())["kid"] == OLD
        # (b) Wait the JWKS max-age, and at least the verifiers' cooldown.
        time.sleep(max(0.0, publication + PUBLICATION_WAIT - time.monotonic()))
        fetched = cdn.forwarded.count("/auth/jwks.json")
        # (c) Sign with it: its first token, then every request. The verifiers still hold the
        # one-key set; they find the new kid by fetching again, through a cache whose copy has
        # expired.
        _, signing_base = signing
        first = new_token(signing_base)
        switch = stages.switch(signing)
        verifiers.tokens.append(first)
        assert verifiers.check_all() == []
        assert jwt.get_unverified_header(first)["kid"] == NEW
        assert cdn.forwarded.count("/auth/jwks.json") > fetched
        assert jwt.get_unverified_header(verifiers.issue_and_check())["kid"] == NEW

        # (d) Retire the old key once the last token it signed has expired.
        retiring = stages.start(
            AUTH_JWT_PRIVATE_KEY=new_private, AUTH_JWT_PUBLIC_KEYS=published(key_pairs, NEW)
        )
        time.sleep(max(0.0, switch + ACCESS_TTL + 1 - time.monotonic()))
        old_tokens = [t for t in verifiers.tokens if jwt.get_unverified_header(t)["kid"] == OLD]
        assert len(old_tokens) == 2
        assert all(claims_of(token)["exp"] <= time.time() for token in old_tokens)
        issued_before = verifiers.issue_and_check()
        stages.switch(retiring)
        assert verifiers.check_all() == []
        assert claims_of(issued_before)["exp"] - time.time() >= 1  # so checked after (d) too
        assert jwt.get_unverified_header(verifiers.issue_and_check())["kid"] == NEW


@pytest.mark.slow
def test_a_switch_without_the_stages_is_refused_by_the_verifiers(
    key_pairs: dict[str, tuple[str, str]], database: str, tmp_path: Path
) -> None:
    """What the stages avoid: the new key published and signing in one deploy. jose, with its
    default 30 s cooldown, will not fetch the key set again so soon after its last fetch, and
    PyJWKClient's fetch gets the cache's copy; the server itself accepts the token."""
    node_packages()
    (old_private, old_public), (new_private, _) = key_pairs[OLD], key_pairs[NEW]
    with (
        front(cache=False) as balancer,
        front(cache=True) as cdn,
        rollout([balancer, cdn], database, tmp_path) as stages,
        jose_verifier(
            f"{balancer.base}/auth/jwks.json", algorithm=ALGORITHM, issuer=ISSUER, audience=AUDIENCE
        ) as jose,
    ):
        stages.deploy(AUTH_JWT_PRIVATE_KEY=old_private)
        assert call(balancer.base, "/auth/register", CREDENTIALS)[0] == 201
        pyjwks = pyjwk_client(f"{cdn.base}/auth/jwks.json")
        before = new_token(balancer.base)
        assert jose.verify(before)["ok"] is True
        assert pyjwt_verify(pyjwks, before) == "ok"

        stages.deploy(AUTH_JWT_PRIVATE_KEY=new_private, AUTH_JWT_PUBLIC_KEYS=old_public)
        after = new_token(balancer.base)

        assert call(balancer.base, "/auth/me", headers=bearer(after))[0] == 200
        refused = jose.verify(after)
        assert (refused["ok"], refused["code"]) == (False, "ERR_JWKS_NO_MATCHING_KEY")
        assert pyjwt_verify(pyjwks, after) == "PyJWKClientError"
        assert jose.verify(before)["ok"] is True  # the old key is still in what they hold
        # `flask auth keys status --jwks-url` sees the gap: the cache serves no signing key.
        status = status_runner(
            database, AUTH_JWT_PRIVATE_KEY=new_private, AUTH_JWT_PUBLIC_KEYS=old_public
        )
        checked = status(f"{cdn.base}/auth/jwks.json")
        signing_kid = jwt.get_unverified_header(after)["kid"]
        assert checked.exit_code == 1
        assert f"; MISSING {signing_kid}" in checked.output


@pytest.mark.slow
def test_keys_status_checks_what_a_jwks_url_serves(
    key_pairs: dict[str, tuple[str, str]], database: str, tmp_path: Path
) -> None:
    """`flask auth keys status --jwks-url URL` exits 1 while a URL misses a key the
    configuration publishes: here a cache's copy, kept from before the next key was published."""
    (old_private, _), (_, new_public) = key_pairs[OLD], key_pairs[NEW]
    both = published(key_pairs, OLD, NEW)
    with front(cache=True) as cdn, rollout([cdn], database, tmp_path) as stages:
        stages.env["AUTH_JWKS_MAX_AGE"] = "60"
        stages.deploy(
            AUTH_JWT_PRIVATE_KEY=old_private, AUTH_JWT_PUBLIC_KEYS=published(key_pairs, OLD)
        )
        call(cdn.base, "/auth/jwks.json")  # the cache keeps the one-key set for 60 s
        stages.deploy(AUTH_JWT_PRIVATE_KEY=old_private, AUTH_JWT_PUBLIC_KEYS=both)
        origin = cdn.upstream
        runner = status_runner(
            database, AUTH_JWT_PRIVATE_KEY=old_private, AUTH_JWT_PUBLIC_KEYS=both
        )

        fresh = runner(f"{origin}/auth/jwks.json")
        stale = runner(f"{cdn.base}/auth/jwks.json", f"{origin}/auth/jwks.json")

    assert fresh.exit_code == 0, fresh.output
    assert f"{origin}/auth/jwks.json: serves {OLD}, {NEW} (Cache-Control: public, max-age=60)" in (
        fresh.output
    )
    assert stale.exit_code == 1
    cached = f"{cdn.base}/auth/jwks.json: serves {OLD} (Cache-Control: public, max-age=60)"
    assert f"{cached}; MISSING {NEW}" in stale.output
    assert "Error: not every URL serves every published key" in stale.output
    assert new_public not in stale.output


def status_runner(database: str, **config: str) -> Any:
    """Runs `flask auth keys status` with `config` and the given --jwks-url options."""

    def run(*urls: str) -> Result:
        application = make_app(database, AUTH_JWT_ALGORITHM=ALGORITHM, **config)
        options = [option for url in urls for option in ("--jwks-url", url)]
        try:
            return application.test_cli_runner().invoke(args=["auth", "keys", "status", *options])
        finally:
            with application.app_context():
                db.engine.dispose()

    return run


# `flask auth keys status` and `flask auth keygen --kid`, without a server


def status_of(tmp_path: Path, **config: Any) -> Result:
    result: Result = status_runner(f"sqlite:///{tmp_path / 'status.db'}", **config)()
    assert result.exit_code == 0, result.output
    return result


def test_keys_status_names_each_stage_and_what_comes_next(
    key_pairs: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    old_private, new_private = key_pairs[OLD][0], key_pairs[NEW][0]
    both = published(key_pairs, OLD, NEW)

    one = status_of(
        tmp_path, AUTH_JWT_PRIVATE_KEY=old_private, AUTH_JWT_PUBLIC_KEYS=published(key_pairs, OLD)
    )
    publishing = status_of(tmp_path, AUTH_JWT_PRIVATE_KEY=old_private, AUTH_JWT_PUBLIC_KEYS=both)
    switched = status_of(
        tmp_path,
        AUTH_JWT_PRIVATE_KEY=new_private,
        AUTH_JWT_PUBLIC_KEYS=both,
        AUTH_JWKS_MAX_AGE=10,
        AUTH_ACCESS_TOKEN_TTL=600,
        AUTH_JWT_LEEWAY=30,
    )

    assert one.output.splitlines()[:5] == [
        "algorithm: EdDSA",
        f"signing kid: {OLD}",
        "published kids (JWKS):",
        f"  {OLD}  signing",
        "JWKS max-age: 5 min (AUTH_JWKS_MAX_AGE)",
    ]
    assert "stage: one key; to rotate, publish the next key first" in one.output
    assert f"  {NEW}  next: published, not signing yet" in publishing.output
    assert (
        f"stage: publishing {NEW}; sign with it (AUTH_JWT_PRIVATE_KEY) once every server has "
        "published it for 5 min" in publishing.output
    )
    assert switched.output.splitlines()[1:5] == [
        f"signing kid: {NEW}",
        "published kids (JWKS):",
        f"  {NEW}  signing",
        f"  {OLD}  old: verifies the tokens it signed until they expire",
    ]
    assert "JWKS max-age: 10 s (AUTH_JWKS_MAX_AGE)" in switched.output
    assert (
        f"stage: retiring {OLD}; remove it from AUTH_JWT_PUBLIC_KEYS once every server has "
        f"signed with {NEW} for 630 s" in switched.output
    )


def test_keys_status_says_an_unlisted_signing_key_must_be_listed(
    key_pairs: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    """A key that was never named is published under its thumbprint; at the switch it must
    be listed, or it stops verifying the tokens it signed."""
    result = status_of(
        tmp_path,
        AUTH_JWT_PRIVATE_KEY=key_pairs[OLD][0],
        AUTH_JWT_PUBLIC_KEYS=published(key_pairs, NEW),
    )

    signing = result.output.splitlines()[1].removeprefix("signing kid: ")
    assert f"  {signing}  signing (not in AUTH_JWT_PUBLIC_KEYS: its thumbprint)" in result.output
    assert f"note: before {signing} stops signing, list it in AUTH_JWT_PUBLIC_KEYS" in result.output
    assert f"  {NEW}  published, not signing: the next key or an old one" in result.output
    assert "stage: unknown; list the signing key in AUTH_JWT_PUBLIC_KEYS" in result.output


def test_keys_status_with_hmac_publishes_nothing(tmp_path: Path) -> None:
    application = make_app(f"sqlite:///{tmp_path / 'hmac.db'}")

    done = application.test_cli_runner().invoke(args=["auth", "keys", "status"])
    with application.app_context():
        db.engine.dispose()

    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0] == "algorithm: HS256"
    assert "published kids: none (HMAC keys are secret)" in done.output


def test_keygen_names_the_public_key(tmp_path: Path) -> None:
    application = make_app(f"sqlite:///{tmp_path / 'keygen.db'}")
    runner = application.test_cli_runner()

    done = runner.invoke(args=["auth", "keygen", "--kid", NEW])
    refused = runner.invoke(args=["auth", "keygen", "--kid", "two words"])
    with application.app_context():
        db.engine.dispose()

    assert done.exit_code == 0, done.output
    private_pem, named_public = done.output.split("-----END PRIVATE KEY-----\n")
    assert named_public.startswith(f"kid={NEW}\n-----BEGIN PUBLIC KEY-----\n")
    # What it prints is what AUTH_JWT_PUBLIC_KEYS takes, the private key signing under the kid.
    settings = AuthSettings.from_config(
        {
            "SECRET_KEY": SECRET,
            "AUTH_JWT_ALGORITHM": "EdDSA",
            "AUTH_JWT_PRIVATE_KEY": private_pem + "-----END PRIVATE KEY-----\n",
            "AUTH_JWT_PUBLIC_KEYS": named_public,
        }
    )
    assert load_key_set(settings).signing_kid == NEW
    assert refused.exit_code == 2
    assert "Invalid value for --kid" in refused.output
