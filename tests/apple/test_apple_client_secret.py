"""The ES256 client secret: Apple's header and claims, lifetime limits, caching and renewal."""
from __future__ import annotations

import base64
import threading

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from siwa_web.apple import ClientSecretFactory
from siwa_web.apple.client_secret import MAX_LIFETIME
from support.apple import KEY_ID
from support.apple import SERVICES_ID
from support.apple import TEAM_ID
from support.apple import FakeClock

BUNDLE_ID = "com.example.siwa.ios"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def factory(apple_private_key_pem, clock) -> ClientSecretFactory:
    return ClientSecretFactory(TEAM_ID, KEY_ID, apple_private_key_pem, clock=clock)


def public_key(pem: str):
    return serialization.load_pem_private_key(pem.encode(), None).public_key()


def decode(secret: str, pem: str, now: float) -> dict:
    """Verify with a stock library (PyJWT), at the fake time."""
    return pyjwt.decode(secret, public_key(pem), algorithms=["ES256"],
                        audience="https://appleid.apple.com", issuer=TEAM_ID,
                        options={"require": ["iss", "sub", "aud", "exp", "iat"],
                                 "verify_exp": False, "verify_iat": False})


def test_header_is_exactly_alg_and_kid(factory):
    assert pyjwt.get_unverified_header(factory.get(SERVICES_ID)) == {"alg": "ES256", "kid": KEY_ID}


def test_claims_match_apples_contract(factory, apple_private_key_pem, clock):
    claims = decode(factory.get(SERVICES_ID), apple_private_key_pem, clock.now)
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp"}
    assert claims["iss"] == TEAM_ID
    assert claims["sub"] == SERVICES_ID
    assert claims["aud"] == "https://appleid.apple.com"
    assert claims["iat"] == int(clock.now) - 60  # back-dated against clock skew
    assert claims["exp"] - claims["iat"] <= MAX_LIFETIME
    assert claims["exp"] - claims["iat"] == 15552000


def test_signature_is_raw_r_s_not_der(factory):
    sig = factory.get(SERVICES_ID).rsplit(".", 1)[1]
    assert len(base64.urlsafe_b64decode(sig + "==")) == 64  # TN3107: DER gives invalid_client


def test_the_fake_apple_accepts_it(factory, fake_apple, clock):
    fake_apple.clock = clock
    form = {"client_id": SERVICES_ID, "client_secret": factory.get(SERVICES_ID)}
    assert fake_apple.verify_client_secret(form)["sub"] == SERVICES_ID


def test_one_secret_per_client_id(factory, apple_private_key_pem, clock):
    web, native = factory.get(SERVICES_ID), factory.get(BUNDLE_ID)
    assert web != native
    assert decode(native, apple_private_key_pem, clock.now)["sub"] == BUNDLE_ID


def test_cached_until_renewal(factory, clock):
    first = factory.get(SERVICES_ID)
    clock.advance(factory.lifetime / 2 - 1)
    assert factory.get(SERVICES_ID) == first
    clock.advance(2)
    assert factory.get(SERVICES_ID) != first


def test_never_used_near_or_past_exp(factory, apple_private_key_pem, clock):
    """REL-14: stepping through a year, every secret handed out has most of its life left."""
    for _ in range(400):
        claims = decode(factory.get(SERVICES_ID), apple_private_key_pem, clock.now)
        assert claims["exp"] - clock.now > factory.lifetime / 2 - 86400
        assert claims["exp"] <= clock.now + MAX_LIFETIME
        assert claims["iat"] <= clock.now
        clock.advance(86400)


def test_clock_jumping_back_renews(factory, apple_private_key_pem, clock):
    first = factory.get(SERVICES_ID)
    clock.advance(-3600)
    second = factory.get(SERVICES_ID)
    assert second != first
    assert decode(second, apple_private_key_pem, clock.now)["iat"] == int(clock.now) - 60


def test_concurrent_callers_share_one_secret(factory):
    results: list[str] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        results.append(factory.get(SERVICES_ID))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and len(set(results)) == 1


@pytest.mark.parametrize("lifetime", [MAX_LIFETIME + 1, 15777000 * 2, 0, -5])
def test_lifetime_beyond_apples_limit_is_refused(apple_private_key_pem, lifetime):
    with pytest.raises(ValueError):
        ClientSecretFactory(TEAM_ID, KEY_ID, apple_private_key_pem, lifetime=lifetime)


def test_short_lifetime_renews_early(apple_private_key_pem, clock):
    factory = ClientSecretFactory(TEAM_ID, KEY_ID, apple_private_key_pem, lifetime=3600,
                                  clock=clock)
    first = factory.get(SERVICES_ID)
    clock.advance(1801)
    assert factory.get(SERVICES_ID) != first


def rsa_pem() -> str:
    key = rsa.generate_private_key(65537, 2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("pem", ["", "not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                 "-----END PRIVATE KEY-----\n", "rsa"])
def test_bad_keys_fail_at_construction(pem):
    pem = rsa_pem() if pem == "rsa" else pem
    with pytest.raises(ValueError) as info:
        ClientSecretFactory(TEAM_ID, KEY_ID, pem)
    assert "BEGIN" not in str(info.value)


def test_public_key_is_refused(apple_private_key_pem):
    pub = public_key(apple_private_key_pem).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError):
        ClientSecretFactory(TEAM_ID, KEY_ID, pub)


def test_repr_hides_the_key(factory, apple_private_key_pem):
    assert "PRIVATE" not in repr(factory)
    assert apple_private_key_pem.splitlines()[1] not in repr(factory)
