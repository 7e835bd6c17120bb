"""Configuration (docs/configuration.md): defaults, fail-fast validation, environment, URLs."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

import config as service_config
from config import auth_settings as from_environment
from flask_token_auth import AuthManager
from flask_token_auth.engines import register_url_schemes
from flask_token_auth.keys import generate_key_pair_pem
from flask_token_auth.settings import AuthSettings
from flask_token_auth.settings import reference_table
from flask_token_auth.settings import setting_defaults
from flask_token_auth.settings import setting_types
from tests.conftest import make_app
from tests.conftest import SECRET

STRONG_SECRET = "k" * 32
TTL_KEYS = ["AUTH_ACCESS_TOKEN_TTL", "AUTH_REFRESH_TOKEN_TTL", "AUTH_SESSION_TTL"]
#: Production-like: neither TESTING nor DEBUG, a real argon2 profile.
PRODUCTION = {"TESTING": False, "DEBUG": False, "AUTH_ARGON2_PROFILE": "rfc9106_low_memory"}


def settings(**config: Any) -> AuthSettings:
    return AuthSettings.from_config({"SECRET_KEY": STRONG_SECRET, **config})


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'config.db'}"


# Defaults and accepted values


def test_defaults() -> None:
    result = settings()

    assert result.jwt_algorithm == "HS256"
    assert result.jwt_secret_key == STRONG_SECRET.encode()
    assert result.access_token_ttl == timedelta(minutes=15)
    assert result.refresh_token_ttl == timedelta(days=7)
    assert result.session_ttl == timedelta(days=30)
    assert result.refresh_reuse_grace == timedelta(seconds=10)
    assert result.url_prefix == "/auth"
    assert result.cookie_secure is True
    assert result.cookie_samesite == "Strict"
    assert result.allow_registration is True


def test_init_app_writes_the_defaults_into_app_config() -> None:
    """After init_app, `app.config` holds the value in effect of each key (`setdefault`, as
    Flask-SQLAlchemy does): the host's own values as it set them, the defaults elsewhere."""
    app = Flask("host")
    app.config.update(SECRET_KEY=STRONG_SECRET, SQLALCHEMY_DATABASE_URI="sqlite://")
    app.config.update(AUTH_URL_PREFIX="/api/auth", AUTH_ACCESS_TOKEN_TTL=60)
    db = SQLAlchemy()
    db.init_app(app)

    AuthManager(db=db).init_app(app)

    assert app.config["AUTH_ACCESS_TOKEN_TTL"] == 60
    assert app.config["AUTH_URL_PREFIX"] == "/api/auth"
    assert app.config["AUTH_REFRESH_TOKEN_TTL"] == timedelta(days=7)
    assert app.config["AUTH_COOKIE_SECURE"] is True
    hosts = {"AUTH_URL_PREFIX": "/api/auth", "AUTH_ACCESS_TOKEN_TTL": 60}
    assert {key: app.config[key] for key in setting_defaults()} == setting_defaults() | hosts
    # Their default is Flask's SECRET_KEY and SECRET_KEY_FALLBACKS: a copy would be taken for
    # the extension's own secret.
    assert not {"AUTH_JWT_SECRET_KEY", "AUTH_JWT_SECRET_KEY_FALLBACKS"} & set(app.config)
    assert len(setting_defaults()) == len(setting_types()) - 2


def test_jwt_secret_key_takes_precedence_over_secret_key() -> None:
    result = settings(AUTH_JWT_SECRET_KEY="j" * 40)

    assert result.jwt_secret_key == b"j" * 40


