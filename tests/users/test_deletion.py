"""Account deletion (decision D10, DASH-07…09, REL-13): fresh sign-in, one transaction, outbox."""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import AppleRevocation
from siwa_web.models import AuditEvent
from siwa_web.models import PendingProfile
from siwa_web.models import User
from siwa_web.models.base import now_utc
from support.apple import BUNDLE_ID
from support.apple import SERVICES_ID
from support.config import count_rows
from support.dashboard import SAFARI_IPHONE
from support.dashboard import SUB_A
from support.dashboard import SUB_A2
from support.dashboard import Browser
from support.dashboard import api_me
from support.dashboard import app_sign_in
from support.dashboard import apple_tokens
from support.dashboard import events
from support.dashboard import flashes
from support.dashboard import make_stale
from support.dashboard import one
from support.dashboard import refresh
from support.dashboard import snapshot

# (Used login transactions of anonymous sign-ins carry no user id; they expire on their own.)
EMPTIED = ("users", "apple_identities", "apple_tokens", "web_sessions", "token_families",
           "refresh_tokens", "pending_profiles")


def delete(browser: Browser):
    return browser.post("/dashboard/delete", {"confirm": "yes"})


def outbox(app) -> list[AppleRevocation]:
    with app.app_context():
        return list(db.session.scalars(
            select(AppleRevocation).order_by(AppleRevocation.created_at)))


def retry(app):
    return app.test_cli_runner().invoke(args=["apple", "retry-revocations"])


def make_due(app) -> None:
    """Let the backoff run out (as if the cron ran later)."""
    with app.app_context():
        db.session.execute(update(AppleRevocation).values(
            next_attempt_at=now_utc() - timedelta(seconds=1)))
        db.session.commit()


# --- a recent sign-in first (DASH-07) ------------------------------------------------------------


