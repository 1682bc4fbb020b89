"""Authorization requests waiting for the person: found by a handle, bound to their browser.

The handle travels only in siwa-web's own URLs and forms (the sign-in page's `next`, the
consent form); the browser proves it started the request with a cookie scoped to
`/oauth/authorize` that holds a random secret, as login transactions do for Apple's trip.
"""
from __future__ import annotations

from datetime import datetime
from datetime import timedelta

from flask import Response
from flask import current_app
from flask import request
from sqlalchemy import select

from ..infra.crypto import new_token
from ..infra.crypto import token_hash
from ..infra.extensions import db
from ..models import PendingAuthorization
from ..models.base import now_utc
from ..oauth.authorize import AuthorizationRequest

COOKIE_PATH = "/oauth/authorize"
HANDLE_MAX = 64


def cookie_name() -> str:
    return "__Host-siwa-authz" if current_app.config["ISSUER"].startswith("https://") \
        else "siwa_authz"


def browser_secret() -> tuple[str, bool]:
    """This browser's secret, and whether it is new (then the response must set it)."""
    existing = request.cookies.get(cookie_name())
    if existing and 20 <= len(existing) <= 64:
        return existing, False
    return new_token(24), True


def set_cookie(response: Response, secret: str) -> None:
    https = current_app.config["ISSUER"].startswith("https://")
    response.set_cookie(cookie_name(), secret, path="/" if https else COOKIE_PATH,
                        secure=https, httponly=True, samesite="Lax",
                        max_age=int(current_app.config["LOGIN_TRANSACTION_TTL"]) * 2)


def store(req: AuthorizationRequest, secret: str, *, login_after: datetime | None) -> str:
    """Keep the request while the person signs in or decides; returns its handle."""
    handle = new_token(24)
    now = now_utc()
    db.session.add(PendingAuthorization(
        handle_hash=token_hash(handle), browser_hash=token_hash(secret),
        client_id=req.client_id, params=req.to_params(), login_after=login_after,
        created_at=now,
        expires_at=now + timedelta(seconds=int(current_app.config["LOGIN_TRANSACTION_TTL"])),
    ))
    return handle


def load(handle: str | None) -> PendingAuthorization | None:
    """The live request behind `handle` if this browser started it, else None."""
    if not handle or len(handle) > HANDLE_MAX:
        return None
    row = db.session.execute(select(PendingAuthorization).where(
        PendingAuthorization.handle_hash == token_hash(handle))).scalar_one_or_none()
    secret = request.cookies.get(cookie_name())
    if row is None or row.consumed_at is not None or row.expires_at <= now_utc():
        return None
    if not secret or token_hash(secret) != row.browser_hash:
        return None
    return row


def finish(row: PendingAuthorization) -> None:
    """Mark the request answered (a reload of the consent page cannot answer it twice)."""
    row.consumed_at = now_utc()
