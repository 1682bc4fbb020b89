"""Team-transfer endpoints: Apple's `/auth/usermigrationinfo` and the `/__emulator/` controls
that register a second team and move the app to it (migration.py holds the logic)."""
from __future__ import annotations

import re

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue

from . import migration
from .admin import BadInput
from .admin import body
from .admin import bp as admin_bp
from .admin import get
from .errors import apple_json
from .views_oauth import bp as oauth_bp
from .web import current_state
from .web import endpoint
from .web import require_form

TEAM_ID = re.compile(r"[A-Z0-9]{10}")


@oauth_bp.post("/auth/usermigrationinfo")
@endpoint("usermigrationinfo", log=True)
def user_migration_info() -> ResponseReturnValue:
    """Client secret + Bearer migration token; a transfer_sub out, or a new sub for one."""
    state = current_state()
    require_form()
    client_id, team = migration.authenticate(state, request.form, migration_call=True)
    migration.check_bearer(state, request.headers.get("Authorization"), client_id)
    return apple_json(migration.user_migration_info(state, team, request.form))


@admin_bp.route("/teams", methods=["GET", "POST"])
def teams() -> ResponseReturnValue:
    """POST `{"team_id", "client_keys": {Key ID: PEM public key}}` adds a team; GET lists."""
    state = current_state()
    if request.method == "POST":
        data = body()
        team_id = get(data, "team_id", str, "")
        keys = get(data, "client_keys", dict, {})
        if not TEAM_ID.fullmatch(team_id):
            raise BadInput("team_id must be 10 characters, A-Z and 0-9")
        if not keys or not all(_ec_p256(v) for v in keys.values()):
            raise BadInput("client_keys must map Key IDs to EC P-256 public keys (PEM)")
        try:
            migration.register_team(state, team_id, keys)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    with state.lock:
        led = migration.ledger(state)
        return jsonify(owner=state.settings.team_id,
                       teams={t: sorted(k) for t, k in led.teams.items()})


@admin_bp.post("/transfer")
def transfer() -> ResponseReturnValue:
    """Move the app group to `{"to_team"}` (registered first); the 60-day window starts."""
    state = current_state()
    to_team = get(body(), "to_team", str, "")
    try:
        move = migration.transfer(state, to_team)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return jsonify(from_team=move.from_team, to_team=move.to_team, at=move.at,
                   window_ends=move.at + migration.WINDOW)


def _ec_p256(pem: object) -> bool:
    if not isinstance(pem, str):
        return False
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        return False
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
