"""`flask clients` for web apps: create (and what it refuses), rotate-secret, list, help."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from siwa_web import create_app
from siwa_web.infra.extensions import db
from support.tokens import bearer
from support.tokens import rows_without_audit
from support.web import csrf_token
from support.web import sign_in
from support.webapps import APP_REDIRECT
from support.webapps import WebApp
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import basic
from support.webapps import pkce
from support.webapps import redeem

WEB_ARGS = ("clients", "create", "--type", "web", "--name", "Example Web")


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def create_web(runner, *args) -> dict:
    result = invoke(runner, *WEB_ARGS, "--redirect-uri", APP_REDIRECT, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def clients_row(app, client_id: str) -> dict:
    """The client's row as the database holds it, every column."""
    with app.app_context():
        return dict(db.session.execute(
            text("SELECT * FROM clients WHERE id = :id"), {"id": client_id}).mappings().one())


def stored_clients(app) -> int:
    with app.app_context():
        return db.session.execute(text("SELECT COUNT(*) FROM clients")).scalar_one()


# --- create --------------------------------------------------------------------------------------


def test_a_confidential_web_client_gets_its_secret_once_and_only_its_hash_is_stored(app, runner):
    data = create_web(
        runner, "--redirect-uri", "http://localhost:8080/cb",
        "--post-logout-redirect-uri", "https://app.example/bye",
        "--backchannel-logout-uri", "https://app.example/logout", "--first-party",
        "--audience", "https://api.example.com", "--scope", "read:things")
    assert data["client_id"].startswith("cli_") and data["type"] == "web"
    assert data["public"] is False and data["first_party"] is True
    assert data["token_endpoint_auth_method"] == "client_secret_basic"
    assert data["redirect_uris"] == [APP_REDIRECT, "http://localhost:8080/cb"]
    assert data["post_logout_redirect_uris"] == ["https://app.example/bye"]
    assert data["backchannel_logout_uri"] == "https://app.example/logout"
    assert data["audiences"] == ["https://api.example.com"] and data["scopes"] == ["read:things"]
    assert "bundle_id" not in data
    secret = data["client_secret"]
    assert len(secret) >= 43  # 256 random bits

    row = clients_row(app, data["client_id"])
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in row.values())

    listed = invoke(runner, "clients", "list")
    assert listed.exit_code == 0
    assert secret not in listed.output and row["secret_hash"] not in listed.output
    [entry] = json.loads(listed.output)
    assert "client_secret" not in entry and "secret_hash" not in entry


