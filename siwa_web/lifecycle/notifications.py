"""Apple's server-to-server notifications: consent revoked, Apple account deleted, relay on/off.

Apple retries anything but a 200, so every well-formed, genuine notification is answered 200 —
including unknown types and unknown users (no existence oracle). Forged or malformed ones get
400 and change nothing. A notification never signs anyone in (ASVS 7.6.2).
"""
from __future__ import annotations

import logging

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..apple.errors import AppleUnavailable
from ..apple.errors import InvalidIdentityToken
from ..apple.notifications import AppleEvent
from ..apple.notifications import verify_notification
from ..infra.apple_client import apple_client
from ..infra.extensions import csrf
from ..infra.extensions import db
from ..models import AppleIdentity
from ..models import Client
from ..models import NotificationEvent
from ..models import TokenFamily
from ..models import WebSession
from ..models.base import now_utc
from ..oauth.refresh import revoke_family
from ..users import accounts
from ..users import audit
from ..users.sign_out import end_sessions
from ..users.sign_out import end_web_sessions

bp = Blueprint("apple_events", __name__, url_prefix="/apple")
log = logging.getLogger(__name__)
PAYLOAD_MAX = 16 * 1024
DELETED = ("account-delete", "account-deleted")


def _error(description: str, status: int = 400) -> ResponseReturnValue:
    return jsonify(error="invalid_request", error_description=description), status


@bp.post("/notifications")
@csrf.exempt  # Apple authenticates with the JWS signature, not a CSRF token
def receive() -> ResponseReturnValue:
    """Verify one notification and apply it exactly once."""
    body = request.get_json(silent=True)
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, str) or not payload or len(payload) > PAYLOAD_MAX:
        return _error("The body must be JSON with a signed `payload` string.")
    try:
        event = _verify(payload)
    except AppleUnavailable:
        return _error("Apple's keys are unavailable; retry later.", 503)
    except InvalidIdentityToken as exc:
        log.warning("apple notification refused: %s", exc.reason, extra={"reason": exc.reason})
        return _error("The notification could not be verified.")
    _apply(event)
    return "", 200


def _verify(payload: str) -> AppleEvent:
    client = apple_client()
    audiences = {current_app.config["APPLE_SERVICES_ID"]}
    audiences.update(db.session.execute(select(Client.bundle_id)).scalars())
    return verify_notification(payload, client.keys, audiences=audiences,
                               issuers=client.settings.issuers, leeway=client.settings.leeway)


def _apply(event: AppleEvent) -> None:
    """Record the jti and act in one transaction; a duplicate jti turns into a no-op."""
    identity = accounts.find_identity(event.sub)
    handler = HANDLERS.get(event.type)
    if identity is None or handler is None:
        log.info("apple notification ignored", extra={"event": event.type,
                                                       "reason": "unknown type or sub"})
        return
    try:
        with db.session.begin_nested():
            db.session.add(NotificationEvent(jti=event.jti, type=event.type, sub=event.sub))
            db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return  # already processed
    handler(identity, event)
    db.session.commit()


def _end_apple_access(identity: AppleIdentity, reason: str) -> None:
    """Apple invalidated this Apple ID's tokens: end what it opened and drop the dead tokens."""
    end_sessions(WebSession.identity_id == identity.id, reason=reason)
    families = db.session.execute(
        select(TokenFamily).where(TokenFamily.identity_id == identity.id)
    ).scalars()
    for family in families:
        revoke_family(db.session, family, reason)
    for token in list(identity.apple_tokens):
        db.session.delete(token)


def _consent_revoked(identity: AppleIdentity, event: AppleEvent) -> None:
    _end_apple_access(identity, "apple consent revoked")
    audit.record("apple_consent_revoked", user_id=identity.user_id,
                 details={"identity": identity.id})


def _account_deleted(identity: AppleIdentity, event: AppleEvent) -> None:
    """Unlink the deleted Apple ID; an account left with no way to sign in is disabled."""
    user = identity.user
    _end_apple_access(identity, "apple account deleted")
    db.session.delete(identity)
    db.session.flush()
    db.session.refresh(user, ["identities"])
    if not user.identities:
        user.disabled_at = now_utc()
        end_web_sessions(user.id, "apple account deleted")
    audit.record("apple_account_deleted", user_id=user.id,
                 details={"disabled": user.disabled_at is not None})


def _email_forwarding(identity: AppleIdentity, event: AppleEvent) -> None:
    """Only the deliverability flag changes; sessions are untouched (NTF-12)."""
    user = identity.user
    deliverable = event.type == "email-enabled"
    if user.email and user.email == (event.email or identity.email):
        user.email_deliverable = deliverable
    audit.record(f"apple_{event.type.replace('-', '_')}", user_id=user.id)


HANDLERS = {
    "consent-revoked": _consent_revoked,
    "account-delete": _account_deleted,
    "account-deleted": _account_deleted,
    "email-disabled": _email_forwarding,
    "email-enabled": _email_forwarding,
}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
