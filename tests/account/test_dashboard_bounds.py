"""The dashboard at production sizes: a user with 1,000 app sessions and 10,000 events.

It must answer from a fixed, small number of statements, each bounded: a LIMIT, or an
aggregate (COUNT, GROUP BY), or a primary-key lookup. Statements are counted with a SQLAlchemy
`before_cursor_execute` listener; the user's rows are made with set-based inserts (a recursive
CTE, on SQLite and PostgreSQL alike), not row by row. The test is about bounds and counts, not
the cards' wording.
"""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import text

from siwa_web.account.cards import SESSIONS_SHOWN
from siwa_web.infra.extensions import db
from siwa_web.models import User
from siwa_web.models.base import UTCDateTime
from siwa_web.models.base import now_utc
from support.config import recorded_statements
from support.dashboard import SUB_A
from support.dashboard import Browser
from support.dashboard import ensure_client
from support.dashboard import section

FAMILIES, EVENTS = 1000, 10_000
# 14 today (sign-in session, user, Apple IDs, cards, totals); a little room for a new card.
STATEMENT_CAP = 18
# Tables whose rows per user grow with use. Apple IDs, their Apple tokens (one per identity and
# Apple client id) and consents (one per web app) are bounded by the schema, not by use.
BIG_TABLES = ("token_families", "refresh_tokens", "audit_events", "web_sessions")
SERIES = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "


def _typed(sql: str, *names: str):
    """`sql` with its timestamp parameters typed, so aware UTC datetimes bind as elsewhere."""
    return text(sql).bindparams(*(bindparam(name, type_=UTCDateTime) for name in names))


def bulk_rows(app, user_id: str, client_id: str, families: int, events: int) -> None:
    """`families` live app sessions and `events` audit events for `user_id`, two statements."""
    now = now_utc()
    with app.app_context():
        db.session.execute(_typed(SERIES + """
            INSERT INTO token_families (id, user_id, client_id, scope, audience, created_at,
                                        last_used_at, expires_at, ip, user_agent)
            SELECT 'bulk-family-' || i, :user, :client, 'openid offline_access',
                   'https://api.example.com', :t, :t, :exp, '192.0.2.1', 'Acme/1.0 CFNetwork'
            FROM n""", "t", "exp"), {"count": families, "user": user_id, "client": client_id,
                         "t": now - timedelta(minutes=5), "exp": now + timedelta(days=30)})
        db.session.execute(_typed(SERIES + """
            INSERT INTO audit_events (created_at, user_id, event, outcome, client_id, ip,
                                      user_agent, details)
            SELECT :t, :user, 'refresh', 'success', :client, '192.0.2.1', 'Acme/1.0', '{}'
            FROM n""", "t"),
            {"count": events, "user": user_id, "client": client_id,
             "t": now - timedelta(minutes=1)})
        db.session.commit()


def unbounded(statement: str) -> bool:
    """A SELECT on a per-user table that could return rows in proportion to the data."""
    upper = statement.upper()
    if not upper.startswith(("SELECT", "WITH")):
        return False
    if not any(re.search(rf"\bFROM {t}\b|\bJOIN {t}\b", statement) for t in BIG_TABLES):
        return False
    if " LIMIT " in upper or "COUNT(" in upper or " GROUP BY " in upper:
        return False
    # a primary- or unique-key lookup (the signed-in session, the user): one row at most; or
    # rows by primary keys taken from a bounded query (as many as its LIMIT)
    return not re.search(r"WHERE \w+\.(id|token_hash) (= |IN \()", statement)


def dashboard_statements(browser: Browser, app) -> tuple[list[str], str]:
    with recorded_statements(app) as seen:
        html = browser.page("/dashboard")
    return seen, html


def test_dashboard_for_a_huge_account_uses_few_bounded_statements(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    client_id = ensure_client(app)
    with app.app_context():
        user_id = db.session.scalar(select(User.id))
    small, _ = dashboard_statements(me, app)

    bulk_rows(app, user_id, client_id, FAMILIES, EVENTS)
    big, html = dashboard_statements(me, app)

    assert len(big) <= STATEMENT_CAP, "\n".join(big)
    # The number of statements does not grow with the data (two more at most: the totals).
    assert len(big) <= len(small) + 2, "\n".join(big)
    assert [s for s in big if unbounded(s)] == [], "\n".join(s[-160:] for s in big if unbounded(s))
    apps = section(html, "app-sessions")
    assert 0 < apps.count("/dashboard/apps/") <= SESSIONS_SHOWN * 2  # a form per shown row
    assert str(FAMILIES - SESSIONS_SHOWN) in apps  # says how many more there are


def test_every_list_statement_has_a_limit_even_for_a_small_account(app, fake_apple):
    """The bounds do not depend on the data: the same statements carry LIMIT when empty."""
    me = Browser(app, fake_apple).sign_in(SUB_A)
    seen, _ = dashboard_statements(me, app)
    assert seen and [s for s in seen if unbounded(s)] == []


def test_delete_page_counts_every_app_session_not_only_those_shown(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    client_id = ensure_client(app)
    with app.app_context():
        user_id = db.session.scalar(select(User.id))
    bulk_rows(app, user_id, client_id, SESSIONS_SHOWN + 7, 0)
    me.reauth()
    html = me.page("/dashboard/delete")
    assert f"{SESSIONS_SHOWN + 7} app sessions" in html
