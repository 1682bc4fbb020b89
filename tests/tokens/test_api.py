"""Protected API and userinfo: catalogue API-01 … API-16 (docs/security.md), RFC 6750 answers."""
from __future__ import annotations

import datetime as dt
import json
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from siwa_web.tokens.extension import server
from support.apple import BUNDLE_ID
from support.apple import b64url
from support.apple import sign_jws
from support.tokens import PARTNER_API
from support.tokens import bearer
from support.tokens import exchange
from support.tokens import post_token
from support.tokens import refresh_params


def our_signer(app):
    """Our current signing key as a `cryptography` key, and its kid."""
    with app.app_context():
        key = server().keys.signer()
    return serialization.load_pem_private_key(key.private.as_pem(private=True), None), key.kid


def our_public(app) -> tuple[bytes, bytes, str]:
    """Our public key as PEM, DER and JWK JSON text (for the HS256 confusion attempts)."""
    private, kid = our_signer(app)
    public = private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = json.dumps([k for k in app.test_client().get("/.well-known/jwks.json").get_json()["keys"]
                      if k["kid"] == kid][0])
    return pem, der, jwk


def claims_of(token: str) -> dict:
    return pyjwt.decode(token, options={"verify_signature": False})


def forge(app, session, *, header=None, alg="ES256", key=None, **changes) -> str:
    """A copy of the session's access token with changed header/claims, signed as told."""
    private, kid = our_signer(app)
    claims = {**claims_of(session["access_token"]), **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    hdr = {"alg": alg, "typ": "at+jwt", "kid": kid, **(header or {})}
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return sign_jws(hdr, claims, alg, private if key is None else key)


def assert_invalid_token(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="siwa-web"')
    assert 'error="invalid_token"' in challenge
    assert response.get_json()["error"] == "invalid_token"
    assert response.headers["Cache-Control"] == "no-store"


ENDPOINTS = ["/api/me", "/userinfo"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_api01_baseline(client, native_session, path):
    response = client.get(path, headers=bearer(native_session["access_token"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["sub"] == claims_of(native_session["access_token"])["sub"]
    assert body["name"] == "Ada Lovelace" and body["email"].endswith("privaterelay.appleid.com")
    assert response.headers["Cache-Control"] == "no-store"


def test_api01_me_shape(client, native_client, native_session):
    body = client.get("/api/me", headers=bearer(native_session["access_token"])).get_json()
    assert body["client_id"] == native_client.client_id
    assert body["scope"] == "email offline_access openid profile"


def test_userinfo_follows_scopes(client, fake_apple, native_client):
    session = exchange(client, fake_apple, native_client, scope="openid").get_json()
    body = client.get("/userinfo", headers=bearer(session["access_token"])).get_json()
    assert set(body) == {"sub"}


@pytest.mark.parametrize("path", ENDPOINTS)
def test_api02_our_id_token_as_bearer(client, native_session, path):
    assert_invalid_token(client.get(path, headers=bearer(native_session["id_token"])))


def test_api02_id_token_with_at_typ_still_fails_on_audience(app, client, native_session):
    """Even re-signed with typ at+jwt, an ID token's aud (the client id) is not our API."""
    idt = claims_of(native_session["id_token"])
    token = forge(app, native_session, aud=idt["aud"])
    assert_invalid_token(client.get("/api/me", headers=bearer(token)))


def test_api03_apple_id_token_as_bearer(client, fake_apple, native_session):
    apple = fake_apple.mint_id_token(aud=BUNDLE_ID)
    calls = fake_apple.jwks_calls
    assert_invalid_token(client.get("/api/me", headers=bearer(apple)))
    assert fake_apple.jwks_calls == calls  # we never look Apple's keys up for our API


def test_api04_alg_none(app, client, native_session):
    claims = claims_of(native_session["access_token"])
    _, kid = our_signer(app)
    for header in ({"alg": "none", "typ": "at+jwt", "kid": kid}, {"alg": "none", "typ": "at+jwt"}):
        token = sign_jws(header, claims, "none", None)
        assert_invalid_token(client.get("/api/me", headers=bearer(token)))
        assert_invalid_token(client.get("/api/me", headers=bearer(token + "AAAA")))


@pytest.mark.parametrize("form", ["pem", "der", "jwk"])
def test_api05_hs256_keyed_with_our_public_key(app, client, native_session, form):
    pem, der, jwk = our_public(app)
    secret = {"pem": pem, "der": der, "jwk": jwk.encode()}[form]
    token = forge(app, native_session, alg="HS256", key=secret)
    assert_invalid_token(client.get("/api/me", headers=bearer(token)))


@pytest.mark.parametrize("header_name", ["jwk", "jku", "x5u", "x5c"])
def test_api06_header_supplied_keys(app, client, native_session, requests_mock, header_name):
    attacker = ec.generate_private_key(ec.SECP256R1())
    nums = attacker.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64url(nums.x.to_bytes(32, "big")),
           "y": b64url(nums.y.to_bytes(32, "big")), "kid": "attacker"}
    value = {"jwk": jwk, "jku": "https://evil.example/jwks.json",
             "x5u": "https://evil.example/cert.pem", "x5c": ["MIIBnotreallyacert"]}[header_name]
    sent = len(requests_mock.request_history)
    for kid in ("attacker", None, our_signer(app)[1]):
        token = forge(app, native_session, key=attacker, header={header_name: value, "kid": kid})
        assert_invalid_token(client.get("/api/me", headers=bearer(token)))
    assert len(requests_mock.request_history) == sent  # zero outbound requests


@pytest.mark.parametrize("kid", [
    "../../../../dev/null", "' OR '1'='1", "k" * 10_000, "\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9",
    123, None, "", ["a"],
], ids=["path", "sql", "10k", "unicode", "number", "absent", "empty", "list"])
def test_api07_hostile_kid(app, client, native_session, kid):
    private, _ = our_signer(app)
    token = forge(app, native_session, header={"kid": kid})
    response = client.get("/api/me", headers=bearer(token))
    assert_invalid_token(response)


@pytest.mark.parametrize("offset, ok", [(-61, False), (-1, False), (30, True)])
def test_api08_expiry(app, client, native_session, offset, ok):
    token = forge(app, native_session, exp=int(time.time()) + offset)
    response = client.get("/api/me", headers=bearer(token))
    if ok:
        assert response.status_code == 200
    else:
        assert_invalid_token(response)


@pytest.mark.parametrize("changes", [
    {"aud": "https://other-api.example"}, {"aud": ["https://siwa.test/api", "other"]},
    {"iss": "https://siwa.test/"}, {"iss": "https://evil.example"}, {"iss": None},
    {"exp": None}, {"iat": None}, {"sub": None}, {"jti": None}, {"client_id": None}, {"sid": None},
    {"exp": "9999999999"}, {"iat": int(time.time()) + 3600}, {"sub": "someone-else"},
    {"sid": "no-such-family"},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_api09_claims(app, client, native_session, changes):
    token = forge(app, native_session, **changes)
    assert_invalid_token(client.get("/api/me", headers=bearer(token)))


def test_api09_partner_audience_token_is_not_for_us(client, fake_apple, native_client):
    session = exchange(client, fake_apple, native_client, audience=PARTNER_API).get_json()
    assert_invalid_token(client.get("/api/me", headers=bearer(session["access_token"])))


@pytest.mark.parametrize("typ", ["JWT", None, "jwt", "at+JWT+x", "id_token"])
def test_api10_right_key_wrong_typ(app, client, native_session, typ):
    token = forge(app, native_session, header={"typ": typ})
    assert_invalid_token(client.get("/api/me", headers=bearer(token)))


def test_api10_media_type_form_is_accepted(app, client, native_session):
    token = forge(app, native_session, header={"typ": "application/at+jwt"})
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


def test_api11_revoked_family_is_rejected_at_once(client, native_client, native_session):
    assert client.get("/api/me", headers=bearer(native_session["access_token"])).status_code == 200
    client.post("/oauth/revoke", data={"token": native_session["refresh_token"],
                                       "client_id": native_client.client_id})
    assert_invalid_token(client.get("/api/me", headers=bearer(native_session["access_token"])))


def test_api11_disabled_user_is_rejected_at_once(app, client, native_session):
    from siwa_web.infra.extensions import db
    from siwa_web.models import User
    from siwa_web.models.base import now_utc

    with app.app_context():
        db.session.get(User, claims_of(native_session["access_token"])["sub"]).disabled_at = \
            now_utc()
        db.session.commit()
    assert_invalid_token(client.get("/api/me", headers=bearer(native_session["access_token"])))


@pytest.mark.parametrize("offset, ok", [(-1, False), (0, False), (60, True)])
def test_api11_app_session_past_its_end_is_rejected(app, client, native_session, offset, ok):
    """The family's own expiry ends the session, whatever the access token's `exp` says."""
    from siwa_web.infra.extensions import db
    from siwa_web.models import TokenFamily
    from siwa_web.models.base import now_utc

    token = native_session["access_token"]
    assert client.get("/api/me", headers=bearer(token)).status_code == 200  # cached as alive
    with app.app_context():
        family = db.session.get(TokenFamily, claims_of(token)["sid"])
        family.expires_at = now_utc() + dt.timedelta(seconds=offset)
        db.session.commit()
    response = client.get("/api/me", headers=bearer(token))
    if ok:
        assert response.status_code == 200
    else:
        assert_invalid_token(response)


def test_api12_query_string_token_not_accepted(client, native_session):
    response = client.get("/api/me", query_string={"access_token": native_session["access_token"]})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="siwa-web"'


def test_api12_token_in_header_and_query_or_body(client, native_session):
    token = native_session["access_token"]
    for kwargs in ({"query_string": {"access_token": token}},
                   {"data": {"access_token": token}}):
        response = client.get("/api/me", headers=bearer(token), **kwargs)
        assert response.status_code == 400
        assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]
        assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_api13_no_credentials(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="siwa-web"'
    assert "error" not in response.get_json()


def test_api14_insufficient_scope(client, fake_apple, native_client):
    session = exchange(client, fake_apple, native_client, scope="offline_access").get_json()
    assert client.get("/api/me", headers=bearer(session["access_token"])).status_code == 200
    response = client.get("/userinfo", headers=bearer(session["access_token"]))
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="openid"' in challenge
    assert response.get_json()["error"] == "insufficient_scope"


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer ", "Basic abc", "Bearer a.b", "Bearer " + "A" * 100_000, "Bearer !!!.@@@.###",
    "Bearer a.b.c.d.e", "Bearer eyJ.eyJ.sig", "bearer", "Bearer \u00e9\u00e9.x.y", "Token abc",
    "Bearer " + b64url(b'{"alg":"ES256"') + ".e30.AA", "Bearer " + b64url(b"[1]") + ".e30.AA",
], ids=range(13))
def test_api15_malformed_header(client, header):
    response = client.get("/api/me", headers={"Authorization": header})
    assert response.status_code in (400, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _spare_bits_set(segment: str) -> str:
    """The same bytes, non-canonically: the last character's unused low bits set.

    An ES256 signature is 64 bytes, 86 characters: the last one carries 4 unused bits.
    """
    spare = {2: 0b1111, 3: 0b11}[len(segment) % 4]
    last = _B64URL.index(segment[-1])
    return segment[:-1] + _B64URL[last | spare]


def _non_canonical(token: str, how: str) -> str:
    header, payload, signature = token.split(".")
    return {
        "signature_padded": f"{header}.{payload}.{signature}==",
        "signature_spare_bits": f"{header}.{payload}.{_spare_bits_set(signature)}",
        "signature_std_alphabet": f"{header}.{payload}.{signature[:-2]}+/",
        "space_inside": f"{header}.{payload[:10]} {payload[10:]}.{signature}",
        "fourth_segment": f"{token}.",
        "empty_payload": f"{header}..{signature}",
    }[how]


@pytest.mark.parametrize("how", [
    "signature_padded", "signature_spare_bits", "signature_std_alphabet",
    "space_inside", "fourth_segment", "empty_payload",
])
def test_api15_non_canonical_copies_of_a_real_token(client, native_session, how):
    """A JWS has one encoding: a genuine token spelled differently is not accepted (no aliases).

    Spare bits: base64url decoders that ignore them map two strings to one signature, so a
    lenient decoder would accept this copy; the signature check alone cannot tell.
    """
    token = native_session["access_token"]
    assert client.get("/api/me", headers=bearer(token)).status_code == 200
    altered = _non_canonical(token, how)
    assert altered != token
    assert_invalid_token(client.get("/api/me", headers=bearer(altered)))


def test_api16_key_rotation(app, client, runner, native_client, native_session):
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    # a token of the retired key still works during the overlap
    assert client.get("/api/me", headers=bearer(native_session["access_token"])).status_code == 200
    fresh = post_token(client, refresh_params(native_client, native_session["refresh_token"]))
    new_token = fresh.get_json()["access_token"]
    assert pyjwt.get_unverified_header(new_token)["kid"] != \
        pyjwt.get_unverified_header(native_session["access_token"])["kid"]
    assert client.get("/api/me", headers=bearer(new_token)).status_code == 200
    # once the retired key is unpublished, its tokens fail; the new key's still pass
    from datetime import timedelta

    from siwa_web.infra.extensions import db
    from siwa_web.models import SigningKey
    from siwa_web.models.base import now_utc

    with app.app_context():
        for key in db.session.execute(db.select(SigningKey)).scalars():
            if key.retired_at is not None:
                key.unpublish_after = now_utc() - timedelta(seconds=1)
        db.session.commit()
        server().keys.invalidate()
    assert_invalid_token(client.get("/api/me", headers=bearer(native_session["access_token"])))
    assert client.get("/api/me", headers=bearer(new_token)).status_code == 200


def test_no_cookies_on_api(client, native_session):
    response = client.get("/api/me", headers=bearer(native_session["access_token"]))
    assert "Set-Cookie" not in response.headers


def test_database_down_is_503_not_500(app, client, native_session):
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    from siwa_web.infra.extensions import db

    def down(*args, **kwargs):  # the database stops answering, whatever code path asks
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    with app.app_context():
        server().keys.signer()
        engine = db.engine
    event.listen(engine, "before_cursor_execute", down)
    try:
        response = client.get("/api/me", headers=bearer(native_session["access_token"]))
    finally:
        event.remove(engine, "before_cursor_execute", down)
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) > 0


# --- which problem the description names (RFC 6750 error_description) ------------------------


def _description(response) -> str:
    assert_invalid_token(response)
    description = response.get_json()["error_description"]
    assert f'error_description="{description}"' in response.headers["WWW-Authenticate"]
    return description


def test_description_names_another_audience(client, fake_apple, native_client):
    session = exchange(client, fake_apple, native_client, audience=PARTNER_API).get_json()
    response = client.get("/api/me", headers=bearer(session["access_token"]))
    assert _description(response) == "The access token is for another audience."


def test_description_names_expiry(app, client, native_session):
    token = forge(app, native_session, exp=int(time.time()) - 120)
    response = client.get("/api/me", headers=bearer(token))
    assert _description(response) == "The access token has expired."


def test_description_names_revocation(client, native_client, native_session):
    client.post("/oauth/revoke", data={"token": native_session["refresh_token"],
                                       "client_id": native_client.client_id})
    response = client.get("/api/me", headers=bearer(native_session["access_token"]))
    assert _description(response) == "The access token was revoked."


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c"])
def test_description_of_garbage_says_not_valid_and_nothing_more(client, token):
    response = client.get("/api/me", headers=bearer(token))
    assert _description(response) == "The access token is not valid."
