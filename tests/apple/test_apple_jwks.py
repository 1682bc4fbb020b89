"""Apple's key set: rotation, junk entries, unknown-kid floods and JWKS outages (REL-07…09)."""
from __future__ import annotations

import secrets
import threading
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from siwa_web.apple import AppleClient
from siwa_web.apple import AppleKeySet
from siwa_web.apple import AppleSettings
from siwa_web.apple import AppleUnavailable
from siwa_web.apple import InvalidIdentityToken
from siwa_web.apple.jwks import parse_jwks
from support.apple import KEY_ID
from support.apple import SERVICES_ID
from support.apple import TEAM_ID
from support.apple import FakeClock
from support.apple import rsa_public_jwk

MAX_AGE = 86400
COOLDOWN = 30.0


@pytest.fixture
def apple(apple_private_key_pem, clock) -> AppleClient:
    settings = AppleSettings("https://appleid.apple.com", TEAM_ID, KEY_ID, apple_private_key_pem,
                             jwks_max_age=MAX_AGE, jwks_refetch_cooldown=COOLDOWN)
    return AppleClient(settings, clock=clock)


def verify(apple: AppleClient, token: str):
    return apple.verify_id_token(token, audience=SERVICES_ID)


def test_keys_are_fetched_once_and_cached(apple, fake_apple, clock):
    for _ in range(50):
        verify(apple, fake_apple.mint_id_token())
        clock.advance(60)
    assert fake_apple.jwks_calls == 1


def test_rotation_costs_exactly_one_refetch(apple, fake_apple, clock):
    """REL-07: a token under a new kid is accepted after one fetch; a retired key dies with
    the cache."""
    verify(apple, fake_apple.mint_id_token())
    fake_apple.rotate_keys()
    clock.advance(1)
    assert verify(apple, fake_apple.mint_id_token()).sub
    assert fake_apple.jwks_calls == 2
    old = fake_apple.mint_id_token(kid="FAKEKID001", key=fake_apple.keys["FAKEKID001"])
    fake_apple.retire_key("FAKEKID001")
    assert verify(apple, old).sub  # still cached
    clock.advance(MAX_AGE / 2 + 1)
    with pytest.raises(InvalidIdentityToken, match="unknown key id"):
        verify(apple, fake_apple.mint_id_token(kid="FAKEKID001", key=fake_apple.keys["FAKEKID001"]))
    assert fake_apple.jwks_calls == 3


def small_rsa_jwk() -> dict:
    return rsa_public_jwk(rsa.generate_private_key(65537, 1024), "small")


