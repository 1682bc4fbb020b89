"""A browser made of `requests`: for end-to-end flows across several live servers, no Chromium.

`HttpBrowser` navigates as a browser without JavaScript does: it follows redirects itself
(301/302/303 become GET, 307/308 keep the method and body), fills and submits HTML forms by
their labels, clicks links by their text, and submits the form of an auto-submitting page
(one that loads `autosubmit.js`, as siwa-web's and the emulator's `form_post` pages do — what
the script would do, and what a person without JavaScript does by pressing its one button).
Every request is recorded in `visits`, so a test can say which servers a flow went through.
Requests carry what a browser's navigations carry for servers that check where a request
came from: `Sec-Fetch-Site` (none, same-origin, same-site or cross-site, the least related hop
of a redirect chain counting), `Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`, and on
a POST an `Origin` ("null" when the page was served with `Referrer-Policy: no-referrer`). No
`Referer` is ever sent.

Cookies behave as in a current browser on loopback addresses, not as `requests` alone would
have them:

* `Secure` cookies are kept and sent over plain http to loopback hosts (localhost, 127.0.0.1,
  ::1), which browsers treat as secure contexts; elsewhere they need https.
* `SameSite` is enforced for the request a page starts (a form submission or a link): a
  cross-site POST carries only `SameSite=None` cookies, and `Strict` cookies stay home on any
  cross-site navigation. A cookie without the attribute counts as `Lax`. The site is scheme +
  host (ports do not count, as in browsers; no public-suffix list, which loopback hosts do
  not need). An address typed in (`goto`) is not cross-site. Redirects keep the site of the
  navigation that started them.

`sign_in_with_apple` and `answer_consent` drive siwa-web's and the Apple emulator's pages.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urljoin
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import requests
from requests.cookies import RequestsCookieJar
from requests.cookies import extract_cookies_to_jar
from requests.cookies import get_cookie_header

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Elements that end a run of text (their text never runs into the next element's).
BLOCKS = frozenset({"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
                    "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
                    "header", "hr", "legend", "li", "main", "nav", "ol", "p", "pre", "section",
                    "table", "td", "th", "tr", "ul"})
MAX_REDIRECTS = 20
MAX_AUTOSUBMITS = 5


FETCH_SITES = ("none", "same-origin", "same-site", "cross-site")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def site_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower()


def without_fragment(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(fragment=""))


def _relation(source: str, target: str) -> str:
    if origin_of(source) == origin_of(target):
        return "same-origin"
    return "same-site" if site_of(source) == site_of(target) else "cross-site"


def _navigation_headers(method: str, fetch_site: str, source: Page | None) -> dict[str, str]:
    """Fetch Metadata of a top-level navigation, and `Origin` on a POST: the source page's
    origin, or "null" when that page was served with `Referrer-Policy: no-referrer`."""
    headers = {"Sec-Fetch-Site": fetch_site, "Sec-Fetch-Mode": "navigate",
               "Sec-Fetch-Dest": "document"}
    if method == "POST" and source is not None:
        policy = source.response.headers.get("Referrer-Policy", "") if source.response else ""
        last = policy.split(",")[-1].strip().lower()  # of several values, the last one counts
        headers["Origin"] = "null" if last == "no-referrer" else origin_of(source.url)
    return headers


# --- cookies -------------------------------------------------------------------------------------


class BrowserCookiePolicy(DefaultCookiePolicy):
    """The standard policy, plus loopback secure contexts and `SameSite` (see the module doc).

    The browser sets `initiator` (the site that started the navigation, None if typed in) and
    `method` before each request.
    """

    def __init__(self) -> None:
        super().__init__()
        self.initiator: tuple[str, str] | None = None
        self.method = "GET"

    def return_ok_secure(self, cookie, request) -> bool:
        if cookie.secure and request.type == "http" and \
                (urlsplit(request.get_full_url()).hostname or "") in LOOPBACK_HOSTS:
            return True
        return super().return_ok_secure(cookie, request)

    def return_ok(self, cookie, request) -> bool:
        if not super().return_ok(cookie, request):
            return False
        if self.initiator is None or self.initiator == site_of(request.get_full_url()):
            return True
        same_site = _same_site(cookie)
        if same_site == "none":
            return True
        if same_site == "strict":
            return False
        return self.method in ("GET", "HEAD")  # Lax: top-level navigations only


class _NoCookies(DefaultCookiePolicy):
    """For the `requests` session's own jar: keeps nothing, sends nothing."""

    def set_ok(self, cookie, request) -> bool:
        return False

    def return_ok(self, cookie, request) -> bool:
        return False


