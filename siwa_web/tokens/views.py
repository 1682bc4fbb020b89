"""Blueprint `oauth`: the token and revocation endpoints, our JWKS and discovery document."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue

from ..apple import bounded_json
from ..infra import metrics
from ..infra.extensions import csrf
from ..infra.nostore import no_store
from ..infra.nostore import no_store_json
from ..oauth import client_auth
from ..oauth import scopes
from ..oauth.errors import InvalidClientError
from ..oauth.errors import InvalidRequestError
from ..oauth.errors import OAuth2Error
from ..oauth.errors import TemporarilyUnavailableError
from ..oauth.errors import TooManyRequestsError
from ..oauth.requests import TokenRequest
from ..oauth.server import DB_UNAVAILABLE
from . import ratelimits
from .cors import cors
from .extension import server

bp = Blueprint("oauth", __name__)
JSON_VALUE_OBJECTS = frozenset({"user_profile"})  # JSON bodies may send this as an object


# --- request parsing ---------------------------------------------------------------------------


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise InvalidRequestError("A request parameter was sent more than once.",
                                  reason="duplicate_parameter")
    return dict(pairs)


def _json_params() -> dict[str, list[str]]:
    try:
        body = bounded_json.loads(request.get_data(cache=True),
                                 object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:  # malformed, or nested deeper than bounded_json allows
        raise InvalidRequestError("The request body is not valid JSON.",
                                  reason="body_not_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.",
                                  reason="body_not_object")
    params: dict[str, list[str]] = {}
    for name, value in body.items():
        if value is None:
            continue
        if isinstance(value, dict) and name in JSON_VALUE_OBJECTS:
            value = json.dumps(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            params[name] = value  # refused as a repeat later, unless the parameter may repeat
        elif isinstance(value, str):
            params[name] = [value]
        else:
            raise InvalidRequestError("Parameter values must be strings.", reason="body_value_type")
    return params


def token_request() -> TokenRequest:
    """Read the body: form-encoded or JSON, the same parameters either way (decision D12).

    The query string is never read: credentials do not belong in URLs.
    """
    if request.mimetype == "application/x-www-form-urlencoded":
        params = {name: request.form.getlist(name) for name in request.form.keys()}
    elif request.mimetype == "application/json":
        params = _json_params()
    else:
        raise InvalidRequestError(
            "Send the parameters as application/x-www-form-urlencoded or application/json.",
            reason="content_type",
        )
    headers = request.headers
    return TokenRequest(
        params=params, ip=request.remote_addr, user_agent=headers.get("User-Agent"),
        authorization=headers.get("Authorization"),
    )


# --- rate limits ---------------------------------------------------------------------------------


def _client_key() -> str:
    """The client_id of the Basic header or the body, for the per-client limit ("" if none)."""
    authorization = request.headers.get("Authorization")
    if authorization:
        try:
            basic = client_auth.basic_credentials(authorization)
        except InvalidClientError:  # the view answers invalid_client
            basic = None
        if basic is not None:
            return "client:" + basic[0][:64]
    if request.mimetype == "application/x-www-form-urlencoded":
        value = request.form.get("client_id")
    elif request.mimetype == "application/json":
        try:
            body = bounded_json.loads(request.get_data(cache=True))
        except ValueError:  # the view answers invalid_request
            body = None
        value = body.get("client_id") if isinstance(body, dict) else None
    else:
        value = None
    return "client:" + value[:64] if isinstance(value, str) and value else ""


def _grant_type_label(params: TokenRequest | None) -> str:
    """The grant type as a metrics label: a registered grant's name, else "other"."""
    if params is not None:
        sent = params.grant_type
    elif request.mimetype == "application/x-www-form-urlencoded":
        sent = request.form.get("grant_type")
    else:
        sent = None  # a JSON body that could not be read as parameters: no grant type to trust
    return sent if sent in server().grant_types else metrics.OTHER


