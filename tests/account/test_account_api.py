"""`DELETE /api/account`: deleting the account from an app, with a recent sign-in (RFC 9470)."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import AppleRevocation
from siwa_web.models import AuditEvent
from siwa_web.models import Client
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.models import WebSession
from siwa_web.models.base import now_utc
from siwa_web.oauth import tokens as jwt_tokens
from siwa_web.tokens.extension import EXTENSION
from support.apple import BUNDLE_ID
from support.apple import SERVICES_ID
from support.dashboard import SUB_A
from support.dashboard import Browser
from support.dashboard import api_me
from support.dashboard import app_sign_in
from support.dashboard import events
from support.dashboard import refresh
from support.dashboard import snapshot
from support.tokens import PARTNER_API
from support.tokens import NativeClient
from support.tokens import bearer
from support.tokens import decode
from support.tokens import exchange_params
from support.web import csrf_token
from support.web import sign_in
from support.webapps import ISSUER
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import pkce
from support.webapps import redeem
from support.webapps import register

URL = "/api/account"


def delete(app, access_token: str, **headers):
    return app.test_client().delete(URL, headers={**bearer(access_token), **headers})


def age_sign_ins(app, seconds: int) -> None:
    """Make every app session's sign-in `seconds` old (as if signed in that long ago)."""
    then = now_utc() - timedelta(seconds=seconds)
    with app.app_context():
        db.session.execute(update(TokenFamily).values(auth_time=then, created_at=then))
        db.session.commit()


def stale_tokens(app, tokens: dict) -> dict:
    """An access token renewed by refresh after the sign-in aged: its auth_time is old."""
    age_sign_ins(app, app.config["ACCOUNT_DELETION_MAX_AUTH_AGE"] + 60)
    resp = refresh(app, tokens)
    assert resp.status_code == 200, resp.get_json()
    return {**resp.get_json(), "client_id": tokens["client_id"]}


def challenge_of(resp) -> str:
    return resp.headers["WWW-Authenticate"]


def users(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(User)).all())


def test_a_fresh_native_sign_in_deletes_the_account_and_everything_with_it(app, fake_apple):
    browser = Browser(app, fake_apple).sign_in(SUB_A)
    tokens = app_sign_in(app, fake_apple, SUB_A)
    other_app_session = app_sign_in(app, fake_apple, SUB_A)
    resp = delete(app, tokens["access_token"])
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert body["deleted"] is True and body["web_sessions_ended"] == 1
    assert body["app_sessions_ended"] == 2
    assert body["apple_revocations"] == {"queued": 2, "sent": 2}
    assert users(app) == 0
    # Every session ended: the web session, this app session and the other one.
    assert not browser.is_signed_in()
    for session in (tokens, other_app_session):
        assert api_me(app, session).status_code == 401
        assert refresh(app, session).status_code == 400
    # Apple was told, each token with the client id that obtained it.
    revoked = {(r["client_id"], r["token"]) for r in fake_apple.revoke_requests}
    assert {c for c, _ in revoked} == {SERVICES_ID, BUNDLE_ID}
    with app.app_context():
        rows = db.session.scalars(select(AppleRevocation)).all()
        assert sorted(r.client_id for r in rows) == sorted([SERVICES_ID, BUNDLE_ID])
        assert all(r.sent_at is not None for r in rows)
    [event] = events(app, "account_deleted_in_app")
    assert event.client_id == tokens["client_id"]
    assert events(app, "account_deleted")


def test_apple_down_still_deletes_and_queues_the_revocations(app, fake_apple):
    tokens = app_sign_in(app, fake_apple, SUB_A)
    fake_apple.outage("revoke")
    resp = delete(app, tokens["access_token"])
    assert resp.status_code == 200
    assert resp.get_json()["apple_revocations"] == {"queued": 1, "sent": 0}
    assert users(app) == 0
    with app.app_context():
        [row] = db.session.scalars(select(AppleRevocation)).all()
        assert row.client_id == BUNDLE_ID and row.sent_at is None and row.attempts == 1


def test_a_stale_sign_in_gets_a_step_up_challenge_and_nothing_is_deleted(app, fake_apple):
    tokens = stale_tokens(app, app_sign_in(app, fake_apple, SUB_A))
    claims = decode(app.test_client(), tokens["access_token"], audience=ISSUER + "/api",
                    issuer=ISSUER)
    assert time.time() - claims["auth_time"] > app.config["ACCOUNT_DELETION_MAX_AUTH_AGE"]
    before = snapshot(app)
    resp = delete(app, tokens["access_token"])
    assert resp.status_code == 401
    challenge = challenge_of(resp)
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'max_age="300"' in challenge and "error_description=" in challenge
    assert resp.get_json()["error"] == "insufficient_user_authentication"
    assert snapshot(app) == before and fake_apple.revoke_requests == []
    assert api_me(app, tokens).status_code == 200  # the app session lives on
    # The app signs in with Apple again: the new token is fresh and the deletion goes through.
    again = app_sign_in(app, fake_apple, SUB_A)
    assert delete(app, again["access_token"]).status_code == 200
    assert users(app) == 0


