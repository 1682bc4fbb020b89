"""The account dashboard: what it shows, and the actions that end sessions.

Everything goes through the real flows: browsers sign in through the callback with Apple faked
at the HTTP boundary (`fake_apple`), apps through `POST /oauth/token`. The helpers at the top
are shared with the other dashboard, deletion and outbox test modules.
"""
from __future__ import annotations

import html as html_text
import re
from datetime import timedelta

import pytest
from conftest import count_rows
from fixtures_apple import BUNDLE_ID
from fixtures_tokens import NativeClient
from fixtures_tokens import exchange_params
from fixtures_web import CALLBACK
from fixtures_web import callback_form
from fixtures_web import start_login
from sqlalchemy import select
from sqlalchemy import update

from siwa_web.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AuditEvent
from siwa_web.models import Client
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.models import WebSession
from siwa_web.models.base import now_utc
from siwa_web.oauth import clients

SAFARI_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.4 Safari/605.1.15")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
APP_UA = "Acme/2.1 CFNetwork/1494.0.7 Darwin/23.4.0"
SUB_A = "001111.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.0001"
SUB_A2 = "001111.a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2.0002"
SUB_B = "002222.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.0001"


# --- helpers (imported by the other dashboard test modules) -------------------------------------


class Browser:
    """One browser (own cookie jar and user agent) driving the real sign-in flow."""

    def __init__(self, app, fake_apple, ua: str = SAFARI_MAC) -> None:
        self.app, self.fake_apple = app, fake_apple
        self.client = app.test_client()
        self.client.environ_base["HTTP_USER_AGENT"] = ua

    def sign_in(self, sub: str = SUB_A, **claims) -> Browser:
        resp = self._through_apple(start_login(self.client), sub, **claims)
        assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard", resp.data[:300]
        return self

    def link(self, sub: str, **claims):
        """Link another Apple ID through the same Apple flow, as the dashboard's button does."""
        start = start_login(self.client, path="/auth/apple/link", method="post",
                            data={"csrf_token": self.csrf()})
        return self._through_apple(start, sub, **claims)

    def reauth(self, sub: str = SUB_A, next_url: str = "/dashboard/delete"):
        start = start_login(self.client, path="/auth/apple/reauth", method="post",
                            data={"csrf_token": self.csrf(), "next": next_url})
        return self._through_apple(start, sub)

    def _through_apple(self, start, sub: str, **claims):
        return self.client.post(CALLBACK, data=callback_form(self.fake_apple, start, sub=sub,
                                                             **claims))

    def csrf(self, path: str = "/dashboard") -> str:
        html = self.client.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def post(self, path: str, data: dict | None = None, **kwargs):
        """POST a dashboard form the way the page does, with this browser's CSRF token."""
        return self.client.post(path, data={"csrf_token": self.csrf(), **(data or {})}, **kwargs)

    def page(self, path: str = "/dashboard") -> str:
        resp = self.client.get(path)
        assert resp.status_code == 200, resp.status_code
        return resp.get_data(as_text=True)

    def is_signed_in(self) -> bool:
        resp = self.client.get("/dashboard")
        assert resp.status_code in (200, 302)
        if resp.status_code == 302:
            assert resp.headers["Location"].startswith("/auth/login")
        return resp.status_code == 200


def ensure_client(app, bundle_id: str = BUNDLE_ID, name: str = "Acme for iPhone") -> str:
    """Register a native client once; returns its client_id."""
    with app.app_context():
        found = db.session.scalar(select(Client.id).where(Client.bundle_id == bundle_id))
        if found:
            return found
        client = clients.create(name=name, bundle_id=bundle_id)
        db.session.commit()
        return client.id


def app_sign_in(app, fake_apple, sub: str = SUB_A, bundle_id: str = BUNDLE_ID,
                scope: str = "openid email offline_access") -> dict:
    """A native app's sign-in: Apple code → our tokens, through POST /oauth/token."""
    client_id = ensure_client(app, bundle_id)
    auth = fake_apple.authorize(client_id=bundle_id, sub=sub)
    params = exchange_params(NativeClient(client_id, bundle_id), auth.code, scope=scope)
    resp = app.test_client().post("/oauth/token", data=params, headers={"User-Agent": APP_UA})
    assert resp.status_code == 200, resp.get_json()
    return {**resp.get_json(), "client_id": client_id}


def refresh(app, tokens: dict):
    return app.test_client().post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": tokens["client_id"]})


def api_me(app, tokens: dict, path: str = "/api/me"):
    return app.test_client().get(path, headers={
        "Authorization": f"Bearer {tokens['access_token']}"})


def snapshot(app) -> dict:
    """Row counts plus every revocation mark: "nothing changed" means this is equal."""
    state = count_rows(app)
    state.pop("audit_events", None)
    with app.app_context():
        state["revoked_sessions"] = sorted(db.session.scalars(
            select(WebSession.id).where(WebSession.revoked_at.is_not(None))))
        state["revoked_families"] = sorted(db.session.scalars(
            select(TokenFamily.id).where(TokenFamily.revoked_at.is_not(None))))
    return state


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def one(app, model, *where):
    with app.app_context():
        return db.session.scalars(select(model).where(*where)).one()


def make_stale(app, seconds: int | None = None) -> None:
    """Age every session's sign-in past FRESH_LOGIN_MAX_AGE."""
    age = seconds or app.config["FRESH_LOGIN_MAX_AGE"] + 60
    with app.app_context():
        db.session.execute(update(WebSession).values(auth_time=now_utc() - timedelta(seconds=age)))
        db.session.commit()


def section(html: str, section_id: str) -> str:
    """The HTML of one dashboard card, by its id."""
    start = html.index(f'id="{section_id}"')
    return html[start:html.index("</section>", start)]


def flashes(browser: Browser, path: str) -> str:
    html = browser.client.get(path).get_data(as_text=True)
    return html_text.unescape(" ".join(re.findall(r'class="flash[^"]*"[^>]*>([^<]*)<', html)))


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
    assert "Continue with Apple" in html  # link another Apple ID


def test_dashboard_without_email_or_name(app, fake_apple):
    from fixtures_apple import REMOVE

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
            db.session.add(AuditEvent(user_id=user_id, event="refresh", outcome="success",
                                      created_at=base + timedelta(minutes=i),
                                      details={"n": i}))
        db.session.add(AuditEvent(user_id="someone-else", event="web_login", outcome="success"))
        db.session.commit()
    first = me.page("/dashboard/activity")
    assert "Page 1 of 3" in first and "62 events" not in first and "61 events" in first
    assert first.index("Signed in on the web") < first.index("An app renewed its sign-in")
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
    from siwa_web.crypto import token_hash
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
