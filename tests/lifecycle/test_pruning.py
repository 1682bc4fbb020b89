"""`flask prune`: dead rows go, live ones stay."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import AuditEvent
from siwa_web.models import LoginTransaction
from siwa_web.models import PendingProfile
from siwa_web.models import WebSession
from siwa_web.models.base import now_utc
from support.config import count_rows
from support.web import sign_in
from support.web import start_login


def count(app, model):
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def age(app, model, days, **columns):
    """Move timestamps of every row of `model` `days` into the past."""
    with app.app_context():
        then = now_utc() - timedelta(days=days)
        db.session.execute(update(model).values({c: then for c in columns}))
        db.session.commit()


def test_prune_removes_only_dead_rows(app, client, runner, fake_apple):
    sign_in(client, fake_apple)
    start_login(client)  # an abandoned trip to Apple
    with app.app_context():
        db.session.add(PendingProfile(sub="s", first_name="A"))
        db.session.commit()
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 0
    assert json.loads(result.output) == {k: 0 for k in json.loads(result.output)}
    assert count(app, LoginTransaction) == 2 and count(app, WebSession) == 1

    age(app, LoginTransaction, 2, expires_at=1)
    age(app, PendingProfile, 31, created_at=1)
    age(app, WebSession, 31, revoked_at=1)
    age(app, AuditEvent, 400, created_at=1)
    counts = json.loads(runner.invoke(args=["prune"]).output)
    assert counts["login_transactions"] == 2 and counts["pending_profiles"] == 1
    assert counts["web_sessions"] == 1 and counts["audit_events"] >= 1
    assert count(app, LoginTransaction) == count(app, WebSession) == 0


def test_dry_run_counts_what_prune_would_delete_and_deletes_nothing(app, client, runner,
                                                                   fake_apple):
    sign_in(client, fake_apple)
    start_login(client)
    age(app, LoginTransaction, 2, expires_at=1)
    age(app, WebSession, 31, revoked_at=1)
    before = count_rows(app)
    result = runner.invoke(args=["prune", "--dry-run"])
    assert result.exit_code == 0, result.output
    would = json.loads(result.output)["would_delete"]
    assert would["login_transactions"] == 2 and would["web_sessions"] == 1
    assert count_rows(app) == before
    assert json.loads(runner.invoke(args=["prune"]).output) == would


def test_help_names_the_settings_it_reads(runner):
    text = runner.invoke(args=["prune", "--help"]).output
    assert "PRUNE_AFTER_DAYS" in text and "AUDIT_RETENTION_DAYS" in text and "--dry-run" in text


def test_live_session_survives_prune(app, client, runner, fake_apple):
    sign_in(client, fake_apple)
    age(app, WebSession, 3, last_seen_at=1)  # idle a few days, still valid
    runner.invoke(args=["prune"])
    assert count(app, WebSession) == 1
    assert client.get("/dashboard").status_code == 200


def test_starting_sign_ins_is_rate_limited_per_ip(app, client):
    limit = int(app.config["RATELIMIT_LOGIN_PER_IP"].split("/")[0])
    for _ in range(limit):
        assert client.get("/auth/apple/login").status_code == 303
    resp = client.get("/auth/apple/login")
    assert resp.status_code == 429
    assert "Reference:" in resp.get_data(as_text=True)
    assert count(app, LoginTransaction) == limit
    other = client.get("/auth/apple/login", environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert other.status_code == 303


def test_prune_removes_the_code_flows_dead_rows(app, client, runner, fake_apple):
    """Answered or expired authorization requests, old codes and delivered logouts go;
    a live code, a waiting request and an undelivered logout stay."""
    from siwa_web.models import AuthorizationCode
    from siwa_web.models import BackchannelLogout
    from siwa_web.models import PendingAuthorization
    from support.webapps import authorize_params
    from support.webapps import pkce
    from support.webapps import register

    webapp = register(app)
    _, challenge = pkce()
    client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge))
    sign_in(client, fake_apple)
    client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge))
    with app.app_context():
        db.session.add_all([
            BackchannelLogout(client_id=webapp.client_id, sid="s1", sent_at=now_utc()),
            BackchannelLogout(client_id=webapp.client_id, sid="s2")])
        db.session.commit()
    assert (count(app, PendingAuthorization), count(app, AuthorizationCode)) == (1, 1)
    assert runner.invoke(args=["prune"]).exit_code == 0
    assert (count(app, PendingAuthorization), count(app, AuthorizationCode),
            count(app, BackchannelLogout)) == (1, 1, 2)  # nothing is old yet
    age(app, PendingAuthorization, 2, expires_at=True)
    age(app, AuthorizationCode, 2, expires_at=True)
    age(app, BackchannelLogout, 400, sent_at=True, created_at=True)
    with app.app_context():  # the undelivered one keeps waiting for `outbox retry`
        db.session.execute(update(BackchannelLogout).where(BackchannelLogout.sid == "s2")
                           .values(sent_at=None))
        db.session.commit()
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 0, result.output
    assert (count(app, PendingAuthorization), count(app, AuthorizationCode),
            count(app, BackchannelLogout)) == (0, 0, 1)


def _audit_rows(app, n: int, days_old: int) -> None:
    """`n` audit events `days_old` days old, inserted in one statement."""
    with app.app_context():
        then = now_utc() - timedelta(days=days_old)
        db.session.execute(AuditEvent.__table__.insert(), [
            {"created_at": then, "user_id": None, "event": "refresh", "outcome": "success",
             "details": {}} for _ in range(n)])
        db.session.commit()


def test_prune_deletes_in_bounded_batches_each_committed(app, runner):
    """23 dead rows with --batch-size 5: five batches, each a SELECT ... LIMIT 5 of the keys
    and a DELETE of those keys, each batch its own commit."""
    from sqlalchemy import event

    _audit_rows(app, 23, 400)
    _audit_rows(app, 4, 10)  # within retention: stays
    deletes, picks, commits = [], [], []
    with app.app_context():
        engine = db.engine

        def on_execute(conn, cursor, statement, parameters, context, executemany):
            text = " ".join(statement.split()).upper()
            if text.startswith("DELETE FROM AUDIT_EVENTS"):
                deletes.append(parameters)
            elif text.startswith("SELECT AUDIT_EVENTS.ID FROM AUDIT_EVENTS"):
                picks.append(text)

        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "commit", lambda conn: commits.append(1))
        try:
            result = runner.invoke(args=["prune", "--batch-size", "5"])
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["audit_events"] == 23
    # 5 + 5 + 5 + 5 + 3: the short last batch ends it without another query
    assert len(picks) == 5 and all("LIMIT" in text for text in picks)
    assert [len(p) if isinstance(p, dict | list | tuple) else p for p in deletes] \
        == [5, 5, 5, 5, 3]
    assert len(commits) >= 5
    assert count(app, AuditEvent) == 4


def test_prune_pauses_between_batches(app, runner, monkeypatch):
    import siwa_web.lifecycle.pruning as pruning

    slept = []
    monkeypatch.setattr(pruning.time, "sleep", slept.append)
    _audit_rows(app, 6, 400)
    result = runner.invoke(args=["prune", "--batch-size", "2", "--pause", "0.25",
                                 "--sleep-ratio", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["audit_events"] == 6
    assert slept == [0.25, 0.25, 0.25]  # after each full batch; the empty last one ends it


def test_prune_sleeps_in_proportion_to_each_batch(app, runner, monkeypatch):
    """PRUNE_SLEEP_RATIO (default 1): after a batch that took t seconds, it sleeps pause + r*t,
    so the database works for the prune at most 1 / (1 + r) of the run."""
    import siwa_web.lifecycle.pruning as pruning

    clock = iter(range(0, 1000, 3))  # every reading 3 s later than the one before
    slept = []
    monkeypatch.setattr(pruning, "monotonic", lambda: next(clock))
    monkeypatch.setattr(pruning.time, "sleep", slept.append)
    _audit_rows(app, 4, 400)
    assert app.config["PRUNE_SLEEP_RATIO"] == 1.0
    result = runner.invoke(args=["prune", "--batch-size", "2", "--pause", "0.5"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["audit_events"] == 4
    assert slept == [0.5 + 3, 0.5 + 3]  # each full batch "took" 3 s
    slept.clear()
    _audit_rows(app, 4, 400)
    app.config["PRUNE_SLEEP_RATIO"] = 2.5
    assert runner.invoke(args=["prune", "--batch-size", "2"]).exit_code == 0
    assert slept == [7.5, 7.5]
    assert count(app, AuditEvent) == 0


@pytest.mark.parametrize("args", [
    ["--batch-size", "0"], ["--batch-size", "-5"], ["--batch-size", "x"],
    ["--pause", "-1"], ["--pause", "soon"], ["--sleep-ratio", "-1"], ["--sleep-ratio", "x"],
    ["--sleep-ratio", "inf"], ["--pause", "nan"],
])
def test_bad_batch_options_are_refused_and_nothing_is_deleted(app, runner, args):
    _audit_rows(app, 3, 400)
    result = runner.invoke(args=["prune", *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert count(app, AuditEvent) == 3


@pytest.mark.parametrize("key,value", [
    ("PRUNE_BATCH_SIZE", 0), ("PRUNE_BATCH_SIZE", "lots"), ("PRUNE_BATCH_SIZE", True),
    ("PRUNE_PAUSE_SECONDS", -0.5), ("PRUNE_PAUSE_SECONDS", "1s"),
    ("PRUNE_SLEEP_RATIO", -1), ("PRUNE_SLEEP_RATIO", "half"), ("PRUNE_SLEEP_RATIO", "inf"),
])
def test_bad_batch_settings_are_named_and_nothing_is_deleted(app, runner, key, value):
    _audit_rows(app, 3, 400)
    app.config[key] = value
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 2
    assert key in result.output and "Traceback" not in result.output
    assert count(app, AuditEvent) == 3
