"""Signing and verification keys, their `kid`s and the public JWKS."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import get_default_algorithms

from .settings import AuthSettings
from .settings import HMAC_ALGORITHMS

MIN_RSA_BITS = 2048
#: How soon a verifier fetches a key set again for a kid it does not know, refusing the token
#: until then: jose's `createRemoteJWKSet` (`cooldownDuration`), PyJWT's `PyJWKClient` in the
#: releases that have a `cooldown_duration`.
VERIFIER_REFETCH_COOLDOWN = timedelta(seconds=30)
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "EdDSA": (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey),
    "ES256": (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey),
    "RS256": (rsa.RSAPrivateKey, rsa.RSAPublicKey),
}
# RFC 7638: the members that make up a key's thumbprint, per key type.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


@dataclasses.dataclass(frozen=True)
class KeySet:
    """The key that signs new tokens and every key that still verifies, by `kid`."""

    algorithm: str
    signing_key: Any = dataclasses.field(repr=False)
    signing_kid: str
    verification_keys: dict[str, Any] = dataclasses.field(repr=False)
    public_jwks: tuple[dict[str, str], ...]
    #: The kids of AUTH_JWT_PUBLIC_KEYS in the order listed: oldest first, by convention.
    listed_kids: tuple[str, ...] = ()

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """RFC 7517 key set of the public verification keys; empty for HMAC."""
        return {"keys": list(self.public_jwks)}

    @property
    def published_kids(self) -> tuple[str, ...]:
        """The kids of the JWKS, the signing key's first; none for HMAC."""
        return tuple(jwk["kid"] for jwk in self.public_jwks)

    @property
    def next_kids(self) -> tuple[str, ...]:
        """Keys listed after the signing key, which AUTH_JWT_PUBLIC_KEYS lists oldest first:
        the keys to sign next. None when the signing key is not listed (nothing tells)."""
        listed = self.listed_kids
        return listed[listed.index(self.signing_kid) + 1 :] if self.signing_kid in listed else ()

    @property
    def old_kids(self) -> tuple[str, ...]:
        """Keys listed before the signing key: keys that signed before it. None when the
        signing key is not listed."""
        listed = self.listed_kids
        return listed[: listed.index(self.signing_kid)] if self.signing_kid in listed else ()


def publication_wait(settings: AuthSettings) -> timedelta:
    """The least time from every server publishing a key to any signing with it: what HTTP
    caches may keep of the JWKS, and no less than the verifiers' refetch cooldown."""
    return max(settings.jwks_max_age, VERIFIER_REFETCH_COOLDOWN)


def retirement_wait(settings: AuthSettings) -> timedelta:
    """The least time from every server ceasing to sign with a key to its removal: the life
    of the last token it signed, leeway included."""
    return settings.access_token_ttl + settings.jwt_leeway


