"""Real headless Chromium: the app on localhost, the Apple emulator on 127.0.0.1 (another site).

Apple's answer is then a true cross-site form_post, on which Chromium withholds SameSite=Lax
cookies — the situation decision D9 is about.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import User
from siwa_web.models import WebSession
from support.web import browser_sign_in

pytestmark = pytest.mark.browser


def test_sign_in_lands_on_dashboard_and_logout_ends_session(live_server, chromium, artifacts):
    live = live_server
    context = chromium.new_context()
    page = context.new_page()
    browser_sign_in(page, live)
    body = page.locator("main").inner_text()
    assert "Maria Ruiz" in body
    assert "Private relay" in body
    assert "Apple emulator" in page.content()
    page.screenshot(path=str(artifacts / "signin-dashboard.png"), full_page=True)

    cookies = {c["name"]: c for c in context.cookies(live.url)}
    session = cookies["siwa_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Lax"
    assert session["domain"] in ("localhost", "localhost.")  # host-only, no Domain attribute
    assert "siwa_tx" not in cookies  # the transaction cookie was cleared after the callback

    with live.app.app_context():
        [row] = db.session.execute(select(WebSession)).scalars().all()
        assert row.revoked_at is None and row.user_agent and "Chrome" in row.user_agent

    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(f"{live.url}/auth/login")
    with live.app.app_context():
        [row] = db.session.execute(select(WebSession)).scalars().all()
        assert row.revoked_at is not None

    # the old cookie, replayed in a fresh browser, no longer opens the dashboard
    replay = chromium.new_context()
    replay.add_cookies([{k: session[k] for k in ("name", "value", "domain", "path")}])
    other = replay.new_page()
    other.goto(f"{live.url}/dashboard")
    assert "/auth/login" in other.url
    replay.close()
    context.close()


def test_second_sign_in_gets_no_name_and_keeps_the_first(live_server, chromium):
    live = live_server
    context = chromium.new_context()
    page = context.new_page()
    browser_sign_in(page, live, hide_email=False)
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(f"{live.url}/auth/login")
    browser_sign_in(page, live, new_user=False)
    assert "Maria Ruiz" in page.locator("main").inner_text()
    with live.app.app_context():
        users = db.session.execute(select(User)).scalars().all()
        assert len(users) == 1 and users[0].email == "maria@example.com"
    context.close()


def test_cancel_at_apple_returns_to_login(live_server, chromium):
    live = live_server
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{live.url}/auth/login")
    page.get_by_role("link", name="Sign in with Apple").click()
    page.wait_for_url(f"{live.emulator_url}/**")
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(f"{live.url}/auth/login")
    assert "cancelled" in page.locator("main").inner_text()
    with live.app.app_context():
        assert db.session.execute(select(User)).scalars().all() == []
    context.close()


def test_apple_consent_revoked_notification_ends_the_session(live_server, chromium):
    """The emulator plays "Stop using Apple ID" and sends its signed notification to us."""
    import requests

    live = live_server
    context = chromium.new_context()
    page = context.new_page()
    browser_sign_in(page, live)
    users = requests.get(f"{live.emulator_url}/__emulator/users", timeout=5).json()["users"]
    [apple_user] = [u for u in users if u["email"] == "maria@example.com"]
    answer = requests.post(f"{live.emulator_url}/__emulator/users/{apple_user['id']}/revoke",
                           json={"notify": True}, timeout=10).json()
    assert answer["notification"]["status"] == 200, answer
    page.goto(f"{live.url}/dashboard")
    assert "/auth/login" in page.url
    with live.app.app_context():
        [row] = db.session.execute(select(WebSession)).scalars().all()
        assert row.revoked_reason == "apple consent revoked"
    context.close()
