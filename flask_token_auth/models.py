"""The tables of the extension (docs/architecture.md). Plain data: the use cases live elsewhere.

`users` is the built-in user table. The session, refresh-token and event tables are declared
once as column sets; `AuthTables` maps them either beside `users` (the default) or, for a host
that keeps its own user model, with `user_id` of the host's primary-key type (`tables_for`).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from typing import cast
from typing import ClassVar
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import declared_attr
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .db import Base
from .db import exact_string
from .db import NAMING_CONVENTION
from .db import UTCDateTime

# SQLite autoincrements only INTEGER PRIMARY KEY, so BIGINT ids are INTEGER there.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class User(Base):
    __tablename__ = "users"
    # Named here, not by the naming convention: the copy in a host's metadata keeps it.
    __table_args__ = (sa.UniqueConstraint("email", name="uq_users_email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(exact_string(254))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(64), default="user")
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def to_public(self) -> dict[str, Any]:
        """What the API shows of a user: never the hash."""
        return {
            "id": self.id,
            "email": self.email,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
        }


class AuthSessionColumns:
    """One login: a family of refresh tokens with an absolute lifetime."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(exact_string(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    if TYPE_CHECKING:  # declared by each mapping, with the type of its users' key
        __table__: ClassVar[sa.FromClause]
        user_id: Mapped[Any]

        def __init__(self, **columns: Any) -> None: ...

    @staticmethod
    def is_live(*, revoked_at: datetime | None, expires_at: datetime, now: datetime) -> bool:
        """Whether a session with these columns is live at `now` (read without its row)."""
        return revoked_at is None and now < expires_at

    @classmethod
    def live_at(cls, now: datetime | sa.BindParameter[datetime]) -> sa.ColumnElement[bool]:
        """`is_live` as SQL."""
        return sa.and_(cls.revoked_at.is_(None), cls.expires_at > now)


class RefreshTokenColumns:
    """One refresh token, stored as the SHA-256 of its value only."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(exact_string(64))
    session_id: Mapped[str] = mapped_column(
        exact_string(64), sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parent_id: Mapped[int | None] = mapped_column(BigId, index=True)
    if TYPE_CHECKING:
        __table__: ClassVar[sa.FromClause]
        user_id: Mapped[Any]

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (sa.UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),)


class AuthEventColumns:
    """The audit trail; rows outlive the sessions and users they mention."""

    __tablename__ = "auth_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    type: Mapped[str] = mapped_column(sa.String(64))
    session_id: Mapped[str | None] = mapped_column(exact_string(64))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    if TYPE_CHECKING:
        __table__: ClassVar[sa.FromClause]
        user_id: Mapped[Any]


class AuthSession(AuthSessionColumns, Base):
    user_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class RefreshToken(RefreshTokenColumns, Base):
    user_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class AuthEvent(AuthEventColumns, Base):
    user_id: Mapped[int | None] = mapped_column(BigId, index=True)


@dataclasses.dataclass(frozen=True, eq=False)
class AuthTables:
    """The extension's three mapped tables for one kind of user key."""

    AuthSession: type[AuthSessionColumns]
    RefreshToken: type[RefreshTokenColumns]
    AuthEvent: type[AuthEventColumns]

    @property
    def tables(self) -> list[sa.Table]:
        """In creation order: a refresh token refers to its session."""
        models = (self.AuthSession, self.RefreshToken, self.AuthEvent)
        return [cast(sa.Table, model.__table__) for model in models]


#: The tables of the built-in `users` table's sessions.
BUILTIN_TABLES = AuthTables(AuthSession, RefreshToken, AuthEvent)


def tables_for(user_key: sa.Column[Any]) -> AuthTables:
    """The three tables mapped with `user_id` of `user_key`'s type, the first two with a
    foreign key to it (ON DELETE CASCADE), in a metadata of their own (`db.add_tables_to`
    copies them into the host's)."""
    key_type = user_key.type.copy()

    class HostKeyBase(DeclarativeBase):
        metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

    class HostAuthSession(AuthSessionColumns, HostKeyBase):
        user_id: Mapped[Any] = mapped_column(
            key_type, sa.ForeignKey(user_key, ondelete="CASCADE"), index=True
        )

    class HostRefreshToken(RefreshTokenColumns, HostKeyBase):
        user_id: Mapped[Any] = mapped_column(
            key_type, sa.ForeignKey(user_key, ondelete="CASCADE"), index=True
        )

    class HostAuthEvent(AuthEventColumns, HostKeyBase):
        user_id: Mapped[Any] = mapped_column(key_type, nullable=True, index=True)

    return AuthTables(HostAuthSession, HostRefreshToken, HostAuthEvent)
