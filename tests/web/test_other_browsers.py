"""The web sign-in through the Apple emulator in real Firefox ESR and WebKitGTK (Safari's engine).

The same two sites as the Chromium tests (tests/web/test_browser.py): the app on localhost, the
emulator on 127.0.0.1, so Apple's answer is a true cross-site form_post in each engine, which
must not withhold the cookies the callback needs (decision D9). Each test runs once per engine
(support/browsers.py), and fails in CI when an engine is missing.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import User
from siwa_web.models import WebSession
from support.browsers import real_sign_in

pytestmark = pytest.mark.browser

ENGINE_IN_USER_AGENT = {"firefox": "Firefox/", "webkit": "AppleWebKit/"}


def test_sign_in_lands_on_dashboard_and_sign_out_ends_session(real_live, real_page):
    live, page = real_live, real_page
    real_sign_in(page, live)
    body = page.text("main")
    assert "Maria Ruiz" in body and "Private relay" in body

    cookies = {c["name"]: c for c in page.cookies()}
    session = cookies[live.app.config["SESSION_COOKIE_NAME"]]
    assert session["httpOnly"] is True and session["sameSite"] == "Lax"
    assert session["domain"] in ("localhost", "localhost.")  # host-only, no Domain attribute
    assert not [name for name in cookies if "siwa-tx" in name or "siwa_tx" in name]
    with live.app.app_context():
        [row] = db.session.execute(select(WebSession)).scalars().all()
        assert row.revoked_at is None
        assert ENGINE_IN_USER_AGENT[page.engine] in row.user_agent
        assert "Chrome" not in row.user_agent

    page.click("Sign out")
    page.wait_for_url(f"{live.url}/auth/login")
    with live.app.app_context():
        [row] = db.session.execute(select(WebSession)).scalars().all()
        assert row.revoked_at is not None
    page.goto(f"{live.url}/dashboard")
    assert page.url.startswith(f"{live.url}/auth/login")


def test_cancel_at_apple_returns_to_login(real_live, real_page):
    live, page = real_live, real_page
    page.goto(f"{live.url}/auth/login")
    page.click("Sign in with Apple")
    page.wait_for_url(live.emulator_url)
    page.click("Cancel", navigates=False)
    page.wait_for_url(f"{live.url}/auth/login")
    assert "cancelled" in page.text("main")
    with live.app.app_context():
        assert db.session.execute(select(User)).scalars().all() == []