def test_stale_sign_in_shows_why_and_a_button_to_sign_in_again(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    make_stale(app)
    html = me.page("/dashboard/delete")
    assert "Confirm it's you" in html and "more than 5 minutes ago" in html
    assert 'action="/auth/apple/reauth"' in html
    assert 'name="next" value="/dashboard/delete"' in html
    assert "Continue with Apple" in html and 'name="confirm"' not in html


def test_delete_with_a_stale_sign_in_changes_nothing(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    app_sign_in(app, fake_apple)
    make_stale(app)
    before = snapshot(app)
    resp = delete(me)
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard/delete"
    assert snapshot(app) == before
    assert fake_apple.revoke_requests == [] and events(app, "account_deleted") == []


def test_fresh_sign_in_with_apple_returns_to_the_deletion_page(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    make_stale(app)
    resp = me.reauth(SUB_A, "/dashboard/delete")
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard/delete"
    html = me.page("/dashboard/delete")
    assert "Delete your account" in html and 'name="confirm"' in html
    assert "Signed in again to confirm it was you" in me.page("/dashboard/activity")
    assert delete(me).status_code == 303
    assert count_rows(app)["users"] == 0


def test_delete_needs_the_confirmation_box(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    before = snapshot(app)
    resp = me.post("/dashboard/delete")
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard/delete"
    assert snapshot(app) == before


# --- the deletion itself (DASH-08) ---------------------------------------------------------------


def test_delete_removes_everything_and_revokes_every_apple_token_once(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    me.link(SUB_A2)
    phone = Browser(app, fake_apple, SAFARI_IPHONE).sign_in(SUB_A2)
    app_tokens = app_sign_in(app, fake_apple, SUB_A)  # Apple token obtained by the bundle id
    user_id = one(app, User).id
    expected = apple_tokens(app, SUB_A) | apple_tokens(app, SUB_A2)
    assert {c for c, _ in expected} == {SERVICES_ID, BUNDLE_ID} and len(expected) == 3

    resp = delete(me)
    assert resp.status_code == 303 and resp.headers["Location"] == "/auth/login"
    assert "account and its data are deleted" in flashes(me, "/auth/login")

    rows = count_rows(app)
    assert {t: rows[t] for t in EMPTIED if rows[t]} == {}
    # Apple was asked once per stored token, with the client id that obtained it (TN3194)
    sent = [(r["client_id"], r["token"]) for r in fake_apple.revoke_requests]
    assert sorted(sent) == sorted(expected)
    assert all(r["token_type_hint"] == "refresh_token" for r in fake_apple.revoke_requests)
    assert fake_apple.client_secret_errors == []
    assert all(r.sent_at is not None and r.token_encrypted == "" for r in outbox(app))
    # every session and token is dead
    assert not me.is_signed_in() and not phone.is_signed_in()
    refused = refresh(app, app_tokens)
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert api_me(app, app_tokens).status_code == 401
    # the audit trail outlives the user
    [event] = events(app, "account_deleted")
    assert event.user_id == user_id and event.details["apple_revocations"] == 3
    assert event.details["web_sessions"] == 2 and event.details["app_sessions"] == 1
    assert len(events(app, "apple_revocation_sent")) == 3


def test_signing_in_again_after_deletion_starts_a_new_account(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    old = one(app, User).id
    delete(me)
    Browser(app, fake_apple).sign_in(SUB_A)
    assert one(app, User).id != old


def test_delete_removes_a_pending_name(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    with app.app_context():
        db.session.add(PendingProfile(sub=SUB_A, first_name="Maria"))
        db.session.commit()
    delete(me)
    assert count_rows(app)["pending_profiles"] == 0


def test_a_replayed_delete_after_deletion_does_nothing(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    token = me.csrf()
    cookie = me.client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    delete(me)
    Browser(app, fake_apple).sign_in("003333.cccccccccccccccccccccccccccccccc.0001")
    before = snapshot(app)
    replay = app.test_client()
    replay.set_cookie(cookie.key, cookie.value, domain="localhost")
    resp = replay.post("/dashboard/delete", data={"csrf_token": token, "confirm": "yes"})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/login")
    assert snapshot(app) == before


# --- Apple down: the deletion still happens, the revocation waits (DASH-09, REL-13) ------------


@pytest.mark.parametrize("failure", [
    {"status": 503, "text": "<html>down</html>"},
    {"exc": requests.exceptions.ReadTimeout},
    {"exc": requests.exceptions.ConnectionError},
])
def test_delete_while_apple_is_down_then_cron_sends_the_revocation(app, fake_apple, failure):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    [(client_id, token)] = apple_tokens(app, SUB_A)
    fake_apple.outage("revoke", **failure)

    resp = delete(me)
    assert resp.status_code == 303
    message = flashes(me, "/auth/login")
    assert "could not be reached" in message and "Sign in with Apple" in message
    assert {t: n for t, n in count_rows(app).items() if t in EMPTIED and n} == {}
    [row] = outbox(app)
    assert row.sent_at is None and row.attempts == 1 and row.last_error == "Apple unavailable"
    assert row.next_attempt_at > now_utc() and row.client_id == client_id
    assert len(events(app, "apple_revocation_failed")) == 1

    fake_apple.restore("revoke")
    result = retry(app)  # backoff not over yet: nothing is sent
    assert result.exit_code == 0 and "0 sent" in result.output
    assert len(fake_apple.revoke_requests) == 1

    make_due(app)
    result = retry(app)
    assert result.exit_code == 0
    assert "1 sent" in result.output and "0 still pending" in result.output
    last = fake_apple.revoke_requests[-1]
    assert (last["client_id"], last["token"], last["token_type_hint"]) == (
        client_id, token, "refresh_token")
    [row] = outbox(app)
    assert row.sent_at is not None and row.attempts == 2
    assert retry(app).output.startswith("Apple revocations: 0 sent")  # never sent twice
    assert len(fake_apple.revoke_requests) == 2


def test_apple_rejecting_the_revocation_does_not_block_deletion(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    fake_apple.next_revoke_response(status=400, json={"error": "invalid_grant"})
    assert delete(me).status_code == 303
    assert count_rows(app)["users"] == 0
    [row] = outbox(app)
    assert row.sent_at is None and row.last_error == "Apple said invalid_grant"


def test_delete_when_no_apple_token_is_stored_tells_the_user_how_to_revoke(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    with app.app_context():
        from siwa_web.models import AppleToken

        db.session.execute(update(AppleToken).values(refresh_token_encrypted=None))
        db.session.commit()
    delete(me)
    assert "Sign-In & Security" in flashes(me, "/auth/login")
    assert outbox(app) == [] and fake_apple.revoke_requests == []


def test_deletion_is_recorded_even_though_the_user_is_gone(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    user_id = one(app, User).id
    delete(me)
    with app.app_context():
        names = db.session.scalars(select(AuditEvent.event).where(
            AuditEvent.user_id == user_id).order_by(AuditEvent.id)).all()
    assert names == ["web_login", "account_deleted", "apple_revocation_sent"]
