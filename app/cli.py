"""`flask auth ...`: a thin layer over the services for operators."""

from __future__ import annotations

import sys
from datetime import datetime
from datetime import UTC

import click
from flask.cli import AppGroup
from sqlalchemy import select

from . import accounts
from . import sessions
from .accounts import canonical_email
from .errors import AuthError
from .keys import generate_key_pair_pem
from .models import User
from .state import auth_state
from .state import AuthState
from .state import ClientInfo

auth_cli = AppGroup("auth", help="Manage users and sessions of the auth extension.")
CLI_CLIENT = ClientInfo(ip=None, user_agent="flask auth cli")


def _user_by_email(state: AuthState, email: str) -> User:
    user = state.session.scalar(select(User).where(User.email == canonical_email(email)))
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


@auth_cli.command("create-user")
@click.argument("email")
@click.option("--role", default="user", show_default=True, help="Role written into access tokens.")
def create_user(email: str, role: str) -> None:
    """Create a user; the password comes from a prompt, or from stdin when it is not a terminal."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        user = accounts.register(
            auth_state(),
            email=email,
            password=password,
            role=role,
            client=CLI_CLIENT,
            now=datetime.now(UTC),
        )
    except AuthError as error:
        raise click.ClickException(error.description) from None
    click.echo(f"created user {user.id} {user.email} with role {user.role}")


@auth_cli.command("prune")
def prune() -> None:
    """Delete expired refresh tokens and ended sessions; print the counts."""
    counts = sessions.prune(auth_state(), now=datetime.now(UTC))
    click.echo(
        f"deleted {counts['refresh_tokens']} refresh tokens and {counts['sessions']} sessions"
    )


@auth_cli.command("revoke")
@click.argument("email")
def revoke(email: str) -> None:
    """Revoke every session of a user."""
    state = auth_state()
    user = _user_by_email(state, email)
    revoked = sessions.logout_all(
        state, user_id=user.id, session_id=None, client=CLI_CLIENT, now=datetime.now(UTC)
    )
    click.echo(f"revoked {revoked} sessions of {user.email}")


@auth_cli.command("sessions")
@click.argument("email")
def list_sessions(email: str) -> None:
    """List a user's live sessions."""
    state = auth_state()
    user = _user_by_email(state, email)
    live = sessions.live_sessions(state, user_id=user.id, now=datetime.now(UTC))
    for auth_session in live:
        click.echo(
            f"{auth_session.id}  created {auth_session.created_at:%Y-%m-%d %H:%M}  "
            f"last used {auth_session.last_used_at:%Y-%m-%d %H:%M}  "
            f"expires {auth_session.expires_at:%Y-%m-%d %H:%M}  "
            f"ip {auth_session.ip or '-'}  {auth_session.user_agent or '-'}"
        )
    click.echo(f"{len(live)} live sessions")


@auth_cli.command("deactivate")
@click.argument("email")
def deactivate(email: str) -> None:
    """Block a user's logins and revoke every session."""
    try:
        revoked = accounts.deactivate(
            auth_state(), email=email, client=CLI_CLIENT, now=datetime.now(UTC)
        )
    except AuthError as error:
        raise click.ClickException(error.description) from None
    click.echo(f"deactivated {canonical_email(email)}; revoked {revoked} sessions")


@auth_cli.command("keygen")
@click.option(
    "--alg",
    "algorithm",
    type=click.Choice(["EdDSA", "ES256", "RS256"]),
    default="EdDSA",
    show_default=True,
)
def keygen(algorithm: str) -> None:
    """Print a new PEM key pair: the private key for AUTH_JWT_PRIVATE_KEY, then the public one."""
    private_pem, public_pem = generate_key_pair_pem(algorithm)
    click.echo(private_pem + public_pem, nl=False)
