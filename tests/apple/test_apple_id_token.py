"""Hostile Apple identity tokens (WEB-09…WEB-21 in docs/security.md) and the ones we must accept."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest

from siwa_web.apple import AppleClient
from siwa_web.apple import AppleSettings
from siwa_web.apple import InvalidIdentityToken
from support.apple import BUNDLE_ID
from support.apple import DEFAULT_SUB
from support.apple import KEY_ID
from support.apple import REMOVE
from support.apple import SERVICES_ID
from support.apple import TEAM_ID
from support.apple import b64url
from support.apple import rsa_public_jwk
from support.apple import sign_jws

NONCE = "n-0123456789abcdef"
CODE = "c0123456789abcdef0123456789abcdef.0.abcd.AbCdEfGhIjKlMnOpQrStUv"
ACCESS = "a0123456789abcdef0123456789abcdef.0.abcd.AbCdEfGhIjKlMnOpQrStUv"


@pytest.fixture
def apple(apple_private_key_pem, clock) -> AppleClient:
    settings = AppleSettings("https://appleid.apple.com", TEAM_ID, KEY_ID, apple_private_key_pem)
    return AppleClient(settings, clock=clock)


def reject(apple, token, reason: str, **kwargs) -> None:
    kwargs.setdefault("audience", SERVICES_ID)
    with pytest.raises(InvalidIdentityToken) as info:
        apple.verify_id_token(token, **kwargs)
    assert info.value.reason == reason


def test_baseline_token_is_accepted(apple, fake_apple):
    claims = apple.verify_id_token(fake_apple.mint_id_token(), audience=SERVICES_ID)
    assert claims.sub == DEFAULT_SUB and claims.aud == SERVICES_ID
    assert claims.email_verified is True and claims.is_private_email is True


# --- WEB-09/10: nonce --------------------------------------------------------------------------
def test_nonce_mismatch_is_rejected(apple, fake_apple):
    reject(apple, fake_apple.mint_id_token(nonce="other"), "nonce mismatch", nonce=NONCE)


@pytest.mark.parametrize("supported", [REMOVE, True, "true", False, "false"])
def test_missing_nonce_is_rejected_whatever_nonce_supported_says(apple, fake_apple, supported):
    token = fake_apple.mint_id_token(nonce_supported=supported)
    reject(apple, token, "missing nonce", nonce=NONCE)


@pytest.mark.parametrize("claim", [None, 123, ["x"], {"n": 1}, True])
def test_non_string_nonce_is_rejected(apple, fake_apple, claim):
    reason = "missing nonce" if claim is None else "invalid nonce"
    reject(apple, fake_apple.mint_id_token(nonce=claim), reason, nonce=NONCE)


def test_exact_nonce_is_accepted(apple, fake_apple):
    claims = apple.verify_id_token(fake_apple.mint_id_token(nonce=NONCE), audience=SERVICES_ID,
                                   nonce=NONCE)
    assert claims.nonce == NONCE


def test_exact_mode_does_not_accept_the_hash(apple, fake_apple):
    hashed = hashlib.sha256(NONCE.encode()).hexdigest()
    reject(apple, fake_apple.mint_id_token(nonce=hashed), "nonce mismatch", nonce=NONCE)


@pytest.mark.parametrize("claim", [NONCE, hashlib.sha256(NONCE.encode()).hexdigest()])
def test_native_nonce_accepts_raw_or_sha256_hex(apple, fake_apple, claim):
    token = fake_apple.mint_id_token(aud=BUNDLE_ID, nonce=claim, nonce_supported=True)
    claims = apple.verify_id_token(token, audience=BUNDLE_ID, nonce=NONCE, nonce_mode="native")
    assert claims.nonce == claim and claims.nonce_supported is True


@pytest.mark.parametrize("claim", [
    hashlib.sha256(NONCE.encode()).hexdigest().upper(),  # D7: lowercase hex only
    base64.b64encode(hashlib.sha256(NONCE.encode()).digest()).decode(),  # P13: not base64
    hashlib.sha256(b"other").hexdigest(),
    NONCE + " ",
])
def test_native_nonce_rejects_other_encodings(apple, fake_apple, claim):
    token = fake_apple.mint_id_token(aud=BUNDLE_ID, nonce=claim)
    reject(apple, token, "nonce mismatch", audience=BUNDLE_ID, nonce=NONCE, nonce_mode="native")


def test_no_nonce_requested_ignores_the_claim(apple, fake_apple):
    assert apple.verify_id_token(fake_apple.mint_id_token(nonce="x"), audience=SERVICES_ID).sub


def test_unknown_nonce_mode_is_a_programming_error(apple, fake_apple):
    with pytest.raises(ValueError):
        apple.verify_id_token(fake_apple.mint_id_token(), audience=SERVICES_ID, nonce="x",
                              nonce_mode="sha256")


@pytest.mark.parametrize("audience", ["", None])
def test_empty_audience_is_a_programming_error(apple, fake_apple, audience):
    with pytest.raises(ValueError):
        apple.verify_id_token(fake_apple.mint_id_token(aud=""), audience=audience)


# --- WEB-11/12/13 and other algorithm attacks --------------------------------------------------
def test_foreign_signature_with_apples_kid_is_rejected(apple, fake_apple):
    reject(apple, fake_apple.mint_id_token(key=fake_apple.foreign_key), "bad signature")


def test_other_apple_key_under_this_kid_is_rejected(apple, fake_apple):
    fake_apple.rotate_keys()
    token = fake_apple.mint_id_token(kid="FAKEKID001")  # signed with key 2, claims key 1
    reject(apple, token, "bad signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
def test_alg_none_is_rejected(apple, fake_apple, alg):
    token = fake_apple.mint_none_token()
    if alg != "none":
        token = _with_header(token, {"alg": alg, "kid": fake_apple.signing_kid})
    reject(apple, token, "unsupported alg")


def test_alg_none_with_a_real_signature_segment_is_rejected(apple, fake_apple):
    good = fake_apple.mint_id_token()
    token = _with_header(good, {"alg": "none", "kid": fake_apple.signing_kid})
    reject(apple, token, "unsupported alg")


@pytest.mark.parametrize("key_form", ["pem", "jwk"])
def test_hs256_keyed_with_apples_public_key_is_rejected(apple, fake_apple, key_form):
    reject(apple, fake_apple.mint_hs256_token(key_form=key_form), "unsupported alg")


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS384", "RS512", "PS256", "ES256"])
def test_other_algorithms_are_rejected(apple, fake_apple, alg):
    key = fake_apple.public_pem() if alg.startswith("HS") else None
    reject(apple, fake_apple.mint_id_token(alg=alg, key=key), "unsupported alg")


def test_missing_alg_is_rejected(apple, fake_apple):
    reject(apple, fake_apple.mint_id_token(header={"alg": REMOVE}), "unsupported alg")


@pytest.mark.parametrize("extra", [{"crit": ["exp"]}, {"crit": ["b64"], "b64": False},
                                   {"b64": False}])
def test_crit_and_unencoded_payload_headers_are_rejected(apple, fake_apple, extra):
    reject(apple, fake_apple.mint_id_token(header=extra), "unsupported header")


def test_embedded_jwk_with_attacker_key_is_not_trusted(apple, fake_apple):
    attacker = rsa_public_jwk(fake_apple.foreign_key, fake_apple.signing_kid)
    token = fake_apple.mint_id_token(key=fake_apple.foreign_key, header={"jwk": attacker})
    reject(apple, token, "bad signature")


@pytest.mark.parametrize("name", ["jku", "x5u"])
def test_key_urls_in_the_header_are_never_fetched(apple, fake_apple, requests_mock, name):
    evil = requests_mock.get("https://evil.example/keys.json", json=fake_apple.jwks())
    token = fake_apple.mint_id_token(key=fake_apple.foreign_key,
                                     header={name: "https://evil.example/keys.json"})
    reject(apple, token, "bad signature")
    # Signed by Apple, the header is ignored rather than fatal: keys come from Apple's URL only.
    assert apple.verify_id_token(fake_apple.mint_id_token(header={name: evil._url}),
                                 audience=SERVICES_ID).sub
    assert evil.call_count == 0


def test_x5c_chain_in_header_is_ignored(apple, fake_apple):
    token = fake_apple.mint_id_token(key=fake_apple.foreign_key, header={"x5c": ["MIIB"]})
    reject(apple, token, "bad signature")


# --- WEB-14: issuer ----------------------------------------------------------------------------
@pytest.mark.parametrize("iss", [
    "https://appleid.apple.com/", "http://appleid.apple.com", "appleid.apple.com",
    "https://appleid.apple.com.evil.example", "https://appleid.apple.co", "HTTPS://APPLEID.APPLE.COM",
    "https://appleid.apple.com ", " https://appleid.apple.com", "https://account.apple.com/",
    "https://evil.example/https://appleid.apple.com", "https://appleid", "", None, 1,
    ["https://appleid.apple.com"],
])
def test_issuer_variants_are_rejected(apple, fake_apple, iss):
    reject(apple, fake_apple.mint_id_token(iss=iss), "invalid iss")


def test_missing_issuer_is_rejected(apple, fake_apple):
    reject(apple, fake_apple.mint_id_token(iss=REMOVE), "missing iss")


@pytest.mark.parametrize("iss", ["https://appleid.apple.com", "https://account.apple.com"])
def test_both_allowlisted_issuers_are_accepted(apple, fake_apple, iss):
    assert apple.verify_id_token(fake_apple.mint_id_token(iss=iss), audience=SERVICES_ID).iss == iss


# --- WEB-15: audience --------------------------------------------------------------------------
@pytest.mark.parametrize("aud", [
    BUNDLE_ID, "com.other-team.web", [SERVICES_ID, "other"], [SERVICES_ID], "", None, 7,
    SERVICES_ID.upper(), SERVICES_ID + " ", "com.example.siwa", SERVICES_ID + ".evil",
])
def test_audience_variants_are_rejected(apple, fake_apple, aud):
    reject(apple, fake_apple.mint_id_token(aud=aud), "invalid aud")


def test_missing_audience_is_rejected(apple, fake_apple):
    reject(apple, fake_apple.mint_id_token(aud=REMOVE), "missing aud")


def test_web_token_is_not_a_native_token(apple, fake_apple):
    reject(apple, fake_apple.mint_id_token(), "invalid aud", audience=BUNDLE_ID)


# --- WEB-16/17: time ---------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [-61, -60, -3600])
def test_expired_beyond_leeway_is_rejected(apple, fake_apple, clock, offset):
    reject(apple, fake_apple.mint_id_token(exp=int(clock.now) + offset), "expired")


@pytest.mark.parametrize("offset", [-59, -30, 0, 1])
def test_expiry_within_leeway_is_accepted(apple, fake_apple, clock, offset):
    assert apple.verify_id_token(fake_apple.mint_id_token(exp=int(clock.now) + offset),
                                 audience=SERVICES_ID).sub


@pytest.mark.parametrize("name", ["exp", "iat"])
@pytest.mark.parametrize("value", ["9999999999", True, None, [1], {"t": 1}, float("nan"),
                                   float("inf")])
def test_non_numeric_times_are_rejected(apple, fake_apple, name, value):
    reject(apple, fake_apple.mint_id_token(**{name: value}), f"invalid {name}")


@pytest.mark.parametrize("name", ["exp", "iat", "sub"])
def test_required_claims_must_be_present(apple, fake_apple, name):
    reject(apple, fake_apple.mint_id_token(**{name: REMOVE}), f"missing {name}")


def test_float_times_are_accepted(apple, fake_apple, clock):
    token = fake_apple.mint_id_token(iat=clock.now - 0.5, exp=clock.now + 600.5)
    assert apple.verify_id_token(token, audience=SERVICES_ID).exp == int(clock.now + 600.5)


@pytest.mark.parametrize("offset,reason", [(120, "iat in the future"), (61, "iat in the future"),
                                           (-2 * 86400, "too old"), (-86461, "too old")])
def test_bad_iat_is_rejected(apple, fake_apple, clock, offset, reason):
    now = int(clock.now)
    reject(apple, fake_apple.mint_id_token(iat=now + offset, exp=now + 86400 * 3), reason)


@pytest.mark.parametrize("offset", [60, 30, -86400, -86460])
def test_iat_within_limits_is_accepted(apple, fake_apple, clock, offset):
    now = int(clock.now)
    token = fake_apple.mint_id_token(iat=now + offset, exp=now + 600)
    assert apple.verify_id_token(token, audience=SERVICES_ID).sub


def test_max_age_is_configurable(apple_private_key_pem, fake_apple, clock):
    settings = AppleSettings("https://appleid.apple.com", TEAM_ID, KEY_ID, apple_private_key_pem,
                             id_token_max_age=600)
    apple = AppleClient(settings, clock=clock)
    reject(apple, fake_apple.mint_id_token(iat=int(clock.now) - 601), "too old")


# --- WEB-18: sub -------------------------------------------------------------------------------
@pytest.mark.parametrize("sub", ["", "x" * 256, 12345, None, True, ["a"], "has space",
                                 "tab\there", "new\nline", "caf\u00e9", "\ud800"])
def test_bad_subjects_are_rejected(apple, fake_apple, sub):
    reject(apple, fake_apple.mint_id_token(sub=sub), "invalid sub")


def test_longest_subject_is_accepted(apple, fake_apple):
    assert apple.verify_id_token(fake_apple.mint_id_token(sub="x" * 255), audience=SERVICES_ID).sub


# --- WEB-19: kid -------------------------------------------------------------------------------
@pytest.mark.parametrize("kid", ["../../../../dev/null", "' OR '1'='1", "unknown-kid",
                                 "FAKEKID001 ", "fakekid001", "/etc/passwd", "%00"])
def test_unknown_or_hostile_kids_are_rejected(apple, fake_apple, kid):
    reject(apple, fake_apple.mint_id_token(kid=kid), "unknown key id")
    assert fake_apple.jwks_calls == 1


@pytest.mark.parametrize("kid", [REMOVE, "", 123, None, ["FAKEKID001"], {"k": 1}, "k" * 129])
def test_missing_or_malformed_kid_is_rejected(apple, fake_apple, kid):
    reject(apple, fake_apple.mint_id_token(header={"kid": kid}), "missing or invalid kid")
    assert fake_apple.jwks_calls == 0


def test_hostile_kids_cost_at_most_one_refetch(apple, fake_apple):
    apple.verify_id_token(fake_apple.mint_id_token(), audience=SERVICES_ID)
    for kid in ["../../../../dev/null", "' OR '1'='1", "a", "b", "c"]:
        reject(apple, fake_apple.mint_id_token(kid=kid), "unknown key id")
    assert fake_apple.jwks_calls == 2


# --- c_hash / at_hash --------------------------------------------------------------------------
def test_matching_hashes_are_accepted(apple, fake_apple):
    token = fake_apple.mint_id_token(code=CODE, access_token=ACCESS)
    claims = apple.verify_id_token(token, audience=SERVICES_ID, code=CODE, access_token=ACCESS)
    assert claims.c_hash and claims.at_hash


@pytest.mark.parametrize("kwargs,reason", [
    ({"code": "another-code"}, "c_hash mismatch"),
    ({"access_token": "another-token"}, "at_hash mismatch"),
])
def test_hash_mismatch_is_rejected(apple, fake_apple, kwargs, reason):
    token = fake_apple.mint_id_token(code=CODE, access_token=ACCESS)
    reject(apple, token, reason, **kwargs)


@pytest.mark.parametrize("name", ["c_hash", "at_hash"])
@pytest.mark.parametrize("value", [123, None, "", "\ud800", b64url(b"x" * 16)])
def test_malformed_hash_claims_are_rejected(apple, fake_apple, name, value):
    token = fake_apple.mint_id_token(**{name: value})
    reject(apple, token, f"{name} mismatch", code=CODE, access_token=ACCESS)


def test_absent_hashes_are_tolerated(apple, fake_apple):
    assert apple.verify_id_token(fake_apple.mint_id_token(), audience=SERVICES_ID, code=CODE,
                                 access_token=ACCESS).sub


# --- flags (P6) and optional claims ------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [(True, True), ("true", True), (False, False),
                                            ("false", False), ("TRUE", False), (1, False)])
def test_string_and_bool_flags(apple, fake_apple, value, expected):
    claims = apple.verify_id_token(
        fake_apple.mint_id_token(email_verified=value, is_private_email=value),
        audience=SERVICES_ID)
    assert claims.email_verified is expected and claims.is_private_email is expected


@pytest.mark.parametrize("email,private", [("ab12cd34ef@privaterelay.appleid.com", True),
                                           ("AB12@PrivateRelay.AppleID.com", True),
                                           ("maria@example.com", False),
                                           ("x@privaterelay.appleid.com.evil.example", False)])
def test_missing_is_private_email_falls_back_to_the_relay_domain(apple, fake_apple, email,
                                                                  private):
    token = fake_apple.mint_id_token(email=email, is_private_email=REMOVE)
    assert apple.verify_id_token(token, audience=SERVICES_ID).is_private_email is private


def test_missing_email_is_fine(apple, fake_apple):
    token = fake_apple.mint_id_token(email=REMOVE, email_verified=REMOVE, is_private_email=REMOVE)
    claims = apple.verify_id_token(token, audience=SERVICES_ID)
    assert claims.email is None and claims.email_verified is False


@pytest.mark.parametrize("email", [123, ["a@example.com"], {"a": 1}, True])
def test_non_string_email_is_rejected(apple, fake_apple, email):
    reject(apple, fake_apple.mint_id_token(email=email), "invalid email")


@pytest.mark.parametrize("name", ["auth_time", "real_user_status"])
@pytest.mark.parametrize("value", ["2", 2.5, True, ["x"]])
def test_odd_informational_claims_are_dropped_not_fatal(apple, fake_apple, name, value):
    claims = apple.verify_id_token(fake_apple.mint_id_token(**{name: value}), audience=SERVICES_ID)
    assert getattr(claims, name) is None


def test_real_user_status_and_unknown_claims_pass_through(apple, fake_apple):
    token = fake_apple.mint_id_token(real_user_status=2, transfer_sub="t.x.1", org_id="o")
    claims = apple.verify_id_token(token, audience=SERVICES_ID)
    assert claims.real_user_status == 2 and claims.raw["transfer_sub"] == "t.x.1"


# --- shape, size and garbage -------------------------------------------------------------------
def _with_header(token: str, header: dict) -> str:
    return ".".join([b64url(json.dumps(header).encode()), *token.split(".")[1:]])


def test_jwe_is_rejected(apple, fake_apple):
    reject(apple, "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "encrypted token")


def test_oversized_token_is_rejected(apple, fake_apple):
    reject(apple, fake_apple.mint_id_token(padding="x" * 9000), "token too large")


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "....", "a..b..c", "eyJ.eyJ.!!!",
                                   "a b.c.d", "x" * 100, "\u00e9.\u00e9.\u00e9", "a.b.c\n"])
def test_malformed_tokens_are_rejected(apple, token):
    with pytest.raises(InvalidIdentityToken):
        apple.verify_id_token(token, audience=SERVICES_ID)


@pytest.mark.parametrize("token", [None, b"a.b.c", 123, ["a.b.c"]])
def test_non_string_tokens_are_rejected(apple, token):
    reject(apple, token, "missing token")


@pytest.mark.parametrize("segment", ["e30", "W10", "bnVsbA", "Ig", "eyJhIjo", "_w", "AAAA"])
def test_garbage_headers_are_rejected(apple, fake_apple, segment):
    token = ".".join([segment, *fake_apple.mint_id_token().split(".")[1:]])
    with pytest.raises(InvalidIdentityToken):
        apple.verify_id_token(token, audience=SERVICES_ID)


def test_duplicate_header_names_are_rejected(apple, fake_apple):
    raw = b'{"alg":"none","kid":"FAKEKID001","alg":"RS256"}'
    token = ".".join([b64url(raw), *fake_apple.mint_id_token().split(".")[1:]])
    reject(apple, token, "malformed header")


@pytest.mark.parametrize("payload", [b"not json", b"[1,2]", b'"str"', b"null", b"\xff\xfe",
                                     b'{"sub":"a","sub":"b"}', b"[" * 5000 + b"]" * 5000])
def test_signed_garbage_payloads_are_rejected(apple, fake_apple, payload):
    token = fake_apple.mint_id_token(payload=payload)
    with pytest.raises(InvalidIdentityToken):
        apple.verify_id_token(token, audience=SERVICES_ID)


def test_tampered_payload_is_rejected(apple, fake_apple):
    header, _, sig = fake_apple.mint_id_token().split(".")
    forged = b64url(json.dumps(fake_apple.default_claims("victim.sub.0001")).encode())
    reject(apple, f"{header}.{forged}.{sig}", "bad signature")


def test_signature_stripped_is_rejected(apple, fake_apple):
    header, payload, _ = fake_apple.mint_id_token().split(".")
    reject(apple, f"{header}.{payload}.", "bad signature")


def test_only_invalid_identity_token_escapes_for_garbage(apple, fake_apple):
    """Fuzz-ish: mutate a valid token byte by byte; every failure has our one exception type."""
    good = fake_apple.mint_id_token()
    for i in range(0, len(good), 7):
        for ch in ".=-_A\x00":
            bad = good[:i] + ch + good[i + 1:]
            try:
                apple.verify_id_token(bad, audience=SERVICES_ID)
            except InvalidIdentityToken:
                pass


def test_hand_signed_token_without_fixture_defaults(apple, fake_apple, clock):
    """The minimum Apple sends (2019 token-endpoint shape) is enough."""
    now = int(clock.now)
    claims = {"iss": "https://appleid.apple.com", "aud": SERVICES_ID, "exp": now + 600,
              "iat": now, "sub": "000657.66562d3b11bc403099b1cdb4947c1d3c.1142"}
    token = sign_jws({"kid": fake_apple.signing_kid, "alg": "RS256"}, claims, "RS256",
                     fake_apple.keys[fake_apple.signing_kid])
    parsed = apple.verify_id_token(token, audience=SERVICES_ID)
    assert parsed.email is None and parsed.is_private_email is False
