"""Client-secret JWT checks at `/auth/token` and `/auth/revoke`: every failure is invalid_client."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.jwk import RSAKey

from support.emulator import APPLE_AUD
from support.emulator import BUNDLE_ID
from support.emulator import KEY_ID
from support.emulator import TEAM_ID
from support.emulator import WEB_ID
from support.emulator import b64
from support.emulator import client_secret

INVALID_CLIENT = {"error": "invalid_client"}


def _now() -> int:
    return int(time.time())


def _claims(client_id: str = WEB_ID, **over) -> dict:
    now = int(time.time())
    return {"iss": TEAM_ID, "iat": now, "exp": now + 3600, "aud": APPLE_AUD, "sub": client_id,
            **over}


def _compact(header: dict, claims: dict, sign) -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(sign(f'{head}.{body}'.encode()))}"


def _der_secret(key: ec.EllipticCurvePrivateKey) -> str:
    """ES256 signed with an ASN.1 DER signature instead of raw r||s (TN3107)."""
    return _compact({"alg": "ES256", "kid": KEY_ID}, _claims(),
                    lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())))


def _raw_signer(key: ec.EllipticCurvePrivateKey):
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


def _raw_secret(key: ec.EllipticCurvePrivateKey, header: dict | None = None) -> str:
    """A hand-made secret with a raw r||s signature (the control for the DER case)."""
    return _compact(header or {"alg": "ES256", "kid": KEY_ID}, _claims(), _raw_signer(key))


def _call(emu, secret: str, endpoint: str, client_id: str = WEB_ID):
    if endpoint == "token":
        return emu.token(client_id, secret=secret, grant_type="client_credentials",
                         scope="user.migration")
    return emu.client.post("/auth/revoke", data={"client_id": client_id, "client_secret": secret,
                                                 "token": "unknown"})


def _hs256_with_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The classic alg-confusion forgery: HMAC keyed with the verifier's public PEM."""
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return _compact({"alg": "HS256", "kid": KEY_ID}, _claims(),
                    lambda data: hmac.new(pem, data, hashlib.sha256).digest())


def _rs256(_key) -> str:
    return jwt.encode({"alg": "RS256", "kid": KEY_ID}, _claims(), RSAKey.generate_key(2048),
                      algorithms=["RS256"])


def _unsigned(_key) -> str:
    return _compact({"alg": "none", "kid": KEY_ID}, _claims(), lambda _d: b"")


def _tamper(secret: str) -> str:
    head, _body, sig = secret.split(".")
    later = _claims(exp=int(time.time()) + 7200)
    return f"{head}.{b64(json.dumps(later).encode())}.{sig}"


def _not_an_object(_key) -> str:
    return ".".join([b64(json.dumps({"alg": "ES256", "kid": KEY_ID}).encode()), b64(b"[1,2]"),
                     b64(b"x" * 64)])


# Every way a client secret goes wrong in practice; built per test.
HOSTILE = {
    "alg RS256": _rs256,
    "alg HS256 keyed with the public key": _hs256_with_public_key,
    "alg none": _unsigned,
    "alg none, empty signature": lambda k: _unsigned(k).rsplit(".", 1)[0] + ".",
    "unknown kid": lambda k: client_secret(k, header={"kid": "NOTOURKEY1"}),
    "missing kid": lambda k: _compact({"alg": "ES256"}, _claims(), lambda d: b"x" * 64),
    "kid not a string": lambda k: _raw_secret(k, {"alg": "ES256", "kid": 7}),
    "signed by another key": lambda k: client_secret(ec.generate_private_key(ec.SECP256R1())),
    "DER signature": _der_secret,
    "tampered payload": lambda k: _tamper(client_secret(k)),
    "wrong iss": lambda k: client_secret(k, iss="OTHERTEAM1"),
    "missing iss": lambda k: client_secret(k, iss=None),
    "wrong aud": lambda k: client_secret(k, aud="https://appleid.apple.com/"),
    "aud as list": lambda k: client_secret(k, aud=[APPLE_AUD]),
    "wrong sub": lambda k: client_secret(k, sub=BUNDLE_ID),
    "missing sub": lambda k: client_secret(k, sub=None),
    "expired": lambda k: client_secret(k, iat=_now() - 7200, exp=_now() - 10),
    "exp minus iat too long": lambda k: client_secret(k, iat=_now(), exp=_now() + 15_777_001),
    "iat in the future": lambda k: client_secret(k, iat=_now() + 120, exp=_now() + 3600),
    "exp as string": lambda k: client_secret(k, exp=str(_now() + 3600)),
    "iat as bool": lambda k: client_secret(k, iat=True),
    "missing exp": lambda k: client_secret(k, exp=None),
    "missing iat": lambda k: client_secret(k, iat=None),
    "payload not an object": _not_an_object,
    "not a JWT": lambda k: "not-a-jwt",
    "garbage segments": lambda k: "a.b.c",
    "empty": lambda k: "",
}


@pytest.mark.parametrize("endpoint", ["token", "revoke"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_client_secret_is_invalid_client(emu, team_key, case, endpoint):
    resp = _call(emu, HOSTILE[case](team_key), endpoint)
    assert resp.status_code == 400
    assert resp.get_json() == INVALID_CLIENT
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("endpoint", ["token", "revoke"])
def test_good_secret_is_accepted(emu, team_key, endpoint):
    assert _call(emu, client_secret(team_key), endpoint).status_code == 200
    assert _call(emu, _raw_secret(team_key), endpoint).status_code == 200


def test_limits_are_inclusive(emu, team_key):
    now = int(time.time())
    longest = client_secret(team_key, iat=now - 5, exp=now - 5 + 15_777_000)
    assert _call(emu, longest, "token").status_code == 200
    skewed = client_secret(team_key, iat=now + 50, exp=now + 3600)
    assert _call(emu, skewed, "token").status_code == 200


def test_emulator_clock_decides_expiry(emu, team_key):
    secret = client_secret(team_key)
    emu.admin("clock", {"advance": 7200})
    assert _call(emu, secret, "token").get_json() == INVALID_CLIENT


def test_bundle_id_secret_needs_its_own_sub(emu, team_key):
    good = client_secret(team_key, BUNDLE_ID)
    assert _call(emu, good, "token", BUNDLE_ID).status_code == 200
    web_secret = client_secret(team_key, WEB_ID)
    assert _call(emu, web_secret, "token", BUNDLE_ID).get_json() == INVALID_CLIENT


def test_unregistered_client_with_valid_signature_is_invalid_client(emu, team_key):
    secret = client_secret(team_key, "com.unknown.app")
    assert _call(emu, secret, "token", "com.unknown.app").get_json() == INVALID_CLIENT


def test_missing_secret_and_missing_client_id(emu):
    resp = emu.client.post("/auth/token", data={"client_id": WEB_ID, "grant_type": "refresh_token"})
    assert resp.get_json() == INVALID_CLIENT
    resp = emu.client.post("/auth/token", data={"client_secret": "x",
                                                "grant_type": "refresh_token"})
    assert resp.get_json()["error"] == "invalid_request"


def test_rsa_private_key_is_not_a_valid_client_key(settings):
    import dataclasses

    from siwa_web.emulator import create_emulator_app

    pem = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError, match="EC P-256"):
        create_emulator_app(dataclasses.replace(settings, client_keys={"K": pem}))
    with pytest.raises(ValueError, match="PEM"):
        create_emulator_app(dataclasses.replace(settings, client_keys={"K": "nope"}))
