"""The authorization code flow for web apps, through the Flask test client: single sign-on,
sign-in resumption, consent, code redemption and its one-time use."""
from __future__ import annotations

import pytest

from siwa_web.infra.extensions import db
from siwa_web.models import AuthorizationCode
from siwa_web.models import Consent
from siwa_web.models import WebSession
from support.tokens import bearer
from support.tokens import decode
from support.web import csrf_token
from support.web import sign_in
from support.webapps import ISSUER
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import basic
from support.webapps import pkce
from support.webapps import redeem
from support.webapps import register


def test_a_signed_in_browser_gets_a_code_without_apple_and_the_app_gets_tokens(
        app, client, fake_apple):
    sign_in(client, fake_apple)
    webapp = register(app)
    verifier, challenge = pkce()
    apple_calls = len(fake_apple.token_requests), fake_apple.jwks_calls
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge)))
    assert back["_to"] == webapp.redirect_uri
    assert back["state"] == "state-123" and back["iss"] == ISSUER and back["code"]
    assert (len(fake_apple.token_requests), fake_apple.jwks_calls) == apple_calls  # SSO: no Apple
    response = redeem(client, webapp, back["code"], verifier)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    id_token = decode(client, body["id_token"], audience=webapp.client_id, issuer=ISSUER)
    with app.app_context():
        session_row = db.session.query(WebSession).one()
        assert id_token["sid"] == session_row.id
        assert id_token["auth_time"] == int(session_row.auth_time.timestamp())
    assert id_token["nonce"] == "nonce-456" and id_token["amr"] == ["fed"]
    assert "refresh_token" not in body  # no offline_access asked
    me = client.get("/api/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.get_json()["sub"] == id_token["sub"]
    for method in (client.get, client.post):  # UserInfo answers GET and POST (OIDC Core §5.3)
        info = method("/userinfo", headers=bearer(body["access_token"]))
        assert info.status_code == 200 and info.get_json()["sub"] == id_token["sub"]


def test_the_code_is_single_use_and_a_replay_revokes_what_it_issued(app, client, fake_apple):
    sign_in(client, fake_apple)
    webapp = register(app)
    verifier, challenge = pkce()
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(
        webapp, challenge, scope="openid offline_access")))
    first = redeem(client, webapp, back["code"], verifier).get_json()
    assert "refresh_token" in first
    again = redeem(client, webapp, back["code"], verifier)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert client.get("/api/me", headers=bearer(first["access_token"])).status_code == 401
    refreshed = client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic(webapp))
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"


def test_without_a_session_the_request_waits_for_apple_and_then_resumes(app, client, fake_apple):
    webapp = register(app)
    verifier, challenge = pkce()
    first = client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge))
    assert first.status_code == 303 and first.headers["Location"].startswith("/auth/login?")
    next_url = answer(first)["next"]
    assert next_url.startswith("/oauth/authorize/resume?request=")
    signed = sign_in(client, fake_apple, next_url=next_url)
    assert signed.status_code == 303 and signed.headers["Location"] == next_url
    back = answer(client.get(next_url))
    assert back["state"] == "state-123"
    assert redeem(client, webapp, back["code"], verifier).status_code == 200
    assert client.get(next_url).status_code == 400  # answered once


def test_a_third_party_app_asks_for_consent_once(app, client, fake_apple):
    sign_in(client, fake_apple)
    webapp = register(app, first_party=False, name="Partner Notes")
    verifier, challenge = pkce()
    params = authorize_params(webapp, challenge)
    to_consent = client.get("/oauth/authorize", query_string=params)
    assert to_consent.status_code == 303
    page = client.get(to_consent.headers["Location"])
    html = page.get_data(as_text=True)
    assert "Partner Notes" in html and "See your email address" in html
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    handle = to_consent.headers["Location"].split("request=")[1]
    back = answer(client.post("/oauth/authorize/consent", data={
        "request": handle, "decision": "allow", "csrf_token": csrf_token(client)}))
    assert redeem(client, webapp, back["code"], verifier).status_code == 200
    with app.app_context():
        assert db.session.query(Consent).one().scope == "openid profile email"
    again = answer(client.get("/oauth/authorize", query_string=params))
    assert "code" in again  # remembered


def test_denying_consent_sends_access_denied(app, client, fake_apple):
    sign_in(client, fake_apple)
    webapp = register(app, first_party=False)
    _, challenge = pkce()
    to_consent = client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge))
    handle = to_consent.headers["Location"].split("request=")[1]
    back = answer(client.post("/oauth/authorize/consent", data={
        "request": handle, "decision": "deny", "csrf_token": csrf_token(client)}))
    assert back["error"] == "access_denied" and back["state"] == "state-123"
    assert back["iss"] == ISSUER and "code" not in back
    with app.app_context():
        assert db.session.query(Consent).count() == 0
        assert db.session.query(AuthorizationCode).count() == 0


