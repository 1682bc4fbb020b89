"""Flask glue: one AppleClient per app, configured from APPLE_* keys."""
from __future__ import annotations

import pytest

from siwa_web import create_app
from siwa_web.apple import AppleClient
from siwa_web.infra.apple_client import apple_client


def test_one_client_per_app_from_config(app, apple_private_key_pem):
    with app.app_context():
        client = apple_client()
        assert isinstance(client, AppleClient)
        assert apple_client() is client
    s = client.settings
    assert s.base_url == "https://appleid.apple.com"
    assert (s.team_id, s.key_id) == ("TESTTEAM01", "TESTKEY001")
    assert s.private_key_pem == apple_private_key_pem
    assert s.issuers == ("https://appleid.apple.com", "https://account.apple.com")
    assert s.timeout == (3.0, 8.0)
    assert (s.jwks_max_age, s.jwks_refetch_cooldown, s.leeway, s.id_token_max_age) == (
        86400, 30.0, 60, 86460)


def test_tuning_keys_are_honoured(app_config):
    app_config.update(APPLE_CONNECT_TIMEOUT=1, APPLE_READ_TIMEOUT="4.5", APPLE_JWKS_MAX_AGE=3600,
                      APPLE_JWKS_REFETCH_COOLDOWN=60, APPLE_TOKEN_LEEWAY=30,
                      APPLE_ID_TOKEN_MAX_AGE=900, APPLE_ISSUERS="https://appleid.apple.com")
    app = create_app(app_config)
    with app.app_context():
        s = apple_client().settings
    assert s.timeout == (1.0, 4.5)
    assert (s.jwks_max_age, s.jwks_refetch_cooldown, s.leeway, s.id_token_max_age) == (
        3600, 60.0, 30, 900)
    assert s.issuers == ("https://appleid.apple.com",)


def test_apps_do_not_share_clients(app_config):
    first, second = create_app(app_config), create_app(app_config)
    with first.app_context():
        a = apple_client()
    with second.app_context():
        b = apple_client()
    assert a is not b


def test_outside_an_app_context_is_an_error():
    with pytest.raises(RuntimeError):
        apple_client()


def test_end_to_end_through_the_app_client(app, fake_apple):
    auth = fake_apple.authorize(nonce="n1", redirect_uri="https://siwa.test/auth/apple/callback")
    with app.app_context():
        apple = apple_client()
        services_id = app.config["APPLE_SERVICES_ID"]
        front = apple.verify_id_token(auth.id_token, audience=services_id, nonce="n1",
                                      code=auth.code)
        tokens = apple.exchange_code(client_id=services_id, code=auth.code,
                                     redirect_uri="https://siwa.test/auth/apple/callback")
        back = apple.verify_id_token(tokens.id_token, audience=services_id,
                                     access_token=tokens.access_token)
    assert front.sub == back.sub == auth.sub
    assert fake_apple.client_secret_errors == []