def _same_site(cookie) -> str:
    for name, value in getattr(cookie, "_rest", {}).items():
        if name.lower() == "samesite" and isinstance(value, str):
            return value.lower()
    return "lax"


# --- pages ---------------------------------------------------------------------------------------


@dataclass
class Control:
    """One form control: an input, a button, a select or a textarea."""

    tag: str
    type: str
    name: str | None
    value: str
    id: str | None
    checked: bool = False
    label: str = ""  # the text of the <label> naming it, or of the button itself


@dataclass
class Form:
    """A form as parsed; `fill` and `check` change it, `HttpBrowser.submit` sends it."""

    page: Page
    action: str
    method: str
    id: str | None
    controls: list[Control] = field(default_factory=list)

    @property
    def fields(self) -> dict[str, str]:
        """What the form would send without a button: named, non-button, checked controls."""
        values: dict[str, str] = {}
        for control in self.controls:
            if control.name is None or control.tag == "button" or control.type in (
                    "submit", "button", "reset", "image"):
                continue
            if control.type in ("radio", "checkbox") and not control.checked:
                continue
            values[control.name] = control.value
        return values

    def control(self, label: str) -> Control:
        """The control whose label is `label`, else the only one whose label starts with it,
        else the one named `label`."""
        text = _normalise(label)
        for matches in (
            [c for c in self.controls if _normalise(c.label) == text],
            [c for c in self.controls if _normalise(c.label).startswith(text)],
            [c for c in self.controls if c.name == label],
        ):
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise LookupError(f"{label!r} names {len(matches)} controls")
        labels = [c.label or c.name for c in self.controls]
        raise LookupError(f"no control {label!r} in the form; there are {labels}")

    def fill(self, label: str, value: str) -> Form:
        self.control(label).value = value
        return self

    def check(self, label: str) -> Form:
        """Check a checkbox, or choose a radio button (unchecking the others of its group)."""
        control = self.control(label)
        if control.type == "radio":
            for other in self.controls:
                if other.type == "radio" and other.name == control.name:
                    other.checked = False
        control.checked = True
        return self

    def button(self, label: str | None) -> Control | None:
        buttons = [c for c in self.controls
                   if c.tag == "button" or c.type in ("submit", "image")]
        if label is None:
            return buttons[0] if buttons else None
        for button in buttons:
            if _normalise(button.label) == _normalise(label):
                return button
        raise LookupError(f"no button {label!r}; there are {[b.label for b in buttons]}")


@dataclass
class Link:
    href: str
    text: str


@dataclass
class Page:
    """Where a navigation ended: the response, or — for an intercepted URL — only its address."""

    url: str
    status: int
    html: str
    response: requests.Response | None = None
    intercepted: bool = False
    forms: list[Form] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    title: str = ""
    text: str = ""

    @property
    def query(self) -> dict[str, str]:
        """The first value of each query parameter of the page's address."""
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    def form(self, id: str | None = None, action: str | None = None) -> Form:
        """The only form (or the one with this id, or whose action contains `action`)."""
        found = [f for f in self.forms if (id is None or f.id == id)
                 and (action is None or action in f.action)]
        if len(found) != 1:
            raise LookupError(f"{len(found)} forms match on {self.url}: {self.text[:300]}")
        return found[0]

    def link(self, text: str) -> Link:
        found = [link for link in self.links if _normalise(link.text) == _normalise(text)]
        if len(found) != 1:
            raise LookupError(f"{len(found)} links {text!r} on {self.url}: "
                              f"{[link.text for link in self.links]}")
        return found[0]

    @property
    def autosubmits(self) -> bool:
        return any(src.rsplit("/", 1)[-1].split("?")[0] == "autosubmit.js"
                   for src in self.scripts) and len(self.forms) == 1


