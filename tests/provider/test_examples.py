"""The relying-party examples of docs/web-apps.md, end to end over HTTP: siwa-web and a
standalone Apple emulator (`live_server`), the example running on a third server, and a
`requests` browser going through every page — siwa-web's sign-in page, the emulator's, its
form_post, the consent page — as a person would."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from siwa_web.infra.extensions import db
from siwa_web.oauth import clients
from support.browser_http import HttpBrowser
from support.browser_http import answer_consent
from support.browser_http import is_consent_page
from support.browser_http import sign_in_with_apple

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
HOST = "127.0.0.1"  # the emulator's host too: another site than siwa-web's localhost


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def load_example(name: str, monkeypatch, **env: str) -> ModuleType:
    """Import docs/examples/<name>.py afresh, reading `env` as its environment."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module_name = f"example_{name}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


def create_with_cli(live_server, *args: str) -> dict:
    """`flask clients create --type web …`, as an operator runs it; its JSON output."""
    result = live_server.app.test_cli_runner().invoke(
        args=["clients", "create", "--type", "web", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@dataclass
class RunningExample:
    url: str
    module: ModuleType
    client: dict
    userinfo_calls: list


@pytest.fixture
def flask_example(live_server, monkeypatch):
    """Start docs/examples/webapp_flask.py, registered with the CLI (first-party or not)."""
    servers = []

    def start(*, first_party: bool, name: str = "Example web app") -> RunningExample:
        port = free_port()
        url = f"http://{HOST}:{port}"
        client = create_with_cli(live_server, "--name", name, "--redirect-uri", url + "/callback",
                                 *(["--first-party"] if first_party else []))
        assert client["token_endpoint_auth_method"] == "client_secret_basic"
        module = load_example(
            "webapp_flask", monkeypatch, SIWA_ISSUER=live_server.url,
            CLIENT_ID=client["client_id"], CLIENT_SECRET=client["client_secret"],
            APP_SECRET_KEY=uuid.uuid4().hex)
        calls: list = []
        real_userinfo = module.oauth.siwa.userinfo

        def userinfo(**kwargs):  # records what /userinfo answered, and with which tokens
            claims = real_userinfo(**kwargs)
            calls.append((kwargs["token"], dict(claims)))
            return claims

        monkeypatch.setattr(module.oauth.siwa, "userinfo", userinfo)
        server = make_server(HOST, port, module.app, threaded=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return RunningExample(url, module, client, calls)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


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

    signed_out = browser.submit(page.form(), "Sign out")
    assert "Not signed in" in signed_out.text
    mark = len(browser.visits)
    again = browser.click(signed_out, "Sign in")
    assert "Signed in as Ada Lovelace <ada@example.com>" in again.text
    assert [path_of(v.url) for v in browser.visits[mark:]] == [
        app + "/login", siwa + "/oauth/authorize", app + "/callback", app + "/"]
    assert not browser.visited(apple, since=mark)  # single sign-on: no trip to Apple
    sids = {token["userinfo"]["sid"] for token, _ in webapp.userinfo_calls}
    assert len(sids) == 1  # both ID tokens name the same siwa-web browser session

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

    signed_out = browser.submit(page.form(), "Sign out")
    mark = len(browser.visits)
    page = browser.click(signed_out, "Sign in")
    assert "Signed in as Grace Hopper <" in page.text
    assert not browser.visited(live_server.url + "/oauth/authorize/consent", since=mark)


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
