"""`flask auth ...`: a thin layer over the services for operators."""

from __future__ import annotations

import sys
from datetime import datetime
from datetime import UTC
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from . import accounts
from . import maintenance
from . import revocation
from . import sessions
from .engines import is_missing_table
from .errors import AuthError
from .keys import generate_key_pair_pem
from .state import auth_state
from .state import AuthState
from .state import ClientInfo
from .validation import canonical_email


class _AuthGroup(AppGroup):
    """Commands whose failures are one line for the operator, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuthError as error:
            raise click.ClickException(error.description) from None
        except SQLAlchemyError as error:
            if is_missing_table(error):
                raise click.ClickException(
                    "the auth tables do not exist in this database; run `flask db upgrade` first"
                ) from None
            raise


auth_cli = _AuthGroup("auth", help="Manage users and sessions of the auth extension.")
CLI_CLIENT = ClientInfo(ip=None, user_agent="flask auth cli")


@auth_cli.command("create-user")
@click.argument("email")
@click.option("--role", default="user", show_default=True, help="Role written into access tokens.")
def create_user(email: str, role: str) -> None:
    """Create a user; the password comes from a prompt, or from stdin when it is not a terminal."""
    accounts.require_builtin_users(auth_state(), "create-user")
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    user = accounts.register(
        auth_state(),
        email=email,
        password=password,
        role=role,
        client=CLI_CLIENT,
        now=datetime.now(UTC),
    )
    click.echo(f"created user {user.id} {user.email} with role {user.role}")


@auth_cli.command("prune")
def prune() -> None:
    """Delete expired refresh tokens, ended sessions and old audit events, in batches."""
    counts = maintenance.prune(auth_state(), now=datetime.now(UTC))
    click.echo(
        f"deleted {counts['refresh_tokens']} refresh tokens, {counts['sessions']} sessions"
        f" and {counts['audit_events']} audit events"
    )


@auth_cli.command("revoke")
@click.argument("login", metavar="EMAIL")
def revoke(login: str) -> None:
    """Revoke every session of a user (named by email, or any login field of the app's users)."""
    state = auth_state()
    user = accounts.user_by_login(state, login)
    shown = _shown(state, user)
    revoked = revocation.revoke_all_sessions(
        state,
        user_id=state.users.key_of(user),
        reason="revoked_by_admin",
        client=CLI_CLIENT,
        now=datetime.now(UTC),
    )
    click.echo(f"revoked {revoked} sessions of {shown}")


@auth_cli.command("sessions")
@click.argument("login", metavar="EMAIL")
def list_sessions(login: str) -> None:
    """List a user's live sessions."""
    state = auth_state()
    user = accounts.user_by_login(state, login)
    live = sessions.live_sessions(state, user_id=state.users.key_of(user), now=datetime.now(UTC))
    for auth_session in live:
        click.echo(
            f"{auth_session.id}  created {auth_session.created_at:%Y-%m-%d %H:%M}  "
            f"last used {auth_session.last_used_at:%Y-%m-%d %H:%M}  "
            f"expires {auth_session.expires_at:%Y-%m-%d %H:%M}  "
            f"ip {auth_session.ip or '-'}  {auth_session.user_agent or '-'}"
        )
    click.echo(f"{len(live)} live sessions")


@auth_cli.command("deactivate")
@click.argument("login", metavar="EMAIL")
def deactivate(login: str) -> None:
    """Block a user's logins and revoke every session."""
    state = auth_state()
    revoked = accounts.deactivate(state, login=login, client=CLI_CLIENT, now=datetime.now(UTC))
    click.echo(f"deactivated {_canonical(state, login)}; revoked {revoked} sessions")


@auth_cli.command("activate")
@click.argument("login", metavar="EMAIL")
def activate(login: str) -> None:
    """Let a deactivated user log in again."""
    state = auth_state()
    user = accounts.activate(state, login=login, client=CLI_CLIENT, now=datetime.now(UTC))
    click.echo(f"activated {_shown(state, user)}")


@auth_cli.command("set-role")
@click.argument("login", metavar="EMAIL")
@click.argument("role")
def set_role(login: str, role: str) -> None:
    """Give a user a role (a short identifier); it applies at the user's next request."""
    state = auth_state()
    user = accounts.set_role(
        state, login=login, role=role, client=CLI_CLIENT, now=datetime.now(UTC)
    )
    click.echo(f"{_shown(state, user)} now has the role {user.role}")


def _shown(state: AuthState, user: Any) -> str:
    """The user as commands name it: its first login field."""
    return str(getattr(user, state.users.login_fields[0]))


def _canonical(state: AuthState, login: str) -> str:
    return canonical_email(login) if state.users.builtin else login


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
