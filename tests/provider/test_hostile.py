"""The hostile-input catalogue of the OpenID Provider for web apps.

Every way a browser, an app or an attacker can bend a request to `/oauth/authorize`, its
consent page or `POST /oauth/token`, each case answered the one safe way — siwa-web's own error
page (never a redirect) while the client or its redirect URI is in doubt, otherwise one OAuth
error to the exact registered redirect URI with `state` and `iss` — and each leaving nothing
behind: no code, no token family, no consent, no waiting request (`stores_nothing`).

The browser (`browser`) is a signed-in test client, so a request that slipped through would be
answered at once with a code; apps talk to the token endpoint from their own back end
(`backend`, a test client without the browser's cookies).
"""
from __future__ import annotations

import base64
import json
import logging
from contextlib import contextmanager
from html.parser import HTMLParser
from urllib.parse import parse_qs
from urllib.parse import quote
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import AuthorizationCode
from siwa_web.models import Client
from siwa_web.models import Consent
from siwa_web.models import TokenFamily
from siwa_web.models import WebSession
from siwa_web.models.base import now_utc
from siwa_web.oauth import clients
from support.apple import DEFAULT_SUB
from support.tokens import assert_oauth_error
from support.tokens import audit_events
from support.tokens import bearer
from support.tokens import decode
from support.tokens import rows_without_audit
from support.tokens import shift
from support.tokens import snapshot
from support.web import csrf_token
from support.web import sign_in
from support.webapps import APP_REDIRECT
from support.webapps import ISSUER
from support.webapps import OTHER_REDIRECT
from support.webapps import WebApp
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import basic
from support.webapps import pkce
from support.webapps import redeem
from support.webapps import register

EVIL = "https://evil.example/callback"
SPA_REDIRECT = "https://spa.example/callback"
OTHER_SUB = "009999.fedcba9876543210fedcba9876543210.0002"
AUTHZ_COOKIE = "__Host-siwa-authz"  # the issuer is https: the pending-request cookie's name
ANSWER_FIELDS = {"code", "error", "error_description", "state", "iss"}


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def browser(client, fake_apple):
    """A browser with a live siwa-web session: a request that passed would get a code at once."""
    assert sign_in(client, fake_apple, sub=DEFAULT_SUB).status_code == 303
    return client


@pytest.fixture
def backend(app):
    """The apps' server side: calls the token endpoint without any of the browser's cookies."""
    return app.test_client()


@pytest.fixture
def webapp(app) -> WebApp:
    """A confidential, first-party web app (no consent page) with two redirect URIs."""
    return register(app)


@pytest.fixture
def spa(app) -> WebApp:
    """A public web app (a single-page app): no secret, PKCE required."""
    return register(app, public=True, name="Example SPA", redirect_uris=(SPA_REDIRECT,))


@pytest.fixture
def partner(app) -> WebApp:
    """A third-party web app: the person is asked before it gets anything."""
    return register(app, first_party=False, name="Partner Notes")


@pytest.fixture
def other_webapp(app) -> WebApp:
    """A second confidential web app of another owner."""
    return register(app, name="Other App", redirect_uris=("https://other.example/callback",))


@contextmanager
def stores_nothing(app):
    """No table gains or loses a row inside the block (audit events excepted)."""
    before = rows_without_audit(app)
    yield
    assert rows_without_audit(app) == before


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def authorize(browser, params, method: str = "get"):
    """GET (query) or POST (form body) `/oauth/authorize`; list values repeat a parameter."""
    if method == "get":
        return browser.get("/oauth/authorize", query_string=params)
    return browser.post("/oauth/authorize", data=params)


def refusals(caplog) -> list[str]:
    """Reasons the provider's views logged for refusing authorization requests."""
    return [r.reason for r in caplog.records
            if r.name == "siwa_web.provider.views" and hasattr(r, "reason")]


def audit_reasons(app, event: str = "web_app_code") -> list[str]:
    return [e["reason"] for e in audit_events(app, event) if e["outcome"] == "failure"]


def frame_protected(response) -> bool:
    csp = response.headers.get("Content-Security-Policy", "")
    return response.headers.get("X-Frame-Options") == "DENY" and \
        "frame-ancestors 'none'" in csp


def assert_our_error_page(response, *, status: int = 400) -> str:
    """siwa-web's own HTML error page: no redirect, nothing cached, no waiting request."""
    assert response.status_code == status, response.headers.get("Location")
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert frame_protected(response)
    assert AUTHZ_COOKIE not in " ".join(response.headers.getlist("Set-Cookie"))
    html = response.get_data(as_text=True)
    assert "evil.example" not in html  # the page offers no way to where the link wanted to go
    return html


def assert_error_redirect(response, error: str, *, to: str = APP_REDIRECT,
                          state: str | None = "state-123") -> dict[str, str]:
    """One OAuth error, sent only to the exact registered URI, with `iss` and the `state`."""
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    location = response.headers["Location"]
    assert location.startswith(to + ("&" if "?" in to else "?")), location
    assert location.endswith("#_")
    back = answer(response)
    assert back["error"] == error, back
    assert back["iss"] == ISSUER
    own = set(parse_qs(urlsplit(to).query))  # a query the registered URI has of its own
    assert set(back) - {"_to"} - own <= ANSWER_FIELDS - {"code"}
    if state is None:
        assert "state" not in back
    else:
        assert back["state"] == state
    assert response.headers["Cache-Control"] == "no-store"
    return back


