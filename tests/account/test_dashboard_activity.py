"""Token renewals are summed up in the activity, one line per app session and day."""
from __future__ import annotations

import html as html_text
from datetime import timedelta

from siwa_web.infra.extensions import db
from siwa_web.models import AuditEvent
from siwa_web.models import User
from siwa_web.models.base import now_utc
from support.config import recorded_statements
from support.dashboard import SUB_A
from support.dashboard import Browser
from support.dashboard import app_sign_in
from support.dashboard import one
from support.dashboard import refresh
from support.dashboard import section


def _activity(html: str) -> list[str]:
    """The titles of the activity lines on a page, in order."""
    timeline = html.split('<ol class="timeline">', 1)[1].split("</ol>", 1)[0]
    return [html_text.unescape(part.split("</p>", 1)[0].split("<span", 1)[0].strip())
            for part in timeline.split('<p class="row-title">')[1:]]


def _seed(app, user_id: str, rows: list[tuple[str, str, str | None, timedelta, dict]]) -> None:
    """Add audit rows (event, outcome, client_id, age before yesterday noon UTC, details)."""
    noon = now_utc().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with app.app_context():
        for name, outcome, client_id, age, details in rows:
            db.session.add(AuditEvent(user_id=user_id, event=name, outcome=outcome,
                                      client_id=client_id, created_at=noon - age,
                                      details=details))
        db.session.commit()


def test_real_renewals_make_one_line_that_counts_them(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    tokens = app_sign_in(app, fake_apple, SUB_A)
    for _ in range(3):
        resp = refresh(app, tokens)
        assert resp.status_code == 200
        tokens = {**resp.get_json(), "client_id": tokens["client_id"]}
    lines = _activity(section(me.page(), "activity"))
    assert lines[0] == "Kept signed in on Acme for iPhone — 3 renewals"
    assert "Signed in to an app" in lines and "Signed in on the web" in lines
    assert "An app renewed its sign-in" not in lines
    page = me.page("/dashboard/activity")
    assert "(3 events)" in page  # web sign-in, app sign-in, the renewals' line
    assert "last <time" in page


def test_renewals_are_split_by_app_session_and_day_and_refusals_stay(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    user_id = one(app, User).id
    hour, day, minute = timedelta(hours=1), timedelta(days=1), timedelta(minutes=1)
    rows = [("refresh", "success", "cli-a", i * minute, {"family_id": "fam-1"})
            for i in range(40)]
    rows += [("refresh", "success", "cli-a", day + i * minute, {"family_id": "fam-1"})
             for i in range(7)]
    rows += [("refresh", "success", "cli-a", hour + i * minute, {"family_id": "fam-2"})
             for i in range(5)]
    rows += [("refresh", "failure", "cli-a", 2 * hour, {"family_id": "fam-1"}),
             ("family_revoked", "success", "cli-a", 3 * hour, {"family_id": "fam-3"})]
    _seed(app, user_id, rows)
    page = me.page("/dashboard/activity")
    lines = _activity(page)
    # the web sign-in (now), then each summary at its last renewal, the refusal, the sign-out
    assert lines == [
        "Signed in on the web",
        "Kept signed in on cli-a — 40 renewals",
        "Kept signed in on cli-a — 5 renewals",
        "An app renewed its sign-in",
        "Signed out an app session",
        "Kept signed in on cli-a — 7 renewals",
    ]
    assert "(6 events)" in page
    assert 'class="failed"' in page  # the refused renewal is marked as such


def test_the_activity_costs_the_same_statements_for_5_or_500_renewals(app, fake_apple):
    me = Browser(app, fake_apple).sign_in(SUB_A)
    user_id = one(app, User).id

    def statements(path: str) -> int:
        with recorded_statements(app) as seen:
            me.page(path)
        return len(seen)

    def renewals(n: int, family: str) -> None:
        _seed(app, user_id, [("refresh", "success", "cli-a", timedelta(minutes=i + 1),
                              {"family_id": family}) for i in range(n)])

    renewals(5, "fam-1")
    few = {path: statements(path) for path in ("/dashboard", "/dashboard/activity")}
    renewals(495, "fam-2")
    many = {path: statements(path) for path in ("/dashboard", "/dashboard/activity")}
    assert many == few
    lines = _activity(me.page("/dashboard/activity"))
    assert "Kept signed in on cli-a — 495 renewals" in lines
    assert "Kept signed in on cli-a — 5 renewals" in lines
