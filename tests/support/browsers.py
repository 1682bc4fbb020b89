"""Firefox ESR and WebKitGTK (Safari's engine) for the browser tests, from Debian's packages only.

Chromium is driven by Playwright (support/web.py). Playwright's Firefox and WebKit are its own
patched builds, which the suite never downloads, so the two other engines are driven by the
standard protocols they speak themselves:

* Firefox ESR speaks WebDriver BiDi natively (`--remote-debugging-port`); Debian has no
  geckodriver, so `BidiFirefox` is a small BiDi client over the `websockets` library. Each test
  gets its own user context (a fresh cookie jar) in one Firefox process per run.
* WebKitGTK is driven through `WebKitWebDriver` (Debian's webkit2gtk-driver, classic WebDriver)
  by Selenium, with the driver and MiniBrowser paths given, so Selenium Manager never looks for
  or downloads anything (SE_OFFLINE is set as well). WebKitGTK needs a display: an Xvfb per run.

Both hand a test a `RealPage` with the same few verbs: goto, click (a link or button by its
accessible text, with a real pointer click), fill and check (a control by its label, typed with
real key presses or clicked), text, url, cookies and the waits in between. A browser that cannot
be had is skipped with the reason, and fails the test in CI (CI=true).
"""
from __future__ import annotations

import glob
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from typing import Any

import pytest

FIREFOX = "/usr/bin/firefox-esr"
WEBKIT_DRIVER = "/usr/bin/WebKitWebDriver"
XVFB = "/usr/bin/Xvfb"
START_TIMEOUT = 60.0
WAIT_TIMEOUT = 20.0
INSTALL_HINT = "make browser-deps (apt-get install firefox-esr webkit2gtk-driver xvfb)"

# Finds one element by what a person reads, scrolls it into view and marks the document, so
# that a wait can tell when a new document has replaced it. kind: "action" (a link or button by
# its text content: the accessible name of siwa-web's buttons) or "label" (the control a
# <label> names, by for= or by wrapping it).
FIND = """(kind, wanted, prefix) => {
  const norm = (s) => (s || "").replace(/\\s+/g, " ").trim().toLowerCase();
  const want = norm(wanted);
  const fits = (s) => prefix ? norm(s).startsWith(want) : norm(s) === want;
  let found;
  if (kind === "label") {
    found = [...document.querySelectorAll("label")].filter((l) => fits(l.textContent))
      .map((l) => l.control).filter(Boolean);
  } else {
    found = [...document.querySelectorAll("a[href], button, input[type=submit]")]
      .filter((e) => fits(e.tagName === "INPUT" ? e.value : e.textContent));
  }
  if (found.length !== 1) {
    throw new Error(found.length + " elements " + kind + " '" + wanted + "' on " + location.href);
  }
  found[0].scrollIntoView({block: "center"});
  window.__siwaOldDocument = true;
  return found[0];
}"""
NEW_DOCUMENT = ("typeof window.__siwaOldDocument === 'undefined' "
                "&& document.readyState === 'complete'")


def unavailable(what: str) -> None:
    """Skip with the reason; in CI, where the browsers must be installed, fail instead."""
    message = f"{what} is missing and could not be installed ({INSTALL_HINT})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs every browser: {message}")
    pytest.skip(message)