@pytest.mark.parametrize("signed_in_first, first_party, error", [
    (False, True, "login_required"),
    (True, False, "consent_required"),
])
def test_prompt_none_answers_by_redirect(app, client, fake_apple, signed_in_first, first_party,
                                          error):
    if signed_in_first:
        sign_in(client, fake_apple)
    webapp = register(app, first_party=first_party)
    _, challenge = pkce()
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(
        webapp, challenge, prompt="none")))
    assert back["error"] == error and back["state"] == "state-123" and back["iss"] == ISSUER


def test_prompt_login_asks_for_a_fresh_apple_sign_in(app, client, fake_apple):
    sign_in(client, fake_apple)
    webapp = register(app)
    verifier, challenge = pkce()
    first = client.get("/oauth/authorize", query_string=authorize_params(
        webapp, challenge, prompt="login"))
    login_page = first.headers["Location"]
    assert login_page.startswith("/auth/login?") and "prompt=login" in login_page
    assert client.get(login_page).status_code == 200  # shown although signed in
    next_url = answer(first)["next"]
    sign_in(client, fake_apple, next_url=next_url)
    back = answer(client.get(next_url))
    tokens = redeem(client, webapp, back["code"], verifier).get_json()
    claims = decode(client, tokens["id_token"], audience=webapp.client_id, issuer=ISSUER)
    with app.app_context():
        newest = db.session.query(WebSession).order_by(WebSession.created_at.desc()).first()
        assert claims["sid"] == newest.id
    assert claims["auth_time"] == int(newest.auth_time.timestamp())


def test_a_refresh_keeps_the_sign_ins_auth_time_sid_and_amr(app, client, fake_apple):
    sign_in(client, fake_apple)
    webapp = register(app)
    verifier, challenge = pkce()
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(
        webapp, challenge, scope="openid offline_access")))
    first = redeem(client, webapp, back["code"], verifier).get_json()
    again = client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic(webapp)).get_json()
    one = decode(client, first["id_token"], audience=webapp.client_id, issuer=ISSUER)
    two = decode(client, again["id_token"], audience=webapp.client_id, issuer=ISSUER)
    assert (two["auth_time"], two["sid"], two["amr"]) == (one["auth_time"], one["sid"], ["fed"])
    assert "nonce" not in two


def test_a_public_client_on_a_loopback_address_signs_in_without_a_secret(app, client, fake_apple):
    sign_in(client, fake_apple)
    webapp = register(app, public=True, redirect_uris=("http://127.0.0.2:8001/cb",))
    assert webapp.secret is None
    verifier, challenge = pkce()
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge)))
    assert back["_to"] == "http://127.0.0.2:8001/cb"
    assert redeem(client, webapp, back["code"], verifier).status_code == 200


def test_errors_under_the_authorization_endpoint_are_pages_for_people(app, client):
    app.config["RATELIMIT_AUTHORIZE_PER_IP"] = "1/minute"
    client.get("/oauth/authorize")
    limited = client.get("/oauth/authorize")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert limited.mimetype == "text/html" and "<html" in limited.get_data(as_text=True)
    assert "Too many sign-in requests" in limited.get_data(as_text=True)


def test_cancelling_at_apple_answers_the_app_with_access_denied(app, client, fake_apple):
    from support.web import CALLBACK
    from support.web import start_login

    webapp = register(app)
    _, challenge = pkce()
    first = client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge))
    next_url = answer(first)["next"]
    start = start_login(client, next_url)
    cancelled = client.post(CALLBACK, data={"state": start.state,
                                            "error": "user_cancelled_authorize"})
    assert cancelled.status_code == 303 and cancelled.headers["Location"] == next_url
    back = answer(client.get(next_url))
    assert back["error"] == "access_denied" and back["state"] == "state-123"
    assert back["iss"] == ISSUER and back["_to"] == webapp.redirect_uri


def test_a_web_app_revokes_its_refresh_token_with_its_secret(app, client, fake_apple):
    sign_in(client, fake_apple)
    webapp = register(app)
    verifier, challenge = pkce()
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(
        webapp, challenge, scope="openid offline_access")))
    tokens = redeem(client, webapp, back["code"], verifier).get_json()
    unauthenticated = client.post("/oauth/revoke", data={
        "token": tokens["refresh_token"], "client_id": webapp.client_id})
    assert unauthenticated.status_code == 401  # a confidential client must prove itself
    assert client.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    revoked = client.post("/oauth/revoke", data={"token": tokens["refresh_token"]},
                          headers=basic(webapp))
    assert revoked.status_code == 200
    assert client.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 401
