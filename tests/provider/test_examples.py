"""The relying-party examples of docs/web-apps.md, end to end over HTTP: siwa-web and a
standalone Apple emulator (`live_server`), the example running on a third server, and a
`requests` browser going through every page — siwa-web's sign-in page, the emulator's, its
form_post, the consent page — as a person would."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests
from joserfc import jwt

from siwa_web.infra.extensions import db
from siwa_web.oauth import clients
from siwa_web.tokens.extension import EXTENSION
from support.browser_http import HttpBrowser
from support.browser_http import answer_consent
from support.browser_http import is_consent_page
from support.browser_http import parse_page
from support.browser_http import sign_in_with_apple
from support.examples import EXAMPLES
from support.examples import FlaskExamples
from support.examples import create_with_cli
from support.examples import free_port
from support.examples import load_example

HOST = "127.0.0.1"  # the emulator's host too: another site than siwa-web's localhost
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture
def flask_example(live_server, monkeypatch):
    """Start docs/examples/webapp_flask.py, registered with the CLI (first-party or not).

    siwa-web delivers back-channel logouts inline here (after the commit, before it answers),
    so a test sees them as soon as the request that ended the session returns.
    """
    live_server.app.config["BACKCHANNEL_LOGOUT_DELIVERY"] = "inline"
    examples = FlaskExamples(live_server, monkeypatch, HOST)
    yield examples.start
    examples.stop()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def test_flask_example_signs_in_through_apple_then_by_single_sign_on(live_server, flask_example):
    webapp = flask_example(first_party=True)
    browser = HttpBrowser()
    home = browser.goto(webapp.url + "/")
    assert "Not signed in" in home.text

    login_page = browser.click(home, "Sign in")
    assert path_of(login_page.url) == live_server.url + "/auth/login", login_page.text[:300]
    assert login_page.query["next"].startswith("/oauth/authorize/resume?request=")
    page = sign_in_with_apple(browser, login_page, first_name="Ada", last_name="Lovelace",
                              email="ada@example.com")
    assert page.status == 200 and page.url == webapp.url + "/", page.text[:300]
    assert "Signed in as Ada Lovelace <ada@example.com>" in page.text

    trip = [(v.method, path_of(v.url)) for v in browser.visits]
    app, siwa, apple = webapp.url, live_server.url, live_server.emulator_url
    assert trip == [
        ("GET", app + "/"),
        ("GET", app + "/login"),
        ("GET", siwa + "/oauth/authorize"),
        ("GET", siwa + "/auth/login"),
        ("GET", siwa + "/auth/apple/login"),
        ("GET", apple + "/auth/authorize"),          # the emulator's sign-in page
        ("POST", apple + "/auth/authorize"),         # new test user → its consent page
        ("POST", apple + "/auth/authorize"),         # Share My Email → form_post page
        ("POST", siwa + "/auth/apple/callback"),     # Apple's cross-site form_post
        ("GET", siwa + "/oauth/authorize/resume"),
        ("GET", app + "/callback"),
        ("GET", app + "/"),
    ]
    answer = parse_qs(urlsplit(browser.visits[-2].url).query)
    assert answer["iss"] == [live_server.url] and set(answer) == {"code", "state", "iss"}

    [(token, claims)] = webapp.userinfo_calls
    assert claims == {"sub": token["userinfo"]["sub"], "name": "Ada Lovelace",
                      "given_name": "Ada", "family_name": "Lovelace",
                      "email": "ada@example.com", "email_verified": True}
    assert token["userinfo"]["aud"] == webapp.client["client_id"]
    assert token["userinfo"]["amr"] == ["fed"] and "refresh_token" not in token

    mark = len(browser.visits)
    again = browser.goto(webapp.url + "/login")  # signed in at siwa-web: no page at all
    assert "Signed in as Ada Lovelace <ada@example.com>" in again.text
    assert [path_of(v.url) for v in browser.visits[mark:]] == [
        app + "/login", siwa + "/oauth/authorize", app + "/callback", app + "/"]
    assert not browser.visited(apple, since=mark)  # single sign-on: no trip to Apple
    sids = {token["userinfo"]["sid"] for token, _ in webapp.userinfo_calls}
    assert len(sids) == 1  # both ID tokens name the same siwa-web browser session
    assert set(webapp.signed_in) == sids  # the example's record of it, by sid

    forged = browser.goto(webapp.url + "/callback?code=x&state=y&iss=https://evil.example")
    assert forged.status == 400  # an answer naming another issuer is refused


def test_flask_example_as_a_third_party_app_asks_for_consent(live_server, flask_example):
    webapp = flask_example(first_party=False, name="Partner Notes")
    browser = HttpBrowser()
    login_page = browser.click(browser.goto(webapp.url + "/"), "Sign in")
    page = sign_in_with_apple(browser, login_page, first_name="Grace", last_name="Hopper",
                              email="grace@example.com", share_email=False)
    assert is_consent_page(page), page.text[:300]
    assert "Allow Partner Notes to use your siwa-web account?" in page.text
    host = urlsplit(webapp.url).netloc
    assert "See your email address" in page.text and f"Partner Notes ({host})" in page.text

    denied = answer_consent(browser, page, allow=False)
    assert denied.status == 400 and "Not signed in: access_denied" in denied.text
    assert webapp.userinfo_calls == []

    mark = len(browser.visits)
    page = browser.click(denied, "Try again")  # signed in at siwa-web: straight to consent
    assert is_consent_page(page) and not browser.visited(live_server.emulator_url, since=mark)
    page = answer_consent(browser, page, allow=True)
    assert "Signed in as Grace Hopper <" in page.text
    [(_, claims)] = webapp.userinfo_calls
    assert claims["email"].endswith("@privaterelay.appleid.com")  # Hide My Email

    mark = len(browser.visits)
    page = browser.goto(webapp.url + "/login")  # the consent is remembered: no page again
    assert "Signed in as Grace Hopper <" in page.text
    assert not browser.visited(live_server.url + "/oauth/authorize/consent", since=mark)


def sign_in_at(browser: HttpBrowser, webapp, **person):
    """From the example's home page through siwa-web and the emulator, back to the example."""
    page = sign_in_with_apple(browser, browser.click(browser.goto(webapp.url + "/"), "Sign in"),
                              **person)
    assert "Signed in as " in page.text, page.text[:300]
    return page


