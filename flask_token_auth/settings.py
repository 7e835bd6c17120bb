"""Every AUTH_* key, declared once: its default, its check, its type of value and its meaning.

`AuthSettings` is the table: each field is one key (`AUTH_` + the field name in capitals).
Validation (`from_config`), the defaults `init_app` writes to `app.config` (`setting_defaults`),
each key's type of value (`setting_types`) and the configuration reference (`reference_table`)
are all derived from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .setting_kinds import Choice
from .setting_kinds import ClientSecrets
from .setting_kinds import Duration
from .setting_kinds import Flag
from .setting_kinds import Kind
from .setting_kinds import OptionalText
from .setting_kinds import Origins
from .setting_kinds import Pem
from .setting_kinds import PositiveInt
from .setting_kinds import PublicKeys
from .setting_kinds import RateLimit
from .setting_kinds import Secret
from .setting_kinds import Secrets
from .setting_kinds import SettingError
from .setting_kinds import Text

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256"})
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS
ARGON2_PROFILES = frozenset({"rfc9106_low_memory", "rfc9106_high_memory", "test"})
MIN_SECRET_BYTES = 32
# Threat: a secret copied from a tutorial lets anyone forge tokens.
PLACEHOLDER_SECRETS = frozenset(
    {"dev", "secret", "changeme", "change-me", "change me", "your-secret-key", "super-secret"}
)
PREFIX = "AUTH_"


def setting(default: Any, kind: Kind, doc: str, *, default_key: str | None = None) -> Any:
    """Declare one key: its default, its kind and a one-line `doc`; with `default_key`, the
    Flask key whose value is the default (`default` then stands for "unset")."""
    return dataclasses.field(
        default=default,
        repr=not kind.secret,
        metadata={"kind": kind, "doc": doc, "default_key": default_key},
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """Validated settings; build with `AuthSettings.from_config(app.config)`."""

    jwt_algorithm: str = setting(
        "HS256", Choice(SUPPORTED_ALGORITHMS), "signing algorithm; tokens are verified with it only"
    )
    jwt_secret_key: bytes = setting(
        None,
        Secret(),
        "HMAC key and server secret, 32+ random bytes; refused if a placeholder "
        "(outside debug and testing)",
        default_key="SECRET_KEY",
    )
    jwt_secret_key_fallbacks: tuple[bytes, ...] = setting(
        (),
        Secrets(),
        "old secrets that still verify after a change",
        default_key="SECRET_KEY_FALLBACKS",
    )
    jwt_private_key: bytes | None = setting(
        None, Pem(), "PEM private key for EdDSA, ES256 or RS256 (`flask auth keygen`)"
    )
    jwt_public_keys: tuple[tuple[str | None, bytes], ...] = setting(
        (),
        PublicKeys(),
        "PEM public keys published in `/jwks.json` and verifying beside the private key's: the "
        "next key before it signs, old ones until their tokens expire; a line `kid=NAME` before "
        "a key names it, and the private key signs under the name its public key has here (see "
        "[Rotating the signing key](operations.md#rotating-the-signing-key))",
    )
    jwks_max_age: timedelta = setting(
        timedelta(minutes=5),
        Duration(allow_zero=True),
        "`Cache-Control: max-age` of `/jwks.json`: how long HTTP caches may keep it, so the "
        "least wait between publishing a key and signing with it",
    )
    jwt_issuer: str = setting("flask-token-auth", Text(), "`iss` claim written and required")
    jwt_audience: str = setting("flask-token-auth", Text(), "`aud` claim written and required")
    jwt_leeway: timedelta = setting(
        timedelta(0), Duration(allow_zero=True), "clock skew tolerated on `exp`, `iat` and `nbf`"
    )
    access_token_ttl: timedelta = setting(
        timedelta(minutes=15), Duration(), "lifetime of an access token"
    )
    access_token_cache_size: int = setting(
        4096,
        PositiveInt(allow_zero=True),
        "verified access tokens each worker remembers (about 1 KB each), so that a token used "
        "again skips the signature check; expiry is checked on every use (0: none)",
    )
    refresh_token_ttl: timedelta = setting(
        timedelta(days=7), Duration(), "lifetime of a refresh token (sliding: each rotation)"
    )
    session_ttl: timedelta = setting(
        timedelta(days=30), Duration(), "absolute lifetime of a session, whatever the rotations"
    )
    refresh_reuse_grace: timedelta = setting(
        timedelta(seconds=10),
        Duration(allow_zero=True),
        "how long after its rotation a token may come back without counting as reuse (0: never)",
    )
    audit_retention: timedelta = setting(
        timedelta(days=365),
        Duration(),
        "how long audit events are kept; `flask auth prune` deletes older ones",
    )
    url_prefix: str = setting(
        "/auth", Text(path=True), "where the blueprint is mounted; the refresh cookie's Path"
    )
    cookie_secure: bool = setting(
        True, Flag(), "Secure flag on cookies; off only for plain-http development"
    )
    cookie_samesite: str = setting(
        "Strict", Choice(frozenset({"Strict", "Lax", "None"})), "SameSite on cookies"
    )
    cookie_domain: str | None = setting(
        None,
        OptionalText(),
        "Domain of the cookies, for an API and a page on sibling subdomains (`example.com`)",
    )
    cookie_partitioned: bool = setting(
        False,
        Flag(),
        "Partitioned (CHIPS) on cookies, for an API that a page on another site calls; needs "
        "Secure (see [Clients](clients.md))",
    )
    trusted_origins: frozenset[str] = setting(
        frozenset(), Origins(), "origins besides the app's own allowed to call the auth routes"
    )
    allow_registration: bool = setting(
        True, Flag(), "when false, POST /register answers 403 `access_denied`"
    )
    password_min_length: int = setting(8, PositiveInt(), "shortest password accepted")
    password_max_length: int = setting(
        256, PositiveInt(), "longest password accepted (bounds the hashing work asked for)"
    )
    upgrade_password_hashes: bool = setting(
        False,
        Flag(),
        "with a host's user model: rewrite a non-argon2id `password_hash` as argon2id at a "
        "successful login (only if the host's own code can verify argon2id)",
    )
    argon2_profile: str = setting(
        "rfc9106_low_memory",
        Choice(ARGON2_PROFILES),
        "argon2id parameters; `test` only under TESTING or DEBUG",
    )
    session_check_pool_size: int = setting(
        2,
        PositiveInt(),
        "connections each worker process keeps for the session check, besides the engine's "
        "pool (see [Connections](operations.md#connections))",
    )
    pgbouncer: bool = setting(
        False,
        Flag(),
        "PostgreSQL is reached through PgBouncer in transaction pooling: no prepared statements "
        "(give the engine `engine_options(url, pgbouncer=True)`)",
    )
    ratelimit_enabled: bool = setting(True, Flag(), "turn the rate limits below on or off")
    ratelimit_storage_uri: str = setting(
        "memory://",
        Text(),
        "where attempts are counted: `memory://` per process, `redis://host:6379/0` shared "
        "(extra `redis`)",
    )
    ratelimit_login: str = setting("20/minute", RateLimit(), "logins per client IP")
    ratelimit_login_address: str = setting(
        "10/minute", RateLimit(), "logins per email address from one client IP"
    )
    ratelimit_login_account: str = setting(
        "100/hour",
        RateLimit(),
        "logins per email address from all IPs together: the ceiling on distributed guessing",
    )
    ratelimit_register: str = setting("10/hour", RateLimit(), "registrations per client IP")
    ratelimit_refresh: str = setting("120/minute", RateLimit(), "refreshes per client IP")
    ratelimit_password: str = setting("5/minute", RateLimit(), "password changes per user")
    ratelimit_introspection: str = setting(
        "10/minute", RateLimit(), "failed client authentications at `/introspect` per client IP"
    )
    introspection_clients: tuple[tuple[str, bytes], ...] = setting(
        (),
        ClientSecrets(),
        "resource servers that may call `POST /introspect` with HTTP Basic, each "
        "`client_id:secret` (or `client_id:sha256:<hex digest of the secret>`); none: the route "
        "answers 404 (see [Resource servers](resource-servers.md))",
    )

    @property
    def secret_keys(self) -> tuple[bytes, ...]:
        """The current secret, then the fallbacks that still verify."""
        return (self.jwt_secret_key, *self.jwt_secret_key_fallbacks)

    @property
    def rate_limits(self) -> dict[str, str]:
        """Each limit by its short name, e.g. {"login": "20/minute"}."""
        return {
            field.name.removeprefix("ratelimit_"): getattr(self, field.name)
            for field in dataclasses.fields(self)
            if isinstance(field.metadata["kind"], RateLimit)
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AuthSettings:
        """Read and check every AUTH_* key; RuntimeError naming the key and the fix."""
        lenient = bool(config.get("DEBUG") or config.get("TESTING"))
        values = {
            field.name: _checked(field.metadata["kind"], key, config.get(key, field.default))
            for key, field in declared_settings()
        }
        values["jwt_secret_key"], values["jwt_secret_key_fallbacks"] = _secrets(config, lenient)
        settings = cls(**values)
        _check_combinations(settings, lenient=lenient)
        return settings


def declared_settings() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """(key, field) of every setting, in declaration order."""
    for field in dataclasses.fields(AuthSettings):
        yield PREFIX + field.name.upper(), field


def setting_types() -> dict[str, str]:
    """Each AUTH_* key and its type of value, for a host that reads the keys from text: `text`,
    `boolean`, `integer`, `duration` (a timedelta, or seconds), `list` (of strings) or `secrets`
    (a list of secrets, every character significant). A new dict on each call."""
    return {key: field.metadata["kind"].value_type for key, field in declared_settings()}


def setting_defaults() -> dict[str, Any]:
    """Each AUTH_* key's default, for `app.config.setdefault`; not the keys whose default is
    another key's value (AUTH_JWT_SECRET_KEY is SECRET_KEY unless set)."""
    return {
        key: field.default
        for key, field in declared_settings()
        if field.metadata["default_key"] is None
    }


