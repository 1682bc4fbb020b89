"""Fixtures for the token service: registered native clients, a signed-in app, token helpers.

Issued tokens are decoded with PyJWT (a stock library) against our published JWKS, never with
siwa_web's own code. Importable helpers: `from support.tokens import ...`.
"""
from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt as pyjwt
import pytest
from sqlalchemy import text

from siwa_web.infra.extensions import db
from siwa_web.oauth import clients as client_registry
from support.apple import BUNDLE_ID
from support.apple import sha256_hex

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
APPLE_CODE_TYPE = "http://auth0.com/oauth/token-type/apple-authz-code"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
OTHER_BUNDLE_ID = "com.example.other.ios"
PARTNER_API = "https://api.partner.example"
API_SCOPE = "read:things"
FULL_SCOPE = "openid profile email offline_access"


@dataclass(frozen=True)
class NativeClient:
    client_id: str
    bundle_id: str


@pytest.fixture
def native_client(app) -> NativeClient:
    """The iOS app (bundle id = the fake Apple's BUNDLE_ID), with one partner API and API scope."""
    with app.app_context():
        client = client_registry.create(
            db.session,
            name="Example iOS", bundle_id=BUNDLE_ID, audiences=[PARTNER_API], api_scopes=[API_SCOPE]
        )
        db.session.commit()
        return NativeClient(client.id, client.bundle_id)


@pytest.fixture
def other_client(app) -> NativeClient:
    """A second app of the same team."""
    with app.app_context():
        client = client_registry.create(db.session, name="Other iOS", bundle_id=OTHER_BUNDLE_ID)
        db.session.commit()
        return NativeClient(client.id, client.bundle_id)


def post_token(client, data: dict[str, Any], *, as_json: bool = False, **kwargs):
    """POST /oauth/token form-encoded (lists become repeated parameters) or as JSON."""
    if as_json:
        return client.post("/oauth/token", data=jsonlib.dumps(data),
                           content_type="application/json", **kwargs)
    return client.post("/oauth/token", data=data, **kwargs)


def exchange_params(native: NativeClient, code: str, **extra: Any) -> dict[str, Any]:
    params = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": code,
        "subject_token_type": APPLE_CODE_TYPE,
        "client_id": native.client_id,
        "scope": FULL_SCOPE,
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def exchange(client, fake_apple, native: NativeClient, *, sub: str | None = None,
             as_json: bool = False, **extra: Any):
    """Run the native exchange with a fresh Apple code for `sub`; returns the response.

    A `nonce` goes to Apple hashed, as iOS apps do, and to us raw.
    """
    nonce = extra.get("nonce")
    code = fake_apple.authorize(client_id=native.bundle_id, sub=sub,
                                nonce=sha256_hex(nonce) if nonce else None).code
    return post_token(client, exchange_params(native, code, **extra), as_json=as_json)


def refresh_params(native: NativeClient, refresh_token: str, **extra: Any) -> dict[str, Any]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": native.client_id, **extra}


@pytest.fixture
def native_session(client, fake_apple, native_client) -> dict[str, Any]:
    """A native sign-in with `openid profile email offline_access`: the token response body."""
    response = exchange(client, fake_apple, native_client,
                        user_profile='{"name":{"firstName":"Ada","lastName":"Lovelace"}}')
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def jwks_client_keys(client) -> dict[str, Any]:
    """Our published keys as PyJWT key objects, by kid."""
    jwks = client.get("/.well-known/jwks.json").get_json()
    return {k["kid"]: pyjwt.PyJWK(k) for k in jwks["keys"]}


def decode(client, token: str, *, audience: str, issuer: str, **options: Any) -> dict[str, Any]:
    """Verify one of our JWTs with PyJWT against /.well-known/jwks.json."""
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = jwks_client_keys(client)[kid]
    return pyjwt.decode(token, key, algorithms=["ES256"], audience=audience, issuer=issuer,
                        options={"require": ["iss", "sub", "aud", "exp", "iat"], **options})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def shift(app, table: str, column: str, seconds: int, where: str = "1=1", **params: Any) -> None:
    """Move a timestamp column into the past (negative seconds) to simulate elapsed time."""
    with app.app_context():
        rows = db.session.execute(text(f"SELECT id, {column} FROM {table} WHERE {where}"),
                                  params).all()
        for row_id, value in rows:
            if value is None:
                continue
            if isinstance(value, str):  # SQLite hands back text
                from datetime import datetime
                value = datetime.fromisoformat(value)
            db.session.execute(text(f"UPDATE {table} SET {column} = :v WHERE id = :id"),
                               {"v": value + timedelta(seconds=seconds), "id": row_id})
        db.session.commit()


def snapshot(app, table: str) -> list[tuple]:
    """Every row of a table, ordered, for "nothing changed" comparisons."""
    with app.app_context():
        return [tuple(r) for r in db.session.execute(text(f"SELECT * FROM {table} ORDER BY 1"))]


_SAFE = set(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


def assert_oauth_error(response, status: int, error: str | None) -> dict[str, Any]:
    """An RFC 6749 §5.2 error: status, code, a safe description, never cached or cookied."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert isinstance(body, dict)
    if error is not None:
        assert body.get("error") == error, body
    description = body.get("error_description", "")
    assert set(description) <= _SAFE
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    if status == 401:  # every 401 carries a challenge
        assert response.headers.get("WWW-Authenticate"), response.headers
    return body


def rows_without_audit(app) -> dict[str, int]:
    from support.config import count_rows

    counts = count_rows(app)
    counts.pop("audit_events", None)
    return counts


def audit_events(app, event: str | None = None) -> list[dict[str, Any]]:
    from siwa_web.models import AuditEvent

    with app.app_context():
        query = db.select(AuditEvent).order_by(AuditEvent.id)
        if event is not None:
            query = query.where(AuditEvent.event == event)
        return [
            {"event": e.event, "outcome": e.outcome, "reason": e.reason, "client_id": e.client_id,
             "user_id": e.user_id, "details": e.details}
            for e in db.session.execute(query).scalars()
        ]
