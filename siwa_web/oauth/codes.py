"""Authorization codes (RFC 6749 §4.1.2, RFC 7636): issued to a browser, redeemed once by an app.

* 256 random bits; only the SHA-256 is stored (`code_hash`, UNIQUE).
* Bound to its client, redirect URI, PKCE challenge, nonce, scopes, audience, user and the
  siwa-web browser session it was issued in; alive `CODE_TTL` seconds (60 by default).
* Redeemed with a compare-and-set (`consumed_at IS NULL`) that also returns what the redemption
  checks, so two parallel redemptions cannot both win; the row is kept until it expires, with
  the family its redemption started, so a replay can revoke what the first redemption issued
  (RFC 6749 §4.1.2, §10.5).
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
        User.disabled_at.label("user_disabled_at"), User.email.label("user_email"),
        User.email_verified.label("user_email_verified"),
        User.first_name.label("user_first_name"), User.last_name.label("user_last_name"),
        WebSession.revoked_at.label("web_session_revoked_at"),
    )
    .join(Client, Client.id == _AC.c.client_id)
    .join(User, User.id == _AC.c.user_id)
    .outerjoin(WebSession, WebSession.id == _AC.c.web_session_id)
    .where(_AC.c.code_hash == bindparam("code_hash"))
)
# Redeeming starts with the claim: a compare-and-set that only the one request flipping
# consumed_at wins, recording the family it is about to start, and returning the code with
# everything its redemption checks (scalar subqueries: SQLite's RETURNING names only the
# updated table). The checks run afterwards; when one fails, the grant's transaction is rolled
# back and the code is unused again. One statement instead of a read and an update: the
# redemption is half of the code flow's hot path.
def _of(column, key, label: str):
    """`column` of the row `key` points at, as a scalar subquery correlated to the code."""
    return select(column).where(key).correlate(_AC).scalar_subquery().label(label)


_CODE_COLUMNS = (
    _AC.c.id, _AC.c.client_id, _AC.c.user_id, _AC.c.web_session_id, _AC.c.redirect_uri,
    _AC.c.scope, _AC.c.audience, _AC.c.nonce, _AC.c.code_challenge, _AC.c.auth_time,
    _AC.c.expires_at, _AC.c.consumed_at, _AC.c.family_id,
)
_OF_CLIENT, _OF_USER = Client.id == _AC.c.client_id, User.id == _AC.c.user_id
_CLAIM = (
    update(_AC)
    .where(_AC.c.code_hash == bindparam("presented_hash"), _AC.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("now", type_=UTCDateTime()),
            family_id=bindparam("family_id", type_=String()))
    .returning(
        *_CODE_COLUMNS,
        _of(Client.secret_hash, _OF_CLIENT, "client_secret_hash"),
        _of(Client.kind, _OF_CLIENT, "client_kind"),
        _of(Client.disabled_at, _OF_CLIENT, "client_disabled_at"),
        _of(User.disabled_at, _OF_USER, "user_disabled_at"),
        _of(User.email, _OF_USER, "user_email"),
        _of(User.email_verified, _OF_USER, "user_email_verified"),
        _of(User.first_name, _OF_USER, "user_first_name"),
        _of(User.last_name, _OF_USER, "user_last_name"),
        _of(WebSession.revoked_at, WebSession.id == _AC.c.web_session_id,
            "web_session_revoked_at"),
    )
)


def _looks_like_a_code(value: str | None) -> bool:
    return bool(value) and len(value) <= MAX_CODE_LENGTH and value.isascii()


def claim(session: DbSession, value: str | None, family_id: str) -> Row | None:
    """Mark the unused code `value` used by the family `family_id` and return it with its
    client, user and session state; None if no such unused code (absurd values: no query)."""
    if not _looks_like_a_code(value):
        return None
    return session.connection().execute(_CLAIM, {
        "presented_hash": token_hash(value), "now": now_utc(), "family_id": family_id}).first()


def presented(session: DbSession, value: str | None) -> Row | None:
    """The code with its client, user and session state, or None: after a failed claim, tells
    a code never issued from one used before (a replay)."""
    if not _looks_like_a_code(value):
        return None
    return session.connection().execute(_PRESENTED, {"code_hash": token_hash(value)}).first()


def s256(verifier: str) -> str:
    """BASE64URL(SHA-256(ASCII(verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(challenge: str, verifier: str) -> bool:
    """Whether `verifier` is well formed and hashes to `challenge` (constant time)."""
    return bool(VERIFIER.match(verifier)) and hmac.compare_digest(s256(verifier), challenge)