class _FormPost(HTMLParser):
    """The auto-submitting form of `response_mode=form_post`: its action and hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag, attrs) -> None:
        values = dict(attrs)
        if tag == "form" and values.get("id") == "oauth-response":
            self.action, self._inside = values["action"], True
        elif tag == "input" and values.get("type") == "hidden" and self._inside:
            self.fields[values["name"]] = values["value"]

    def handle_endtag(self, tag) -> None:
        if tag == "form":
            self._inside = False


def form_post(response, *, to: str = APP_REDIRECT) -> dict[str, str]:
    """The fields of a form_post answer, after checking where and only where it may post."""
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert "Location" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    parser = _FormPost()
    parser.feed(response.get_data(as_text=True))
    assert parser.action == to
    directives = dict(
        (d.strip().split(" ", 1) + [""])[:2] for d in
        response.headers["Content-Security-Policy"].split(";") if d.strip())
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(to))
    assert directives["form-action"] == origin  # the app's origin, nothing else
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert set(parser.fields) <= ANSWER_FIELDS
    assert parser.fields["iss"] == ISSUER
    return parser.fields


def code_for(browser, webapp: WebApp, challenge: str | None, **extra) -> str:
    back = answer(authorize(browser, authorize_params(webapp, challenge, **extra)))
    assert "code" in back, back
    return back["code"]


def consent_handle(browser, webapp: WebApp, **extra) -> str:
    _, challenge = pkce()
    to_consent = authorize(browser, authorize_params(webapp, challenge, **extra))
    assert to_consent.status_code == 303
    location = to_consent.headers["Location"]
    assert location.startswith("/oauth/authorize/consent?request=")
    return location.split("request=", 1)[1]


def other_browser(app, fake_apple, sub: str = OTHER_SUB):
    """A second browser, signed in (as someone else unless told)."""
    other = app.test_client()
    assert sign_in(other, fake_apple, sub=sub).status_code == 303
    return other


# --- redirect URIs: simple string comparison, or our own page -------------------------------------

NOT_REGISTERED = {
    "other host": EVIL,
    "other path": "https://app.example/callback2",
    "longer path": "https://app.example/callback/evil",
    "shorter path": "https://app.example/",
    "extra query": "https://app.example/callback?next=https://evil.example/",
    "empty query": "https://app.example/callback?",
    "fragment": "https://app.example/callback#https://evil.example/",
    "empty fragment": "https://app.example/callback#",
    "scheme case": "HTTPS://app.example/callback",
    "host case": "https://APP.EXAMPLE/callback",
    "path case": "https://app.example/Callback",
    "plain http": "http://app.example/callback",
    "trailing slash": "https://app.example/callback/",
    "trailing dot in host": "https://app.example./callback",
    "explicit default port": "https://app.example:443/callback",
    "userinfo": "https://app.example@evil.example/callback",
    "userinfo of ours": "https://evil.example@app.example/callback",
    "backslash": "https://app.example\\@evil.example/callback",
    "dot segments": "https://app.example/evil/../callback",
    "single dot segment": "https://app.example/./callback",
    "encoded dot segments": "https://app.example/evil/%2e%2e/callback",
    "percent-encoded path": "https://app.example/%63allback",
    "percent-encoded slash": "https://app.example%2Fcallback",
    "percent-encoded whole uri": quote(APP_REDIRECT, safe=""),
    "leading space": " " + APP_REDIRECT,
    "trailing space": APP_REDIRECT + " ",
    "trailing tab": APP_REDIRECT + "\t",
    "trailing NUL": APP_REDIRECT + "\x00",
    "relative": "/callback",
    "scheme-relative": "//app.example/callback",
    "registered uri of another app": "https://other.example/callback",
}


@pytest.mark.parametrize("redirect_uri", NOT_REGISTERED.values(), ids=NOT_REGISTERED.keys())
def test_a_redirect_uri_that_is_not_registered_character_for_character_stays_on_our_page(
        app, browser, webapp, other_webapp, caplog, redirect_uri):
    _, challenge = pkce()
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge,
                                                       redirect_uri=redirect_uri))
    html = assert_our_error_page(response)
    assert "is not one it registered" in html
    assert refusals(caplog) == ["redirect_uri_mismatch"]


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("redirect_uri, reason", [
    pytest.param(None, "redirect_uri_missing", id="missing"),
    pytest.param("", "redirect_uri_missing", id="empty"),
    pytest.param([APP_REDIRECT, EVIL], "repeated_redirect_uri", id="second, unregistered"),
    pytest.param([EVIL, APP_REDIRECT], "repeated_redirect_uri", id="first, unregistered"),
    pytest.param([APP_REDIRECT, OTHER_REDIRECT], "repeated_redirect_uri", id="two registered"),
    pytest.param([APP_REDIRECT, APP_REDIRECT], "repeated_redirect_uri", id="the same twice"),
    pytest.param(EVIL, "redirect_uri_mismatch", id="unregistered"),
    pytest.param("https://app.example@evil.example/callback", "redirect_uri_mismatch",
                 id="userinfo"),
])
def test_a_missing_repeated_or_foreign_redirect_uri_stays_on_our_page(
        app, browser, webapp, caplog, method, redirect_uri, reason):
    _, challenge = pkce()
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge,
                                                       redirect_uri=redirect_uri), method)
    assert_our_error_page(response)
    assert refusals(caplog) == [reason]


@pytest.mark.parametrize("case, reason", [
    ("unknown", "client_unknown"),
    ("missing", "client_unknown"),
    ("empty", "client_unknown"),
    ("too long", "client_unknown"),
    ("disabled", "client_unknown"),
    ("native app", "client_not_web"),
    ("the web sign-in's Services ID", "client_unknown"),
    ("repeated", "repeated_client_id"),
    ("another web app's id", "redirect_uri_mismatch"),
    ("POST with the request in the query string", "client_unknown"),
])
def test_an_unknown_disabled_or_native_client_stays_on_our_page(
        app, browser, webapp, other_webapp, native_client, caplog, case, reason):
    _, challenge = pkce()
    params = authorize_params(webapp, challenge)
    if case == "unknown":
        params["client_id"] = "cli_" + "x" * 24
    elif case == "missing":
        del params["client_id"]
    elif case == "empty":
        params["client_id"] = ""
    elif case == "too long":
        params["client_id"] = webapp.client_id + "x" * 64
    elif case == "disabled":
        with app.app_context():
            db.session.execute(update(Client).where(Client.id == webapp.client_id)
                               .values(disabled_at=now_utc()))
            db.session.commit()
    elif case == "native app":
        params["client_id"] = native_client.client_id
    elif case == "the web sign-in's Services ID":
        params["client_id"] = app.config["APPLE_SERVICES_ID"]
    elif case == "repeated":
        params["client_id"] = [webapp.client_id, other_webapp.client_id]
    elif case == "another web app's id":
        params["client_id"] = other_webapp.client_id
    with caplog.at_level(logging.INFO), stores_nothing(app):
        if case.startswith("POST"):
            response = browser.post("/oauth/authorize", query_string=params)
        else:
            response = authorize(browser, params)
    assert_our_error_page(response)
    assert refusals(caplog) == [reason]


# --- no open redirect through error answers ------------------------------------------------------

INVALID = {  # each is an OAuth error once client and redirect URI are known good
    "response_type token": ({"response_type": "token"}, "unsupported_response_type"),
    "no scope": ({"scope": None}, "invalid_scope"),
    "scope without openid": ({"scope": "profile"}, "invalid_scope"),
    "unknown scope": ({"scope": "openid admin"}, "invalid_scope"),
    "pkce plain": ({"code_challenge_method": "plain"}, "invalid_request"),
    "request object": ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    "prompt none and login": ({"prompt": "none login"}, "invalid_request"),
    "max_age garbage": ({"max_age": "soon"}, "invalid_request"),
    "foreign audience": ({"audience": "https://evil.example/api"}, "invalid_target"),
    "repeated scope": ({"scope": ["openid", "openid email"]}, "invalid_request"),
}


@pytest.mark.parametrize("extra", [v[0] for v in INVALID.values()], ids=INVALID.keys())
def test_an_invalid_request_naming_an_unregistered_redirect_uri_is_never_redirected(
        app, browser, webapp, caplog, extra):
    _, challenge = pkce()
    params = authorize_params(webapp, challenge, redirect_uri=EVIL, **extra)
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, params)
    assert_our_error_page(response)
    assert refusals(caplog) == ["redirect_uri_mismatch"]


@pytest.mark.parametrize("extra, error", INVALID.values(), ids=INVALID.keys())
def test_errors_go_only_to_the_exact_registered_redirect_uri(app, browser, webapp, extra, error):
    _, challenge = pkce()
    with stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge, **extra))
    assert_error_redirect(response, error)


@pytest.mark.parametrize("registered", [
    OTHER_REDIRECT,
    "https://app.example/cb?tenant=7",
    "http://127.0.0.1:8400/cb",
], ids=["second registered", "registered with a query", "loopback with a port"])
def test_each_answer_goes_to_the_registered_uri_the_request_named(app, browser, registered):
    webapp = register(app, name="Many URIs", redirect_uris=(APP_REDIRECT, registered))
    webapp.redirect_uri = registered
    _, challenge = pkce()
    with stores_nothing(app):
        error = authorize(browser, authorize_params(webapp, challenge, scope="profile"))
    assert_error_redirect(error, "invalid_scope", to=registered)
    success = authorize(browser, authorize_params(webapp, challenge))
    location = success.headers["Location"]
    assert location.startswith(registered + ("&" if "?" in registered else "?") + "code=")
    assert answer(success)["_to"] == registered.split("?")[0]
    posted = authorize(browser, authorize_params(webapp, challenge, response_mode="form_post"))
    assert "code" in form_post(posted, to=registered)  # form-action: that URI's origin only


# --- PKCE at the authorization endpoint -----------------------------------------------------------

VERIFIER, CHALLENGE = pkce()
PKCE_REFUSED = {
    "missing for a public client": (None, None, "pkce_required"),
    "plain": (VERIFIER, "plain", "pkce_method_unsupported"),
    "unknown method": (CHALLENGE, "S512", "pkce_method_unsupported"),
    "method in lower case": (CHALLENGE, "s256", "pkce_method_unsupported"),
    "method without challenge": (None, "S256", "pkce_challenge_missing"),
    "challenge without method": (CHALLENGE, None, "pkce_method_missing"),
    "42 characters": (CHALLENGE[:42], "S256", "pkce_challenge_malformed"),
    "44 characters": (CHALLENGE + "A", "S256", "pkce_challenge_malformed"),
    "padded": (CHALLENGE[:43] + "=", "S256", "pkce_challenge_malformed"),
    "base64, not base64url": (CHALLENGE[:41] + "+/", "S256", "pkce_challenge_malformed"),
    "the verifier itself": (VERIFIER, "S256", "pkce_challenge_malformed"),
    "non-ASCII": ("é" * 43, "S256", "pkce_challenge_malformed"),
    "trailing line break": (CHALLENGE + "\n", "S256", "pkce_challenge_malformed"),
}


@pytest.mark.parametrize("kind, challenge, method, reason", [
    pytest.param(kind, *case, id=f"{name}-{kind}") for name, case in PKCE_REFUSED.items()
    for kind in ("public", "confidential")
    if not (kind == "confidential" and case[2] == "pkce_required")  # public clients only
])
def test_pkce_other_than_s256_is_refused_by_redirect(app, browser, webapp, spa, caplog, kind,
                                                     challenge, method, reason):
    client = spa if kind == "public" else webapp
    params = authorize_params(client, None, code_challenge=challenge,
                              code_challenge_method=method)
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, params)
    back = assert_error_redirect(response, "invalid_request", to=client.redirect_uri)
    assert back["error_description"]
    assert refusals(caplog) == [reason]


# --- PKCE at the token endpoint ------------------------------------------------------------------

PKCE_FAILURES = ["wrong verifier", "verifier of another code", "no verifier",
                 "malformed verifier", "the challenge as verifier", "downgrade"]


@pytest.mark.parametrize("kind, case", [
    pytest.param(kind, case, id=f"{case}-{kind}") for case in PKCE_FAILURES
    for kind in ("public", "confidential")
    if not (case == "downgrade" and kind == "public")  # public clients always send a challenge
])
def test_a_failed_pkce_check_is_invalid_grant_and_issues_nothing(
        app, browser, backend, webapp, spa, kind, case):
    client = spa if kind == "public" else webapp
    verifier, challenge = pkce()
    code = code_for(browser, client, None if case == "downgrade" else challenge)
    presented = {
        "wrong verifier": pkce()[0],
        "verifier of another code": None,
        "no verifier": None,
        "malformed verifier": verifier[:42],
        "the challenge as verifier": challenge,
        "downgrade": verifier,
    }[case]
    if case == "verifier of another code":
        other_verifier, other_challenge = pkce()
        code_for(browser, client, other_challenge)
        presented = other_verifier
    with stores_nothing(app):
        response = redeem(backend, client, code, presented)
    assert_oauth_error(response, 400, "invalid_grant")
    expected = {"no verifier": "pkce_verifier_missing",
                "downgrade": "pkce_downgrade"}.get(case, "pkce_verifier_mismatch")
    assert audit_reasons(app) == [expected]
    with app.app_context():
        assert db.session.scalars(select(AuthorizationCode.consumed_at)).all() == [None] * (
            2 if case == "verifier of another code" else 1)


def test_after_a_failed_verifier_the_code_still_awaits_its_own_verifier_once(
        app, browser, backend, spa):
    """What siwa-web does (RFC 9700 leaves it open): a wrong verifier does not burn the code —
    whoever lacks the verifier gets nothing, and the app holding it can still redeem it once,
    within the code's 60 seconds."""
    verifier, challenge = pkce()
    code = code_for(browser, spa, challenge)
    for _ in range(3):
        assert_oauth_error(redeem(backend, spa, code, pkce()[0]), 400, "invalid_grant")
    assert count(app, TokenFamily) == 0
    assert redeem(backend, spa, code, verifier).status_code == 200
    assert_oauth_error(redeem(backend, spa, code, verifier), 400, "invalid_grant")


