"""The account dashboard: what it shows, and the actions that end sessions.

Everything goes through the real flows: browsers sign in through the callback with Apple faked
at the HTTP boundary (`fake_apple`), apps through `POST /oauth/token`.
The helpers live in tests/support/dashboard.py.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AuditEvent
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.models import WebSession
from siwa_web.models.base import now_utc
from support.dashboard import SAFARI_IPHONE
from support.dashboard import SAFARI_MAC
from support.dashboard import SUB_A
from support.dashboard import Browser
from support.dashboard import api_me
from support.dashboard import app_sign_in
from support.dashboard import events
from support.dashboard import flashes
from support.dashboard import one
from support.dashboard import refresh
from support.dashboard import section

# --- what the dashboard shows -------------------------------------------------------------------


def test_dashboard_shows_profile_identities_sessions_apps_and_activity(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A, email="maria@example.com",
                                          is_private_email=False)
    Browser(app, fake_apple, SAFARI_IPHONE).sign_in(SUB_A, email="maria@example.com",
                                                    is_private_email=False)
    tokens = app_sign_in(app, fake_apple, SUB_A)
    html = me.page()
    main = html.split('<main id="content"', 1)[1]
    assert "maria@example.com" in main and "Verified" in main
    assert "001111.aaaa…0001" in main  # the Apple `sub`, shortened
    assert "This website" in main and "Acme for iPhone" in main  # clients it signed in through
    assert "Apple token held" in main
    assert "Safari 17 on macOS" in main and "This browser" in main
    assert "Safari 17 on iPhone" in main
    assert "Acme 2 on iOS" in main and "Stay signed in" in main  # the app session, its device
    assert "Signed in on the web" in main and "Signed in to an app" in main
    # DASH-12: metadata only, never a token or anything usable as one
    for secret in (tokens["refresh_token"], tokens["access_token"]):
        assert secret not in html
    with app.app_context():
        hashes = db.session.scalars(select(WebSession.token_hash)).all()
    assert not any(h in html for h in hashes)


def test_empty_states_explain_themselves(signed_in):
    html = signed_in.get("/dashboard").get_data(as_text=True)
    assert "No other browser is signed in" in html
    assert "No app is signed in" in html
    assert "Your only way to sign in" in html
    assert "Continue with Apple" in html  # link another Apple Account


def test_pages_say_apple_account_in_whole_sentences(app, fake_apple):
    """Apple's current name for the account is "Apple Account"; the Apple-token line reads."""
    me = Browser(app, fake_apple).sign_in(SUB_A)
    html = me.page()
    assert "When you remove it, siwa-web asks Apple to end this sign-in too." in html
    identity = one(app, AppleIdentity).id
    pages = [html, me.page("/dashboard/activity"), me.page("/auth/login?prompt=login"),
             me.client.get(f"/dashboard/identities/{identity}/unlink").get_data(as_text=True)]
    pages.append(Browser(app, fake_apple).client.get("/auth/login").get_data(as_text=True))
    for page in pages:
        assert "Apple ID" not in page
    assert "Apple Account" in html


def test_dashboard_without_email_or_name(app, fake_apple):
    from support.apple import REMOVE

    html = Browser(app, fake_apple).sign_in(email=REMOVE, email_verified=REMOVE,
                                            is_private_email=REMOVE).page()
    assert "Not shared" in html and "Email not shared" in html


def test_pages_need_a_session(client):
    for path in ("/dashboard", "/dashboard/activity", "/dashboard/delete",
                 "/dashboard/identities/x/unlink"):
        resp = client.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/login")


