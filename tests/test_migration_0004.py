"""Migration 0004 on a database that already holds Apple tokens: each becomes due at once, the
oldest first, and the downgrade gives the old schema back."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from flask_migrate import downgrade
from flask_migrate import upgrade
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import text

from siwa_web import create_app
from siwa_web.infra.extensions import db
from support.config import DB_BACKENDS
from support.config import PG_SERVER_URL


@pytest.fixture(params=DB_BACKENDS)
def empty_url(request, tmp_path):
    """An empty database of each kind, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.sqlite'}"
        return
    name = f"siwa_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_SERVER_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_existing_tokens_are_due_from_their_creation(empty_url):
    app = create_app({"TESTING": True, "SECRET_KEY": "m", "SQLALCHEMY_DATABASE_URI": empty_url})
    created = [datetime(2026, 1, 2, 3, 4, 5), datetime(2025, 6, 7, 8, 9, 10)]
    with app.app_context():
        upgrade(revision="0003")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, email_verified, is_private_email, "
                              "email_deliverable, created_at) VALUES ('u', false, false, true, "
                              ":t)"), {"t": created[0]})
            conn.execute(text("INSERT INTO apple_identities (id, user_id, sub, issuer, "
                              "email_verified, is_private_email, created_at, last_used_at) "
                              "VALUES ('i', 'u', 's', 'x', false, false, :t, :t)"),
                         {"t": created[0]})
            for n, moment in enumerate(created):
                conn.execute(text("INSERT INTO apple_tokens (id, identity_id, client_id, "
                                  "refresh_token_encrypted, created_at, last_used_at) VALUES "
                                  "(:id, 'i', :c, 'sealed', :t, :t)"),
                             {"id": f"t{n}", "c": f"client{n}", "t": moment})
        upgrade()
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, next_check_at, checked_at, check_state FROM "
                                     "apple_tokens ORDER BY next_check_at")).all()
        assert [r.id for r in rows] == ["t1", "t0"]  # oldest first
        for row, moment in zip(rows, reversed(created), strict=True):
            value = row.next_check_at
            if isinstance(value, str):  # SQLite hands back text
                value = datetime.fromisoformat(value)
            assert value == moment and row.checked_at is None and row.check_state is None
        indexes = {i["name"] for i in inspect(db.engine).get_indexes("apple_tokens")}
        assert "ix_apple_tokens_next_check_at" in indexes
        downgrade(revision="0003")
        columns = {c["name"] for c in inspect(db.engine).get_columns("apple_tokens")}
        assert "next_check_at" not in columns and "checked_at" not in columns
        db.engine.dispose()
