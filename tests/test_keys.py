"""Signing keys and access-token verification (docs/tokens.md, docs/configuration.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
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
from werkzeug.test import TestResponse

from app import db
from flask_token_auth.errors import InvalidToken
from flask_token_auth.keys import generate_key_pair_pem
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
