"""`flask apple doctor` against the emulator: each misconfiguration is named, with its fix.

The emulator trusts the correct settings (the suite's team, key and Services ID); the doctor
runs in a siwa-web configured with one thing wrong, as an operator's deployment would be.
"""
from __future__ import annotations

import json

import pytest
import requests
import requests_mock
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from siwa_web import create_app
from siwa_web.infra.extensions import db
from siwa_web.ops import apple_checks
from support.apple import BUNDLE_ID
from support.config import SERVICES_ID
from support.teams import AppleSide
from support.teams import new_p8
from support.teams import route_to

PROBE = f"credentials:{SERVICES_ID}"
NATIVE_PROBE = f"credentials:{BUNDLE_ID}"
LOCAL = {"private_key", "team_id", "key_id", "services_id", "native_clients", "redirect_uri"}


@pytest.fixture
def doctor(app_config, app, apple_emulator, native_client):
    """Run `flask apple doctor` in a siwa-web with `overrides`; returns (exit code, JSON)."""
    made = []

    def run(overrides: dict | None = None, *args: str):
        target = app
        if overrides:
            target = create_app({**app_config, **overrides})
            route_to(target, apple_emulator)
            made.append(target)
        result = target.test_cli_runner().invoke(args=["apple", "doctor", *args])
        return result

    yield run
    for extra in made:
        with extra.app_context():
            db.engine.dispose()


def problems(result) -> dict[str, dict]:
    report = json.loads(result.output)
    return {c["name"]: c for c in report["checks"] if not c["ok"]}