# --- authorization codes -------------------------------------------------------------------------


@pytest.mark.parametrize("replay", ["same request", "without verifier", "wrong verifier",
                                    "other redirect uri", "after it expired"])
def test_a_replayed_code_is_refused_and_revokes_what_its_first_redemption_issued(
        app, browser, backend, webapp, replay):
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge, scope="openid offline_access")
    first = redeem(backend, webapp, code, verifier)
    assert first.status_code == 200
    tokens = first.get_json()
    assert backend.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    extra = {}
    if replay == "without verifier":
        verifier = None
    elif replay == "wrong verifier":
        verifier = pkce()[0]
    elif replay == "other redirect uri":
        extra["redirect_uri"] = OTHER_REDIRECT
    elif replay == "after it expired":
        shift(app, "authorization_codes", "expires_at", -120)
    families = count(app, TokenFamily)
    again = redeem(backend, webapp, code, verifier, **extra)
    assert_oauth_error(again, 400, "invalid_grant")
    assert count(app, TokenFamily) == families  # nothing new
    assert backend.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 401
    refreshed = backend.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic(webapp))
    assert_oauth_error(refreshed, 400, "invalid_grant")
    assert [e["reason"] for e in audit_events(app, "authorization_code_replayed")] == [
        "family_revoked"]


