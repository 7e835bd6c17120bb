"""Token authentication for Flask: access JWTs and rotating, reuse-detecting refresh tokens.

db = SQLAlchemy()
api_auth = AuthManager(db=db)  # or AuthManager(db=db, user_model="User") for the app's own users
def create_app():
    app = Flask(__name__)
    db.init_app(app); api_auth.init_app(app)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

if TYPE_CHECKING:
    from .decorators import auth_required
    from .decorators import current_claims
    from .decorators import current_user
    from .decorators import verify_request_token
    from .engines import configure_sqlite
    from .engines import engine_options
    from .engines import register_url_schemes
    from .errors import AccessDenied
    from .errors import AuthError
    from .errors import BadCredentials
    from .errors import Conflict
    from .errors import CsrfFailed
    from .errors import InsufficientScope
    from .errors import InvalidGrant
    from .errors import InvalidRequest
    from .errors import InvalidToken
    from .errors import MalformedAuthorization
    from .errors import MissingCredentials
    from .errors import NotFound
    from .errors import RateLimited
    from .errors import SchemaMissing
    from .errors import TemporarilyUnavailable
    from .manager import AuthManager
    from .models import AuthEvent
    from .models import AuthSession
    from .models import RefreshToken
    from .models import User
    from .settings import setting_types
    from .tokens import AccessClaims
    from .tokens import IssuedTokens

__all__ = [
    "AccessClaims",
    "AccessDenied",
    "AuthError",
    "AuthEvent",
    "AuthManager",
    "AuthSession",
    "BadCredentials",
    "Conflict",
    "CsrfFailed",
    "InsufficientScope",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidToken",
    "IssuedTokens",
    "MalformedAuthorization",
    "MissingCredentials",
    "NotFound",
    "RateLimited",
    "RefreshToken",
    "SchemaMissing",
    "TemporarilyUnavailable",
    "User",
    "auth_required",
    "configure_sqlite",
    "current_claims",
    "current_user",
    "engine_options",
    "register_url_schemes",
    "setting_types",
    "verify_request_token",
]

#: The submodule that defines each public name. The root imports none of them up front, so that
#: `flask_token_auth.client` (and `__version__`) load without Flask, SQLAlchemy or argon2.
_MODULE_OF = {
    "auth_required": "decorators",
    "current_claims": "decorators",
    "current_user": "decorators",
    "verify_request_token": "decorators",
    "configure_sqlite": "engines",
    "engine_options": "engines",
    "register_url_schemes": "engines",
    "AccessDenied": "errors",
    "AuthError": "errors",
    "BadCredentials": "errors",
    "Conflict": "errors",
    "CsrfFailed": "errors",
    "InsufficientScope": "errors",
    "InvalidGrant": "errors",
    "InvalidRequest": "errors",
    "InvalidToken": "errors",
    "MalformedAuthorization": "errors",
    "MissingCredentials": "errors",
    "NotFound": "errors",
    "RateLimited": "errors",
    "SchemaMissing": "errors",
    "TemporarilyUnavailable": "errors",
    "AuthManager": "manager",
    "AuthEvent": "models",
    "AuthSession": "models",
    "RefreshToken": "models",
    "User": "models",
    "setting_types": "settings",
    "AccessClaims": "tokens",
    "IssuedTokens": "tokens",
}

# Hidden from type checkers, which see the imports above: a visible module `__getattr__` would
# make them accept any name, a misspelt one too.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """A public name, imported from its submodule on first access and kept here (PEP 562);
        AttributeError for any other name."""
        try:
            module = _MODULE_OF[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's own names and every public name, resolved or not."""
    return sorted({*globals(), *__all__})
