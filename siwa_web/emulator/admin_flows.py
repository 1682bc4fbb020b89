"""`/__emulator/` simulations of what happens off the web: native sign-in, Settings, mail."""
from __future__ import annotations

from typing import Any

from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue

from . import notify
from .admin import BadInput
from .admin import body
from .admin import bp
from .admin import find_user
from .admin import get
from .admin import new_user
from .admin import user_json
from .authorize import USER_SCOPES
from .issue import Consent
from .issue import native_credential
from .state import AppleUser
from .state import EmulatorState
from .web import current_state


def _user(state: EmulatorState, data: dict[str, Any]) -> AppleUser:
    """An existing user (`user_id`/`sub`) or a new one from `email`, `first_name`, `last_name`."""
    if data.get("user_id") is not None or data.get("sub") is not None:
        return find_user(state, data)
    return new_user(state, data)


def _scopes(data: dict[str, Any]) -> frozenset[str]:
    words = frozenset(get(data, "scope", str, "name email").split())
    if not words <= USER_SCOPES:
        raise BadInput("scope may contain only name and email")
    return words


@bp.post("/native/authorize")
def native_authorize() -> ResponseReturnValue:
    """Mint what a device receives for `bundle_id`; `nonce` is sent as the device sends it."""
    state = current_state()
    data = body()
    bundle_id = get(data, "bundle_id", str, "")
    if not state.settings.is_bundle_id(bundle_id):
        raise BadInput("bundle_id is not a registered bundle id")
    scopes = _scopes(data)
    nonce = get(data, "nonce", str)
    consent = Consent(get(data, "share_email", bool, True), get(data, "edited_first_name", str),
                      get(data, "edited_last_name", str))
    user = _user(state, data)
    return jsonify(native_credential(state, bundle_id, user, nonce, scopes, consent))


@bp.post("/next-login")
def next_login() -> ResponseReturnValue:
    """Queue a headless answer for the next `/auth/authorize`: a user's choices, or a cancel."""
    state = current_state()
    data = body()
    script: dict[str, Any] = {"cancel": get(data, "cancel", bool, False),
                              "share_email": get(data, "share_email", bool, True),
                              "edited_first_name": get(data, "edited_first_name", str),
                              "edited_last_name": get(data, "edited_last_name", str)}
    if not script["cancel"]:
        script["user_id"] = _user(state, data).id
    with state.lock:
        state.next_logins.append(script)
        return jsonify(queued=len(state.next_logins), user_id=script.get("user_id"))


@bp.post("/users/<user_id>/revoke")
def settings_revoke(user_id: str) -> ResponseReturnValue:
    """The user taps "Stop using Apple ID" in Settings; `consent-revoked` follows if wanted."""
    state = current_state()
    data = body()
    user = find_user(state, {"user_id": user_id})
    wanted = get(data, "notify", bool, state.settings.notification_url is not None)
    if wanted:
        result = notify.fire(state, user, "consent-revoked", get(data, "aud", str))
    else:
        result = None
        state.revoke_user(user.id)
    with state.lock:
        return jsonify(user=user_json(state, user), notification=result)


@bp.route("/notifications", methods=["GET", "POST"])
def notifications() -> ResponseReturnValue:
    """POST fires one event to notification_url (or `url`); GET lists what was sent."""
    state = current_state()
    if request.method == "GET":
        with state.lock:
            return jsonify(notifications=list(state.notifications))
    data = body()
    event_type = get(data, "type", str, "")
    if event_type not in notify.EVENT_TYPES:
        raise BadInput(f"type must be one of {', '.join(notify.EVENT_TYPES)}")
    user = find_user(state, data)
    result = notify.fire(state, user, event_type, get(data, "aud", str), get(data, "url", str))
    return jsonify(result)
