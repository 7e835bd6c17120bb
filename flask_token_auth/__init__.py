"""Token authentication for Flask: access JWTs and rotating, reuse-detecting refresh tokens.

db = SQLAlchemy()
api_auth = AuthManager(db=db)  # or AuthManager(db=db, user_model="User") for the app's own users
def create_app():
    app = Flask(__name__)
    db.init_app(app); api_auth.init_app(app)
"""

from __future__ import annotations

__version__ = "0.2.0"

from .decorators import auth_required
from .decorators import current_claims
from .decorators import current_user
from .decorators import verify_request_token
from .engines import configure_sqlite
from .engines import engine_options
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
from .settings import settings_from_environment
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
    "settings_from_environment",
    "verify_request_token",
]
