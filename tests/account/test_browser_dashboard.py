"""The dashboard in real headless Chromium, against the app and the Apple emulator (two sites).

Screenshots of every account page land in test-artifacts/ (desktop and phone sizes).
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import AppleRevocation
from siwa_web.models import User
from siwa_web.models import WebSession
from support.web import browser_sign_in

pytestmark = pytest.mark.browser

IPHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                   "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"),
}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}


def test_revoke_the_other_browser_from_the_dashboard(live_server, chromium, artifacts):
    live = live_server
    laptop = chromium.new_context(**DESKTOP)
    phone = chromium.new_context(**IPHONE)
    first, second = laptop.new_page(), phone.new_page()
    browser_sign_in(first, live, new_user=True)
    browser_sign_in(second, live, new_user=False)
    second.screenshot(path=str(artifacts / "dashboard-phone.png"), full_page=True)

    first.reload()
    sessions = first.locator("#web-sessions")
    assert "This browser" in sessions.inner_text()
    assert "Safari 17 on iPhone" in sessions.inner_text()
    first.screenshot(path=str(artifacts / "dashboard-two-sessions.png"), full_page=True)

    first.get_by_role("button", name=re.compile(r"^Sign out Safari 17 on iPhone")).click()
    first.wait_for_url(f"{live.url}/dashboard")
    assert "That session is signed out" in first.locator(".flashes").inner_text()
    assert "Safari 17 on iPhone" not in first.locator("#web-sessions").inner_text()
    assert "No other browser is signed in" in first.locator("#web-sessions").inner_text()
    first.screenshot(path=str(artifacts / "dashboard-after-revoke.png"), full_page=True)

    # the other browser is bounced to the sign-in page at its very next request
    second.reload()
    second.wait_for_url(re.compile(re.escape(f"{live.url}/auth/login")))
    assert "Your session has ended" in second.locator("main").inner_text()
    second.screenshot(path=str(artifacts / "dashboard-revoked-phone-login.png"), full_page=True)
    with live.app.app_context():
        revoked = db.session.scalars(select(WebSession).where(
            WebSession.revoked_at.is_not(None))).all()
        assert len(revoked) == 1 and "iPhone" in revoked[0].user_agent
    laptop.close()
    phone.close()


def test_account_pages_keyboard_and_screenshots(live_server, chromium, artifacts):
    live = live_server
    context = chromium.new_context(**DESKTOP)
    page = context.new_page()
    browser_sign_in(page, live, new_user=True)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
    # every button and link on the dashboard has an accessible name
    unnamed = page.evaluate("""() => [...document.querySelectorAll('main button, main a')]
        .filter(el => !(el.innerText || el.getAttribute('aria-label') || '').trim()).length""")
    assert unnamed == 0
    page.goto(f"{live.url}/dashboard/activity")
    page.screenshot(path=str(artifacts / "dashboard-activity.png"), full_page=True)
    page.goto(f"{live.url}/dashboard/delete")
    assert page.get_by_role("button", name="Delete my account").is_visible()
    page.screenshot(path=str(artifacts / "dashboard-delete.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.goto(f"{live.url}/dashboard")
    page.screenshot(path=str(artifacts / "dashboard-dark.png"), full_page=True)
    context.close()


def test_delete_account_in_the_browser_revokes_at_the_emulator(live_server, chromium, artifacts):
    live = live_server
    context = chromium.new_context(**DESKTOP)
    page = context.new_page()
    browser_sign_in(page, live, new_user=True)
    page.get_by_role("link", name="Delete account…").click()
    page.wait_for_url(f"{live.url}/dashboard/delete")
    page.get_by_role("button", name="Delete my account").click()  # the box is required
    assert page.url == f"{live.url}/dashboard/delete"
    page.get_by_label("I understand").check()
    page.get_by_role("button", name="Delete my account").click()
    page.wait_for_url(f"{live.url}/auth/login")
    assert "account and its data are deleted" in page.locator(".flashes").inner_text()
    page.screenshot(path=str(artifacts / "account-deleted.png"), full_page=True)
    with live.app.app_context():
        assert db.session.scalars(select(User)).all() == []
        [row] = db.session.scalars(select(AppleRevocation)).all()
        assert row.sent_at is not None  # the emulator's /auth/revoke answered 200
    page.goto(f"{live.url}/dashboard")
    assert "/auth/login" in page.url
    context.close()


@pytest.mark.parametrize("scheme, background, color", [
    ("light", "rgb(255, 255, 255)", "rgb(0, 0, 0)"),  # white with outline on a light card
    ("dark", "rgb(255, 255, 255)", "rgb(0, 0, 0)"),   # the white style on a dark card
])
def test_outline_apple_button_follows_the_colour_scheme(live_server, chromium, scheme,
                                                        background, color):
    """Apple's guidelines: black or outlined on light backgrounds, white on dark ones."""
    context = chromium.new_context(color_scheme=scheme)
    page = context.new_page()
    browser_sign_in(page, live_server)
    button = page.get_by_role("button", name="Continue with Apple")
    style = button.evaluate("b => { const s = getComputedStyle(b);"
                            " return [s.backgroundColor, s.color, s.borderTopColor]; }")
    card = button.evaluate("b => getComputedStyle(b.closest('.card')).backgroundColor")
    assert style[0] == background and style[1] == color
    if scheme == "dark":
        assert card != "rgb(255, 255, 255)"  # really a dark card: the button stands out on it
        assert style[2] == "rgb(255, 255, 255)"
    else:
        assert style[2] == "rgb(0, 0, 0)"  # the outline
    context.close()
