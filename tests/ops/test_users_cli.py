"""`flask users find|show|sign-out|disable|enable|delete`, run as an operator would.

Accounts are made through the real flows (fake Apple → web callback, token exchange); what the
commands did is checked from the outside: browsers, the token endpoint, /api/me, the database.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import AuditEvent
from siwa_web.models import BackchannelLogout
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.models import WebSession
from support.apple import BUNDLE_ID
from support.apple import DEFAULT_SUB
from support.config import count_rows
from support.dashboard import SUB_A
from support.dashboard import SUB_A2
from support.dashboard import SUB_B
from support.dashboard import Browser
from support.dashboard import api_me
from support.dashboard import app_sign_in
from support.dashboard import apple_tokens
from support.dashboard import ensure_client
from support.dashboard import events
from support.dashboard import one
from support.dashboard import refresh
from support.dashboard import snapshot
from support.tokens import NativeClient
from support.tokens import exchange_params
from support.web import sign_in
from support.web import start_login
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import pkce
from support.webapps import redeem
from support.webapps import register

MARIA = "Maria.Ruiz@Example.com"
COMMANDS = ("show", "sign-out", "disable", "enable", "delete")
EMPTIED = ("users", "apple_identities", "apple_tokens", "web_sessions", "token_families",
           "refresh_tokens")


def users(app, *args, input=None):
    """Run `flask users ...` in the app; returns click's Result."""
    return app.test_cli_runner().invoke(args=["users", *args], input=input)


def as_json(app, *args):
    result = users(app, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def user_id(app, sub: str = SUB_A) -> str:
    from siwa_web.models import AppleIdentity

    return one(app, AppleIdentity, AppleIdentity.sub == sub).user_id


def operator_events(app) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(
            AuditEvent.event.like("operator_%")).order_by(AuditEvent.id)))


def native_exchange(app, fake_apple, sub: str = SUB_A):
    """The native app's sign-in (token exchange) for `sub`; returns the response."""
    client_id = ensure_client(app)
    code = fake_apple.authorize(client_id=BUNDLE_ID, sub=sub).code
    return app.test_client().post("/oauth/token", data=exchange_params(
        NativeClient(client_id, BUNDLE_ID), code, scope="openid email offline_access"))


def web_sign_in(app, fake_apple, sub: str = SUB_A):
    """A new browser's trip through Apple; returns the callback's response."""
    browser = Browser(app, fake_apple)
    return browser._through_apple(start_login(browser.client), sub)


@pytest.fixture
def maria(app, fake_apple):
    """Maria, signed in in the iOS app and on the web (with her own email); browser, tokens."""
    tokens = app_sign_in(app, fake_apple, SUB_A)
    browser = Browser(app, fake_apple).sign_in(SUB_A, email=MARIA, is_private_email=False)
    return browser, tokens


# --- find ----------------------------------------------------------------------------------------


def test_find_by_email_sub_or_id(app, fake_apple, maria, monkeypatch):
    monkeypatch.setenv("SUDO_USER", "alice")
    Browser(app, fake_apple).sign_in(SUB_B)  # someone else
    uid = user_id(app)
    for option, value in (("--email", "maria.ruiz@example.COM"), ("--sub", SUB_A),
                          ("--id", uid)):
        result = users(app, "find", option, value)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == "1 user found:"
        assert lines[1].startswith(f"{uid}  (no name)  {MARIA}  active, 1 Apple ID, created ")
        [found] = as_json(app, "find", option, value)
        assert found["id"] == uid and found["email"] == MARIA and found["status"] == "active"
        assert found["apple_ids"] == 1 and found["disabled_at"] is None
    finds = operator_events(app)
    assert [(e.event, e.user_id, e.outcome) for e in finds] == [("operator_find", uid,
                                                                 "success")] * 6
    assert [e.details for e in finds[::2]] == [
        {"by": "email", "operator": "alice"}, {"by": "sub", "operator": "alice"},
        {"by": "id", "operator": "alice"}]


def test_find_by_the_email_of_a_linked_apple_id(app, fake_apple, maria):
    browser, _ = maria
    browser.link(SUB_A2, email="maria@work.example", is_private_email=False)
    [found] = as_json(app, "find", "--email", "MARIA@work.example")
    assert found["id"] == user_id(app) and found["apple_ids"] == 2


def test_find_without_a_match_exits_1(app, maria):
    result = users(app, "find", "--email", "nobody@example.com")
    assert result.exit_code == 1 and result.output == "No user found by email.\n"
    result = users(app, "find", "--sub", "000000.none.0000", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout) == []
    assert [(e.user_id, e.details["found"]) for e in operator_events(app)] == [(None, 0)] * 2


