"""End to end over HTTP with the Apple emulator: scripts/native_demo.py and the runnable
validation example of docs/api-tokens.md (PyJWT + requests, no siwa-web code)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
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


# --- the example when siwa-web's keys cannot be fetched ------------------------------------------


def _example_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("validate_token", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_docs_example_answers_503_when_the_jwks_is_unreachable(live_server, demo_client):
    tokens = native_tokens(live_server, demo_client)
    result = run(EXAMPLE, "--issuer", live_server.url, "--audience", live_server.url + "/api",
                 "--jwks-url", "http://127.0.0.1:9/.well-known/jwks.json",
                 tokens["access_token"])
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("503 temporarily_unavailable: ")
    assert "Retry-After: 30" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_docs_example_falls_back_to_the_stale_key_set(live_server, demo_client):
    """Cached keys outlive an outage; a kid they do not know is a 503, not a 401 or a 500."""
    import requests_mock

    example = _example_module()
    tokens = native_tokens(live_server, demo_client)
    jwks_url = live_server.url + "/.well-known/jwks.json"
    published = requests.get(jwks_url, timeout=10).json()
    validator = example.AccessTokenValidator(live_server.url, live_server.url + "/api",
                                             max_age=0, refetch_cooldown=0)
    bearer = "Bearer " + tokens["access_token"]
    with requests_mock.Mocker() as apple_side:
        apple_side.get(jwks_url, [{"json": published}, {"status_code": 503},
                                  {"exc": requests.ConnectionError}, {"status_code": 503}])
        fresh = example.bearer_answer(validator, bearer)
        assert fresh.status == 200 and fresh.claims["client_id"] == demo_client
        stale = example.bearer_answer(validator, bearer)  # the refetch fails: stale keys serve
        assert stale.status == 200 and apple_side.call_count == 2
        head, body, sig = tokens["access_token"].split(".")
        import base64
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        header["kid"] = "rotated-meanwhile"
        other = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
        unknown = example.bearer_answer(validator, f"Bearer {other}.{body}.{sig}")
        assert unknown.status == 503
        assert unknown.headers == {"Retry-After": "30"}
        assert unknown.body["error"] == "temporarily_unavailable"
    too_old = example.AccessTokenValidator(live_server.url, live_server.url + "/api",
                                           max_age=0, refetch_cooldown=0, stale_max=0)
    with requests_mock.Mocker() as apple_side:
        apple_side.get(jwks_url, [{"json": published}, {"status_code": 500}])
        assert example.bearer_answer(too_old, bearer).status == 200
        time.sleep(0.01)
        assert example.bearer_answer(too_old, bearer).status == 503


@pytest.mark.parametrize(("header", "status", "challenge"), [
    (None, 401, 'Bearer realm="api"'),
    ("Basic dXNlcjpwdw==", 401, 'Bearer realm="api"'),
    ("Bearer not-a-jwt", 401, 'Bearer realm="api", error="invalid_token"'),
])
def test_docs_example_bearer_answers(live_server, header, status, challenge):
    example = _example_module()
    validator = example.AccessTokenValidator(live_server.url, live_server.url + "/api")
    answer = example.bearer_answer(validator, header)
    assert (answer.status, answer.headers["WWW-Authenticate"]) == (status, challenge)
    assert answer.claims is None and answer.body["error"]


def test_docs_example_insufficient_scope_is_403(live_server, demo_client):
    example = _example_module()
    tokens = native_tokens(live_server, demo_client)
    validator = example.AccessTokenValidator(live_server.url, live_server.url + "/api")
    answer = example.bearer_answer(validator, "Bearer " + tokens["access_token"],
                                   scope="read:things")
    assert answer.status == 403
    assert 'error="insufficient_scope", scope="read:things"' in answer.headers["WWW-Authenticate"]
