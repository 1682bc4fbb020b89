"""CORS for single-page apps: the token, revocation and UserInfo endpoints, and the public
metadata (discovery, JWKS). Never the authorization endpoint (a page for the address bar),
never with cookies (no `Access-Control-Allow-Credentials`), and never on the Bearer-protected
sample API, whose hot path stays untouched.

Public metadata may be read from any origin. The app endpoints answer the origins of the
redirect URIs of enabled web clients (`oauth/origins.py`); other origins get no CORS headers,
so the browser keeps the answer from their scripts. Preflights are answered here, errors
included, so a single-page app can read `invalid_grant` as well as tokens.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

from flask import Response
from flask import current_app
from flask import make_response
from flask import request
from werkzeug.exceptions import HTTPException

from ..infra.extensions import db
from ..oauth.errors import OAuth2Error
from ..oauth.origins import AllowedOrigins

ALLOW_HEADERS = "Authorization, Content-Type"
EXPOSE_HEADERS = "WWW-Authenticate, Retry-After"
MAX_AGE = "600"
_origins = AllowedOrigins()


def _allowed(origin: str, public: bool) -> str | None:
    if public:
        return "*"
    return origin if _origins.allows(db.session, origin) else None


def _headers(response: Response, allowed: str) -> Response:
    response.headers["Access-Control-Allow-Origin"] = allowed
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if allowed != "*":
        response.headers.add("Vary", "Origin")
    return response


def cors(*, public: bool = False) -> Callable:
    """Decorate a view whose route lists OPTIONS and sets `provide_automatic_options=False`."""
    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            origin = request.headers.get("Origin")
            if request.method == "OPTIONS":
                response = Response(status=204)
                allowed = _allowed(origin, public) if origin else None
                if allowed is not None:
                    _headers(response, allowed)
                    response.headers["Access-Control-Allow-Methods"] = "GET, POST"
                    response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                    response.headers["Access-Control-Max-Age"] = MAX_AGE
                return response
            if origin is None:
                return view(*args, **kwargs)
            try:
                response = make_response(view(*args, **kwargs))
            except (OAuth2Error, HTTPException) as exc:  # so the app's script can read it
                response = make_response(current_app.handle_user_exception(exc))
            allowed = _allowed(origin, public)
            return _headers(response, allowed) if allowed is not None else response
        return wrapper
    return decorate