def test_an_expired_code_is_invalid_grant(app, browser, backend, webapp):
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge)
    shift(app, "authorization_codes", "expires_at", -61)
    with stores_nothing(app):
        response = redeem(backend, webapp, code, verifier)
    assert_oauth_error(response, 400, "invalid_grant")
    assert audit_reasons(app) == ["code_expired"]


@pytest.mark.parametrize("thief", ["another confidential app", "a public app"])
def test_a_code_presented_by_another_client_is_invalid_grant(
        app, browser, backend, webapp, other_webapp, spa, thief):
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge)
    other = other_webapp if thief == "another confidential app" else spa
    with stores_nothing(app):
        response = redeem(backend, other, code, verifier, redirect_uri=webapp.redirect_uri)
    assert_oauth_error(response, 400, "invalid_grant")
    assert audit_reasons(app) == ["code_client"]
    # the attempt neither consumed the code nor revoked anything: the app it was issued to
    # redeems it as usual
    assert redeem(backend, webapp, code, verifier).status_code == 200


@pytest.mark.parametrize("redirect_uri, error, reason", [
    (OTHER_REDIRECT, "invalid_grant", "redirect_uri_mismatch"),
    (EVIL, "invalid_grant", "redirect_uri_mismatch"),
    (APP_REDIRECT + "/", "invalid_grant", "redirect_uri_mismatch"),
    ("HTTPS://app.example/callback", "invalid_grant", "redirect_uri_mismatch"),
    (quote(APP_REDIRECT, safe=""), "invalid_grant", "redirect_uri_mismatch"),
    (None, "invalid_request", "redirect_uri_missing"),
], ids=["other registered", "unregistered", "trailing slash", "scheme case", "percent-encoded",
        "missing"])
def test_a_code_redeemed_with_another_redirect_uri_is_refused(
        app, browser, backend, webapp, redirect_uri, error, reason):
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge)
    with stores_nothing(app):
        response = redeem(backend, webapp, code, verifier, redirect_uri=redirect_uri)
    assert_oauth_error(response, 400, error)
    assert audit_reasons(app) == [reason]


@pytest.mark.parametrize("value, error", [
    ("A" * 43, "invalid_grant"),
    ("A" * 129, "invalid_grant"),
    ("é" * 43, "invalid_grant"),
    ("", "invalid_request"),
], ids=["unknown", "too long", "non-ASCII", "empty"])
def test_a_code_that_was_never_issued_is_refused(app, browser, backend, webapp, value, error):
    _, challenge = pkce()
    code_for(browser, webapp, challenge)
    with stores_nothing(app):
        response = redeem(backend, webapp, value, pkce()[0])
    assert_oauth_error(response, 400, error)


def _end_first_session(app, fake_apple, browser, how: str) -> None:
    if how == "signed out":
        assert browser.post("/auth/logout",
                            data={"csrf_token": csrf_token(browser)}).status_code == 303
    elif how == "signed out, then someone else signed in":
        assert browser.post("/auth/logout",
                            data={"csrf_token": csrf_token(browser)}).status_code == 303
        assert sign_in(browser, fake_apple, sub=OTHER_SUB).status_code == 303
    elif how == "ended from another browser":
        with app.app_context():
            first = db.session.scalars(select(WebSession.id)).one()
        other = other_browser(app, fake_apple, sub=DEFAULT_SUB)
        ended = other.post(f"/dashboard/sessions/{first}/revoke",
                           data={"csrf_token": csrf_token(other)})
        assert ended.status_code == 303


@pytest.mark.parametrize("how", ["signed out", "signed out, then someone else signed in",
                                 "ended from another browser"])
def test_a_code_from_a_browser_session_that_has_ended_gives_no_tokens(
        app, fake_apple, browser, backend, webapp, how):
    """A code is bound to the siwa-web session it was issued in: once that session has ended,
    the sign-in it stood for is over, and the code gives tokens to nobody."""
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge, scope="openid offline_access")
    _end_first_session(app, fake_apple, browser, how)
    families = count(app, TokenFamily)
    response = redeem(backend, webapp, code, verifier)
    assert_oauth_error(response, 400, "invalid_grant")
    assert count(app, TokenFamily) == families
    assert audit_reasons(app) == ["web_session_ended"]


def test_a_code_gives_tokens_for_the_person_it_was_issued_to_only(
        app, fake_apple, browser, backend, webapp):
    """Whoever is signed in when the app redeems it, a code speaks for the person it was
    issued to: the other browser's user never appears in its tokens."""
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge)
    mine = code_for(other_browser(app, fake_apple), webapp, challenge)
    first = decode(backend, redeem(backend, webapp, code, verifier).get_json()["id_token"],
                   audience=webapp.client_id, issuer=ISSUER)
    second = decode(backend, redeem(backend, webapp, mine, verifier).get_json()["id_token"],
                    audience=webapp.client_id, issuer=ISSUER)
    assert first["sub"] != second["sub"] and first["sid"] != second["sid"]


def test_a_code_of_a_client_disabled_since_gives_nothing(app, browser, backend, webapp):
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge)
    with app.app_context():
        db.session.execute(update(Client).where(Client.id == webapp.client_id)
                           .values(disabled_at=now_utc()))
        db.session.commit()
    with stores_nothing(app):
        response = redeem(backend, webapp, code, verifier)
    assert_oauth_error(response, 401, "invalid_client")
    assert audit_reasons(app) == ["client_disabled"]  # as for its refresh tokens


@pytest.mark.parametrize("name", ["code", "redirect_uri", "code_verifier", "grant_type"])
def test_a_repeated_token_request_parameter_is_invalid_request(app, browser, backend, webapp,
                                                               name):
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge)
    data = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": webapp.redirect_uri, "code_verifier": verifier}
    data[name] = [data[name], data[name]]
    with stores_nothing(app):
        response = backend.post("/oauth/token", data=data, headers=basic(webapp))
    assert_oauth_error(response, 400, "invalid_request")
    assert redeem(backend, webapp, code, verifier).status_code == 200


