"""Refresh-token families: issue, rotate (compare-and-set), grace retries, reuse detection, revoke.

Semantics (decisions D2/D3, security reference §1.10):

* A refresh token is 256 random bits; only its SHA-256 is stored (`token_hash`, UNIQUE).
* Rotation is `UPDATE refresh_tokens SET used_at=now WHERE id=:id AND used_at IS NULL`; only
  the request that changes the row mints the successor, and `UNIQUE(parent_id)` makes a second
  successor impossible whatever the concurrency.
* The successor's value is kept encrypted on the parent (`successor_encrypted`) so that, within
  the grace window, a retry of the *immediate parent* (its child still unused) gets the very
  same successor back: no new row, nothing revoked. Concurrent refreshes of one token are such
  retries, so they all succeed with one successor.
* Any other presentation of a used token (the parent after the window, a grandparent at any
  time) revokes the whole family; APIs see it at once through the access token's `sid`.
* The family has an absolute lifetime; each token an idle lifetime. Scope can only shrink.

Everything here runs inside the caller's transaction; the caller commits.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from ..crypto import TokenCipher
from ..crypto import new_token
from ..crypto import token_hash
from ..extensions import db
from ..models import RefreshToken
from ..models import TokenFamily
from ..models import User
from ..models.base import now_utc
from .config import TokenSettings

MAX_REFRESH_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token."""

    token: RefreshToken
    family: TokenFamily
    refresh_token: str  # the value to hand back (new, or the same successor on a grace retry)
    grace_retry: bool


