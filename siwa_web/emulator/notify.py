"""Server-to-server notifications: apply the event, sign it, POST `{"payload": JWS}` once."""
from __future__ import annotations

import logging
from typing import Any

import requests

from .state import AppleUser
from .state import EmulatorState
from .tokens import notification

log = logging.getLogger(__name__)
EVENT_TYPES = ("email-enabled", "email-disabled", "consent-revoked", "account-delete",
               "account-deleted")
REVOKING = frozenset({"consent-revoked", "account-delete", "account-deleted"})
EMAIL_EVENTS = frozenset({"email-enabled", "email-disabled"})
TIMEOUT = 5.0


def _event(state: EmulatorState, user: AppleUser, event_type: str) -> dict[str, Any]:
    """Apple's `events` object; event_time is in milliseconds as in real deliveries."""
    event: dict[str, Any] = {"type": event_type, "sub": user.sub,
                             "event_time": int(state.now() * 1000)}
    if event_type in EMAIL_EVENTS:
        event["email"] = user.relay_email
        style = state.claims.is_private_email
        if style != "omit":
            event["is_private_email"] = "true" if style == "string" else True
    return event


def _apply(state: EmulatorState, user: AppleUser, event_type: str) -> None:
    """What happened at Apple before it notified: revocation or relay forwarding change."""
    if event_type in REVOKING:
        state.revoke_user(user.id)
    elif event_type in EMAIL_EVENTS:
        user.forwarding = event_type == "email-enabled"


def default_audience(state: EmulatorState, user: AppleUser) -> str:
    """The client the user last signed in with, else a bundle id, else a Services ID."""
    last = state.authorization(user.id).last_client_id
    if last:
        return last
    bundle_ids = list(state.settings.bundle_ids())
    return bundle_ids[0] if bundle_ids else next(iter(state.settings.services), "")


def fire(
    state: EmulatorState,
    user: AppleUser,
    event_type: str,
    aud: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Send one notification synchronously; the HTTP call runs outside the lock."""
    with state.lock:
        _apply(state, user, event_type)
        aud = aud or default_audience(state, user)
        payload = notification(state, aud, _event(state, user, event_type))
    target = url or state.settings.notification_url
    result: dict[str, Any] = {"type": event_type, "sub": user.sub, "aud": aud, "url": target,
                              "payload": payload, "status": None, "delivered": False,
                              "error": None}
    if not target:
        result["error"] = "no notification_url configured"
    else:
        try:
            response = requests.post(target, json={"payload": payload}, timeout=TIMEOUT)
            result["status"] = response.status_code
            result["delivered"] = response.status_code == 200
        except requests.RequestException as exc:
            log.warning("emulator: notification to %s failed: %s", target, exc,
                        extra={"event": "emulator"})
            result["error"] = f"{type(exc).__name__}: {exc}"
    with state.lock:
        state.notifications.append(result)
    return result