def reference_table() -> str:
    """The configuration reference (docs/configuration.md), one row per key."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, field in declared_settings():
        default_key = field.metadata["default_key"]
        shown = f"`{default_key}`" if default_key else field.metadata["kind"].show(field.default)
        lines.append(f"| `{key}` | {shown} | {field.metadata['doc']} |")
    return "\n".join(lines) + "\n"


def _config_error(key: str, problem: str, fix: str) -> RuntimeError:
    return RuntimeError(f"{key}: {problem}; {fix}.")


def _checked(kind: Kind, key: str, value: Any) -> Any:
    try:
        return kind.check(value)
    except SettingError as error:
        raise _config_error(key, error.problem, error.fix) from None


def _secrets(config: Mapping[str, Any], lenient: bool) -> tuple[bytes, tuple[bytes, ...]]:
    """The secret and its fallbacks: ours when AUTH_JWT_SECRET_KEY is set, else Flask's."""
    own = bool(config.get("AUTH_JWT_SECRET_KEY"))
    key_name = "AUTH_JWT_SECRET_KEY" if own else "SECRET_KEY"
    fallbacks_name = "AUTH_JWT_SECRET_KEY_FALLBACKS" if own else "SECRET_KEY_FALLBACKS"
    kinds = {field.name: field.metadata["kind"] for _, field in declared_settings()}
    secret = _checked(kinds["jwt_secret_key"], key_name, config.get(key_name))
    fallbacks = _checked(
        kinds["jwt_secret_key_fallbacks"], fallbacks_name, config.get(fallbacks_name)
    )
    if secret is None:
        raise _config_error(
            "AUTH_JWT_SECRET_KEY",
            "no secret key is set (nor SECRET_KEY)",
            'set one of at least 32 random bytes: python -c "import secrets; '
            'print(secrets.token_hex(32))"',
        )
    if not lenient:
        if secret.decode(errors="replace").strip().lower() in PLACEHOLDER_SECRETS:
            raise _config_error(key_name, "is a well-known placeholder", "generate a random one")
        if len(secret) < MIN_SECRET_BYTES:
            raise _config_error(
                key_name,
                f"is {len(secret)} bytes, shorter than {MIN_SECRET_BYTES}",
                "generate one with secrets.token_hex(32)",
            )
    return secret, fallbacks


