"""`flask apple validate-tokens`: the daily check of stored Apple refresh tokens at Apple."""
from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.lifecycle import validation
from siwa_web.models import AppleIdentity
from siwa_web.models import AppleToken
from siwa_web.models import BackchannelLogout
from siwa_web.models.base import now_utc
from support.apple import BUNDLE_ID
from support.apple import SERVICES_ID
from support.dashboard import SUB_A
from support.dashboard import SUB_A2
from support.dashboard import SUB_B
from support.dashboard import Browser
from support.dashboard import api_me
from support.dashboard import app_sign_in
from support.dashboard import apple_tokens
from support.dashboard import events
from support.dashboard import refresh
from support.dashboard import section
from support.dashboard import snapshot
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import pkce
from support.webapps import redeem
from support.webapps import register

DAY = timedelta(days=1)


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=["apple", "validate-tokens", *args])


def token_rows(app) -> list[AppleToken]:
    with app.app_context():
        return list(db.session.scalars(select(AppleToken).order_by(AppleToken.created_at)))


def make_due(app, ago: timedelta = timedelta(seconds=1), **where) -> None:
    """Let tokens' next check come round (as if a day had passed)."""
    with app.app_context():
        stmt = update(AppleToken).values(next_check_at=now_utc() - ago)
        for column, value in where.items():
            stmt = stmt.where(getattr(AppleToken, column) == value)
        db.session.execute(stmt)
        db.session.commit()


def refresh_calls(fake_apple) -> list[dict]:
    return [r for r in fake_apple.token_requests if r.get("grant_type") == "refresh_token"]


@pytest.fixture
def signed_in(app, fake_apple):
    """SUB_A on the web (a browser session) and in the iOS app (an app session)."""
    browser = Browser(app, fake_apple).sign_in(SUB_A)
    tokens = app_sign_in(app, fake_apple, SUB_A)
    return browser, tokens


def test_a_new_token_is_not_due_for_a_day(app, fake_apple, signed_in):
    [web, native] = token_rows(app)
    for row in (web, native):
        assert DAY - timedelta(minutes=1) < row.next_check_at - now_utc() <= DAY
        assert row.checked_at is None
    result = run(app)
    assert result.exit_code == 0, result.output
    assert refresh_calls(fake_apple) == []
    assert "0 checked" in result.output


def test_valid_tokens_are_checked_once_a_day(app, fake_apple, signed_in):
    browser, tokens = signed_in
    make_due(app)
    result = run(app)
    assert result.exit_code == 0, result.output
    calls = refresh_calls(fake_apple)
    assert sorted(c["client_id"] for c in calls) == sorted([SERVICES_ID, BUNDLE_ID])
    assert {(c["client_id"], c["refresh_token"]) for c in calls} == apple_tokens(app, SUB_A)
    for row in token_rows(app):
        assert row.check_state == "valid" and row.checked_at is not None
        assert row.next_check_at - row.checked_at == DAY
    assert "2 valid" in result.output
    assert browser.is_signed_in() and api_me(app, tokens).status_code == 200
    # At most once a day: a second run straight after asks Apple nothing.
    assert run(app).exit_code == 0
    assert len(refresh_calls(fake_apple)) == 2


def test_oldest_check_first_in_batches_with_a_progress_line_each(app, fake_apple):
    for sub in (SUB_A, SUB_A2, SUB_B):
        app_sign_in(app, fake_apple, sub)
    with app.app_context():
        ids = {}
        for hours, sub in ((3, SUB_A2), (2, SUB_B), (1, SUB_A)):
            token = db.session.scalar(select(AppleToken).join(AppleIdentity).where(
                AppleIdentity.sub == sub))
            token.next_check_at = now_utc() - timedelta(hours=hours)
            ids[sub] = token.id
        db.session.commit()
    result = run(app, "--limit", "2", "--batch", "1")
    assert result.exit_code == 0, result.output
    assert result.output.count("batch ") == 2
    checked = {r.id for r in token_rows(app) if r.check_state == "valid"}
    assert checked == {ids[SUB_A2], ids[SUB_B]}  # the two oldest; SUB_A waits for the next run
    assert run(app).exit_code == 0
    assert {r.check_state for r in token_rows(app)} == {"valid"}