@pytest.mark.parametrize("args, message", [
    ([], "nothing selected: give one of --email, --sub or --id"),
    (["--json"], "nothing selected"),
    (["--email", MARIA, "--sub", SUB_A], "conflicting options: --email and --sub; give only one"),
    (["--sub", SUB_A, "--id", "x", "--email", MARIA], "conflicting options: --email and --sub "
                                                      "and --id"),
    (["--email", "  "], "--email is empty"),
    (["--id", ""], "--id is empty"),
    (["--email", "maria"], "--email 'maria' is not an email address"),
])
def test_find_refuses_bad_input(app, maria, args, message):
    before = count_rows(app)
    result = users(app, "find", *args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""
    assert count_rows(app) == before  # not even an audit event


# --- unknown ids, bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_unknown_id(app, maria, command):
    before = snapshot(app)
    result = users(app, command, "no-such-user", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "unknown user id 'no-such-user'" in result.stderr
    assert snapshot(app) == before
    [refused] = operator_events(app)  # who tried what is on record
    assert refused.event == f"operator_{command.replace('-', '_')}"
    assert (refused.outcome, refused.reason, refused.user_id) == ("failure", "unknown user", None)
    assert refused.details["target"] == "no-such-user"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_empty_id(app, maria, command):
    result = users(app, command, " ")
    assert result.exit_code == 2 and "ID is empty" in result.stderr
    assert operator_events(app) == []


def test_an_id_that_could_drive_the_terminal_is_printed_harmlessly(app):
    result = users(app, "show", "\x1b[2Jx")
    assert result.exit_code == 1 and "\x1b" not in result.output
    assert "unknown user id '?[2Jx'" in result.stderr


# --- show ----------------------------------------------------------------------------------------


def test_show_lists_apple_ids_sessions_and_activity(app, fake_apple, maria):
    browser, tokens = maria
    browser.link(SUB_A2)
    uid = user_id(app)
    data = as_json(app, "show", uid)
    assert data["user"]["id"] == uid and data["user"]["email"] == MARIA
    assert [i["sub"] for i in data["identities"]] == [SUB_A, SUB_A2]
    assert {t["client_id"] for t in data["identities"][0]["apple_tokens"]} >= {BUNDLE_ID}
    [web] = data["web_sessions"]
    assert web["live"] is True and "Safari" in web["user_agent"]
    [app_session] = data["app_sessions"]
    assert app_session["live"] and app_session["client_name"] == "Acme for iPhone"
    assert app_session["scope"] == "openid email offline_access"
    assert data["last_activity"]["at"] is not None
    assert {("il", "identity_linked"), ("sx", "native_exchange"), ("s", "web_login")} <= {
        (e["code"], e["event"]) for e in data["recent_events"]}
    text = json.dumps(data)
    for secret in (tokens["access_token"], tokens["refresh_token"], "token_hash",
                   "refresh_token_encrypted", *(t for _, t in apple_tokens(app, SUB_A))):
        assert secret not in text

    result = users(app, "show", uid)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"User {uid}\n  Name           (no name)\n  Email          {MARIA} "
                          "(verified)\n  Status         active\n")
    assert "Apple IDs (2)" in out and SUB_A in out and SUB_A2 in out
    assert "Web sessions (1 live, 0 expired)" in out
    assert "App sessions (1 live, 0 expired)" in out and "Acme for iPhone" in out
    assert "Recent events (last 10)" in out
    assert "  sx   native_exchange  success" in out
    assert [e.event for e in operator_events(app)] == ["operator_show"] * 2


def test_show_cannot_be_used_to_drive_the_terminal(app, maria):
    with app.app_context():
        user = db.session.get(User, user_id(app))
        user.first_name = "Eve\x1b]0;owned\x07"
        db.session.execute(WebSession.__table__.update().values(user_agent="UA\x1b[31mred"))
        db.session.commit()
    result = users(app, "show", user_id(app))
    assert result.exit_code == 0 and "\x1b" not in result.output and "\x07" not in result.output
    assert "Eve?]0;owned?" in result.output and "UA?[31mred" in result.output


# --- sign-out ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, web_ends, apps_end", [
    ([], True, True),
    (["--web", "--apps"], True, True),
    (["--web"], True, False),
    (["--apps"], False, True),
])
def test_sign_out_ends_the_sessions_it_names(app, maria, flags, web_ends, apps_end):
    browser, tokens = maria
    uid = user_id(app)
    assert api_me(app, tokens).status_code == 200  # cached as alive: it must still end at once
    result = users(app, "sign-out", uid, *flags)
    assert result.exit_code == 0, result.output
    expected = " and ".join(
        [*(["1 web session"] if web_ends else []), *(["1 app session"] if apps_end else [])])
    assert result.output == f"Signed out user {uid}: {expected} ended.\n"
    assert browser.is_signed_in() is not web_ends
    assert (api_me(app, tokens).status_code == 401) is apps_end
    assert (refresh(app, tokens).status_code == 400) is apps_end
    [event] = operator_events(app)
    assert event.event == "operator_sign_out" and event.user_id == uid
    assert event.details == {**({"web_sessions": 1} if web_ends else {}),
                             **({"app_sessions": 1} if apps_end else {}),
                             "operator": event.details["operator"]}
    with app.app_context():
        reasons = {r for r in db.session.scalars(select(WebSession.revoked_reason))} | {
            r for r in db.session.scalars(select(TokenFamily.revoked_reason))}
    assert "signed out by support" in reasons


