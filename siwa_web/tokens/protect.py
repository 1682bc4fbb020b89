"""`@require_token(scope)`: Bearer access tokens for our JSON APIs (RFC 6750); `current_token`."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Request
from flask import current_app
from flask import g
from flask import request
from werkzeug.local import LocalProxy

from ..infra import metrics
from ..oauth import Principal
from ..oauth.errors import InsufficientScopeError
from ..oauth.errors import InvalidBearerRequestError
from ..oauth.errors import InvalidTokenError
from ..oauth.errors import MissingTokenError
from ..oauth.errors import OAuth2Error
from .extension import EXTENSION


def _bearer_token(req: Request) -> str:
    """Return the token from `Authorization: Bearer`; only the header is accepted.

    :raises MissingTokenError: no Bearer credentials (a token in the query string does not count).
    :raises InvalidBearerRequestError: the token was also sent in the query or the body.
    :raises InvalidTokenError: the header is malformed.
    """
    environ = req.environ
    header = environ.get("HTTP_AUTHORIZATION")
    # Parse the query string and the body only when there is one (most API calls have neither).
    elsewhere = (environ.get("QUERY_STRING") and "access_token" in req.args) or (
        environ.get("CONTENT_TYPE") and req.mimetype == "application/x-www-form-urlencoded"
        and "access_token" in req.form
    )
    if header is None:
        raise MissingTokenError(reason="no_credentials")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingTokenError(reason="not_bearer")
    if elsewhere:
        raise InvalidBearerRequestError(reason="token_in_two_places")
    token = token.strip()
    if not token:
        raise InvalidTokenError(reason="empty_token")
    return token


def authenticate(scope: str | None = None, audience: str | None = None) -> Principal:
    """Verify the request's Bearer token (and scope); store and return the principal.

    Each context-local (`request`, `current_app`, `g`) is resolved once: every attribute read
    through Flask's proxies costs a lookup of its own, and this runs on every API call.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    count = metrics.recorder(app)
    try:
        principal = app.extensions[EXTENSION].authenticate(
            _bearer_token(request._get_current_object()),  # type: ignore[attr-defined]
            audience=audience)
        if scope is not None and not principal.token.has_scope(scope):
            raise InsufficientScopeError(scope, reason="insufficient_scope")
    except OAuth2Error as error:
        count.bearer_check(error.error or "missing_token")  # RFC 6750 §3.1: no code then
        raise
    count.bearer_check("success")
    g._get_current_object().siwa_principal = principal  # type: ignore[attr-defined]
    return principal


def require_token(scope: str | None = None, *, audience: str | None = None) -> Callable:
    """Decorate a view so that it runs only with a valid access token for `audience`.

    `audience` defaults to DEFAULT_AUDIENCE; `scope`, if given, must be granted.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authenticate(scope, audience)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def principal() -> Principal:
    """The verified caller of this @require_token view (one context lookup; read it once)."""
    found = getattr(g._get_current_object(), "siwa_principal", None)  # type: ignore[attr-defined]
    if found is None:
        raise RuntimeError("principal() used outside a @require_token view")
    return found


current_principal: Principal = LocalProxy(principal)  # type: ignore[assignment]
current_token = LocalProxy(lambda: principal().token)