def test_activity_is_paginated_newest_first(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    user_id = one(app, User).id
    with app.app_context():
        base = now_utc() - timedelta(days=1)
        for i in range(60):
            db.session.add(AuditEvent(user_id=user_id, event="session_revoked",
                                      outcome="success", created_at=base + timedelta(minutes=i),
                                      details={"session": str(i)}))
        db.session.add(AuditEvent(user_id="someone-else", event="web_login", outcome="success"))
        db.session.commit()
    first = me.page("/dashboard/activity")
    assert "Page 1 of 3" in first and "62 events" not in first and "61 events" in first
    assert first.index("Signed in on the web") < first.index("Signed out a web session")
    last = me.page("/dashboard/activity?page=3")
    assert "Page 3 of 3" in last and 'rel="next"' not in last and 'rel="prev"' in last
    assert "Page 1 of 3" in me.page("/dashboard/activity?page=-5")
    assert "Page 3 of 3" in me.page("/dashboard/activity?page=999")
    assert "See all activity" in me.page()


def test_account_pages_are_not_cached_and_carry_security_headers(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    identity = one(app, AppleIdentity).id
    for path in ("/dashboard", "/dashboard/activity", "/dashboard/delete",
                 f"/dashboard/identities/{identity}/unlink", "/dashboard/identities/nope/unlink"):
        resp = me.client.get(path)
        assert resp.headers["Cache-Control"] == "no-store", path
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"]


def test_pages_have_no_inline_styles_or_scripts(app, fake_apple):
    """The CSP allows only our own stylesheet: inline style attributes would be blocked."""
    me = Browser(app, fake_apple).sign_in()
    app_sign_in(app, fake_apple)
    for path in ("/dashboard", "/dashboard/activity", "/dashboard/delete", "/auth/login"):
        html = me.client.get(path).get_data(as_text=True)
        assert " style=" not in html and "<style" not in html and "<script" not in html


# --- web sessions -------------------------------------------------------------------------------


def test_revoke_another_web_session_bounces_it_at_once(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    phone = Browser(app, fake_apple, SAFARI_IPHONE).sign_in()
    other = one(app, WebSession, WebSession.user_agent == SAFARI_IPHONE).id
    resp = me.post(f"/dashboard/sessions/{other}/revoke")
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard"
    assert "That session is signed out" in flashes(me, "/dashboard")
    assert not phone.is_signed_in()  # DASH-10: the copied cookie is dead
    assert me.is_signed_in()
    [event] = events(app, "session_revoked")
    assert event.details == {"session": other} and event.outcome == "success"
    again = me.post(f"/dashboard/sessions/{other}/revoke")
    assert again.status_code == 303 and len(events(app, "session_revoked")) == 1


def test_sign_out_every_other_session(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    others = [Browser(app, fake_apple, SAFARI_IPHONE).sign_in() for _ in range(2)]
    resp = me.post("/dashboard/sessions/revoke-others")
    assert resp.status_code == 303
    assert "Signed out 2 other sessions" in flashes(me, "/dashboard")
    assert [b.is_signed_in() for b in others] == [False, False]
    assert me.is_signed_in()
    [event] = events(app, "sessions_revoked_others")
    assert event.details == {"count": 2}


def test_revoking_this_browsers_own_session_signs_it_out(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    own = one(app, WebSession).id
    sessions_card = section(me.page(), "web-sessions")
    # the current browser's row offers the button docs/dashboard.md describes
    assert f'action="/dashboard/sessions/{own}/revoke"' in sessions_card
    assert 'Sign out<span class="visually-hidden"> this browser</span>' in sessions_card
    resp = me.post(f"/dashboard/sessions/{own}/revoke")
    assert resp.status_code == 303 and resp.headers["Location"] == "/auth/login"
    assert not me.is_signed_in()


# --- app sessions -------------------------------------------------------------------------------


def test_revoking_an_app_session_refuses_its_refresh_and_access_tokens(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    tokens = app_sign_in(app, fake_apple)
    kept = app_sign_in(app, fake_apple)  # another device: must keep working
    assert api_me(app, tokens).status_code == 200
    family = one(app, TokenFamily, TokenFamily.revoked_at.is_(None),
                 TokenFamily.id != _family_of(app, kept)).id
    resp = me.post(f"/dashboard/apps/{family}/revoke")
    assert resp.status_code == 303
    assert "signed out on that device" in flashes(me, "/dashboard")
    refused = refresh(app, tokens)
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert api_me(app, tokens).status_code == 401
    assert api_me(app, tokens, "/userinfo").status_code == 401
    assert api_me(app, kept).status_code == 200 and refresh(app, kept).status_code == 200
    [event] = events(app, "family_revoked")
    assert event.details == {"family": family} and event.client_id == tokens["client_id"]


def _family_of(app, tokens: dict) -> str:
    from siwa_web.infra.crypto import token_hash
    from siwa_web.models import RefreshToken

    with app.app_context():
        return db.session.scalar(select(RefreshToken.family_id).where(
            RefreshToken.token_hash == token_hash(tokens["refresh_token"])))


def test_revoke_all_app_sessions(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    apps = [app_sign_in(app, fake_apple) for _ in range(3)]
    resp = me.post("/dashboard/apps/revoke-all")
    assert resp.status_code == 303
    for tokens in apps:
        assert refresh(app, tokens).status_code == 400
        assert api_me(app, tokens).status_code == 401
    [event] = events(app, "families_revoked_all")
    assert event.details == {"count": 3}
    assert me.is_signed_in()  # web sessions are not app sessions
    assert "No app is signed in" in me.page()


def test_revoked_app_session_disappears_from_the_list(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    app_sign_in(app, fake_apple)
    assert "Acme 2 on iOS" in section(me.page(), "app-sessions")
    family = one(app, TokenFamily).id
    me.post(f"/dashboard/apps/{family}/revoke")
    html = section(me.page(), "app-sessions")
    assert "Acme 2 on iOS" not in html and "No app is signed in" in html
    assert me.post(f"/dashboard/apps/{family}/revoke").status_code == 303  # idempotent
    assert len(events(app, "family_revoked")) == 1


@pytest.mark.parametrize("ua, label", [
    (SAFARI_MAC, "Safari 17 on macOS"),
    (SAFARI_IPHONE, "Safari 17 on iPhone"),
    ("", "Unknown device"),
    ("<script>alert(1)</script>", "Unknown device"),
])
def test_device_names_from_user_agents(app, fake_apple, ua, label):
    Browser(app, fake_apple).sign_in()
    other = Browser(app, fake_apple, ua).sign_in()
    assert label in other.page()
