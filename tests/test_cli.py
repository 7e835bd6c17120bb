"""`flask auth ...` (docs/operations.md#command-line): exit codes, output, database state."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from datetime import UTC
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from app import db
from flask_token_auth import maintenance
from flask_token_auth.models import AuthSession
from flask_token_auth.models import User
from flask_token_auth.state import auth_state
from tests.conftest import make_app
from tests.conftest import PASSWORD
from tests.helpers import bearer
from tests.helpers import execute
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import refresh_native
from tests.helpers import register
from tests.helpers import rows
from tests.helpers import scalar
from tests.helpers import token_hash

EMAIL = "ada@example.com"


def _naive_utc(delta: timedelta) -> datetime:
    """`now + delta` as the naive UTC datetime the columns store, for raw SQL."""
    return (datetime.now(UTC) + delta).replace(tzinfo=None)


def _create_user(runner: FlaskCliRunner, *args: str, password: str = PASSWORD) -> str:
    result = runner.invoke(args=["auth", "create-user", *args], input=password + "\n")
    assert result.exit_code == 0, result.output
    return result.output


def _sessions_of(app: Flask, email: str) -> list[AuthSession]:
    """The user's sessions through the ORM: datetimes as the app reads them."""
    with app.app_context():
        sessions = list(
            db.session.scalars(select(AuthSession).join(User).where(User.email == email))
        )
        db.session.expunge_all()
        return sessions


def _session_of_token(app: Flask, refresh_token: str) -> str:
    session_id: str = scalar(
        app,
        "SELECT session_id FROM refresh_tokens WHERE token_hash = :hash",
        hash=token_hash(refresh_token),
    )
    return session_id


def _refresh(client: FlaskClient, refresh_token: str) -> tuple[int, dict[str, object]]:
    response = refresh_native(client, refresh_token)
    body = response.json
    assert isinstance(body, dict)
    return response.status_code, body


# create-user