@pytest.mark.parametrize("key", [*TTL_KEYS, "AUTH_REFRESH_REUSE_GRACE", "AUTH_JWT_LEEWAY"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90, timedelta(seconds=90)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_durations_accept_seconds_and_timedelta(
    key: str, value: int | timedelta, expected: timedelta
) -> None:
    result = settings(**{key: value})

    attribute = {
        "AUTH_ACCESS_TOKEN_TTL": result.access_token_ttl,
        "AUTH_REFRESH_TOKEN_TTL": result.refresh_token_ttl,
        "AUTH_SESSION_TTL": result.session_ttl,
        "AUTH_REFRESH_REUSE_GRACE": result.refresh_reuse_grace,
        "AUTH_JWT_LEEWAY": result.jwt_leeway,
    }[key]
    assert attribute == expected


@pytest.mark.parametrize("value", [Path("x"), True, "900"])
def test_duration_of_wrong_type_is_refused(value: object) -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_ACCESS_TOKEN_TTL: "):
        settings(AUTH_ACCESS_TOKEN_TTL=value)


@pytest.mark.parametrize("samesite", ["Strict", "Lax", "None"])
def test_samesite_values_accepted(samesite: str) -> None:
    assert settings(AUTH_COOKIE_SAMESITE=samesite).cookie_samesite == samesite


# Fail fast, naming the key


def test_missing_secret_is_refused() -> None:
    with pytest.raises(RuntimeError, match="AUTH_JWT_SECRET_KEY") as info:
        AuthSettings.from_config({"TESTING": True})

    assert "SECRET_KEY" in str(info.value)


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_secret_is_refused(empty: str | None) -> None:
    with pytest.raises(RuntimeError, match="AUTH_JWT_SECRET_KEY"):
        AuthSettings.from_config({"TESTING": True, "SECRET_KEY": empty})


@pytest.mark.parametrize("key", ["SECRET_KEY", "AUTH_JWT_SECRET_KEY"])
def test_short_secret_is_refused_outside_testing(key: str) -> None:
    with pytest.raises(RuntimeError, match=rf"^{key}: is 31 bytes, shorter than 32"):
        AuthSettings.from_config({**PRODUCTION, key: "s" * 31})


def test_secret_of_32_bytes_is_accepted_outside_testing() -> None:
    assert (
        AuthSettings.from_config({**PRODUCTION, "SECRET_KEY": "s" * 32}).jwt_secret_key == b"s" * 32
    )


@pytest.mark.parametrize("lenient", [{"TESTING": True}, {"DEBUG": True}])
def test_short_secret_is_allowed_in_testing_and_debug(lenient: dict[str, bool]) -> None:
    result = AuthSettings.from_config({**PRODUCTION, **lenient, "SECRET_KEY": "short"})

    assert result.jwt_secret_key == b"short"


@pytest.mark.parametrize("placeholder", ["changeme", "ChangeMe", "secret", "dev"])
def test_placeholder_secret_is_refused_outside_testing(placeholder: str) -> None:
    with pytest.raises(RuntimeError, match=r"^SECRET_KEY: is a well-known placeholder"):
        AuthSettings.from_config({**PRODUCTION, "SECRET_KEY": placeholder})


def test_placeholder_jwt_secret_is_refused_naming_its_key() -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_JWT_SECRET_KEY: is a well-known placeholder"):
        AuthSettings.from_config(
            {**PRODUCTION, "SECRET_KEY": STRONG_SECRET, "AUTH_JWT_SECRET_KEY": "changeme"}
        )


def test_placeholder_secret_is_allowed_in_testing() -> None:
    result = AuthSettings.from_config({"TESTING": True, "SECRET_KEY": "changeme"})

    assert result.jwt_secret_key == b"changeme"


@pytest.mark.parametrize("algorithm", ["none", "RS512", "hs256", "HS1024", ""])
def test_unknown_algorithm_is_refused(algorithm: str) -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_JWT_ALGORITHM: "):
        settings(AUTH_JWT_ALGORITHM=algorithm)


@pytest.mark.parametrize("key", TTL_KEYS)
@pytest.mark.parametrize("value", [0, -1, timedelta(0), timedelta(seconds=-30)])
def test_non_positive_ttl_is_refused(key: str, value: int | timedelta) -> None:
    with pytest.raises(RuntimeError, match=rf"^{key}: must be positive"):
        settings(**{key: value})


@pytest.mark.parametrize("samesite", ["strict-ish", "", None, "Sometimes"])
def test_bad_samesite_is_refused(samesite: str | None) -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_COOKIE_SAMESITE: "):
        settings(AUTH_COOKIE_SAMESITE=samesite)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_asymmetric_algorithm_without_private_key_is_refused(algorithm: str) -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_JWT_PRIVATE_KEY: "):
        settings(AUTH_JWT_ALGORITHM=algorithm)


def test_test_argon2_profile_is_refused_outside_testing() -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_ARGON2_PROFILE: "):
        AuthSettings.from_config(
            {**PRODUCTION, "SECRET_KEY": STRONG_SECRET, "AUTH_ARGON2_PROFILE": "test"}
        )


def test_test_argon2_profile_is_allowed_in_testing() -> None:
    result = AuthSettings.from_config(
        {"TESTING": True, "SECRET_KEY": STRONG_SECRET, "AUTH_ARGON2_PROFILE": "test"}
    )

    assert result.argon2_profile == "test"


# create_app fails fast too


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"SECRET_KEY": None}, "AUTH_JWT_SECRET_KEY"),
        ({**PRODUCTION, "SECRET_KEY": "s" * 31}, "SECRET_KEY"),
        ({**PRODUCTION, "SECRET_KEY": "changeme"}, "SECRET_KEY"),
        ({"AUTH_JWT_ALGORITHM": "none"}, "AUTH_JWT_ALGORITHM"),
        ({"AUTH_ACCESS_TOKEN_TTL": 0}, "AUTH_ACCESS_TOKEN_TTL"),
        ({"AUTH_REFRESH_TOKEN_TTL": -1}, "AUTH_REFRESH_TOKEN_TTL"),
        ({"AUTH_SESSION_TTL": timedelta(0)}, "AUTH_SESSION_TTL"),
        ({"AUTH_COOKIE_SAMESITE": "strictest"}, "AUTH_COOKIE_SAMESITE"),
        ({"AUTH_JWT_ALGORITHM": "ES256"}, "AUTH_JWT_PRIVATE_KEY"),
        ({"TESTING": False, "SECRET_KEY": SECRET}, "AUTH_ARGON2_PROFILE"),
    ],
)
def test_create_app_fails_fast_naming_the_key(
    sqlite_url: str, overrides: dict[str, Any], key: str
) -> None:
    with pytest.raises(RuntimeError, match=rf"^{key}: "):
        make_app(sqlite_url, **overrides)