def test_flask_example_sign_out_ends_the_siwa_web_session_too(live_server, flask_example):
    """The example's Sign out ends its own session, then siwa-web's (RP-initiated logout), and
    siwa-web sends the browser back to its /signed-out page with its state. Ending the
    siwa-web session told every app that signed in through it, the asking one too."""
    webapp = flask_example(first_party=True)
    other = flask_example(first_party=True, name="Other web app")
    browser = HttpBrowser()
    page = sign_in_at(browser, webapp)
    assert "Signed in as Ada" in browser.goto(other.url + "/login").text  # single sign-on
    [sid] = webapp.signed_in
    assert list(other.signed_in) == [sid]

    mark = len(browser.visits)
    signed_out = browser.submit(page.form(), "Sign out")
    assert signed_out.status == 200, signed_out.text[:300]
    assert "Signed out, here and at siwa-web" in signed_out.text
    app, siwa = webapp.url, live_server.url
    assert [(v.method, path_of(v.url)) for v in browser.visits[mark:]] == [
        ("POST", app + "/logout"), ("GET", siwa + "/oauth/logout"), ("GET", app + "/signed-out")]
    asked = parse_qs(urlsplit(browser.visits[mark + 1].url).query)
    [(token, _)] = webapp.userinfo_calls
    assert asked == {"id_token_hint": [token["id_token"]], "state": asked["state"],
                     "post_logout_redirect_uri": [app + "/signed-out"]}
    assert parse_qs(urlsplit(signed_out.url).query) == {"state": asked["state"]}

    assert path_of(browser.goto(siwa + "/dashboard").url) == siwa + "/auth/login"
    assert [accepted for _, accepted in webapp.logout_tokens] == [True]  # nothing left to end
    assert [accepted for _, accepted in other.logout_tokens] == [True]
    assert webapp.signed_in == {} and other.signed_in == {}
    assert "Not signed in" in browser.goto(other.url + "/").text
    assert "Not signed in" in browser.goto(app + "/").text
    assert browser.goto(signed_out.url).status == 400  # its state was good for one return


