"""Two Apple teams and the emulator between them: the app as team A, then as team B.

Fixtures: `apple_emulator` (an emulator that trusts `app`'s team, answering the app's Apple
client in-process at APPLE_BASE_URL), `team_b_key_pem`, `team_b_app` (the same database,
configured with team B's credentials, routed to the same emulator). Helpers sign users in
through the real browser callback and the real native exchange.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from siwa_web import create_app
from siwa_web.emulator import create_emulator_app
from siwa_web.emulator import settings_from_app
from siwa_web.emulator.transport import WSGIAdapter
from siwa_web.infra.extensions import db
from support.emulator import form_fields
from support.tokens import exchange_params
from support.tokens import post_token
from support.web import CALLBACK
from support.web import start_login

TEAM_B = "TEAMBBBB02"
KEY_B = "KEYBBBB002"


def new_p8() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_of(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def route_to(app, emulator) -> None:
    """Send `app`'s Apple calls to `emulator` in-process (no network, no port)."""
    client = app.extensions["siwa.apple"]
    base = app.config["APPLE_BASE_URL"]
    client.session.mount(base + "/", WSGIAdapter(emulator, urlsplit(base).path))


@pytest.fixture(scope="session")
def team_b_key_pem() -> str:
    return new_p8()


@pytest.fixture
def apple_emulator(app, rsa_pool, monkeypatch):
    """The emulator trusting `app` (team A), its RSA keys from the session's pool."""
    pool = itertools.cycle(rsa_pool)

    class PooledRSAKey:
        @staticmethod
        def generate_key(size: int, parameters: dict | None = None):
            return next(pool)

    monkeypatch.setattr("siwa_web.emulator.keys.RSAKey", PooledRSAKey)
    emulator = create_emulator_app(settings_from_app(app))
    route_to(app, emulator)
    return emulator


@pytest.fixture
def team_b_app(app_config, apple_emulator, team_b_key_pem):
    """siwa-web after the transfer: same database, team B's credentials, same emulator.

    Team B is registered at the emulator (it exists at Apple before the app moves to it).
    """
    admin = apple_emulator.test_client()
    resp = admin.post("/__emulator/teams", json={
        "team_id": TEAM_B, "client_keys": {KEY_B: public_of(team_b_key_pem)}})
    assert resp.status_code == 200, resp.data
    app = create_app({**app_config, "APPLE_TEAM_ID": TEAM_B, "APPLE_KEY_ID": KEY_B,
                      "APPLE_PRIVATE_KEY": team_b_key_pem})
    route_to(app, apple_emulator)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@dataclass
class AppleSide:
    """The emulator's test controls, as the test harness (and a person at Apple) uses them."""

    emulator: Any

    def post(self, path: str, body: dict | None = None):
        resp = self.emulator.test_client().post(f"/__emulator/{path}", json=body or {})
        assert resp.status_code in (200, 201), resp.data
        return resp.get_json()

    def new_user(self, email: str, first: str = "Test", last: str = "User") -> dict:
        return self.post("users", {"email": email, "first_name": first, "last_name": last})

    def user(self, user_id: str) -> dict:
        return self.emulator.test_client().get(f"/__emulator/users/{user_id}").get_json()

    def transfer(self, to_team: str = TEAM_B) -> dict:
        return self.post("transfer", {"to_team": to_team})

    def advance(self, seconds: float) -> None:
        self.post("clock", {"advance": seconds})

    def fail(self, endpoint: str, **failure: Any) -> None:
        self.post("failures", {"endpoint": endpoint, **failure})


def web_sign_in(client, apple: AppleSide, apple_user_id: str):
    """Our login → Apple (this person continues) → Apple's form_post to our callback."""
    start = start_login(client)
    apple.post("next-login", {"user_id": apple_user_id})
    page = apple.emulator.test_client().get("/auth/authorize?" + urlsplit(start.location).query)
    assert page.status_code == 200, page.data
    return client.post(CALLBACK, data=form_fields(page.get_data(as_text=True)))


def native_sign_in(client, apple: AppleSide, native, apple_user_id: str, **choices: Any):
    """The iOS app signs this person in and hands the code to POST /oauth/token."""
    cred = apple.post("native/authorize", {"bundle_id": native.bundle_id,
                                           "user_id": apple_user_id, **choices})
    return post_token(client, exchange_params(native, cred["authorizationCode"]))