def test_create_app_accepts_a_production_configuration(sqlite_url: str) -> None:
    private_pem, _ = generate_key_pair_pem("EdDSA")

    application = make_app(
        sqlite_url,
        **PRODUCTION,
        SECRET_KEY=STRONG_SECRET,
        AUTH_JWT_ALGORITHM="EdDSA",
        AUTH_JWT_PRIVATE_KEY=private_pem,
    )

    assert application.extensions["flask_token_auth"].settings.jwt_algorithm == "EdDSA"


# config.py: the environment


def test_from_environment_parses_each_kind() -> None:
    environ = {
        "AUTH_ACCESS_TOKEN_TTL": "60",
        "AUTH_SESSION_TTL": "86400",
        "AUTH_JWT_LEEWAY": "0",
        "AUTH_COOKIE_SECURE": "false",
        "AUTH_ALLOW_REGISTRATION": "true",
        "AUTH_TRUSTED_ORIGINS": "https://a.example, https://b.example,",
        "AUTH_PASSWORD_MIN_LENGTH": "12",
        "AUTH_JWT_ALGORITHM": "HS512",
        "AUTH_JWT_ISSUER": "https://issuer.example",
        "AUTH_JWT_SECRET_KEY": "e" * 40,
        "PATH": "/usr/bin",
        "AUTH_NOT_A_SETTING": "ignored",
    }

    config = from_environment(environ)

    assert {key: value for key, value in config.items() if key != "AUTH_TRUSTED_ORIGINS"} == {
        "AUTH_ACCESS_TOKEN_TTL": timedelta(seconds=60),
        "AUTH_SESSION_TTL": timedelta(days=1),
        "AUTH_JWT_LEEWAY": timedelta(0),
        "AUTH_COOKIE_SECURE": False,
        "AUTH_ALLOW_REGISTRATION": True,
        "AUTH_PASSWORD_MIN_LENGTH": 12,
        "AUTH_JWT_ALGORITHM": "HS512",
        "AUTH_JWT_ISSUER": "https://issuer.example",
        "AUTH_JWT_SECRET_KEY": "e" * 40,
    }
    assert list(config["AUTH_TRUSTED_ORIGINS"]) == ["https://a.example", "https://b.example"]
    # What the environment gives, the extension accepts.
    result = AuthSettings.from_config({**PRODUCTION, **config})
    assert result.access_token_ttl == timedelta(seconds=60)
    assert result.jwt_algorithm == "HS512"
    assert result.cookie_secure is False
    assert result.trusted_origins == frozenset({"https://a.example", "https://b.example"})
    assert result.password_min_length == 12
    assert result.jwt_secret_key == b"e" * 40


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("false", False)])
def test_from_environment_booleans(raw: str, expected: bool) -> None:
    assert from_environment({"AUTH_COOKIE_SECURE": raw}) == {"AUTH_COOKIE_SECURE": expected}


