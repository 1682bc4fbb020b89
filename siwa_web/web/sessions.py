"""Server-side web sessions behind Flask-Login, so any session can be revoked at once.

The signed Flask cookie carries only a random session token; its SHA-256 names a `web_sessions`
row that is checked on every request. A new token is minted at every sign-in (no fixation).
"""
from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask import Request
from flask import Response
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import SessionMixin
from flask_login import login_user
from flask_login import logout_user
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from ..infra.crypto import new_token
from ..infra.crypto import token_hash
from ..infra.extensions import db
from ..infra.extensions import login_manager
from ..models import AppleIdentity
from ..models import User
from ..models import WebSession
from ..models.base import now_utc
from ..users.sign_out import end_sessions


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
    if row is not None and row.revoked_at is None and end_sessions(WebSession.id == row.id,
                                                                   reason=reason):
        set_committed_value(row, "revoked_at", now_utc())
        set_committed_value(row, "revoked_reason", reason)
    logout_user()
    session.clear()


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


# Built once: constructing the statement and its cache key on each request cost as much as
# running it (every signed-in page and every single-sign-on answer starts here). The user comes
# in the same query: it is always needed.
_BY_TOKEN_HASH = (select(WebSession).options(joinedload(WebSession.user))
                  .where(WebSession.token_hash == bindparam("token_hash")))


def _load(token: str) -> User | None:
    row = db.session.execute(_BY_TOKEN_HASH, {"token_hash": token_hash(token)}
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


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, without building a signer for requests that carry none.

    API calls and first visits have no session cookie; building the serializer for them, and
    the cookie settings for a response that sets none, cost a tenth of a Bearer-protected call.
    Requests to `sessionless_paths` (health probes) get an empty session too, whatever cookie
    they carry: it is neither read nor refreshed (Flask re-sends a permanent session's cookie
    on every request that opened it).
    """

    def __init__(self) -> None:
        self.sessionless_paths: set[str] = set()

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # Parsing the Cookie header walks the whole environ: skip it when there is none.
        if "HTTP_COOKIE" not in request.environ or request.path in self.sessionless_paths or \
                not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not session and not session.modified and not session.accessed:
            return  # nothing to send and nothing to vary on (Flask would return later, too)
        super().save_session(app, session, response)


def without_session(app: Flask, *paths: str) -> None:
    """Serve `paths` with an empty session: a browser's cookie is neither read nor refreshed."""
    interface = app.session_interface
    if not isinstance(interface, CookieSessionInterface):  # pragma: no cover - set by init_app
        raise RuntimeError("web sessions are not set up on this app")
    interface.sessionless_paths.update(paths)


def init_app(app: Flask) -> None:
    app.session_interface = CookieSessionInterface()
    login_manager.init_app(app)
    # We never issue remember-me cookies (sign-in is server-side sessions only), so the hook
    # that refreshes or clears them after every response has nothing to do.
    remember_hook = type(login_manager)._update_remember_cookie
    hooks = app.after_request_funcs.get(None, [])
    app.after_request_funcs[None] = [
        h for h in hooks if getattr(h, "__func__", None) is not remember_hook
    ]
    login_manager.session_protection = None  # the server-side row is the protection
    login_manager.user_loader(_load)
    login_manager.unauthorized_handler(_unauthorized)
