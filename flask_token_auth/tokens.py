"""Access JWTs and refresh-token values: pure functions, no request, `g` or database."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import jwt

from .errors import InvalidGrant
from .errors import InvalidToken
from .keys import KeySet
from .settings import AuthSettings
from .validation import is_session_id

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, not a secret)
REQUIRED_CLAIMS = ("iss", "aud", "sub", "sid", "jti", "iat", "exp", "role")
# Threat: parsing cost and header smuggling through giant tokens.
MAX_ACCESS_TOKEN_LENGTH = 8192
# Threat: stack exhaustion (JSON nested past the recursion limit) and parsing cost in the header,
# which is read before any signature check. Ours is about 100 characters.
MAX_HEADER_SEGMENT_LENGTH = 1024
# Threat: timestamps no clock reaches (`exp` of 10**400) overflowing the lifetime arithmetic:
# `iat`, `exp` and `nbf` lie between 1970 and the last second of 9999, as a datetime does.
MAX_TIMESTAMP = 253_402_300_799
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
REFRESH_TOKEN_BYTES = 32
_REFRESH_TOKEN_PATTERN = re.compile(r"[0-9a-f]{64}")
# An integer user id the database can look up: a positive BIGINT, spelled one way.
_USER_ID_PATTERN = re.compile(r"[1-9][0-9]{0,18}")
MAX_USER_ID = 2**63 - 1
#: A user's primary key: an int, a UUID or a string, as the user model declares it.
UserKey = Any
#: The key a `sub` names; ValueError if it names none (see `integer_subject`).
SubjectParser = Callable[[str], UserKey]


@dataclasses.dataclass(frozen=True, kw_only=True)
class IssuedTokens:
    """What a login, a refresh or `AuthManager.start_session` hands to the client."""

    access_token: str = dataclasses.field(repr=False)
    expires_in: int
    refresh_token: str = dataclasses.field(repr=False)
    refresh_expires_at: datetime
    session_id: str
    #: The user as the API shows it; None for a refresh, whose answer does not show it.
    user: dict[str, Any] | None = None


def integer_subject(subject: str) -> int:
    """The positive BIGINT `subject` spells in decimal, without sign or leading zeros;
    ValueError otherwise (threat: one key spelled many ways, or one no column holds)."""
    if not _USER_ID_PATTERN.fullmatch(subject) or int(subject) > MAX_USER_ID:
        raise ValueError("not a positive BIGINT")
    return int(subject)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessClaims:
    """The verified claims of an access token."""

    user_id: UserKey
    session_id: str
    role: str
    token_id: str
    issued_at: int
    expires_at: int
    #: `nbf`, if the token has one (ours never do).
    not_before: int | None = None


def issue_access_token(
    *,
    keys: KeySet,
    settings: AuthSettings,
    user_id: UserKey,
    role: str,
    session_id: str,
    now: datetime,
) -> str:
    """A signed access token for `user_id` in `session_id`, valid from `now` for the access TTL."""
    issued_at = int(now.timestamp())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "sid": session_id,
        "jti": secrets.token_urlsafe(16),
        "iat": issued_at,
        "exp": issued_at + int(settings.access_token_ttl.total_seconds()),
        "role": role,
    }
    headers = {"typ": ACCESS_TOKEN_TYPE, "kid": keys.signing_kid}
    return jwt.encode(claims, keys.signing_key, algorithm=keys.algorithm, headers=headers)


def verify_access_token(
    token: str,
    *,
    keys: KeySet,
    settings: AuthSettings,
    now: datetime,
    parse_subject: SubjectParser = integer_subject,
) -> AccessClaims:
    """Verify signature, `typ`, every required claim, `iss`, `aud` and lifetime at `now`.

    Raises InvalidToken. Whether the session is still alive is the caller's check.
    """
    claims = signed_access_claims(token, keys=keys, settings=settings, parse_subject=parse_subject)
    return check_lifetime(claims, settings=settings, now=now)


class AccessTokenVerifier:
    """`verify_access_token` for one app, remembering the last `cache_size` tokens that
    verified: a token presented again costs a lookup instead of a signature check, and its
    lifetime is still checked at every use. Thread-safe; `cache_size` 0 remembers none.

    Threat: a forged or altered token reusing a verdict. Only tokens whose signature and
    claims verified enter, keyed by the whole token; the keys are fixed for the app's life.
    """

    def __init__(
        self,
        *,
        keys: KeySet,
        settings: AuthSettings,
        cache_size: int,
        parse_subject: SubjectParser = integer_subject,
    ) -> None:
        self._settings = settings
        verify_signature = functools.partial(
            signed_access_claims, keys=keys, settings=settings, parse_subject=parse_subject
        )
        self.signed_claims = functools.lru_cache(maxsize=cache_size)(verify_signature)

    def verify(self, token: str, *, now: datetime) -> AccessClaims:
        """As `verify_access_token`; raises InvalidToken."""
        return check_lifetime(self.signed_claims(token), settings=self._settings, now=now)


def signed_access_claims(
    token: str,
    *,
    keys: KeySet,
    settings: AuthSettings,
    parse_subject: SubjectParser = integer_subject,
) -> AccessClaims:
    """The claims of `token` if its signature, `typ`, `iss`, `aud` and every required claim
    verify, whatever the time, and `sub` names a key (`parse_subject`); raises InvalidToken."""
    if len(token) > MAX_ACCESS_TOKEN_LENGTH:
        raise InvalidToken("the access token is too large")
    # Threat: one token spelled many ways (padding, characters some PyJWT releases skip)
    # filling the verified-token cache. RFC 7515's compact form is unpadded base64url.
    if not _COMPACT_JWS.fullmatch(token):
        raise InvalidToken("the access token is malformed")
    kid = _kid_of(token)
    # Threat: an attacker-chosen key. Only our own keys, looked up by kid, ever verify.
    key = keys.verification_keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidToken("the access token was signed by an unknown key")
    try:
        decoded = jwt.decode_complete(
            token,
            key,
            # Threat: algorithm confusion ("none", HS256 with a public key): config decides.
            algorithms=[keys.algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except (jwt.InvalidTokenError, RecursionError):  # PyJWT 2.10 lets a deep payload's out
        raise InvalidToken("the access token is invalid") from None
    # Threat: a different kind of JWT signed with the same key passed off as an access token.
    if str(decoded["header"].get("typ", "")).lower() != ACCESS_TOKEN_TYPE:
        raise InvalidToken("the token is not an access token")
    claims = decoded["payload"]
    expires_at, issued_at, not_before = claims["exp"], claims["iat"], claims.get("nbf")
    subject, session_id = claims["sub"], claims["sid"]
    if not (
        _is_timestamp(expires_at)
        and _is_timestamp(issued_at)
        and (not_before is None or _is_timestamp(not_before))
        and isinstance(subject, str)
        and isinstance(session_id, str)
        and is_session_id(session_id)
        and isinstance(claims["jti"], str)
        and isinstance(claims["role"], str)
    ):
        raise InvalidToken("the access token is invalid")
    # Threat: a token living longer than any we issue (minted elsewhere with our key, or
    # before the TTL was shortened) staying valid after every token of ours has expired.
    longest = settings.access_token_ttl.total_seconds() + settings.jwt_leeway.total_seconds()
    if expires_at - issued_at > longest:
        raise InvalidToken("the access token lives longer than this server issues")
    try:
        user_id = parse_subject(subject)
    except ValueError:
        raise InvalidToken("the access token is invalid") from None
    return AccessClaims(
        user_id=user_id,
        session_id=session_id,
        role=claims["role"],
        token_id=claims["jti"],
        issued_at=issued_at,
        expires_at=expires_at,
        not_before=not_before,
    )


def check_lifetime(claims: AccessClaims, *, settings: AuthSettings, now: datetime) -> AccessClaims:
    """`claims` if valid at `now` (`exp`, `iat` and `nbf`), give or take the leeway; raises
    InvalidToken."""
    leeway = settings.jwt_leeway.total_seconds()
    timestamp = now.timestamp()
    if timestamp >= claims.expires_at + leeway:
        raise InvalidToken("the access token has expired")
    if claims.issued_at > timestamp + leeway or (
        claims.not_before is not None and claims.not_before > timestamp + leeway
    ):
        raise InvalidToken("the access token is not valid yet")
    return claims


def _kid_of(token: str) -> object:
    """The `kid` of the token's header, read from that segment alone (the signature check that
    follows parses the whole token once; PyJWT's own header reader would do it twice).
    Raises InvalidToken if the segment is longer than MAX_HEADER_SEGMENT_LENGTH or unreadable."""
    end = token.index(".")
    if end > MAX_HEADER_SEGMENT_LENGTH:
        raise InvalidToken("the access token's header is too large")
    segment = token[:end]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # bad base64, UTF-8 or JSON; nesting past the stack
        raise InvalidToken("the access token is malformed") from None
    return header.get("kid") if isinstance(header, dict) else None


def _is_timestamp(value: object) -> bool:
    """An int (not a bool) in 0..MAX_TIMESTAMP."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TIMESTAMP