def test_flask_example_backchannel_receiver_checks_the_logout_token(live_server, flask_example):
    """Signing out on siwa-web's own pages reaches the example's receiver with a real logout
    token, which ends the example's session. Anything but a good logout token for this app
    gets 400 and ends nothing; a good one for a session it does not know gets 200."""
    webapp = flask_example(first_party=True)
    browser = HttpBrowser()
    sign_in_at(browser, webapp)
    [first_sid] = webapp.signed_in
    dashboard = browser.goto(live_server.url + "/dashboard")
    browser.submit(dashboard.form(action="/auth/logout"), "Sign out")  # siwa-web's Sign out
    [(real, accepted)] = webapp.logout_tokens
    assert accepted and webapp.signed_in == {}
    assert "Not signed in" in browser.goto(webapp.url + "/").text
    real_claims = unverified_claims(real)
    assert real_claims["sid"] == first_sid and real_claims["events"] == {LOGOUT_EVENT: {}}

    sign_in_at(browser, webapp, new_user=False)  # a new siwa-web session: a new sid
    [sid] = webapp.signed_in
    client_id, sub = webapp.client["client_id"], real_claims["sub"]
    with live_server.app.app_context():
        key = live_server.app.extensions[EXTENSION].keys.signer()

    def signed(typ: str = "logout+jwt", **changes) -> str:
        """A logout token for `sid` signed with siwa-web's key, but for `changes`."""
        now = int(time.time())
        claims = {"iss": live_server.url, "aud": client_id, "iat": now, "exp": now + 120,
                  "jti": str(uuid.uuid4()), "sub": sub, "sid": sid,
                  "events": {LOGOUT_EVENT: {}}, **changes}
        return jwt.encode({"alg": key.alg, "kid": key.kid, "typ": typ},
                          {k: v for k, v in claims.items() if v is not None},
                          key.private, algorithms=[key.alg])

    def post(token: str | None) -> requests.Response:
        data = {} if token is None else {"logout_token": token}
        return requests.post(webapp.url + "/backchannel-logout", data=data, timeout=5)

    head, _, signature = real.split(".")
    tampered = f"{head}.{b64url(json.dumps({**real_claims, 'sid': sid}))}.{signature}"
    now = int(time.time())
    refused = {
        "replayed": real,
        "tampered": tampered,
        "missing": None,
        "empty": "",
        "another app's": signed(aud="cli_another"),
        "another issuer's": signed(iss="https://evil.example"),
        "expired": signed(iat=now - 300, exp=now - 180),
        "issued in the future": signed(iat=now + 600, exp=now + 720),
        "without exp": signed(exp=None),
        "without iat": signed(iat=None),
        "without jti": signed(jti=None),
        "without events": signed(events=None),
        "with another event": signed(events={LOGOUT_EVENT: {}, "urn:other": {}}),
        "with a nonce": signed(nonce="n-1"),
        "naming nobody": signed(sid=None, sub=None),
        "an ID token": webapp.userinfo_calls[-1][0]["id_token"],
        "unsigned": f"{b64url(json.dumps({'alg': 'none'}))}.{b64url(json.dumps({'sid': sid}))}.",
    }
    for what, token in refused.items():
        response = post(token)
        assert response.status_code == 400, what
        assert response.headers["Cache-Control"] == "no-store", what
    assert list(webapp.signed_in) == [sid]  # nothing ended

    unknown = post(signed(sid="a-session-it-never-saw"))  # e.g. a delivery sent again
    assert unknown.status_code == 200 and unknown.headers["Cache-Control"] == "no-store"
    assert list(webapp.signed_in) == [sid]
    assert post(signed(sid=None)).status_code == 200  # no sid: every session of the person
    assert webapp.signed_in == {}
    assert "Not signed in" in browser.goto(webapp.url + "/").text


