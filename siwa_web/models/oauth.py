"""Our token service: native clients, signing keys, refresh-token families."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from .base import Base
from .base import UTCDateTime
from .base import new_id
from .base import now_utc
from .user import User


class Client(Base):
    """A native app allowed to exchange Apple codes for our tokens."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the public client_id
    name: Mapped[str] = mapped_column(String(100))
    bundle_id: Mapped[str] = mapped_column(String(255), unique=True)
    audiences: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SigningKey(Base):
    """One of our JWT signing keys; retired keys stay published until their tokens expire."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # stopped signing
    unpublish_after: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TokenFamily(Base):
    """An app session: every refresh token descended from one sign-in on one device."""

    __tablename__ = "token_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    identity_id: Mapped[str | None] = mapped_column(
        ForeignKey("apple_identities.id", ondelete="SET NULL")
    )
    scope: Mapped[str] = mapped_column(String(1000))
    audience: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # absolute lifetime
    ip: Mapped[str | None] = mapped_column(String(64))  # of the last refresh
    user_agent: Mapped[str | None] = mapped_column(String(512))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(40))

    user: Mapped[User] = relationship()
    client: Mapped[Client] = relationship()


class RefreshToken(Base):
    """One generation of a family; only the SHA-256 of the token is stored."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE"), index=True
    )
    # UNIQUE: a token has at most one successor, whatever the concurrency.
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="CASCADE"), unique=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    idle_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The successor's value, encrypted, kept only for the grace window (decision D2).
    successor_encrypted: Mapped[str | None] = mapped_column(Text)

    family: Mapped[TokenFamily] = relationship()
