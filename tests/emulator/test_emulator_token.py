"""`/auth/token`: content type, grants, Apple's error descriptions, identity-token claims."""
from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from joserfc import jws

from support.emulator import BUNDLE_ID
from support.emulator import DEV_REDIRECT
from support.emulator import OTHER_WEB_ID
from support.emulator import SUB
from support.emulator import WEB_ID
from support.emulator import WEB_REDIRECT

OPAQUE = re.compile(r"^[acr][0-9a-f]{32}\.0\.[a-z]{4}\.[A-Za-z0-9_-]{22}$")
EXPIRED = {"error": "invalid_grant",
           "error_description": "The code has expired or has been revoked."}
USED = {"error": "invalid_grant", "error_description": "The code has already been used."}
TOKEN_REVOKED = {"error": "invalid_grant",
                 "error_description": "The token has expired or has been revoked."}


def half_hash(value: str) -> str:
    """Independent OIDC c_hash/at_hash computation for the checks."""
    digest = hashlib.sha256(value.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _signed_in(emu, **kwargs) -> dict:
    return emu.fields(**kwargs)


def test_code_grant_success_shape_and_headers(emu):
    fields = _signed_in(emu)
    resp = emu.redeem(fields["code"])
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Pragma"] == "no-cache"
    body = resp.get_json()
    assert list(body) == ["access_token", "token_type", "expires_in", "refresh_token", "id_token"]
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert OPAQUE.match(body["access_token"]) and body["access_token"][0] == "a"
    assert OPAQUE.match(body["refresh_token"]) and body["refresh_token"][0] == "r"
    assert OPAQUE.match(fields["code"]) and fields["code"][0] == "c"


def test_back_channel_id_token_claims(emu):
    fields = _signed_in(emu, nonce="web-nonce")
    body = emu.redeem(fields["code"]).get_json()
    token = emu.verify(body["id_token"])
    assert token.header == {"kid": emu.jwks().keys[-1].kid, "alg": "RS256"}
    claims = token.claims
    front = emu.verify(fields["id_token"]).claims
    assert claims["iss"] == "https://appleid.apple.com"
    assert claims["aud"] == WEB_ID
    assert claims["sub"] == front["sub"] and SUB.match(claims["sub"])
    assert claims["at_hash"] == half_hash(body["access_token"])
    assert "c_hash" not in claims
    assert claims["nonce"] == "web-nonce"
    assert claims["auth_time"] == front["auth_time"]
    assert claims["exp"] - claims["iat"] == 600
    assert claims["email"] == "maria@example.com"
    assert claims["email_verified"] is True and claims["is_private_email"] is False


def test_front_channel_id_token_claims(emu):
    fields = _signed_in(emu, nonce="n-42")
    raw_header = jws.extract_compact(fields["id_token"].encode()).protected
    assert raw_header == {"kid": raw_header["kid"], "alg": "RS256"}
    assert list(raw_header) == ["kid", "alg"]
    claims = emu.verify(fields["id_token"]).claims
    assert claims["c_hash"] == half_hash(fields["code"])
    assert claims["nonce"] == "n-42"
    assert claims["nonce_supported"] is True
    assert isinstance(claims["auth_time"], int)
    assert "at_hash" not in claims and "real_user_status" not in claims


def test_no_nonce_means_no_nonce_claim(emu):
    fields = _signed_in(emu, nonce=None)
    assert "nonce" not in emu.verify(fields["id_token"]).claims
    assert "nonce" not in emu.verify(emu.redeem(fields["code"]).get_json()["id_token"]).claims


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=x",
                                          "text/plain"])
def test_non_form_body_is_invalid_request(emu, content_type):
    code = _signed_in(emu)["code"]
    payload = {"client_id": WEB_ID, "client_secret": emu.secret(), "grant_type":
               "authorization_code", "code": code, "redirect_uri": WEB_REDIRECT}
    resp = emu.client.post("/auth/token", data=json.dumps(payload), content_type=content_type)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"
    assert emu.redeem(code).status_code == 200  # the code was not spent


def test_code_is_single_use(emu):
    code = _signed_in(emu)["code"]
    assert emu.redeem(code).status_code == 200
    resp = emu.redeem(code)
    assert resp.status_code == 400 and resp.get_json() == USED


def test_code_expires_after_five_minutes(emu):
    code = _signed_in(emu)["code"]
    emu.admin("clock", {"advance": 301})
    assert emu.redeem(code).get_json() == EXPIRED


def test_code_still_valid_just_before_five_minutes(emu):
    code = _signed_in(emu)["code"]
    emu.admin("clock", {"advance": 295})
    assert emu.redeem(code).status_code == 200


@pytest.mark.parametrize("code", ["c" + "0" * 32 + ".0.abcd." + "A" * 22, "garbage", "x" * 5000])
def test_unknown_code(emu, code):
    assert emu.redeem(code).get_json() == EXPIRED


