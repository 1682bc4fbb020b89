"""How `state` and `nonce` survive Apple's cross-site form_post (decision D9), in one place.

Apple answers with a cross-site top-level POST, on which browsers do not send our
`SameSite=Lax` session cookie. Rather than loosening that cookie, each trip to Apple gets a
server-side row (state hash, nonce, next URL) plus a dedicated short-lived cookie that is
`SameSite=None; Secure; HttpOnly`, scoped to the callback path, and holds only a random
browser secret. The callback accepts a `state` only from the browser that holds its secret
(login CSRF), only once (compare-and-set on `consumed_at`), and only within the TTL.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from flask import Response
from flask import current_app
from flask import request
from sqlalchemy import select
from sqlalchemy import update

from ..infra.crypto import new_token
from ..infra.crypto import token_hash
from ..infra.extensions import db
from ..models import LoginTransaction
from ..models.base import now_utc

CALLBACK_PATH = "/auth/apple/callback"
PLAIN_HTTP_COOKIE = "siwa_tx_http"  # development over http only: see set_cookie
STATE_MAX = 128


class StateError(Exception):
    """The callback's `state` is missing, unknown, foreign, expired or replayed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Started:
    """What the login view needs to send the browser to Apple."""

    state: str
    nonce: str
    browser_secret: str


def cookie_name() -> str:
    return "__Secure-siwa-tx" if current_app.config["SESSION_COOKIE_SECURE"] else "siwa_tx"


def begin(purpose: str, next_url: str, user_id: str | None = None) -> Started:
    """Store a new transaction and return its secrets; caller commits and sets the cookie."""
    started = Started(state=new_token(), nonce=new_token(), browser_secret=new_token())
    ttl = current_app.config["LOGIN_TRANSACTION_TTL"]
    db.session.add(
        LoginTransaction(
            state_hash=token_hash(started.state),
            browser_hash=token_hash(started.browser_secret),
            nonce=started.nonce,
            next_url=next_url,
            purpose=purpose,
            user_id=user_id,
            expires_at=now_utc() + timedelta(seconds=ttl),
        )
    )
    return started


def set_cookie(response: Response, started: Started) -> None:
    """Hand the browser its secret for this transaction (the only SameSite=None cookie).

    Over plain http (development only: production is https) Safari keeps no `Secure` cookie,
    not even on localhost, so the same secret also goes in a `SameSite=Lax` cookie without
    `Secure`. Browsers send that one on the emulator's same-site POST back (`make run` serves
    the emulator from this very origin); a real Apple, cross-site, is reached over https only.
    """
    ttl = current_app.config["LOGIN_TRANSACTION_TTL"]
    response.set_cookie(cookie_name(), started.browser_secret, max_age=ttl, path=CALLBACK_PATH,
                        secure=True, httponly=True, samesite="None")
    if not _https():
        response.set_cookie(PLAIN_HTTP_COOKIE, started.browser_secret, max_age=ttl,
                            path=CALLBACK_PATH, secure=False, httponly=True, samesite="Lax")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(cookie_name(), path=CALLBACK_PATH, secure=True, httponly=True,
                           samesite="None")
    if not _https():
        response.delete_cookie(PLAIN_HTTP_COOKIE, path=CALLBACK_PATH, httponly=True,
                               samesite="Lax")


def _https() -> bool:
    return bool(current_app.config["SESSION_COOKIE_SECURE"])


def _browser_secret() -> str:
    secret = request.cookies.get(cookie_name(), "")
    if not secret and not _https():
        secret = request.cookies.get(PLAIN_HTTP_COOKIE, "")
    return secret


def consume(state: str | None) -> LoginTransaction:
    """Return the transaction for `state` after binding it to this browser and using it up.

    The row is marked consumed and committed before Apple is called, so a replayed callback
    is refused even if this one fails later on.
    """
    if not state:
        raise StateError("missing state")
    if len(state) > STATE_MAX:
        raise StateError("malformed state")
    tx = db.session.execute(
        select(LoginTransaction).where(LoginTransaction.state_hash == token_hash(state))
    ).scalar_one_or_none()
    if tx is None:
        raise StateError("unknown state")
    secret = _browser_secret()
    if not hmac.compare_digest(token_hash(secret), tx.browser_hash):
        raise StateError("state issued to another browser")
    if tx.consumed_at is not None:
        raise StateError("state already used")
    if tx.expires_at <= now_utc():
        raise StateError("state expired")
    won = db.session.execute(
        update(LoginTransaction)
        .where(LoginTransaction.id == tx.id, LoginTransaction.consumed_at.is_(None))
        .values(consumed_at=now_utc())
    ).rowcount
    db.session.commit()
    if won != 1:
        raise StateError("state already used")
    return tx