def test_from_environment_reads_nothing_from_an_empty_environment() -> None:
    assert from_environment({}) == {}


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("AUTH_ACCESS_TOKEN_TTL", "15m"),
        ("AUTH_REFRESH_TOKEN_TTL", ""),
        ("AUTH_COOKIE_SECURE", "yes"),
        ("AUTH_ALLOW_REGISTRATION", "1"),
        ("AUTH_PASSWORD_MIN_LENGTH", "eight"),
        ("AUTH_SESSION_TTL", "nan"),
        ("AUTH_SESSION_TTL", "1e30"),
    ],
)
def test_from_environment_bad_value_names_the_key(key: str, raw: str) -> None:
    with pytest.raises(RuntimeError, match=rf"^{key}: cannot read '{raw}' from the environment"):
        from_environment({key: raw})


def test_from_environment_says_what_to_write() -> None:
    with pytest.raises(RuntimeError) as info:
        from_environment({"AUTH_COOKIE_SECURE": "yes"})

    assert str(info.value) == (
        "AUTH_COOKIE_SECURE: cannot read 'yes' from the environment (expected true or false); "
        "write true or false."
    )


def test_every_key_is_read_by_the_type_the_extension_declares() -> None:
    """config.py reads every type of value `setting_types()` names, so every AUTH_* key."""
    samples: dict[str, tuple[str, Any]] = {
        "text": ("x", "x"),
        "boolean": ("false", False),
        "integer": ("7", 7),
        "duration": ("90", timedelta(seconds=90)),
        "list": (" a, b,", ["a", "b"]),
        "secrets": (" a,b,", [" a", "b"]),  # a secret's spaces are part of it
    }
    types = setting_types()
    assert set(types.values()) == set(samples)

    read = from_environment({key: samples[kind][0] for key, kind in types.items()})

    assert read == {key: samples[kind][1] for key, kind in types.items()}
    types["AUTH_URL_PREFIX"] = "integer"
    assert setting_types()["AUTH_URL_PREFIX"] == "text"  # a copy: the declarations stay


@pytest.mark.parametrize("key", TTL_KEYS)
def test_non_positive_duration_from_environment_is_refused(key: str) -> None:
    config = from_environment({key: "0"})

    with pytest.raises(RuntimeError, match=rf"^{key}: must be positive"):
        AuthSettings.from_config({**PRODUCTION, "SECRET_KEY": STRONG_SECRET, **config})


def test_from_environment_reads_rate_limit_keys() -> None:
    # docs/configuration.md lists AUTH_RATELIMIT_ENABLED and AUTH_RATELIMIT_STORAGE_URI among
    # the keys config.py reads from the environment.
    config = from_environment(
        {"AUTH_RATELIMIT_ENABLED": "false", "AUTH_RATELIMIT_STORAGE_URI": "redis://cache:6379"}
    )

    assert config == {
        "AUTH_RATELIMIT_ENABLED": False,
        "AUTH_RATELIMIT_STORAGE_URI": "redis://cache:6379",
    }


# DATABASE_URL


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u:p@db:5432/auth", "psycopg"),
        ("postgresql://u@db/auth", "psycopg"),
        ("mysql://root@db:3306/auth", "pymysql"),
        ("mariadb://root:pw@db/auth", "pymysql"),
        ("mysql://root@db/auth?connect_timeout=5", "pymysql"),
        ("sqlite:///instance/auth.db", "pysqlite"),
        ("postgresql+psycopg://u@db/auth", "psycopg"),
    ],
)
def test_urls_operators_write_map_to_the_installed_drivers(url: str, driver: str) -> None:
    register_url_schemes()

    # The driver is installed: the engine can be built (without connecting).
    engine = sa.create_engine(url)

    assert engine.dialect.driver == driver
    engine.dispose()