def test_a_public_web_client_has_no_secret(app, runner):
    data = create_web(runner, "--public")
    assert data["type"] == "web" and data["public"] is True
    assert data["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in data
    assert clients_row(app, data["client_id"])["secret_hash"] is None


@pytest.mark.parametrize("args, message", [
    (["--redirect-uri", "/callback"], "absolute https://"),
    (["--redirect-uri", "app.example/callback"], "absolute https://"),
    (["--redirect-uri", "https://app.example/cb#top"], "fragment"),
    (["--redirect-uri", "https://good.example@evil.example/cb"], "user information (@)"),
    (["--redirect-uri", "https://*.app.example/cb"], "wildcards"),
    (["--redirect-uri", "https://app.example/*"], "wildcards"),
    (["--redirect-uri", "https://app.example/a/../cb"], "dot segments"),
    (["--redirect-uri", "https://app.example/a/%2e%2e/cb"], "dot segments"),
    (["--redirect-uri", "https://app.example/a b"], "spaces or control characters"),
    (["--redirect-uri", "https://app.example/cb\n"], "spaces or control characters"),
    (["--redirect-uri", "https://app.example/\x00cb"], "spaces or control characters"),
    (["--redirect-uri", "http://app.example/cb"], "loopback"),
    (["--redirect-uri", "javascript:alert(1)"], "absolute https://"),
    (["--redirect-uri", "data:text/html,<script>alert(1)</script>"], "absolute https://"),
    (["--redirect-uri", "https://:443/cb"], "must name a host"),
    (["--redirect-uri", "https://[::1/cb"], "is not a valid url"),
    (["--redirect-uri", "https://evil.example\uff20app.example/cb"], "is not a valid url"),
    (["--redirect-uri", "https://app.example:99999/cb"], "invalid port"),
    ([], "needs at least one --redirect-uri"),
    (["--redirect-uri", APP_REDIRECT, "--post-logout-redirect-uri", "https://app.example/#x"],
     "post-logout redirect uri"),
    (["--redirect-uri", APP_REDIRECT, "--backchannel-logout-uri", "http://app.example/l"],
     "back-channel logout uri"),
    (["--redirect-uri", APP_REDIRECT, "--bundle-id", "com.example.app"],
     "--bundle-id: only for --type native"),
])
def test_create_web_refuses_naming_the_problem_and_stores_nothing(app, runner, args, message):
    result = invoke(runner, *WEB_ARGS, *args)
    assert result.exit_code != 0
    assert message.lower() in result.output.lower(), result.output
    assert "Traceback" not in result.output
    assert stored_clients(app) == 0


@pytest.mark.parametrize("args, flag", [
    (["--redirect-uri", APP_REDIRECT], "--redirect-uri"),
    (["--post-logout-redirect-uri", APP_REDIRECT], "--post-logout-redirect-uri"),
    (["--backchannel-logout-uri", APP_REDIRECT], "--backchannel-logout-uri"),
    (["--public"], "--public"),
    (["--first-party"], "--first-party"),
])
def test_create_native_refuses_web_only_flags(app, runner, args, flag):
    result = invoke(runner, "clients", "create", "--type", "native", "--name", "iOS",
                    "--bundle-id", "com.example.app", *args)
    assert result.exit_code != 0
    assert f"{flag}: only for --type web" in result.output
    assert stored_clients(app) == 0


@pytest.fixture
def production_app(app_config):
    """The app as `SIWA_ENV=production` builds it (the test suite's Apple settings)."""
    config = {k: v for k, v in app_config.items() if k != "TESTING"}
    config.update(ENV="production", APPLE_EMULATOR=None,
                  TOKEN_ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    app = create_app(config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("uri", ["http://localhost:8080/cb", "http://127.0.0.1/cb",
                                 "http://[::1]:3000/cb"])
def test_production_refuses_plain_http_even_on_loopback(app, runner, production_app, uri):
    refused = invoke(production_app.test_cli_runner(), *WEB_ARGS, "--redirect-uri", uri)
    assert refused.exit_code != 0 and "must use https in production" in refused.output
    assert stored_clients(production_app) == 0
    assert create_web(runner, "--redirect-uri", uri)["redirect_uris"][-1] == uri  # development


# --- rotate-secret -------------------------------------------------------------------------------


def _code(client, webapp: WebApp) -> tuple[str, str]:
    verifier, challenge = pkce()
    back = answer(client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge)))
    return back["code"], verifier


def test_rotate_secret_retires_the_old_secret_at_the_token_endpoint(
        app, runner, client, fake_apple):
    created = create_web(runner, "--first-party")
    webapp = WebApp(created["client_id"], created["client_secret"], APP_REDIRECT)
    sign_in(client, fake_apple)
    assert redeem(client, webapp, *_code(client, webapp)).status_code == 200

    result = invoke(runner, "clients", "rotate-secret", webapp.client_id)
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.output)
    assert rotated["client_id"] == webapp.client_id
    new_secret = rotated["client_secret"]
    assert new_secret != webapp.secret and len(new_secret) >= 43
    row = clients_row(app, webapp.client_id)
    assert row["secret_hash"] == hashlib.sha256(new_secret.encode()).hexdigest()
    assert row["secret_rotated_at"] is not None
    assert all(new_secret not in str(value) for value in row.values())

    old = redeem(client, webapp, *_code(client, webapp))  # client_secret_basic, old secret
    assert old.status_code == 401 and old.get_json()["error"] == "invalid_client"
    assert old.headers["WWW-Authenticate"].startswith("Basic")
    new = redeem(client, dataclasses.replace(webapp, secret=new_secret), *_code(client, webapp))
    assert new.status_code == 200, new.get_json()
    assert "id_token" in new.get_json()


