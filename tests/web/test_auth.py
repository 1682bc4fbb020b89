"""Browser sign-in through Apple's form_post, with Apple faked at the HTTP boundary."""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AppleToken
from siwa_web.models import AuditEvent
from siwa_web.models import LoginTransaction
from siwa_web.models import PendingProfile
from siwa_web.models import User
from siwa_web.models import WebSession
from siwa_web.models.base import now_utc
from support.apple import REMOVE
from support.config import count_rows
from support.web import CALLBACK
from support.web import callback_form
from support.web import csrf_token
from support.web import sign_in
from support.web import start_login

USER_JSON = json.dumps({"name": {"firstName": "Maria", "lastName": "Ruiz"},
                        "email": "ceo@example.com"})


def logout(client):
    return client.post("/auth/logout", data={"csrf_token": csrf_token(client)})


def rows(app, model):
    with app.app_context():
        return db.session.execute(select(model)).scalars().all()


# --- the trip to Apple ---------------------------------------------------------------------------


def test_login_redirects_to_apple_with_form_post(client, app):
    resp = client.get("/auth/apple/login")
    assert resp.status_code == 303
    loc = resp.headers["Location"]
    assert loc.startswith("https://appleid.apple.com/auth/authorize?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}
    assert params["response_type"] == "code id_token"
    assert params["response_mode"] == "form_post"
    assert params["scope"] == "name email"
    assert params["client_id"] == "com.example.siwa.web"
    assert params["redirect_uri"] == "https://siwa.test/auth/apple/callback"
    assert len(params["state"]) >= 43 and len(params["nonce"]) >= 43
    tx = rows(app, LoginTransaction)
    assert len(tx) == 1 and tx[0].consumed_at is None
    cookies = resp.headers.getlist("Set-Cookie")
    cookie = next(c for c in cookies if c.startswith("__Secure-siwa-tx="))
    for attr in ("Secure", "HttpOnly", "SameSite=None", "Path=/auth/apple/callback", "Max-Age=600"):
        assert attr in cookie
    # state and nonce are stored hashed or random, never the browser secret itself
    assert tx[0].state_hash not in loc


def test_login_page_shows_apple_button(client):
    html = client.get("/auth/login").get_data(as_text=True)
    assert "Sign in with Apple" in html and 'class="apple-button"' in html


# --- successful sign-ins -------------------------------------------------------------------------


def test_first_login_creates_user_with_one_time_name(client, app, fake_apple):
    resp = sign_in(client, fake_apple, user=USER_JSON)
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard"
    users = rows(app, User)
    assert len(users) == 1
    user = users[0]
    assert (user.first_name, user.last_name) == ("Maria", "Ruiz")
    # the unsigned `user.email` is ignored; the identity token's email is used (WEB-21)
    assert user.email.endswith("@privaterelay.appleid.com") and user.is_private_email
    assert len(rows(app, AppleIdentity)) == 1
    [tok] = rows(app, AppleToken)
    assert tok.client_id == "com.example.siwa.web"
    issued = fake_apple.token_requests[0]
    assert issued["grant_type"] == "authorization_code"
    assert issued["redirect_uri"] == "https://siwa.test/auth/apple/callback"
    assert rows(app, PendingProfile) == []
    [tx] = rows(app, LoginTransaction)
    assert tx.consumed_at is not None
    cleared = [c for c in resp.headers.getlist("Set-Cookie") if c.startswith("__Secure-siwa-tx=")]
    assert cleared and "Max-Age=0" in cleared[0] or "Expires=Thu, 01 Jan 1970" in cleared[0]
    page = client.get("/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Maria Ruiz" in html and "Private relay" in html


def test_apple_refresh_token_is_encrypted_at_rest(client, app, fake_apple):
    sign_in(client, fake_apple)
    [tok] = rows(app, AppleToken)
    assert tok.refresh_token_encrypted and not tok.refresh_token_encrypted.startswith("r")
    with app.app_context():
        from siwa_web.users.accounts import cipher

        assert cipher().decrypt(tok.refresh_token_encrypted).startswith("r")


def test_repeat_login_finds_user_by_sub_and_keeps_name(client, app, fake_apple):
    sign_in(client, fake_apple, sub="000001.aaaa.0001", user=USER_JSON)
    logout(client)
    other = json.dumps({"name": {"firstName": "Evil", "lastName": "Rename"}})
    resp = sign_in(client, fake_apple, sub="000001.aaaa.0001", user=other)
    assert resp.status_code == 303
    [user] = rows(app, User)
    assert user.first_name == "Maria"
    assert len(rows(app, WebSession)) == 2


def test_same_email_different_sub_is_a_different_user(client, app, fake_apple):
    """Never link by email (D8, WEB-26/27)."""
    sign_in(client, fake_apple, sub="000001.aaaa.0001", email="same@example.com")
    logout(client)
    sign_in(client, fake_apple, sub="000002.bbbb.0002", email="same@example.com")
    assert len(rows(app, User)) == 2


@pytest.mark.parametrize("flag", [True, "true"])
def test_email_flags_as_bool_or_string(client, app, fake_apple, flag):
    sign_in(client, fake_apple, email="x@example.com", email_verified=flag, is_private_email=False)
    [user] = rows(app, User)
    assert user.email_verified is True and user.is_private_email is False


@pytest.mark.parametrize("bad", ["{not json", "x" * 5000, "[" * 10000,
                                 json.dumps({"name": {"firstName": "x" * 10000}}),
                                 json.dumps({"name": "Maria"}), json.dumps([1, 2])])
def test_garbage_user_json_still_signs_in_without_name(client, app, fake_apple, bad):
    resp = sign_in(client, fake_apple, user=bad)
    assert resp.status_code == 303
    [user] = rows(app, User)
    assert user.first_name is None and user.last_name is None


def test_name_survives_an_apple_outage_after_consent(client, app, fake_apple):
    """Pitfall P2: the name is saved by sub before the code is redeemed."""
    sub = "000003.cccc.0003"
    fake_apple.next_token_response(status=503, text="down")
    assert sign_in(client, fake_apple, sub=sub, user=USER_JSON).status_code == 503
    assert rows(app, User) == []
    assert sign_in(client, fake_apple, sub=sub).status_code == 303  # Apple sends no name now
    [user] = rows(app, User)
    assert (user.first_name, user.last_name) == ("Maria", "Ruiz")
    assert rows(app, PendingProfile) == []


def test_hostile_name_is_stored_as_text_and_escaped(client, app, fake_apple):
    xss = json.dumps({"name": {"firstName": "<img src=x onerror=alert(1)>", "lastName": "B"}})
    sign_in(client, fake_apple, user=xss)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


# --- next= open redirects (WEB-23) --------------------------------------------------------------


@pytest.mark.parametrize("target", [
    "https://evil.example", "//evil.example", "/\\evil.example", "\\\\evil.example",
    "/%5Cevil.example", "javascript:alert(1)", "/%0d%0aLocation:%20https://evil.example",
    "https:evil.example", "/\t/evil.example", "///evil.example", "/%2F%2Fevil.example",
])
def test_next_never_leaves_the_site(client, fake_apple, target):
    resp = sign_in(client, fake_apple, next_url=target)
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/dashboard"


def test_next_path_on_this_site_is_kept(client, fake_apple):
    resp = sign_in(client, fake_apple, next_url="/dashboard?tab=sessions")
    assert resp.headers["Location"] == "/dashboard?tab=sessions"


# --- refused callbacks: nothing stored, Apple not called ----------------------------------------


def assert_refused(resp, app, before, fake_apple, status=400, apple_calls=0, signed_in=False):
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    html = resp.get_data(as_text=True)
    assert "Reference:" in html and "Nothing was changed" in html
    after = count_rows(app)
    assert after["users"] == before["users"] and after["web_sessions"] == before["web_sessions"]
    assert after["apple_identities"] == before["apple_identities"]
    assert after["apple_tokens"] == before["apple_tokens"]
    assert len(fake_apple.token_requests) == apple_calls
    if not signed_in:  # no session cookie handed out by a refused callback
        assert "__Host-siwa" not in "".join(resp.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize("state", [None, "", "forged" + "x" * 37, "x" * 5000])
def test_missing_or_forged_state(client, app, fake_apple, state):
    start = start_login(client)
    form = callback_form(fake_apple, start)
    form.pop("state")
    if state is not None:
        form["state"] = state
    before = count_rows(app)
    assert_refused(client.post(CALLBACK, data=form), app, before, fake_apple)


def test_state_from_another_browser_is_refused(app, fake_apple):
    """Login CSRF (WEB-04): the attacker's genuine state posted from the victim's browser."""
    attacker, victim = app.test_client(), app.test_client()
    start = start_login(attacker)
    form = callback_form(fake_apple, start)
    before = count_rows(app)
    assert_refused(victim.post(CALLBACK, data=form), app, before, fake_apple)
    # the attacker's own browser can still finish (the foreign attempt did not burn it)
    assert attacker.post(CALLBACK, data=form).status_code == 303


def test_replayed_callback_is_refused(client, app, fake_apple):
    start = start_login(client)
    form = callback_form(fake_apple, start)
    assert client.post(CALLBACK, data=form).status_code == 303
    before = count_rows(app)
    assert_refused(client.post(CALLBACK, data=form), app, before, fake_apple, apple_calls=1,
                   signed_in=True)


def test_expired_state_is_refused(client, app, fake_apple):
    start = start_login(client)
    with app.app_context():
        db.session.execute(update(LoginTransaction).values(
            expires_at=now_utc() - timedelta(seconds=1)))
        db.session.commit()
    before = count_rows(app)
    assert_refused(client.post(CALLBACK, data=callback_form(fake_apple, start)), app, before,
                   fake_apple)


@pytest.mark.parametrize("drop", ["code", "id_token"])
def test_missing_code_or_id_token(client, app, fake_apple, drop):
    form = callback_form(fake_apple, start_login(client))
    form.pop(drop)
    before = count_rows(app)
    assert_refused(client.post(CALLBACK, data=form), app, before, fake_apple)


def test_code_with_hostile_characters(client, app, fake_apple):
    form = callback_form(fake_apple, start_login(client))
    form["code"] = "abc\r\nSet-Cookie: x=1"
    before = count_rows(app)
    assert_refused(client.post(CALLBACK, data=form), app, before, fake_apple)


def test_cancel_returns_to_login_with_message(client, app, fake_apple):
    start = start_login(client)
    before = count_rows(app)
    resp = client.post(CALLBACK, data={"error": "user_cancelled_authorize", "state": start.state})
    assert resp.status_code == 303 and resp.headers["Location"] == "/auth/login"
    assert "was cancelled" in client.get("/auth/login").get_data(as_text=True)
    after = count_rows(app)
    assert after["users"] == before["users"] == 0 and fake_apple.token_requests == []
    [tx] = rows(app, LoginTransaction)
    assert tx.consumed_at is not None


def test_callback_via_get_is_not_allowed(client, fake_apple):
    start = start_login(client)
    resp = client.get(CALLBACK, query_string={"code": "c", "state": start.state})
    assert resp.status_code == 405
    assert fake_apple.token_requests == []


def test_oversized_body_is_refused(client, app, fake_apple):
    before = count_rows(app)
    resp = client.post(CALLBACK, data={"state": "x", "user": "y" * 100_000})
    assert resp.status_code == 413
    assert count_rows(app)["users"] == before["users"]


# --- identity-token checks at the callback ----------------------------------------------------


def test_front_channel_nonce_mismatch(client, app, fake_apple):
    """Code injection (WEB-09): a genuine token minted for another transaction."""
    start = start_login(client)
    auth = fake_apple.authorize(nonce="someone-elses-nonce")
    form = {"code": auth.code, "id_token": auth.id_token, "state": start.state}
    before = count_rows(app)
    assert_refused(client.post(CALLBACK, data=form), app, before, fake_apple)


@pytest.mark.parametrize("claims", [
    {"aud": "com.example.siwa.ios"}, {"iss": "https://appleid.apple.com.evil.example"},
    {"exp": 1}, {"sub": ""}, {"nonce": REMOVE},
])
def test_bad_front_channel_tokens(client, app, fake_apple, claims):
    start = start_login(client)
    auth = fake_apple.authorize(nonce=start.nonce)
    token = fake_apple.mint_id_token(code=auth.code, **{"nonce": start.nonce, **claims})
    before = count_rows(app)
    resp = client.post(CALLBACK, data={"code": auth.code, "id_token": token, "state": start.state})
    assert_refused(resp, app, before, fake_apple)


def test_forged_front_channel_signature(client, app, fake_apple):
    start = start_login(client)
    auth = fake_apple.authorize(nonce=start.nonce)
    token = fake_apple.mint_id_token(code=auth.code, nonce=start.nonce, key=fake_apple.foreign_key)
    before = count_rows(app)
    resp = client.post(CALLBACK, data={"code": auth.code, "id_token": token, "state": start.state})
    assert_refused(resp, app, before, fake_apple)


def test_front_and_back_channel_subjects_must_agree(client, app, fake_apple):
    """WEB-20: a victim's token posted by the browser cannot override Apple's answer."""
    start = start_login(client)
    auth = fake_apple.authorize(nonce=start.nonce, sub="000009.attacker.0009")
    victim = fake_apple.mint_id_token(code=auth.code, nonce=start.nonce, sub="000008.victim.0008")
    before = count_rows(app)
    resp = client.post(CALLBACK, data={"code": auth.code, "id_token": victim, "state": start.state})
    assert_refused(resp, app, before, fake_apple, apple_calls=1)


def test_back_channel_token_for_another_audience(client, app, fake_apple):
    start = start_login(client)
    auth = fake_apple.authorize(nonce=start.nonce)
    fake_apple.next_token_response(json={
        "access_token": "a1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "r1",
        "id_token": fake_apple.mint_id_token(sub=auth.sub, aud="com.example.siwa.ios")})
    before = count_rows(app)
    resp = client.post(CALLBACK, data={"code": auth.code, "id_token": auth.id_token,
                                       "state": start.state})
    assert_refused(resp, app, before, fake_apple, apple_calls=1)


# --- Apple failures (WEB-28 … WEB-31) -----------------------------------------------------------


@pytest.mark.parametrize("reply, status", [
    ({"exc": requests.exceptions.ReadTimeout}, 503),
    ({"exc": requests.exceptions.ConnectTimeout}, 503),
    ({"status": 500, "text": "oops"}, 503),
    ({"status": 502, "text": "<html>bad gateway</html>"}, 503),
    ({"status": 200, "text": "<html>not json</html>"}, 503),
    ({"status": 200, "json": {"access_token": "a"}}, 503),
    ({"status": 200, "json": {"id_token": ""}}, 503),
    ({"status": 200, "json": {"id_token": "a.b"}}, 400),  # a malformed token: not an outage
    ({"status": 400, "json": {"error": "invalid_grant",
                              "error_description": "The code has already been used."}}, 400),
    ({"status": 400, "json": {"error": "invalid_client"}}, 500),
])
def test_apple_token_endpoint_failures(client, app, fake_apple, reply, status):
    start = start_login(client)
    form = callback_form(fake_apple, start)
    fake_apple.next_token_response(**reply)
    before = count_rows(app)
    resp = client.post(CALLBACK, data=form)
    assert_refused(resp, app, before, fake_apple, status=status, apple_calls=1)
    if status == 503:
        assert resp.headers["Retry-After"]
    assert "Traceback" not in resp.get_data(as_text=True)


def test_jwks_unreachable_on_a_cold_cache(client, app, fake_apple):
    fake_apple.outage("keys")
    start = start_login(client)
    before = count_rows(app)
    assert_refused(client.post(CALLBACK, data=callback_form(fake_apple, start)), app, before,
                   fake_apple, status=503)


# --- sessions -----------------------------------------------------------------------------------


def session_cookie(client):
    cookie = client.get_cookie("__Host-siwa")
    return cookie.value if cookie else None


def test_session_cookie_flags(client, fake_apple):
    resp = sign_in(client, fake_apple)
    set_cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("__Host-siwa="))
    for attr in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attr in set_cookie
    assert "Domain=" not in set_cookie


def test_session_fixation_new_token_at_login(app, client, fake_apple):
    """WEB-24: a cookie planted before sign-in does not become an authenticated session."""
    client.get("/auth/login")
    sign_in(client, fake_apple)
    first = session_cookie(client)
    logout(client)
    sign_in(client, fake_apple)
    second = session_cookie(client)
    assert first and second and first != second
    attacker = app.test_client()
    attacker.set_cookie("__Host-siwa", first, domain="localhost")
    assert attacker.get("/dashboard").status_code == 302


def test_logout_ends_the_session_on_the_server(app, client, fake_apple):
    sign_in(client, fake_apple)
    stolen = session_cookie(client)
    assert client.get("/auth/logout").status_code == 405
    resp = logout(client)
    assert resp.status_code == 303
    [row] = rows(app, WebSession)
    assert row.revoked_at is not None and row.revoked_reason == "logout"
    replay = app.test_client()
    replay.set_cookie("__Host-siwa", stolen, domain="localhost")
    resp = replay.get("/dashboard")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/login")


def test_revoked_session_row_bounces_at_once(app, client, fake_apple):
    sign_in(client, fake_apple)
    with app.app_context():
        db.session.execute(update(WebSession).values(revoked_at=now_utc()))
        db.session.commit()
    resp = client.get("/dashboard")
    assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"]


def test_idle_session_expires(app, client, fake_apple):
    sign_in(client, fake_apple)
    idle = app.config["SESSION_IDLE_TIMEOUT"] + 1
    with app.app_context():
        db.session.execute(update(WebSession).values(
            last_seen_at=now_utc() - timedelta(seconds=idle)))
        db.session.commit()
    assert client.get("/dashboard").status_code == 302


def test_logout_requires_csrf_token(client, fake_apple):
    sign_in(client, fake_apple)
    assert client.post("/auth/logout").status_code == 400
    assert client.post("/auth/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/dashboard").status_code == 200


def test_dashboard_requires_login(client):
    resp = client.get("/dashboard")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/login?next=")


# --- audit and logs -----------------------------------------------------------------------------


def test_audit_events_for_success_and_failure(client, app, fake_apple):
    sign_in(client, fake_apple)
    client.post(CALLBACK, data={"state": "forged", "code": "c", "id_token": "x"})
    events = {(e.event, e.outcome) for e in rows(app, AuditEvent)}
    assert ("web_login", "success") in events and ("web_login", "failure") in events


def test_no_secrets_in_logs(client, app, fake_apple, caplog):
    caplog.set_level(logging.DEBUG)
    start = start_login(client)
    form = callback_form(fake_apple, start, user=USER_JSON)
    client.post(CALLBACK, data=form)
    fake_apple.next_token_response(status=400, json={"error": "invalid_grant"})
    start2 = start_login(client)
    form2 = callback_form(fake_apple, start2)
    client.post(CALLBACK, data=form2)
    text = caplog.text
    secrets_ = [form["code"], form["id_token"], form["state"], form2["code"], start.nonce,
                app.config["APPLE_PRIVATE_KEY"].splitlines()[1]]
    secrets_ += [r.get("client_secret", "") for r in fake_apple.token_requests]
    for secret in filter(None, secrets_):
        assert secret not in text


def test_database_failure_at_commit_is_503_and_writes_nothing(client, app, fake_apple,
                                                              monkeypatch):
    """The whole sign-in is one transaction, on SQLite too (no savepoint auto-commit)."""
    from sqlalchemy.exc import OperationalError

    start = start_login(client)
    form = callback_form(fake_apple, start, user=json.dumps({"name": {"firstName": "A"}}))
    real_commit = db.session.commit
    calls = []

    def failing_commit():
        calls.append(1)
        if len(calls) == 3:  # 1: state consumed, 2: pending name saved, 3: the sign-in itself
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        real_commit()

    monkeypatch.setattr(db.session, "commit", failing_commit)
    resp = client.post(CALLBACK, data=form)
    monkeypatch.undo()
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert rows(app, User) == [] and rows(app, AppleIdentity) == []
    assert rows(app, WebSession) == [] and rows(app, AppleToken) == []
