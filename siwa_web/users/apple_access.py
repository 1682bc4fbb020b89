"""When Apple says an Apple ID's tokens are dead: what siwa-web ends, whoever found out.

Apple tells us in two ways that someone stopped using Sign in with Apple for our apps (Settings →
Sign in with Apple → Stop using, a password reset, Apple revoking): a `consent-revoked`
notification, or `invalid_grant` when the daily check refreshes a stored token. Both come
through `consent_withdrawn`, so the outcome is one: every web session and app session opened
through that Apple ID ends (through `sign_out.end_sessions`, so web apps get their back-channel
logouts), each stored Apple token is marked dead — kept as a row, without the token, so the
dashboard can say why — and the change is audited. The caller commits.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..infra.extensions import db
from ..models import AppleIdentity
from ..models import TokenFamily
from ..models import WebSession
from ..models.base import now_utc
from ..oauth.refresh import revoke_family
from . import audit
from .sign_out import end_sessions

REVOKED = "revoked"  # AppleToken.check_state of a token Apple no longer honours
VALID = "valid"


@dataclass(frozen=True)
class Ended:
    """What ending an Apple ID's access took away."""

    web_sessions: int
    app_sessions: int
    apple_tokens: int


def end_apple_access(identity: AppleIdentity, reason: str) -> Ended:
    """End what this Apple ID opened and mark its stored Apple tokens dead. Caller commits."""
    ended = end_sessions(WebSession.identity_id == identity.id, reason=reason)
    families = db.session.execute(
        select(TokenFamily).where(TokenFamily.identity_id == identity.id,
                                  TokenFamily.revoked_at.is_(None))
    ).scalars().all()
    apps = sum(1 for family in families if revoke_family(db.session, family, reason))
    now, dead = now_utc(), 0
    for token in identity.apple_tokens:
        if token.refresh_token_encrypted:
            dead += 1
        token.refresh_token_encrypted = None  # worthless now; keep no copy of it
        token.invalidated_at = token.invalidated_at or now
        token.check_state = REVOKED
    return Ended(web_sessions=len(ended), app_sessions=apps, apple_tokens=dead)


def consent_withdrawn(identity: AppleIdentity, *, via: str, client_id: str | None = None) -> Ended:
    """Apple no longer honours this Apple ID's authorization for our apps.

    `via` says how we learned it ("notification" or "daily_check"), `client_id` which Apple
    client id it concerned; both go into the audit event the dashboard shows.
    """
    ended = end_apple_access(identity, "apple consent revoked")
    audit.record("apple_consent_revoked", user_id=identity.user_id, client_id=client_id,
                 details={"identity": identity.id, "via": via,
                          "web_sessions": ended.web_sessions, "app_sessions": ended.app_sessions,
                          "apple_tokens": ended.apple_tokens})
    return ended