class RefreshError(Exception):
    """The refresh token cannot be used; `reason` is for logs and audit (never the token)."""

    def __init__(self, reason: str, *, family: TokenFamily | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.family = family


class ReuseDetected(RefreshError):
    """A used token was presented outside the grace rules; its family is now revoked."""


def create_family(
    settings: TokenSettings,
    *,
    user_id: str,
    client_id: str,
    identity_id: str | None,
    scope: str,
    audience: str,
    offline: bool,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> TokenFamily:
    """Start an app session. Without offline access it lives only as long as its access token."""
    now = now or now_utc()
    ttl = settings.refresh_absolute_ttl if offline else settings.access_token_ttl
    family = TokenFamily(
        user_id=user_id, client_id=client_id, identity_id=identity_id, scope=scope,
        audience=audience, created_at=now, last_used_at=now,
        expires_at=now + timedelta(seconds=ttl),
        ip=_clip(ip, 64), user_agent=_clip(user_agent, 512),
    )
    db.session.add(family)
    db.session.flush()
    return family


def issue(
    settings: TokenSettings, family: TokenFamily, *, scope: str, parent_id: str | None = None,
    value: str | None = None, now: datetime | None = None,
) -> tuple[RefreshToken, str]:
    """Add a refresh token to `family`; returns the row and the value (shown once, never stored)."""
    now = now or now_utc()
    value = value or new_token(32)
    row = RefreshToken(
        family_id=family.id, parent_id=parent_id, token_hash=token_hash(value), scope=scope,
        created_at=now, idle_expires_at=_idle_expiry(settings, family, now),
    )
    db.session.add(row)
    return row, value


def find(value: str) -> RefreshToken | None:
    """Look a token up by its hash (exact match: no trimming or case folding)."""
    if not value or len(value) > MAX_REFRESH_TOKEN_LENGTH:
        return None
    family = joinedload(RefreshToken.family)
    return db.session.execute(
        select(RefreshToken)
        .options(family.joinedload(TokenFamily.user), family.joinedload(TokenFamily.client))
        .where(RefreshToken.token_hash == token_hash(value))
    ).scalar_one_or_none()


def rotate(
    settings: TokenSettings, row: RefreshToken, cipher: TokenCipher, *,
    ip: str | None = None, user_agent: str | None = None,
) -> Rotation:
    """Use `row` once: mint its successor, or replay the successor on a grace retry.

    The caller has already checked the client and scope. :raises RefreshError: (and
    :class:`ReuseDetected` after revoking the family).
    """
    now = now_utc()
    family = row.family
    _check_family(family, now)
    if row.used_at is None:
        if row.idle_expires_at <= now:
            raise RefreshError("idle_expired", family=family)
        value = new_token(32)
        claimed = db.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
            .values(used_at=now, successor_encrypted=cipher.encrypt(value))
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed == 1:
            set_committed_value(row, "used_at", now)
            if row.parent_id is not None:  # the grandparent's copy is no longer needed
                db.session.execute(
                    update(RefreshToken).where(RefreshToken.id == row.parent_id)
                    .values(successor_encrypted=None)
                    .execution_options(synchronize_session=False)
                )
            issue(settings, family, scope=row.scope, parent_id=row.id, value=value, now=now)
            _touch(family, now, ip, user_agent)
            return Rotation(row, family, value, grace_retry=False)
        # Lost the race: another request rotated this token a moment ago. Read what it wrote.
        db.session.refresh(row)
    return _replay_or_revoke(settings, row, cipher, now)


def _replay_or_revoke(
    settings: TokenSettings, row: RefreshToken, cipher: TokenCipher, now: datetime
) -> Rotation:
    """A used token: the same successor for the immediate parent within the window, else revoke."""
    family = row.family
    child = db.session.execute(
        select(RefreshToken).where(RefreshToken.parent_id == row.id)
    ).scalar_one_or_none()
    in_grace = (
        settings.grace_seconds > 0
        and row.used_at is not None
        and now - row.used_at <= timedelta(seconds=settings.grace_seconds)
        and row.successor_encrypted is not None
        and child is not None
        and child.used_at is None
    )
    if in_grace:
        value = _decrypt(cipher, row.successor_encrypted)
        if value is not None and token_hash(value) == child.token_hash:
            return Rotation(row, family, value, grace_retry=True)
    revoke_family(family, "reuse_detected")
    raise ReuseDetected("reuse_detected", family=family)


def _decrypt(cipher: TokenCipher, ciphertext: str) -> str | None:
    try:
        return cipher.decrypt(ciphertext)
    except ValueError:  # encryption key retired: treat as if the window had passed
        return None


def _check_family(family: TokenFamily, now: datetime) -> None:
    if family.revoked_at is not None:
        raise RefreshError("family_revoked", family=family)
    if family.expires_at <= now:
        raise RefreshError("family_expired", family=family)
    if not family.user.is_active:
        raise RefreshError("user_disabled", family=family)


def _idle_expiry(settings: TokenSettings, family: TokenFamily, now: datetime) -> datetime:
    return min(now + timedelta(seconds=settings.refresh_idle_ttl), family.expires_at)


def _touch(family: TokenFamily, now: datetime, ip: str | None, user_agent: str | None) -> None:
    family.last_used_at = now
    family.ip = _clip(ip, 64)
    family.user_agent = _clip(user_agent, 512)


def _clip(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return "".join(ch if ch.isprintable() else "?" for ch in value)[:limit]


# --- revocation (also used by the dashboard; the caller commits) -------------------------------


def revoke_family(family: TokenFamily, reason: str) -> bool:
    """Revoke every token of `family`; True if this call revoked it, False if it already was."""
    now = now_utc()
    changed = db.session.execute(
        update(TokenFamily)
        .where(TokenFamily.id == family.id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason[:40])
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed:
        set_committed_value(family, "revoked_at", now)
        set_committed_value(family, "revoked_reason", reason[:40])
        _wipe_successors([family.id])
    return bool(changed)


def revoke_user_families(user_id: str, reason: str) -> int:
    """Revoke every live family of a user (sign out everywhere); returns how many were revoked."""
    now = now_utc()
    ids = db.session.execute(
        select(TokenFamily.id)
        .where(TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None))
    ).scalars().all()
    if not ids:
        return 0
    changed = db.session.execute(
        update(TokenFamily)
        .where(TokenFamily.id.in_(ids), TokenFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason[:40])
        .execution_options(synchronize_session="fetch")
    ).rowcount
    _wipe_successors(ids)
    return changed


def _wipe_successors(family_ids: list[str]) -> None:
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id.in_(family_ids),
               RefreshToken.successor_encrypted.is_not(None))
        .values(successor_encrypted=None)
        .execution_options(synchronize_session=False)
    )


def family_is_alive(family_id: str) -> bool:
    """One primary-key lookup: the family is unrevoked, unexpired and its user is active."""
    row = db.session.execute(
        select(TokenFamily.revoked_at, TokenFamily.expires_at, User.disabled_at)
        .join(User, User.id == TokenFamily.user_id)
        .where(TokenFamily.id == family_id)
    ).first()
    if row is None:
        return False
    return row.revoked_at is None and row.disabled_at is None and row.expires_at > now_utc()