def _normalise(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


class _PageParser(HTMLParser):
    """Forms with their controls and labels, links, scripts, the title and the visible text."""

    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.form: Form | None = None
        self.labels: dict[str, str] = {}  # for= id → text
        self.label_for: str | None = None
        self.label_text: list[str] | None = None
        self.link: Link | None = None
        self.button: Control | None = None
        self.option: tuple[Control, str, bool] | None = None
        self.select: Control | None = None
        self.textarea: Control | None = None
        self.skip = 0  # inside <script> or <style>
        self.in_title = False
        self.text: list[str] = []
        self.loose: list[Control] = []  # controls outside any form (ignored when submitting)

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: (v if v is not None else "") for k, v in attrs_list}
        if tag in BLOCKS:
            self.text.append(" ")
        if tag in ("script", "style"):
            self.skip += 1
            if tag == "script" and attrs.get("src"):
                self.page.scripts.append(urljoin(self.page.url, attrs["src"]))
        elif tag == "title":
            self.in_title = True
        elif tag == "form":
            action = urljoin(self.page.url, attrs.get("action") or self.page.url)
            self.form = Form(self.page, action, (attrs.get("method") or "get").upper(),
                             attrs.get("id"))
            self.page.forms.append(self.form)
        elif tag == "a" and "href" in attrs:
            self.link = Link(urljoin(self.page.url, attrs["href"]), "")
            self.page.links.append(self.link)
        elif tag == "label":
            self.label_for, self.label_text = attrs.get("for"), []
        elif tag == "input":
            kind = (attrs.get("type") or "text").lower()
            default = "on" if kind in ("radio", "checkbox") else ""
            self._add(Control("input", kind, attrs.get("name"), attrs.get("value", default),
                              attrs.get("id"), checked="checked" in attrs,
                              label=attrs.get("value", "") if kind == "submit" else ""))
        elif tag == "button":
            self.button = Control("button", (attrs.get("type") or "submit").lower(),
                                  attrs.get("name"), attrs.get("value", ""), attrs.get("id"))
            if self.button.type == "submit":
                self._add(self.button)
        elif tag == "textarea":
            self.textarea = Control("textarea", "textarea", attrs.get("name"), "", attrs.get("id"))
            self._add(self.textarea)
        elif tag == "select":
            self.select = Control("select", "select", attrs.get("name"), "", attrs.get("id"))
            self._add(self.select)
        elif tag == "option" and self.select is not None:
            if not self.select.value or "selected" in attrs:
                self.select.value = attrs.get("value", "")

    def _add(self, control: Control) -> None:
        (self.form.controls if self.form is not None else self.loose).append(control)

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCKS:
            self.text.append(" ")
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag == "title":
            self.in_title = False
        elif tag == "form":
            self.form = None
        elif tag == "a":
            self.link = None
        elif tag == "label" and self.label_text is not None:
            if self.label_for:
                self.labels[self.label_for] = " ".join("".join(self.label_text).split())
            self.label_for = self.label_text = None
        elif tag == "button":
            self.button = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "select":
            self.select = None

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.in_title:
            self.page.title += data
            return
        self.text.append(data)
        for sink in (self.link, self.button):
            if sink is not None:
                if isinstance(sink, Link):
                    sink.text += data
                else:
                    sink.label += data
        if self.label_text is not None:
            self.label_text.append(data)
        if self.textarea is not None:
            self.textarea.value += data

    def close(self) -> None:
        super().close()
        for form in self.page.forms:
            for control in form.controls:
                if control.id and control.id in self.labels:
                    control.label = self.labels[control.id]
                control.label = " ".join(control.label.split())
        for link in self.page.links:
            link.text = " ".join(link.text.split())
        self.page.title = " ".join(self.page.title.split())
        self.page.text = " ".join("".join(self.text).split())


def parse_page(url: str, status: int, html: str, response=None) -> Page:
    page = Page(url=url, status=status, html=html, response=response)
    if html:
        parser = _PageParser(page)
        parser.feed(html)
        parser.close()
    return page


# --- the browser ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    method: str
    url: str
    status: int


