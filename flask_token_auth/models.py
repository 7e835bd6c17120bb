"""The four tables of CONTRACT.md section 2. Plain data: the use cases live in services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .db import Base
from .db import exact_string
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


class AuthSession(Base):
    """One login: a family of refresh tokens with an absolute lifetime."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(exact_string(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    ip: Mapped[str | None] = mapped_column(sa.String(64))

    @staticmethod
    def is_live(*, revoked_at: datetime | None, expires_at: datetime, now: datetime) -> bool:
        """Whether a session with these columns is live at `now` (read without its row)."""
        return revoked_at is None and now < expires_at

    @classmethod
    def live_at(cls, now: datetime | sa.BindParameter[datetime]) -> sa.ColumnElement[bool]:
        """`is_live` as SQL."""
        return sa.and_(cls.revoked_at.is_(None), cls.expires_at > now)


class RefreshToken(Base):
    """One refresh token, stored as the SHA-256 of its value only."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (sa.UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(exact_string(64))
    user_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str] = mapped_column(
        exact_string(64), sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parent_id: Mapped[int | None] = mapped_column(BigId, index=True)


class AuthEvent(Base):
    """The audit trail; rows outlive the sessions and users they mention."""

    __tablename__ = "auth_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    type: Mapped[str] = mapped_column(sa.String(64))
    user_id: Mapped[int | None] = mapped_column(BigId, index=True)
    session_id: Mapped[str | None] = mapped_column(exact_string(64))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
