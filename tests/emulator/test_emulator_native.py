"""Native sign-in simulation: device credential, bundle-id codes redeemed without redirect_uri."""
from __future__ import annotations

import hashlib

import pytest

from support.emulator import BUNDLE_ID
from support.emulator import WEB_ID
from support.emulator import WEB_REDIRECT

RAW_NONCE = "raw-device-nonce"
HASHED = hashlib.sha256(RAW_NONCE.encode()).hexdigest()


def _native(emu, **body):
    data = {"bundle_id": BUNDLE_ID, "email": "ios@example.com", "first_name": "Ana",
            "last_name": "Lee", "nonce": HASHED, **body}
    return emu.admin("native/authorize", {k: v for k, v in data.items() if v is not None})


def test_first_native_sign_in_returns_the_full_credential(emu):
    resp = _native(emu)
    cred = resp.get_json()
    assert resp.status_code == 200
    assert set(cred) == {"identityToken", "authorizationCode", "user", "fullName", "email"}
    assert cred["fullName"] == {"givenName": "Ana", "familyName": "Lee"}
    assert cred["email"] == "ios@example.com"
    claims = emu.verify(cred["identityToken"]).claims
    assert claims["aud"] == BUNDLE_ID and claims["sub"] == cred["user"]
    assert claims["nonce"] == HASHED  # copied verbatim, as the device sent it
    assert claims["nonce_supported"] is True and claims["real_user_status"] == 2
    assert claims["email"] == "ios@example.com"


def test_native_code_is_redeemed_without_redirect_uri(emu):
    cred = _native(emu).get_json()
    resp = emu.redeem(cred["authorizationCode"], client_id=BUNDLE_ID, redirect_uri=None)
    body = resp.get_json()
    assert resp.status_code == 200
    claims = emu.verify(body["id_token"]).claims
    assert claims["aud"] == BUNDLE_ID and claims["nonce"] == HASHED
    assert claims["sub"] == cred["user"]


def test_native_code_with_redirect_uri_is_a_mismatch(emu):
    code = _native(emu).get_json()["authorizationCode"]
    resp = emu.redeem(code, client_id=BUNDLE_ID, redirect_uri=WEB_REDIRECT)
    assert resp.get_json() == {"error": "invalid_grant", "error_description":
                               f"redirect_uri mismatch. The code was not issued to {WEB_REDIRECT}."}


def test_native_code_with_services_id_is_client_mismatch(emu):
    code = _native(emu).get_json()["authorizationCode"]
    resp = emu.redeem(code, client_id=WEB_ID, redirect_uri=None)
    assert resp.get_json()["error_description"] == \
        f"client_id mismatch. The code was not issued to {WEB_ID}."


def test_second_native_sign_in_has_no_name_or_email(emu):
    first = _native(emu, share_email=False).get_json()
    user_id = emu.admin("users", method="GET").get_json()["users"][0]["id"]
    again = _native(emu, user_id=user_id, email=None).get_json()
    assert first["email"].endswith("@privaterelay.appleid.com")
    assert again["fullName"] is None and again["email"] is None
    claims = emu.verify(again["identityToken"]).claims
    assert claims["email"] == first["email"] and "real_user_status" not in claims


def test_web_and_native_share_the_user_and_the_consent(emu):
    web = emu.fields()
    sub = emu.verify(web["id_token"]).claims["sub"]
    user_id = emu.admin("users", method="GET").get_json()["users"][0]["id"]
    cred = _native(emu, user_id=user_id).get_json()
    assert cred["user"] == sub and cred["fullName"] is None


def test_bundle_id_registered_at_run_time(emu, bundles):
    assert _native(emu, bundle_id="com.example.late").status_code == 400
    bundles.append("com.example.late")
    cred = _native(emu, bundle_id="com.example.late").get_json()
    assert emu.redeem(cred["authorizationCode"], client_id="com.example.late",
                      redirect_uri=None).status_code == 200


def test_no_nonce_and_name_only_scope(emu):
    cred = _native(emu, nonce=None, scope="name").get_json()
    claims = emu.verify(cred["identityToken"]).claims
    assert "nonce" not in claims and "email" not in claims
    assert cred["email"] is None and cred["fullName"]["givenName"] == "Ana"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"bundle_id": WEB_ID}, 400),
        ({"bundle_id": None}, 400),
        ({"email": "not-an-email"}, 400),
        ({"user_id": "nobody"}, 404),
        ({"nonce": 123}, 400),
        ({"share_email": "yes"}, 400),
        ({"scope": "name profile"}, 400),
    ],
)
def test_bad_native_requests(emu, body, status):
    resp = _native(emu, **body) if body.get("bundle_id", 1) is not None else emu.admin(
        "native/authorize", {"email": "a@b.example"})
    assert resp.status_code == status
    assert resp.get_json()["error"] in ("bad_request", "not_found")
    assert emu.admin("users", method="GET").get_json()["users"] == []