# --- client authentication at the token endpoint --------------------------------------------------


def _b64(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


CONFIDENTIAL_AUTH = {  # (headers, body extra, status, error, audit reason)
    "wrong secret, Basic": (
        lambda me, other: basic(me, "wrong-" + me.secret), {}, 401, "invalid_client",
        "secret_wrong"),
    "wrong secret, post": (
        lambda me, other: {}, "post-wrong", 401, "invalid_client", "secret_wrong"),
    "another client's secret, Basic": (
        lambda me, other: basic(me, other.secret), {}, 401, "invalid_client", "secret_wrong"),
    "another client's secret, post": (
        lambda me, other: {}, "post-other", 401, "invalid_client", "secret_wrong"),
    "Basic and client_secret_post both": (
        lambda me, other: basic(me), "post-own", 400, "invalid_request", "two_auth_methods"),
    "no secret": (lambda me, other: {}, "id-only", 401, "invalid_client", "secret_missing"),
    "empty secret in Basic": (
        lambda me, other: basic(me, ""), {}, 401, "invalid_client", "secret_wrong"),
    "Basic not base64": (
        lambda me, other: {"Authorization": "Basic !!!"}, {}, 401, "invalid_client",
        "basic_malformed"),
    "Basic without a colon": (
        lambda me, other: _b64(me.client_id.encode()), {}, 401, "invalid_client",
        "basic_malformed"),
    "Basic without a client id": (
        lambda me, other: _b64(b":" + me.secret.encode()), {}, 401, "invalid_client",
        "basic_malformed"),
    "Basic not UTF-8": (
        lambda me, other: _b64(b"\xff\xfe:\xfd"), {}, 401, "invalid_client", "basic_malformed"),
    "Basic of an unknown client": (
        lambda me, other: basic(WebApp("cli_" + "u" * 24, me.secret)), {}, 401,
        "invalid_client", "client_unknown"),
    "Basic of another client than the body's": (
        lambda me, other: basic(other), "id-only", 400, "invalid_request", "client_id_conflict"),
}


@pytest.mark.parametrize("headers, body, status, error, reason", CONFIDENTIAL_AUTH.values(),
                         ids=CONFIDENTIAL_AUTH.keys())
def test_a_confidential_client_that_does_not_prove_itself_gets_nothing(
        app, browser, backend, webapp, other_webapp, headers, body, status, error, reason):
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge)
    data = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": webapp.redirect_uri, "code_verifier": verifier}
    if body:
        data["client_id"] = webapp.client_id
        data["client_secret"] = {"post-wrong": "wrong-" + webapp.secret,
                                 "post-other": other_webapp.secret, "post-own": webapp.secret,
                                 "id-only": None}[body]
    data = {k: v for k, v in data.items() if v is not None}
    with stores_nothing(app):
        response = backend.post("/oauth/token", data=data,
                                headers=headers(webapp, other_webapp))
    refused = assert_oauth_error(response, status, error)
    assert "error_description" in refused
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="siwa-web"'
    assert audit_reasons(app) == [reason]
    assert redeem(backend, webapp, code, verifier).status_code == 200  # still unused


@pytest.mark.parametrize("how", ["client_secret in the body", "a Basic header",
                                 "a Basic header with an empty secret"])
def test_a_public_client_sending_a_secret_is_invalid_client(app, browser, backend, spa, how):
    verifier, challenge = pkce()
    code = code_for(browser, spa, challenge)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": spa.redirect_uri,
            "code_verifier": verifier}
    headers = {}
    if how == "client_secret in the body":
        data.update(client_id=spa.client_id, client_secret="made-up")
    else:
        headers = basic(spa, "" if "empty" in how else "made-up")
    with stores_nothing(app):
        response = backend.post("/oauth/token", data=data, headers=headers)
    assert_oauth_error(response, 401, "invalid_client")
    assert audit_reasons(app) == ["secret_for_public_client"]
    assert redeem(backend, spa, code, verifier).status_code == 200


# --- state and nonce ------------------------------------------------------------------------------

ODD_STATES = {
    "URL syntax": "a b&c=d#e/f?g+h%20i;j,k:l@m",
    "HTML syntax": "\"'<>`{}|\\^[]&amp;",
    "longest": "s" * 512,
}


@pytest.mark.parametrize("outcome", ["code", "error"])
@pytest.mark.parametrize("mode", ["query", "form_post"])
@pytest.mark.parametrize("state", ODD_STATES.values(), ids=ODD_STATES.keys())
def test_state_comes_back_exactly(app, browser, webapp, state, mode, outcome):
    _, challenge = pkce()
    params = authorize_params(webapp, challenge, state=state, response_mode=mode)
    if outcome == "error":
        params["scope"] = "profile"
    response = authorize(browser, params)
    back = form_post(response) if mode == "form_post" else answer(response)
    assert back["state"] == state
    assert ("code" in back) == (outcome == "code")


def test_nonce_comes_back_exactly_in_the_id_token(app, browser, backend, webapp):
    nonce = "n a&b=c#d\"'<>%20" + "x" * 239
    assert len(nonce) == 255
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge, nonce=nonce)
    claims = decode(backend, redeem(backend, webapp, code, verifier).get_json()["id_token"],
                    audience=webapp.client_id, issuer=ISSUER)
    assert claims["nonce"] == nonce


@pytest.mark.parametrize("mode", ["query", "form_post"])
@pytest.mark.parametrize("state", ["s" * 513, "état", "line\nbreak", "nul\x00", "tab\there",
                                   "state-123\n"],
                         ids=["513 characters", "non-ASCII", "line break", "NUL", "tab",
                              "trailing line break"])
def test_an_unacceptable_state_is_refused_without_being_echoed(app, browser, webapp, state,
                                                              mode):
    _, challenge = pkce()
    with stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge, state=state,
                                                       response_mode=mode))
    if mode == "form_post":
        fields = form_post(response)
        assert fields["error"] == "invalid_request" and "state" not in fields
        assert 'name="state"' not in response.get_data(as_text=True)
    else:
        assert_error_redirect(response, "invalid_request", state=None)
        assert quote(state[:20]) not in response.headers["Location"]


@pytest.mark.parametrize("nonce", ["n" * 256, "nöncé", "line\nbreak", "nonce-456\n"],
                         ids=["256 characters", "non-ASCII", "line break",
                              "trailing line break"])
def test_an_unacceptable_nonce_is_invalid_request(app, browser, webapp, nonce):
    _, challenge = pkce()
    with stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge, nonce=nonce))
    assert_error_redirect(response, "invalid_request")


# --- prompt and max_age ---------------------------------------------------------------------------