def _wait(check, what: str, timeout: float = WAIT_TIMEOUT) -> Any:
    """Poll `check()` until it returns something true; a failing check counts as not yet."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - a page in mid-navigation answers with errors
            last, result = exc, None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last
                                                           else ""))


class RealPage:
    """What the tests do in a real browser; the engine-specific part is in the subclasses."""

    engine = ""

    # --- engine-specific ---

    def goto(self, url: str) -> None:
        raise NotImplementedError

    def evaluate(self, expression: str) -> Any:
        raise NotImplementedError

    def _find(self, kind: str, text: str, prefix: bool) -> Any:
        raise NotImplementedError

    def _click(self, element: Any) -> None:
        raise NotImplementedError

    def _type(self, element: Any, value: str) -> None:
        raise NotImplementedError

    def cookies(self) -> list[dict[str, Any]]:
        """The cookies of the current page's host: name, value, domain, httpOnly, sameSite."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # --- the same for every engine ---

    @property
    def url(self) -> str:
        return self.evaluate("location.href")

    def find(self, kind: str, text: str, prefix: bool) -> Any:
        try:
            return self._find(kind, text, prefix)
        except Exception as exc:  # noqa: BLE001 - re-raised with where the page was
            raise AssertionError(f"{exc}; the {self.engine} page is at {self._where()}") from None

    def click(self, text: str, *, prefix: bool = False, navigates: bool = True) -> None:
        """Click the link or button reading `text` (or starting with it); by default wait for
        the document it loads."""
        self._click(self.find("action", text, prefix))
        if navigates:
            _wait(lambda: self.evaluate(NEW_DOCUMENT), f"a new page after clicking {text!r}")

    def fill(self, label: str, value: str) -> RealPage:
        """Type `value` into the field labelled `label`; what it holds afterwards is checked."""
        element = self.find("label", label, False)
        self._type(element, value)
        _wait(lambda: self.evaluate_on(element, "(e) => e.value") == value,
              f"{label!r} to hold {value!r}", timeout=5)
        return self

    def check(self, label: str) -> RealPage:
        """Click the checkbox or radio button labelled `label` (its label's text starting so)
        unless it is checked; that it is checked afterwards is checked."""
        element = self.find("label", label, True)
        if not self.evaluate_on(element, "(e) => e.checked"):
            self._click(element)
        _wait(lambda: self.evaluate_on(element, "(e) => e.checked"), f"{label!r} checked",
              timeout=5)
        return self

    def evaluate_on(self, element: Any, function: str) -> Any:
        raise NotImplementedError

    def text(self, selector: str = "main") -> str:
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")

    def wait_for_url(self, prefix: str, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until a page whose address starts with `prefix` has loaded."""
        try:
            _wait(lambda: self.evaluate("location.href").startswith(prefix)
                  and self.evaluate("document.readyState") == "complete",
                  f"a page at {prefix}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the {self.engine} page is at {self._where()}") from None

    def _where(self) -> str:
        try:
            return f"{self.url}: {self.text('body')[:500]!r}"
        except Exception as exc:  # noqa: BLE001 - only for the failure message
            return f"(unknown: {exc})"


# --- Firefox over WebDriver BiDi ----------------------------------------------------------------


class BidiError(RuntimeError):
    pass


class BidiFirefox:
    """One headless Firefox ESR process and its BiDi session."""

    def __init__(self) -> None:
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="siwa-firefox-")
        self.process = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--remote-debugging-port=0",
             "--profile", self.profile],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = self._listening_url()
        self._stack = ExitStack()
        self.ws = self._stack.enter_context(
            connect(url.rstrip("/") + "/session", max_size=None, open_timeout=30))
        self._ids = itertools.count(1)
        self.capabilities = self.send("session.new", {"capabilities": {
            "acceptInsecureCerts": False, "unhandledPromptBehavior": {"default": "dismiss"}}}
        )["capabilities"]

    def _listening_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        seen = []
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(r"WebDriver BiDi listening on (ws://\S+)", line)
            if match:
                return match.group(1)
        self.quit()
        raise AssertionError("Firefox did not start WebDriver BiDi: " + "".join(seen)[-2000:])

    def send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One command; events arriving meanwhile are dropped (the tests poll instead)."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=WAIT_TIMEOUT))
            if message.get("id") != ident:
                continue
            if message.get("type") == "error":
                raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")
            return message["result"]

    def new_page(self) -> FirefoxPage:
        """A tab in a fresh user context: its own cookies and storage, as a new profile."""
        user_context = self.send("browser.createUserContext", {})["userContext"]
        context = self.send("browsingContext.create",
                            {"type": "tab", "userContext": user_context})["context"]
        return FirefoxPage(self, context, user_context)

    def quit(self) -> None:
        try:
            if hasattr(self, "ws"):
                try:
                    self.send("browser.close", {})
                except Exception:  # noqa: BLE001 - closing kills the connection that answers
                    pass
                self._stack.close()
        finally:
            if self.process.poll() is None:
                self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            shutil.rmtree(self.profile, ignore_errors=True)


class FirefoxPage(RealPage):
    engine = "firefox"

    def __init__(self, browser: BidiFirefox, context: str, user_context: str) -> None:
        self.browser = browser
        self.context = context
        self.user_context = user_context

    def goto(self, url: str) -> None:
        self.browser.send("browsingContext.navigate",
                          {"context": self.context, "url": url, "wait": "complete"})

    def _call(self, function: str, *args: Any) -> dict[str, Any]:
        result = self.browser.send("script.callFunction", {
            "functionDeclaration": function, "awaitPromise": False,
            "target": {"context": self.context},
            "arguments": [a if isinstance(a, dict) else _bidi_value(a) for a in args]})
        if result["type"] == "exception":
            raise BidiError(result["exceptionDetails"]["text"])
        return result["result"]

    def evaluate(self, expression: str) -> Any:
        return _plain(self._call(f"() => ({expression})"))

    def evaluate_on(self, element: Any, function: str) -> Any:
        return _plain(self._call(function, element))

    def _find(self, kind: str, text: str, prefix: bool) -> dict[str, Any]:
        node = self._call(FIND, kind, text, prefix)
        return {"sharedId": node["sharedId"]}

    def _click(self, element: dict[str, Any]) -> None:
        self.browser.send("input.performActions", {"context": self.context, "actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "x": 0, "y": 0,
                 "origin": {"type": "element", "element": element}},
                {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})

    def _type(self, element: dict[str, Any], value: str) -> None:
        self._call("(e) => { e.value = ''; e.focus(); }", element)
        _wait(lambda: self._call("(e) => document.activeElement === e", element)["value"],
              "the field to have the focus", timeout=5)
        keys = []
        for char in value:
            keys += [{"type": "keyDown", "value": char}, {"type": "keyUp", "value": char}]
        self.browser.send("input.performActions", {"context": self.context, "actions": [
            {"type": "key", "id": "keyboard", "actions": keys}]})

    def cookies(self) -> list[dict[str, Any]]:
        host = self.evaluate("location.hostname")
        found = self.browser.send("storage.getCookies", {
            "partition": {"type": "storageKey", "userContext": self.user_context}})["cookies"]
        return [{"name": c["name"], "value": c["value"]["value"], "domain": c["domain"],
                 "httpOnly": c["httpOnly"], "sameSite": c["sameSite"].capitalize(),
                 "secure": c["secure"]}
                for c in found if c["domain"].lstrip(".") == host]

    def close(self) -> None:
        self.browser.send("browsingContext.close", {"context": self.context})
        self.browser.send("browser.removeUserContext", {"userContext": self.user_context})


def _bidi_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, str):
        return {"type": "string", "value": value}
    raise TypeError(value)


def _plain(remote: dict[str, Any]) -> Any:
    """A BiDi remote value as Python (primitives are all the tests read)."""
    kind = remote["type"]
    if kind in ("undefined", "null"):
        return None
    if kind in ("string", "boolean", "number"):
        return remote["value"]
    return remote


# --- WebKitGTK over classic WebDriver -----------------------------------------------------------


def mini_browser() -> str | None:
    """WebKitGTK's MiniBrowser, which WebKitWebDriver automates (its path has the arch in it)."""
    found = sorted(glob.glob("/usr/lib/*/webkit2gtk-4.*/MiniBrowser"))
    return found[-1] if found else None


@contextmanager
def xvfb() -> Iterator[str]:
    """A private X display for WebKitGTK (it has no headless mode); yields its DISPLAY."""
    process = subprocess.Popen([XVFB, "-displayfd", "1", "-screen", "0", "1280x1024x24",
                                "-nolisten", "tcp"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        number = process.stdout.readline().strip()
        if not number:
            raise AssertionError("Xvfb did not start")
        yield f":{number}"
    finally:
        process.terminate()
        process.wait(10)


class WebKitPage(RealPage):
    engine = "webkit"

    def __init__(self, display: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.webkitgtk.options import Options
        from selenium.webdriver.webkitgtk.service import Service

        options = Options()
        options.binary_location = mini_browser()
        options.add_argument("--automation")
        options.accept_insecure_certs = True  # only ever the run's own localhost certificate
        service = Service(executable_path=WEBKIT_DRIVER,
                          env={**os.environ, "DISPLAY": display, "SE_OFFLINE": "true"})
        with warnings.catch_warnings():
            # Selenium's own WebKitGTK driver still builds its connection the deprecated way
            warnings.filterwarnings("ignore", "setting remote_server_addr", DeprecationWarning)
            self.driver = webdriver.WebKitGTK(options=options, service=service)
        self.driver.set_page_load_timeout(WAIT_TIMEOUT)

    def goto(self, url: str) -> None:
        self.driver.get(url)

    def evaluate(self, expression: str) -> Any:
        return self.driver.execute_script(f"return ({expression});")

    def evaluate_on(self, element: Any, function: str) -> Any:
        return self.driver.execute_script(f"return ({function})(arguments[0]);", element)

    def _find(self, kind: str, text: str, prefix: bool) -> Any:
        return self.driver.execute_script(f"return ({FIND})(...arguments);", kind, text, prefix)

    def _click(self, element: Any) -> None:
        element.click()

    def _type(self, element: Any, value: str) -> None:
        element.clear()
        element.send_keys(value)

    def cookies(self) -> list[dict[str, Any]]:
        return [{"name": c["name"], "value": c["value"], "domain": c.get("domain", ""),
                 "httpOnly": c.get("httpOnly", False), "sameSite": c.get("sameSite", ""),
                 "secure": c.get("secure", False)} for c in self.driver.get_cookies()]

    def close(self) -> None:
        self.driver.quit()


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def firefox() -> Iterator[BidiFirefox]:
    """One headless Firefox ESR for the run; skipped (failing in CI) where it is missing."""
    if not os.path.exists(FIREFOX):
        unavailable(FIREFOX)
    browser = BidiFirefox()
    yield browser
    browser.quit()


@pytest.fixture(scope="session")
def webkit_display() -> Iterator[str]:
    """The X display WebKitGTK runs on; skipped (failing in CI) where a piece is missing."""
    for path in (WEBKIT_DRIVER, XVFB):
        if not os.path.exists(path):
            unavailable(path)
    if mini_browser() is None:
        unavailable("WebKitGTK's MiniBrowser")
    with xvfb() as display:
        yield display


@pytest.fixture(params=["firefox", "webkit"])
def real_page(request) -> Iterator[RealPage]:
    """A fresh profile in Firefox ESR, then in WebKitGTK: each test runs in both."""
    if request.param == "firefox":
        page: RealPage = request.getfixturevalue("firefox").new_page()
    else:
        page = WebKitPage(request.getfixturevalue("webkit_display"))
    yield page
    page.close()


@pytest.fixture
def real_live(real_page, app_config, request):
    """The app and the emulator (support/web.py) as `real_page`'s engine can use them.

    WebKit, like Safari, stores no `Secure` cookie that plain http sets, not even on
    localhost (Chromium and Firefox treat localhost as a secure context), so without https it
    drops the `SameSite=None; Secure` transaction cookie and Apple's form_post comes back
    without it. WebKit therefore gets the app over https with a certificate made for the run,
    as in production; Firefox keeps plain http, as `make run` serves it.
    """
    from support.web import serve_live

    tls = request.getfixturevalue("localhost_tls") if real_page.engine == "webkit" else None
    with serve_live(app_config, tls) as live:
        yield live


def real_sign_in(page: RealPage, live, *, first: str = "Maria", last: str = "Ruiz",
                 email: str = "maria@example.com", hide_email: bool = True) -> None:
    """Our login page → the emulator's new-user and consent pages → back on the dashboard."""
    page.goto(f"{live.url}/auth/login")
    page.click("Sign in with Apple")
    page.wait_for_url(live.emulator_url)
    page.check("New test user").fill("First name", first).fill("Last name", last).fill(
        "Email", email)
    page.click("Continue")
    page.check("Hide My Email" if hide_email else "Share My Email")
    page.click("Continue", navigates=False)  # then Apple's page posts itself to us
    page.wait_for_url(f"{live.url}/dashboard")
