"""What each failed Apple callback shows, sends, logs and audits — pinned one kind at a time.

Every case drives the real callback: a genuine login transaction and Apple answer, with
`signin.complete` made to raise where the failure happens inside it. Status, title, message,
action, headers, the audit reason and the log lines must not change unnoticed.
"""
from __future__ import annotations

import logging

import pytest
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError

from siwa_web.apple.errors import AppleMisconfigured
from siwa_web.apple.errors import AppleRejected
from siwa_web.apple.errors import AppleUnavailable
from siwa_web.apple.errors import InvalidIdentityToken
from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AuditEvent
from siwa_web.models import LoginTransaction
from siwa_web.models import User
from siwa_web.models.base import now_utc
from siwa_web.users.accounts import AccountDisabled
from siwa_web.users.accounts import IdentityTaken
from siwa_web.web import signin
from support.dashboard import SUB_A
from support.dashboard import SUB_B
from support.dashboard import Browser
from support.web import CALLBACK
from support.web import callback_form
from support.web import start_login

START_AGAIN = "Start again from the sign-in page."
ALREADY_SIGNED_IN = "You are already signed in: go back to your account."
WAIT = "Wait a minute, then start again."
DISABLED_MESSAGE = "Signing in to it is not possible while it is disabled. Nothing was changed."
DISABLED_ACTION = "If you think this is a mistake, contact the site's support."
VIEWS_LOG = "siwa_web.web.views"
MISCONFIGURED_ALERT = ("Apple rejected our client credentials (invalid_client): check "
                       "SIWA_APPLE_TEAM_ID, SIWA_APPLE_KEY_ID, the private key and "
                       "SIWA_APPLE_SERVICES_ID")
UNVERIFIED = ("Apple's answer could not be verified",
              "The identity token did not pass our checks. Nothing was changed.")

# id, exception raised by signin.complete, status, title, message, action, Retry-After,
# audit/log reason, ERROR line logged before the warning (or None)
COMPLETE_FAILURES = [
    ("apple-unavailable", lambda: AppleUnavailable("timeout"), 503,
     "Apple is not answering right now",
     "We could not reach Apple to finish signing you in. Nothing was changed.",
     WAIT, "30", "apple unavailable", None),
    ("apple-misconfigured", lambda: AppleMisconfigured("invalid_client"), 500,
     "Sign in with Apple is misconfigured",
     "Apple did not accept this site's credentials. Nothing was changed.",
     "Please tell the site operator.", None, "apple invalid_client", MISCONFIGURED_ALERT),
    ("apple-rejected", lambda: AppleRejected("invalid_grant", "used"), 400,
     "Apple did not accept this sign-in",
     "The sign-in code was expired or already used. Nothing was changed.",
     START_AGAIN, None, "apple invalid_grant", None),
    ("apple-rejected-long-error", lambda: AppleRejected("e" * 150), 400,
     "Apple did not accept this sign-in",
     "The sign-in code was expired or already used. Nothing was changed.",
     START_AGAIN, None, "apple " + "e" * 150, None),
    ("invalid-identity-token", lambda: InvalidIdentityToken("nonce mismatch"), 400,
     *UNVERIFIED, START_AGAIN, None, "nonce mismatch", None),
    ("subject-mismatch", lambda: signin.SubjectMismatch(), 400,
     *UNVERIFIED, START_AGAIN, None, "front/back subject mismatch", None),
    ("identity-taken", lambda: IdentityTaken("000001.aaaa.0001"), 409,
     "That Apple Account belongs to another account",
     "It is already linked to a different siwa-web account, so it was not linked to this one.",
     "Sign in with that Apple Account to manage the other account.", None, "identity taken", None),
    ("wrong-account", lambda: signin.WrongAccount(), 403,
     "That Apple Account is not linked to this account",
     "Please confirm with an Apple Account linked to the account you are signed in to.",
     START_AGAIN, None, "reauth with a foreign Apple Account", None),
    ("database-unavailable",
     lambda: OperationalError("COMMIT", {}, ConnectionResetError("server closed")), 503,
     "We could not finish signing you in", "Our database did not answer. Nothing was changed.",
     WAIT, "30", "database unavailable",
     "database unavailable during sign-in: ConnectionResetError"),
    ("account-disabled", lambda: AccountDisabled("some-user-id"), 403,
     "This account is disabled", DISABLED_MESSAGE, DISABLED_ACTION, None,
     "account disabled", None),
]


