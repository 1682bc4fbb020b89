"""Team transfer end to end: users made under team A sign in unchanged under team B.

Apple is the emulator (two teams, the app moved between them with `/__emulator/transfer`),
except where a transport failure (timeout) must be produced: there requests-mock stands in.
siwa-web runs twice over one database: `app` with team A's credentials, `team_b_app` with
team B's, as an operator would reconfigure it on transfer day.
"""
from __future__ import annotations

import json

import pytest
import requests
import requests_mock
from sqlalchemy import select

from siwa_web import create_app
from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import User
from support.teams import KEY_B
from support.teams import TEAM_B
from support.teams import AppleSide
from support.teams import native_sign_in
from support.teams import public_of
from support.teams import route_to
from support.teams import web_sign_in
from support.tokens import audit_events

DAY = 86400
EXPORT = ["apple", "transfer", "export", "--target-team", TEAM_B]
IMPORT = ["apple", "transfer", "import"]


def identities(app) -> dict[str, dict]:
    """Every Apple identity by user id: its sub and transfer columns."""
    with app.app_context():
        rows = db.session.execute(select(AppleIdentity)).scalars().all()
        return {r.user_id: {"sub": r.sub, "transfer_sub": r.transfer_sub,
                            "transfer_team": r.transfer_team, "previous_sub": r.previous_sub,
                            "moved": r.transferred_at is not None, "email": r.email}
                for r in rows}


def user_count(app) -> int:
    with app.app_context():
        return len(db.session.execute(select(User.id)).all())


def cli(app, args):
    return app.test_cli_runner().invoke(args=args)


@pytest.fixture
def apple(apple_emulator, team_b_key_pem) -> AppleSide:
    """Apple, where team B exists already (the app can be moved to it)."""
    side = AppleSide(apple_emulator)
    side.post("teams", {"team_id": TEAM_B, "client_keys": {KEY_B: public_of(team_b_key_pem)}})
    return side


@pytest.fixture
def two_users(app, apple, native_client):
    """Maria signed up in the browser, Ada in the iOS app (hiding her email), under team A."""
    maria, ada = apple.new_user("maria@example.com", "Maria"), apple.new_user("ada@example.com",
                                                                              "Ada")
    browser = app.test_client()
    assert web_sign_in(browser, apple, maria["id"]).status_code == 303
    resp = native_sign_in(app.test_client(), apple, native_client, ada["id"], share_email=False)
    assert resp.status_code == 200, resp.get_json()
    found = identities(app)
    by_sub = {v["sub"]: uid for uid, v in found.items()}
    assert set(by_sub) == {maria["sub"], ada["sub"]}
    return {"maria": {**maria, "user": by_sub[maria["sub"]], "browser": browser},
            "ada": {**ada, "user": by_sub[ada["sub"]]}}


def test_users_keep_their_accounts_through_export_transfer_import(
        app, team_b_app, apple, two_users, native_client):
    maria, ada = two_users["maria"], two_users["ada"]

    result = cli(app, EXPORT)
    assert result.exit_code == 0, result.output
    assert "Export: 2 done, 0 already done, 0 refused by Apple, 0 conflicts, of 2" in result.output
    exported = identities(app)
    assert all(v["transfer_sub"] and v["transfer_team"] == TEAM_B for v in exported.values())
    assert {v["sub"] for v in exported.values()} == {maria["sub"], ada["sub"]}  # not moved yet

    apple.transfer()
    new_sub = {name: apple.user(p["id"])["sub"] for name, p in two_users.items()}
    assert new_sub["maria"] != maria["sub"] and new_sub["ada"] != ada["sub"]

    result = cli(team_b_app, IMPORT)
    assert result.exit_code == 0, result.output
    assert "Import: 2 done" in result.output
    moved = identities(team_b_app)
    assert moved[maria["user"]]["sub"] == new_sub["maria"]
    assert moved[maria["user"]]["previous_sub"] == maria["sub"]
    assert moved[ada["user"]]["sub"] == new_sub["ada"]
    # Relay addresses are per team too: Ada's follows.
    assert exported[ada["user"]]["email"] == ada["relay_email"]
    assert moved[ada["user"]]["email"] == apple.user(ada["id"])["relay_email"] != ada["relay_email"]
    assert moved[maria["user"]]["email"] == "maria@example.com"
    with team_b_app.app_context():
        assert db.session.get(User, ada["user"]).email == moved[ada["user"]]["email"]
    assert all(v["moved"] for v in moved.values())
    events = audit_events(team_b_app, "apple_identity_transferred")
    assert sorted(e["user_id"] for e in events) == sorted([maria["user"], ada["user"]])
    assert all(e["reason"] == "import" for e in events)
    assert all(maria["sub"] not in json.dumps(e) for e in events)  # fingerprints, not subs

    # The browser session from before the transfer still opens the dashboard, which tells.
    assert maria["browser"].get("/dashboard").status_code == 200
    activity = maria["browser"].get("/dashboard/activity").get_data(as_text=True)
    assert "Your Apple Account moved with the app to its new Apple team" in activity
    # Both sign in again under team B, in both flows, as the same users.
    browser = team_b_app.test_client()
    assert web_sign_in(browser, apple, maria["id"]).status_code == 303
    page = browser.get("/dashboard")
    assert page.status_code == 200 and "Maria" in page.get_data(as_text=True)
    resp = native_sign_in(team_b_app.test_client(), apple, native_client, ada["id"])
    assert resp.status_code == 200, resp.get_json()
    assert user_count(team_b_app) == 2
    assert identities(team_b_app) == moved