def test_prompt_none_without_a_remembered_consent_is_consent_required(app, browser, partner):
    _, challenge = pkce()
    with stores_nothing(app):
        response = authorize(browser, authorize_params(partner, challenge, prompt="none"))
    assert_error_redirect(response, "consent_required")


@pytest.mark.parametrize("extra, error", [
    ({}, "login_required"),
    ({"max_age": "0"}, "login_required"),
], ids=["no session", "max_age=0"])
def test_prompt_none_that_would_need_a_sign_in_is_login_required(
        app, client, fake_apple, webapp, extra, error):
    if extra:
        sign_in(client, fake_apple)
    _, challenge = pkce()
    with stores_nothing(app):
        response = authorize(client, authorize_params(webapp, challenge, prompt="none", **extra))
    assert_error_redirect(response, error)


@pytest.mark.parametrize("prompt", ["none login", "login none", "none consent",
                                    "none select_account", "none none login"])
def test_prompt_none_with_anything_else_is_invalid_request(app, browser, webapp, caplog, prompt):
    _, challenge = pkce()
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge, prompt=prompt))
    assert_error_redirect(response, "invalid_request")
    assert refusals(caplog) == ["prompt_none_combined"]


def test_max_age_0_with_a_session_asks_for_a_fresh_sign_in(app, browser, webapp):
    _, challenge = pkce()
    before = rows_without_audit(app)
    response = authorize(browser, authorize_params(webapp, challenge, max_age="0"))
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/auth/login?")
    login = answer(response)
    assert login["prompt"] == "login"
    assert login["next"].startswith("/oauth/authorize/resume?request=")
    after = rows_without_audit(app)
    assert after.pop("pending_authorizations") == before.pop("pending_authorizations") + 1
    assert after == before  # no code, no family, no consent: the request only waits


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", " 5", "5 ", "+5", "1e3", "0x10",
                                     "\u0663", "1000000001", "5,5"])
def test_max_age_that_is_not_a_whole_number_of_seconds_is_invalid_request(
        app, browser, webapp, caplog, max_age):
    _, challenge = pkce()
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge, max_age=max_age))
    assert_error_redirect(response, "invalid_request")
    assert refusals(caplog) == ["max_age_invalid"]


# --- the consent form --------------------------------------------------------------------------


def _consent(browser, handle, decision: str = "allow", *, token: str | None = "own",
             headers=None):
    data = {"request": handle, "decision": decision}
    if token == "own":
        data["csrf_token"] = csrf_token(browser)
    elif token is not None:
        data["csrf_token"] = token
    return browser.post("/oauth/authorize/consent", data=data, headers=headers or {})


@pytest.mark.parametrize("token", [None, "", "forged", "another browser's"])
def test_a_consent_post_without_this_browsers_csrf_token_is_refused(
        app, fake_apple, browser, partner, token):
    handle = consent_handle(browser, partner)
    if token == "another browser's":
        token = csrf_token(other_browser(app, fake_apple))
    with stores_nothing(app):
        response = _consent(browser, handle, token=token)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert count(app, Consent) == 0 and count(app, AuthorizationCode) == 0
    # the request still waits for a real answer
    assert "code" in answer(_consent(browser, handle))


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "none"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
], ids=["cross-site", "same-site", "typed in", "foreign Origin", "null Origin"])
def test_a_consent_post_from_another_site_is_forbidden(app, browser, partner, headers):
    handle = consent_handle(browser, partner)
    with stores_nothing(app):
        response = _consent(browser, handle, headers=headers)
    assert response.status_code == 403
    assert "Location" not in response.headers
    assert "code" in answer(_consent(browser, handle, headers={"Sec-Fetch-Site": "same-origin"}))


@pytest.mark.parametrize("first, then", [("allow", "allow"), ("deny", "allow"),
                                         ("allow", "deny")])
def test_a_consent_form_answers_once(app, browser, partner, first, then):
    handle = consent_handle(browser, partner)
    answer(_consent(browser, handle, first))
    with stores_nothing(app):
        again = _consent(browser, handle, then)
        shown = browser.get(f"/oauth/authorize/consent?request={handle}")
    for response in (again, shown):
        assert "no longer valid" in assert_our_error_page(response)
    assert count(app, AuthorizationCode) == (1 if first == "allow" else 0)


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_consent_handle_is_worthless_in_another_browser(app, fake_apple, browser, partner,
                                                         method):
    handle = consent_handle(browser, partner)
    other = other_browser(app, fake_apple)
    with stores_nothing(app):
        if method == "post":
            response = _consent(other, handle)
        else:
            response = other.get(f"/oauth/authorize/consent?request={handle}")
    assert "no longer valid" in assert_our_error_page(response)
    assert "code" in answer(_consent(browser, handle))  # its own browser can still answer


@pytest.mark.parametrize("same_person", [False, True], ids=["someone else", "same person"])
def test_a_sign_in_handle_is_worthless_in_another_browser(app, fake_apple, browser, webapp,
                                                          same_person):
    _, challenge = pkce()
    next_url = answer(authorize(browser, authorize_params(webapp, challenge,
                                                          prompt="login")))["next"]
    other = other_browser(app, fake_apple, sub=DEFAULT_SUB if same_person else OTHER_SUB)
    with stores_nothing(app):
        response = other.get(next_url)
    assert "no longer valid" in assert_our_error_page(response)


@pytest.mark.parametrize("gone", ["expired", "client disabled"])
def test_a_consent_form_for_a_request_that_is_gone_shows_the_expired_page(app, browser,
                                                                          partner, gone):
    handle = consent_handle(browser, partner)
    if gone == "expired":
        shift(app, "pending_authorizations", "expires_at", -601)
    else:
        with app.app_context():
            db.session.execute(update(Client).where(Client.id == partner.client_id)
                               .values(disabled_at=now_utc()))
            db.session.commit()
    with stores_nothing(app):
        response = _consent(browser, handle)
    assert "no longer valid" in assert_our_error_page(response)


def test_a_remembered_consent_covers_only_what_was_allowed_and_by_whom(app, fake_apple, browser,
                                                                      partner):
    handle = consent_handle(browser, partner, scope="openid profile")
    assert "code" in answer(_consent(browser, handle))
    _, challenge = pkce()
    other = other_browser(app, fake_apple)
    with stores_nothing(app):
        more = authorize(browser, authorize_params(partner, challenge, prompt="none",
                                                   scope="openid profile email"))
        someone_else = authorize(other, authorize_params(partner, challenge, prompt="none",
                                                         scope="openid profile"))
    assert_error_redirect(more, "consent_required")
    assert_error_redirect(someone_else, "consent_required")


