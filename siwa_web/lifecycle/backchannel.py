"""Back-channel logout: telling web apps, server to server, that a siwa-web session ended.

`users/sign_out.py` queues a row per (ended session, web app that got tokens through it and
registered a back-channel logout URI) in the transaction that ends the session. Right after
that transaction commits, a background thread posts each new row's logout token; the person's
request never waits for it. A failed delivery stays in the outbox and is retried with backoff
by `flask outbox retry` (cron), like Apple revocations.

A delivery is a `POST` of `logout_token=<JWT>` (form-encoded) to the app's URI, with short
connect and read timeouts and no redirects followed; 200 or 204 is success (the app may also
answer 200 for a session it no longer knows). The token is signed afresh for each attempt.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import requests
from flask import Flask
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..infra.extensions import db
from ..models import BackchannelLogout
from ..models import Client
from ..oauth import tokens
from ..tokens.extension import EXTENSION
from ..users.sign_out import PENDING_LOGOUTS
from .outbox import Outbox
from .outbox import SendFailed

log = logging.getLogger(__name__)
_http = threading.local()


def _session() -> requests.Session:
    """One pooled HTTP session per thread; environment proxies are honoured as for Apple."""
    found = getattr(_http, "session", None)
    if found is None:
        found = _http.session = requests.Session()
    return found


def _deliver(row: BackchannelLogout) -> dict[str, Any] | None:
    client = db.session.get(Client, row.client_id)
    if client is None or not client.backchannel_logout_uri or client.disabled_at is not None:
        return {"skipped": "client gone or without a back-channel URI"}
    server = current_app.extensions[EXTENSION]
    token = tokens.issue_logout_token(server.keys, server.settings, user_id=row.user_id,
                                      client_id=client.id, session_id=row.sid)
    cfg = current_app.config
    try:
        response = _session().post(
            client.backchannel_logout_uri, data={"logout_token": token},
            timeout=(float(cfg["BACKCHANNEL_LOGOUT_CONNECT_TIMEOUT"]),
                     float(cfg["BACKCHANNEL_LOGOUT_READ_TIMEOUT"])),
            allow_redirects=False, headers={"Cache-Control": "no-store"})
    except requests.RequestException as exc:
        raise SendFailed(f"{type(exc).__name__} posting to the app") from None
    if response.status_code not in (200, 204):
        raise SendFailed(f"the app answered HTTP {response.status_code}")
    return {"sid": row.sid}


BACKCHANNEL_LOGOUTS = Outbox(
    model=BackchannelLogout, label="Back-channel logout", event="backchannel_logout",
    prefix="BACKCHANNEL_LOGOUT", send_one=_deliver, logger=log)
DEFAULTS = {
    **BACKCHANNEL_LOGOUTS.defaults(base=30, cap=3600, alert=6, lease=60),
    "BACKCHANNEL_LOGOUT_CONNECT_TIMEOUT": 2,
    "BACKCHANNEL_LOGOUT_READ_TIMEOUT": 3,
    "BACKCHANNEL_LOGOUT_DELIVERY": "background",  # or "inline" (after commit, same thread)
}


def send_due(ids: list[str] | None = None, *, limit: int = 500):
    return BACKCHANNEL_LOGOUTS.send_due(ids, limit=limit)


def _after_commit(session: Session) -> None:
    ids = session.info.pop(PENDING_LOGOUTS, None)
    if not ids:
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["BACKCHANNEL_LOGOUT_DELIVERY"] == "inline":
        _deliver_now(app, list(ids))  # after this commit, in this request (tests, tools)
        return
    threading.Thread(target=_deliver_now, args=(app, list(ids)), daemon=True,
                     name="siwa-backchannel").start()


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING_LOGOUTS, None)


def _deliver_now(app: Flask, ids: list[str]) -> None:
    """Send the rows one request just committed; failures stay in the outbox for cron."""
    with app.app_context():
        try:
            BACKCHANNEL_LOGOUTS.send_due(ids)
        except Exception:  # noqa: BLE001 - a background thread must not die loudly; cron retries
            log.exception("back-channel logout delivery failed; the outbox keeps the rows",
                          extra={"event": "backchannel_delivery_crash"})
        finally:
            db.session.remove()


def init_app(app: Flask) -> None:
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    for name, listener in (("after_commit", _after_commit), ("after_rollback", _after_rollback)):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)
