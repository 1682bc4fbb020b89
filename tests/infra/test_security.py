"""Security headers on every response of the app (siwa_web/security.py)."""
from __future__ import annotations

import pytest
from flask import Flask
from flask import Response

from siwa_web.infra.security_headers import HSTS
from siwa_web.infra.security_headers import SecurityHeaders

DEFAULTS = [("Content-Security-Policy", "default-src 'self'"), ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]


def _wrapped(headers: list[tuple[str, str]], *, always_https: bool = False) -> Flask:
    inner = Flask(__name__)

    @inner.get("/")
    def view():
        return Response("{}", headers=headers, mimetype="application/json")

    inner.wsgi_app = SecurityHeaders(inner.wsgi_app, DEFAULTS, always_https)  # type: ignore
    return inner


def _all(response, name: str) -> list[str]:
    return response.headers.getlist(name)


def test_every_default_once_over_http():
    response = _wrapped([]).test_client().get("/")
    for name, value in DEFAULTS:
        assert _all(response, name) == [value]
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("always_https, base_url, hsts", [
    (False, "https://siwa.example", True),  # the request came over TLS (or ProxyFix said so)
    (True, "http://siwa.example", True),    # the issuer is https: every response carries it
    (False, "http://siwa.example", False),
])
def test_hsts_only_where_https(always_https, base_url, hsts):
    response = _wrapped([], always_https=always_https).test_client().get("/", base_url=base_url)
    assert (_all(response, HSTS[0]) == [HSTS[1]]) is hsts


@pytest.mark.parametrize("name", ["Content-Security-Policy", "content-security-policy",
                                  "X-FRAME-OPTIONS"])
def test_a_view_that_sets_its_own_keeps_it(name):
    response = _wrapped([(name, "mine")]).test_client().get("/")
    assert _all(response, name) == ["mine"]  # not doubled, not overwritten
    others = [d for d in DEFAULTS if d[0].lower() != name.lower()]
    for other, value in others:
        assert _all(response, other) == [value]


def test_api_responses_carry_them(app, client):
    response = client.get("/api/me")  # a 401 from the Bearer check
    assert response.status_code == 401
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