def failure_events(app):
    with app.app_context():
        stmt = select(AuditEvent).where(AuditEvent.event == "web_login",
                                        AuditEvent.outcome == "failure")
        return db.session.execute(stmt).scalars().all()


def view_logs(caplog):
    return [r for r in caplog.records if r.name == VIEWS_LOG]


def assert_failure_page(resp, app, caplog, *, status, title, message, action, retry_after,
                        reason, alert=None, signed_in=False, earlier_failures=0):
    """The whole of what one failure produces: page, headers, one audit row, its log lines."""
    assert resp.status_code == status
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers.get("Retry-After") == retry_after
    html = resp.get_data(as_text=True)
    assert f'<h1 id="error-title">{escape(title)}</h1>' in html
    assert f"<title>{escape(title)}" in html
    assert f"<p>{escape(message)}</p>" in html
    assert f"<strong>What to do:</strong> {escape(action)}</p>" in html
    assert f"HTTP {status}." in html
    events = failure_events(app)
    assert len(events) == earlier_failures + 1
    event = max(events, key=lambda e: e.id)
    assert event.reason == reason[:100]
    ref = event.details["ref"]
    assert f"Reference: <code>{ref}</code>" in html
    logged = view_logs(caplog)
    expected = [("ERROR", alert)] if alert else []
    expected.append(("WARNING", f"web sign-in failed: {reason}"))
    assert [(r.levelname, r.getMessage()) for r in logged] == expected
    assert (logged[-1].ref, logged[-1].reason) == (ref, reason)
    if not signed_in:  # a refused callback hands out no session cookie
        assert "__Host-siwa=" not in "".join(resp.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize(
    "make_exc, status, title, message, action, retry_after, reason, alert",
    [case[1:] for case in COMPLETE_FAILURES], ids=[case[0] for case in COMPLETE_FAILURES])
def test_each_sign_in_failure_has_its_page(client, app, fake_apple, monkeypatch, caplog,
                                           make_exc, status, title, message, action,
                                           retry_after, reason, alert):
    form = callback_form(fake_apple, start_login(client))

    def fail(*args, **kwargs):
        raise make_exc()

    monkeypatch.setattr(signin, "complete", fail)
    caplog.set_level(logging.INFO)
    resp = client.post(CALLBACK, data=form)
    assert_failure_page(resp, app, caplog, status=status, title=title, message=message,
                        action=action, retry_after=retry_after, reason=reason, alert=alert)


@pytest.mark.parametrize("make_exc", [
    lambda: RuntimeError("boom"),
    lambda: KeyError("sub"),
    lambda: IntegrityError("INSERT", {}, Exception("duplicate key")),
], ids=["runtime-error", "key-error", "integrity-error"])
def test_unknown_failures_still_reach_the_crash_page(client, app, fake_apple, monkeypatch,
                                                     caplog, make_exc):
    form = callback_form(fake_apple, start_login(client))

    def fail(*args, **kwargs):
        raise make_exc()

    monkeypatch.setattr(signin, "complete", fail)
    caplog.set_level(logging.INFO)
    resp = client.post(CALLBACK, data=form)
    assert resp.status_code == 500
    html = resp.get_data(as_text=True)
    assert '<h1 id="error-title">Something went wrong</h1>' in html
    assert "Retry-After" not in resp.headers
    assert failure_events(app) == []
    assert view_logs(caplog) == []
    crash = [r for r in caplog.records if r.name == "siwa_web.web.errors"]
    assert [(r.levelname, r.getMessage()) for r in crash] == [
        ("ERROR", f"unhandled error on {CALLBACK}")]
    assert crash[0].exc_info[0] is type(make_exc())


# --- failures before Apple is asked ---------------------------------------------------------


STALE = ("This sign-in attempt is no longer valid",
         "It may have expired, been used already, or been started in another browser. "
         "Nothing was changed.")


@pytest.mark.parametrize("state, reason", [
    (None, "missing state"), ("x" * 129, "malformed state"), ("forged", "unknown state"),
])
def test_bad_state_page(client, app, fake_apple, caplog, state, reason):
    form = callback_form(fake_apple, start_login(client))
    form.pop("state")
    if state is not None:
        form["state"] = state
    caplog.set_level(logging.INFO)
    resp = client.post(CALLBACK, data=form)
    assert_failure_page(resp, app, caplog, status=400, title=STALE[0], message=STALE[1],
                        action=START_AGAIN, retry_after=None, reason=reason)


def test_state_of_another_browser_page(app, fake_apple, caplog):
    attacker, victim = app.test_client(), app.test_client()
    form = callback_form(fake_apple, start_login(attacker))
    caplog.set_level(logging.INFO)
    resp = victim.post(CALLBACK, data=form)
    assert_failure_page(resp, app, caplog, status=400, title=STALE[0], message=STALE[1],
                        action=START_AGAIN, retry_after=None,
                        reason="state issued to another browser")


def test_replayed_state_page(client, app, fake_apple, caplog):
    form = callback_form(fake_apple, start_login(client))
    # a failed callback leaves this browser's transaction cookie in place, so a replay of the
    # same state from the same browser reaches the "already used" check
    assert client.post(CALLBACK, data={**form, "id_token": ""}).status_code == 400
    caplog.set_level(logging.INFO)
    caplog.clear()
    resp = client.post(CALLBACK, data=form)
    assert_failure_page(resp, app, caplog, status=400, title=STALE[0], message=STALE[1],
                        action=START_AGAIN, retry_after=None, reason="state already used",
                        earlier_failures=1)


def test_expired_state_page(client, app, fake_apple, caplog):
    form = callback_form(fake_apple, start_login(client))
    with app.app_context():
        db.session.execute(update(LoginTransaction).values(expires_at=now_utc()))
        db.session.commit()
    caplog.set_level(logging.INFO)
    resp = client.post(CALLBACK, data=form)
    assert_failure_page(resp, app, caplog, status=400, title=STALE[0], message=STALE[1],
                        action=START_AGAIN, retry_after=None, reason="state expired")


@pytest.mark.parametrize("change", [{"code": None}, {"id_token": None}, {"id_token": ""},
                                    {"code": "a b"}, {"code": "c" * 1025}])
def test_incomplete_answer_page(client, app, fake_apple, caplog, change):
    form = callback_form(fake_apple, start_login(client))
    for key, value in change.items():
        if value is None:
            form.pop(key)
        else:
            form[key] = value
    caplog.set_level(logging.INFO)
    resp = client.post(CALLBACK, data=form)
    assert_failure_page(resp, app, caplog, status=400, title="Apple's answer was incomplete",
                        message="The sign-in code or identity token was missing. Nothing was "
                                "changed.",
                        action=START_AGAIN, retry_after=None, reason="missing code or id_token")
    assert fake_apple.token_requests == []


# --- the same pages reached through the real flow ---------------------------------------------


def test_reauth_with_another_accounts_apple_id(app, fake_apple, caplog):
    Browser(app, fake_apple).sign_in(SUB_B)
    me = Browser(app, fake_apple).sign_in(SUB_A)
    caplog.set_level(logging.INFO)
    resp = me.reauth(SUB_B)
    assert_failure_page(resp, app, caplog, status=403,
                        title="That Apple Account is not linked to this account",
                        message="Please confirm with an Apple Account linked to the account "
                                "you are signed in to.",
                        action="Go back to your account and confirm with an Apple Account "
                               "that is linked to it.", retry_after=None,
                        reason="reauth with a foreign Apple Account", signed_in=True)
    assert me.is_signed_in()


def test_disabled_account_cannot_sign_in(app, fake_apple, caplog):
    Browser(app, fake_apple).sign_in(SUB_A)
    with app.app_context():
        db.session.execute(update(User).values(disabled_at=now_utc()))
        db.session.commit()
    caplog.set_level(logging.INFO)
    browser = Browser(app, fake_apple)
    resp = browser._through_apple(start_login(browser.client), SUB_A)
    assert_failure_page(resp, app, caplog, status=403, title="This account is disabled",
                        message=DISABLED_MESSAGE, action=DISABLED_ACTION,
                        retry_after=None, reason="account disabled")


def test_linking_another_accounts_apple_id(app, fake_apple, caplog):
    Browser(app, fake_apple).sign_in(SUB_B)
    me = Browser(app, fake_apple).sign_in(SUB_A)
    caplog.set_level(logging.INFO)
    resp = me.link(SUB_B)
    assert_failure_page(resp, app, caplog, status=409,
                        title="That Apple Account belongs to another account",
                        message="It is already linked to a different siwa-web account, so it "
                                "was not linked to this one.",
                        action="Sign in with that Apple Account to manage the other account.",
                        retry_after=None, reason="identity taken", signed_in=True)


# --- the table itself ---------------------------------------------------------------------------


def test_the_most_specific_row_wins_and_unknown_exceptions_have_none():
    from siwa_web.web import failures

    class StricterMisconfigured(AppleMisconfigured):
        pass

    assert failures.failure_for(AppleMisconfigured("invalid_client")).status == 500
    assert failures.failure_for(StricterMisconfigured("invalid_client")).status == 500
    assert failures.failure_for(AppleRejected("invalid_grant")).status == 400
    assert failures.failure_for(RuntimeError("boom")) is None
    assert failures.failure_for(IntegrityError("INSERT", {}, Exception("dup"))) is None
    assert not {Exception, BaseException} & set(failures.KNOWN)


# --- advice that fits the browser's state ----------------------------------------------------


@pytest.mark.parametrize("signed_in", [False, True])
def test_replayed_callback_advice_fits_the_browser(app, fake_apple, caplog, signed_in):
    """Signed in: "already signed in" beside "Back to your account"; else: start again."""
    browser = Browser(app, fake_apple)
    start = start_login(browser.client)
    form = callback_form(fake_apple, start, sub=SUB_A)
    first = browser.client.post(CALLBACK, data=form)
    assert first.status_code == 303
    if not signed_in:
        browser.client.post("/auth/logout", data={"csrf_token": browser.csrf()})
        browser.client.get("/auth/login")  # shows (and so drops) the "signed out" message
        assert not browser.is_signed_in()
    caplog.set_level(logging.INFO)
    caplog.clear()
    resp = browser.client.post(CALLBACK, data=form)
    html = resp.get_data(as_text=True)
    assert_failure_page(resp, app, caplog, status=400, title=STALE[0], message=STALE[1],
                        action=ALREADY_SIGNED_IN if signed_in else START_AGAIN,
                        retry_after=None, reason="state issued to another browser",
                        signed_in=signed_in)
    if signed_in:
        assert "Back to your account" in html and "sign-in page" not in html
        assert browser.is_signed_in()
    else:
        assert "Back to sign-in" in html and "Back to your account" not in html


def test_refused_link_is_in_the_users_activity(app, fake_apple):
    Browser(app, fake_apple).sign_in(SUB_B)
    me = Browser(app, fake_apple).sign_in(SUB_A)
    assert me.link(SUB_B).status_code == 409
    [event] = failure_events(app)
    with app.app_context():
        mine = db.session.scalar(select(AppleIdentity.user_id).where(AppleIdentity.sub == SUB_A))
    assert event.user_id == mine and event.details["purpose"] == "link"
    activity = me.page("/dashboard/activity")
    assert "Tried to link an Apple Account" in activity
    assert "identity taken" in activity
