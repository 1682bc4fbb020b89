"""Build the app's authorization server (grants, liveness cache) and its one error renderer."""
from __future__ import annotations

import logging

from flask import Flask
from flask import Response
from flask import jsonify

from ..infra.extensions import db
from ..oauth import AuthorizationServer
from ..oauth import TokenSettings
from ..oauth.errors import OAuth2Error
from ..oauth.grants import AuthorizationCodeGrant
from ..oauth.grants import RefreshTokenGrant
from ..oauth.grants import TokenExchangeGrant
from ..oauth.liveness import LivenessCache
from ..oauth.liveness import LocalSignal
from ..users import accounts
from ..users import audit
from . import liveness_events
from .extension import EXTENSION

log = logging.getLogger(__name__)


def _apple_client():
    from ..infra.apple_client import apple_client

    return apple_client()


def render_error(error: OAuth2Error) -> Response:
    """The one renderer of protocol errors: RFC 6749 JSON, the class's status and headers."""
    response = jsonify(error.get_body())
    response.status_code = error.status_code
    for name, value in error.get_headers():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    """Build the server with its grants and liveness cache; register the error renderer."""
    settings = TokenSettings.from_config(app.config)
    signal = liveness_events.make_signal(app)
    liveness = LivenessCache(
        signal or LocalSignal(), ttl=settings.liveness_cache_seconds if signal else 0)
    with app.app_context():
        engine = db.engine
    oauth_server = AuthorizationServer(
        settings, session=db.session, engine=engine, users=accounts, audit=audit,
        apple_client=_apple_client, liveness=liveness)
    liveness_events.init_app(app, liveness)
    oauth_server.register_grant(TokenExchangeGrant)
    oauth_server.register_grant(RefreshTokenGrant)
    oauth_server.register_grant(AuthorizationCodeGrant)
    app.extensions[EXTENSION] = oauth_server
    app.register_error_handler(OAuth2Error, render_error)