def test_create_user_stores_normalised_email_and_argon2id_hash(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    output = _create_user(runner, "  Ada@Example.COM ")

    [user] = rows(app, "SELECT id, email, password_hash, role, is_active FROM users")
    assert output == f"created user {user.id} ada@example.com with role user\n"
    assert user.email == "ada@example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert user.role == "user"
    assert bool(user.is_active) is True
    assert PASSWORD not in output
    # The hash is of the password read from stdin: the user can log in with it.
    assert login(client, "ada@example.com", PASSWORD).status_code == 200
    events = rows(app, "SELECT type, user_id FROM auth_events WHERE type = 'register'")
    assert [(event.type, event.user_id) for event in events] == [("register", user.id)]


def test_create_user_with_role(app: Flask, runner: FlaskCliRunner, client: FlaskClient) -> None:
    output = _create_user(runner, EMAIL, "--role", "admin")

    user_id = scalar(app, "SELECT id FROM users WHERE email = :email", email=EMAIL)
    assert output == f"created user {user_id} {EMAIL} with role admin\n"
    assert scalar(app, "SELECT role FROM users WHERE id = :id", id=user_id) == "admin"
    access_token = login(client).json["access_token"]
    response = client.get("/api/admin", headers=bearer(access_token))
    assert response.status_code == 200
    assert response.json == {"message": f"hello, admin {EMAIL}"}


def test_create_user_duplicate_email_fails_without_second_row(
    app: Flask, runner: FlaskCliRunner
) -> None:
    _create_user(runner, EMAIL)
    first_hash = scalar(app, "SELECT password_hash FROM users")

    result = runner.invoke(
        args=["auth", "create-user", " ADA@example.com"], input="another password\n"
    )

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: an account with this email already exists\n"
    assert scalar(app, "SELECT COUNT(*) FROM users") == 1
    assert scalar(app, "SELECT password_hash FROM users") == first_hash


def test_create_user_short_password_fails_without_row(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["auth", "create-user", EMAIL], input="short\n")

    assert result.exit_code == 1
    assert result.stderr == "Error: password: must be at least 8 characters\n"
    assert scalar(app, "SELECT COUNT(*) FROM users") == 0
    assert scalar(app, "SELECT COUNT(*) FROM auth_events") == 0


def test_create_user_invalid_email_fails_without_row(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["auth", "create-user", "not-an-email"], input=PASSWORD + "\n")

    assert result.exit_code == 1
    assert result.stderr == "Error: email: is not a valid email address\n"
    assert scalar(app, "SELECT COUNT(*) FROM users") == 0


def test_create_user_refuses_password_as_argument(app: Flask, runner: FlaskCliRunner) -> None:
    # Threat: a password in argv ends up in shell history and `ps` output.
    result = runner.invoke(args=["auth", "create-user", EMAIL, PASSWORD], input="")

    assert result.exit_code == 2
    assert "Got unexpected extra argument" in result.stderr
    assert scalar(app, "SELECT COUNT(*) FROM users") == 0


# revoke


def test_revoke_revokes_every_session(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    register(client)
    first = login(client, native=True).json
    second = login(client, native=True).json
    assert isinstance(first, dict)
    assert isinstance(second, dict)

    result = runner.invoke(args=["auth", "revoke", "Ada@Example.com"])

    assert result.exit_code == 0, result.output
    assert result.output == f"revoked 2 sessions of {EMAIL}\n"
    sessions = rows(app, "SELECT revoked_at FROM auth_sessions")
    assert len(sessions) == 2
    assert all(session.revoked_at is not None for session in sessions)
    response = client.get("/auth/me", headers=bearer(first["access_token"]))
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    status, body = _refresh(client, second["refresh_token"])
    assert status == 401
    assert body["error"] == "invalid_grant"


def test_revoke_leaves_other_users_sessions(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    register(client)
    register(client, "bob@example.com")
    # In the body: a login answered in cookies would revoke the session of the cookie it replaces.
    login(client, native=True)
    bob = login(client, "bob@example.com", native=True).json
    assert isinstance(bob, dict)

    result = runner.invoke(args=["auth", "revoke", EMAIL])

    assert result.exit_code == 0, result.output
    assert result.output == f"revoked 1 sessions of {EMAIL}\n"
    live = rows(
        app,
        "SELECT u.email FROM auth_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.revoked_at IS NULL",
    )
    assert [row.email for row in live] == ["bob@example.com"]
    assert client.get("/auth/me", headers=bearer(bob["access_token"])).status_code == 200


def test_revoke_unknown_email_fails(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["auth", "revoke", "nobody@example.com"])

    assert result.exit_code == 1
    assert result.stderr == "Error: no user with email nobody@example.com\n"


# sessions


def test_sessions_lists_live_sessions_and_count(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    register(client)
    register(client, "bob@example.com")
    login(client, "bob@example.com", native=True)
    ids = []
    for agent in ("firefox", "curl", "revoked", "expired"):
        response = client.post(
            "/auth/login",
            json={"email": EMAIL, "password": PASSWORD},
            headers={"User-Agent": agent, **NATIVE},
        )
        assert response.status_code == 200
        ids.append(
            scalar(
                app,
                "SELECT s.id FROM auth_sessions s JOIN users u ON u.id = s.user_id"
                " WHERE u.email = :email AND s.user_agent = :agent",
                email=EMAIL,
                agent=agent,
            )
        )
    execute(
        app,
        "UPDATE auth_sessions SET revoked_at = :now WHERE id = :id",
        now=_naive_utc(timedelta(0)),
        id=ids[2],
    )
    execute(
        app,
        "UPDATE auth_sessions SET expires_at = :past WHERE id = :id",
        past=_naive_utc(timedelta(minutes=-1)),
        id=ids[3],
    )

    result = runner.invoke(args=["auth", "sessions", " ADA@example.com"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "2 live sessions"
    live = {session.id: session for session in _sessions_of(app, EMAIL)}
    expected = {
        f"{session.id}  created {session.created_at:%Y-%m-%d %H:%M}  "
        f"last used {session.last_used_at:%Y-%m-%d %H:%M}  "
        f"expires {session.expires_at:%Y-%m-%d %H:%M}  "
        f"ip 127.0.0.1  {session.user_agent}"
        for session in (live[ids[0]], live[ids[1]])
    }
    assert set(lines[:-1]) == expected
    assert len(lines) == 3


def test_sessions_of_user_without_sessions(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    register(client)

    result = runner.invoke(args=["auth", "sessions", EMAIL])

    assert result.exit_code == 0, result.output
    assert result.output == "0 live sessions\n"


def test_sessions_unknown_email_fails(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["auth", "sessions", "nobody@example.com"])

    assert result.exit_code == 1
    assert result.stderr == "Error: no user with email nobody@example.com\n"


# deactivate


def test_deactivate_blocks_login_and_revokes_sessions(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    register(client)
    issued = login(client, native=True).json
    assert isinstance(issued, dict)
    assert client.get("/auth/me", headers=bearer(issued["access_token"])).status_code == 200

    result = runner.invoke(args=["auth", "deactivate", " Ada@Example.com"])

    assert result.exit_code == 0, result.output
    assert result.output == f"deactivated {EMAIL}; revoked 1 sessions\n"
    [user] = rows(app, "SELECT is_active FROM users")
    assert bool(user.is_active) is False
    sessions = rows(app, "SELECT revoked_at FROM auth_sessions")
    assert len(sessions) == 1
    assert sessions[0].revoked_at is not None

    response = client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 401
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "invalid email or password",
    }
    response = client.get("/auth/me", headers=bearer(issued["access_token"]))
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    status, body = _refresh(client, issued["refresh_token"])
    assert status == 401
    assert body["error"] == "invalid_grant"
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions") == 1


def test_deactivate_unknown_email_fails(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["auth", "deactivate", "nobody@example.com"])

    assert result.exit_code == 1
    assert result.stderr == "Error: no user with email nobody@example.com\n"


def test_activate_lets_a_deactivated_user_log_in_again(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    register(client)
    assert runner.invoke(args=["auth", "deactivate", EMAIL]).exit_code == 0

    result = runner.invoke(args=["auth", "activate", EMAIL])

    assert result.exit_code == 0, result.output
    assert result.output == f"activated {EMAIL}\n"
    assert login(client).status_code == 200
    assert scalar(app, "SELECT type FROM auth_events ORDER BY id DESC LIMIT 1") == "login_succeeded"
    types = [row.type for row in rows(app, "SELECT type FROM auth_events ORDER BY id")]
    assert "user_activated" in types


def test_set_role_applies_at_the_next_request(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    register(client)
    access_token = login(client, native=True).json["access_token"]
    assert client.get("/api/admin", headers=bearer(access_token)).status_code == 403

    result = runner.invoke(args=["auth", "set-role", EMAIL, "admin"])

    assert result.exit_code == 0, result.output
    assert result.output == f"{EMAIL} now has the role admin\n"
    assert client.get("/api/admin", headers=bearer(access_token)).status_code == 200
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NULL") == 1


@pytest.mark.parametrize("role", ["", "two words", "x" * 100, "Admin", "1st", "r\u00f4le"])
def test_roles_are_short_identifiers(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, role: str
) -> None:
    created = runner.invoke(args=["auth", "create-user", EMAIL, "--role", role], input=PASSWORD)
    assert created.exit_code == 1
    assert created.stderr.startswith("Error: role: must be 1 to 32 characters")
    assert scalar(app, "SELECT COUNT(*) FROM users") == 0

    register(client)
    changed = runner.invoke(args=["auth", "set-role", EMAIL, role])
    assert changed.exit_code == 1
    assert changed.stderr.startswith("Error: role: must be 1 to 32 characters")
    assert scalar(app, "SELECT role FROM users") == "user"


def test_activate_and_set_role_of_an_unknown_email_fail(runner: FlaskCliRunner) -> None:
    for args in (["activate", "nobody@example.com"], ["set-role", "nobody@example.com", "x"]):
        result = runner.invoke(args=["auth", *args])
        assert result.exit_code == 1
        assert result.stderr == "Error: no user with email nobody@example.com\n"


# prune


def test_prune_deletes_expired_tokens_and_ended_sessions(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    register(client)
    logins = [login(client, native=True).json for _ in range(4)]
    tokens = [issued["refresh_token"] for issued in logins]
    live, expired, revoked, rotated = (_session_of_token(app, token) for token in tokens)
    # `rotated` keeps its session but holds a spent token that has expired.
    status, body = _refresh(client, tokens[3])
    assert status == 200
    spent_id = scalar(
        app,
        "SELECT id FROM refresh_tokens WHERE session_id = :sid AND used_at IS NOT NULL",
        sid=rotated,
    )
    past = _naive_utc(timedelta(minutes=-1))
    execute(
        app, "UPDATE refresh_tokens SET expires_at = :past WHERE id = :id", past=past, id=spent_id
    )
    execute(
        app, "UPDATE auth_sessions SET expires_at = :past WHERE id = :id", past=past, id=expired
    )
    execute(
        app, "UPDATE auth_sessions SET revoked_at = :past WHERE id = :id", past=past, id=revoked
    )
    assert scalar(app, "SELECT COUNT(*) FROM refresh_tokens") == 5

    result = runner.invoke(args=["auth", "prune"])

    assert result.exit_code == 0, result.output
    assert result.output == "deleted 3 refresh tokens, 2 sessions and 0 audit events\n"
    remaining_sessions = {row.id for row in rows(app, "SELECT id FROM auth_sessions")}
    assert remaining_sessions == {live, rotated}
    remaining_tokens = rows(app, "SELECT session_id, used_at FROM refresh_tokens")
    assert sorted(row.session_id for row in remaining_tokens) == sorted([live, rotated])
    assert all(row.used_at is None for row in remaining_tokens)
    assert scalar(app, "SELECT COUNT(*) FROM users") == 1
    # The live session still works, and the rotated one through its new token.
    status, _ = _refresh(client, tokens[0])
    assert status == 200
    status, _ = _refresh(client, str(body["refresh_token"]))
    assert status == 200

    again = runner.invoke(args=["auth", "prune"])
    assert again.exit_code == 0, again.output
    assert again.output == "deleted 0 refresh tokens, 0 sessions and 0 audit events\n"


def test_prune_commits_each_batch_and_rests_after_it(app: Flask, client: FlaskClient) -> None:
    """Batches of 2: five expired tokens take three transactions, each committed before the
    prune rests (another connection sees it gone), twice as long as the batch took."""
    register(client)
    for _ in range(5):
        login(client, native=True)
    past = _naive_utc(timedelta(minutes=-1))
    execute(app, "UPDATE refresh_tokens SET expires_at = :past", past=past)
    rests: list[tuple[float, int]] = []

    def rest(seconds: float) -> None:
        rests.append((seconds, scalar(app, "SELECT COUNT(*) FROM refresh_tokens")))

    with app.app_context():
        counts = maintenance.prune(auth_state(), now=datetime.now(UTC), batch_size=2, rest=rest)

    assert counts == {"refresh_tokens": 5, "sessions": 0, "audit_events": 0}
    assert [remaining for _, remaining in rests] == [3, 1, 0]
    assert all(seconds > 0 for seconds, _ in rests)
    assert scalar(app, "SELECT COUNT(*) FROM auth_sessions") == 5


def test_prune_on_empty_database(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["auth", "prune"])

    assert result.exit_code == 0, result.output
    assert result.output == "deleted 0 refresh tokens, 0 sessions and 0 audit events\n"


# keygen


@pytest.fixture
def keygen_runner(tmp_path: Path) -> FlaskCliRunner:
    """A runner on an app that never touches its database: keygen needs none."""
    application = make_app(f"sqlite:///{tmp_path / 'unused.db'}")
    return application.test_cli_runner()


def _split_pem_pair(output: str) -> tuple[bytes, bytes]:
    private_end = "-----END PRIVATE KEY-----\n"
    assert output.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert output.count(private_end) == 1
    private_pem, public_pem = output.split(private_end)
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert public_pem.endswith("-----END PUBLIC KEY-----\n")
    return (private_pem + private_end).encode(), public_pem.encode()


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_keygen_prints_a_pem_pair(keygen_runner: FlaskCliRunner, algorithm: str) -> None:
    result = keygen_runner.invoke(args=["auth", "keygen", "--alg", algorithm])

    assert result.exit_code == 0, result.output
    private_pem, public_pem = _split_pem_pair(result.output)
    private_key = serialization.load_pem_private_key(private_pem, password=None)
    public_key = serialization.load_pem_public_key(public_pem)
    if algorithm == "EdDSA":
        assert isinstance(private_key, ed25519.Ed25519PrivateKey)
        assert isinstance(public_key, ed25519.Ed25519PublicKey)
    elif algorithm == "ES256":
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert isinstance(public_key.curve, ec.SECP256R1)
    else:
        assert isinstance(private_key, rsa.RSAPrivateKey)
        assert isinstance(public_key, rsa.RSAPublicKey)
        assert public_key.key_size >= 2048
    # The public key is the private key's own.
    assert (
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == public_pem
    )
    # A fresh key every time.
    again = keygen_runner.invoke(args=["auth", "keygen", "--alg", algorithm])
    assert again.exit_code == 0, again.output
    assert _split_pem_pair(again.output)[0] != private_pem


def test_keygen_refuses_unknown_algorithm(keygen_runner: FlaskCliRunner) -> None:
    result = keygen_runner.invoke(args=["auth", "keygen", "--alg", "HS256"])

    assert result.exit_code == 2
    assert "Invalid value for '--alg'" in result.stderr
    assert "PRIVATE KEY" not in result.output
