"""Server-side web sessions behind Flask-Login, so any session can be revoked at once.

The signed Flask cookie carries only a random session token; its SHA-256 names a `web_sessions`
row that is checked on every request. A new token is minted at every sign-in (no fixation).
"""
from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask_login import login_user
from flask_login import logout_user
from sqlalchemy import select
from sqlalchemy import update

from .crypto import new_token
from .crypto import token_hash
from .extensions import db
from .extensions import login_manager
from .models import AppleIdentity
from .models import User
from .models import WebSession
from .models.base import now_utc


def start(user: User, identity: AppleIdentity | None) -> WebSession:
    """Create a session row and log the browser in with a fresh token; caller commits."""
    token = new_token()
    row = WebSession(
        token_hash=token_hash(token),
        user=user,
        identity_id=identity.id if identity else None,
        ip=request.remote_addr,
        user_agent=(request.headers.get("User-Agent") or "")[:512] or None,
    )
    db.session.add(row)
    session.clear()  # nothing from before sign-in survives it
    user.session_token = token
    login_user(user)
    session.permanent = True
    g.web_session = row
    return row


def current() -> WebSession | None:
    """Return the web session row of this request, if signed in."""
    return g.get("web_session")


def end_current(reason: str = "logout") -> None:
    """Revoke this browser's session row and clear its cookie; caller commits."""
    row = current()
    if row is not None and row.revoked_at is None:
        row.revoked_at = now_utc()
        row.revoked_reason = reason
    logout_user()
    session.clear()


def revoke_for_user(user_id: str, reason: str, *, keep: str | None = None) -> int:
    """Revoke every live session of a user except `keep`; caller commits. Returns the count."""
    stmt = (
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now_utc(), revoked_reason=reason)
    )
    if keep is not None:
        stmt = stmt.where(WebSession.id != keep)
    return db.session.execute(stmt).rowcount


def is_alive(row: WebSession) -> bool:
    """Return whether a session is neither revoked nor past its idle or absolute limit."""
    cfg = current_app.config
    now = now_utc()
    return (
        row.revoked_at is None
        and row.user.is_active
        and now - row.created_at < timedelta(seconds=cfg["SESSION_ABSOLUTE_TIMEOUT"])
        and now - row.last_seen_at < timedelta(seconds=cfg["SESSION_IDLE_TIMEOUT"])
    )


def _load(token: str) -> User | None:
    row = db.session.execute(
        select(WebSession).where(WebSession.token_hash == token_hash(token))
    ).scalar_one_or_none()
    if row is None or not is_alive(row):
        return None
    now = now_utc()
    if (now - row.last_seen_at).total_seconds() > current_app.config["SESSION_TOUCH_INTERVAL"]:
        row.last_seen_at = now
        row.ip = request.remote_addr
        db.session.commit()
    g.web_session = row
    user = row.user
    user.session_token = token
    return user


def _unauthorized():
    """Send browsers to the sign-in page, remembering where they wanted to go."""
    if session.get("_user_id"):
        session.clear()
        flash("Your session has ended. Please sign in again.", "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = None  # the server-side row is the protection
    login_manager.user_loader(_load)
    login_manager.unauthorized_handler(_unauthorized)
