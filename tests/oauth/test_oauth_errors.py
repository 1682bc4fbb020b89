"""The declarative protocol errors and their one renderer (no database needed)."""
from __future__ import annotations

import pytest

from siwa_web.oauth import errors
from siwa_web.oauth import scopes

ALL = [
    (errors.InvalidRequestError, 400, "invalid_request"),
    (errors.InvalidClientError, 401, "invalid_client"),
    (errors.InvalidGrantError, 400, "invalid_grant"),
    (errors.UnauthorizedClientError, 400, "unauthorized_client"),
    (errors.UnsupportedGrantTypeError, 400, "unsupported_grant_type"),
    (errors.InvalidScopeError, 400, "invalid_scope"),
    (errors.InvalidTargetError, 400, "invalid_target"),
    (errors.UnsupportedTokenTypeError, 400, "unsupported_token_type"),
    (errors.ServerError, 500, "server_error"),
    (errors.TemporarilyUnavailableError, 503, "temporarily_unavailable"),
    (errors.InvalidTokenError, 401, "invalid_token"),
    (errors.InvalidBearerRequestError, 400, "invalid_request"),
]


@pytest.mark.parametrize("cls, status, code", ALL, ids=[c[2] + str(c[1]) for c in ALL])
def test_each_class_is_its_response(cls, status, code):
    error = cls(reason="internal detail")
    assert error.status_code == status
    body = error.get_body()
    assert body["error"] == code and errors.is_safe_description(body["error_description"])
    assert "internal detail" not in str(body)
    headers = dict(error.get_headers())
    assert headers["Cache-Control"] == "no-store" and headers["Pragma"] == "no-cache"


def test_descriptions_must_be_rfc6749_safe():
    for bad in ('has "quote"', "back\\slash", "caf\u00e9", "line\nbreak", "x" * 201):
        with pytest.raises(ValueError):
            errors.InvalidRequestError(bad)


def test_bearer_challenges():
    assert dict(errors.MissingTokenError().get_headers())["WWW-Authenticate"] == \
        'Bearer realm="siwa-web"'
    assert "error" not in errors.MissingTokenError().get_body()
    challenge = dict(errors.InsufficientScopeError("openid").get_headers())["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="openid"' in challenge


def test_invalid_client_challenges_basic():
    headers = errors.InvalidClientError().get_headers()
    assert dict(headers)["WWW-Authenticate"] == 'Basic realm="siwa-web"'
    assert [name for name, _ in headers].count("WWW-Authenticate") == 1


@pytest.mark.parametrize("authorization, scheme", [
    (None, "Basic"), ("", "Basic"), ("   ", "Basic"),
    ("Basic Y2xpOg==", "Basic"), ("bASIC Y2xpOg==", "Basic"), ("Basic", "Basic"),
    ("Bearer abc", "Bearer"), ("DPoP abc", "DPoP"), ("  Bearer abc", "Bearer"),
    ('"Bearer" abc', "Basic"), ("Bear\u00e9r abc", "Basic"), ("x" * 33 + " abc", "Basic"),
    ("a,b abc", "Basic"),
])
def test_invalid_client_challenges_in_the_clients_scheme(authorization, scheme):
    error = errors.InvalidClientError()
    error.use_scheme_of(authorization)
    assert dict(error.get_headers())["WWW-Authenticate"] == f'{scheme} realm="siwa-web"'


def test_retry_after():
    assert dict(errors.TemporarilyUnavailableError().get_headers())["Retry-After"] == "5"
    assert dict(errors.TooManyRequestsError(retry_after=0).get_headers())["Retry-After"] == "1"


def test_error_handler_renders_json(app):
    from siwa_web.tokens.service import render_error

    with app.test_request_context():
        response = render_error(errors.InvalidTokenError())
    assert response.status_code == 401
    assert response.get_json() == errors.InvalidTokenError().get_body()
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_error_handler_renders_the_client_challenge(app):
    from siwa_web.tokens.service import render_error

    with app.test_request_context():
        response = render_error(errors.InvalidClientError())
    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid_client",
                                   "error_description": "Unknown or disabled client."}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="siwa-web"'
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("value", ["a b", "openid", "read:things write:things"])
def test_scope_parse_ok(value):
    assert scopes.join(scopes.parse(value)) == value


@pytest.mark.parametrize("value", ["", " ", "a  b", "a\tb", 'a"b', "a\\b", "x" * 1001, "caf\u00e9"])
def test_scope_parse_refuses(value):
    with pytest.raises(errors.InvalidScopeError):
        scopes.parse(value)
