"""Browser pages on ISSUER's host only: development redirects GET/HEAD there, production says
which host to use; neither ever builds a URL from the request's Host header."""
from __future__ import annotations

import pytest

from siwa_web import create_app
from siwa_web.web.host import normal_host
from support.config import count_rows

DEV_ISSUER = "http://localhost:5000"


@pytest.fixture
def dev_app(app_config):
    return create_app(app_config | {"ISSUER": DEV_ISSUER, "ENFORCE_ISSUER_HOST": True})


@pytest.fixture
def prod_app(app_config):
    return create_app(app_config | {"ENV": "production", "ENFORCE_ISSUER_HOST": True,
                                    "TOKEN_ENCRYPTION_KEYS": ["x" * 43 + "="]})


@pytest.mark.parametrize("path", ["/", "/auth/login?next=%2Fdashboard", "/dashboard",
                                  "/auth/apple/login", "/no/such/page?a=1&b=%20"])
@pytest.mark.parametrize("method", ["get", "head"])
def test_development_sends_get_and_head_to_issuers_host(dev_app, path, method):
    before = count_rows(dev_app)
    resp = getattr(dev_app.test_client(), method)(path, base_url="http://127.0.0.1:5000")
    assert resp.status_code == 307
    assert resp.headers["Location"] == DEV_ISSUER + path
    assert "Set-Cookie" not in resp.headers  # no attempt or session started on the wrong host
    assert count_rows(dev_app) == before


@pytest.mark.parametrize("host", ["evil.example", "localhost:5000.evil.example", "127.0.0.1:5000",
                                  "localhost:5001", "LOCALHOST:5000@evil.example"])
def test_a_forged_host_never_reaches_the_redirect(dev_app, host):
    resp = dev_app.test_client().get("/auth/login", headers={"Host": host})
    assert resp.status_code == 307
    assert resp.headers["Location"] == DEV_ISSUER + "/auth/login"
    assert "evil" not in resp.headers["Location"]


def test_development_answers_a_post_with_a_page_naming_the_host(dev_app):
    before = count_rows(dev_app)
    resp = dev_app.test_client().post("/auth/apple/callback", data={"state": "s", "code": "c"},
                                      base_url="http://127.0.0.1:5000")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 421 and "Location" not in resp.headers
    assert "siwa-web answers at localhost:5000" in html
    assert "Open http://localhost:5000/ and start again from there." in html
    assert "127.0.0.1" not in html  # the request's host is not echoed
    assert count_rows(dev_app) == before


@pytest.mark.parametrize("host", ["evil.example", "siwa.test.evil.example", "10.0.0.7:8000"])
def test_production_names_the_expected_host_and_never_redirects(prod_app, host):
    before = count_rows(prod_app)
    resp = prod_app.test_client().get("/auth/login", headers={"Host": host})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 421 and "Location" not in resp.headers
    assert "siwa-web answers at siwa.test" in html and "https://siwa.test/" in html
    assert host not in html
    assert resp.headers["Cache-Control"] == "no-store"
    assert count_rows(prod_app) == before


@pytest.mark.parametrize("host", ["siwa.test", "SIWA.TEST", "siwa.test:443", "siwa.test."])
def test_issuers_own_host_passes(prod_app, host):
    resp = prod_app.test_client().get("/auth/login", headers={"Host": host},
                                      base_url="https://siwa.test")
    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/.well-known/openid-configuration",
                                  "/.well-known/jwks.json"])
def test_machines_may_use_any_name(prod_app, path):
    resp = prod_app.test_client().get(path, headers={"Host": "10.0.0.7:8000"})
    assert resp.status_code == 200


def test_api_errors_stay_json_on_another_host(prod_app):
    resp = prod_app.test_client().get("/api/me", headers={"Host": "10.0.0.7:8000"})
    assert resp.status_code == 401 and resp.is_json
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_check_can_be_turned_off(app_config):
    app = create_app(app_config | {"ISSUER": DEV_ISSUER, "ENFORCE_ISSUER_HOST": False})
    resp = app.test_client().get("/auth/login", base_url="http://127.0.0.1:5000")
    assert resp.status_code == 200


@pytest.mark.parametrize("host, scheme, expected", [
    ("Siwa.Test:443", "https", "siwa.test"), ("siwa.test:80", "https", "siwa.test:80"),
    ("localhost:80", "http", "localhost"), ("[::1]:5000", "http", "[::1]:5000"),
    ("[::1]", "http", "[::1]"),
])
def test_normal_host(host, scheme, expected):
    assert normal_host(host, scheme) == expected