@pytest.mark.parametrize("handle", [None, "", "x" * 32, "x" * 65])
def test_a_consent_post_with_an_unknown_handle_shows_the_expired_page(app, browser, partner,
                                                                     handle):
    consent_handle(browser, partner)
    with stores_nothing(app):
        response = _consent(browser, handle)
    assert "no longer valid" in assert_our_error_page(response)


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}],
                         ids=["prompt=login", "max_age=0"])
def test_a_request_waiting_for_a_fresh_sign_in_cannot_be_answered_on_the_consent_page(
        app, fake_apple, browser, partner, extra):
    """The sign-in page's handle, taken to the consent form by a browser whose session is too
    old for the request, must not skip the sign-in the app asked for."""
    _, challenge = pkce()
    to_login = authorize(browser, authorize_params(partner, challenge, **extra))
    next_url = answer(to_login)["next"]
    handle = next_url.split("request=", 1)[1]
    with stores_nothing(app):
        shown = browser.get(f"/oauth/authorize/consent?request={handle}")
        posted = _consent(browser, handle)
    for response in (shown, posted):
        assert "no longer valid" in assert_our_error_page(response)
    # the way the app asked for still works: a fresh sign-in, then the consent page
    assert sign_in(browser, fake_apple, sub=DEFAULT_SUB, next_url=next_url).status_code == 303
    to_consent = browser.get(next_url)
    assert to_consent.headers["Location"].startswith("/oauth/authorize/consent?request=")
    fresh = to_consent.headers["Location"].split("request=", 1)[1]
    assert "code" in answer(_consent(browser, fresh))


# --- clickjacking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["consent", "unknown client", "unregistered redirect uri",
                                  "unknown response_mode", "expired request", "form_post"])
def test_every_page_of_the_provider_refuses_to_be_framed(app, browser, webapp, partner, page):
    _, challenge = pkce()
    if page == "consent":
        handle = consent_handle(browser, partner)
        response = browser.get(f"/oauth/authorize/consent?request={handle}")
        assert response.status_code == 200
    elif page == "unknown client":
        response = authorize(browser, authorize_params(webapp, challenge, client_id="cli_nope"))
    elif page == "unregistered redirect uri":
        response = authorize(browser, authorize_params(webapp, challenge, redirect_uri=EVIL))
    elif page == "unknown response_mode":
        response = authorize(browser, authorize_params(webapp, challenge,
                                                       response_mode="fragment"))
    elif page == "expired request":
        response = browser.get("/oauth/authorize/resume?request=unknown")
    else:
        response = authorize(browser, authorize_params(webapp, challenge,
                                                       response_mode="form_post"))
        assert response.status_code == 200
    assert frame_protected(response)


# --- iss in every answer (mix-up) -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["query", "form_post"])
@pytest.mark.parametrize("outcome", ["code", "error", "consent_required", "access_denied",
                                     "code after consent"])
def test_every_answer_carries_iss(app, browser, webapp, partner, mode, outcome):
    _, challenge = pkce()
    if outcome in ("code", "error"):
        extra = {"scope": "profile"} if outcome == "error" else {}
        response = authorize(browser, authorize_params(webapp, challenge, response_mode=mode,
                                                       **extra))
    elif outcome == "consent_required":
        response = authorize(browser, authorize_params(partner, challenge, response_mode=mode,
                                                       prompt="none"))
    else:
        handle = consent_handle(browser, partner, response_mode=mode)
        response = _consent(browser, handle, "deny" if outcome == "access_denied" else "allow")
    back = form_post(response) if mode == "form_post" else answer(response)
    assert back["iss"] == ISSUER
    assert back["state"] == "state-123"
    if outcome.startswith("code"):
        assert "code" in back and "error" not in back
    else:
        assert back["error"] == {"error": "invalid_scope"}.get(outcome, outcome)
        assert "code" not in back


# --- refresh tokens stay with their app -----------------------------------------------------------


@pytest.mark.parametrize("thief, status, error", [
    ("another confidential web app", 400, "invalid_grant"),
    ("a public web app", 400, "invalid_grant"),
    ("a native app", 400, "invalid_grant"),
    ("the owner's id with another app's secret", 401, "invalid_client"),
])
def test_a_refresh_token_of_one_web_app_is_refused_to_another(
        app, browser, backend, webapp, other_webapp, spa, native_client, thief, status, error):
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge, scope="openid offline_access")
    refresh_token = redeem(backend, webapp, code, verifier).get_json()["refresh_token"]
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    headers = {}
    if thief == "another confidential web app":
        headers = basic(other_webapp)
    elif thief == "a public web app":
        data["client_id"] = spa.client_id
    elif thief == "a native app":
        data["client_id"] = native_client.client_id
    else:
        headers = basic(webapp, other_webapp.secret)
    with stores_nothing(app):
        response = backend.post("/oauth/token", data=data, headers=headers)
    assert_oauth_error(response, status, error)
    owner = backend.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh_token}, headers=basic(webapp))
    assert owner.status_code == 200, owner.get_json()
    assert owner.get_json()["refresh_token"] != refresh_token


# --- response types, request objects, response modes, repeats -------------------------------------


@pytest.mark.parametrize("response_type, error", [
    (None, "invalid_request"),
    ("", "invalid_request"),
    ("token", "unsupported_response_type"),
    ("id_token", "unsupported_response_type"),
    ("code id_token", "unsupported_response_type"),
    ("id_token token", "unsupported_response_type"),
    ("none", "unsupported_response_type"),
    ("CODE", "unsupported_response_type"),
])
def test_response_types_other_than_code_are_refused_by_redirect(app, browser, webapp,
                                                                response_type, error):
    _, challenge = pkce()
    with stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge,
                                                       response_type=response_type))
    assert_error_redirect(response, error)


@pytest.mark.parametrize("name, error", [
    ("request", "request_not_supported"),
    ("request_uri", "request_uri_not_supported"),
])
def test_request_objects_are_not_supported(app, browser, webapp, name, error):
    _, challenge = pkce()
    value = "eyJhbGciOiJub25lIn0.eyJyZWRpcmVjdF91cmkiOiJodHRwczovL2V2aWwuZXhhbXBsZSJ9." \
        if name == "request" else "https://evil.example/request.jwt"
    with stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge, **{name: value}))
    assert_error_redirect(response, error)


@pytest.mark.parametrize("mode", ["fragment", "FORM_POST", "query.jwt", "form_post.jwt",
                                  "web_message", "query "])
def test_an_unknown_response_mode_stays_on_our_page(app, browser, webapp, caplog, mode):
    _, challenge = pkce()
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, authorize_params(webapp, challenge, response_mode=mode))
    assert_our_error_page(response)
    assert refusals(caplog) == ["response_mode_unsupported"]


