"""invalid_client from the token and revocation endpoints: 401 with a challenge.

A 401 carries `WWW-Authenticate`, in the scheme the client authenticated with when it sent an
Authorization header, else Basic. The body is the usual OAuth error JSON, never cached. The web
sign-in's Services ID is not invalid_client at the token endpoint but 400 unauthorized_client,
which needs no challenge.
"""
from __future__ import annotations

import json

import pytest

from siwa_web.infra.extensions import db
from support.apple import SERVICES_ID
from support.tokens import assert_oauth_error
from support.tokens import exchange_params
from support.tokens import refresh_params

BODY = {"error": "invalid_client", "error_description": "Unknown or disabled client."}
CHALLENGE = 'Basic realm="siwa-web"'
ENDPOINTS = ["exchange", "refresh", "revoke"]


def request_for(endpoint, fake_apple, native, session, client_id):
    """The path and a valid body for `endpoint`, but with `client_id` (None: left out)."""
    if endpoint == "exchange":
        code = fake_apple.authorize(client_id=native.bundle_id).code
        path, data = "/oauth/token", exchange_params(native, code)
    elif endpoint == "refresh":
        path, data = "/oauth/token", refresh_params(native, session["refresh_token"])
    else:
        path, data = "/oauth/revoke", {"token": session["refresh_token"]}
    data["client_id"] = client_id
    return path, {k: v for k, v in data.items() if v is not None}


def post(client, path, data, *, as_json=False, **kwargs):
    if as_json:
        return client.post(path, data=json.dumps(data), content_type="application/json",
                           **kwargs)
    return client.post(path, data=data, **kwargs)


def assert_invalid_client(response, challenge=CHALLENGE):
    body = assert_oauth_error(response, 401, "invalid_client")
    assert body == BODY
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers.getlist("WWW-Authenticate") == [challenge]


def _disable(app, client_id):
    from siwa_web.models import Client
    from siwa_web.models.base import now_utc

    with app.app_context():
        db.session.get(Client, client_id).disabled_at = now_utc()
        db.session.commit()


@pytest.mark.parametrize("case", ["unknown", "missing", "empty", "disabled"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_invalid_client_is_a_401_with_a_basic_challenge(app, client, fake_apple, native_client,
                                                        native_session, endpoint, case):
    client_id = {"unknown": "cli_doesnotexist", "missing": None, "empty": "",
                 "disabled": native_client.client_id}[case]
    if case == "disabled":
        _disable(app, native_client.client_id)
    path, data = request_for(endpoint, fake_apple, native_client, native_session, client_id)
    assert_invalid_client(post(client, path, data, as_json=case == "empty"))  # JSON too


@pytest.mark.parametrize("authorization, challenge", [
    ("Basic Y2xpX2RvZXNub3RleGlzdDo=", CHALLENGE),
    ("basic Y2xpX2RvZXNub3RleGlzdDo=", CHALLENGE),
    ("Bearer some-token", 'Bearer realm="siwa-web"'),
    ('"not a scheme"', CHALLENGE),
], ids=["Basic", "basic", "Bearer", "not-a-token"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_challenge_uses_the_scheme_the_client_authenticated_with(
        client, fake_apple, native_client, native_session, endpoint, authorization, challenge):
    path, data = request_for(endpoint, fake_apple, native_client, native_session,
                             "cli_doesnotexist")
    response = post(client, path, data, headers={"Authorization": authorization})
    assert_invalid_client(response, challenge)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_services_id(client, fake_apple, native_client, native_session, endpoint):
    """Token endpoint: 400 unauthorized_client, no challenge; revocation: not a client there."""
    path, data = request_for(endpoint, fake_apple, native_client, native_session, SERVICES_ID)
    response = post(client, path, data)
    if endpoint == "revoke":
        assert_invalid_client(response)
    else:
        assert_oauth_error(response, 400, "unauthorized_client")
        assert "WWW-Authenticate" not in response.headers
