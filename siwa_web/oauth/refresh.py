"""Refresh-token families: issue, rotate (compare-and-set), grace retries, reuse detection, revoke.

Semantics (decisions D2/D3 in docs/security.md):

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
from typing import Any

from sqlalchemy import CursorResult
from sqlalchemy import Executable
from sqlalchemy import Row
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from ..infra.crypto import TokenCipher
from ..infra.crypto import new_token
from ..infra.crypto import token_hash
from ..models import Client
from ..models import RefreshToken
from ..models import TokenFamily
from ..models import User
from ..models.base import UTCDateTime
from ..models.base import new_id
from ..models.base import now_utc
from .collaborators import DbSession
from .config import TokenSettings

MAX_REFRESH_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token."""

    family_id: str
    refresh_token: str  # the value to hand back (new, or the same successor on a grace retry)
    grace_retry: bool


class RefreshError(Exception):
    """The refresh token cannot be used; `reason` is for logs and audit (never the token)."""

    def __init__(self, reason: str, *, family_id: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.family_id = family_id


class ReuseDetected(RefreshError):
    """A used token was presented outside the grace rules; its family is now revoked."""


@dataclass(frozen=True)
class NewFamily:
    """A sign-in's app session as started: its id, start time and first refresh token (if any)."""

    id: str
    created_at: datetime
    refresh_token: str | None


def start_family(
    session: DbSession,
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
    web_session_id: str | None = None,
    auth_time: datetime | None = None,
    family_id: str | None = None,
) -> NewFamily:
    """Start an app session (and its first refresh token with offline access), as Core inserts.

    Without offline access the family lives only as long as its access token.
    """
    now = now_utc()
    ttl = settings.refresh_absolute_ttl if offline else settings.access_token_ttl
    expires = now + timedelta(seconds=ttl)
    params: dict[str, Any] = {
        "fam": family_id or new_id(), "user_id": user_id, "client_id": client_id,
        "identity_id": identity_id,
        "new_scope": scope, "audience": audience, "now": now, "expires": expires,
        "client_ip": _clip(ip, 64), "client_ua": _clip(user_agent, 512),
        "web_session_id": web_session_id, "auth_time": auth_time or now,
    }
    if not offline:
        _run(session, _START, **params)
        return NewFamily(params["fam"], now, None)
    value = new_token(32)
    params.update(new_id=new_id(), row_id=None, new_hash=token_hash(value),
                  idle=_idle_expiry(settings, expires, now))
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_START_WITH_TOKEN, params)
    else:
        connection.execute(_START, params)
        connection.execute(_ADD, params)
    return NewFamily(params["fam"], now, value)


def family_exists(session: DbSession, family_id: str) -> bool:
    """Whether the family is in the database (asked anew: not from the session's identity map)."""
    return _run(session, _FAMILY_EXISTS, family_id=family_id).first() is not None


def find(session: DbSession, value: str) -> RefreshToken | None:
    """Look a token up by its hash (exact match: no trimming or case folding)."""
    if not value or len(value) > MAX_REFRESH_TOKEN_LENGTH:
        return None
    family = joinedload(RefreshToken.family)
    return session.execute(
        select(RefreshToken)
        .options(family.joinedload(TokenFamily.user), family.joinedload(TokenFamily.client))
        .where(RefreshToken.token_hash == token_hash(value))
    ).scalar_one_or_none()