class HttpBrowser:
    """One browser profile: a cookie jar, a history of visits, and navigation.

    `intercept` lists URL prefixes the browser does not load: a navigation there ends with an
    `intercepted` page holding only the address (e.g. a single-page app's redirect URI, whose
    query the app reads itself).
    """

    def __init__(self, *, timeout: float = 10, intercept: tuple[str, ...] = (),
                 user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) siwa-web-tests/1.0") -> None:
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: never an HTTP proxy from the environment
        # requests copies its jar into a fresh one (default policy) for every request, so the
        # browser keeps its own jar and writes the Cookie header itself; the session's stays empty.
        self.session.cookies.set_policy(_NoCookies())
        self.policy = BrowserCookiePolicy()
        self.cookies = RequestsCookieJar(policy=self.policy)
        self.session.headers["User-Agent"] = user_agent
        self.session.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
        self.timeout = timeout
        self.intercept = tuple(intercept)
        self.visits: list[Visit] = []

    # --- what a person does ---

    def goto(self, url: str) -> Page:
        """Type an address: a GET navigation that no page started."""
        return self.navigate("GET", url, source=None)

    def click(self, page: Page, text: str) -> Page:
        return self.navigate("GET", page.link(text).href, source=page)

    def submit(self, form: Form, button: str | None = None) -> Page:
        """Submit `form` with the button labelled `button` (the first one when None)."""
        data = list(form.fields.items())
        pressed = form.button(button)
        if pressed is not None and pressed.name:
            data.append((pressed.name, pressed.value))
        if form.method == "POST":
            return self.navigate("POST", form.action, data=data, source=form.page)
        parts = urlsplit(form.action)
        return self.navigate("GET", urlunsplit(parts._replace(query=urlencode(data), fragment="")),
                             source=form.page)

    def visited(self, prefix: str, since: int = 0) -> list[Visit]:
        """Visits since index `since` whose URL starts with `prefix`."""
        return [v for v in self.visits[since:] if v.url.startswith(prefix)]

    # --- the machinery ---

    def navigate(self, method: str, url: str, *, data=None, source: Page | None) -> Page:
        """Load `url` (started by the page `source`, or typed in when None), follow redirects,
        then submit auto-submitting pages."""
        page = self._load(method, url, data, source)
        for _ in range(MAX_AUTOSUBMITS):
            if page.intercepted or not page.autosubmits:
                return page
            form = page.form()
            page = self._load(form.method, form.action, list(form.fields.items()), page)
        raise AssertionError(f"more than {MAX_AUTOSUBMITS} auto-submitting pages in a row")

    def _load(self, method: str, url: str, data, source: Page | None) -> Page:
        fetch_site = "none" if source is None else "same-origin"
        for _ in range(MAX_REDIRECTS + 1):
            url = without_fragment(url)
            if self.intercept and url.startswith(self.intercept):
                self.visits.append(Visit(method, url, 0))
                return Page(url=url, status=0, html="", intercepted=True)
            self.policy.initiator = None if source is None else site_of(source.url)
            self.policy.method = method
            if source is not None:  # the least related hop of the chain so far counts
                fetch_site = max(fetch_site, _relation(source.url, url), key=FETCH_SITES.index)
            prepared = self.session.prepare_request(requests.Request(
                method, url, data=data if method == "POST" else None,
                headers=_navigation_headers(method, fetch_site, source)))
            cookie = get_cookie_header(self.cookies, prepared)
            if cookie:
                prepared.headers["Cookie"] = cookie
            response = self.session.send(prepared, allow_redirects=False, timeout=self.timeout)
            extract_cookies_to_jar(self.cookies, prepared, response.raw)
            self.visits.append(Visit(method, url, response.status_code))
            if response.status_code not in REDIRECTS or "Location" not in response.headers:
                html = response.text if "html" in response.headers.get("Content-Type", "") else ""
                return parse_page(url, response.status_code, html, response)
            url = urljoin(url, response.headers["Location"])
            if response.status_code in (301, 302, 303) and method != "HEAD":
                method, data = "GET", None
        raise AssertionError(f"more than {MAX_REDIRECTS} redirects, last to {url}")


# --- siwa-web and the Apple emulator ------------------------------------------------------------

EMULATOR_SIGN_IN_TITLE = re.compile(r"^Sign in with Apple\b")
EMULATOR_CONSENT_TITLE = re.compile(r"^Create your account\b")
SIWA_CONSENT_ACTION = "/oauth/authorize/consent"


def sign_in_with_apple(browser: HttpBrowser, page: Page, *, first_name: str = "Ada",
                       last_name: str = "Lovelace", email: str = "ada@example.com",
                       new_user: bool = True, share_email: bool = True) -> Page:
    """From siwa-web's sign-in page: Sign in with Apple on the emulator, and back.

    A new test user is created with the name and email given (or, with `new_user=False`, the
    existing one with that name and email is picked); on a first authorization the emulator's
    consent page shares the real email (or hides it behind a relay address). Returns the page
    the browser ends on after Apple's form_post reached siwa-web and siwa-web sent it on.
    """
    page = browser.click(page, "Sign in with Apple")
    assert EMULATOR_SIGN_IN_TITLE.match(page.title), (page.url, page.status, page.text[:300])
    form = page.form()
    if new_user:
        form.check("New test user").fill("First name", first_name).fill(
            "Last name", last_name).fill("Email", email)
    else:
        form.check(f"{first_name} {last_name} <{email}>")
    page = browser.submit(form, "Continue")
    if EMULATOR_CONSENT_TITLE.match(page.title):
        form = page.form()
        form.check("Share My Email" if share_email else "Hide My Email")
        page = browser.submit(form, "Continue")
    return page


def is_consent_page(page: Page) -> bool:
    """Whether `page` is siwa-web's "Allow <app> …?" page for a third-party web app."""
    return any(SIWA_CONSENT_ACTION in form.action for form in page.forms)


def answer_consent(browser: HttpBrowser, page: Page, *, allow: bool = True) -> Page:
    """Press Allow (or Deny) on siwa-web's consent page."""
    assert is_consent_page(page), (page.url, page.status, page.text[:300])
    return browser.submit(page.form(action=SIWA_CONSENT_ACTION), "Allow" if allow else "Deny")
