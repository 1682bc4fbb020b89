"""`flask clients create|list|delete` and `flask keys rotate|list`."""
from __future__ import annotations

import json

import pytest

from siwa_web.infra.extensions import db
from siwa_web.models import Client
from support.tokens import exchange
from support.tokens import post_token
from support.tokens import refresh_params


def invoke(runner, *args):
    result = runner.invoke(args=list(args))
    return result


def test_create_prints_the_client_as_json(app, runner):
    result = invoke(runner, "clients", "create", "--name", "Example iOS", "--bundle-id",
                    "com.example.app", "--audience", "https://api.example.com",
                    "--audience", "https://other.example.com", "--scope", "read:things")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["client_id"].startswith("cli_") and len(data["client_id"]) >= 24
    assert data["name"] == "Example iOS" and data["bundle_id"] == "com.example.app"
    assert data["audiences"] == ["https://api.example.com", "https://other.example.com"]
    assert data["scopes"] == ["read:things"]
    with app.app_context():
        assert db.session.get(Client, data["client_id"]).bundle_id == "com.example.app"


def test_client_ids_are_random(runner):
    ids = {json.loads(invoke(runner, "clients", "create", "--name", f"A{i}", "--bundle-id",
                             f"com.example.a{i}").output)["client_id"] for i in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("args, message", [
    (["--name", "X", "--bundle-id", "not a bundle"], "bundle id"),
    (["--name", "X", "--bundle-id", "nodots"], "bundle id"),
    (["--name", "X", "--bundle-id", "com.example.x\n"], "bundle id"),
    (["--name", "", "--bundle-id", "com.example.x"], "name"),
    (["--name", "X", "--bundle-id", "com.example.x", "--audience", "has space"], "audience"),
    (["--name", "X", "--bundle-id", "com.example.x", "--audience", "cli_abc"], "audience"),
    (["--name", "X", "--bundle-id", "com.example.x", "--audience", "https://api.example\n"],
     "audience"),
    (["--name", "X", "--bundle-id", "com.example.x", "--scope", 'bad"scope'], "scope"),
    (["--bundle-id", "com.example.x"], "name"),
])
def test_create_refuses_bad_input(app, runner, args, message):
    result = invoke(runner, "clients", "create", *args)
    assert result.exit_code != 0
    assert message in result.output.lower()
    with app.app_context():
        assert db.session.execute(db.select(Client)).first() is None


def test_duplicate_bundle_id(runner):
    assert invoke(runner, "clients", "create", "--name", "A", "--bundle-id",
                  "com.example.a").exit_code == 0
    result = invoke(runner, "clients", "create", "--name", "B", "--bundle-id", "com.example.a")
    assert result.exit_code != 0 and "already exists" in result.output


def test_list(runner):
    assert json.loads(invoke(runner, "clients", "list").output) == []
    invoke(runner, "clients", "create", "--name", "A", "--bundle-id", "com.example.a")
    invoke(runner, "clients", "create", "--name", "B", "--bundle-id", "com.example.b")
    listed = json.loads(invoke(runner, "clients", "list").output)
    assert [c["name"] for c in listed] == ["A", "B"]
    assert all(set(c) >= {"client_id", "bundle_id", "audiences", "scopes", "created_at"}
               for c in listed)


def test_delete_signs_out_the_apps_users(app, runner, client, fake_apple, native_client):
    session = exchange(client, fake_apple, native_client).get_json()
    result = invoke(runner, "clients", "delete", native_client.client_id, "--yes")
    assert result.exit_code == 0, result.output
    from support.tokens import rows_without_audit

    counts = rows_without_audit(app)
    assert counts["clients"] == 0 and counts["token_families"] == 0
    assert counts["refresh_tokens"] == 0
    refreshed = post_token(client, refresh_params(native_client, session["refresh_token"]))
    assert refreshed.status_code == 401  # the client is gone
    assert client.get("/api/me", headers={
        "Authorization": "Bearer " + session["access_token"]}).status_code == 401


def test_delete_asks_first_and_knows_unknown_ids(runner, native_client):
    result = runner.invoke(args=["clients", "delete", native_client.client_id], input="n\n")
    assert result.exit_code != 0
    assert json.loads(invoke(runner, "clients", "list").output)
    result = invoke(runner, "clients", "delete", "cli_nope", "--yes")
    assert result.exit_code != 0 and "no client" in result.output


def test_keys_list_and_rotate(app, runner):
    assert json.loads(invoke(runner, "keys", "list").output) == []
    first = json.loads(invoke(runner, "keys", "rotate").output)
    assert first["retired"] == []
    second = json.loads(invoke(runner, "keys", "rotate").output)
    assert [r["kid"] for r in second["retired"]] == [first["signing_kid"]]
    listed = json.loads(invoke(runner, "keys", "list").output)
    assert [(k["kid"], k["status"]) for k in listed] == [
        (second["signing_kid"], "signing"), (first["signing_kid"], "published")]
    assert listed[1]["unpublish_after"] == second["retired"][0]["unpublish_after"]
    assert all("private" not in json.dumps(k).lower() for k in listed)


def test_disable_refuses_the_apps_grants_and_tokens_until_enable(app, runner, client, fake_apple,
                                                                 native_client):
    session = exchange(client, fake_apple, native_client).get_json()
    me = {"Authorization": "Bearer " + session["access_token"]}
    assert client.get("/api/me", headers=me).status_code == 200  # cached as alive

    result = invoke(runner, "clients", "disable", native_client.client_id)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["disabled"] is True
    assert json.loads(result.output)["changed"] is True

    refused = client.get("/api/me", headers=me)
    assert refused.status_code == 401
    assert refused.get_json() == {
        "error": "invalid_token",
        "error_description": "The app this access token was issued to is disabled."}
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    refreshed = post_token(client, refresh_params(native_client, session["refresh_token"]))
    assert refreshed.status_code == 401
    assert refreshed.get_json()["error"] == "invalid_client"
    new_exchange = exchange(client, fake_apple, native_client)
    assert new_exchange.status_code == 401
    assert new_exchange.get_json()["error"] == "invalid_client"
    again = invoke(runner, "clients", "disable", native_client.client_id)
    assert again.exit_code == 0 and json.loads(again.output)["changed"] is False

    result = invoke(runner, "clients", "enable", native_client.client_id)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["disabled"] is False
    assert client.get("/api/me", headers=me).status_code == 200
    refreshed = post_token(client, refresh_params(native_client, session["refresh_token"]))
    assert refreshed.status_code == 200, refreshed.get_json()


@pytest.mark.parametrize("audience", ["https://api.example.com", "urn:example:api",
                                      "https://api.example.com/v1"])
def test_audiences_are_absolute_uris(runner, audience):
    result = invoke(runner, "clients", "create", "--name", "A", "--bundle-id", "com.example.a",
                    "--audience", audience)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["audiences"] == [audience]


def test_create_can_print_shell_exports(app, runner):
    result = invoke(runner, "clients", "create", "--name", "Demo iOS", "--bundle-id",
                    "com.example.demo", "--export")
    assert result.exit_code == 0, result.output
    prefix, _, client_id = result.output.strip().partition("=")
    assert prefix == "export CLIENT_ID" and client_id.startswith("cli_")
    with app.app_context():
        assert db.session.get(Client, client_id).bundle_id == "com.example.demo"
    web = invoke(runner, "clients", "create", "--type", "web", "--name", "Web", "--redirect-uri",
                 "https://app.example.com/cb", "--export")
    assert web.exit_code == 0, web.output
    assert web.output.startswith("export CLIENT_ID=cli_") and " CLIENT_SECRET=" in web.output
