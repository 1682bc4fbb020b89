"""A browser that starts too many sign-ins gets a page that says how long to wait."""
from __future__ import annotations

from siwa_web.models import LoginTransaction
from support.config import count_rows


def test_the_sign_in_limit_answers_a_page_with_retry_after(app_config):
    from siwa_web import create_app

    app = create_app({**app_config, "RATELIMIT_LOGIN_PER_IP": "2/minute"})
    client = app.test_client()
    for _ in range(2):
        assert client.get("/auth/apple/login").status_code == 303
    before = count_rows(app)
    resp = client.get("/auth/apple/login")
    assert resp.status_code == 429
    assert 0 < int(resp.headers["Retry-After"]) <= 61  # the rest of the one-minute window
    assert resp.headers["Cache-Control"] == "no-store"
    html = resp.get_data(as_text=True)
    assert "Too many attempts" in html and "Wait about " in html and " seconds" in html
    assert f"Reference: <code>{resp.headers['X-Request-ID']}</code>" in html
    after = count_rows(app)
    assert after == before and after[LoginTransaction.__tablename__] == 2
