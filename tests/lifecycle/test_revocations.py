"""The Apple revocation outbox: backoff, alerting, claims, and the cron command (REL-13)."""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.lifecycle import outbox
from siwa_web.lifecycle import revocations as apple_revocations
from siwa_web.models import AppleRevocation
from siwa_web.models import AppleToken
from siwa_web.models import AuditEvent
from siwa_web.models.base import now_utc
from siwa_web.users.accounts import cipher
from siwa_web.users.deletion import queue_revocation
from support.apple import BUNDLE_ID
from support.apple import SERVICES_ID


class Clock:
    """A settable now_utc for the outbox mechanism (siwa_web.lifecycle.outbox)."""

    def __init__(self) -> None:
        self.now = now_utc()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(outbox, "now_utc", clock)
    return clock


def add_rows(app, *tokens: tuple[str, str], user_id: str = "gone-user") -> list[str]:
    """Outbox rows for (client_id, plaintext token) pairs, as a deletion would write them."""
    with app.app_context():
        ids = []
        for client_id, token in tokens:
            row = AppleRevocation(client_id=client_id, token_encrypted=cipher().encrypt(token),
                                  user_id=user_id, next_attempt_at=now_utc() - timedelta(seconds=1))
            db.session.add(row)
            db.session.flush()
            ids.append(row.id)
        db.session.commit()
        return ids


def rows(app) -> list[AppleRevocation]:
    with app.app_context():
        return list(db.session.scalars(
            select(AppleRevocation).order_by(AppleRevocation.created_at)))


def send(app, ids=None) -> apple_revocations.Report:
    with app.app_context():
        return apple_revocations.send_due(ids)


def test_backoff_doubles_from_a_minute_and_is_capped(app):
    with app.app_context():
        waits = [apple_revocations.backoff(n).total_seconds() for n in range(1, 12)]
    assert waits[:6] == [60, 120, 240, 480, 960, 1920]
    assert max(waits) == app.config["APPLE_REVOCATION_BACKOFF_MAX"] == 6 * 3600


def test_sends_each_row_with_its_own_client_id_and_wipes_the_token(app, fake_apple):
    add_rows(app, (SERVICES_ID, "r.web"), (BUNDLE_ID, "r.native"))
    report = send(app)
    assert (report.sent, report.failed) == (2, 0) and report.all_sent
    assert sorted((r["client_id"], r["token"], r["token_type_hint"])
                  for r in fake_apple.revoke_requests) == sorted([
        (SERVICES_ID, "r.web", "refresh_token"), (BUNDLE_ID, "r.native", "refresh_token")])
    assert fake_apple.client_secret_errors == []
    assert all(r.sent_at and r.token_encrypted == "" and r.attempts == 1 for r in rows(app))
    assert send(app).sent == 0 and len(fake_apple.revoke_requests) == 2  # never twice


def test_queue_skips_tokens_that_were_never_stored(app):
    with app.app_context():
        assert queue_revocation(AppleToken(client_id=SERVICES_ID), "u") is None


def test_an_outage_stops_the_run_early_and_keeps_every_row(app, fake_apple):
    add_rows(app, (SERVICES_ID, "one"), (SERVICES_ID, "two"), (BUNDLE_ID, "three"))
    fake_apple.outage("revoke")
    report = send(app)
    assert (report.sent, report.failed) == (0, 1)
    assert len(fake_apple.revoke_requests) == 1  # no timeout per row while Apple is down
    assert [r.attempts for r in rows(app)].count(0) == 2
    assert all(r.sent_at is None for r in rows(app))


def test_an_hour_long_outage_is_retried_with_backoff_until_apple_is_back(app, fake_apple, clock):
    """REL-13: ≥ 5 attempts over ≥ 1 h, then success once Apple recovers; sent exactly once."""
    [row_id] = add_rows(app, (SERVICES_ID, "r.outage"))
    fake_apple.outage("revoke")
    start = clock.now
    while clock.now - start < timedelta(hours=1):
        send(app)
        [row] = rows(app)
        clock.now = max(clock.now, row.next_attempt_at)  # cron runs whenever it is due
    [row] = rows(app)
    assert row.attempts >= 5 and row.sent_at is None
    gaps = [e.details["next_attempt_at"] for e in _events(app, "apple_revocation_failed")]
    assert len(gaps) == row.attempts and gaps == sorted(gaps)
    fake_apple.restore("revoke")
    clock.now = row.next_attempt_at
    assert send(app).sent == 1
    [row] = rows(app)
    assert row.sent_at is not None
    assert sum(1 for r in fake_apple.revoke_requests if r.get("token") == "r.outage") == \
        row.attempts
    assert row_id == row.id


def test_rows_not_yet_due_are_left_alone(app, fake_apple, clock):
    add_rows(app, (SERVICES_ID, "later"))
    fake_apple.outage("revoke")
    send(app)
    fake_apple.restore("revoke")
    assert send(app).sent == 0
    clock.advance(59)
    assert send(app).sent == 0
    clock.advance(2)
    assert send(app).sent == 1