def test_sign_in_during_the_window_finds_the_user_before_import(
        app, team_b_app, apple, two_users, native_client):
    maria, ada = two_users["maria"], two_users["ada"]
    assert cli(app, EXPORT).exit_code == 0
    apple.transfer()

    assert web_sign_in(team_b_app.test_client(), apple, maria["id"]).status_code == 303
    resp = native_sign_in(team_b_app.test_client(), apple, native_client, ada["id"])
    assert resp.status_code == 200, resp.get_json()

    assert user_count(team_b_app) == 2
    now = identities(team_b_app)
    assert now[maria["user"]]["sub"] == apple.user(maria["id"])["sub"]
    assert now[ada["user"]]["sub"] == apple.user(ada["id"])["sub"]
    assert {e["reason"] for e in audit_events(team_b_app, "apple_identity_transferred")} == {
        "sign_in"}

    result = cli(team_b_app, IMPORT)
    assert result.exit_code == 0, result.output
    assert "0 done, 0 already done, 0 refused by Apple, 0 conflicts, of 0 pending" in result.output
    assert identities(team_b_app) == now


def test_a_new_sub_that_belongs_to_another_user_is_reported_and_left_alone(
        app, team_b_app, apple, two_users):
    """Nobody exported before the move; Maria signed in under team B and got a second account.

    The old team can still export during the 60 days; import then finds the conflict.
    """
    maria = two_users["maria"]
    apple.transfer()
    assert web_sign_in(team_b_app.test_client(), apple, maria["id"]).status_code == 303
    assert user_count(team_b_app) == 3  # without a transfer_sub on file: a new account

    result = cli(app, EXPORT)  # team A's credentials, after the move, inside the window
    assert "Export: 2 done, 0 already done, 1 refused by Apple" in result.output  # the 2nd account
    assert result.exit_code == 1
    before = identities(team_b_app)
    audit_before = len(audit_events(team_b_app))

    result = cli(team_b_app, IMPORT + ["--dry-run"])
    assert result.exit_code == 1
    assert "1 conflicts" in result.output and maria["user"] in result.output
    assert identities(team_b_app) == before

    result = cli(team_b_app, IMPORT)
    assert result.exit_code == 1
    assert "Import: 1 done" in result.output and "1 conflicts" in result.output
    assert "conflict: identity" in result.output and maria["user"] in result.output
    after = identities(team_b_app)
    assert after[maria["user"]] == before[maria["user"]]  # nothing changed for Maria
    assert after[two_users["ada"]["user"]]["moved"]
    assert user_count(team_b_app) == 3
    moved_events = audit_events(team_b_app, "apple_identity_transferred")
    assert [e["user_id"] for e in moved_events] == [two_users["ada"]["user"]]
    assert len(audit_events(team_b_app)) == audit_before + 1


