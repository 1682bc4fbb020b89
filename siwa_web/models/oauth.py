"""Our token service: clients (native and web), signing keys, refresh-token families, and the
authorization code flow's pending requests, codes and remembered consents."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import false
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from .base import Base
from .base import UTCDateTime
from .base import new_id
from .base import now_utc
from .base import pending_index
from .user import User


class Client(Base):
    """An app allowed to get our tokens: a native app (exchanges Apple codes; `bundle_id`) or a
    web app (the authorization code flow; redirect URIs, and a hashed secret unless public)."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the public client_id
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10), default="native", server_default="native")
    bundle_id: Mapped[str | None] = mapped_column(String(255), unique=True)  # native only
    audiences: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Web clients: SHA-256 of the secret (a 256-bit random value; None for public clients).
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default="[]")
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000))
    first_party: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_public(self) -> bool:
        return self.kind == "native" or self.secret_hash is None


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
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # absolute lifetime
    ip: Mapped[str | None] = mapped_column(String(64))  # of the last refresh
    user_agent: Mapped[str | None] = mapped_column(String(512))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)  # prune
    revoked_reason: Mapped[str | None] = mapped_column(String(40))
    # When the person last really signed in with Apple (`auth_time`); older rows: created_at.
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Web apps: the siwa-web browser session the sign-in went through (single sign-on, logout).
    web_session_id: Mapped[str | None] = mapped_column(
        ForeignKey("web_sessions.id", ondelete="SET NULL"), index=True
    )

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


class PendingAuthorization(Base):
    """A validated authorization request waiting for the user: sign-in with Apple, or consent.

    Found again by the SHA-256 of a random handle that only travels inside siwa-web's own URLs
    and forms, and bound to the browser that started it (the handle is worthless elsewhere).
    """

    __tablename__ = "pending_authorizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    handle_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    # The request as validated: redirect_uri, scope, state, nonce, PKCE, response_mode, …
    params: Mapped[dict] = mapped_column(JSON)
    # A sign-in at or after this moment is needed first (prompt=login, max_age exceeded).
    login_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuthorizationCode(Base):
    """A single-use authorization code (only its SHA-256 is stored), bound to everything the
    token request must match; `family_id` is set on redemption so a replay revokes what the
    first redemption issued."""

    __tablename__ = "authorization_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    web_session_id: Mapped[str | None] = mapped_column(
        ForeignKey("web_sessions.id", ondelete="CASCADE")
    )
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(1000))
    audience: Mapped[str] = mapped_column(String(255))
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    family_id: Mapped[str | None] = mapped_column(String(36))


class Consent(Base):
    """What a user allowed a third-party web app, remembered so they are asked only once."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class BackchannelLogout(Base):
    """Outbox row: a web app still to be told, by a logout token, that a session ended."""

    __tablename__ = "backchannel_logouts"
    # The outbox claims unsent rows by due time (delivered ones must not be scanned past); the
    # metrics read them by age.
    __table_args__ = (pending_index("backchannel_logouts"),
                      Index("ix_backchannel_logouts_unsent_due", "next_attempt_at",
                            postgresql_where=text("sent_at IS NULL"),
                            sqlite_where=text("sent_at IS NULL")))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    # Kept without foreign keys: the user and the session may be gone by the time this is sent.
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    sid: Mapped[str] = mapped_column(String(36))  # the siwa-web browser session that ended
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