@pytest.mark.parametrize("kind, message", [
    ("public web", "public client: it has no secret to rotate"),
    ("native", "native app: it has no secret to rotate"),
    ("unknown", "no client with id cli_nope"),
])
def test_rotate_secret_refuses_clients_without_a_secret(app, runner, kind, message):
    if kind == "public web":
        client_id = create_web(runner, "--public")["client_id"]
    elif kind == "native":
        client_id = json.loads(invoke(runner, "clients", "create", "--name", "iOS",
                                      "--bundle-id", "com.example.app").output)["client_id"]
    else:
        client_id = "cli_nope"
    result = invoke(runner, "clients", "rotate-secret", client_id)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "client_secret" not in result.output
    if kind != "unknown":
        row = clients_row(app, client_id)
        assert row["secret_hash"] is None and row["secret_rotated_at"] is None


# --- list, delete, help --------------------------------------------------------------------------


def test_list_shows_each_clients_type(runner):
    invoke(runner, "clients", "create", "--name", "iOS", "--bundle-id", "com.example.app")
    create_web(runner)
    create_web(runner, "--public")
    listed = json.loads(invoke(runner, "clients", "list").output)
    assert [(c["name"], c["type"]) for c in listed] == [
        ("iOS", "native"), ("Example Web", "web"), ("Example Web", "web")]
    assert [c.get("public") for c in listed] == [None, False, True]


def test_delete_asks_about_a_web_client_by_its_name_and_redirect_uri(app, runner):
    client_id = create_web(runner)["client_id"]
    result = runner.invoke(args=["clients", "delete", client_id], input="n\n")
    assert result.exit_code != 0
    assert "Example Web" in result.output and APP_REDIRECT in result.output
    assert "None" not in result.output
    assert stored_clients(app) == 1


def test_delete_ends_a_web_apps_tokens_codes_and_consents(app, runner, client, fake_apple):
    created = create_web(runner)  # third party: asks for consent
    webapp = WebApp(created["client_id"], created["client_secret"], APP_REDIRECT)
    sign_in(client, fake_apple)
    verifier, challenge = pkce()
    params = authorize_params(webapp, challenge, scope="openid offline_access")
    handle = client.get("/oauth/authorize", query_string=params).headers["Location"].split(
        "request=")[1]
    back = answer(client.post("/oauth/authorize/consent", data={
        "request": handle, "decision": "allow", "csrf_token": csrf_token(client)}))
    tokens = redeem(client, webapp, back["code"], verifier).get_json()
    unused_code = answer(client.get("/oauth/authorize", query_string=params))["code"]
    for path in ("/api/me", "/userinfo"):  # what a worker may now remember about the token
        assert client.get(path, headers=bearer(tokens["access_token"])).status_code == 200

    result = invoke(runner, "clients", "delete", webapp.client_id, "--yes")
    assert result.exit_code == 0, result.output
    counts = rows_without_audit(app)
    assert counts["clients"] == counts["token_families"] == counts["refresh_tokens"] == 0
    assert counts["authorization_codes"] == counts["consents"] == 0
    assert client.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert client.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    refreshed = client.post("/oauth/token", headers=basic(webapp), data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    assert redeem(client, webapp, unused_code, verifier).status_code == 401


def test_help_says_what_each_command_does_and_which_settings_it_reads(runner):
    def help_of(*command: str) -> str:
        result = invoke(runner, "clients", *command, "--help")
        assert result.exit_code == 0
        return " ".join(result.output.split())  # as read, whatever the wrapping

    group = invoke(runner, "clients", "--help").output
    for command in ("create", "rotate-secret", "list", "delete"):
        line = next(line for line in group.splitlines() if line.strip().startswith(command + " "))
        assert len(line.split(None, 1)[1]) > 15, line  # a description, not a stub
    assert "SIWA_SQLALCHEMY_DATABASE_URI" in help_of() and "SIWA_ENV" in help_of()
    create = help_of("create")
    assert "SIWA_ENV" in create and "not production" in create and "https" in create
    assert "shown once" in create and "SHA-256" in create
    rotate = help_of("rotate-secret")
    assert "old secret stops working" in rotate and "confidential" in rotate
    assert "Reads only the database" in rotate
    listing = help_of("list")
    assert "never a secret" in listing and "type" in listing
    assert "--yes" in help_of("delete") and "Reads only the database" in help_of("delete")