def test_dry_run_changes_nothing(app, team_b_app, apple, two_users):
    assert cli(app, EXPORT).exit_code == 0
    apple.transfer()
    before = identities(team_b_app)
    result = cli(team_b_app, IMPORT + ["--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dry_run"] is True and report["done"] == 2 and report["ok"] is True
    assert identities(team_b_app) == before
    assert audit_events(team_b_app, "apple_identity_transferred") == []
    assert cli(team_b_app, IMPORT).exit_code == 0
    assert all(v["moved"] for v in identities(team_b_app).values())


def test_export_lists_users_who_revoked_and_is_idempotent(app, apple, two_users):
    ada = two_users["ada"]
    apple.post(f"users/{ada['id']}/revoke", {"notify": False})

    result = cli(app, EXPORT)
    assert result.exit_code == 1
    assert "1 done, 0 already done, 1 refused by Apple" in result.output
    assert "refused: identity" in result.output and ada["user"] in result.output
    assert "invalid_request" in result.output
    first = identities(app)
    assert first[ada["user"]]["transfer_sub"] is None
    assert first[two_users["maria"]["user"]]["transfer_sub"]

    result = cli(app, EXPORT + ["--json"])  # again: Maria is skipped, Ada refused again
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["total"] == 1 and report["done"] == 0 and len(report["failures"]) == 1
    assert report["failures"][0]["user"] == ada["user"]
    assert identities(app) == first


@pytest.mark.parametrize("target", ["TEAMB", "teambbbb02", "TEAMBBBB02X", "TESTTEAM01"])
def test_export_refuses_a_bad_target_team(app, apple, two_users, target):
    before = identities(app)
    result = cli(app, ["apple", "transfer", "export", "--target-team", target])
    assert result.exit_code == 2
    assert "--target-team" in result.output
    assert identities(app) == before


FAULTS = [
    pytest.param("token", {"status": 503, "body": "<html>Service Unavailable</html>"},
                 id="token-503"),
    pytest.param("token", {"status": 200, "body": {"token_type": "Bearer"}},
                 id="token-without-access-token"),
    pytest.param("usermigrationinfo", {"status": 500, "body": {"error": "server_error"}},
                 id="migration-500"),
    pytest.param("usermigrationinfo", {"status": 200, "body": "not json"},
                 id="migration-garbage"),
    pytest.param("usermigrationinfo", {"status": 200, "body": {"transfer_sub": ["x"],
                                                               "sub": {"a": 1}}},
                 id="migration-wrong-types"),
]


@pytest.mark.parametrize("endpoint,failure", FAULTS)
def test_a_faulty_apple_stops_the_export_with_nothing_stored(app, apple, two_users, endpoint,
                                                             failure):
    apple.fail(endpoint, **failure)
    before = identities(app)
    result = cli(app, EXPORT)
    assert result.exit_code == 1
    assert "Stopped: Apple unavailable" in result.output
    assert identities(app) == before
    result = cli(app, EXPORT)  # Apple is back: the run resumes and finishes
    assert result.exit_code == 0, result.output
    assert all(v["transfer_sub"] for v in identities(app).values())


@pytest.mark.parametrize("endpoint,failure", FAULTS)
def test_a_faulty_apple_stops_the_import_with_nothing_changed(app, team_b_app, apple, two_users,
                                                              endpoint, failure):
    assert cli(app, EXPORT).exit_code == 0
    apple.transfer()
    apple.fail(endpoint, **failure)
    before = identities(team_b_app)
    result = cli(team_b_app, IMPORT)
    assert result.exit_code == 1
    assert "Stopped: Apple unavailable" in result.output
    assert identities(team_b_app) == before
    assert audit_events(team_b_app, "apple_identity_transferred") == []
    assert cli(team_b_app, IMPORT).exit_code == 0
    assert all(v["moved"] for v in identities(team_b_app).values())


@pytest.mark.parametrize("command", ["export", "import"])
def test_a_timeout_stops_the_run_with_nothing_changed(app, apple, two_users, command):
    before = identities(app)
    args = EXPORT if command == "export" else IMPORT
    if command == "import":
        assert cli(app, EXPORT).exit_code == 0
        before = identities(app)
    with requests_mock.Mocker(session=app.extensions["siwa.apple"].session) as mocker:
        mocker.post(requests_mock.ANY, exc=requests.exceptions.ReadTimeout)
        result = cli(app, args)
    assert result.exit_code == 1
    assert "Stopped: Apple unavailable" in result.output
    assert identities(app) == before


def test_wrong_credentials_stop_the_run_and_point_at_the_doctor(app_config, apple_emulator,
                                                               apple, two_users):
    wrong = create_app({**app_config, "APPLE_KEY_ID": "WRONGKEY01"})
    route_to(wrong, apple_emulator)
    try:
        before = identities(wrong)
        result = cli(wrong, EXPORT)
        assert result.exit_code == 1
        assert "invalid_client" in result.output and "flask apple doctor" in result.output
        assert identities(wrong) == before
    finally:
        with wrong.app_context():
            db.engine.dispose()


def test_after_sixty_days_apple_refuses_and_nothing_changes(app, team_b_app, apple, two_users):
    assert cli(app, EXPORT).exit_code == 0
    apple.transfer()
    apple.advance(61 * DAY)
    before = identities(team_b_app)
    result = cli(team_b_app, IMPORT + ["--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["done"] == 0 and len(report["failures"]) == 2
    assert {f["error"] for f in report["failures"]} == {"invalid_request"}
    assert identities(team_b_app) == before


def test_status_counts_each_stage(app, team_b_app, apple, two_users):
    assert "Not exported: 2" in cli(app, ["apple", "transfer", "status"]).output
    cli(app, EXPORT)
    out = cli(app, ["apple", "transfer", "status"]).output
    assert f"Target team {TEAM_B}: 2 waiting for import, 0 moved" in out
    apple.transfer()
    cli(team_b_app, IMPORT)
    report = json.loads(cli(team_b_app, ["apple", "transfer", "status", "--json"]).output)
    assert report == {"not_exported": 0, "teams": {TEAM_B: {"exported": 0, "moved": 2}}}
