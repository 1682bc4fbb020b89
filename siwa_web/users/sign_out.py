"""Ending siwa-web browser sessions: the one path every sign-out takes, whoever starts it.

The browser's own sign-out, the dashboard, Apple's notifications, unlinking and deleting an
account all end sessions here, so each ending does the same three things in the caller's
transaction:

* the session rows are marked revoked (the cookie stops working at once);
* app sessions of web apps that signed in through them without offline access end too —
  they were only ever meant to last as long as the sign-in (back-channel logout §2.7);
* every web app that got tokens through them and registered a back-channel logout URI is
  queued a logout token (`backchannel_logouts`), sent after the commit by the outbox
  (`lifecycle/backchannel.py`) — never before, and never holding up the person.

The browser's own sign-out also clears its cookie (`web.sessions.end_current`).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy import update

from ..infra.extensions import db
from ..models import BackchannelLogout
from ..models import Client
from ..models import TokenFamily
from ..models import WebSession
from ..models.base import now_utc
from ..oauth import consents
from ..oauth.refresh import revoke_family_id
from ..oauth.scopes import OFFLINE_ACCESS

#: session.info key: logout rows queued in this transaction, delivered after it commits.
PENDING_LOGOUTS = "siwa_backchannel_logouts"


def end_sessions(*criteria: Any, reason: str) -> list[str]:
    """End the live web sessions matching `criteria`; returns their ids. Caller commits."""
    ended = [row.id for row in db.session.execute(
        update(WebSession)
        .where(WebSession.revoked_at.is_(None), *criteria)
        .values(revoked_at=now_utc(), revoked_reason=reason[:40])
        .returning(WebSession.id)
        .execution_options(synchronize_session=False)
    )]
    if ended:
        _end_app_sessions_of(ended)
        _queue_logouts(ended)
    return ended


def end_web_sessions(user_id: str, reason: str, *, keep: str | None = None) -> int:
    """End every live session of a user except `keep`; returns the count. Caller commits."""
    criteria = [WebSession.user_id == user_id]
    if keep is not None:
        criteria.append(WebSession.id != keep)
    return len(end_sessions(*criteria, reason=reason))


def _end_app_sessions_of(session_ids: list[str]) -> None:
    """Web apps' families without offline access end with the sign-in they came from."""
    families = db.session.execute(
        select(TokenFamily.id, TokenFamily.scope)
        .where(TokenFamily.web_session_id.in_(session_ids), TokenFamily.revoked_at.is_(None))
    ).all()
    for family_id, scope in families:
        if OFFLINE_ACCESS not in scope.split():
            revoke_family_id(db.session, family_id, "signed out")


def _queue_logouts(session_ids: list[str]) -> None:
    """One outbox row per (session, web app with a back-channel URI) that got tokens in it."""
    pairs = db.session.execute(
        select(TokenFamily.web_session_id, TokenFamily.client_id, TokenFamily.user_id)
        .join(Client, Client.id == TokenFamily.client_id)
        .where(TokenFamily.web_session_id.in_(session_ids),
               Client.backchannel_logout_uri.is_not(None), Client.disabled_at.is_(None))
        .distinct()
    ).all()
    _enqueue([BackchannelLogout(client_id=client_id, user_id=user_id, sid=sid)
              for sid, client_id, user_id in pairs])


def _enqueue(rows: list[BackchannelLogout]) -> None:
    """Add outbox rows and mark them for delivery once this transaction commits."""
    if rows:
        db.session.add_all(rows)
        db.session.flush()
        db.session.info.setdefault(PENDING_LOGOUTS, []).extend(r.id for r in rows)


def disconnect_app(user_id: str, client_id: str) -> int:
    """Disconnect a web app: forget what the user allowed it, end every sign-in of it and tell
    it by back-channel logout (one token per siwa-web session it signed in through).
    Returns how many live sign-ins ended. Caller commits."""
    consents.forget(db.session, user_id, client_id)
    families = db.session.execute(
        select(TokenFamily.id, TokenFamily.web_session_id)
        .where(TokenFamily.user_id == user_id, TokenFamily.client_id == client_id)
    ).all()
    ended = sum(1 for family_id, _ in families
                if revoke_family_id(db.session, family_id, "app disconnected") is not None)
    sids = sorted({sid for _, sid in families if sid is not None})
    backchannel = db.session.scalar(select(Client.backchannel_logout_uri).where(
        Client.id == client_id, Client.disabled_at.is_(None)))
    if backchannel:
        _enqueue([BackchannelLogout(client_id=client_id, user_id=user_id, sid=sid)
                  for sid in sids])
    return ended
