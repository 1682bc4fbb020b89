"""Apple's machine endpoints: discovery, keys, token and revoke."""
from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request
from flask.typing import ResponseReturnValue

from . import grants
from . import migration
from .client_auth import authenticate
from .errors import apple_json
from .web import current_state
from .web import endpoint
from .web import require_form

bp = Blueprint("oauth", __name__)

CLAIMS = ["aud", "email", "email_verified", "exp", "iat", "is_private_email", "iss",
          "nonce", "nonce_supported", "real_user_status", "sub", "transfer_sub"]


@bp.get("/.well-known/openid-configuration")
def discovery() -> ResponseReturnValue:
    """Serve Apple's discovery document with the emulator's own endpoint URLs."""
    settings = current_state().settings
    base = settings.base_url.rstrip("/")
    return apple_json({
        "issuer": settings.issuer,
        "authorization_endpoint": f"{base}/auth/authorize",
        "token_endpoint": f"{base}/auth/token",
        "revocation_endpoint": f"{base}/auth/revoke",
        "jwks_uri": f"{base}/auth/keys",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "name"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "claims_supported": CLAIMS,
    }, no_store=False)


@bp.get("/auth/keys")
@endpoint("keys")
def keys() -> ResponseReturnValue:
    """Publish every active signing key (RS256)."""
    state = current_state()
    with state.lock:
        return apple_json(state.keys.jwks(), no_store=False)


@bp.post("/auth/token")
@endpoint("token", log=True)
def token() -> ResponseReturnValue:
    """Authenticate the client secret, then run the requested grant."""
    state = current_state()
    require_form()
    migration_call = request.form.get("grant_type") in migration.MIGRATION_CALLS
    client_id, _team = migration.authenticate(state, request.form, migration_call=migration_call)
    return apple_json(grants.token(state, client_id, request.form))


@bp.post("/auth/revoke")
@endpoint("revoke", log=True)
def revoke() -> ResponseReturnValue:
    """Revoke a refresh or access token; 200 with an empty body whenever the client is right."""
    state = current_state()
    require_form()
    client_id = authenticate(state.settings, request.form, state.now())
    grants.revoke(state, client_id, request.form)
    return Response(b"", status=200)