def test_the_max_auth_age_is_a_setting(app, fake_apple):
    app.config["ACCOUNT_DELETION_MAX_AUTH_AGE"] = 3600
    tokens = app_sign_in(app, fake_apple, SUB_A)
    age_sign_ins(app, 360)  # past the default 300 s, within 3600 s
    renewed = refresh(app, tokens).get_json()
    assert delete(app, renewed["access_token"]).status_code == 200
    app2_tokens = app_sign_in(app, fake_apple, "003333.cccccccccccccccccccccccccccccccc.0003")
    age_sign_ins(app, 3700)
    stale = refresh(app, app2_tokens).get_json()
    resp = delete(app, stale["access_token"])
    assert resp.status_code == 401 and 'max_age="3600"' in challenge_of(resp)


def _expired_access_token(app, tokens: dict) -> str:
    with app.app_context():
        server = app.extensions[EXTENSION]
        claims = decode(app.test_client(), tokens["access_token"], audience=ISSUER + "/api",
                        issuer=ISSUER)
        old = int(time.time()) - 3600
        return jwt_tokens.issue_access_token(
            server.keys, server.settings, user_id=claims["sub"], client_id=claims["client_id"],
            audience=claims["aud"], scope=claims["scope"], family_id=claims["sid"],
            auth_time=old, now=old).value


BAD_TOKENS = ["none", "garbage", "expired", "other audience", "id token", "revoked",
              "basic auth", "in the query"]


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_bad_credentials_are_refused_and_nothing_is_deleted(app, fake_apple, case):
    tokens = app_sign_in(app, fake_apple, SUB_A)
    client = app.test_client()
    if case == "other audience":
        auth = fake_apple.authorize(client_id=BUNDLE_ID, sub=SUB_A)
        with app.app_context():
            db.session.execute(update(Client).values(audiences=[PARTNER_API]))
            db.session.commit()
        other = client.post("/oauth/token", data=exchange_params(
            NativeClient(tokens["client_id"], BUNDLE_ID), auth.code, audience=PARTNER_API))
        assert other.status_code == 200, other.get_json()
        tokens = {**tokens, **other.get_json()}
    if case == "revoked":
        client.post("/oauth/revoke", data={"token": tokens["refresh_token"],
                                           "client_id": tokens["client_id"]})
    before = snapshot(app)
    value = {"garbage": "not.a.token", "expired": None, "id token": tokens["id_token"]}.get(
        case, tokens["access_token"])
    if case == "expired":
        value = _expired_access_token(app, tokens)
    if case == "none":
        resp = client.delete(URL)
    elif case == "basic auth":
        resp = client.delete(URL, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    elif case == "in the query":
        resp = client.delete(URL, query_string={"access_token": value})
    else:
        resp = client.delete(URL, headers=bearer(value))
    assert resp.status_code == 401, resp.get_json()
    assert challenge_of(resp).startswith("Bearer ")
    if case not in ("none", "basic auth", "in the query"):
        assert resp.get_json()["error"] == "invalid_token"
    assert snapshot(app) == before
    assert users(app) == 1 and fake_apple.revoke_requests == []


def test_only_delete_is_allowed(app, fake_apple):
    tokens = app_sign_in(app, fake_apple, SUB_A)
    for method in ("get", "post", "put"):
        resp = getattr(app.test_client(), method)(URL, headers=bearer(tokens["access_token"]))
        assert resp.status_code == 405
    assert users(app) == 1


def _web_app_tokens(app, client, fake_apple, *, first_party: bool) -> dict:
    """A web app (public, PKCE) signed in through the browser `client`."""
    webapp = register(app, public=True, first_party=first_party, name="Notes")
    verifier, challenge = pkce()
    params = authorize_params(webapp, challenge)
    first = client.get("/oauth/authorize", query_string=params)
    if not first_party:  # a third-party app asks for consent first
        handle = first.headers["Location"].split("request=")[1]
        first = client.post("/oauth/authorize/consent", data={
            "request": handle, "decision": "allow", "csrf_token": csrf_token(client)})
    back = answer(first)
    resp = redeem(client, webapp, back["code"], verifier)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_a_first_party_web_app_deletes_with_a_fresh_sign_in(app, client, fake_apple):
    sign_in(client, fake_apple, sub=SUB_A)
    tokens = _web_app_tokens(app, client, fake_apple, first_party=True)
    resp = delete(app, tokens["access_token"])
    assert resp.status_code == 200, resp.get_json()
    assert users(app) == 0
    assert [r["client_id"] for r in fake_apple.revoke_requests] == [SERVICES_ID]
    assert client.get("/dashboard").status_code == 302  # the browser session ended too


def test_a_web_app_with_an_old_browser_sign_in_gets_the_challenge(app, client, fake_apple):
    sign_in(client, fake_apple, sub=SUB_A)
    with app.app_context():
        db.session.execute(update(WebSession).values(
            auth_time=now_utc() - timedelta(seconds=3600)))
        db.session.commit()
    tokens = _web_app_tokens(app, client, fake_apple, first_party=True)
    before = snapshot(app)
    resp = delete(app, tokens["access_token"])
    assert resp.status_code == 401
    assert 'error="insufficient_user_authentication"' in challenge_of(resp)
    assert snapshot(app) == before and users(app) == 1


def test_a_third_party_web_app_may_not_delete_the_account(app, client, fake_apple):
    sign_in(client, fake_apple, sub=SUB_A)
    tokens = _web_app_tokens(app, client, fake_apple, first_party=False)
    before = snapshot(app)
    resp = delete(app, tokens["access_token"])
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in challenge_of(resp)
    assert snapshot(app) == before and users(app) == 1
    with app.app_context():
        assert not db.session.scalars(select(AuditEvent).where(
            AuditEvent.event == "account_deleted")).all()