@pytest.mark.parametrize("name", ["scope", "nonce", "response_type", "code_challenge",
                                  "code_challenge_method", "prompt", "max_age", "audience"])
def test_a_repeated_parameter_is_invalid_request_by_redirect(app, browser, webapp, caplog, name):
    _, challenge = pkce()
    params = authorize_params(webapp, challenge, max_age="60", prompt="consent",
                              audience="https://siwa.test/api")
    params[name] = [params[name], params[name]]
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, params)
    assert_error_redirect(response, "invalid_request")
    assert refusals(caplog) == ["duplicate_parameter"]


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "response_mode", "state"])
def test_a_repeated_parameter_saying_where_to_answer_stays_on_our_page(app, browser, webapp,
                                                                      caplog, name):
    _, challenge = pkce()
    params = authorize_params(webapp, challenge, response_mode="query")
    params[name] = [params[name], params[name]]
    with caplog.at_level(logging.INFO), stores_nothing(app):
        response = authorize(browser, params)
    assert_our_error_page(response)
    assert refusals(caplog) == ["repeated_" + name]


def test_an_empty_repeat_is_no_repeat(app, browser, webapp):
    _, challenge = pkce()
    params = authorize_params(webapp, challenge)
    params["scope"] = [params["scope"], ""]
    assert "code" in answer(authorize(browser, params))



# --- registration: what can never become a redirect URI, and the secret -------------------------

NEVER_REGISTERED = {
    "fragment": "https://app.example/callback#x",
    "empty fragment": "https://app.example/callback#",
    "wildcard host": "https://*.app.example/callback",
    "wildcard path": "https://app.example/*",
    "userinfo": "https://app.example@evil.example/callback",
    "user and password": "https://user:pw@app.example/callback",
    "dot-dot segment": "https://app.example/evil/../callback",
    "dot segment": "https://app.example/./callback",
    "encoded dot segment": "https://app.example/evil/%2e%2e/callback",
    "encoded dot, upper case": "https://app.example/%2E/callback",
    "backslash": "https://app.example\\@evil.example/callback",
    "plain http": "http://app.example/callback",
    "relative": "/callback",
    "scheme-relative": "//app.example/callback",
    "no host": "https:app.example/callback",
    "nothing but a scheme": "https://",
    "javascript": "javascript:alert(document.domain)",
    "data": "data:text/html,<script>alert(1)</script>",
    "custom scheme": "com.example.app:/callback",
    "space": "https://app.example/call back",
    "line break": "https://app.example/callback\n",
    "NUL": "https://app.example/callback\x00",
    "empty": "",
    "too long": "https://app.example/" + "a" * 2000,
    "port out of range": "https://app.example:99999/callback",
    "port not a number": "https://app.example:https/callback",
}


@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris",
                                   "backchannel_logout_uri"])
@pytest.mark.parametrize("uri", NEVER_REGISTERED.values(), ids=NEVER_REGISTERED.keys())
def test_a_uri_a_browser_could_be_bent_through_is_never_registered(app, uri, field):
    options = {"redirect_uris": [APP_REDIRECT]}
    if field == "backchannel_logout_uri":
        options[field] = uri
    else:
        options[field] = [APP_REDIRECT, uri] if field == "redirect_uris" else [uri]
    with app.app_context(), stores_nothing(app):
        with pytest.raises(clients.ClientError):
            clients.create_web(db.session, name="Hostile", production=False, **options)
        db.session.rollback()


@pytest.mark.parametrize("uri", ["http://localhost:8400/callback", "http://127.0.0.1/callback",
                                 "http://[::1]:8400/callback"])
def test_plain_http_is_for_loopback_outside_production_only(app, uri):
    with app.app_context(), stores_nothing(app):
        with pytest.raises(clients.ClientError):
            clients.create_web(db.session, name="Dev", redirect_uris=[uri], production=True)
        db.session.rollback()
    with app.app_context():
        client, _ = clients.create_web(db.session, name="Dev", redirect_uris=[uri],
                                       production=False)
        assert client.redirect_uris == [uri]


@pytest.mark.parametrize("audience", ["https://api.example\n", "https://api.example/ x",
                                      "cli_" + "a" * 24, ""])
def test_an_api_audience_must_be_one_printable_identifier(app, audience):
    with app.app_context(), stores_nothing(app):
        with pytest.raises(clients.ClientError):
            clients.create_web(db.session, name="API", redirect_uris=[APP_REDIRECT],
                               audiences=[audience])
        db.session.rollback()


def test_a_web_client_without_redirect_uris_is_refused(app):
    with app.app_context(), stores_nothing(app):
        with pytest.raises(clients.ClientError):
            clients.create_web(db.session, name="Nowhere", redirect_uris=[])
        db.session.rollback()


def test_the_secret_is_shown_once_and_kept_only_as_a_hash(app, webapp, spa):
    assert len(webapp.secret) >= 43  # 256 random bits
    stored = json.dumps(snapshot(app, "clients"), default=str)
    assert webapp.secret not in stored
    with app.app_context():
        confidential = db.session.get(Client, webapp.client_id)
        public = db.session.get(Client, spa.client_id)
        shown = json.dumps([clients.as_dict(confidential), clients.as_dict(public)])
        assert confidential.secret_hash and confidential.secret_hash not in shown
        assert webapp.secret not in shown
        assert public.secret_hash is None and spa.secret is None
        assert not clients.secret_matches_hash(None, webapp.secret)
        assert not clients.secret_matches_hash(confidential.secret_hash, "")
        assert not clients.secret_matches_hash(confidential.secret_hash, webapp.secret + "x")
        assert not clients.secret_matches_hash(confidential.secret_hash, "x" * 513)
        assert clients.secret_matches_hash(confidential.secret_hash, webapp.secret)


def test_a_rotated_secret_stops_working_at_once(app, browser, backend, webapp):
    with app.app_context():
        new = clients.rotate_secret(db.session, webapp.client_id)
        db.session.commit()
    verifier, challenge = pkce()
    code = code_for(browser, webapp, challenge)
    with stores_nothing(app):
        old = redeem(backend, webapp, code, verifier)
    assert_oauth_error(old, 401, "invalid_client")
    assert redeem(backend, WebApp(webapp.client_id, new), code, verifier).status_code == 200


@pytest.mark.parametrize("whose", ["public web app", "native app", "unknown"])
def test_only_a_confidential_web_app_has_a_secret_to_rotate(app, spa, native_client, whose):
    client_id = {"public web app": spa.client_id, "native app": native_client.client_id,
                 "unknown": "cli_" + "u" * 24}[whose]
    with app.app_context():
        before = snapshot(app, "clients")
        with pytest.raises(clients.ClientError):
            clients.rotate_secret(db.session, client_id)
        db.session.rollback()
    assert snapshot(app, "clients") == before