# The refresh grant's statements, built once and run as Core: it is the hottest write path, and
# the ORM's unit of work cost more than the SQL itself. None of them writes a column the Bearer
# check reads, so a refresh leaves the liveness caches alone (tokens/liveness_events.py).
_RT, _TF = RefreshToken.__table__, TokenFamily.__table__
_PRESENTED = (
    select(
        _RT.c.id, _RT.c.family_id, _RT.c.parent_id, _RT.c.scope, _RT.c.idle_expires_at,
        _RT.c.used_at, _RT.c.successor_encrypted,
        _TF.c.user_id, _TF.c.client_id, _TF.c.audience,
        func.coalesce(_TF.c.auth_time, _TF.c.created_at).label("family_auth_time"),
        _TF.c.expires_at.label("family_expires_at"), _TF.c.revoked_at.label("family_revoked_at"),
        User.disabled_at.label("user_disabled_at"), User.email, User.email_verified,
        User.first_name, User.last_name, Client.disabled_at.label("client_disabled_at"),
        Client.secret_hash.label("client_secret_hash"), _TF.c.web_session_id,
    )
    .join(_TF, _TF.c.id == _RT.c.family_id)
    .join(User, User.id == _TF.c.user_id)
    .join(Client, Client.id == _TF.c.client_id)
    .where(_RT.c.token_hash == bindparam("token_hash"))
)
_NOW = bindparam("now", type_=UTCDateTime())
_IS_ROW = _RT.c.id == bindparam("row_id")
# Claims the token (compare-and-set on used_at) and, in the same statement, forgets the
# grandparent's copy of it — the copy on its parent row, which must exist (ON DELETE CASCADE).
# So a successful claim changes 2 rows when the token has a parent and 1 when it has none.
_CLAIM = (
    update(_RT)
    .where(or_(and_(_IS_ROW, _RT.c.used_at.is_(None)), _RT.c.id == bindparam("parent")))
    .values(
        used_at=case((_IS_ROW, _NOW), else_=_RT.c.used_at),
        successor_encrypted=case((_IS_ROW, bindparam("sealed", type_=Text())), else_=None),
    )
)
_TOUCH = (
    update(_TF).where(_TF.c.id == bindparam("fam"))
    .values(last_used_at=_NOW, ip=bindparam("client_ip"), user_agent=bindparam("client_ua"))
)
_SUCCESSOR = {
    "id": bindparam("new_id", type_=String()), "family_id": bindparam("fam", type_=String()),
    "parent_id": bindparam("row_id", type_=String()),
    "token_hash": bindparam("new_hash", type_=String()),
    "scope": bindparam("new_scope", type_=String()), "created_at": _NOW,
    "idle_expires_at": bindparam("idle", type_=UTCDateTime()),
}
_ADD = insert(_RT).values(_SUCCESSOR)
# PostgreSQL runs claim, successor and touch as one statement (data-modifying CTEs): one round
# trip instead of three. The successor is inserted only if this request claimed the token.
_CLAIMED = _CLAIM.returning(_RT.c.id).cte("claimed")
_WON = select(_CLAIMED.c.id).where(_CLAIMED.c.id == bindparam("row_id"))
_ROTATE_AT_ONCE = (
    insert(_RT)
    .from_select(list(_SUCCESSOR), select(*_SUCCESSOR.values()).where(_WON.exists()))
    .add_cte(_CLAIMED)
    .add_cte(_TOUCH.where(_WON.exists()).cte("touched"))
    .execution_options(preserve_rowcount=True)  # SQLAlchemy keeps it only for UPDATE/DELETE
)
# A sign-in's family, and with offline access its first token: one statement on PostgreSQL.
_START = insert(_TF).values(
    id=bindparam("fam", type_=String()), user_id=bindparam("user_id", type_=String()),
    client_id=bindparam("client_id", type_=String()),
    identity_id=bindparam("identity_id", type_=String()),
    scope=bindparam("new_scope", type_=String()), audience=bindparam("audience", type_=String()),
    created_at=_NOW, last_used_at=_NOW, expires_at=bindparam("expires", type_=UTCDateTime()),
    ip=bindparam("client_ip", type_=String()), user_agent=bindparam("client_ua", type_=String()),
    web_session_id=bindparam("web_session_id", type_=String()),
    auth_time=bindparam("auth_time", type_=UTCDateTime()),
)
_START_WITH_TOKEN = (
    insert(_RT)
    .from_select(list(_SUCCESSOR), select(*_SUCCESSOR.values()))
    .add_cte(_START.cte("started"))
)
_USE_STATE = select(_RT.c.used_at, _RT.c.successor_encrypted).where(_RT.c.id == bindparam("row_id"))
_CHILD = select(_RT.c.token_hash, _RT.c.used_at).where(_RT.c.parent_id == bindparam("row_id"))
_FAMILY_EXISTS = select(TokenFamily.id).where(TokenFamily.id == bindparam("family_id"))


def find_presented(session: DbSession, value: str) -> Row | None:
    """The refresh grant's lookup: the token with its family, user and client, in one query."""
    if not value or len(value) > MAX_REFRESH_TOKEN_LENGTH:
        return None
    return _run(session, _PRESENTED, token_hash=token_hash(value)).first()


def _run(session: DbSession, statement: Executable, **params: Any) -> CursorResult:
    return session.connection().execute(statement, params)


def rotate(
    session: DbSession, settings: TokenSettings, row: Row, cipher: TokenCipher, *,
    ip: str | None = None, user_agent: str | None = None,
) -> Rotation:
    """Use `row` (from :func:`find_presented`) once: mint its successor, or replay it on a retry.

    The caller has already checked the client and scope. :raises RefreshError: (and
    :class:`ReuseDetected` after revoking the family).
    """
    now = now_utc()
    _check_family(row, now)
    used_at, sealed = row.used_at, row.successor_encrypted
    if used_at is None:
        if row.idle_expires_at <= now:
            raise RefreshError("idle_expired", family_id=row.family_id)
        value = new_token(32)
        if _claim(
            session,
            row_id=row.id, parent=row.parent_id, now=now, sealed=cipher.encrypt(value),
            new_id=new_id(), fam=row.family_id, new_hash=token_hash(value), new_scope=row.scope,
            idle=_idle_expiry(settings, row.family_expires_at, now),
            client_ip=_clip(ip, 64), client_ua=_clip(user_agent, 512),
        ):
            return Rotation(row.family_id, value, grace_retry=False)
        # Lost the race: another request rotated this token a moment ago. Read what it wrote.
        state = _run(session, _USE_STATE, row_id=row.id).first()
        if state is None:  # deleted meanwhile (its family pruned)
            raise RefreshError("refresh_token_unknown", family_id=row.family_id)
        used_at, sealed = state
    return _replay_or_revoke(session, settings, row, used_at, sealed, cipher, now)