@pytest.mark.parametrize("error, logged", [("invalid_grant", logging.WARNING),
                                           ("invalid_client", logging.ERROR)])
def test_apple_rejections_are_kept_and_logged(app, fake_apple, caplog, error, logged):
    add_rows(app, (SERVICES_ID, "tok-Secret-4711"))
    fake_apple.next_revoke_response(status=400, json={"error": error})
    report = send(app)
    assert report.failed == 1
    [row] = rows(app)
    assert row.sent_at is None and row.last_error == f"Apple said {error}"
    assert any(r.levelno == logged and r.name == "siwa_web.lifecycle.revocations"
               for r in caplog.records)
    assert "Secret-4711" not in caplog.text  # never the token itself


def test_a_token_that_cannot_be_decrypted_is_kept_and_logged(app, fake_apple, caplog):
    with app.app_context():
        db.session.add(AppleRevocation(client_id=SERVICES_ID, token_encrypted="not-fernet",
                                       user_id="u", next_attempt_at=now_utc()))
        db.session.commit()
    assert send(app).failed == 1
    assert fake_apple.revoke_requests == []
    [row] = rows(app)
    assert row.last_error == "token cannot be decrypted"
    assert "TOKEN_ENCRYPTION_KEYS" in caplog.text


def test_an_unexpected_error_keeps_the_row_for_later(app, fake_apple, monkeypatch, caplog):
    add_rows(app, (SERVICES_ID, "tok-bug"))

    def broken(self, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("siwa_web.apple.AppleClient.revoke", broken)
    assert send(app).failed == 1
    [row] = rows(app)
    assert row.sent_at is None and row.last_error == "unexpected error" and row.attempts == 1
    assert "failed unexpectedly" in caplog.text
    monkeypatch.undo()
    with app.app_context():
        db.session.execute(AppleRevocation.__table__.update().values(next_attempt_at=now_utc()))
        db.session.commit()
    assert send(app).sent == 1


def test_failures_and_successes_are_audited_without_secrets(app, fake_apple):
    add_rows(app, (SERVICES_ID, "audited"), user_id="u-123")
    fake_apple.next_revoke_response(status=503, text="down")
    send(app)
    with app.app_context():
        db.session.execute(AppleRevocation.__table__.update().values(next_attempt_at=now_utc()))
        db.session.commit()
    send(app)
    failed, sent = _events(app, "apple_revocation_failed"), _events(app, "apple_revocation_sent")
    assert len(failed) == len(sent) == 1
    assert failed[0].user_id == sent[0].user_id == "u-123"
    assert failed[0].client_id == SERVICES_ID and failed[0].outcome == "failure"
    assert "audited" not in repr([e.details for e in failed + sent])


def _events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)))


def test_overlapping_runs_send_each_row_once(app, fake_apple):
    """Two cron runs at once (or a run during a deletion's own send): claims keep them apart."""
    tokens = [(SERVICES_ID, f"tok-{i}") for i in range(12)]
    add_rows(app, *tokens)
    barrier = threading.Barrier(3)
    reports = []

    def run() -> None:
        with app.app_context():
            barrier.wait()
            reports.append(apple_revocations.send_due())
            db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = sorted(r["token"] for r in fake_apple.revoke_requests)
    assert sent == sorted(t for _, t in tokens)
    assert sum(r.sent for r in reports) == 12
    assert all(r.sent_at is not None for r in rows(app))


# --- the cron command ----------------------------------------------------------------------------


def test_cli_sends_due_rows_and_reports(app, runner, fake_apple):
    add_rows(app, (SERVICES_ID, "cli-1"), (BUNDLE_ID, "cli-2"))
    result = runner.invoke(args=["apple", "retry-revocations"])
    assert result.exit_code == 0, result.output
    assert "2 sent, 0 failed" in result.output and "0 still pending" in result.output
    assert len(fake_apple.revoke_requests) == 2


def test_cli_with_nothing_to_do(app, runner):
    result = runner.invoke(args=["apple", "retry-revocations"])
    assert result.exit_code == 0 and "0 sent" in result.output


def test_cli_exits_1_when_a_revocation_keeps_failing(app, runner, fake_apple):
    add_rows(app, (SERVICES_ID, "stuck"))
    alert = app.config["APPLE_REVOCATION_ALERT_ATTEMPTS"]
    with app.app_context():
        db.session.execute(AppleRevocation.__table__.update().values(attempts=alert - 1))
        db.session.commit()
    fake_apple.outage("revoke")
    result = runner.invoke(args=["apple", "retry-revocations"])
    assert result.exit_code == 1
    assert "1 failed" in result.output and f"failed {alert} or more times" in result.output
    [row] = rows(app)
    assert row.attempts == alert and row.sent_at is None


def test_cli_limit(app, runner, fake_apple):
    add_rows(app, *[(SERVICES_ID, f"lim-{i}") for i in range(3)])
    result = runner.invoke(args=["apple", "retry-revocations", "--limit", "2"])
    assert "2 sent" in result.output and "1 still pending" in result.output
