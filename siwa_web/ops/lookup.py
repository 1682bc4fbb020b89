"""What support reads about accounts: finding them, and everything one account holds.

Plain dictionaries of metadata (times, addresses, client ids): never a token, hash or key.
`flask users find` and `flask users show` print them as text or JSON.
"""
from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm import selectinload

from ..infra.extensions import db
from ..models import AppleIdentity
from ..models import AuditEvent
from ..models import TokenFamily
from ..models import User
from ..models import WebSession
from ..models.base import now_utc
from ..models.events import code_for

FIND_LIMIT = 50
RECENT_EVENTS = 10


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def find_by_email(email: str) -> list[User]:
    """Users whose profile email, or one of whose Apple IDs' emails, is `email` (any case)."""
    wanted = email.strip().lower()
    via_identity = select(AppleIdentity.user_id).where(func.lower(AppleIdentity.email) == wanted)
    return _users(or_(func.lower(User.email) == wanted, User.id.in_(via_identity)))


def find_by_sub(sub: str) -> list[User]:
    """The user an Apple ID (its `sub`, exactly) is linked to."""
    return _users(User.id.in_(select(AppleIdentity.user_id).where(AppleIdentity.sub == sub)))


def find_by_id(user_id: str) -> list[User]:
    return _users(User.id == user_id)


def _users(condition: Any) -> list[User]:
    return list(db.session.scalars(
        select(User).where(condition).options(selectinload(User.identities))
        .order_by(User.created_at, User.id).limit(FIND_LIMIT)
    ))


def summary(user: User) -> dict[str, Any]:
    """One account in a line's worth of fields."""
    return {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "email_verified": user.email_verified,
        "is_private_email": user.is_private_email,
        "created_at": iso(user.created_at),
        "status": "active" if user.is_active else "disabled",
        "disabled_at": iso(user.disabled_at),
        "apple_ids": len(user.identities),
    }


def details(user: User) -> dict[str, Any]:
    """Everything support may see of one account: Apple IDs, sessions, recent events."""
    identities = list(db.session.scalars(
        select(AppleIdentity).where(AppleIdentity.user_id == user.id)
        .options(selectinload(AppleIdentity.apple_tokens)).order_by(AppleIdentity.created_at)
    ))
    web = list(db.session.scalars(
        select(WebSession).where(WebSession.user_id == user.id, WebSession.revoked_at.is_(None))
        .order_by(WebSession.last_seen_at.desc())
    ))
    apps = list(db.session.scalars(
        select(TokenFamily).options(joinedload(TokenFamily.client))
        .where(TokenFamily.user_id == user.id, TokenFamily.revoked_at.is_(None))
        .order_by(TokenFamily.last_used_at.desc())
    ))
    events = list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.user_id == user.id)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(RECENT_EVENTS)
    ))
    return {
        "user": summary(user),
        "identities": [{
            "id": i.id, "sub": i.sub, "email": i.email, "email_verified": i.email_verified,
            "is_private_email": i.is_private_email, "created_at": iso(i.created_at),
            "last_used_at": iso(i.last_used_at),
            "apple_tokens": [{"client_id": t.client_id,
                              "held": bool(t.refresh_token_encrypted) and t.invalidated_at is None}
                             for t in i.apple_tokens],
        } for i in identities],
        "web_sessions": [{
            "id": s.id, "live": _web_live(s), "created_at": iso(s.created_at),
            "auth_time": iso(s.auth_time), "last_seen_at": iso(s.last_seen_at), "ip": s.ip,
            "user_agent": s.user_agent, "identity_id": s.identity_id,
        } for s in web],
        "app_sessions": [{
            "id": f.id, "live": _app_live(f), "client_id": f.client_id,
            "client_name": f.client.name, "scope": f.scope, "created_at": iso(f.created_at),
            "last_used_at": iso(f.last_used_at), "expires_at": iso(f.expires_at), "ip": f.ip,
            "user_agent": f.user_agent,
        } for f in apps],
        "last_activity": _last_activity(user.id, identities, events),
        "recent_events": [{
            "at": iso(e.created_at), "code": code_for(e.event, e.outcome), "event": e.event,
            "outcome": e.outcome, "reason": e.reason,
            "client_id": e.client_id, "ip": e.ip,
        } for e in events],
    }


def _web_live(row: WebSession) -> bool:
    """Within its idle and absolute limits (the account being disabled aside)."""
    cfg, now = current_app.config, now_utc()
    return (now - row.created_at < timedelta(seconds=cfg["SESSION_ABSOLUTE_TIMEOUT"])
            and now - row.last_seen_at < timedelta(seconds=cfg["SESSION_IDLE_TIMEOUT"]))


def _app_live(row: TokenFamily) -> bool:
    now = now_utc()
    idle = timedelta(seconds=current_app.config["REFRESH_TOKEN_IDLE_TTL"])
    return row.expires_at > now and row.last_used_at > now - idle


def _last_activity(user_id: str, identities: list[AppleIdentity],
                   events: list[AuditEvent]) -> dict[str, str] | None:
    """The latest moment anything of the account was used, and what it was."""
    seen = db.session.scalar(select(func.max(WebSession.last_seen_at))
                             .where(WebSession.user_id == user_id))
    used = db.session.scalar(select(func.max(TokenFamily.last_used_at))
                             .where(TokenFamily.user_id == user_id))
    candidates = [
        (seen, "a web session was active"),
        (used, "an app used its session"),
        *((i.last_used_at, "signed in with Apple") for i in identities),
    ]
    own = next((e for e in events if not e.event.startswith("operator_")), None)
    if own is not None:  # what support did is not the account's activity
        candidates.append((own.created_at, own.event.replace("_", " ")))
    found = [(at, what) for at, what in candidates if at is not None]
    if not found:
        return None
    at, what = max(found, key=lambda pair: pair[0])
    return {"at": iso(at), "what": what}
