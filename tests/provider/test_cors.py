"""CORS for single-page apps: allowed for the origins of registered web apps' redirect URIs on
the token, revocation and UserInfo endpoints, for everyone on public metadata, never with
credentials, and never on the authorization endpoint."""
from __future__ import annotations

import pytest

from support.web import sign_in
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import pkce
from support.webapps import register

SPA = "https://spa.example"
EVIL = "https://evil.example"


@pytest.fixture
def spa(app):
    return register(app, public=True, redirect_uris=(SPA + "/callback",))


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/userinfo"])
def test_a_preflight_from_a_registered_app_is_allowed(client, spa, path):
    response = client.options(path, headers={
        "Origin": SPA, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SPA
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("origin", [EVIL, "null", SPA + ":8443", "http://spa.example"])
def test_other_origins_get_no_cors_headers(client, spa, origin):
    preflight = client.options("/oauth/token", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    post = client.post("/oauth/token", data={"grant_type": "refresh_token"},
                       headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in post.headers


def test_the_spa_reads_tokens_and_errors(app, client, fake_apple, spa):
    sign_in(client, fake_apple)
    verifier, challenge = pkce()
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(spa, challenge)))
    ok = client.post("/oauth/token", headers={"Origin": SPA}, data={
            "grant_type": "authorization_code", "code": back["code"], "client_id": spa.client_id,
            "redirect_uri": spa.redirect_uri, "code_verifier": verifier})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == SPA
    info = client.get("/userinfo", headers={
        "Origin": SPA, "Authorization": "Bearer " + ok.get_json()["access_token"]})
    assert info.status_code == 200 and info.headers["Access-Control-Allow-Origin"] == SPA
    again = client.post("/oauth/token", headers={"Origin": SPA}, data={
        "grant_type": "authorization_code", "code": back["code"], "client_id": spa.client_id,
        "redirect_uri": spa.redirect_uri, "code_verifier": verifier})
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert again.headers["Access-Control-Allow-Origin"] == SPA  # the script can read why


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/jwks.json"])
def test_public_metadata_is_readable_from_any_origin(client, path):
    response = client.get(path, headers={"Origin": EVIL})
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"


def test_the_authorization_endpoint_never_answers_cors(client, spa):
    response = client.get("/oauth/authorize", headers={"Origin": SPA},
                          query_string={"client_id": spa.client_id})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert client.options("/oauth/authorize", headers={"Origin": SPA}).headers.get(
        "Access-Control-Allow-Origin") is None


def test_without_an_origin_nothing_changes(client, spa):
    response = client.post("/oauth/token", data={"grant_type": "refresh_token"})
    assert "Access-Control-Allow-Origin" not in response.headers