def load_key_set(settings: AuthSettings) -> KeySet:
    """Build the key set from settings; raise RuntimeError naming the key when one is unusable."""
    if settings.jwt_algorithm in HMAC_ALGORITHMS:
        # Fallback secrets still verify the tokens they signed, told apart by kid.
        by_kid = {_hmac_kid(secret): secret for secret in settings.secret_keys}
        signing_kid = _hmac_kid(settings.jwt_secret_key)
        return KeySet(settings.jwt_algorithm, settings.jwt_secret_key, signing_kid, by_kid, ())
    assert settings.jwt_private_key is not None  # noqa: S101 (settings guarantee it)
    try:
        private_key = serialization.load_pem_private_key(settings.jwt_private_key, password=None)
    except (ValueError, TypeError) as exc:
        raise RuntimeError(
            f"AUTH_JWT_PRIVATE_KEY: not an unencrypted PEM private key ({exc}); "
            "`flask auth keygen` prints one."
        ) from exc
    _check_key_type(settings.jwt_algorithm, private_key, "AUTH_JWT_PRIVATE_KEY")
    algorithm = get_default_algorithms()[settings.jwt_algorithm]
    public_key = private_key.public_key()
    signing_jwk: dict[str, str] = algorithm.to_jwk(public_key, as_dict=True)
    signing_thumbprint = key_thumbprint(signing_jwk)
    listed = _listed_public_keys(settings, algorithm)
    # The private key signs under the kid its public key is listed with: the name a staged
    # rotation published it under while it was the next key, which verifiers have fetched since.
    # Unlisted, it is published too, under its thumbprint.
    signing = next(
        (entry for entry in listed if key_thumbprint(entry[1]) == signing_thumbprint),
        (signing_thumbprint, signing_jwk, public_key),
    )
    others = [entry for entry in listed if entry is not signing]
    if any(kid == signing[0] for kid, _, _ in others):
        raise RuntimeError(
            f"AUTH_JWT_PUBLIC_KEYS: {signing[0]} is the kid the private key signs under (its "
            "thumbprint) but names another key here; rename that key."
        )
    published = [signing, *others]  # the signing key first, then the others as listed
    return KeySet(
        settings.jwt_algorithm,
        private_key,
        signing[0],
        {kid: key for kid, _, key in published},
        tuple(
            {**jwk, "kid": kid, "alg": settings.jwt_algorithm, "use": "sig"}
            for kid, jwk, _ in published
        ),
        listed_kids=tuple(kid for kid, _, _ in listed),
    )


def _listed_public_keys(
    settings: AuthSettings, algorithm: Any
) -> list[tuple[str, dict[str, str], Any]]:
    """(kid, public JWK, key) of each key of AUTH_JWT_PUBLIC_KEYS, in order; RuntimeError for a
    key that is not a PEM public key of the algorithm or is listed twice, or a kid given twice."""
    listed: list[tuple[str, dict[str, str], Any]] = []
    kids: dict[str, str] = {}  # thumbprint -> kid
    for given_kid, pem in settings.jwt_public_keys:
        try:
            public_key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise RuntimeError(
                f"AUTH_JWT_PUBLIC_KEYS: a key is not a PEM public key ({exc}); fix or remove it."
            ) from exc
        _check_key_type(settings.jwt_algorithm, public_key, "AUTH_JWT_PUBLIC_KEYS")
        jwk: dict[str, str] = algorithm.to_jwk(public_key, as_dict=True)
        thumbprint = key_thumbprint(jwk)
        kid = given_kid or thumbprint
        if thumbprint in kids:
            raise RuntimeError(
                f"AUTH_JWT_PUBLIC_KEYS: the key {kids[thumbprint]} is listed again as {kid}; "
                "list each key once, under the kid it has had since it was first published."
            )
        if kid in kids.values():
            raise RuntimeError(
                f"AUTH_JWT_PUBLIC_KEYS: two keys have the kid {kid}; name each its own."
            )
        kids[thumbprint] = kid
        listed.append((kid, jwk, public_key))
    return listed


def _hmac_kid(secret: bytes) -> str:
    # A MAC of a constant: it names the key without revealing anything of it.
    return "hs-" + hmac.new(secret, b"kid", hashlib.sha256).hexdigest()[:16]


def _check_key_type(algorithm: str, key: object, setting: str) -> None:
    if not isinstance(key, _KEY_TYPES[algorithm]):
        raise RuntimeError(f"{setting}: a {type(key).__name__} cannot be used with {algorithm}.")
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and not isinstance(
        key.curve, ec.SECP256R1
    ):
        raise RuntimeError(f"{setting}: ES256 needs a P-256 key, not {key.curve.name}.")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise RuntimeError(f"{setting}: RSA keys must have at least {MIN_RSA_BITS} bits.")


def key_thumbprint(jwk: dict[str, str]) -> str:
    """The RFC 7638 thumbprint of a public JWK: the kid of a key that is given no name."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def generate_key_pair_pem(algorithm: str) -> tuple[str, str]:
    """A new (private, public) PEM pair for EdDSA, ES256 or RS256."""
    private_key: Any
    if algorithm == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise ValueError(f"no key pair for {algorithm}")
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem.decode(), public_pem.decode()
