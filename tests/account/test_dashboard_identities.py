"""Linked Apple Accounts on the dashboard: linking another, and unlinking (never the last one)."""
from __future__ import annotations

from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AppleRevocation
from siwa_web.models import User
from support.apple import SERVICES_ID
from support.dashboard import SAFARI_IPHONE
from support.dashboard import SUB_A
from support.dashboard import SUB_A2
from support.dashboard import SUB_B
from support.dashboard import Browser
from support.dashboard import api_me
from support.dashboard import app_sign_in
from support.dashboard import apple_tokens
from support.dashboard import events
from support.dashboard import flashes
from support.dashboard import make_stale
from support.dashboard import one
from support.dashboard import refresh
from support.dashboard import section
from support.dashboard import snapshot


def identity_id(app, sub: str) -> str:
    return one(app, AppleIdentity, AppleIdentity.sub == sub).id


def test_link_another_apple_id_from_the_dashboard(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    resp = me.link(SUB_A2, email="work@example.com", is_private_email=False)
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard"
    html = me.page()
    ids = section(html, "apple-ids")
    assert "001111.aaaa…0001" in ids and "001111.a2a2…0002" in ids and "work@example.com" in ids
    assert ids.count("Remove…") == 2 and "Your only way to sign in" not in ids
    assert "Apple Account linked" in html
    assert len(events(app, "identity_linked")) == 1


def test_linking_an_apple_id_of_another_account_is_refused(app, fake_apple):
    Browser(app, fake_apple).sign_in(SUB_B)
    me = Browser(app, fake_apple).sign_in(SUB_A)
    resp = me.link(SUB_B)
    assert resp.status_code == 409
    assert "belongs to another account" in resp.get_data(as_text=True)
    assert "001111.aaaa…0001" in me.page() and "002222" not in section(me.page(), "apple-ids")


def test_unlink_removes_the_apple_id_and_revokes_its_apple_token(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    me.link(SUB_A2)
    expected = apple_tokens(app, SUB_A2)
    assert len(expected) == 1
    target = identity_id(app, SUB_A2)
    confirm = me.page(f"/dashboard/identities/{target}/unlink")
    assert "Remove this Apple Account?" in confirm and "We ask Apple" in confirm
    resp = me.post(f"/dashboard/identities/{target}/unlink")
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard"
    assert "Apple Account removed" in flashes(me, "/dashboard")
    with app.app_context():
        assert db.session.scalars(select(AppleIdentity.sub)).all() == [SUB_A]
        [outbox] = db.session.scalars(select(AppleRevocation)).all()
        assert outbox.sent_at is not None and outbox.client_id == SERVICES_ID
    sent = {(r["client_id"], r["token"]) for r in fake_apple.revoke_requests}
    assert sent == expected
    assert all(r["token_type_hint"] == "refresh_token" for r in fake_apple.revoke_requests)
    [event] = events(app, "identity_unlinked")
    assert event.details["identity"] == target and event.details["apple_revocations"] == 1
    assert me.is_signed_in()


def test_unlink_ends_sessions_signed_in_with_that_apple_id(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    me.link(SUB_A2)
    other = Browser(app, fake_apple, SAFARI_IPHONE).sign_in(SUB_A2)
    kept = Browser(app, fake_apple, SAFARI_IPHONE).sign_in(SUB_A)
    app_via_a2 = app_sign_in(app, fake_apple, SUB_A2)
    app_via_a = app_sign_in(app, fake_apple, SUB_A)
    me.post(f"/dashboard/identities/{identity_id(app, SUB_A2)}/unlink")
    assert not other.is_signed_in()
    assert kept.is_signed_in() and me.is_signed_in()
    assert refresh(app, app_via_a2).status_code == 400
    assert api_me(app, app_via_a2).status_code == 401
    assert api_me(app, app_via_a).status_code == 200
    [event] = events(app, "identity_unlinked")
    assert event.details["web_sessions"] == 1 and event.details["app_sessions"] == 1
    # the native Apple token of the unlinked Apple Account was revoked with the bundle id too
    assert len(fake_apple.revoke_requests) == 2


def test_unlinking_the_apple_id_this_browser_used_keeps_this_session(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    me.link(SUB_A2)
    resp = me.post(f"/dashboard/identities/{identity_id(app, SUB_A)}/unlink")
    assert resp.status_code == 303
    assert me.is_signed_in()


def test_profile_email_moves_to_the_remaining_apple_id(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A, email="first@example.com", is_private_email=False)
    me.link(SUB_A2, email="second@example.com", is_private_email=False)
    assert one(app, User).email == "first@example.com"
    me.post(f"/dashboard/identities/{identity_id(app, SUB_A)}/unlink")
    assert one(app, User).email == "second@example.com"


def test_unlinking_the_last_apple_id_is_refused(app, fake_apple):
    """DASH-05: 409 with an explanation, nothing changes."""
    me = Browser(app, fake_apple).sign_in(SUB_A)
    only = identity_id(app, SUB_A)
    html = me.page(f"/dashboard/identities/{only}/unlink")
    assert "cannot be removed" in html and 'action="/dashboard/identities' not in html
    before = snapshot(app)
    resp = me.post(f"/dashboard/identities/{only}/unlink")
    assert resp.status_code == 409
    assert "only Apple Account" in resp.get_data(as_text=True)
    assert snapshot(app) == before
    assert fake_apple.revoke_requests == []
    assert me.is_signed_in()


def test_unlink_needs_a_recent_sign_in(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    me.link(SUB_A2)
    make_stale(app)
    target = identity_id(app, SUB_A2)
    before = snapshot(app)
    resp = me.post(f"/dashboard/identities/{target}/unlink")
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/dashboard/identities/{target}/unlink"
    assert snapshot(app) == before
    page = me.page(f"/dashboard/identities/{target}/unlink")
    assert "Confirm it's you" in page and 'action="/auth/apple/reauth"' in page
    assert f'name="next" value="/dashboard/identities/{target}/unlink"' in page
    # a fresh sign-in with Apple brings the user back to the confirmation, now allowed
    back = me.reauth(SUB_A, f"/dashboard/identities/{target}/unlink")
    assert back.status_code == 303
    assert back.headers["Location"] == f"/dashboard/identities/{target}/unlink"
    assert "Remove this Apple Account?" in me.page(back.headers["Location"])
    assert me.post(f"/dashboard/identities/{target}/unlink").status_code == 303
    assert len(events(app, "identity_unlinked")) == 1
