"""Per-app state of the extension, kept in `app.extensions["flask_token_auth"]`."""

from __future__ import annotations

import dataclasses

from flask import current_app
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import scoped_session

from .keys import KeySet
from .models import AuthTables
from .passwords import PasswordHasher
from .ratelimit import RateLimits
from .settings import AuthSettings
from .tokens import AccessTokenVerifier
from .users import UserModel

EXTENSION_KEY = "flask_token_auth"


@dataclasses.dataclass(frozen=True)
class AuthState:
    settings: AuthSettings
    keys: KeySet
    access_tokens: AccessTokenVerifier
    passwords: PasswordHasher
    rate_limits: RateLimits
    db: SQLAlchemy
    users: UserModel

    @property
    def tables(self) -> AuthTables:
        """The session, refresh-token and event tables of these users."""
        return self.users.tables

    @property
    def session(self) -> scoped_session:  # type: ignore[type-arg]
        """The request's database session."""
        return self.db.session

    def discard_session(self) -> None:
        """Drop the request's session after its connection failed, without asking the database
        again: the request's teardown then has no rollback left to fail on a dead connection
        (which would escape Flask as the server's HTML 500)."""
        try:
            self.db.session().invalidate()
        except SQLAlchemyError:
            pass
        self.db.session.remove()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientInfo:
    """Where a request came from, for sessions and the audit trail."""

    ip: str | None = None
    user_agent: str | None = None


def auth_state(app: Flask | None = None) -> AuthState:
    """The state of the current (or given) app; RuntimeError if AuthManager was not set up."""
    extensions = (app or current_app).extensions
    if EXTENSION_KEY not in extensions:
        raise RuntimeError("AuthManager is not initialised: call AuthManager().init_app(app).")
    state: AuthState = extensions[EXTENSION_KEY]
    return state