def test_invalid_grant_ends_the_apple_ids_sessions_like_consent_revoked(app, fake_apple,
                                                                        requests_mock):
    receiver = requests_mock.post("https://app.example/bc", status_code=200)
    browser = Browser(app, fake_apple).sign_in(SUB_A)
    tokens = app_sign_in(app, fake_apple, SUB_A)
    # A web app that signed in through the browser session and wants back-channel logouts.
    webapp = register(app, backchannel_logout_uri="https://app.example/bc")
    verifier, challenge = pkce()
    back = answer(browser.client.get("/oauth/authorize",
                                     query_string=authorize_params(webapp, challenge)))
    web_tokens = redeem(browser.client, webapp, back["code"], verifier).get_json()
    fake_apple.revoked_tokens.extend(t for _, t in apple_tokens(app, SUB_A))  # Stop using
    make_due(app)
    result = run(app)
    assert result.exit_code == 0, result.output
    assert "2 revoked" in result.output
    assert not browser.is_signed_in()
    assert api_me(app, tokens).status_code == 401
    assert refresh(app, tokens).status_code == 400
    assert api_me(app, web_tokens).status_code == 401
    rows = token_rows(app)
    for row in rows:
        assert row.refresh_token_encrypted is None and row.check_state == "revoked"
        assert row.invalidated_at is not None
    assert any(row.checked_at is not None for row in rows)
    with app.app_context():  # the web app was told, through the one sign-out path
        [logout] = db.session.scalars(select(BackchannelLogout)).all()
        assert logout.client_id == webapp.client_id and logout.sent_at is not None
    assert receiver.call_count == 1 and "logout_token=" in receiver.last_request.text
    [event] = events(app, "apple_consent_revoked")  # one event: the Apple ID, not each token
    assert event.details["via"] == "daily_check"
    # Nothing is left to check, and nothing is revoked at Apple (the tokens are dead already).
    make_due(app)
    before = len(fake_apple.token_requests)
    assert run(app).exit_code == 0 and len(fake_apple.token_requests) == before


def test_the_dashboard_says_why_an_apple_id_was_signed_out(app, fake_apple):
    browser = Browser(app, fake_apple).sign_in(SUB_A)
    assert browser.link(SUB_A2).status_code == 303
    revoked = {t for c, t in apple_tokens(app, SUB_A)}
    fake_apple.revoked_tokens.extend(revoked)
    make_due(app)
    assert run(app).exit_code == 0
    assert not browser.is_signed_in()  # this browser signed in with SUB_A
    browser.sign_in(SUB_A2)
    cards = section(browser.page(), "apple-ids")
    assert cards.count("Stopped in Apple Account settings") == 1
    assert "Sign in with Apple was stopped in Apple Account settings" in browser.page(
        "/dashboard/activity")


