"""Every error a browser can reach gets siwa-web's page: what happened, what to do, how long to
wait, a reference — never Werkzeug's wording. JSON endpoints keep their JSON errors."""
from __future__ import annotations

import re

import pytest
from werkzeug.exceptions import abort

from support.config import count_rows
from support.dashboard import Browser
from support.web import CALLBACK

WERKZEUG_WORDING = ("Method Not Allowed", "The method is not allowed", "Not Found",
                    "The requested URL was not found", "Too Many Requests", "per 1 minute",
                    "Request Entity Too Large", "Bad Request", "Internal Server Error",
                    "The CSRF token")
START_AGAIN = "Start again from the sign-in page."
ALREADY_SIGNED_IN = "You are already signed in: go back to your account."


def boom():
    raise RuntimeError("a bug in a view")


def abort_with(code: int):
    abort(code)


@pytest.fixture
def browser_app(app_config):
    """The app with a low sign-in limit and two routes that fail as a bug or an abort would."""
    from siwa_web import create_app

    app = create_app(app_config | {"RATELIMIT_LOGIN_PER_IP": "2/minute"})
    app.add_url_rule("/test-only/boom", view_func=boom)
    app.add_url_rule("/test-only/abort/<int:code>", view_func=abort_with)
    yield app
    from siwa_web.infra.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _not_found(client):
    return client.get("/no/such/page")


def _callback_by_hand(client):
    return client.get(CALLBACK)


def _too_large(client):
    return client.post(CALLBACK, data={"state": "s" * 70_000})


def _rate_limited(client):
    for _ in range(2):
        assert client.get("/auth/apple/login").status_code == 303
    return client  # the next request is the refused one


def _bad_request(client):
    return client.post(CALLBACK, data={"code": "c", "id_token": "t"})  # no state


def _crash(client):
    return client.get("/test-only/boom")


def _aborted_500(client):
    return client.get("/test-only/abort/500")


def _csrf_failure(client):
    return client.post("/auth/logout", data={"csrf_token": "forged"})


# id, how to get there, status, words of the title, advice (signed out)
CASES = [
    ("404", _not_found, 404, "Page not found", "Check the address"),
    ("405-callback", _callback_by_hand, 405, "only receives Apple's answer", START_AGAIN),
    ("413", _too_large, 413, "more than siwa-web accepts", "try again with less"),
    ("429", _rate_limited, 429, "Too many attempts", "Wait about"),
    ("400", _bad_request, 400, "no longer valid", START_AGAIN),
    ("500-crash", _crash, 500, "Something went wrong", "Try again in a moment."),
    ("500-abort", _aborted_500, 500, "Something went wrong", "Try again in a moment."),
    ("csrf", _csrf_failure, 400, "This form has expired", "reload the page"),
]


def assert_siwa_page(resp, status: int, title: str, advice: str) -> str:
    assert resp.status_code == status
    assert resp.mimetype == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    html = resp.get_data(as_text=True)
    heading = re.search(r'<h1 id="error-title">([^<]*)</h1>', html)
    assert heading and title in heading.group(1).replace("&#39;", "'")
    assert "<strong>What to do:</strong>" in html and advice in html.replace("&#39;", "'")
    assert re.search(r"Reference: <code>[0-9A-F]{12}</code>", html)
    for words in WERKZEUG_WORDING:
        assert words not in html
    return html


@pytest.mark.parametrize("how, status, title, advice", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_every_browser_error_gets_our_page(browser_app, how, status, title, advice):
    client = browser_app.test_client()
    client.get("/auth/login")  # a browser that has been here: it holds a session cookie
    if how is _rate_limited:
        how(client)
        before = count_rows(browser_app)
        resp = client.get("/auth/apple/login")
    else:
        before = count_rows(browser_app)
        resp = how(client)
    html = assert_siwa_page(resp, status, title, advice)
    after = count_rows(browser_app)
    before.pop("audit_events"), after.pop("audit_events")
    assert after == before  # nothing stored by the refused request
    if status == 429:
        wait = int(resp.headers["Retry-After"])
        assert 1 <= wait <= 60
        assert f"Wait about {wait} second" in html
    else:
        assert "Retry-After" not in resp.headers
    if status == 405:
        assert "POST" in resp.headers["Allow"] and "GET" not in resp.headers["Allow"]
    assert "Back to sign-in" in html


def test_callback_by_hand_while_signed_in_says_so(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    resp = me.client.get(CALLBACK)
    html = assert_siwa_page(resp, 405, "only receives Apple's answer", ALREADY_SIGNED_IN)
    assert "Back to your account" in html and START_AGAIN not in html
    assert me.is_signed_in()


@pytest.mark.parametrize("code", [400, 403, 404, 405, 409, 410, 413, 418, 429, 500, 502, 503])
def test_no_status_falls_back_to_werkzeug(browser_app, code):
    resp = browser_app.test_client().get(f"/test-only/abort/{code}")
    assert resp.status_code == code
    html = resp.get_data(as_text=True)
    assert '<h1 id="error-title">' in html and "Reference: <code>" in html
    assert "<strong>What to do:</strong>" in html
    for words in WERKZEUG_WORDING:
        assert words not in html


@pytest.mark.parametrize("method, path, status", [
    ("get", "/oauth/token", 405), ("get", "/api/no-such-api", 404),
    ("post", "/oauth/token", 413),
])
def test_json_endpoints_keep_json_errors(client, method, path, status):
    data = {"grant_type": "x" * 70_000} if status == 413 else None
    resp = getattr(client, method)(path, data=data)
    assert resp.status_code == status
    assert resp.is_json and "error" in resp.get_json()
