"""Signing keys and access-token verification (docs/tokens.md, docs/configuration.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask import jsonify
from flask import request
from flask import Response
from flask.testing import FlaskClient
from jwt.algorithms import get_default_algorithms
from werkzeug.test import TestResponse

import config as service_config
from app import db
from flask_token_auth.errors import InvalidToken
from flask_token_auth.keys import generate_key_pair_pem
from flask_token_auth.keys import key_thumbprint
from flask_token_auth.keys import KeySet
from flask_token_auth.keys import load_key_set
from flask_token_auth.models import AuthEvent
from flask_token_auth.models import AuthSession
from flask_token_auth.models import RefreshToken
from flask_token_auth.models import User
from flask_token_auth.settings import AuthSettings
from flask_token_auth.tokens import AccessClaims
from flask_token_auth.tokens import issue_access_token
from flask_token_auth.tokens import verify_access_token
from tests.conftest import make_app
from tests.conftest import SECRET
from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import register

ASYMMETRIC = ["EdDSA", "ES256", "RS256"]
ISSUER = AUDIENCE = "flask-token-auth"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "jti", "iat", "exp", "role"]
#: JWK members that carry private (or symmetric) key material (RFC 7518 section 6).
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
KEY_TYPES = {
    "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
    "ES256": {"kty": "EC", "crv": "P-256"},
    "RS256": {"kty": "RSA"},
}
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TIMESTAMP = int(NOW.timestamp())

KeyPairs = dict[str, list[tuple[str, str]]]
AppFactory = Callable[..., Flask]


@pytest.fixture(scope="module")
def key_pairs() -> KeyPairs:
    """Two (private, public) PEM pairs per algorithm: an old key and a new one."""
    return {
        algorithm: [generate_key_pair_pem(algorithm) for _ in range(2)] for algorithm in ASYMMETRIC
    }


@pytest.fixture
def keyed_app(database_url: str) -> Iterator[AppFactory]:
    """Builds reference apps on the test database with the given overrides; cleans up after."""
    applications: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        application = make_app(database_url, **overrides)
        with application.app_context():
            db.create_all()
        applications.append(application)
        return application

    yield build
    if applications:
        with applications[0].app_context(), db.engine.begin() as connection:
            for model in (AuthEvent, RefreshToken, AuthSession, User):
                connection.execute(sa.delete(model))
    for application in applications:
        with application.app_context():
            db.engine.dispose()


def settings_for(**config: Any) -> AuthSettings:
    return AuthSettings.from_config({"TESTING": True, "SECRET_KEY": SECRET, **config})


def asymmetric_settings(algorithm: str, private_pem: str, **config: Any) -> AuthSettings:
    return settings_for(AUTH_JWT_ALGORITHM=algorithm, AUTH_JWT_PRIVATE_KEY=private_pem, **config)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())


def hmac_token(
    header: dict[str, Any], claims: dict[str, Any], key: bytes, *, digest: str = "sha256"
) -> str:
    """A JWS signed with HMAC by hand (PyJWT refuses a PEM key and warns on short ones)."""
    message = signing_input(header, claims)
    signature = hmac.new(key, message.encode(), getattr(hashlib, digest)).digest()
    return message + "." + b64url(signature)


def valid_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "sid": "session-1",
        "jti": "token-1",
        "iat": TIMESTAMP,
        "exp": TIMESTAMP + 900,
        "role": "user",
    }
    claims.update(changes)
    return claims


HS_SETTINGS = settings_for()
HS_KEYS = load_key_set(HS_SETTINGS)
HS_HEADER = {"alg": "HS256", "typ": "at+jwt", "kid": HS_KEYS.signing_kid}


def hs_token(claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode(
        claims,
        SECRET.encode(),
        algorithm="HS256",
        headers={"typ": "at+jwt", "kid": HS_KEYS.signing_kid, **header},
    )


def verify(
    token: str, *, keys: KeySet = HS_KEYS, settings: AuthSettings = HS_SETTINGS, now: datetime = NOW
) -> AccessClaims:
    return verify_access_token(token, keys=keys, settings=settings, now=now)


def assert_invalid_token(response: TestResponse) -> None:
    assert response.status_code == 401
    assert response.json is not None
    assert response.json["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer realm="api", error="invalid_token"'
    )


# End to end with the reference app


def consumer_app(jwks: dict[str, Any], algorithm: str) -> Flask:
    """A separate resource server that knows nothing but the published JWKS."""
    consumer = Flask(__name__)
    keys = {jwk["kid"]: jwt.PyJWK(jwk, algorithm=algorithm) for jwk in jwks["keys"]}

    @consumer.get("/whoami")
    def whoami() -> Response | tuple[Response, int]:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            claims = jwt.decode(
                token,
                keys[kid].key,
                algorithms=[algorithm],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": REQUIRED_CLAIMS},
            )
        except (jwt.InvalidTokenError, KeyError):
            return jsonify(error="invalid_token"), 401
        return jsonify(sub=claims["sub"], role=claims["role"])

    return consumer


def tamper_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    first = "A" if signature[0] != "A" else "B"
    return f"{header}.{payload}.{first}{signature[1:]}"


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_asymmetric_algorithm_end_to_end(
    keyed_app: AppFactory, key_pairs: KeyPairs, algorithm: str
) -> None:
    private_pem, public_pem = key_pairs[algorithm][0]
    application = keyed_app(AUTH_JWT_ALGORITHM=algorithm, AUTH_JWT_PRIVATE_KEY=private_pem)
    client = application.test_client()
    user = register(client)
    access_token = login(client).json["access_token"]

    me = client.get("/auth/me", headers=bearer(access_token))
    assert me.status_code == 200
    assert me.json is not None
    assert me.json["user"] == user

    response = client.get("/auth/jwks.json")
    assert response.status_code == 200
    jwks = response.json
    assert isinstance(jwks, dict)
    assert list(jwks) == ["keys"]
    [jwk] = jwks["keys"]
    assert PRIVATE_MEMBERS.isdisjoint(jwk)
    assert {name: jwk[name] for name in KEY_TYPES[algorithm]} == KEY_TYPES[algorithm]
    assert jwk.get("alg", algorithm) == algorithm
    assert jwk.get("use", "sig") == "sig"
    published = jwt.PyJWK(jwk, algorithm=algorithm).key
    assert (
        published.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        == public_pem
    )
    assert jwt.get_unverified_header(access_token) == {
        "alg": algorithm,
        "typ": "at+jwt",
        "kid": jwk["kid"],
    }

    consumer = consumer_app(jwks, algorithm).test_client()
    response = consumer.get("/whoami", headers=bearer(access_token))
    assert response.status_code == 200
    assert response.json == {"sub": str(user["id"]), "role": "user"}
    response = consumer.get("/whoami", headers=bearer(tamper_signature(access_token)))
    assert response.status_code == 401
    assert_invalid_token(client.get("/auth/me", headers=bearer(tamper_signature(access_token))))


def test_jwks_is_empty_for_hmac(client: FlaskClient) -> None:
    response = client.get("/auth/jwks.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == {"keys": []}


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_key_rotation_old_key_verifies_only_while_listed(
    keyed_app: AppFactory, key_pairs: KeyPairs, algorithm: str
) -> None:
    (old_private, old_public), (new_private, _) = key_pairs[algorithm]
    old_settings = asymmetric_settings(algorithm, old_private)
    old_keys = load_key_set(old_settings)
    rotating = keyed_app(
        AUTH_JWT_ALGORITHM=algorithm,
        AUTH_JWT_PRIVATE_KEY=new_private,
        AUTH_JWT_PUBLIC_KEYS=[old_public],
    )
    client = rotating.test_client()
    register(client)
    new_token = login(client).json["access_token"]
    claims = jwt.decode(new_token, options={"verify_signature": False})
    old_token = issue_access_token(
        keys=old_keys,
        settings=old_settings,
        user_id=int(claims["sub"]),
        role="user",
        session_id=claims["sid"],
        now=datetime.now(UTC),
    )
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert jwt.get_unverified_header(old_token)["kid"] == old_keys.signing_kid != new_kid

    jwks = client.get("/auth/jwks.json").json
    assert jwks is not None
    assert sorted(jwk["kid"] for jwk in jwks["keys"]) == sorted([new_kid, old_keys.signing_kid])
    assert all(PRIVATE_MEMBERS.isdisjoint(jwk) for jwk in jwks["keys"])
    assert client.get("/auth/me", headers=bearer(old_token)).status_code == 200
    assert client.get("/auth/me", headers=bearer(new_token)).status_code == 200
    consumer = consumer_app(jwks, algorithm).test_client()
    assert consumer.get("/whoami", headers=bearer(old_token)).status_code == 200

    retired = keyed_app(AUTH_JWT_ALGORITHM=algorithm, AUTH_JWT_PRIVATE_KEY=new_private)
    retired_client = retired.test_client()
    assert_invalid_token(retired_client.get("/auth/me", headers=bearer(old_token)))
    assert retired_client.get("/auth/me", headers=bearer(new_token)).status_code == 200
    retired_jwks = retired_client.get("/auth/jwks.json").json
    assert retired_jwks is not None
    assert [jwk["kid"] for jwk in retired_jwks["keys"]] == [new_kid]


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_unknown_or_missing_kid_is_refused(
    keyed_app: AppFactory, key_pairs: KeyPairs, algorithm: str
) -> None:
    private_pem, _ = key_pairs[algorithm][0]
    application = keyed_app(AUTH_JWT_ALGORITHM=algorithm, AUTH_JWT_PRIVATE_KEY=private_pem)
    client = application.test_client()
    register(client)
    access_token = login(client).json["access_token"]
    claims = jwt.decode(access_token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(access_token)["kid"]

    def resigned(**header: Any) -> str:
        return jwt.encode(claims, private_pem, algorithm=algorithm, headers=header)

    # Re-signed with the right kid, the token is still good: only the kid decides below.
    assert (
        client.get("/auth/me", headers=bearer(resigned(typ="at+jwt", kid=kid))).status_code == 200
    )
    assert_invalid_token(
        client.get("/auth/me", headers=bearer(resigned(typ="at+jwt", kid="unknown-kid")))
    )
    assert_invalid_token(client.get("/auth/me", headers=bearer(resigned(typ="at+jwt"))))
    # The other key of the same type, presenting the right kid, does not verify either.
    other_private, _ = key_pairs[algorithm][1]
    forged = jwt.encode(
        claims, other_private, algorithm=algorithm, headers={"typ": "at+jwt", "kid": kid}
    )
    assert_invalid_token(client.get("/auth/me", headers=bearer(forged)))


# Key configuration fails fast


def test_private_key_of_the_wrong_type_is_refused(tmp_path: Path, key_pairs: KeyPairs) -> None:
    rsa_private, _ = key_pairs["RS256"][0]

    with pytest.raises(RuntimeError, match=r"^AUTH_JWT_PRIVATE_KEY: "):
        make_app(
            f"sqlite:///{tmp_path / 'keys.db'}",
            AUTH_JWT_ALGORITHM="ES256",
            AUTH_JWT_PRIVATE_KEY=rsa_private,
        )


def test_public_key_of_the_wrong_type_is_refused(tmp_path: Path, key_pairs: KeyPairs) -> None:
    es_private, _ = key_pairs["ES256"][0]
    _, eddsa_public = key_pairs["EdDSA"][0]

    with pytest.raises(RuntimeError, match=r"^AUTH_JWT_PUBLIC_KEYS: "):
        make_app(
            f"sqlite:///{tmp_path / 'keys.db'}",
            AUTH_JWT_ALGORITHM="ES256",
            AUTH_JWT_PRIVATE_KEY=es_private,
            AUTH_JWT_PUBLIC_KEYS=[eddsa_public],
        )


def test_weak_keys_are_refused() -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (must be refused)
    p384 = ec.generate_private_key(ec.SECP384R1())
    for algorithm, key in (("RS256", small_rsa), ("ES256", p384)):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        with pytest.raises(RuntimeError, match=r"^AUTH_JWT_PRIVATE_KEY: "):
            load_key_set(asymmetric_settings(algorithm, pem))


def test_private_key_that_is_not_pem_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_JWT_PRIVATE_KEY"):
        make_app(
            f"sqlite:///{tmp_path / 'keys.db'}",
            AUTH_JWT_ALGORITHM="EdDSA",
            AUTH_JWT_PRIVATE_KEY="not a PEM key",
        )


# Named kids and staged rotation (docs/operations.md#rotating-the-signing-key)


def named(kid: str, public_pem: str) -> str:
    """One key of AUTH_JWT_PUBLIC_KEYS as the environment writes it: `kid=NAME` above its PEM."""
    return f"kid={kid}\n{public_pem}"


def kids(keys: KeySet) -> list[str]:
    return [jwk["kid"] for jwk in keys.jwks()["keys"]]


def thumbprint_of(public_pem: str, algorithm: str) -> str:
    public_key = serialization.load_pem_public_key(public_pem.encode())
    return key_thumbprint(get_default_algorithms()[algorithm].to_jwk(public_key, as_dict=True))


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_the_private_key_signs_under_the_kid_its_public_key_is_published_with(
    key_pairs: KeyPairs, algorithm: str
) -> None:
    (old_private, old_public), (new_private, new_public) = key_pairs[algorithm]
    listed = {"2025-07": old_public, "2026-01": new_public}
    publishing_settings = asymmetric_settings(algorithm, old_private, AUTH_JWT_PUBLIC_KEYS=listed)
    switched_settings = asymmetric_settings(algorithm, new_private, AUTH_JWT_PUBLIC_KEYS=listed)

    publishing = load_key_set(publishing_settings)
    switched = load_key_set(switched_settings)

    assert (publishing.signing_kid, kids(publishing)) == ("2025-07", ["2025-07", "2026-01"])
    # Each key once, the signing key first; the new key signs under the name verifiers fetched.
    assert (switched.signing_kid, kids(switched)) == ("2026-01", ["2026-01", "2025-07"])
    token = issue_access_token(
        keys=switched,
        settings=switched_settings,
        user_id=7,
        role="user",
        session_id="s-7",
        now=datetime.now(UTC),
    )
    assert jwt.get_unverified_header(token)["kid"] == "2026-01"
    fetched_before = {jwk["kid"]: jwk for jwk in publishing.jwks()["keys"]}
    key = jwt.PyJWK(fetched_before["2026-01"], algorithm=algorithm).key
    assert jwt.decode(token, key, algorithms=[algorithm], audience=AUDIENCE)["sub"] == "7"


@pytest.mark.parametrize("first_named", [False, True])
def test_every_stage_signs_with_a_kid_the_stage_before_published(
    key_pairs: KeyPairs, first_named: bool
) -> None:
    """The stages of a rotation, from a key never named (its kid is its thumbprint) or from a
    named one: each stage signs with a kid the stage before published, and the kid that
    signed before stays published until the key is retired."""
    (old_private, old_public), (new_private, new_public) = key_pairs["EdDSA"]
    old_entry = named("2025-07", old_public) if first_named else old_public
    old_kid = "2025-07" if first_named else thumbprint_of(old_public, "EdDSA")
    stages = [
        (old_private, [old_entry]),  # one key
        (old_private, [old_entry, named("2026-01", new_public)]),  # (a) publish the next key
        (new_private, [old_entry, named("2026-01", new_public)]),  # (c) sign with it
        (new_private, [named("2026-01", new_public)]),  # (d) retire the old key
    ]

    key_sets = [
        load_key_set(asymmetric_settings("EdDSA", private, AUTH_JWT_PUBLIC_KEYS=public))
        for private, public in stages
    ]

    assert [keys.signing_kid for keys in key_sets] == [old_kid, old_kid, "2026-01", "2026-01"]
    assert [kids(keys) for keys in key_sets] == [
        [old_kid],
        [old_kid, "2026-01"],
        ["2026-01", old_kid],
        ["2026-01"],
    ]
    for before, after in itertools.pairwise(key_sets):
        assert after.signing_kid in kids(before)
    assert [(keys.old_kids, keys.next_kids) for keys in key_sets] == [
        ((), ()),
        ((), ("2026-01",)),
        ((old_kid,), ()),
        ((), ()),
    ]


def test_public_keys_from_the_environment_name_their_kids(key_pairs: KeyPairs) -> None:
    """docs/configuration.md: a line `kid=NAME` above a PEM names it (or `kid=NAME` and the PEM
    on one line); keys are separated by line breaks or, as before, by commas; a key without a
    name has its thumbprint as kid."""
    (private, public), (_, other_public) = key_pairs["ES256"]
    environment = {"AUTH_JWT_ALGORITHM": "ES256", "AUTH_JWT_PRIVATE_KEY": private}
    texts = {
        f"kid=2025-07\n{public}\nkid=2026-01 {other_public}": ["2025-07", "2026-01"],
        f"{public},{named('2026-01', other_public)},": [thumbprint_of(public, "ES256"), "2026-01"],
        f"kid=2025-07\r\n{public.replace(chr(10), chr(13) + chr(10))}\r\n{other_public}": [
            "2025-07",
            thumbprint_of(other_public, "ES256"),
        ],
    }

    for text, expected in texts.items():
        read = service_config.auth_settings({**environment, "AUTH_JWT_PUBLIC_KEYS": text})
        assert kids(load_key_set(settings_for(**read))) == expected, text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kid=2026-01\n", "expected `kid=NAME` or a PEM key at 'kid=2026-01'"),
        ("garbage\n{public}", "expected `kid=NAME` or a PEM key at 'garbage'"),
        ("kid=two words\n{public}", "expected `kid=NAME` or a PEM key at 'kid=two words'"),
        ("kid=a/b\n{public}", "'a/b' is not a kid"),
        ("{public}kid=x\n{public}", "the key {thumbprint} is listed again as x"),
        ("kid=x\n{public}kid=x\n{other}", "two keys have the kid x"),
        # A private key pasted by mistake, cut short: its first line only is shown.
        ("{broken}", "expected `kid=NAME` or a PEM key at '-----BEGIN PRIVATE KEY-----'"),
    ],
)
def test_public_keys_that_cannot_be_read_are_refused_naming_the_key(
    key_pairs: KeyPairs, text: str, problem: str
) -> None:
    (private, public), (_, other) = key_pairs["EdDSA"]
    thumbprint = thumbprint_of(public, "EdDSA")
    broken = private.replace("-----END PRIVATE KEY-----", "")
    value = text.format(public=public, other=other, broken=broken)

    with pytest.raises(RuntimeError, match=r"^AUTH_JWT_PUBLIC_KEYS: ") as raised:
        load_key_set(asymmetric_settings("EdDSA", private, AUTH_JWT_PUBLIC_KEYS=value))
    assert problem.format(thumbprint=thumbprint) in str(raised.value)
    assert private.splitlines()[1] not in str(raised.value)


def test_the_jwks_max_age_is_the_setting(keyed_app: AppFactory, key_pairs: KeyPairs) -> None:
    """docs/configuration.md, AUTH_JWKS_MAX_AGE (5 min): the JWKS's `Cache-Control: max-age`,
    the least wait between publishing a key and signing with it."""
    private_pem = key_pairs["EdDSA"][0][0]
    headers = {}
    for max_age in (None, 60, 0):
        overrides = {} if max_age is None else {"AUTH_JWKS_MAX_AGE": max_age}
        application = keyed_app(
            AUTH_JWT_ALGORITHM="EdDSA", AUTH_JWT_PRIVATE_KEY=private_pem, **overrides
        )
        response = application.test_client().get("/auth/jwks.json")
        assert response.status_code == 200
        headers[max_age] = response.headers["Cache-Control"]

    assert headers == {
        None: "public, max-age=300",
        60: "public, max-age=60",
        0: "public, max-age=0",
    }


# verify_access_token, without a database


def test_verify_accepts_a_valid_token() -> None:
    assert verify(hs_token(valid_claims())) == AccessClaims(
        user_id=42,
        session_id="session-1",
        role="user",
        token_id="token-1",
        issued_at=TIMESTAMP,
        expires_at=TIMESTAMP + 900,
    )


def test_hand_signed_token_verifies() -> None:
    # The hand-made HMAC tokens below are refused for their content, not for their encoding.
    assert verify(hmac_token(HS_HEADER, valid_claims(), SECRET.encode())).user_id == 42


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_issued_token_round_trip(key_pairs: KeyPairs, algorithm: str) -> None:
    settings = asymmetric_settings(algorithm, key_pairs[algorithm][0][0])
    keys = load_key_set(settings)

    token = issue_access_token(
        keys=keys, settings=settings, user_id=7, role="admin", session_id="s-7", now=NOW
    )

    assert jwt.get_unverified_header(token) == {
        "alg": algorithm,
        "typ": "at+jwt",
        "kid": keys.signing_kid,
    }
    claims = verify(token, keys=keys, settings=settings)
    assert (claims.user_id, claims.session_id, claims.role) == (7, "s-7", "admin")
    assert claims.issued_at == TIMESTAMP
    assert claims.expires_at == TIMESTAMP + 15 * 60


@pytest.mark.parametrize("settings_kind", ["HS256", "RS256"])
def test_alg_none_is_refused(key_pairs: KeyPairs, settings_kind: str) -> None:
    if settings_kind == "HS256":
        keys, settings = HS_KEYS, HS_SETTINGS
    else:
        settings = asymmetric_settings("RS256", key_pairs["RS256"][0][0])
        keys = load_key_set(settings)
    header = {"alg": "none", "typ": "at+jwt", "kid": keys.signing_kid}
    token = signing_input(header, valid_claims()) + "."

    with pytest.raises(InvalidToken):
        verify(token, keys=keys, settings=settings)


def test_hs256_signed_with_the_rsa_public_key_is_refused(key_pairs: KeyPairs) -> None:
    # Threat: key confusion. A verifier trusting the token's alg would HMAC with the public PEM.
    private_pem, public_pem = key_pairs["RS256"][0]
    settings = asymmetric_settings("RS256", private_pem)
    keys = load_key_set(settings)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": keys.signing_kid}
    token = hmac_token(header, valid_claims(), public_pem.encode())

    with pytest.raises(InvalidToken):
        verify(token, keys=keys, settings=settings)


def test_other_hmac_algorithm_than_configured_is_refused() -> None:
    header = {**HS_HEADER, "alg": "HS512"}
    token = hmac_token(header, valid_claims(), SECRET.encode(), digest="sha512")

    with pytest.raises(InvalidToken):
        verify(token)


@pytest.mark.parametrize("typ", ["JWT", "refresh+jwt", "", None])
def test_wrong_or_missing_typ_is_refused(typ: str | None) -> None:
    header: dict[str, Any] = {"alg": "HS256", "kid": HS_KEYS.signing_kid}
    if typ is not None:
        header["typ"] = typ
    token = hmac_token(header, valid_claims(), SECRET.encode())

    with pytest.raises(InvalidToken):
        verify(token)


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_missing_required_claim_is_refused(claim: str) -> None:
    claims = valid_claims()
    del claims[claim]

    with pytest.raises(InvalidToken):
        verify(hs_token(claims))


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://evil.example"},
        {"aud": "another-api"},
        {"aud": ["another-api"]},
        {"sub": "alice"},
        {"sub": 42},
        {"sid": 1},
        {"role": ["admin"]},
        {"exp": "tomorrow"},
        {"iat": str(TIMESTAMP)},
    ],
)
def test_wrong_claim_value_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        verify(hs_token(valid_claims(**changes)))


@pytest.mark.parametrize("exp_offset", [0, -1, -3600])
def test_expired_token_is_refused(exp_offset: int) -> None:
    token = hs_token(valid_claims(iat=TIMESTAMP - 900, exp=TIMESTAMP + exp_offset))

    with pytest.raises(InvalidToken):
        verify(token)


def test_expired_token_is_accepted_within_leeway() -> None:
    settings = settings_for(AUTH_JWT_LEEWAY=30)
    keys = load_key_set(settings)
    within = hs_token(valid_claims(iat=TIMESTAMP - 900, exp=TIMESTAMP - 29))
    beyond = hs_token(valid_claims(iat=TIMESTAMP - 900, exp=TIMESTAMP - 31))

    assert verify(within, keys=keys, settings=settings).expires_at == TIMESTAMP - 29
    with pytest.raises(InvalidToken):
        verify(beyond, keys=keys, settings=settings)


def test_token_issued_in_the_future_is_refused() -> None:
    token = hs_token(valid_claims(iat=TIMESTAMP + 60, exp=TIMESTAMP + 960))

    with pytest.raises(InvalidToken):
        verify(token)


def test_token_issued_slightly_in_the_future_is_accepted_within_leeway() -> None:
    settings = settings_for(AUTH_JWT_LEEWAY=timedelta(seconds=120))
    keys = load_key_set(settings)
    token = hs_token(valid_claims(iat=TIMESTAMP + 60, exp=TIMESTAMP + 960))

    assert verify(token, keys=keys, settings=settings).issued_at == TIMESTAMP + 60


def test_tampered_payload_is_refused() -> None:
    header, _, signature = hs_token(valid_claims()).split(".")
    forged_payload = b64url(json.dumps(valid_claims(role="admin")).encode())

    with pytest.raises(InvalidToken):
        verify(f"{header}.{forged_payload}.{signature}")


def test_tampered_signature_is_refused() -> None:
    with pytest.raises(InvalidToken):
        verify(tamper_signature(hs_token(valid_claims())))


def test_token_signed_with_another_secret_is_refused() -> None:
    token = jwt.encode(
        valid_claims(),
        b"another-secret-" + b"y" * 40,
        algorithm="HS256",
        headers={"typ": "at+jwt", "kid": HS_KEYS.signing_kid},
    )

    with pytest.raises(InvalidToken):
        verify(token)


def test_oversized_token_is_refused() -> None:
    small = hs_token(valid_claims(padding="x" * 5000))
    large = hs_token(valid_claims(padding="x" * 7000))
    assert len(small) < 8192 < len(large)

    assert verify(small).user_id == 42
    with pytest.raises(InvalidToken):
        verify(large)


@pytest.mark.parametrize(
    "token", ["", "garbage", "a.b.c", "a.b", "Bearer x", "eyJhbGciOiJIUzI1NiJ9..", "é.é.é"]
)
def test_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify(token)


@pytest.mark.parametrize("kid", ["unknown", None, 123])
def test_unknown_kid_is_refused(kid: str | int | None) -> None:
    header: dict[str, Any] = {"alg": "HS256", "typ": "at+jwt"}
    if kid is not None:
        header["kid"] = kid
    token = hmac_token(header, valid_claims(), SECRET.encode())

    with pytest.raises(InvalidToken):
        verify(token)
