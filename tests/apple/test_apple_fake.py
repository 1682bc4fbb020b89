"""The fake Apple itself: it must catch the mistakes real Apple would catch."""
from __future__ import annotations

import base64
import json
import time

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.apple import KEY_ID
from support.apple import REMOVE
from support.apple import SERVICES_ID
from support.apple import TEAM_ID
from support.apple import b64url
from support.apple import oidc_hash
from support.config import KEY_ID as CONF_KEY_ID
from support.config import SERVICES_ID as CONF_SERVICES_ID
from support.config import TEAM_ID as CONF_TEAM_ID


def test_constants_match_conftest(fake_apple):
    assert (TEAM_ID, KEY_ID, SERVICES_ID) == (CONF_TEAM_ID, CONF_KEY_ID, CONF_SERVICES_ID)
    assert (fake_apple.TEAM_ID, fake_apple.KEY_ID, fake_apple.SERVICES_ID) == (
        TEAM_ID, KEY_ID, SERVICES_ID)


def make_secret(pem: str, *, sub=SERVICES_ID, iss=TEAM_ID, kid=KEY_ID, iat_offset=-60,
                lifetime=86400, aud="https://appleid.apple.com") -> str:
    now = int(time.time())
    claims = {"iss": iss, "sub": sub, "aud": aud, "iat": now + iat_offset,
              "exp": now + iat_offset + lifetime}
    return pyjwt.encode(claims, pem, algorithm="ES256", headers={"kid": kid})


def test_a_correct_secret_passes(fake_apple, apple_private_key_pem):
    form = {"client_id": SERVICES_ID, "client_secret": make_secret(apple_private_key_pem)}
    assert fake_apple.verify_client_secret(form)["iss"] == TEAM_ID


@pytest.mark.parametrize("change", [
    {"sub": "com.example.other"}, {"iss": "OTHERTEAM1"}, {"kid": "OTHERKEY01"},
    {"iat_offset": 600}, {"iat_offset": -7200, "lifetime": 3600}, {"lifetime": 15777001},
    {"aud": "https://appleid.apple.com/"},
])
def test_broken_secrets_are_caught(fake_apple, apple_private_key_pem, change):
    form = {"client_id": SERVICES_ID, "client_secret": make_secret(apple_private_key_pem, **change)}
    with pytest.raises(ValueError):
        fake_apple.verify_client_secret(form)


def test_der_signature_is_caught(fake_apple, apple_private_key_pem):
    """TN3107: a DER-encoded ES256 signature gives invalid_client at Apple."""
    good = make_secret(apple_private_key_pem)
    head, body, _ = good.split(".")
    key = serialization.load_pem_private_key(apple_private_key_pem.encode(), None)
    der = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    form = {"client_id": SERVICES_ID, "client_secret": f"{head}.{body}.{b64url(der)}"}
    with pytest.raises(ValueError):
        fake_apple.verify_client_secret(form)


def test_token_endpoint_refuses_bad_secret_and_json_bodies(fake_apple, apple_private_key_pem):
    url = fake_apple.token_url
    bad = requests.post(url, data={"client_id": SERVICES_ID, "client_secret": "x",
                                   "grant_type": "authorization_code", "code": "c"})
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid_client"})
    secret = make_secret(apple_private_key_pem)
    as_json = requests.post(url, json={"client_id": SERVICES_ID, "client_secret": secret,
                                       "grant_type": "authorization_code", "code": "c"})
    assert as_json.json() == {"error": "invalid_request"}
    typo = requests.post(url, data={"client_id": SERVICES_ID, "client_secret": secret,
                                    "grand_type": "authorization_code", "code": "c"})
    assert typo.json() == {"error": "unsupported_grant_type"}
    assert len(fake_apple.token_requests) == 3


def test_default_code_exchange_answer(fake_apple, apple_private_key_pem):
    secret = make_secret(apple_private_key_pem, sub="com.example.siwa.ios")
    resp = requests.post(fake_apple.token_url, data={
        "client_id": "com.example.siwa.ios", "client_secret": secret,
        "grant_type": "authorization_code", "code": "c-1"})
    body = resp.json()
    assert resp.headers["Cache-Control"] == "no-store"
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "id_token"}
    claims = pyjwt.decode(body["id_token"], fake_apple.public_pem(), algorithms=["RS256"],
                          audience="com.example.siwa.ios")
    assert claims["at_hash"] == oidc_hash(body["access_token"])
    assert claims["sub"] == fake_apple.sub_for_code("c-1") == fake_apple.sub_for_code("c-1")
    assert claims["sub"] != fake_apple.sub_for_code("c-2")


def test_mint_defaults_and_removal(fake_apple):
    token = fake_apple.mint_id_token(email=REMOVE, header={"typ": "JWT"})
    header = pyjwt.get_unverified_header(token)
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert header == {"kid": "FAKEKID001", "alg": "RS256", "typ": "JWT"}
    assert "email" not in claims and claims["email_verified"] is True
    assert claims["iss"] == "https://appleid.apple.com" and claims["aud"] == SERVICES_ID


def test_forgery_helpers(fake_apple):
    none = fake_apple.mint_none_token()
    assert none.endswith(".") and pyjwt.get_unverified_header(none)["alg"] == "none"
    hs = fake_apple.mint_hs256_token()
    assert pyjwt.get_unverified_header(hs)["alg"] == "HS256"
    sig = base64.urlsafe_b64decode(fake_apple.mint_es256_token().split(".")[2] + "==")
    assert len(sig) == 64


def test_programmed_exception_is_recorded_then_raised(fake_apple):
    fake_apple.next_token_response(exc=requests.exceptions.ReadTimeout)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(fake_apple.token_url, data={"code": "c"})
    assert fake_apple.token_requests == [{"code": "c"}]


def test_jwks_serves_published_keys_and_extras(fake_apple):
    fake_apple.jwks_extra = [{"kty": "WAT"}]
    keys = requests.get(fake_apple.keys_url).json()["keys"]
    assert [k.get("kid") for k in keys] == ["FAKEKID001", None]
    fake_apple.rotate_keys()
    assert json.loads(requests.get(fake_apple.keys_url).text)["keys"][1]["kid"] == "FAKEKID002"
    assert fake_apple.jwks_calls == 2
