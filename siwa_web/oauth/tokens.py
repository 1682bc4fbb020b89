"""Issue and verify our JWTs: RFC 9068 access tokens (`typ: at+jwt`) and ID tokens (`typ: JWT`).

The two kinds are kept apart on purpose (RFC 8725 §3.11–3.12): different `typ`, and different
audiences — an access token's `aud` is an API identifier, an ID token's `aud` is the client id
— so neither can be replayed as the other.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from typing import NamedTuple

from joserfc import jws
from joserfc import jwt
from joserfc.errors import JoseError

from .config import TokenSettings
from .keys import KeyRing
from .keys import LoadedKey

ACCESS_TOKEN_TYP = "at+jwt"
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
ID_TOKEN_TYP = "JWT"
LOGOUT_TOKEN_TYP = "logout+jwt"
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = 120
MAX_JWT_LENGTH = 8 * 1024
MAX_KID_LENGTH = 64
MAX_HEADER_SEGMENT = 2048
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
REQUIRED_AT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "sid")


class TokenInvalid(Exception):
    """A JWT failed verification; `reason` is safe to log (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AccessToken(NamedTuple):
    """The verified claims of one of our access tokens (immutable; a tuple is the cheapest)."""

    sub: str
    client_id: str
    audience: str
    scopes: frozenset[str]
    family_id: str
    jti: str
    exp: int
    auth_time: int | None
    claims: dict[str, Any]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class IssuedToken:
    value: str
    jti: str
    expires_in: int


def _sign(ring: KeyRing, typ: str, claims: dict[str, Any]) -> str:
    key = ring.signer()
    header = {"alg": key.alg, "typ": typ, "kid": key.kid}
    return jwt.encode(header, claims, key.private, algorithms=[key.alg])


def issue_access_token(
    ring: KeyRing,
    settings: TokenSettings,
    *,
    user_id: str,
    client_id: str,
    audience: str,
    scope: str,
    family_id: str,
    auth_time: int,
    now: int | None = None,
) -> IssuedToken:
    """Sign an RFC 9068 access token; `sid` names the family so APIs can see revocation at once."""
    now = int(now or time.time())
    jti = str(uuid.uuid4())
    claims = {
        "iss": settings.issuer,
        "sub": user_id,
        "aud": audience,
        "exp": now + settings.access_token_ttl,
        "iat": now,
        "jti": jti,
        "client_id": client_id,
        "scope": scope,
        "auth_time": auth_time,
        "sid": family_id,
    }
    return IssuedToken(_sign(ring, ACCESS_TOKEN_TYP, claims), jti, settings.access_token_ttl)


def issue_id_token(
    ring: KeyRing,
    settings: TokenSettings,
    *,
    user_id: str,
    client_id: str,
    auth_time: int,
    family_id: str,
    profile: dict[str, Any] | None = None,
    nonce: str | None = None,
    session_id: str | None = None,
    amr: tuple[str, ...] | None = None,
    now: int | None = None,
) -> str:
    """Sign an OpenID Connect ID token for the client (`aud` = client id).

    `sid` is the siwa-web browser session the sign-in went through when there is one (web
    apps: single sign-on and back-channel logout name it), else the app session (family).
    """
    now = int(now or time.time())
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "sub": user_id,
        "aud": client_id,
        "exp": now + settings.id_token_ttl,
        "iat": now,
        "auth_time": auth_time,
        "sid": session_id or family_id,
        **(profile or {}),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if amr:
        claims["amr"] = list(amr)
    return _sign(ring, ID_TOKEN_TYP, claims)


def issue_logout_token(ring: KeyRing, settings: TokenSettings, *, user_id: str | None,
                       client_id: str, session_id: str, now: int | None = None) -> str:
    """Sign an OpenID Connect back-channel logout token: this session of this user ended.

    It names both `sub` and `sid`, carries the one logout event (an empty object) and never a
    `nonce` (so it cannot pass for an ID token); `typ` is `logout+jwt`.
    """
    now = int(now or time.time())
    claims: dict[str, Any] = {
        "iss": settings.issuer, "aud": client_id, "iat": now, "exp": now + LOGOUT_TOKEN_TTL,
        "jti": str(uuid.uuid4()), "sid": session_id,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    if user_id is not None:
        claims["sub"] = user_id
    return _sign(ring, LOGOUT_TOKEN_TYP, claims)


# --- verification ------------------------------------------------------------------------------


# One registry per algorithm, built once: joserfc would build a new one for every token.
_REGISTRIES: dict[str, jws.JWSRegistry] = {}


def _registry(alg: str) -> jws.JWSRegistry:
    registry = _REGISTRIES.get(alg)
    if registry is None:
        registry = _REGISTRIES[alg] = jws.JWSRegistry(algorithms=[alg])
    return registry


def _verified(ring: KeyRing, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check shape, header and signature; return (header, claims). No claim checks yet.

    The token is parsed once (`extract_compact`): the header is checked before any key is
    chosen, then the signature verified on the same object.
    """
    if not isinstance(token, str) or len(token) > MAX_JWT_LENGTH or not _COMPACT_JWS.match(token):
        raise TokenInvalid("malformed")
    if token.index(".") > MAX_HEADER_SEGMENT:
        raise TokenInvalid("segment_too_large")
    try:
        signed = jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, TypeError, RecursionError) as exc:
        raise TokenInvalid("malformed") from exc
    header = signed.headers()
    if not isinstance(header, dict):
        raise TokenInvalid("malformed")
    if "crit" in header or "b64" in header:
        raise TokenInvalid("crit_unsupported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise TokenInvalid("kid_invalid")
    key: LoadedKey | None = ring.verification_key(kid)
    if key is None:
        raise TokenInvalid("kid_unknown")
    # The algorithm comes from our key, never from the token header (RFC 8725 §3.1).
    if header.get("alg") != key.alg:
        raise TokenInvalid("alg_not_allowed")
    try:
        valid = jws.validate_compact(signed, key.public, registry=_registry(key.alg))
    except (JoseError, ValueError, TypeError) as exc:
        raise TokenInvalid("bad_signature") from exc
    if not valid:
        raise TokenInvalid("bad_signature")
    try:
        # Plain json.loads, not bounded_json: the signature is ours, so the payload is one we
        # wrote (flat claims). The depth scan cost a twentieth of a Bearer-protected call.
        claims = json.loads(signed.payload)
    except (ValueError, RecursionError) as exc:
        raise TokenInvalid("malformed") from exc
    if not isinstance(claims, dict):
        raise TokenInvalid("malformed")
    return header, claims


def _check_times(claims: dict[str, Any], now: int, leeway: int) -> None:
    exp, iat = claims.get("exp"), claims.get("iat")
    if type(exp) is not int or type(iat) is not int:  # noqa: E721 - exactly int: bool is not a time
        raise TokenInvalid("time_claims_invalid")
    if now >= exp + leeway:
        raise TokenInvalid("expired")
    if iat > now + 60:
        raise TokenInvalid("issued_in_future")


def verify_access_token(
    ring: KeyRing, settings: TokenSettings, token: str, *, audience: str, leeway: int = 0,
    now: int | None = None,
) -> AccessToken:
    """Verify one of our access tokens for the API `audience` (RFC 9068 §4).

    Checks shape and size, `typ` = at+jwt, the algorithm of the key named by `kid` (never keys
    supplied in the header: `jku`, `x5u`, `jwk` and `x5c` are ignored), the signature, `iss`,
    `aud`, `exp`, `iat` and the presence of every claim we rely on. The caller checks that the
    family is alive. :raises TokenInvalid:
    """
    header, claims = _verified(ring, token)
    if not isinstance(header.get("typ"), str) or header["typ"].lower() not in ACCESS_TOKEN_TYPES:
        raise TokenInvalid("typ_not_at_jwt")
    for name in REQUIRED_AT_CLAIMS:  # loops, not any()/all(): this runs on every API call
        if claims.get(name) is None:
            raise TokenInvalid("claim_missing")
    if claims["iss"] != settings.issuer:
        raise TokenInvalid("iss_mismatch")
    if claims["aud"] != audience:
        raise TokenInvalid("aud_mismatch")
    _check_times(claims, int(now or time.time()), leeway)
    scope = claims.get("scope") or ""
    if not isinstance(scope, str):
        raise TokenInvalid("claim_type")
    for name in ("sub", "client_id", "sid", "jti"):
        if not isinstance(claims[name], str):
            raise TokenInvalid("claim_type")
    auth_time = claims.get("auth_time")
    return AccessToken(
        sub=claims["sub"],
        client_id=claims["client_id"],
        audience=claims["aud"],
        scopes=frozenset(scope.split()),
        family_id=claims["sid"],
        jti=claims["jti"],
        exp=claims["exp"],
        auth_time=auth_time if isinstance(auth_time, int) else None,
        claims=claims,
    )


def identify(
    ring: KeyRing, settings: TokenSettings, token: str
) -> tuple[str, dict[str, Any]] | None:
    """For revocation: if `token` is a JWT we signed, return ("access_token"|"id_token", claims).

    Expiry is checked (an expired token is "invalid", RFC 7009 §2.2); audience is not, since the
    caller compares `client_id` itself. Returns None for anything else.
    """
    try:
        header, claims = _verified(ring, token)
        if claims.get("iss") != settings.issuer:
            return None
        _check_times(claims, int(time.time()), 0)
    except TokenInvalid:
        return None
    typ = header.get("typ")
    if isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_TYPES:
        return "access_token", claims
    return "id_token", claims


def id_token_hint_claims(ring: KeyRing, settings: TokenSettings, token: str) -> dict[str, Any]:
    """The claims of an ID token we issued, expired or not (OIDC logout's `id_token_hint`).

    Signature, issuer, `typ` (an ID token, not an access or logout token) and the shape of
    `sub`, `aud` and `sid` are checked; expiry is not — an app may end a session after its ID
    token expired. :raises TokenInvalid:
    """
    header, claims = _verified(ring, token)
    if claims.get("iss") != settings.issuer:
        raise TokenInvalid("issuer")
    if header.get("typ") != ID_TOKEN_TYP or "events" in claims:
        raise TokenInvalid("not_an_id_token")
    if not all(isinstance(claims.get(name), str) for name in ("sub", "aud", "sid")):
        raise TokenInvalid("claim_type")
    return claims