@pytest.mark.parametrize("junk", [
    {"kty": "EC", "kid": "ec1", "crv": "P-256", "x": "AAAA", "y": "BBBB"},
    {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
    {"kty": "OKP", "kid": "ed", "crv": "Ed25519",
     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    {"kty": "RSA", "kid": "broken", "n": "!!!not base64!!!", "e": "AQAB"},
    {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
    {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
    {"kty": "RSA", "kid": 42, "n": "AQAB", "e": "AQAB"},
    {"kty": "WAT", "kid": "future"},
    "not an object",
    None,
    [1, 2, 3],
])
def test_unparseable_keys_are_ignored(apple, fake_apple, junk):
    """REL-07b: junk next to the real key changes nothing."""
    fake_apple.jwks_extra = [junk, small_rsa_jwk() if junk is None else junk]
    assert verify(apple, fake_apple.mint_id_token()).sub


@pytest.mark.parametrize("entry_change", [{"use": "enc"}, {"alg": "RS512"}, {"alg": "HS256"}])
def test_keys_not_for_rs256_signing_are_ignored(fake_apple, entry_change):
    good = fake_apple.public_jwk()
    other = {**fake_apple.public_jwk("FAKEKID002"), **entry_change}
    assert list(parse_jwks({"keys": [good, other]})) == ["FAKEKID001"]


def test_small_rsa_keys_are_ignored(fake_apple):
    assert list(parse_jwks({"keys": [small_rsa_jwk(), fake_apple.public_jwk()]})) == ["FAKEKID001"]


def test_private_parts_of_a_jwk_are_never_imported(fake_apple):
    entry = {**fake_apple.public_jwk(), "d": "AAAA", "p": "AAAA"}
    assert not parse_jwks({"keys": [entry]})["FAKEKID001"].is_private


@pytest.mark.parametrize("document", [{}, {"keys": []}, {"keys": "x"}, [], "x", None,
                                      {"keys": [{"kty": "oct", "kid": "a", "k": "AAAA"}]}])
def test_a_set_without_usable_keys_is_a_failed_fetch(document):
    with pytest.raises(ValueError):
        parse_jwks(document)


def random_kid_token(fake_apple) -> str:
    return fake_apple.mint_id_token(kid=secrets.token_urlsafe(8))


def test_unknown_kid_flood_is_bounded(apple, fake_apple, clock):
    """REL-08: 1,000 random kids in a minute cost at most two fetches; real logins still pass."""
    verify(apple, fake_apple.mint_id_token())
    before = fake_apple.jwks_calls
    for i in range(1000):
        with pytest.raises(InvalidIdentityToken):
            verify(apple, random_kid_token(fake_apple))
        if i % 100 == 0:
            assert verify(apple, fake_apple.mint_id_token()).sub
        clock.advance(0.06)
    assert fake_apple.jwks_calls - before <= 2


def test_one_refetch_per_cooldown_window(apple, fake_apple, clock):
    verify(apple, fake_apple.mint_id_token())
    clock.advance(COOLDOWN)
    for _ in range(5):
        with pytest.raises(InvalidIdentityToken):
            verify(apple, random_kid_token(fake_apple))
    assert fake_apple.jwks_calls == 2
    clock.advance(COOLDOWN - 1)
    with pytest.raises(InvalidIdentityToken):
        verify(apple, random_kid_token(fake_apple))
    assert fake_apple.jwks_calls == 2
    clock.advance(1)
    with pytest.raises(InvalidIdentityToken):
        verify(apple, random_kid_token(fake_apple))
    assert fake_apple.jwks_calls == 3


@pytest.mark.parametrize("failure", [
    {"status": 503}, {"status": 500, "json": {"error": "x"}}, {"status": 200, "text": "<html>"},
    {"exc": requests.exceptions.ConnectTimeout}, {"exc": requests.exceptions.ReadTimeout},
    {"status": 302, "headers": {"Location": "https://evil.example/keys"}},
])
def test_cold_cache_with_apple_down_is_unavailable(apple, fake_apple, clock, failure):
    """REL-09 cold: 503 quickly, and not one fetch per request while Apple is down."""
    fake_apple.outage("keys", **failure)
    for _ in range(10):
        with pytest.raises(AppleUnavailable):
            verify(apple, fake_apple.mint_id_token())
        clock.advance(1)
    assert fake_apple.jwks_calls == 1


def test_cold_cache_recovers_after_cooldown(apple, fake_apple, clock):
    fake_apple.outage("keys")
    with pytest.raises(AppleUnavailable):
        verify(apple, fake_apple.mint_id_token())
    fake_apple.restore("keys")
    clock.advance(COOLDOWN)
    assert verify(apple, fake_apple.mint_id_token()).sub
    assert fake_apple.jwks_calls == 2


def test_warm_cache_survives_an_outage_up_to_max_age(apple, fake_apple, clock):
    """REL-09 warm: logins keep working on cached keys until jwks_max_age, then 503."""
    verify(apple, fake_apple.mint_id_token())
    fake_apple.outage("keys", exc=requests.exceptions.ConnectTimeout)
    clock.advance(MAX_AGE / 2 + 1)  # a refresh is due and fails
    for _ in range(20):
        assert verify(apple, fake_apple.mint_id_token()).sub
        clock.advance(COOLDOWN / 3)
    assert fake_apple.jwks_calls <= 1 + 8
    clock.advance(MAX_AGE / 2)
    with pytest.raises(AppleUnavailable):
        verify(apple, fake_apple.mint_id_token())


def test_unknown_kid_while_apple_is_down_is_unavailable_not_invalid(apple, fake_apple, clock):
    """A rotated key we could not fetch is Apple's outage (503), not the user's bad token."""
    verify(apple, fake_apple.mint_id_token())
    fake_apple.outage("keys")
    fake_apple.rotate_keys()
    clock.advance(COOLDOWN)
    with pytest.raises(AppleUnavailable):
        verify(apple, fake_apple.mint_id_token())
    fake_apple.restore("keys")
    clock.advance(COOLDOWN)
    assert verify(apple, fake_apple.mint_id_token()).sub


def test_fetch_is_refreshed_after_half_max_age(apple, fake_apple, clock):
    verify(apple, fake_apple.mint_id_token())
    clock.advance(MAX_AGE / 2 + 1)
    verify(apple, fake_apple.mint_id_token())
    assert fake_apple.jwks_calls == 2


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyError("x"), AppleUnavailable("down")])
def test_any_fetch_error_counts_as_apple_down(exc):
    def fetch() -> dict:
        raise exc

    keys = AppleKeySet(fetch, max_age=MAX_AGE, refetch_cooldown=COOLDOWN, clock=FakeClock())
    with pytest.raises(AppleUnavailable):
        keys.key_for("FAKEKID001")


def test_key_set_uses_only_the_injected_fetch(fake_apple):
    calls = []

    def fetch() -> dict:
        calls.append(1)
        return fake_apple.jwks()

    keys = AppleKeySet(fetch, clock=FakeClock())
    assert keys.key_for("FAKEKID001") is keys.key_for("FAKEKID001")
    assert len(calls) == 1 and fake_apple.jwks_calls == 0


def test_clock_going_backwards_forces_a_refetch_not_a_stale_cache(apple, fake_apple, clock):
    verify(apple, fake_apple.mint_id_token())
    clock.advance(-3600)
    verify(apple, fake_apple.mint_id_token())
    assert fake_apple.jwks_calls == 2


def test_concurrent_cold_lookups_fetch_once(fake_apple):
    """A burst of logins on a cold cache waits for one fetch instead of each fetching."""
    calls = []

    def slow_fetch() -> dict:
        calls.append(1)
        time.sleep(0.05)
        return fake_apple.jwks()

    keys = AppleKeySet(slow_fetch)
    barrier = threading.Barrier(16)
    found = []

    def worker() -> None:
        barrier.wait()
        found.append(keys.key_for("FAKEKID001"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(found) == 16
