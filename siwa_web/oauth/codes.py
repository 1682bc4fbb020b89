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

from sqlalchemy import select
from sqlalchemy import update

from ..infra.crypto import new_token
from ..infra.crypto import token_hash
from ..models import AuthorizationCode
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
    """Store a new code and return its value (sent to the browser once, never stored)."""
    value = new_token(32)
    now = now_utc()
    session.add(AuthorizationCode(
        code_hash=token_hash(value), client_id=client_id, user_id=user_id,
        web_session_id=web_session_id, redirect_uri=redirect_uri, scope=scope,
        audience=audience, nonce=nonce, code_challenge=code_challenge, auth_time=auth_time,
        created_at=now, expires_at=now + timedelta(seconds=ttl),
    ))
    return value


def find(session: DbSession, value: str | None) -> AuthorizationCode | None:
    """The code row by its hash (exact match), or None; absurd values are not looked up."""
    if not value or len(value) > MAX_CODE_LENGTH or not value.isascii():
        return None
    return session.execute(
        select(AuthorizationCode).where(AuthorizationCode.code_hash == token_hash(value))
    ).scalar_one_or_none()


def claim(session: DbSession, code: AuthorizationCode) -> bool:
    """Mark the code used; True only for the one request that did (compare-and-set)."""
    changed = session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code.id, AuthorizationCode.consumed_at.is_(None))
        .values(consumed_at=now_utc())
        .execution_options(synchronize_session=False)
    ).rowcount
    return changed == 1


def attach_family(session: DbSession, code: AuthorizationCode, family_id: str) -> None:
    """Remember what the redemption started, for revoking it if the code is replayed."""
    session.execute(
        update(AuthorizationCode).where(AuthorizationCode.id == code.id)
        .values(family_id=family_id).execution_options(synchronize_session=False)
    )


def s256(verifier: str) -> str:
    """BASE64URL(SHA-256(ASCII(verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(challenge: str, verifier: str) -> bool:
    """Whether `verifier` is well formed and hashes to `challenge` (constant time)."""
    return bool(VERIFIER.match(verifier)) and hmac.compare_digest(s256(verifier), challenge)


def find_by_id(session: DbSession, code_id: str) -> AuthorizationCode | None:
    """Re-read a code after losing the race to redeem it (to see the winner's family)."""
    return session.execute(
        select(AuthorizationCode).where(AuthorizationCode.id == code_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