def _claim(session: DbSession, **params: Any) -> bool:
    """Claim the token; if this request won, add its successor and touch the family."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return connection.execute(_ROTATE_AT_ONCE, params).rowcount == 1
    changed = connection.execute(_CLAIM, params).rowcount
    if changed != (1 if params["parent"] is None else 2):
        return False
    connection.execute(_ADD, params)
    connection.execute(_TOUCH, params)
    return True


def _replay_or_revoke(
    session: DbSession, settings: TokenSettings, row: Row, used_at: datetime | None,
    sealed: str | None, cipher: TokenCipher, now: datetime,
) -> Rotation:
    """A used token: the same successor for the immediate parent within the window, else revoke."""
    child = _run(session, _CHILD, row_id=row.id).first()
    in_grace = (
        settings.grace_seconds > 0
        and used_at is not None
        and now - used_at <= timedelta(seconds=settings.grace_seconds)
        and sealed is not None
        and child is not None
        and child.used_at is None
    )
    if in_grace:
        value = _decrypt(cipher, sealed)
        if value is not None and token_hash(value) == child.token_hash:
            return Rotation(row.family_id, value, grace_retry=True)
    revoke_family_id(session, row.family_id, "reuse_detected")
    raise ReuseDetected("reuse_detected", family_id=row.family_id)


def _decrypt(cipher: TokenCipher, ciphertext: str) -> str | None:
    try:
        return cipher.decrypt(ciphertext)
    except ValueError:  # encryption key retired: treat as if the window had passed
        return None


def _check_family(row: Row, now: datetime) -> None:
    if row.family_revoked_at is not None:
        raise RefreshError("family_revoked", family_id=row.family_id)
    if row.family_expires_at <= now:
        raise RefreshError("family_expired", family_id=row.family_id)
    if row.user_disabled_at is not None:
        raise RefreshError("user_disabled", family_id=row.family_id)


def _idle_expiry(settings: TokenSettings, family_expires_at: datetime, now: datetime) -> datetime:
    return min(now + timedelta(seconds=settings.refresh_idle_ttl), family_expires_at)


def _clip(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return "".join(ch if ch.isprintable() else "?" for ch in value)[:limit]


# --- revocation (also used by the dashboard; the caller commits) -------------------------------


def revoke_family(session: DbSession, family: TokenFamily, reason: str) -> bool:
    """Revoke every token of `family`; True if this call revoked it, False if it already was."""
    revoked_at = revoke_family_id(session, family.id, reason)
    if revoked_at is None:
        return False
    set_committed_value(family, "revoked_at", revoked_at)
    set_committed_value(family, "revoked_reason", reason[:40])
    return True


def revoke_family_id(session: DbSession, family_id: str, reason: str) -> datetime | None:
    """Revoke the family by id; returns when, or None if it already was revoked."""
    now = now_utc()
    changed = session.execute(  # revoked_at: every worker's liveness cache hears of it
        update(TokenFamily)
        .where(TokenFamily.id == family_id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason[:40])
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        return None
    _wipe_successors(session, [family_id])
    return now


def revoke_user_families(session: DbSession, user_id: str, reason: str) -> int:
    """Revoke every live family of a user (sign out everywhere); returns how many were revoked."""
    now = now_utc()
    ids = session.execute(
        select(TokenFamily.id)
        .where(TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None))
    ).scalars().all()
    if not ids:
        return 0
    changed = session.execute(
        update(TokenFamily)
        .where(TokenFamily.id.in_(ids), TokenFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason[:40])
        .execution_options(synchronize_session="fetch")
    ).rowcount
    _wipe_successors(session, ids)
    return changed


def _wipe_successors(session: DbSession, family_ids: list[str]) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id.in_(family_ids),
               RefreshToken.successor_encrypted.is_not(None))
        .values(successor_encrypted=None)
        .execution_options(synchronize_session=False)
    )


def family_is_alive(session: DbSession, family_id: str) -> bool:
    """One primary-key lookup: the family is unrevoked, unexpired and its user is active."""
    row = session.execute(
        select(TokenFamily.revoked_at, TokenFamily.expires_at, User.disabled_at)
        .join(User, User.id == TokenFamily.user_id)
        .where(TokenFamily.id == family_id)
    ).first()
    if row is None:
        return False
    return row.revoked_at is None and row.disabled_at is None and row.expires_at > now_utc()
