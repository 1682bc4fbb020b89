"""`/__emulator/` controls: users, reset, key rotation, clock, claim typing, scripted failures."""
from __future__ import annotations

import time

import pytest


def _users(emu) -> list[dict]:
    return emu.admin("users", method="GET").get_json()["users"]


def test_create_and_list_users(emu):
    user = emu.user("ann@example.com", "Ann", "Bee")
    assert user["email"] == "ann@example.com" and user["first_name"] == "Ann"
    assert user["relay_email"].endswith("@privaterelay.appleid.com")
    assert user["authorization"] == {"status": "none", "scopes": [], "share_email": True,
                                     "client_id": None}
    assert _users(emu) == [user]
    assert emu.admin(f"users/{user['id']}", method="GET").get_json() == user
    assert emu.admin("users/missing", method="GET").status_code == 404


def test_created_user_can_sign_in_by_id(emu):
    user = emu.user()
    fields = emu.fields(account=user["id"])
    assert emu.verify(fields["id_token"]).claims["sub"] == user["sub"]
    assert _users(emu)[0]["authorization"]["scopes"] == ["email", "name"]


@pytest.mark.parametrize("body", [{}, {"email": ""}, {"email": 5},
                                  {"email": "a@b", "first_name": 3}, ["email"], "text"])
def test_bad_user_bodies(emu, body):
    resp = emu.admin("users", body)
    assert resp.status_code == 400 and resp.get_json()["error"] == "bad_request"
    assert _users(emu) == []


def test_non_json_admin_body(emu):
    resp = emu.client.post("/__emulator/users", data="email=a@b", content_type="text/plain")
    assert resp.status_code == 400


def test_reset_forgets_users_and_tokens_but_keeps_keys(emu):
    tokens = emu.redeem(emu.fields()["code"]).get_json()
    kids = [k["kid"] for k in emu.client.get("/auth/keys").get_json()["keys"]]
    emu.admin("clock", {"offset": 99})
    resp = emu.admin("reset").get_json()
    assert resp == {"reset": True, "kids": kids}
    assert _users(emu) == []
    assert emu.admin("requests", method="GET").get_json()["requests"] == []
    assert emu.admin("clock", method="GET").get_json()["offset"] == 0
    assert emu.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"]) \
        .get_json()["error"] == "invalid_grant"


def test_jwks_starts_with_two_rs256_keys(emu):
    resp = emu.client.get("/auth/keys")
    keys = resp.get_json()["keys"]
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert len(keys) == 2 and keys[0]["kid"] != keys[1]["kid"]
    for key in keys:
        assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}
        assert (key["kty"], key["use"], key["alg"], key["e"]) == ("RSA", "sig", "RS256", "AQAB")
        assert len(key["kid"]) <= 10
        assert len(key["n"]) == 342  # 2048-bit modulus, base64url


def test_key_rotation_changes_signer_and_jwks(emu):
    before = [k["kid"] for k in emu.client.get("/auth/keys").get_json()["keys"]]
    old_token = emu.fields()["id_token"]
    rotated = emu.admin("keys/rotate").get_json()
    assert rotated["kids"] == [*before, rotated["kid"]] and rotated["dropped"] is None
    user_id = _users(emu)[0]["id"]
    new_token = emu.fields(account=user_id)["id_token"]
    assert emu.verify(new_token).header["kid"] == rotated["kid"]
    assert emu.verify(old_token).header["kid"] == before[-1]  # still published


def test_key_rotation_can_drop_the_oldest(emu):
    before = [k["kid"] for k in emu.client.get("/auth/keys").get_json()["keys"]]
    rotated = emu.admin("keys/rotate", {"drop_oldest": True}).get_json()
    after = [k["kid"] for k in emu.client.get("/auth/keys").get_json()["keys"]]
    assert rotated["dropped"] == before[0]
    assert after == [before[1], rotated["kid"]]


def test_clock_offset_and_advance(emu):
    assert emu.admin("clock", {"offset": 100}).get_json()["offset"] == 100
    body = emu.admin("clock", {"advance": 50}).get_json()
    assert body["offset"] == 150 and abs(body["now"] - time.time() - 150) < 5
    claims = emu.verify(emu.fields()["id_token"]).claims
    assert abs(claims["iat"] - time.time() - 150) < 5
    assert emu.admin("clock", {"offset": "soon"}).status_code == 400


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ({"email_verified": "string", "is_private_email": "string"},
         {"email_verified": "true", "is_private_email": "false"}),
        ({"email_verified": "boolean", "is_private_email": "boolean"},
         {"email_verified": True, "is_private_email": False}),
        ({"is_private_email": "omit"}, {"email_verified": True}),
    ],
)
def test_claim_typing_toggles(emu, style, expected):
    assert emu.admin("claims", style).status_code == 200
    claims = emu.verify(emu.fields()["id_token"]).claims
    got = {k: claims[k] for k in ("email_verified", "is_private_email") if k in claims}
    assert got == expected