def _limit(setting: str, scope: str, key: str) -> None:
    """Count this request against one configured limit; 429 in OAuth JSON when it is spent."""
    try:
        ratelimits.hit_setting(setting, scope, key)
    except ratelimits.RateLimited as exc:
        raise TooManyRequestsError(retry_after=exc.retry_after, reason="rate_limited") from None


def _limit_per_ip() -> None:
    """One budget per address for the token and revocation endpoints together."""
    _limit("RATELIMIT_TOKEN_PER_IP", "oauth-ip", request.remote_addr or "")


def _limit_per_client() -> None:
    client = _client_key()
    if client:
        _limit("RATELIMIT_TOKEN_PER_CLIENT", "oauth-client", client)


# --- client authentication -----------------------------------------------------------------------


def _challenge_in_the_clients_scheme(view: Callable[[], ResponseReturnValue]
                                     ) -> Callable[[], ResponseReturnValue]:
    """invalid_client's 401 challenges in the scheme of the request's Authorization header."""
    @functools.wraps(view)
    def wrapper() -> ResponseReturnValue:
        try:
            return view()
        except InvalidClientError as error:
            error.use_scheme_of(request.headers.get("Authorization"))
            raise
    return wrapper


# --- endpoints -----------------------------------------------------------------------------------


@bp.route("/oauth/token", methods=["POST", "OPTIONS"], provide_automatic_options=False)
@cors()
@_challenge_in_the_clients_scheme
def token() -> ResponseReturnValue:
    """Issue tokens for one of the registered grants (token exchange, refresh_token)."""
    count = metrics.recorder()
    params = None
    try:
        _limit_per_ip()
        _limit_per_client()
        params = token_request()
        body = server().create_token_response(params)
    except OAuth2Error as error:
        count.token_grant(_grant_type_label(params), error.error)
        raise
    if count.enabled:
        count.token_grant(_grant_type_label(params), "success")
    return no_store_json(body)


@bp.route("/oauth/revoke", methods=["POST", "OPTIONS"], provide_automatic_options=False)
@cors()
@_challenge_in_the_clients_scheme
def revoke() -> ResponseReturnValue:
    """Revoke a refresh or access token (RFC 7009): 200 with an empty body."""
    _limit_per_ip()
    server().create_revocation_response(token_request())
    return no_store(Response(status=200))


@bp.route("/.well-known/jwks.json", methods=["GET", "OPTIONS"], provide_automatic_options=False)
@cors(public=True)
def jwks() -> ResponseReturnValue:
    """Publish the public keys that verify our tokens (retired ones until their tokens expire)."""
    try:
        keys = server().keys.jwks()
    except DB_UNAVAILABLE as exc:
        raise TemporarilyUnavailableError(reason="database_unavailable") from exc
    response = jsonify(keys)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.route("/.well-known/openid-configuration", methods=["GET", "OPTIONS"],
          provide_automatic_options=False)
@cors(public=True)
def openid_configuration() -> ResponseReturnValue:
    """Describe this issuer truthfully: only what is implemented is listed."""
    settings = server().settings
    issuer = settings.issuer
    response = jsonify({
        "issuer": issuer,
        "authorization_endpoint": issuer + "/oauth/authorize",
        "token_endpoint": issuer + "/oauth/token",
        "end_session_endpoint": issuer + "/oauth/logout",
        "revocation_endpoint": issuer + "/oauth/revoke",
        "userinfo_endpoint": issuer + "/userinfo",
        "jwks_uri": issuer + "/.well-known/jwks.json",
        "grant_types_supported": server().grant_types,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": ["none", "login", "consent"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "subject_types_supported": ["public"],
        "scopes_supported": list(scopes.STANDARD_SCOPES),
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "amr",
            "email", "email_verified", "name", "given_name", "family_name",
        ],
        "id_token_signing_alg_values_supported": [settings.signing_alg],
        # `none` for native apps and single-page apps; secrets for confidential web apps.
        "token_endpoint_auth_methods_supported": list(client_auth.METHODS),
        "revocation_endpoint_auth_methods_supported": list(client_auth.METHODS),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    })
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