def test_a_correct_setup_has_no_problems(doctor, app_config):
    result = doctor(None, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and report["problems"] == 0
    names = {c["name"] for c in report["checks"]}
    assert names == LOCAL | {"keys_endpoint", PROBE, NATIVE_PROBE, "clock"}
    text = doctor().output
    assert "No problems found." in text and "PROBLEM" not in text
    assert "PRIVATE KEY" not in result.output and app_config["APPLE_PRIVATE_KEY"][40:80] not in text


OTHER_KEY = new_p8()

MISCONFIGURED = [
    pytest.param({"APPLE_TEAM_ID": "TEAM-1"}, {"team_id", PROBE, NATIVE_PROBE}, id="team-shape"),
    pytest.param({"APPLE_TEAM_ID": "OTHERTEAM1"}, {PROBE, NATIVE_PROBE}, id="wrong-team"),
    pytest.param({"APPLE_KEY_ID": "key1"}, {"key_id", PROBE, NATIVE_PROBE}, id="key-id-shape"),
    pytest.param({"APPLE_KEY_ID": "OTHERKEY01"}, {PROBE, NATIVE_PROBE}, id="key-id-of-another-key"),
    pytest.param({"APPLE_PRIVATE_KEY": OTHER_KEY}, {PROBE, NATIVE_PROBE}, id="another-private-key"),
    pytest.param({"APPLE_SERVICES_ID": "com.example.unknown"}, {PROBE.replace(
        SERVICES_ID, "com.example.unknown")}, id="unknown-services-id"),
    pytest.param({"APPLE_SERVICES_ID": BUNDLE_ID}, {"services_id", "native_clients"},
                 id="services-id-is-a-bundle-id"),
    pytest.param({"APPLE_SERVICES_ID": "TESTTEAM01." + SERVICES_ID},
                 {"services_id", "credentials:TESTTEAM01." + SERVICES_ID},
                 id="services-id-with-team-prefix"),
    pytest.param({"APPLE_REDIRECT_URI": "http://siwa.test/auth/apple/callback"},
                 {"redirect_uri"}, id="redirect-not-https"),
    pytest.param({"APPLE_REDIRECT_URI": "https://elsewhere.example/auth/apple/callback"},
                 {"redirect_uri"}, id="redirect-not-under-issuer"),
]


@pytest.mark.parametrize("overrides,expected", MISCONFIGURED)
def test_each_misconfiguration_is_named_with_a_fix(doctor, overrides, expected):
    result = doctor(overrides, "--json")
    assert result.exit_code == 1
    found = problems(result)
    assert set(found) == expected
    assert all(c["fix"] for c in found.values())
    for name in found:
        if name.startswith("credentials:"):
            assert "invalid_client" in found[name]["message"]
            assert "APPLE_KEY_ID" in found[name]["fix"]


def test_text_output_says_what_and_how(doctor):
    result = doctor({"APPLE_KEY_ID": "OTHERKEY01"})
    assert result.exit_code == 1
    assert f"PROBLEM  {PROBE}: Apple refused the client secret" in result.output
    assert "fix: Likely causes:" in result.output
    assert "2 problem(s) found." in result.output


FAULTS = [
    pytest.param("keys", {"status": 503, "body": "<html>down</html>"}, {"keys_endpoint"},
                 id="keys-503"),
    pytest.param("keys", {"status": 200, "body": "garbage"}, {"keys_endpoint"},
                 id="keys-garbage"),
    pytest.param("token", {"status": 502, "body": "<html>bad gateway</html>"}, {PROBE},
                 id="token-502"),
    pytest.param("token", {"status": 200, "body": {"unexpected": True}}, {PROBE},
                 id="token-200-without-error"),
]


@pytest.mark.parametrize("endpoint,failure,expected", FAULTS)
def test_a_faulty_apple_is_reported(doctor, apple_emulator, endpoint, failure, expected):
    AppleSide(apple_emulator).fail(endpoint, **failure)
    result = doctor(None, "--json")
    assert result.exit_code == 1
    assert set(problems(result)) == expected


@pytest.mark.parametrize("offset,word", [(100, "behind"), (-100, "ahead of")])
def test_clock_skew_is_measured_against_apples_date(doctor, apple_emulator, offset, word):
    AppleSide(apple_emulator).post("clock", {"offset": offset})
    result = doctor(None, "--json")
    assert result.exit_code == 1
    found = problems(result)
    assert set(found) == {"clock"}
    assert word in found["clock"]["message"] and "NTP" in found["clock"]["fix"]


def test_unreachable_apple_through_the_configured_proxy(app_config, apple_emulator,
                                                        native_client, monkeypatch):
    """HTTPS_PROXY is read when the app starts; the doctor names the proxy, not its password."""
    monkeypatch.setenv("HTTPS_PROXY", "http://ops:hunter2@proxy.internal:3128")
    proxied = create_app(app_config)
    try:
        with requests_mock.Mocker(session=proxied.extensions["siwa.apple"].session) as mocker:
            mocker.register_uri(requests_mock.ANY, requests_mock.ANY,
                                exc=requests.exceptions.ProxyError)
            result = proxied.test_cli_runner().invoke(args=["apple", "doctor"])
    finally:
        with proxied.app_context():
            db.engine.dispose()
    assert result.exit_code == 1
    assert "through proxy http://proxy.internal:3128 failed: ProxyError" in result.output
    assert "hunter2" not in result.output and "ops:" not in result.output
    assert f"PROBLEM  {PROBE}: the probe" in result.output
    assert "clock skew not measured" in result.output


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("pem", [
    None, "", "not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    _pem(rsa.generate_private_key(65537, 2048)), _pem(ec.generate_private_key(ec.SECP384R1())),
], ids=["missing", "empty", "text", "bad-base64", "rsa", "p384"])
def test_a_key_that_is_not_ec_p256_is_a_problem(pem):
    """create_app refuses these at start-up already; the doctor's own check agrees."""
    check = apple_checks.private_key(pem)
    assert not check.ok and ".p8" in check.fix


@pytest.mark.parametrize("uri", [
    "https://siwa.test:443x/cb", "https://127.0.0.1/auth/apple/callback",
    "https://localhost/auth/apple/callback", "https://siwa.test/auth/apple/callback#x",
    "https://siwa.test.evil.example/auth/apple/callback", "ftp://siwa.test/cb", None,
])
def test_redirect_uris_apple_refuses_or_that_leave_the_site(uri):
    assert not apple_checks.redirect_uri(uri, "https://siwa.test").ok


def test_an_http_issuer_is_the_thing_to_fix():
    check = apple_checks.redirect_uri("http://localhost:5000/auth/apple/callback",
                                      "http://localhost:5000")
    assert not check.ok and "set ISSUER to that https URL" in check.fix