def test_sign_out_as_json_and_with_nothing_to_end(app, maria):
    uid = user_id(app)
    assert as_json(app, "sign-out", uid) == {"user_id": uid, "web_sessions": 1,
                                             "app_sessions": 1}
    assert as_json(app, "sign-out", uid, "--apps") == {"user_id": uid, "app_sessions": 0}


@pytest.mark.parametrize("command", [["sign-out"], ["sign-out", "--web"], ["delete", "--yes"]])
def test_web_apps_hear_of_it_before_the_command_returns(app, client, fake_apple, requests_mock,
                                                        command):
    """A web app signed in through a session that support ends gets its back-channel logout
    from the command's own process, which ends right after (no background thread to cut)."""
    logout_uri = "https://app-a.example/backchannel"
    requests_mock.post(logout_uri, status_code=204)
    sign_in(client, fake_apple, sub=DEFAULT_SUB)
    webapp = register(app, name="App A", backchannel_logout_uri=logout_uri)
    verifier, challenge = pkce()
    code = answer(client.get("/oauth/authorize", query_string=authorize_params(
        webapp, challenge)))["code"]
    assert redeem(client, webapp, code, verifier).status_code == 200
    result = users(app, command[0], user_id(app, DEFAULT_SUB), *command[1:])
    assert result.exit_code == 0, result.output
    assert [r.url for r in requests_mock.request_history if r.url == logout_uri] == [logout_uri]
    with app.app_context():
        [row] = db.session.scalars(select(BackchannelLogout)).all()
        assert row.sent_at is not None


# --- disable, enable -----------------------------------------------------------------------------


def test_disable_then_enable_end_to_end(app, fake_apple, maria):
    browser, tokens = maria
    uid = user_id(app)
    assert api_me(app, tokens).status_code == 200  # the Bearer check has it cached as alive

    result = users(app, "disable", uid)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Disabled user {uid}: it cannot sign in")

    # the browser already signed in is out, and signing in again shows why
    assert not browser.is_signed_in()
    page = web_sign_in(app, fake_apple)
    assert page.status_code == 403
    html = page.get_data(as_text=True)
    assert "This account is disabled" in html and "contact the site" in html
    # the app: no new sign-in, no refresh, and its access token is refused at once
    for response in (native_exchange(app, fake_apple), refresh(app, tokens)):
        assert response.status_code == 400
        assert response.get_json() == {"error": "invalid_grant",
                                       "error_description": "This account is disabled."}
    assert api_me(app, tokens).status_code == 401
    assert one(app, User).disabled_at is not None

    result = users(app, "enable", uid)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Enabled user {uid}: it can sign in again")
    assert web_sign_in(app, fake_apple).status_code == 303
    assert native_exchange(app, fake_apple).status_code == 200
    assert api_me(app, tokens).status_code == 200  # the session was refused, never ended
    assert refresh(app, tokens).status_code == 200

    assert [(e.event, e.user_id, e.details["changed"]) for e in operator_events(app)] == [
        ("operator_disable", uid, True), ("operator_enable", uid, True)]
    failed = events(app, "refresh")
    assert [e.reason for e in failed if e.outcome == "failure"] == ["user_disabled"]


