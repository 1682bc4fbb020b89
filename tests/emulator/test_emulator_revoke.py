"""`/auth/revoke`: RFC 7009 answers, consent reset, token invalidation, the request log."""
from __future__ import annotations

import hashlib
import json

import pytest

from support.emulator import OTHER_WEB_ID
from support.emulator import WEB_ID

TOKEN_REVOKED = {"error": "invalid_grant",
                 "error_description": "The token has expired or has been revoked."}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def tokens(emu) -> dict:
    """A signed-in user's token response."""
    return emu.redeem(emu.fields()["code"]).get_json()


def _refresh(emu, token: str, client_id: str = WEB_ID):
    return emu.token(client_id, grant_type="refresh_token", refresh_token=token)


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token", "bogus"])
def test_revoking_refresh_token_is_200_empty_and_kills_it(emu, tokens, hint):
    form = {"token_type_hint": hint} if hint else {}
    resp = emu.revoke(tokens["refresh_token"], **form)
    assert resp.status_code == 200
    assert resp.data == b""
    assert _refresh(emu, tokens["refresh_token"]).get_json() == TOKEN_REVOKED


def test_revoking_access_token_revokes_the_session(emu, tokens):
    assert emu.revoke(tokens["access_token"]).status_code == 200
    assert _refresh(emu, tokens["refresh_token"]).get_json() == TOKEN_REVOKED


def test_after_revoke_the_next_authorization_is_first_again(emu, tokens):
    user = emu.admin("users", method="GET").get_json()["users"][0]
    assert user["authorization"]["status"] == "authorized"
    emu.revoke(tokens["refresh_token"])
    user = emu.admin("users", method="GET").get_json()["users"][0]
    assert user["authorization"]["status"] == "revoked"
    again = emu.fields(account=user["id"], choice="hide")
    assert json.loads(again["user"]) == {"name": {"firstName": "Maria", "lastName": "Ruiz"},
                                         "email": user["relay_email"]}
    assert emu.verify(again["id_token"]).claims["sub"] == user["sub"]


def test_revoke_invalidates_outstanding_codes(emu, tokens):
    user_id = emu.admin("users", method="GET").get_json()["users"][0]["id"]
    pending = emu.fields(account=user_id)["code"]
    emu.revoke(tokens["refresh_token"])
    assert emu.redeem(pending).get_json()["error_description"] == \
        "The code has expired or has been revoked."


@pytest.mark.parametrize("token", ["r-unknown", "x" * 4000, "' OR 1=1 --"])
def test_unknown_token_is_200(emu, token):
    resp = emu.revoke(token)
    assert resp.status_code == 200 and resp.data == b""


def test_already_revoked_is_200(emu, tokens):
    assert emu.revoke(tokens["refresh_token"]).status_code == 200
    assert emu.revoke(tokens["refresh_token"]).status_code == 200


def test_token_of_another_client_is_invalid_grant_and_stays_valid(emu, tokens):
    resp = emu.revoke(tokens["refresh_token"], client_id=OTHER_WEB_ID)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_grant"
    assert _refresh(emu, tokens["refresh_token"]).status_code == 200


def test_token_is_required(emu):
    resp = emu.client.post("/auth/revoke", data={"client_id": WEB_ID,
                                                 "client_secret": emu.secret()})
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "invalid_request",
                               "error_description": "token is required."}


def test_revoke_needs_a_form_body(emu, tokens):
    resp = emu.client.post("/auth/revoke", json={"client_id": WEB_ID, "client_secret": emu.secret(),
                                                 "token": tokens["refresh_token"]})
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_request"
    assert _refresh(emu, tokens["refresh_token"]).status_code == 200


def test_request_log_has_fingerprints_never_secrets(emu, tokens):
    secret = emu.secret()
    emu.client.post("/auth/revoke", data={"client_id": WEB_ID, "client_secret": secret,
                                          "token": tokens["refresh_token"],
                                          "token_type_hint": "refresh_token"})
    log = emu.admin("requests?endpoint=revoke", method="GET").get_json()["requests"]
    assert len(log) == 1
    entry = log[0]
    assert entry["endpoint"] == "revoke" and entry["client_id"] == WEB_ID
    assert entry["token_type_hint"] == "refresh_token" and entry["status"] == 200
    assert entry["token_sha256"] == sha256(tokens["refresh_token"])
    everything = json.dumps(emu.admin("requests", method="GET").get_json())
    for raw in (tokens["refresh_token"], tokens["access_token"], secret):
        assert raw not in everything
    user = emu.admin("users", method="GET").get_json()["users"][0]
    assert user["refresh_tokens"] == [{"sha256": entry["token_sha256"], "client_id": WEB_ID,
                                       "revoked": True}]


def test_request_log_records_token_calls_and_errors(emu):
    code = emu.fields()["code"]
    emu.redeem(code)
    emu.redeem(code)
    log = emu.admin("requests?endpoint=token", method="GET").get_json()["requests"]
    assert [(r["grant_type"], r["status"], r["error"]) for r in log] == [
        ("authorization_code", 200, None), ("authorization_code", 400, "invalid_grant")]
    assert {r["token_sha256"] for r in log} == {sha256(code)}
