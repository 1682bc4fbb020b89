"""bench/datasize.py stays runnable: its generator fills a real schema, and the EXPLAIN tool
flags a sequential scan and not an index lookup. Tiny sizes; nothing is measured here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy import text

from siwa_web.infra.extensions import db
from siwa_web.models import RefreshToken
from support.dashboard import ensure_client

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield
    for name in ("datasize", "datasize_sql", "explain", "recorder", "tokens", "harness",
                 "report"):
        sys.modules.pop(name, None)


def test_datasize_help():
    done = subprocess.run([sys.executable, str(BENCH / "datasize.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--explain-only" in done.stdout and "--tokens" in done.stdout


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_generator_fills_the_schema_and_explain_flags_seq_scans(app, bench_path, tmp_path):
    import datasize_sql
    import explain
    import recorder

    client_id = ensure_client(app)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    datasize_sql.generate(url, users=20, tokens=400, events=300, clients=[client_id],
                          web_client=None, log=lambda _msg: None)
    with app.app_context():
        counts = {t: db.session.scalar(text(f"SELECT count(*) FROM {t}")) for t in
                  ("users", "apple_identities", "token_families", "refresh_tokens",
                   "audit_events")}
        # a rotation chain per family: three used, one successor each
        used = db.session.scalar(select(db.func.count()).where(RefreshToken.used_at.isnot(None)))
        orphans = db.session.scalar(text(
            "SELECT count(*) FROM refresh_tokens r LEFT JOIN refresh_tokens p "
            "ON p.id = r.parent_id WHERE r.parent_id IS NOT NULL AND p.id IS NULL"))
    assert counts == {"users": 20, "apple_identities": 20, "token_families": 100,
                      "refresh_tokens": 400, "audit_events": 300}
    assert used == 300 and orphans == 0

    record = str(tmp_path / "statements.pickle")
    with app.app_context():
        recorder.attach(db.engine, record, label="test")
        db.session.execute(text("SELECT * FROM audit_events WHERE ip = :ip"), {"ip": "192.0.2.1"})
        db.session.execute(select(RefreshToken).where(RefreshToken.token_hash == "x" * 64))
        db.session.rollback()
    findings = explain.analyse(recorder.read(record), url, min_rows=100)
    by_table = {("audit_events" in f.statement): f for f in findings}
    assert by_table[True].flagged and "audit_events" in by_table[True].seq_scans[0]
    assert not by_table[False].flagged
    assert "[SEQ SCAN]" in explain.render(findings)
