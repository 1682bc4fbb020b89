"""Ending a user's web sessions from outside their browser: deletion, Apple's events, the dashboard.

The browser's own sign-out, which also clears its cookie, is `web.sessions.end_current`.
"""
from __future__ import annotations

from sqlalchemy import update

from ..infra.extensions import db
from ..models import WebSession
from ..models.base import now_utc


def end_web_sessions(user_id: str, reason: str, *, keep: str | None = None) -> int:
    """Revoke every live session of a user except `keep`; caller commits. Returns the count."""
    stmt = (
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now_utc(), revoked_reason=reason)
    )
    if keep is not None:
        stmt = stmt.where(WebSession.id != keep)
    return db.session.execute(stmt).rowcount
