"""Authorization codes (RFC 6749 §4.1.2, RFC 7636): issued to a browser, redeemed once by an app.

* 256 random bits; only the SHA-256 is stored (`code_hash`, UNIQUE).
* Bound to its client, redirect URI, PKCE challenge, nonce, scopes, audience, user and the
  siwa-web browser session it was issued in; alive `CODE_TTL` seconds (60 by default).
* Redeemed with a compare-and-set (`consumed_at IS NULL`), so two parallel redemptions cannot
  both win; the row is kept until it expires, with the family its redemption started, so a
  replay can revoke what the first redemption issued (RFC 6749 §4.1.2, §10.5).
* PKCE is S256 only: `plain` would send the verifier's equivalent through the browser.

Everything here runs inside the caller's transaction; the caller commits.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from datetime import timedelta

from sqlalchemy import Row
from sqlalchemy import String
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from ..infra.crypto import new_token
from ..infra.crypto import token_hash
from ..models import AuthorizationCode
from ..models import Client
from ..models import User
from ..models import WebSession
from ..models.base import UTCDateTime
from ..models.base import new_id
from ..models.base import now_utc
from .collaborators import DbSession

MAX_CODE_LENGTH = 128
# RFC 7636 §4.1: 43-128 characters of [A-Z a-z 0-9 - . _ ~]; an S256 challenge is 43 of base64url.
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}\Z")  # \Z, not `$`: no final "\n"
S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}\Z")


def issue(
    session: DbSession, *, ttl: int, client_id: str, user_id: str, web_session_id: str | None,
    redirect_uri: str, scope: str, audience: str, nonce: str | None,
    code_challenge: str | None, auth_time: datetime,
) -> str:
    """Store a new code and return its value (sent to the browser once, never stored).

    A Core INSERT: every single-sign-on answer writes one, and the unit of work would cost more
    than the SQL (as for refresh tokens)."""
    value = new_token(32)
    now = now_utc()
    session.connection().execute(_ISSUE, {
        "id": new_id(), "code_hash": token_hash(value), "client_id": client_id,
        "user_id": user_id, "web_session_id": web_session_id, "redirect_uri": redirect_uri,
        "scope": scope, "audience": audience, "nonce": nonce, "code_challenge": code_challenge,
        "auth_time": auth_time, "created_at": now, "expires_at": now + timedelta(seconds=ttl)})
    return value


# The redemption's statements, built once and run as Core (the code flow's hot path).
_AC = AuthorizationCode.__table__
_ISSUE = insert(_AC)
# The code with everything its redemption checks: the client (secret, kind, enabled), the user
# (enabled, profile) and whether its browser session still stands — one query.
_PRESENTED = (
    select(
        _AC.c.id, _AC.c.client_id, _AC.c.user_id, _AC.c.web_session_id, _AC.c.redirect_uri,
        _AC.c.scope, _AC.c.audience, _AC.c.nonce, _AC.c.code_challenge, _AC.c.auth_time,
        _AC.c.expires_at, _AC.c.consumed_at, _AC.c.family_id,
        Client.secret_hash.label("client_secret_hash"), Client.kind.label("client_kind"),
        Client.disabled_at.label("client_disabled_at"),
        User.disabled_at.label("user_disabled_at"), User.email, User.email_verified,
        User.first_name, User.last_name,
        WebSession.revoked_at.label("session_revoked_at"),
    )
    .join(Client, Client.id == _AC.c.client_id)
    .join(User, User.id == _AC.c.user_id)
    .outerjoin(WebSession, WebSession.id == _AC.c.web_session_id)
    .where(_AC.c.code_hash == bindparam("code_hash"))
)
# Compare-and-set: only the one request that flips consumed_at redeems the code, and it records
# the family it is about to start in the same statement (for revoking it on a replay).
_CLAIM = (
    update(_AC)
    .where(_AC.c.id == bindparam("code_id"), _AC.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("now", type_=UTCDateTime()),
            family_id=bindparam("family_id", type_=String()))
)


def presented(session: DbSession, value: str | None) -> Row | None:
    """The code with its client, user and session state, or None; absurd values are not
    looked up."""
    if not value or len(value) > MAX_CODE_LENGTH or not value.isascii():
        return None
    return session.connection().execute(_PRESENTED, {"code_hash": token_hash(value)}).first()


def family_of(session: DbSession, code_id: str) -> str | None:
    """The family a code's redemption started, re-read after losing the race to redeem it."""
    return session.connection().execute(
        select(_AC.c.family_id).where(_AC.c.id == code_id)).scalar_one_or_none()


def claim_for(session: DbSession, code_id: str, family_id: str) -> bool:
    """Mark the code used by the family `family_id`; True only for the request that did."""
    return session.connection().execute(
        _CLAIM, {"code_id": code_id, "now": now_utc(), "family_id": family_id}).rowcount == 1





def s256(verifier: str) -> str:
    """BASE64URL(SHA-256(ASCII(verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(challenge: str, verifier: str) -> bool:
    """Whether `verifier` is well formed and hashes to `challenge` (constant time)."""
    return bool(VERIFIER.match(verifier)) and hmac.compare_digest(s256(verifier), challenge)
