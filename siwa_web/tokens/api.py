"""Blueprint `api`: OpenID Connect userinfo and a sample protected API, both Bearer-only."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Flask
from flask.typing import ResponseReturnValue

from ..infra.extensions import csrf
from ..infra.nostore import no_store_json
from ..oauth import Principal
from ..oauth import scopes
from .cors import cors
from .protect import principal as current_principal
from .protect import require_token

bp = Blueprint("api", __name__)


def _claims(principal: Principal, granted: frozenset[str]) -> dict[str, Any]:
    """The user's standard claims, limited to what the token's scopes allow (OIDC Core §5.4)."""
    profile = principal.profile
    return {"sub": profile.user_id, **profile.claims(granted)}


# OIDC Core §5.3: GET and POST; OPTIONS for single-page apps' preflights (tokens/cors.py).
@bp.route("/userinfo", methods=["GET", "POST", "OPTIONS"], provide_automatic_options=False)
@cors()
@require_token(scopes.OPENID)
def userinfo() -> ResponseReturnValue:
    """Return the signed-in user's claims (OpenID Connect Core §5.3)."""
    principal = current_principal()
    return no_store_json(_claims(principal, principal.token.scopes))


@bp.get("/api/me")
@require_token()
def me() -> ResponseReturnValue:
    """Sample protected API: who is calling, through which app, with which scopes."""
    principal = current_principal()
    token = principal.token
    return no_store_json({
        **_claims(principal, token.scopes),
        "client_id": token.client_id,
        "scope": " ".join(sorted(token.scopes)),
        "expires_at": token.exp,
    })


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
