"""Mint what Apple mints: opaque codes and tokens, RS256 identity tokens, notification JWSs."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

from joserfc import jwt

from .state import AppleUser
from .state import Authorization
from .state import EmulatorState

CLIENT_SECRET_AUDIENCE = "https://appleid.apple.com"


def opaque(state: EmulatorState, prefix: str) -> str:
    """Apple's observed shape: c/r/a + 32 hex + `.0.` + 4 letters + `.` + 22 base64url chars."""
    tail = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    return f"{prefix}{secrets.token_hex(16)}.0.{state.shard}.{tail}"


def half_hash(value: str) -> str:
    """OIDC c_hash / at_hash: left half of SHA-256, base64url without padding."""
    digest = hashlib.sha256(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def fingerprint(value: str) -> str:
    """SHA-256 hex: lets tests match what was sent without the emulator storing it in logs."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _flag(value: bool, style: str) -> bool | str:
    return ("true" if value else "false") if style == "string" else value


def email_claims(state: EmulatorState, user: AppleUser, authz: Authorization) -> dict[str, Any]:
    """Email claims on every token once `email` was granted at first consent."""
    if "email" not in authz.scopes:
        return {}
    private = not authz.share_email
    claims: dict[str, Any] = {
        "email": user.relay_email if private else user.email,
        "email_verified": _flag(True, state.claims.email_verified),
    }
    if state.claims.is_private_email != "omit":
        claims["is_private_email"] = _flag(private, state.claims.is_private_email)
    return claims


def identity_token(
    state: EmulatorState,
    user: AppleUser,
    authz: Authorization,
    aud: str,
    extra: dict[str, Any],
) -> str:
    """Sign an identity token; the name never goes in (Apple only sends it in `user`)."""
    now = int(state.now())
    claims: dict[str, Any] = {
        "iss": state.settings.issuer,
        "aud": aud,
        "exp": now + state.claims.id_token_lifetime,
        "iat": now,
        "sub": user.sub,
        **{k: v for k, v in extra.items() if v is not None},
        **email_claims(state, user, authz),
    }
    if user.transfer_sub and claims["iat"] < user.transfer_until:  # 60 days after a transfer
        claims["transfer_sub"] = user.transfer_sub
    return sign(state, claims)


def sign(state: EmulatorState, claims: dict[str, Any]) -> str:
    """RS256 with header `{"kid","alg"}` only — no `typ`, like Apple."""
    signer = state.keys.signer
    header = {"kid": signer.kid, "alg": "RS256"}
    return jwt.encode(header, claims, signer.key, algorithms=["RS256"], default_type=None)


def notification(state: EmulatorState, aud: str, event: dict[str, Any]) -> str:
    """A server-to-server notification JWS: `events` is a JSON string, exp = iat + 1 day."""
    now = int(state.now())
    claims = {
        "iss": state.settings.issuer,
        "aud": aud,
        "exp": now + 86400,
        "iat": now,
        "jti": base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode(),
        "events": json.dumps(event, separators=(",", ":")),
    }
    return sign(state, claims)
