"""Signing keys (created on first use, encrypted, parsed once, rotated), JWKS and discovery."""
from __future__ import annotations

from datetime import timedelta

import jwt as pyjwt
import pytest

from siwa_web.infra.extensions import db
from siwa_web.models import SigningKey
from siwa_web.models.base import now_utc
from siwa_web.oauth import keys as key_store
from siwa_web.tokens.extension import server
from support.config import ISSUER
from support.tokens import TOKEN_EXCHANGE
from support.tokens import bearer


def test_first_key_is_created_on_first_use_and_encrypted(app, client):
    assert client.get("/.well-known/jwks.json").get_json() == {"keys": []}
    with app.app_context():
        signer = server().keys.signer()
        [row] = db.session.execute(db.select(SigningKey)).scalars().all()
        assert row.kid == signer.kid and row.alg == "ES256" and row.retired_at is None
        assert "PRIVATE KEY" not in row.private_key_encrypted
        assert "d" not in row.public_jwk  # the public half only
    [jwk] = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert jwk == {**jwk, "kid": signer.kid, "kty": "EC", "crv": "P-256", "alg": "ES256",
                   "use": "sig"}
    assert set(jwk) == {"kid", "kty", "crv", "x", "y", "alg", "use"}


def test_keys_are_parsed_once_per_process(app, monkeypatch):
    calls = []
    real = key_store._import_private
    monkeypatch.setattr(key_store, "_import_private",
                        lambda *a: calls.append(1) or real(*a))
    with app.app_context():
        ring = server().keys
        first = ring.signer()
        for _ in range(20):
            ring.reload()
            assert ring.signer() is not None
        assert ring.signer().private is first.private
    assert len(calls) == 1


def test_unknown_kid_reload_is_rate_limited(app, monkeypatch):
    with app.app_context():
        ring = server().keys
        ring.signer()
        reloads = []
        real = ring.reload
        monkeypatch.setattr(ring, "reload", lambda **kw: reloads.append(1) or real(**kw))
        for i in range(50):
            assert ring.verification_key(f"random-kid-{i}") is None
    assert len(reloads) <= 1


def test_another_process_rotation_is_seen_within_the_cache_time(app, monkeypatch):
    """Another worker rotates: this one picks the new signer up after key_cache_seconds."""
    with app.app_context():
        ring = server().keys
        old = ring.signer().kid
        new, _ = key_store.rotate(db.engine, server().settings)  # as another process would
        assert ring.signer().kid == old  # cached
        ring._loaded_at -= server().settings.key_cache_seconds
        assert ring.signer().kid == new
        assert ring.verification_key(old) is not None  # still published


def test_rotation_keeps_old_key_published_until_its_tokens_expire(app, client, runner):
    with app.app_context():
        old = server().keys.signer().kid
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert len(kids) == 2 and old in kids and kids[0] != old  # newest first
    with app.app_context():
        row = db.session.get(SigningKey, old)
        lifetime = max(app.config["ACCESS_TOKEN_TTL"], app.config["ID_TOKEN_TTL"])
        assert row.unpublish_after - row.retired_at >= timedelta(seconds=lifetime)
        row.unpublish_after = now_utc() - timedelta(seconds=1)
        db.session.commit()
        server().keys.invalidate()
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert old not in kids and len(kids) == 1


@pytest.fixture(params=["ES384", "RS256"])
def alg(request, app_config):
    app_config["SIGNING_ALG"] = request.param
    return request.param


def test_other_signing_algorithms(alg, client, fake_apple, native_client):
    from support.tokens import exchange

    body = exchange(client, fake_apple, native_client).get_json()
    assert pyjwt.get_unverified_header(body["access_token"])["alg"] == alg
    assert client.get("/api/me", headers=bearer(body["access_token"])).status_code == 200


def test_discovery_document(client):
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["issuer"] == ISSUER
    assert doc["token_endpoint"] == ISSUER + "/oauth/token"
    assert doc["revocation_endpoint"] == ISSUER + "/oauth/revoke"
    assert doc["userinfo_endpoint"] == ISSUER + "/userinfo"
    assert doc["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert doc["grant_types_supported"] == [TOKEN_EXCHANGE, "refresh_token", "authorization_code"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert doc["scopes_supported"] == ["openid", "profile", "email", "offline_access"]
    assert doc["authorization_endpoint"] == ISSUER + "/oauth/authorize"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "none"]
    assert doc["end_session_endpoint"] == ISSUER + "/oauth/logout"
    assert doc["backchannel_logout_supported"] is True
    assert doc["backchannel_logout_session_supported"] is True
    assert "frontchannel_logout_supported" not in doc  # not implemented, so not claimed


def test_jwks_is_cacheable_but_tokens_are_not(client, native_session):
    assert "max-age" in client.get("/.well-known/jwks.json").headers["Cache-Control"]
    assert "Set-Cookie" not in client.get("/.well-known/jwks.json").headers