FAULTS = {
    "timeout": {"exc": requests.exceptions.ReadTimeout},
    "connection refused": {"exc": requests.exceptions.ConnectionError},
    "503 html": {"status": 503, "text": "<html>Service Unavailable</html>"},
    "500 json": {"status": 500, "json": {"error": "server_error"}},
    "200 garbage json": {"status": 200, "text": "{not json"},
    "200 without id_token": {"status": 200, "json": {"access_token": "a", "expires_in": 3600}},
    "200 array": {"status": 200, "json": [1, 2]},
    "400 without error": {"status": 400, "json": {"nope": 1}},
    "400 invalid_request": {"status": 400, "json": {"error": "invalid_request"}},
    "429": {"status": 429, "text": "slow down"},
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulty_apple_changes_nothing_and_the_token_stays_due(app, fake_apple, signed_in,
                                                                fault):
    browser, tokens = signed_in
    make_due(app, ago=timedelta(hours=2), client_id=BUNDLE_ID)
    make_due(app, ago=timedelta(hours=1), client_id=SERVICES_ID)
    before = snapshot(app)
    due_before = [(r.id, r.next_check_at, r.check_state) for r in token_rows(app)]
    for _ in range(2):
        fake_apple.next_token_response(**FAULTS[fault])
    result = run(app)
    assert result.exit_code == 0, result.output
    assert snapshot(app) == before
    assert [(r.id, r.next_check_at, r.check_state) for r in token_rows(app)] == due_before
    assert browser.is_signed_in() and api_me(app, tokens).status_code == 200
    assert events(app, "apple_consent_revoked") == []
    # Apple is back: the next run checks both.
    assert run(app).exit_code == 0
    assert {r.check_state for r in token_rows(app)} == {"valid"}


def test_apple_down_for_a_whole_batch_stops_the_run(app, fake_apple):
    for sub in (SUB_A, SUB_A2, SUB_B):
        app_sign_in(app, fake_apple, sub)
    make_due(app)
    fake_apple.outage("token")
    result = run(app, "--batch", "1")
    assert result.exit_code == 0
    assert len(refresh_calls(fake_apple)) == 1  # not one timeout per token
    assert all(r.check_state is None for r in token_rows(app))


def test_invalid_client_changes_no_user_and_exits_non_zero(app, fake_apple, signed_in, caplog):
    browser, tokens = signed_in
    make_due(app)
    before = snapshot(app)
    due_before = [(r.id, r.next_check_at) for r in token_rows(app)]
    fake_apple.outage("token", status=400, json={"error": "invalid_client"})
    with caplog.at_level(logging.ERROR, logger="siwa_web.lifecycle.validation"):
        result = run(app)
    assert result.exit_code == 1
    assert "invalid_client" in result.output
    errors = [r for r in caplog.records if r.name == "siwa_web.lifecycle.validation"
              and r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "SIWA_APPLE_TEAM_ID" in message and "SIWA_APPLE_KEY_ID" in message
    for token in (t for _, t in apple_tokens(app, SUB_A)):
        assert token not in message and token not in result.output
    assert snapshot(app) == before
    assert [(r.id, r.next_check_at) for r in token_rows(app)] == due_before
    assert browser.is_signed_in() and api_me(app, tokens).status_code == 200


def test_a_claimed_token_is_not_checked_by_another_run(app, fake_apple, signed_in):
    make_due(app)
    [web, native] = token_rows(app)
    with app.app_context():  # a concurrent run holds the lease on the web token
        claimed = validation._claim([web.id])
        assert [c.id for c in claimed] == [web.id]
        assert validation._claim([web.id]) == []  # its lease: nobody else gets it
    result = run(app)
    assert result.exit_code == 0
    assert [c["client_id"] for c in refresh_calls(fake_apple)] == [BUNDLE_ID]


def test_a_token_replaced_by_a_sign_in_during_the_check_is_not_killed(app, fake_apple):
    app_sign_in(app, fake_apple, SUB_A)
    make_due(app)
    [old] = apple_tokens(app, SUB_A)
    fake_apple.revoked_tokens.append(old[1])
    with app.app_context():
        [claimed] = validation._claim([token_rows(app)[0].id])
    app_sign_in(app, fake_apple, SUB_A)  # a new sign-in stores a new Apple token meanwhile
    with app.app_context():
        validation._write_outcome(claimed, validation.REVOKED, validation.Report())
    [row] = token_rows(app)
    assert row.refresh_token_encrypted is not None and row.check_state is None
    assert events(app, "apple_consent_revoked") == []


def test_the_pacer_keeps_to_the_rate_with_bounded_jitter():
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    pacer = validation.Pacer(validation.Pace(concurrency=1, rate=2.0, jitter=0.0),
                             sleep=sleep, clock=lambda: now[0])
    for _ in range(4):
        pacer.wait()
    assert sleeps == [0.5, 0.5, 0.5]  # the first call at once, then 2 per second
    jittery = validation.Pacer(validation.Pace(concurrency=1, rate=2.0, jitter=0.5),
                               sleep=sleep, clock=lambda: now[0], rng=random.Random(7))
    sleeps.clear()
    for _ in range(20):
        jittery.wait()
    assert all(0 <= s <= 0.75 + 1e-9 for s in sleeps)
    assert len(set(round(s, 6) for s in sleeps)) > 1


def test_calls_run_concurrently_within_the_rate(app, fake_apple):
    for sub in (SUB_A, SUB_A2, SUB_B):
        app_sign_in(app, fake_apple, sub)
    make_due(app)
    result = run(app, "--concurrency", "3", "--rate", "50")
    assert result.exit_code == 0, result.output
    assert len(refresh_calls(fake_apple)) == 3
    assert {r.check_state for r in token_rows(app)} == {"valid"}


def test_overlapping_runs_check_each_token_once(app, fake_apple):
    subs = [f"00{n}444.{n:x}{'d' * 31}.000{n}" for n in range(6)]
    for sub in subs:
        app_sign_in(app, fake_apple, sub)
    make_due(app)
    reports: list[validation.Report] = []
    start = threading.Barrier(2)

    def one_run() -> None:
        with app.app_context():
            start.wait()
            reports.append(validation.validate_due(
                limit=100, batch=2, pace=validation.Pace(concurrency=2, rate=1000, jitter=0)))
            db.session.remove()

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(60)
    assert len(reports) == 2
    tokens = [c["refresh_token"] for c in refresh_calls(fake_apple)]
    assert len(tokens) == len(set(tokens)) == 6  # every token once, none twice
    assert sum(r.valid for r in reports) == 6
    assert {r.check_state for r in token_rows(app)} == {"valid"}
