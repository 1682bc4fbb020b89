"""Check the ES256 client-secret JWT the way Apple does; every failure is `invalid_client`."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from .errors import AppleError
from .settings import EmulatorSettings
from .tokens import CLIENT_SECRET_AUDIENCE

MAX_SECRET_LIFETIME = 15_777_000  # about six months
IAT_SKEW = 60


class ClientSecretError(AppleError):
    """Why the secret failed stays in the exception for logs; Apple's body says only this."""

    def __init__(self, reason: str) -> None:
        super().__init__("invalid_client")
        self.reason = reason


def authenticate(settings: EmulatorSettings, form: Mapping[str, str], now: float) -> str:
    """Return the authenticated client_id or raise `AppleError`."""
    client_id = form.get("client_id") or ""
    secret = form.get("client_secret") or ""
    if not client_id:
        raise AppleError("invalid_request", "client_id is required.")
    if not secret:
        raise ClientSecretError("client_secret missing")
    claims = _verified_claims(settings, secret)
    _check_claims(settings, claims, client_id, now)
    if not settings.is_client(client_id):
        raise ClientSecretError("client_id is not a Services ID or bundle id of the team")
    return client_id


def _verified_claims(settings: EmulatorSettings, secret: str) -> dict[str, Any]:
    try:
        header = jws.extract_compact(secret.encode()).headers()
    except (JoseError, ValueError, TypeError) as exc:
        raise ClientSecretError("not a compact JWS") from exc
    if header.get("alg") != "ES256":
        raise ClientSecretError("alg must be ES256")
    kid = header.get("kid")
    pem = settings.client_keys.get(kid) if isinstance(kid, str) else None
    if pem is None:
        raise ClientSecretError("unknown kid")
    try:
        # joserfc wants the raw 64-byte r||s signature, so a DER one fails here as at Apple.
        obj = jws.deserialize_compact(secret, ECKey.import_key(pem), algorithms=["ES256"])
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, TypeError) as exc:
        raise ClientSecretError("bad signature or payload") from exc
    if not isinstance(claims, dict):
        raise ClientSecretError("payload is not a JSON object")
    return claims


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClientSecretError(f"{name} must be a number")
    return float(value)


def _check_claims(
    settings: EmulatorSettings, claims: dict[str, Any], client_id: str, now: float
) -> None:
    if claims.get("iss") != settings.team_id:
        raise ClientSecretError("iss is not the team id")
    if claims.get("aud") != CLIENT_SECRET_AUDIENCE:
        raise ClientSecretError("aud is not https://appleid.apple.com")
    if claims.get("sub") != client_id:
        raise ClientSecretError("sub differs from client_id")
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    if exp <= now:
        raise ClientSecretError("expired")
    if exp - iat > MAX_SECRET_LIFETIME:
        raise ClientSecretError("exp - iat exceeds 15777000 seconds")
    if iat > now + IAT_SKEW:
        raise ClientSecretError("iat in the future")