def test_client_id_mismatch(emu):
    code = _signed_in(emu)["code"]
    resp = emu.redeem(code, client_id=OTHER_WEB_ID)
    assert resp.get_json() == {"error": "invalid_grant", "error_description":
                               f"client_id mismatch. The code was not issued to {OTHER_WEB_ID}."}
    assert emu.redeem(code).status_code == 200  # a failed attempt does not spend the code


@pytest.mark.parametrize("uri", [DEV_REDIRECT, WEB_REDIRECT + "?x=1", None, ""])
def test_redirect_uri_mismatch(emu, uri):
    code = _signed_in(emu)["code"]
    resp = emu.redeem(code, redirect_uri=uri)
    assert resp.get_json() == {"error": "invalid_grant", "error_description":
                               f"redirect_uri mismatch. The code was not issued to {uri or ''}."}


def test_missing_code_and_grant_type(emu):
    assert emu.token(grant_type="authorization_code").get_json() == {
        "error": "invalid_request", "error_description": "code is required."}
    assert emu.token().get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("grant", ["password", "grand_type", "implicit", "AUTHORIZATION_CODE",
                                   "urn:ietf:params:oauth:grant-type:token-exchange"])
def test_unsupported_grant_type(emu, grant):
    resp = emu.token(grant_type=grant, code="x")
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "unsupported_grant_type"}


def test_refresh_grant_returns_no_refresh_token_and_can_repeat(emu):
    fields = _signed_in(emu, nonce="n1")
    refresh = emu.redeem(fields["code"]).get_json()["refresh_token"]
    for _ in range(2):
        resp = emu.token(grant_type="refresh_token", refresh_token=refresh)
        body = resp.get_json()
        assert resp.status_code == 200
        assert list(body) == ["access_token", "token_type", "expires_in", "id_token"]
        claims = emu.verify(body["id_token"]).claims
        assert claims["at_hash"] == half_hash(body["access_token"])
        assert claims["aud"] == WEB_ID and claims["email"] == "maria@example.com"
        assert "nonce" not in claims and "auth_time" not in claims


def test_refresh_token_errors(emu):
    refresh = emu.redeem(_signed_in(emu)["code"]).get_json()["refresh_token"]
    assert emu.token(grant_type="refresh_token").get_json()["error"] == "invalid_request"
    assert emu.token(grant_type="refresh_token", refresh_token="r-unknown").get_json() \
        == TOKEN_REVOKED
    other = emu.token(OTHER_WEB_ID, grant_type="refresh_token", refresh_token=refresh).get_json()
    assert other["error"] == "invalid_grant"
    # P10: the refresh token sent as `code` is not a code
    assert emu.token(grant_type="authorization_code", code=refresh,
                     redirect_uri=WEB_REDIRECT).get_json() == EXPIRED


def test_access_token_is_not_a_refresh_token(emu):
    access = emu.redeem(_signed_in(emu)["code"]).get_json()["access_token"]
    assert emu.token(grant_type="refresh_token", refresh_token=access).get_json() == TOKEN_REVOKED


def test_client_credentials_for_user_migration(emu):
    resp = emu.token(grant_type="client_credentials", scope="user.migration")
    body = resp.get_json()
    assert resp.status_code == 200
    assert list(body) == ["access_token", "token_type", "expires_in"]
    assert body["token_type"] == "Bearer" and OPAQUE.match(body["access_token"])


@pytest.mark.parametrize("scope", [None, "", "name", "user.migration openid"])
def test_client_credentials_other_scope(emu, scope):
    assert emu.token(grant_type="client_credentials", scope=scope).get_json() == {
        "error": "invalid_scope"}


def test_sub_is_stable_per_user_and_distinct_between_users(emu):
    first = emu.verify(_signed_in(emu, email="a@x.example")["id_token"]).claims["sub"]
    users = emu.admin("users", method="GET").get_json()["users"]
    again = emu.verify(emu.fields(account=users[0]["id"])["id_token"]).claims["sub"]
    other = emu.verify(_signed_in(emu, email="b@x.example")["id_token"]).claims["sub"]
    assert first == again == users[0]["sub"]
    assert other != first and SUB.match(other)


def test_web_code_cannot_be_redeemed_by_bundle_id(emu):
    code = _signed_in(emu)["code"]
    resp = emu.redeem(code, client_id=BUNDLE_ID, redirect_uri=None)
    assert resp.get_json()["error_description"] == \
        f"client_id mismatch. The code was not issued to {BUNDLE_ID}."


def test_wrong_method_is_json(emu):
    resp = emu.client.get("/auth/token")
    assert resp.status_code == 405
    assert resp.get_json() == {"error": "method_not_allowed"}
