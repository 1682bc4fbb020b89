"""Development over plain http: Safari keeps no `Secure` cookie there, so a sign-in's browser
secret also travels in a `SameSite=Lax` cookie without `Secure` (web/login_tx.py)."""
from __future__ import annotations

import pytest

from siwa_web.infra.extensions import db
from siwa_web.models import User
from siwa_web.web.login_tx import CALLBACK_PATH
from siwa_web.web.login_tx import PLAIN_HTTP_COOKIE
from support.web import CALLBACK
from support.web import callback_form
from support.web import start_login


def _cookies(response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}


@pytest.fixture
def app_config(app_config):
    app_config["SESSION_COOKIE_SECURE"] = False  # what an http ISSUER (make run) sets
    return app_config


def test_over_http_the_secret_also_goes_in_a_lax_cookie_without_secure(client):
    response = client.get("/auth/apple/login")
    cookies = _cookies(response)
    assert "Secure" in cookies["siwa_tx"] and "SameSite=None" in cookies["siwa_tx"]
    plain = cookies[PLAIN_HTTP_COOKIE]
    assert "Secure" not in plain and "SameSite=Lax" in plain and "HttpOnly" in plain
    assert f"Path={CALLBACK_PATH}" in plain
    value = plain.split(";")[0].split("=", 1)[1]
    assert value == cookies["siwa_tx"].split(";")[0].split("=", 1)[1]


def test_a_browser_that_dropped_the_secure_cookie_still_signs_in(app, client, fake_apple):
    start = start_login(client)
    client.delete_cookie("siwa_tx", path=CALLBACK_PATH)  # what Safari does over http
    response = client.post(CALLBACK, data=callback_form(fake_apple, start))
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    with app.app_context():
        assert db.session.query(User).count() == 1
    assert PLAIN_HTTP_COOKIE in _cookies(response)  # cleared once used


def test_neither_cookie_is_still_refused(app, client, fake_apple):
    start = start_login(client)
    client.delete_cookie("siwa_tx", path=CALLBACK_PATH)
    client.delete_cookie(PLAIN_HTTP_COOKIE, path=CALLBACK_PATH)
    response = client.post(CALLBACK, data=callback_form(fake_apple, start))
    assert response.status_code == 400
    with app.app_context():
        assert db.session.query(User).count() == 0


def test_over_https_no_plain_cookie_is_set_nor_read(app, client, fake_apple):
    client.application.config["SESSION_COOKIE_SECURE"] = True
    response = client.get("/auth/apple/login")
    assert PLAIN_HTTP_COOKIE not in _cookies(response)
    start = start_login(client)
    secret = client.get_cookie("__Secure-siwa-tx", path=CALLBACK_PATH).value
    client.delete_cookie("__Secure-siwa-tx", path=CALLBACK_PATH)
    client.set_cookie(PLAIN_HTTP_COOKIE, secret, path=CALLBACK_PATH)  # planted: ignored
    response = client.post(CALLBACK, data=callback_form(fake_apple, start))
    assert response.status_code == 400
    with app.app_context():
        assert db.session.query(User).count() == 0
