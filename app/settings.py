"""Configuration of the auth extension: defaults, parsing and fail-fast validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from limits import parse

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256"})
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS
ARGON2_PROFILES = frozenset({"rfc9106_low_memory", "rfc9106_high_memory", "test"})
MIN_SECRET_BYTES = 32
# Threat: a secret copied from a tutorial lets anyone forge tokens.
PLACEHOLDER_SECRETS = frozenset(
    {"dev", "secret", "changeme", "change-me", "change me", "your-secret-key", "super-secret"}
)

#: Every key the extension reads, with its default.
DEFAULTS: dict[str, Any] = {
    #: Signing algorithm; tokens are verified with this one only.
    "AUTH_JWT_ALGORITHM": "HS256",
    #: HMAC key and server secret; falls back to SECRET_KEY.
    "AUTH_JWT_SECRET_KEY": None,
    #: Old secrets that still verify during a key change (for SECRET_KEY: SECRET_KEY_FALLBACKS).
    "AUTH_JWT_SECRET_KEY_FALLBACKS": (),
    #: PEM private key for EdDSA, ES256 or RS256.
    "AUTH_JWT_PRIVATE_KEY": None,
    #: Extra PEM public keys that still verify (key rotation): a list, or a dict kid -> PEM.
    "AUTH_JWT_PUBLIC_KEYS": (),
    #: `iss` claim written and required.
    "AUTH_JWT_ISSUER": "flask-token-auth",
    #: `aud` claim written and required.
    "AUTH_JWT_AUDIENCE": "flask-token-auth",
    #: Clock skew tolerated on `exp` and `iat`.
    "AUTH_JWT_LEEWAY": timedelta(seconds=0),
    #: Lifetime of an access token.
    "AUTH_ACCESS_TOKEN_TTL": timedelta(minutes=15),
    #: Lifetime of a refresh token (sliding: each rotation starts a new one).
    "AUTH_REFRESH_TOKEN_TTL": timedelta(days=7),
    #: Absolute lifetime of a session, whatever the rotations.
    "AUTH_SESSION_TTL": timedelta(days=30),
    #: How long after its rotation a token may be replayed without counting as reuse.
    "AUTH_REFRESH_REUSE_GRACE": timedelta(seconds=10),
    #: Where the blueprint is mounted; also the refresh cookie's Path.
    "AUTH_URL_PREFIX": "/auth",
    #: Secure flag on cookies; turn off only for plain-http development.
    "AUTH_COOKIE_SECURE": True,
    #: SameSite on cookies: Strict, Lax or None.
    "AUTH_COOKIE_SAMESITE": "Strict",
    #: Origins besides the app's own allowed to use cookie-authenticated endpoints.
    "AUTH_TRUSTED_ORIGINS": (),
    #: When false, POST /register answers 403 access_denied.
    "AUTH_ALLOW_REGISTRATION": True,
    #: Shortest password accepted at registration and password change.
    "AUTH_PASSWORD_MIN_LENGTH": 8,
    #: Longest password accepted (bounds the hashing work an attacker can ask for).
    "AUTH_PASSWORD_MAX_LENGTH": 256,
    #: argon2id parameters: rfc9106_low_memory, rfc9106_high_memory, or test (never in production).
    "AUTH_ARGON2_PROFILE": "rfc9106_low_memory",
    #: Turn the rate limits below on or off.
    "AUTH_RATELIMIT_ENABLED": True,
    #: Where attempts are counted: memory:// (per process) or redis://host:port for several.
    "AUTH_RATELIMIT_STORAGE_URI": "memory://",
    #: Logins per client IP.
    "AUTH_RATELIMIT_LOGIN": "20/minute",
    #: Logins per email address, whatever the IP (threat: distributed guessing of one account).
    "AUTH_RATELIMIT_LOGIN_ACCOUNT": "10/minute",
    #: Registrations per client IP.
    "AUTH_RATELIMIT_REGISTER": "10/hour",
    #: Refreshes per client IP.
    "AUTH_RATELIMIT_REFRESH": "120/minute",
    #: Password changes per user.
    "AUTH_RATELIMIT_PASSWORD": "5/minute",
}
RATE_LIMIT_KEYS = {
    "login": "AUTH_RATELIMIT_LOGIN",
    "login_account": "AUTH_RATELIMIT_LOGIN_ACCOUNT",
    "register": "AUTH_RATELIMIT_REGISTER",
    "refresh": "AUTH_RATELIMIT_REFRESH",
    "password": "AUTH_RATELIMIT_PASSWORD",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """Validated settings; build with `AuthSettings.from_config(app.config)`."""

    algorithm: str
    secret_key: bytes = dataclasses.field(repr=False)
    secret_key_fallbacks: tuple[bytes, ...] = dataclasses.field(repr=False)
    private_key_pem: bytes | None = dataclasses.field(repr=False)
    public_keys_pem: tuple[tuple[str | None, bytes], ...]
    issuer: str
    audience: str
    leeway: timedelta
    access_token_ttl: timedelta
    refresh_token_ttl: timedelta
    session_ttl: timedelta
    refresh_reuse_grace: timedelta
    url_prefix: str
    cookie_secure: bool
    cookie_samesite: str
    trusted_origins: frozenset[str]
    allow_registration: bool
    password_min_length: int
    password_max_length: int
    argon2_profile: str
    ratelimit_enabled: bool
    ratelimit_storage_uri: str
    rate_limits: dict[str, str]

    @property
    def secret_keys(self) -> tuple[bytes, ...]:
        """The current secret, then the fallbacks that still verify."""
        return (self.secret_key, *self.secret_key_fallbacks)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AuthSettings:
        """Read and validate every AUTH_* key; raise RuntimeError naming the key and the fix."""

        def get(key: str) -> Any:
            return config.get(key, DEFAULTS[key])

        lenient = bool(config.get("DEBUG") or config.get("TESTING"))
        algorithm = get("AUTH_JWT_ALGORITHM")
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise _config_error(
                "AUTH_JWT_ALGORITHM",
                f"{algorithm!r} is not supported",
                f"use one of {', '.join(sorted(SUPPORTED_ALGORITHMS))}",
            )
        private_key = _pem(get("AUTH_JWT_PRIVATE_KEY"))
        if algorithm in ASYMMETRIC_ALGORITHMS and private_key is None:
            raise _config_error(
                "AUTH_JWT_PRIVATE_KEY",
                f"{algorithm} needs a private key",
                "set it to a PEM key (`flask auth keygen --alg " + algorithm + "` prints one)",
            )
        samesite = get("AUTH_COOKIE_SAMESITE")
        if samesite not in ("Strict", "Lax", "None"):
            raise _config_error(
                "AUTH_COOKIE_SAMESITE", f"{samesite!r} is not valid", "use Strict, Lax or None"
            )
        if samesite == "None" and not _bool(get, "AUTH_COOKIE_SECURE"):
            raise _config_error(
                "AUTH_COOKIE_SAMESITE",
                "None needs AUTH_COOKIE_SECURE (browsers drop such cookies)",
                "turn AUTH_COOKIE_SECURE on or use Lax",
            )
        prefix = get("AUTH_URL_PREFIX")
        if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.endswith("/"):
            raise _config_error(
                "AUTH_URL_PREFIX", f"{prefix!r} is not a path", "use a path such as /auth"
            )
        profile = get("AUTH_ARGON2_PROFILE")
        if profile not in ARGON2_PROFILES:
            raise _config_error(
                "AUTH_ARGON2_PROFILE",
                f"{profile!r} is unknown",
                f"use one of {', '.join(sorted(ARGON2_PROFILES))}",
            )
        if profile == "test" and not lenient:
            raise _config_error(
                "AUTH_ARGON2_PROFILE",
                "the test profile is far too cheap for real passwords",
                "use rfc9106_low_memory outside TESTING",
            )
        min_length = _positive_int(get, "AUTH_PASSWORD_MIN_LENGTH")
        max_length = _positive_int(get, "AUTH_PASSWORD_MAX_LENGTH")
        if max_length < min_length:
            raise _config_error(
                "AUTH_PASSWORD_MAX_LENGTH",
                "is shorter than AUTH_PASSWORD_MIN_LENGTH",
                "raise it or lower the minimum",
            )
        return cls(
            algorithm=algorithm,
            secret_key=_secret_key(config, lenient=lenient),
            secret_key_fallbacks=_secret_key_fallbacks(config),
            private_key_pem=private_key,
            public_keys_pem=_public_keys(get("AUTH_JWT_PUBLIC_KEYS")),
            issuer=_non_empty_string(get, "AUTH_JWT_ISSUER"),
            audience=_non_empty_string(get, "AUTH_JWT_AUDIENCE"),
            leeway=_duration(get, "AUTH_JWT_LEEWAY", allow_zero=True),
            access_token_ttl=_duration(get, "AUTH_ACCESS_TOKEN_TTL"),
            refresh_token_ttl=_duration(get, "AUTH_REFRESH_TOKEN_TTL"),
            session_ttl=_duration(get, "AUTH_SESSION_TTL"),
            refresh_reuse_grace=_duration(get, "AUTH_REFRESH_REUSE_GRACE", allow_zero=True),
            url_prefix=prefix,
            cookie_secure=_bool(get, "AUTH_COOKIE_SECURE"),
            cookie_samesite=samesite,
            trusted_origins=frozenset(o.rstrip("/") for o in _strings(get, "AUTH_TRUSTED_ORIGINS")),
            allow_registration=_bool(get, "AUTH_ALLOW_REGISTRATION"),
            password_min_length=min_length,
            password_max_length=max_length,
            argon2_profile=profile,
            ratelimit_enabled=_bool(get, "AUTH_RATELIMIT_ENABLED"),
            ratelimit_storage_uri=_non_empty_string(get, "AUTH_RATELIMIT_STORAGE_URI"),
            rate_limits={name: _rate_limit(get, key) for name, key in RATE_LIMIT_KEYS.items()},
        )


def _config_error(key: str, problem: str, fix: str) -> RuntimeError:
    return RuntimeError(f"{key}: {problem}; {fix}.")


def _secret_key(config: Mapping[str, Any], *, lenient: bool) -> bytes:
    key_name = "AUTH_JWT_SECRET_KEY" if config.get("AUTH_JWT_SECRET_KEY") else "SECRET_KEY"
    value = config.get(key_name)
    if not value:
        raise _config_error(
            "AUTH_JWT_SECRET_KEY",
            "no secret key is set (nor SECRET_KEY)",
            'set one of at least 32 random bytes: python -c "import secrets; '
            'print(secrets.token_hex(32))"',
        )
    secret = value.encode() if isinstance(value, str) else bytes(value)
    if not lenient:
        if secret.decode(errors="replace").strip().lower() in PLACEHOLDER_SECRETS:
            raise _config_error(key_name, "is a well-known placeholder", "generate a random one")
        if len(secret) < MIN_SECRET_BYTES:
            raise _config_error(
                key_name,
                f"is {len(secret)} bytes, shorter than {MIN_SECRET_BYTES}",
                "generate one with secrets.token_hex(32)",
            )
    return secret


def _secret_key_fallbacks(config: Mapping[str, Any]) -> tuple[bytes, ...]:
    """Flask's SECRET_KEY_FALLBACKS, or ours when AUTH_JWT_SECRET_KEY is the secret."""
    own = bool(config.get("AUTH_JWT_SECRET_KEY"))
    key_name = "AUTH_JWT_SECRET_KEY_FALLBACKS" if own else "SECRET_KEY_FALLBACKS"
    values = config.get(key_name) or ()
    if isinstance(values, str | bytes):
        raise _config_error(key_name, "must be a list of secrets", "use a list")
    return tuple(value.encode() if isinstance(value, str) else bytes(value) for value in values)


