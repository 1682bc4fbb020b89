"""The dashboard's "Sign out" of another browser, done in real Firefox ESR and WebKitGTK.

The browser signed in elsewhere is a phone made of `requests` (support/browser_http.py) with
Safari's user agent; the revoke is clicked in the real engine (support/browsers.py), once per
engine. Chromium does the same in tests/account/test_browser_dashboard.py.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import WebSession
from support.browser_http import HttpBrowser
from support.browser_http import sign_in_with_apple
from support.browsers import real_sign_in
from support.dashboard import SAFARI_IPHONE

pytestmark = pytest.mark.browser


def test_revoke_the_other_browser_from_the_dashboard(real_live, real_page, request):
    live, page = real_live, real_page
    real_sign_in(page, live)
    phone = HttpBrowser(user_agent=SAFARI_IPHONE)
    if live.url.startswith("https://"):
        phone.session.verify = request.getfixturevalue("localhost_tls")[0]
    landed = sign_in_with_apple(phone, phone.goto(f"{live.url}/auth/login"), first_name="Maria",
                                last_name="Ruiz", email="maria@example.com", new_user=False)
    assert landed.url == f"{live.url}/dashboard", (landed.url, landed.text[:300])

    page.goto(f"{live.url}/dashboard")
    sessions = page.text("#web-sessions")
    assert "This browser" in sessions and "Safari 17 on iPhone" in sessions
    page.click("Sign out Safari 17 on iPhone", prefix=True)
    page.wait_for_url(f"{live.url}/dashboard")
    assert "That session is signed out" in page.text(".flashes")
    assert "Safari 17 on iPhone" not in page.text("#web-sessions")
    assert "No other browser is signed in" in page.text("#web-sessions")

    # the phone is bounced to the sign-in page at its very next request
    bounced = phone.goto(f"{live.url}/dashboard")
    assert bounced.url.startswith(f"{live.url}/auth/login"), bounced.url
    assert "Your session has ended" in bounced.text
    with live.app.app_context():
        rows = db.session.scalars(select(WebSession)).all()
        revoked = [row for row in rows if row.revoked_at is not None]
        assert len(rows) == 2 and len(revoked) == 1 and "iPhone" in revoked[0].user_agent
    page.goto(f"{live.url}/dashboard")  # the real browser is still signed in
    assert page.url == f"{live.url}/dashboard"
