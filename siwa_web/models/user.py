"""People and the Apple identities they sign in with."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from .base import Base
from .base import UTCDateTime
from .base import new_id
from .base import now_utc
from .base import pending_index


class User(Base):
    """A siwa-web account; `id` is the `sub` of every token we issue."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Apple sends the name once, unsigned and user-edited: stored as plain text, shown escaped.
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    # Email is an attribute copied from the identity token, never a key (decision D8).
    email: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(default=False)
    is_private_email: Mapped[bool] = mapped_column(default=False)
    email_deliverable: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    identities: Mapped[list[AppleIdentity]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="AppleIdentity.created_at"
    )

    # Flask-Login: the id in the cookie is the web session's token, set per request.
    session_token = None  # not a column
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None

    def get_id(self) -> str | None:
        return self.session_token

    @property
    def display_name(self) -> str:
        """Return the best human-readable name we have."""
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or self.email or "Apple user"


class AppleIdentity(Base):
    """One Apple ID (team-scoped `sub`) linked to a user; never looked up by email."""

    __tablename__ = "apple_identities"
    __table_args__ = (UniqueConstraint("sub", name="uq_apple_identities_sub"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    sub: Mapped[str] = mapped_column(String(255))
    issuer: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(default=False)
    is_private_email: Mapped[bool] = mapped_column(default=False)
    # Hide-My-Email forwarding as Apple last told us (email-enabled/-disabled); None: never told.
    email_forwarding: Mapped[bool | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    # Team transfer (docs/apple-lifecycle.md): Apple's link from this `sub` to the user's `sub`
    # in the team the app moves to, fetched before the move and exchanged after it.
    transfer_sub: Mapped[str | None] = mapped_column(String(255), index=True)
    transfer_team: Mapped[str | None] = mapped_column(String(20))
    transfer_exported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    transferred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    previous_sub: Mapped[str | None] = mapped_column(String(255))  # the sub before the move

    user: Mapped[User] = relationship(back_populates="identities")
    apple_tokens: Mapped[list[AppleToken]] = relationship(
        back_populates="identity", cascade="all, delete-orphan"
    )


class AppleToken(Base):
    """Apple's refresh token for one (identity, Apple client id); needed to revoke at Apple."""

    __tablename__ = "apple_tokens"
    __table_args__ = (
        UniqueConstraint("identity_id", "client_id", name="uq_apple_tokens_identity_client"),
        # `flask apple validate-tokens` takes the due tokens whose check is oldest first.
        Index("ix_apple_tokens_next_check_at", "next_check_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    identity_id: Mapped[str] = mapped_column(
        ForeignKey("apple_identities.id", ondelete="CASCADE"), index=True
    )
    # Services ID for web sign-ins, bundle id for native ones: revocation must use the same.
    client_id: Mapped[str] = mapped_column(String(255))
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    invalidated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The daily check at Apple (lifecycle/validation.py): when Apple last answered it, what it
    # said ("valid", or "revoked" for invalid_grant), and when the token is next due. A run
    # claims a token by pushing `next_check_at` past its lease, so `next_check_at` is both the
    # queue order (oldest check first) and the lock.
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_state: Mapped[str | None] = mapped_column(String(20))
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    identity: Mapped[AppleIdentity] = relationship(back_populates="apple_tokens")


class AppleRevocation(Base):
    """Outbox row: an Apple token still to be revoked at Apple (decision D10)."""

    __tablename__ = "apple_revocations"
    __table_args__ = (pending_index("apple_revocations"),
                      Index("ix_apple_revocations_unsent_due", "next_attempt_at",
                            postgresql_where=text("sent_at IS NULL"),
                            sqlite_where=text("sent_at IS NULL")))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(255))
    token_encrypted: Mapped[str] = mapped_column(Text)
    token_type_hint: Mapped[str] = mapped_column(String(20), default="refresh_token")
    # Kept without a foreign key: the user row is gone by the time this is sent.
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PendingProfile(Base):
    """Apple's one-time name, saved by `sub` before the code is redeemed (pitfall P2).

    If redeeming the code then fails, the next sign-in of the same Apple ID (which carries no
    name any more) still gets it.
    """

    __tablename__ = "pending_profiles"

    sub: Mapped[str] = mapped_column(String(255), primary_key=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