def test_rp_initiated_logout_posted_from_the_apps_own_page(live_server, flask_example):
    """RP-initiated logout by POST (docs/web-apps.md: `GET` or `POST`), from a page of the app
    — another site than siwa-web's. (Chromium behaves as HttpBrowser does here.)"""
    webapp = flask_example(first_party=True)
    browser = HttpBrowser()
    sign_in_at(browser, webapp)
    [signed_in] = webapp.signed_in.values()
    apps_page = parse_page(webapp.url + "/", 200, f"""
        <form method="post" action="{live_server.url}/oauth/logout">
          <input type="hidden" name="id_token_hint" value="{signed_in['id_token']}">
          <input type="hidden" name="post_logout_redirect_uri" value="{webapp.url}/signed-out">
          <input type="hidden" name="state" value="posted"><button>Sign out</button>
        </form>""")
    back = browser.submit(apps_page.form(), "Sign out")
    assert path_of(back.url) == webapp.url + "/signed-out" and back.query == {"state": "posted"}
    dashboard = browser.goto(live_server.url + "/dashboard")
    assert path_of(dashboard.url) == live_server.url + "/auth/login"  # fails: still signed in


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def unverified_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_spa_example_public_client_with_pkce(live_server, monkeypatch):
    spa = load_example("spa_pkce", monkeypatch)
    redirect_uri = f"http://{HOST}:{free_port()}/spa/callback"  # nothing needs to answer there
    with live_server.app.app_context():
        client, secret = clients.create_web(
            db.session, name="Example SPA", redirect_uris=[redirect_uri], public=True,
            first_party=True, production=False)
        db.session.commit()
        client_id = client.id
    assert secret is None
    browser = HttpBrowser(intercept=(redirect_uri,))
    urls: list[str] = []

    def browser_step(url: str) -> str:
        urls.append(url)
        page = browser.goto(url)
        if not page.intercepted:  # no siwa-web session in this browser yet: its sign-in page
            page = sign_in_with_apple(browser, page, first_name="Alan", last_name="Turing",
                                      email="alan@example.com")
        assert page.intercepted, (page.url, page.text[:300])
        return page.url + "#_"  # what the address bar shows: the fragment siwa-web added

    app = spa.SinglePageApp(live_server.url, client_id, redirect_uri)
    tokens = app.sign_in(browser_step)
    request = parse_qs(urlsplit(urls[0]).query)
    assert request["code_challenge_method"] == ["S256"] and len(request["code_challenge"][0]) == 43
    assert "client_secret" not in request
    assert set(tokens) >= {"access_token", "id_token", "refresh_token", "expires_in"}
    assert tokens["scope"] == "openid profile email offline_access"
    claims = app.id_token_claims
    assert claims["aud"] == client_id and claims["iss"] == live_server.url
    assert claims["name"] == "Alan Turing" and claims["amr"] == ["fed"]

    info = app.userinfo()
    assert info["sub"] == claims["sub"] and info["email"] == "alan@example.com"

    first_refresh = tokens["refresh_token"]
    refreshed = app.refresh()
    assert refreshed["refresh_token"] != first_refresh  # rotated
    assert refreshed["access_token"] != tokens["access_token"]
    assert app.userinfo()["sub"] == claims["sub"]  # with the new access token

    mark = len(browser.visits)
    other = spa.SinglePageApp(live_server.url, client_id, redirect_uri)
    other.sign_in(browser_step)  # the same browser again: single sign-on
    assert not browser.visited(live_server.emulator_url, since=mark)
    assert other.id_token_claims["sub"] == claims["sub"]

    app.sign_out()
    with pytest.raises(requests.HTTPError) as refused:
        app.userinfo()
    assert refused.value.response.status_code == 401
    assert other.userinfo()["sub"] == claims["sub"]  # another app session: still alive


def test_spa_example_as_a_script(live_server, monkeypatch, capsys):
    """`python docs/examples/spa_pkce.py …`: the person pastes the address they ended on."""
    spa = load_example("spa_pkce", monkeypatch)
    redirect_uri = f"http://{HOST}:{free_port()}/callback"
    client = create_with_cli(live_server, "--public", "--name", "Example SPA",
                             "--redirect-uri", redirect_uri)
    assert client["public"] and "client_secret" not in client
    browser = HttpBrowser(intercept=(redirect_uri,))

    def person(prompt: str) -> str:
        url = capsys.readouterr().out.split("Open this URL and sign in:")[1].split()[0]
        page = sign_in_with_apple(browser, browser.goto(url), email="script@example.com")
        assert is_consent_page(page)  # not --first-party: asked once
        page = answer_consent(browser, page, allow=True)
        assert page.intercepted
        return page.url + "#_"

    monkeypatch.setattr("builtins.input", person)
    status = spa.main(["--issuer", live_server.url, "--client-id", client["client_id"],
                       "--redirect-uri", redirect_uri])
    out = capsys.readouterr().out
    assert status == 0, out
    assert '"email": "script@example.com"' in out and '"refresh_token"' in out
    assert out.rstrip().endswith("== signed out (refresh token revoked)")


def test_flask_example_runs_as_a_script(tmp_path):
    """`python docs/examples/webapp_flask.py` serves on PORT (nothing is asked of siwa-web
    before someone signs in)."""
    port = free_port()
    env = {**os.environ, "SIWA_ISSUER": "http://localhost:9", "CLIENT_ID": "cli_example",
           "CLIENT_SECRET": "secret", "APP_SECRET_KEY": "dev", "PORT": str(port)}
    process = subprocess.Popen([sys.executable, str(EXAMPLES / "webapp_flask.py")], env=env,
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = requests.get(f"http://{HOST}:{port}/", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "the example did not start"
                time.sleep(0.1)
        assert response.status_code == 200 and "Not signed in" in response.text
    finally:
        process.terminate()
        process.wait(timeout=10)