def test_disable_and_enable_say_when_nothing_changed(app, maria):
    uid = user_id(app)
    first = as_json(app, "disable", uid)
    assert first["changed"] is True and first["status"] == "disabled" and first["disabled_at"]
    again = users(app, "disable", uid)
    assert again.exit_code == 0
    assert again.output.startswith(f"User {uid} was already disabled (since ")
    assert one(app, User).disabled_at.isoformat() == first["disabled_at"]
    assert as_json(app, "enable", uid) == {"user_id": uid, "status": "active", "changed": True,
                                           "apple_ids": 1}
    result = users(app, "enable", uid)
    assert result.exit_code == 0 and result.output == f"User {uid} was not disabled; nothing " \
                                                      "changed.\n"
    assert [e.details["changed"] for e in operator_events(app)] == [True, False, True, False]


# --- delete --------------------------------------------------------------------------------------


def test_delete_is_the_dashboards_deletion(app, fake_apple, maria):
    browser, tokens = maria
    uid = user_id(app)
    expected = apple_tokens(app, SUB_A)
    assert len(expected) == 2  # the web's and the app's

    result = users(app, "delete", uid, "--yes")
    assert result.exit_code == 0, result.output
    assert result.output == (f"Deleted user {uid}: 1 web session and 1 app session ended; "
                             "2 Apple tokens revoked at Apple.\n")
    rows = count_rows(app)
    assert {t: rows[t] for t in EMPTIED if rows[t]} == {}
    assert sorted((r["client_id"], r["token"]) for r in fake_apple.revoke_requests) == sorted(
        expected)
    assert not browser.is_signed_in()
    assert refresh(app, tokens).status_code == 400 and api_me(app, tokens).status_code == 401
    [deleted] = events(app, "account_deleted")
    [operator] = events(app, "operator_delete")
    assert deleted.user_id == operator.user_id == uid
    assert operator.details == {"web_sessions": 1, "app_sessions": 1, "apple_revocations": 2,
                                "operator": operator.details["operator"]}
    assert len(events(app, "apple_revocation_sent")) == 2


def test_delete_asks_first_on_the_terminal(app, maria):
    uid = user_id(app)
    before = snapshot(app)
    result = users(app, "delete", uid, input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.stderr
    assert "Delete user" in result.stderr and "cannot be undone" in result.stderr
    assert result.stdout == ""
    assert snapshot(app) == before and operator_events(app) == []
    result = users(app, "delete", uid, "--json", input="y\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted"] is True  # the prompt went to stderr
    assert count_rows(app)["users"] == 0


def test_delete_while_apple_is_down_leaves_the_revocation_to_the_outbox(app, fake_apple, maria):
    uid = user_id(app)
    fake_apple.outage("revoke")
    data = as_json(app, "delete", uid, "--yes")
    assert data == {"user_id": uid, "deleted": True, "web_sessions": 1, "app_sessions": 1,
                    "apple_revocations": {"queued": 2, "sent": 0, "pending": 2}}
    assert count_rows(app)["users"] == 0
    fake_apple.restore("revoke")


def test_delete_prints_what_apple_still_has_to_hear(app, fake_apple):
    Browser(app, fake_apple).sign_in(SUB_B)
    fake_apple.outage("revoke")
    result = users(app, "delete", user_id(app, SUB_B), "--yes")
    assert result.exit_code == 0
    assert result.output.endswith("1 of 1 Apple token not revoked yet: "
                                  "`flask apple retry-revocations` keeps trying.\n")


# --- what the account's owner sees ---------------------------------------------------------------


def test_the_owner_sees_what_support_did_in_plain_words(app, fake_apple, maria):
    browser, _ = maria
    uid = user_id(app)
    for args in (["find", "--email", MARIA], ["show", uid], ["sign-out", uid, "--apps"],
                 ["disable", uid], ["enable", uid]):
        assert users(app, *args).exit_code == 0
    browser = Browser(app, fake_apple).sign_in(SUB_A)  # disabling signed the old browser out
    html = browser.page("/dashboard/activity")
    for title in ("Support looked up your account", "Support looked at your account",
                  "Support signed you out of your apps", "Support disabled your account",
                  "Support enabled your account again"):
        assert title in html
    assert '<p class="meta">Support</p>' in html  # by support: no device, no address
    assert "operator_" not in html  # nor event names
    users(app, "sign-out", uid, "--web")
    browser = Browser(app, fake_apple).sign_in(SUB_A)
    users(app, "sign-out", uid)
    browser = Browser(app, fake_apple).sign_in(SUB_A)
    html = browser.page("/dashboard/activity")
    assert "Support signed out your web sessions" in html
    assert "Support signed you out everywhere" in html
