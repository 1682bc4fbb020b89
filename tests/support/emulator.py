"""Shared fixtures and helpers for the Apple emulator tests (no tests of its own)."""
from __future__ import annotations

import base64
import html
import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet
from joserfc.jwk import RSAKey

from siwa_web import create_app
from siwa_web.emulator import EmulatorSettings
from siwa_web.emulator import create_emulator_app
from siwa_web.infra.extensions import db

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
WEB_ID = "com.example.web"
OTHER_WEB_ID = "com.example.other"
BUNDLE_ID = "com.example.ios"
WEB_REDIRECT = "https://rp.example.com/auth/apple/callback"
DEV_REDIRECT = "http://localhost:5000/auth/apple/callback"
OTHER_REDIRECT = "https://other.example.com/cb"
APPLE_AUD = "https://appleid.apple.com"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
PREFILLED = re.compile(r'name="(first_name|last_name)" maxlength="100" value="([^"]*)"')
SUB = re.compile(r"^\d{6}\.[0-9a-f]{32}\.\d{4}$")
MOUNTED_ISSUER = "http://localhost:5000"  # `make run`'s address, where the emulator is mounted


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def team_key() -> ec.EllipticCurvePrivateKey:
    """The team's Sign in with Apple key (the .p8), fresh for the run."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def bundles() -> list[str]:
    """Bundle ids registered 'at run time': tests may append to this list."""
    return [BUNDLE_ID]


@pytest.fixture
def settings(team_key, bundles) -> EmulatorSettings:
    public = team_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return EmulatorSettings(
        team_id=TEAM_ID,
        client_keys={KEY_ID: public},
        services={WEB_ID: [WEB_REDIRECT, DEV_REDIRECT], OTHER_WEB_ID: [OTHER_REDIRECT]},
        bundle_ids=lambda: list(bundles),
        base_url="https://emulator.test",
        notification_url="https://rp.example.com/auth/apple/notifications",
    )


@pytest.fixture(scope="session")
def rsa_pool() -> list[RSAKey]:
    """Pre-generated signing keys: RSA-2048 generation would dominate the run time."""
    return [RSAKey.generate_key(2048) for _ in range(5)]


@pytest.fixture
def emulator(settings, rsa_pool, monkeypatch):
    """An emulator whose keys come from the pool (distinct within one app, as rotation needs)."""
    pool = itertools.cycle(rsa_pool)

    class PooledRSAKey:
        @staticmethod
        def generate_key(size: int, parameters: dict | None = None) -> RSAKey:
            assert size == 2048
            return next(pool)

    monkeypatch.setattr("siwa_web.emulator.keys.RSAKey", PooledRSAKey)
    return create_emulator_app(settings)


@pytest.fixture
def emu(emulator, team_key) -> Emu:
    return Emu(emulator.test_client(), team_key)


def client_secret(key: ec.EllipticCurvePrivateKey, client_id: str = WEB_ID,
                  header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A client secret as a good RP mints it; keyword arguments override claims (None drops)."""
    now = int(time.time())
    body = {"iss": TEAM_ID, "iat": now, "exp": now + 3600, "aud": APPLE_AUD, "sub": client_id}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    head = {"alg": "ES256", "kid": KEY_ID, **(header or {})}
    return jwt.encode(head, body, ECKey.import_key(pem), algorithms=[head["alg"]])


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of a form_post page, unescaped as a browser would send them."""
    return {html.unescape(k): html.unescape(v) for k, v in HIDDEN.findall(page)}


def page_token(page: str) -> str:
    match = re.search(r'name="page" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def response_params(resp) -> dict[str, str]:
    """Fields delivered by a query or fragment redirect."""
    parts = urlsplit(resp.headers["Location"])
    return dict(parse_qsl(parts.fragment or parts.query))


@dataclass
class Emu:
    """Drives the emulator the way an RP, a browser and a test harness would."""

    client: Any
    key: ec.EllipticCurvePrivateKey

    def authorize(self, **params: Any):
        query = {"client_id": WEB_ID, "redirect_uri": WEB_REDIRECT,
                 "response_type": "code id_token", "response_mode": "form_post",
                 "scope": "name email", "state": "st-1", "nonce": "nonce-1"}
        query.update(params)
        return self.client.get("/auth/authorize",
                               query_string={k: v for k, v in query.items() if v is not None})

    def submit(self, page: str, **form: Any):
        return self.client.post("/auth/authorize", data={"page": page_token(page), **form})

    def sign_in(self, account: str | None = None, email: str = "maria@example.com",
                first: str = "Maria", last: str = "Ruiz", choice: str = "share",
                edit: dict[str, str] | None = None, **params: Any):
        """Go through sign-in (and consent when Apple shows it); return the final response."""
        page = self.authorize(**params).get_data(as_text=True)
        who = {"account": account} if account else {"account": "new", "email": email,
                                                    "first_name": first, "last_name": last}
        resp = self.submit(page, action="continue", **who)
        if b"Create your account" in resp.data:
            consent = resp.get_data(as_text=True)
            names = {k: html.unescape(v) for k, v in PREFILLED.findall(consent)}  # as a browser
            resp = self.submit(consent, action="continue", email_choice=choice,
                               **{**names, **(edit or {})})
        return resp

    def fields(self, **kwargs: Any) -> dict[str, str]:
        """Sign in with form_post and return what the RP receives."""
        resp = self.sign_in(**kwargs)
        assert resp.status_code == 200, resp.data
        return form_fields(resp.get_data(as_text=True))

    def secret(self, client_id: str = WEB_ID, **kwargs: Any) -> str:
        return client_secret(self.key, client_id, **kwargs)

    def token(self, client_id: str = WEB_ID, secret: str | None = None, **form: Any):
        secret = self.secret(client_id) if secret is None else secret
        data = {"client_id": client_id, "client_secret": secret, **form}
        return self.client.post("/auth/token",
                                data={k: v for k, v in data.items() if v is not None})

    def redeem(self, code: str, client_id: str = WEB_ID, redirect_uri: str | None = WEB_REDIRECT):
        return self.token(client_id, grant_type="authorization_code", code=code,
                          redirect_uri=redirect_uri)

    def revoke(self, token: str, client_id: str = WEB_ID, **form: Any):
        data = {"client_id": client_id, "client_secret": self.secret(client_id), "token": token}
        return self.client.post("/auth/revoke", data={**data, **form})

    def admin(self, path: str, json_body: Any = None, method: str = "POST"):
        return self.client.open(f"/__emulator/{path}", method=method, json=json_body)

    def user(self, email: str = "maria@example.com", first: str = "Maria", last: str = "Ruiz"):
        resp = self.admin("users", {"email": email, "first_name": first, "last_name": last})
        assert resp.status_code == 201
        return resp.get_json()

    def jwks(self) -> KeySet:
        return KeySet.import_key_set(self.client.get("/auth/keys").get_json())

    def verify(self, token: str) -> jwt.Token:
        """Verify an identity token exactly as an RP does: RS256 only, key by kid."""
        return jwt.decode(token, self.jwks(), algorithms=["RS256"])


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


@pytest.fixture
def mounted(app_config):
    """siwa-web in development without Apple credentials: the emulator lives at /__apple."""
    cfg = {k: v for k, v in app_config.items()
           if k not in ("APPLE_TEAM_ID", "APPLE_KEY_ID", "APPLE_SERVICES_ID", "APPLE_BASE_URL")}
    app = create_app(cfg | {"APPLE_EMULATOR": True, "ISSUER": MOUNTED_ISSUER})
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