#: In a new interpreter: this one has mapped the URL schemes (conftest.py, config.py).
REGISTRY_PROBE = """
import sqlalchemy as sa
from sqlalchemy.dialects import registry

sa.create_engine("sqlite://").dispose()  # the host's engine loads its dialect first
before = dict(registry.impls)

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_token_auth import AuthManager

app = Flask("host")
app.config.update(SECRET_KEY="k" * 32, SQLALCHEMY_DATABASE_URI="sqlite://")
db = SQLAlchemy()
api_auth = AuthManager(db=db)
db.init_app(app)
api_auth.init_app(app)
after = dict(registry.impls)
print(sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name)))
"""


def test_the_extension_changes_no_dialect_of_the_process() -> None:
    """Importing and constructing the extension and init_app leave SQLAlchemy's dialect
    registry as it was (docs/host-app.md, What the extension touches): mapping `postgres://`
    is the host's choice, `register_url_schemes()`."""
    probe = subprocess.run(
        [sys.executable, "-c", REGISTRY_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )

    assert (probe.returncode, probe.stdout, probe.stderr) == (0, "[]\n", "")


def test_the_reference_service_reads_its_environment_when_asked() -> None:
    environ = {"DATABASE_URL": "postgres://u@db/auth", "SECRET_KEY": "k" * 32}

    read = service_config.from_environment(environ | {"AUTH_SESSION_TTL": "60"})

    assert read["DATABASE_URL"] == "postgres://u@db/auth"
    assert read["SECRET_KEY"] == "k" * 32
    assert read["AUTH_SESSION_TTL"] == timedelta(seconds=60)
    assert "AUTH_SESSION_TTL" not in service_config.from_environment(environ)


def test_the_configuration_docs_list_every_setting_as_declared() -> None:
    """docs/configuration.md holds the table `reference_table()` generates from the declarations."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()

    assert reference_table() in page, "paste reference_table() into docs/configuration.md:\n" + (
        reference_table()
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("AUTH_COOKIE_SECURE", "false"),
        ("AUTH_ALLOW_REGISTRATION", "false"),
        ("AUTH_RATELIMIT_ENABLED", 1),
        ("AUTH_TRUSTED_ORIGINS", "https://app.example"),
        ("AUTH_TRUSTED_ORIGINS", [42]),
        ("AUTH_TRUSTED_ORIGINS", None),
        ("AUTH_TRUSTED_ORIGINS", 5),
        ("AUTH_JWT_PUBLIC_KEYS", 5),
        ("AUTH_COOKIE_DOMAIN", ""),
        ("AUTH_COOKIE_DOMAIN", 5),
        ("SECRET_KEY_FALLBACKS", 5),
        ("SECRET_KEY_FALLBACKS", "one-secret"),
    ],
)
def test_wrongly_typed_values_are_refused_naming_the_key(key: str, value: Any) -> None:
    """A string "false" must not turn a boolean on, nor a string become a set of letters."""
    with pytest.raises(RuntimeError, match=rf"^{key}: must be"):
        AuthSettings.from_config({"SECRET_KEY": "s" * 32, key: value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "10"])
def test_a_duration_must_be_a_finite_number_or_timedelta(value: Any) -> None:
    with pytest.raises(RuntimeError, match=r"^AUTH_JWT_LEEWAY: .* is not a duration"):
        AuthSettings.from_config({"SECRET_KEY": "s" * 32, "AUTH_JWT_LEEWAY": value})


def test_samesite_none_needs_secure_cookies() -> None:
    config = {"SECRET_KEY": "s" * 32, "AUTH_COOKIE_SAMESITE": "None", "AUTH_COOKIE_SECURE": False}
    with pytest.raises(RuntimeError, match=r"^AUTH_COOKIE_SAMESITE: None needs AUTH_COOKIE_SECURE"):
        AuthSettings.from_config(config)