def new_refresh_token() -> str:
    """A fresh refresh token: 32 random bytes as 64 hex characters."""
    return secrets.token_hex(REFRESH_TOKEN_BYTES)


def refresh_token_hash(token: object) -> str:
    """The SHA-256 (hex) under which a refresh token is stored; InvalidGrant if malformed."""
    if not isinstance(token, str) or not _REFRESH_TOKEN_PATTERN.fullmatch(token):
        raise InvalidGrant("the refresh token is invalid")
    return hashlib.sha256(bytes.fromhex(token)).hexdigest()


def successor_refresh_token(token: str, *, secret_key: bytes) -> str:
    """The token that replaces `token` at its rotation: HMAC(server key, token).

    Deterministic, so a replay inside the grace window gets the very successor the first
    request got, recomputed from what it presents; nothing but hashes is ever stored.
    """
    return _mac(secret_key, b"refresh-successor", token)


def csrf_token_for(token: str, *, secret_key: bytes) -> str:
    """The CSRF value bound to a refresh token: rotates with it, useless without the key."""
    return _mac(secret_key, b"csrf", token)


def tokens_match(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (threat: timing oracle)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _mac(secret_key: bytes, purpose: bytes, token: str) -> str:
    return hmac.new(secret_key, purpose + b"\x00" + token.encode(), hashlib.sha256).hexdigest()
