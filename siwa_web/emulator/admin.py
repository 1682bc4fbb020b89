"""`/__emulator/` test controls: users, reset, keys, clock, claim typing, failures, request log."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue

from .state import ENDPOINTS
from .state import AppleUser
from .state import EmulatorState
from .state import ForcedFailure
from .tokens import fingerprint
from .web import current_state

bp = Blueprint("admin", __name__, url_prefix="/__emulator")
BOOL_STYLES = ("boolean", "string")


class BadInput(Exception):
    """A malformed admin call: 400 with a description, never a stack trace."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status = status


@bp.errorhandler(BadInput)
def _bad_input(exc: BadInput) -> ResponseReturnValue:
    error = "not_found" if exc.status == 404 else "bad_request"
    return jsonify(error=error, error_description=str(exc)), exc.status


def body() -> dict[str, Any]:
    """The JSON object of the call; an empty body counts as `{}`."""
    if not request.get_data():
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadInput("send a JSON object with Content-Type: application/json")
    return data


def get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """Read an optional typed field (bools are not numbers here)."""
    value = data.get(key, default)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        raise BadInput(f"{key} has the wrong type")
    return value


def user_json(state: EmulatorState, user: AppleUser) -> dict[str, Any]:
    """A user with its consent and refresh-token fingerprints (never the tokens)."""
    authz = state.authorization(user.id)
    tokens = [t for t in state.tokens.values() if t.user_id == user.id and t.kind == "refresh"]
    return {
        "id": user.id, "sub": user.sub, "email": user.email, "relay_email": user.relay_email,
        "first_name": user.first_name, "last_name": user.last_name, "forwarding": user.forwarding,
        "authorization": {"status": authz.status, "scopes": sorted(authz.scopes),
                          "share_email": authz.share_email, "client_id": authz.last_client_id},
        "refresh_tokens": [{"sha256": fingerprint(t.value), "client_id": t.client_id,
                            "revoked": t.revoked} for t in tokens],
    }


def new_user(state: EmulatorState, data: dict[str, Any]) -> AppleUser:
    email = get(data, "email", str, "")
    if "@" not in email:
        raise BadInput("email is required")
    return state.add_user(email, get(data, "first_name", str, ""), get(data, "last_name", str, ""))


def find_user(state: EmulatorState, data: dict[str, Any]) -> AppleUser:
    """By `user_id` or `sub`; 404 when unknown."""
    user = state.find_user(get(data, "user_id", str), get(data, "sub", str))
    if user is None:
        raise BadInput("no such user", 404)
    return user


@bp.get("/users")
def list_users() -> ResponseReturnValue:
    """List test users with their consent state."""
    state = current_state()
    with state.lock:
        return jsonify(users=[user_json(state, u) for u in state.users.values()])


@bp.post("/users")
def create_user() -> ResponseReturnValue:
    """Create a test user: `{"email", "first_name", "last_name"}`."""
    state = current_state()
    user = new_user(state, body())
    with state.lock:
        return jsonify(user_json(state, user)), 201


@bp.get("/users/<user_id>")
def show_user(user_id: str) -> ResponseReturnValue:
    """Show one test user."""
    state = current_state()
    with state.lock:
        return jsonify(user_json(state, find_user(state, {"user_id": user_id})))


@bp.post("/reset")
def reset() -> ResponseReturnValue:
    """Forget everything but the signing keys (RPs keep their JWKS cache)."""
    state = current_state()
    state.reset()
    return jsonify(reset=True, kids=[k.kid for k in state.keys.keys])


@bp.post("/keys/rotate")
def rotate_keys() -> ResponseReturnValue:
    """Add a key that signs from now on; `{"drop_oldest": true}` unpublishes the oldest."""
    state = current_state()
    drop = get(body(), "drop_oldest", bool, False)
    with state.lock:
        kid = state.keys.add().kid
        dropped = state.keys.drop_oldest() if drop else None
        return jsonify(kid=kid, dropped=dropped, kids=[k.kid for k in state.keys.keys])


@bp.route("/clock", methods=["GET", "POST"])
def clock() -> ResponseReturnValue:
    """Shift Apple's clock: `{"offset": s}` sets it, `{"advance": s}` adds to it."""
    state = current_state()
    data = body()
    with state.lock:
        if "offset" in data:
            state.clock_offset = float(get(data, "offset", (int, float)))
        state.clock_offset += float(get(data, "advance", (int, float), 0))
        return jsonify(offset=state.clock_offset, now=state.now())


@bp.route("/claims", methods=["GET", "POST"])
def claims() -> ResponseReturnValue:
    """Pin claim typing: email_verified, is_private_email (or "omit"), id_token_lifetime."""
    state = current_state()
    data = body()
    style = state.claims
    verified = get(data, "email_verified", str, style.email_verified)
    private = get(data, "is_private_email", str, style.is_private_email)
    lifetime = get(data, "id_token_lifetime", int, style.id_token_lifetime)
    if verified not in BOOL_STYLES or private not in (*BOOL_STYLES, "omit") or lifetime < 1:
        raise BadInput("email_verified: boolean|string, is_private_email: boolean|string|omit")
    with state.lock:
        style.email_verified, style.is_private_email = verified, private
        style.id_token_lifetime = lifetime
        return jsonify(email_verified=verified, is_private_email=private,
                       id_token_lifetime=lifetime)


def _failures_json(state: EmulatorState) -> dict[str, Any]:
    return {e: [vars(f) for f in q] for e, q in state.failures.items()}


@bp.route("/failures", methods=["GET", "POST", "DELETE"])
def failures() -> ResponseReturnValue:
    """Script the next `count` calls of token/revoke/keys: a status+body and/or a delay."""
    state = current_state()
    if request.method == "DELETE":
        with state.lock:
            for queue in state.failures.values():
                queue.clear()
    elif request.method == "POST":
        _queue_failures(state, body())
    with state.lock:
        return jsonify(failures=_failures_json(state))


def _queue_failures(state: EmulatorState, data: dict[str, Any]) -> None:
    endpoint = get(data, "endpoint", str, "")
    count = get(data, "count", int, 1)
    status = get(data, "status", int)
    delay = float(get(data, "delay", (int, float), 0))
    if endpoint not in ENDPOINTS:
        raise BadInput(f"endpoint must be one of {', '.join(ENDPOINTS)}")
    if not 1 <= count <= 1000 or not 0 <= delay <= 60:
        raise BadInput("count must be 1..1000 and delay 0..60 seconds")
    if status is None and not delay or status is not None and not 200 <= status <= 599:
        raise BadInput("give a status (200..599), a delay, or both")
    with state.lock:
        for _ in range(count):
            state.failures[endpoint].append(ForcedFailure(status, data.get("body"), delay))


@bp.get("/requests")
def requests_log() -> ResponseReturnValue:
    """What reached token/revoke, oldest first; `?endpoint=revoke` filters."""
    state = current_state()
    wanted = request.args.get("endpoint")
    with state.lock:
        rows = [r for r in state.requests if wanted in (None, r["endpoint"])]
        return jsonify(requests=rows)
