"""Two web apps signing people in through siwa-web, in real headless Chromium.

siwa-web runs on http://localhost:<port>, the Apple emulator on http://127.0.0.1:<port>, and two
copies of docs/examples/webapp_flask.py — App A and App B, each a registered first-party client
with its own /signed-out page and /backchannel-logout receiver — on two ports of 127.0.0.2: three
sites. Back-channel logout is delivered as in production, from a background thread right after
the session ends, so the apps' pages are polled (with a bound) until they show it.

Screenshots land in test-artifacts/ (webapps-*.png).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import BackchannelLogout
from support.examples import FlaskExamples
from support.examples import RunningExample
from support.web import browser_sign_in

pytestmark = pytest.mark.browser

APPS_HOST = "127.0.0.2"  # a loopback address of its own: a third site
WAIT = 10  # seconds: the bound of every wait for a back-channel logout
IPHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")


@pytest.fixture
def two_apps(live_server, monkeypatch):
    examples = FlaskExamples(live_server, monkeypatch, APPS_HOST)
    yield examples.start(first_party=True, name="App A"), examples.start(first_party=True,
                                                                         name="App B")
    examples.stop()


def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def at(url: str) -> Callable[[str], bool]:
    """For wait_for_url: `url`, with or without the `#_` siwa-web adds to its redirects (a
    browser keeps a fragment across the app's own redirect after its callback)."""
    return lambda current: current.split("#")[0] == url


def body(page) -> str:
    return page.locator("body").inner_text()


def sign_in_with_apple(page, live, app: RunningExample, *, new_user: bool) -> None:
    """App's Sign in → siwa-web's sign-in page → the emulator (a new test user, sharing the
    email, or the existing one) → back to the app, signed in."""
    page.goto(app.url + "/")
    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(f"{live.url}/auth/login?")))
    page.get_by_role("link", name="Sign in with Apple").click()
    page.wait_for_url(f"{live.emulator_url}/**")
    if new_user:
        page.get_by_label("New test user").check()
        page.get_by_label("First name").fill("Ada")
        page.get_by_label("Last name").fill("Lovelace")
        page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name="Continue").click()  # an existing user is preselected
    if new_user:
        page.get_by_role("button", name="Continue").click()  # Share My Email
    page.wait_for_url(at(app.url + "/"))
    assert "Signed in as Ada Lovelace <ada@example.com>" in body(page)


def sign_in_by_single_sign_on(page, live, app: RunningExample, requests: list[str]) -> None:
    """App's Sign in → siwa-web → straight back: this browser is signed in to siwa-web."""
    mark = len(requests)
    page.goto(app.url + "/")
    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url(at(app.url + "/"))
    assert "Signed in as Ada Lovelace <ada@example.com>" in body(page)
    trip = requests[mark:]
    assert any(url.startswith(f"{live.url}/oauth/authorize?") for url in trip), trip
    assert not [url for url in trip if url.startswith(live.emulator_url)]  # Apple not asked
    assert not [url for url in trip if url.startswith(f"{live.url}/auth/login")]  # no page


def wait_signed_out(page, app: RunningExample) -> None:
    """Reload the app's home page until it says so (the delivery runs in the background)."""
    def signed_out() -> bool:
        page.goto(app.url + "/")
        return "Not signed in" in body(page)

    eventually(signed_out, f"{app.client['name']} shows signed out")


def accepted(app: RunningExample) -> list[bool]:
    return [ok for _, ok in app.logout_tokens]


def test_two_apps_single_sign_on_and_every_kind_of_logout(live_server, chromium, two_apps,
                                                          artifacts):
    live, (app_a, app_b) = live_server, two_apps
    laptop = chromium.new_context()
    laptop.set_default_timeout(WAIT * 1000)
    page = laptop.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    # 1. App A through siwa-web and Apple; App B by single sign-on: the same siwa-web session
    sign_in_with_apple(page, live, app_a, new_user=True)
    page.screenshot(path=str(artifacts / "webapps-a-signed-in.png"), full_page=True)
    sign_in_by_single_sign_on(page, live, app_b, requests)
    page.screenshot(path=str(artifacts / "webapps-b-single-sign-on.png"), full_page=True)
    [sid] = app_a.signed_in
    assert list(app_b.signed_in) == [sid]

    # 2. Sign out on siwa-web's dashboard: back-channel logout reaches both apps
    page.goto(f"{live.url}/dashboard")
    assert "Signed in to App A, App B" in page.locator("#web-sessions").inner_text()
    page.screenshot(path=str(artifacts / "webapps-dashboard.png"), full_page=True)
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(f"{live.url}/auth/login")
    wait_signed_out(page, app_a)
    wait_signed_out(page, app_b)
    page.screenshot(path=str(artifacts / "webapps-b-after-backchannel.png"), full_page=True)
    assert accepted(app_a) == accepted(app_b) == [True]

    # 3. Signed in again; another browser of the same person signs this one out
    sign_in_with_apple(page, live, app_a, new_user=False)
    sign_in_by_single_sign_on(page, live, app_b, requests)
    [sid] = app_a.signed_in
    phone = chromium.new_context(user_agent=IPHONE_UA)
    phone.set_default_timeout(WAIT * 1000)
    other = phone.new_page()
    browser_sign_in(other, live, new_user=False)
    laptop_row = other.locator("#web-sessions li", has_text="Signed in to App A, App B")
    other.screenshot(path=str(artifacts / "webapps-other-browser-dashboard.png"), full_page=True)
    laptop_row.get_by_role("button", name=re.compile(r"^Sign out")).click()
    other.wait_for_url(f"{live.url}/dashboard")
    assert "That session is signed out" in other.locator(".flashes").inner_text()
    wait_signed_out(page, app_a)
    wait_signed_out(page, app_b)
    assert accepted(app_a) == accepted(app_b) == [True, True]
    assert app_a.logout_tokens[-1][0] != app_b.logout_tokens[-1][0]  # one token per app
    page.goto(f"{live.url}/dashboard")
    assert page.url.startswith(f"{live.url}/auth/login")  # this browser's session is gone
    phone.close()

    # 4. Sign out in App A: its session, then siwa-web's, and back to App A
    sign_in_with_apple(page, live, app_a, new_user=False)
    sign_in_by_single_sign_on(page, live, app_b, requests)
    mark = len(requests)
    page.goto(app_a.url + "/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(re.escape(f"{app_a.url}/signed-out?state=")))
    assert "Signed out, here and at siwa-web" in body(page)
    page.screenshot(path=str(artifacts / "webapps-a-signed-out.png"), full_page=True)
    assert [url for url in requests[mark:] if url.startswith(f"{live.url}/oauth/logout?")]
    assert app_a.signed_in == {}
    page.goto(f"{live.url}/dashboard")
    assert page.url.startswith(f"{live.url}/auth/login")  # siwa-web's session is gone
    wait_signed_out(page, app_b)  # and App B was told
    eventually(lambda: len(app_a.logout_tokens) == 3, "App A's third logout token")
    assert accepted(app_a) == accepted(app_b) == [True, True, True]
    eventually(lambda: all_sent(live, 6), "six deliveries marked sent")  # none left for cron
    laptop.close()


def all_sent(live, count: int) -> bool:
    with live.app.app_context():
        rows = db.session.scalars(select(BackchannelLogout)).all()
        return len(rows) == count and all(row.sent_at is not None for row in rows)