def test_id_token_lifetime_toggle(emu):
    resp = emu.admin("claims", {"id_token_lifetime": 86400})
    assert resp.get_json()["id_token_lifetime"] == 86400
    claims = emu.verify(emu.fields()["id_token"]).claims
    assert claims["exp"] - claims["iat"] == 86400


@pytest.mark.parametrize("style", [{"email_verified": "yes"}, {"is_private_email": "maybe"},
                                   {"id_token_lifetime": 0}, {"id_token_lifetime": "600"},
                                   {"email_verified": True}])
def test_bad_claim_styles(emu, style):
    assert emu.admin("claims", style).status_code == 400
    assert emu.admin("claims", method="GET").get_json() == {
        "email_verified": "boolean", "is_private_email": "boolean", "id_token_lifetime": 600}


def test_forced_token_failure_then_recovery(emu):
    code = emu.fields()["code"]
    emu.admin("failures", {"endpoint": "token", "count": 2, "status": 503,
                           "body": {"error": "temporarily_unavailable"}})
    for _ in range(2):
        resp = emu.redeem(code)
        assert resp.status_code == 503
        assert resp.get_json() == {"error": "temporarily_unavailable"}
    assert emu.redeem(code).status_code == 200  # failures did not spend the code
    log = emu.admin("requests?endpoint=token", method="GET").get_json()["requests"]
    assert [r["status"] for r in log] == [503, 503, 200]


def test_forced_failure_with_text_body_on_revoke(emu):
    emu.admin("failures", {"endpoint": "revoke", "status": 500, "body": "<html>oops</html>"})
    resp = emu.revoke("anything")
    assert resp.status_code == 500 and resp.data == b"<html>oops</html>"
    assert emu.revoke("anything").status_code == 200


def test_forced_keys_failure_default_body(emu):
    emu.admin("failures", {"endpoint": "keys", "status": 502})
    resp = emu.client.get("/auth/keys")
    assert resp.status_code == 502 and resp.get_json() == {"error": "server_error"}
    assert emu.client.get("/auth/keys").status_code == 200


def test_forced_delay_only(emu):
    emu.admin("failures", {"endpoint": "keys", "delay": 0.3})
    start = time.monotonic()
    resp = emu.client.get("/auth/keys")
    assert time.monotonic() - start >= 0.3
    assert resp.status_code == 200
    start = time.monotonic()
    emu.client.get("/auth/keys")
    assert time.monotonic() - start < 0.3


def test_list_and_clear_failures(emu):
    emu.admin("failures", {"endpoint": "token", "status": 400, "body": {"error": "invalid_grant"}})
    listed = emu.admin("failures", method="GET").get_json()["failures"]
    assert listed["token"] == [{"status": 400, "body": {"error": "invalid_grant"}, "delay": 0.0}]
    assert emu.admin("failures", method="DELETE").get_json()["failures"] == {
        "token": [], "revoke": [], "keys": [], "usermigrationinfo": []}


@pytest.mark.parametrize(
    "body",
    [
        {"endpoint": "authorize", "status": 500},
        {"endpoint": "token"},
        {"endpoint": "token", "status": 99},
        {"endpoint": "token", "status": 700},
        {"endpoint": "token", "status": "500"},
        {"endpoint": "token", "status": 500, "count": 0},
        {"endpoint": "token", "status": 500, "count": 10_000},
        {"endpoint": "token", "delay": -1},
        {"endpoint": "token", "delay": 61},
        {"endpoint": "token", "status": True},
    ],
)
def test_bad_failure_scripts(emu, body):
    assert emu.admin("failures", body).status_code == 400
    assert emu.admin("failures", method="GET").get_json()["failures"]["token"] == []


def test_unknown_admin_path_is_json_404(emu):
    resp = emu.admin("nothing", method="GET")
    assert resp.status_code == 404 and resp.get_json() == {"error": "not_found"}


def test_discovery_document_points_at_the_emulator(emu):
    doc = emu.client.get("/.well-known/openid-configuration").get_json()
    assert doc["issuer"] == "https://appleid.apple.com"
    assert doc["jwks_uri"] == "https://emulator.test/auth/keys"
    assert doc["token_endpoint"] == "https://emulator.test/auth/token"
    assert doc["authorization_endpoint"] == "https://emulator.test/auth/authorize"
    assert doc["revocation_endpoint"] == "https://emulator.test/auth/revoke"
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_post"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]


@pytest.mark.parametrize("body", ["[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000],
                         ids=["array", "object"])
@pytest.mark.parametrize("path", ["users", "clock", "claims", "failures"])
def test_deeply_nested_admin_body_is_400(emu, path, body):
    """The emulator parses JSON with the same bounded depth as siwa-web (apple/bounded_json.py)."""
    before = emu.admin("users", method="GET").get_json()["users"]
    resp = emu.client.post(f"/__emulator/{path}", data=body, content_type="application/json")
    assert resp.status_code == 400
    assert emu.admin("users", method="GET").get_json()["users"] == before
