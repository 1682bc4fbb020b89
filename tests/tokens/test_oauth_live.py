"""End to end over HTTP with the Apple emulator: scripts/native_demo.py and the runnable
validation example of docs/api-tokens.md (PyJWT + requests, no siwa-web code)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from siwa_web.infra.extensions import db
from siwa_web.oauth import clients as client_registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "validate_token.py"
DEMO = ROOT / "scripts" / "native_demo.py"
BUNDLE = "com.example.demo.ios"


@pytest.fixture
def demo_client(live_server) -> str:
    with live_server.app.app_context():
        client = client_registry.create(db.session, name="Demo iOS", bundle_id=BUNDLE)
        db.session.commit()
        return client.id


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def native_tokens(live_server, client_id: str) -> dict:
    """Sign in on the emulated device and exchange the code, as an app would."""
    raw = "example-nonce"
    credential = requests.post(live_server.emulator_url + "/__emulator/native/authorize", json={
        "bundle_id": BUNDLE, "email": "api@example.com",
        "nonce": hashlib.sha256(raw.encode()).hexdigest()}, timeout=10).json()
    response = requests.post(live_server.url + "/oauth/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": credential["authorizationCode"],
        "subject_token_type": "http://auth0.com/oauth/token-type/apple-authz-code",
        "client_id": client_id, "scope": "openid offline_access", "nonce": raw}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_native_demo_script(live_server, demo_client):
    result = run(DEMO, "--base-url", live_server.url, "--apple-url", live_server.emulator_url,
                 "--client-id", demo_client, "--bundle-id", BUNDLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done: sign-in, API call, refresh and revocation behaved as documented" in result.stdout


def test_native_demo_without_apple_url_says_what_is_wrong(live_server, demo_client):
    """The app runs with a standalone emulator, so <base-url>/__apple is siwa-web's 404 page."""
    result = run(DEMO, "--base-url", live_server.url, "--client-id", demo_client,
                 "--bundle-id", BUNDLE)
    assert result.returncode == 1
    assert (f"POST {live_server.url}/__apple/__emulator/native/authorize answered 404 "
            "(text/html)") in result.stderr
    assert "--apple-url http://127.0.0.1:5001" in result.stderr
    assert "Expecting value" not in result.stderr and "Traceback" not in result.stderr


def test_native_demo_says_when_nothing_answers(live_server, demo_client):
    result = run(DEMO, "--base-url", live_server.url, "--apple-url", "http://127.0.0.1:9",
                 "--client-id", demo_client, "--bundle-id", BUNDLE)
    assert result.returncode == 1
    assert "nothing answers at http://127.0.0.1:9" in result.stderr
    assert "--apple-url" in result.stderr


def _exported(stdout: str) -> dict[str, str]:
    """What `eval "$(... --export)"` would set, read back by the shell itself."""
    shell = subprocess.run(["bash", "-c", stdout + '\nenv -0'], capture_output=True, text=True,
                           timeout=30, check=True)
    return dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)


def test_native_demo_exports_usable_tokens(live_server, demo_client):
    result = run(DEMO, "--base-url", live_server.url, "--apple-url", live_server.emulator_url,
                 "--client-id", demo_client, "--bundle-id", BUNDLE, "--export")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("export ACCESS_TOKEN=")
    env = _exported(result.stdout)
    me = requests.get(live_server.url + "/api/me", timeout=10,
                      headers={"Authorization": "Bearer " + env["ACCESS_TOKEN"]})
    assert me.status_code == 200, me.text
    refreshed = requests.post(live_server.url + "/oauth/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": env["REFRESH_TOKEN"],
        "client_id": demo_client})
    assert refreshed.status_code == 200, refreshed.text
    assert env["ID_TOKEN"].count(".") == 2


def test_native_demo_hands_out_an_unspent_apple_code(live_server, demo_client):
    result = run(DEMO, "--base-url", live_server.url, "--apple-url", live_server.emulator_url,
                 "--client-id", demo_client, "--bundle-id", BUNDLE, "--apple-code")
    assert result.returncode == 0, result.stderr
    env = _exported(result.stdout)
    response = requests.post(live_server.url + "/oauth/token", timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": env["APPLE_CODE"],
        "subject_token_type": "http://auth0.com/oauth/token-type/apple-authz-code",
        "client_id": demo_client, "nonce": env["NONCE"]})
    assert response.status_code == 200, response.text


def test_docs_example_accepts_an_access_token(live_server, demo_client):
    tokens = native_tokens(live_server, demo_client)
    result = run(EXAMPLE, "--issuer", live_server.url, "--audience", live_server.url + "/api",
                 tokens["access_token"])
    assert result.returncode == 0, result.stderr
    claims = json.loads(result.stdout)
    assert claims["client_id"] == demo_client and claims["iss"] == live_server.url


@pytest.mark.parametrize("case", ["id_token", "wrong_audience", "tampered", "refresh_token",
                                  "missing_scope"])
def test_docs_example_refuses(live_server, demo_client, case):
    tokens = native_tokens(live_server, demo_client)
    audience, args = live_server.url + "/api", []
    token = tokens["access_token"]
    if case == "id_token":
        token = tokens["id_token"]
    elif case == "wrong_audience":
        audience = "https://another-api.example"
    elif case == "tampered":
        head, body, sig = token.split(".")
        token = ".".join([head, body, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    elif case == "refresh_token":
        token = tokens["refresh_token"]
    else:
        args = ["--scope", "read:things"]
    # "--": a refresh token may start with "-", which argparse would take for an option
    result = run(EXAMPLE, "--issuer", live_server.url, "--audience", audience, *args, "--", token)
    assert result.returncode in (1, 2)
    assert ("insufficient_scope" if case == "missing_scope" else "invalid_token") in result.stderr
