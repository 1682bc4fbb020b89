"""Logout for web apps: RP-initiated logout at /oauth/logout, and back-channel logout tokens
delivered through the outbox whenever a siwa-web session ends, whoever ends it."""
from __future__ import annotations

from urllib.parse import parse_qs

import jwt as pyjwt
import pytest

from siwa_web.infra.extensions import db
from siwa_web.models import BackchannelLogout
from siwa_web.models import WebSession
from support.apple import DEFAULT_SUB
from support.tokens import bearer
from support.tokens import jwks_client_keys
from support.web import csrf_token
from support.web import sign_in
from support.webapps import ISSUER
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import basic
from support.webapps import pkce
from support.webapps import redeem
from support.webapps import register

EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_A = "https://app-a.example/backchannel"
LOGOUT_B = "https://app-b.example/backchannel"
AFTER = "https://app-a.example/signed-out"


@pytest.fixture(autouse=True)
def inline_delivery(app):
    app.config["BACKCHANNEL_LOGOUT_DELIVERY"] = "inline"


def tokens_for(client, webapp, scope="openid"):
    verifier, challenge = pkce()
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(
        webapp, challenge, scope=scope)))
    response = redeem(client, webapp, back["code"], verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def logout_tokens(requests_mock, uri):
    return [parse_qs(r.text)["logout_token"][0] for r in requests_mock.request_history
            if r.url == uri]


def check_logout_token(client, token, *, audience, sid, sub):
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "logout+jwt"
    claims = pyjwt.decode(token, jwks_client_keys(client)[header["kid"]], algorithms=["ES256"],
                          audience=audience, issuer=ISSUER)
    assert claims["sid"] == sid and claims["sub"] == sub
    assert claims["events"] == {EVENT: {}} and "nonce" not in claims
    assert claims["jti"] and claims["iat"] <= claims["exp"]


@pytest.fixture
def two_apps(app, client, fake_apple, requests_mock):
    """Two web apps signed in through one siwa-web session (the second by single sign-on)."""
    requests_mock.post(LOGOUT_A, status_code=200)
    requests_mock.post(LOGOUT_B, status_code=204)
    sign_in(client, fake_apple, sub=DEFAULT_SUB)
    a = register(app, name="App A", backchannel_logout_uri=LOGOUT_A,
                 post_logout_redirect_uris=(AFTER,))
    b = register(app, name="App B", redirect_uris=("https://app-b.example/cb",),
                 backchannel_logout_uri=LOGOUT_B)
    ta, tb = tokens_for(client, a), tokens_for(client, b, scope="openid offline_access")
    with app.app_context():
        row = db.session.query(WebSession).one()
        sid, sub = row.id, row.user_id
    return a, b, ta, tb, sid, sub


def test_signing_out_at_siwa_web_tells_both_apps(app, client, two_apps, requests_mock):
    a, b, ta, tb, sid, sub = two_apps
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    [token_a] = logout_tokens(requests_mock, LOGOUT_A)
    [token_b] = logout_tokens(requests_mock, LOGOUT_B)
    check_logout_token(client, token_a, audience=a.client_id, sid=sid, sub=sub)
    check_logout_token(client, token_b, audience=b.client_id, sid=sid, sub=sub)
    with app.app_context():
        assert all(r.sent_at for r in db.session.query(BackchannelLogout))
    # App A had no offline access: its tokens ended with the sign-in; App B keeps its own.
    assert client.get("/api/me", headers=bearer(ta["access_token"])).status_code == 401
    assert client.get("/api/me", headers=bearer(tb["access_token"])).status_code == 200


def test_revoking_the_session_on_the_dashboard_tells_the_apps(app, client, fake_apple,
                                                               two_apps, requests_mock):
    *_, sid, _ = two_apps
    other = app.test_client()
    sign_in(other, fake_apple, sub=DEFAULT_SUB)  # the same person, another browser
    response = other.post(f"/dashboard/sessions/{sid}/revoke",
                          data={"csrf_token": csrf_token(other)},
                          headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code in (302, 303)
    assert len(logout_tokens(requests_mock, LOGOUT_A)) == 1
    assert len(logout_tokens(requests_mock, LOGOUT_B)) == 1


def test_rp_initiated_logout_with_a_hint_signs_out_and_returns(app, client, two_apps,
                                                              requests_mock):
    a, _, ta, _, _, _ = two_apps
    response = client.get("/oauth/logout", query_string={
        "id_token_hint": ta["id_token"], "post_logout_redirect_uri": AFTER, "state": "s1"})
    assert response.status_code == 303 and response.headers["Location"] == AFTER + "?state=s1"
    assert client.get("/dashboard").status_code in (302, 303)  # signed out
    assert len(logout_tokens(requests_mock, LOGOUT_B)) == 1


def test_rp_initiated_logout_without_a_hint_asks_first(app, client, two_apps, requests_mock):
    a, *_ = two_apps
    page = client.get("/oauth/logout", query_string={
        "client_id": a.client_id, "post_logout_redirect_uri": AFTER, "state": "s2"})
    assert page.status_code == 200 and "Sign out of siwa-web?" in page.get_data(as_text=True)
    assert logout_tokens(requests_mock, LOGOUT_A) == []  # nothing ended yet
    done = client.post("/oauth/logout/confirm", data={
        "client_id": a.client_id, "post_logout_redirect_uri": AFTER, "state": "s2",
        "csrf_token": csrf_token(client, "/dashboard")}, headers={"Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 303 and done.headers["Location"] == AFTER + "?state=s2"
    assert len(logout_tokens(requests_mock, LOGOUT_A)) == 1


@pytest.mark.parametrize("target", [
    "https://evil.example/", AFTER + "/", AFTER.upper(), AFTER + "?x=1", AFTER + "#f",
])
def test_an_unregistered_return_address_is_never_followed(app, client, two_apps, target):
    _, _, ta, *_ = two_apps
    response = client.get("/oauth/logout", query_string={
        "id_token_hint": ta["id_token"], "post_logout_redirect_uri": target})
    assert response.status_code == 400 and "Location" not in response.headers
    assert client.get("/dashboard").status_code == 200  # still signed in


def test_a_failed_delivery_stays_in_the_outbox_and_cron_retries_it(app, client, two_apps,
                                                                   requests_mock, runner):
    requests_mock.post(LOGOUT_A, status_code=503)
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    with app.app_context():
        row = db.session.query(BackchannelLogout).filter_by(sent_at=None).one()
        assert row.attempts == 1 and "503" in row.last_error
        row.next_attempt_at = row.created_at  # due again
        db.session.commit()
    requests_mock.post(LOGOUT_A, status_code=200)
    result = runner.invoke(args=["outbox", "retry"])
    assert result.exit_code == 0, result.output
    assert "Back-channel logouts: 1 sent" in result.output
    with app.app_context():
        assert db.session.query(BackchannelLogout).filter_by(sent_at=None).count() == 0


def test_the_dashboard_lists_connected_apps_and_disconnect_ends_them(app, client, two_apps,
                                                                      requests_mock):
    a, b, ta, tb, sid, _ = two_apps
    html = client.get("/dashboard").get_data(as_text=True)
    assert 'id="connected-apps"' in html and "App A" in html and "App B" in html
    assert "Signed in to App A, App B" in html  # the web session names its apps
    response = client.post(f"/dashboard/connected/{b.client_id}/disconnect",
                           data={"csrf_token": csrf_token(client)},
                           headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code in (302, 303)
    [token] = logout_tokens(requests_mock, LOGOUT_B)
    check_logout_token(client, token, audience=b.client_id, sid=sid,
                       sub=pyjwt.decode(tb["id_token"], options={"verify_signature": False})["sub"])
    assert client.get("/api/me", headers=bearer(tb["access_token"])).status_code == 401
    refreshed = client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tb["refresh_token"]},
        headers=basic(b))
    assert refreshed.get_json()["error"] == "invalid_grant"
    assert logout_tokens(requests_mock, LOGOUT_A) == []  # App A is untouched
    assert client.get("/api/me", headers=bearer(ta["access_token"])).status_code == 200
    html = client.get("/dashboard").get_data(as_text=True)
    section = html[html.index('id="connected-apps"'):]
    assert "App A" in section and "App B" not in section[:section.index("</section>")]


def test_disconnect_of_an_app_that_is_not_connected_is_404(app, client, two_apps):
    response = client.post("/dashboard/connected/cli_nope/disconnect",
                           data={"csrf_token": csrf_token(client)},
                           headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 404