def _check_combinations(settings: AuthSettings, *, lenient: bool) -> None:
    """The rules that involve more than one key."""
    algorithm = settings.jwt_algorithm
    if algorithm in ASYMMETRIC_ALGORITHMS and settings.jwt_private_key is None:
        raise _config_error(
            "AUTH_JWT_PRIVATE_KEY",
            f"{algorithm} needs a private key",
            f"set it to a PEM key (`flask auth keygen --alg {algorithm}` prints one)",
        )
    if settings.cookie_samesite == "None" and not settings.cookie_secure:
        raise _config_error(
            "AUTH_COOKIE_SAMESITE",
            "None needs AUTH_COOKIE_SECURE (browsers drop such cookies)",
            "turn AUTH_COOKIE_SECURE on or use Lax",
        )
    if settings.cookie_partitioned and not settings.cookie_secure:
        raise _config_error(
            "AUTH_COOKIE_PARTITIONED",
            "needs AUTH_COOKIE_SECURE (browsers drop a Partitioned cookie that is not Secure)",
            "turn AUTH_COOKIE_SECURE on, or AUTH_COOKIE_PARTITIONED off for plain http",
        )
    if settings.argon2_profile == "test" and not lenient:
        raise _config_error(
            "AUTH_ARGON2_PROFILE",
            "the test profile is far too cheap for real passwords",
            "use rfc9106_low_memory outside TESTING",
        )
    if settings.password_max_length < settings.password_min_length:
        raise _config_error(
            "AUTH_PASSWORD_MAX_LENGTH",
            "is shorter than AUTH_PASSWORD_MIN_LENGTH",
            "raise it or lower the minimum",
        )
