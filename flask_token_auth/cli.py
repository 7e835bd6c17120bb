"""`flask auth ...`: a thin layer over the services for operators."""

from __future__ import annotations

import json
import secrets
import sys
import urllib.parse
import urllib.request
from datetime import datetime
from datetime import timedelta
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
from .keys import KeySet
from .keys import publication_wait
from .keys import retirement_wait
from .keys import VERIFIER_REFETCH_COOLDOWN
from .setting_kinds import ClientSecrets
from .setting_kinds import Duration
from .setting_kinds import is_kid
from .setting_kinds import SettingError
from .settings import AuthSettings
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
#: Seconds `flask auth keys status --jwks-url` waits for each key set.
JWKS_FETCH_TIMEOUT = 10


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
@click.option("--kid", help="Name the public key: a line kid=NAME before it.")
def keygen(algorithm: str, kid: str | None) -> None:
    """Print a new PEM key pair: the private key for AUTH_JWT_PRIVATE_KEY, then the public one
    (for AUTH_JWT_PUBLIC_KEYS, named by --kid)."""
    if kid is not None and not is_kid(kid):
        raise click.BadParameter("1 to 128 letters, digits, . _ or -", param_hint="--kid")
    private_pem, public_pem = generate_key_pair_pem(algorithm)
    click.echo(private_pem + (f"kid={kid}\n" if kid else "") + public_pem, nl=False)


@auth_cli.command("client-secret")
@click.argument("client_id")
def client_secret(client_id: str) -> None:
    """Print a new secret for a resource server, and its AUTH_INTROSPECTION_CLIENTS entry, which
    holds the secret's SHA-256 only."""
    secret = secrets.token_urlsafe(32)
    try:
        [(_, digest)] = ClientSecrets().check({client_id: secret})
    except SettingError as error:
        raise click.BadParameter(error.problem, param_hint="CLIENT_ID") from None
    click.echo(f"secret (give it to the resource server; it is not kept): {secret}")
    click.echo(f"AUTH_INTROSPECTION_CLIENTS entry: {client_id}:sha256:{digest.hex()}")


@auth_cli.group("keys")
def keys_cli() -> None:
    """Signing keys and their staged rotation (docs/operations.md#rotating-the-signing-key)."""


@keys_cli.command("status")
@click.option(
    "--jwks-url",
    "urls",
    multiple=True,
    help="A JWKS URL as verifiers fetch it (repeatable): exit 1 unless each serves every key "
    "this configuration publishes.",
)
def keys_status(urls: tuple[str, ...]) -> None:
    """The signing kid, the published kids, the JWKS max-age, the rotation's stage and its next
    step; with --jwks-url, whether each URL serves the keys this configuration publishes."""
    state = auth_state()
    settings, keys = state.settings, state.keys
    click.echo(f"algorithm: {keys.algorithm}")
    click.echo(f"signing kid: {keys.signing_kid}")
    if not keys.published_kids:
        click.echo(
            "published kids: none (HMAC keys are secret); change the secret with "
            "AUTH_JWT_SECRET_KEY_FALLBACKS or SECRET_KEY_FALLBACKS (docs/tokens.md)"
        )
        return
    click.echo("published kids (JWKS):")
    for kid in keys.published_kids:
        click.echo(f"  {kid}  {_key_role(keys, kid)}")
    click.echo(f"JWKS max-age: {_duration(settings.jwks_max_age)} (AUTH_JWKS_MAX_AGE)")
    for line in _next_steps(keys, settings):
        click.echo(line)
    missing = [_served_check(url, keys.published_kids) for url in urls]
    if any(missing):
        raise click.ClickException(
            "not every URL serves every published key: wait for the deploy (and the caches) "
            "before the next stage"
        )


def _key_role(keys: KeySet, kid: str) -> str:
    if kid == keys.signing_kid:
        role = "signing"
    elif kid in keys.old_kids:
        role = "old: verifies the tokens it signed until they expire"
    elif kid in keys.next_kids:
        role = "next: published, not signing yet"
    else:
        role = "published, not signing: the next key or an old one"
    listed = kid in keys.listed_kids
    return role if listed else f"{role} (not in AUTH_JWT_PUBLIC_KEYS: its thumbprint)"


def _next_steps(keys: KeySet, settings: AuthSettings) -> list[str]:
    publication = _duration(publication_wait(settings))
    retirement = _duration(retirement_wait(settings))
    steps = []
    if keys.signing_kid not in keys.listed_kids:
        steps.append(
            f"note: before {keys.signing_kid} stops signing, list it in AUTH_JWT_PUBLIC_KEYS "
            f"(unnamed, or as kid={keys.signing_kid}): unlisted, it stops verifying its tokens "
            "at the switch"
        )
    for kid in keys.old_kids:
        steps.append(
            f"stage: retiring {kid}; remove it from AUTH_JWT_PUBLIC_KEYS once every server has "
            f"signed with {keys.signing_kid} for {retirement} (AUTH_ACCESS_TOKEN_TTL + "
            "AUTH_JWT_LEEWAY)"
        )
    for kid in keys.next_kids:
        steps.append(
            f"stage: publishing {kid}; sign with it (AUTH_JWT_PRIVATE_KEY) once every server has "
            f"published it for {publication} (the JWKS max-age, and at least the "
            f"{_duration(VERIFIER_REFETCH_COOLDOWN)} verifiers wait before fetching the keys again)"
        )
    if keys.signing_kid not in keys.listed_kids and keys.listed_kids:
        steps.append(
            "stage: unknown; list the signing key in AUTH_JWT_PUBLIC_KEYS, oldest key first, to "
            "tell the next key from old ones"
        )
    elif not keys.old_kids and not keys.next_kids:
        steps.append(
            "stage: one key; to rotate, publish the next key first: `flask auth keygen --kid "
            "NAME`, its public key listed after the signing key's in AUTH_JWT_PUBLIC_KEYS"
        )
    return steps


def _served_check(url: str, kids: tuple[str, ...]) -> bool:
    """Print what `url` serves; True if it misses one of `kids` or cannot be read."""
    try:
        served, cache_control = _fetch_jwks(url)
    except (OSError, ValueError) as error:
        click.echo(f"{url}: cannot be read ({type(error).__name__}: {error})")
        return True
    missing = [kid for kid in kids if kid not in served]
    click.echo(
        f"{url}: serves {', '.join(served) or 'no key'} (Cache-Control: {cache_control or '-'})"
        + (f"; MISSING {', '.join(missing)}" if missing else "")
    )
    return bool(missing)


def _fetch_jwks(url: str) -> tuple[list[str], str | None]:
    """The kids of the key set at `url` and its Cache-Control; OSError or ValueError."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=JWKS_FETCH_TIMEOUT) as response:  # noqa: S310
        document = json.loads(response.read())
        cache_control = response.headers.get("Cache-Control")
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWKS")
    return [str(jwk.get("kid")) for jwk in keys if isinstance(jwk, dict)], cache_control


def _duration(duration: timedelta) -> str:
    """As the configuration reference shows durations: `30 s`, `5 min`."""
    return Duration().show(duration)
