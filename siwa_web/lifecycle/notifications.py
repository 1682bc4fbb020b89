"""Apple's server-to-server notifications: consent revoked, Apple account deleted, relay on/off.

Apple retries anything but a 200, so every well-formed, genuine notification is answered 200 —
including unknown types, unknown users (no existence oracle) and apps we do not serve (an
`aud` that is neither our Services ID nor a registered bundle id: logged, never applied). Each
is recorded by `jti` with the app it was for and what was done, so a repeat does nothing.
Forged or malformed ones get 400 and change nothing. A notification never signs anyone in
(ASVS 7.6.2).
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
from ..models.base import now_utc
from ..users import accounts
from ..users import apple_access
from ..users import audit
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
        log.warning("apple notification refused: %s", exc.reason,
                    extra={"event": "notification_refused", "reason": exc.reason})
        return _error("The notification could not be verified.")
    _apply(event)
    return "", 200


def _verify(payload: str) -> AppleEvent:
    """Check signature, issuer and times; any one `aud` passes here and is mapped in `_apply`."""
    client = apple_client()
    return verify_notification(payload, client.keys, audiences=None,
                               issuers=client.settings.issuers, leeway=client.settings.leeway)


def _app_for(aud: str) -> tuple[bool, str | None]:
    """(known, our client id) for Apple's `aud`: the website's Services ID maps to no client of
    ours, a native app's bundle id to its client; anything else is an app we do not serve."""
    if aud == current_app.config["APPLE_SERVICES_ID"]:
        return True, None
    client_id = db.session.scalar(select(Client.id).where(Client.bundle_id == aud))
    return client_id is not None, client_id


def _outcome(event: AppleEvent, known_app: bool,
             identity: AppleIdentity | None) -> str:
    if not known_app:
        return "unknown_aud"
    if event.type not in HANDLERS:
        return "unknown_type"
    return "unknown_sub" if identity is None else "applied"


def _apply(event: AppleEvent) -> None:
    """Record the jti with its app and outcome, and act, in one transaction; a duplicate jti
    turns into a no-op. Events for an app we do not know are recorded, never applied."""
    known_app, client_id = _app_for(event.aud)
    identity = accounts.find_identity(event.sub) if known_app else None
    outcome = _outcome(event, known_app, identity)
    try:
        with db.session.begin_nested():
            db.session.add(NotificationEvent(jti=event.jti, type=event.type[:40], sub=event.sub,
                                             aud=event.aud, client_id=client_id,
                                             outcome=outcome))
            db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return  # already received
    if outcome != "applied":
        level = logging.WARNING if outcome == "unknown_aud" else logging.INFO
        log.log(level, "apple notification not applied (%s) for aud %s", outcome, event.aud[:100],
                extra={"event": "notification_ignored", "reason": outcome,
                       "type": event.type[:40]})
    else:
        HANDLERS[event.type](identity, event, client_id or event.aud)
    db.session.commit()


def _consent_revoked(identity: AppleIdentity, event: AppleEvent, client_id: str) -> None:
    apple_access.consent_withdrawn(identity, via="notification", client_id=client_id)


def _account_deleted(identity: AppleIdentity, event: AppleEvent, client_id: str) -> None:
    """Unlink the deleted Apple ID; an account left with no way to sign in is disabled."""
    user = identity.user
    apple_access.end_apple_access(identity, "apple account deleted")
    db.session.delete(identity)
    db.session.flush()
    db.session.refresh(user, ["identities"])
    if not user.identities:
        user.disabled_at = now_utc()
        end_web_sessions(user.id, "apple account deleted")
    audit.record("apple_account_deleted", user_id=user.id, client_id=client_id,
                 details={"disabled": user.disabled_at is not None})


def _email_forwarding(identity: AppleIdentity, event: AppleEvent, client_id: str) -> None:
    """Only the relay's forwarding flag changes; sessions are untouched (NTF-12)."""
    user = identity.user
    forwarding = event.type == "email-enabled"
    address = event.email or identity.email
    if identity.email is None or identity.email == address:
        identity.email_forwarding = forwarding
    if user.email and user.email == address:
        user.email_deliverable = forwarding
    audit.record(f"apple_{event.type.replace('-', '_')}", user_id=user.id, client_id=client_id)


HANDLERS = {
    "consent-revoked": _consent_revoked,
    "account-delete": _account_deleted,
    "account-deleted": _account_deleted,
    "email-disabled": _email_forwarding,
    "email-enabled": _email_forwarding,
}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