def _duration(get: Any, key: str, *, allow_zero: bool = False) -> timedelta:
    value = get(key)
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        duration = timedelta(seconds=value)
    else:
        raise _config_error(key, f"{value!r} is not a duration", "use a timedelta or seconds")
    if duration < timedelta(0) or (duration == timedelta(0) and not allow_zero):
        raise _config_error(key, f"must be positive, got {value!r}", "use a positive duration")
    return duration


def _bool(get: Any, key: str) -> bool:
    value = get(key)
    if not isinstance(value, bool):
        raise _config_error(key, f"must be true or false, got {value!r}", "use a boolean")
    return value


def _strings(get: Any, key: str) -> tuple[str, ...]:
    value = get(key)
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise _config_error(key, f"must be a list of strings, got {value!r}", "use a list")
    return tuple(value)


def _positive_int(get: Any, key: str) -> int:
    value = get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _config_error(key, f"must be a positive integer, got {value!r}", "fix the value")
    return value


def _non_empty_string(get: Any, key: str) -> str:
    value = get(key)
    if not isinstance(value, str) or not value:
        raise _config_error(key, "must be a non-empty string", "set it")
    return value


def _rate_limit(get: Any, key: str) -> str:
    value = get(key)
    try:
        parse(value)
    except (ValueError, TypeError):
        raise _config_error(key, f"{value!r} is not a rate limit", 'use e.g. "10/minute"') from None
    return str(value)


def _pem(value: str | bytes | None) -> bytes | None:
    if not value:
        return None
    return value.encode() if isinstance(value, str) else value


def _public_keys(value: Any) -> tuple[tuple[str | None, bytes], ...]:
    if isinstance(value, Mapping):
        items: list[tuple[str | None, Any]] = list(value.items())
    else:
        items = [(None, pem) for pem in value or ()]
    return tuple((kid, pem.encode() if isinstance(pem, str) else pem) for kid, pem in items)
