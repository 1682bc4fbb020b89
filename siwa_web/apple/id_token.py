"""Verify an Apple identity token: RS256 by Apple's keys, exact iss/aud, times, nonce, hashes."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from joserfc import jws
from joserfc.jws import JWSRegistry

from . import bounded_json
from .claims import AppleClaims
from .errors import InvalidIdentityToken
from .jwks import AppleKeySet

MAX_TOKEN_BYTES = 8192
MAX_KID_CHARS = 128
MAX_SUB_CHARS = 255
NONCE_MODES = ("exact", "native")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
# Only RS256 and only the headers we read; jku/x5u/jwk/x5c are never consulted for keys.
_REGISTRY = JWSRegistry(algorithms=["RS256"], strict_check_header=False)
_REQUIRED = ("iss", "aud", "sub", "iat", "exp")


def verify_identity_token(
    token: str, keys: AppleKeySet, *, audience: str, issuers: Iterable[str], leeway: int,
    max_age: int, nonce: str | None = None, nonce_mode: str = "exact",
    code: str | None = None, access_token: str | None = None,
    clock: Callable[[], float] = time.time,
) -> AppleClaims:
    """Return the claims of a genuine, current token for `audience`.

    :raises InvalidIdentityToken: any check failed (`reason` is short and safe to log).
    :raises AppleUnavailable: Apple's keys could not be obtained (cold cache, Apple down).
    :raises ValueError: a bad call (empty audience, unknown nonce_mode), never a bad token.
    """
    if not audience or nonce_mode not in NONCE_MODES:
        raise ValueError("verify_identity_token needs an audience and a known nonce_mode")
    payload = verify_apple_jws(token, keys)
    _check_registered(payload, audience, tuple(issuers))
    _check_times(payload, clock(), leeway, max_age)
    _check_nonce(payload, nonce, nonce_mode)
    _check_hash(payload, "c_hash", code)
    _check_hash(payload, "at_hash", access_token)
    _check_optional(payload)
    try:
        return AppleClaims.from_payload(payload)
    except Exception as exc:  # a claim shape from_payload cannot take is a bad token, not a 500
        raise InvalidIdentityToken("malformed claims") from exc


def verify_apple_jws(token: str, keys: AppleKeySet) -> dict[str, Any]:
    """The payload of a JWS Apple signed (identity token or notification); claims unchecked."""
    header = _header(token)
    return _verified_payload(token, keys.key_for(header["kid"]))


def _header(token: Any) -> dict[str, Any]:
    """Decode and vet the protected header before any key lookup."""
    if not isinstance(token, str) or not token:
        raise InvalidIdentityToken("missing token")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidIdentityToken("token too large")
    parts = token.split(".")
    if len(parts) == 5:
        raise InvalidIdentityToken("encrypted token")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise InvalidIdentityToken("malformed token")
    header = _json_segment(parts[0], "header")
    if header.get("alg") != "RS256":
        raise InvalidIdentityToken("unsupported alg")
    if "crit" in header or "b64" in header:
        raise InvalidIdentityToken("unsupported header")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_CHARS:
        raise InvalidIdentityToken("missing or invalid kid")
    return header


def _verified_payload(token: str, key: Any) -> dict[str, Any]:
    try:
        obj = jws.deserialize_compact(token, key, registry=_REGISTRY)
    except Exception as exc:  # BadSignatureError, DecodeError, size limits, ...
        raise InvalidIdentityToken("bad signature") from exc
    return _json_object(obj.payload, "payload")


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidIdentityToken(f"malformed {what}") from exc
    return _json_object(raw, what)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object, refusing duplicate names (RFC 7515 §5.2 lets us)."""
    try:
        value = bounded_json.loads(raw, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise InvalidIdentityToken(f"malformed {what}") from exc
    if not isinstance(value, dict):
        raise InvalidIdentityToken(f"malformed {what}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _check_registered(payload: dict[str, Any], audience: str, issuers: tuple[str, ...]) -> None:
    for name in _REQUIRED:
        if name not in payload:
            raise InvalidIdentityToken(f"missing {name}")
    iss = payload["iss"]
    if not isinstance(iss, str) or iss not in issuers:  # exact string equality only (D6)
        raise InvalidIdentityToken("invalid iss")
    aud = payload["aud"]
    if not isinstance(aud, str) or not _equal(aud, audience):
        raise InvalidIdentityToken("invalid aud")
    sub = payload["sub"]
    # OIDC: at most 255 ASCII characters; printable only, so it is safe in logs and URLs.
    if not isinstance(sub, str) or len(sub) > MAX_SUB_CHARS or not _PRINTABLE.fullmatch(sub):
        raise InvalidIdentityToken("invalid sub")


def _check_times(payload: dict[str, Any], now: float, leeway: int, max_age: int) -> None:
    exp, iat = _numeric_date(payload, "exp"), _numeric_date(payload, "iat")
    if now >= exp + leeway:
        raise InvalidIdentityToken("expired")
    if iat > now + leeway:
        raise InvalidIdentityToken("iat in the future")
    if now - iat > max_age:
        raise InvalidIdentityToken("too old")


def _numeric_date(payload: dict[str, Any], name: str) -> float:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidIdentityToken(f"invalid {name}")
    return value


def _check_nonce(payload: dict[str, Any], nonce: str | None, mode: str) -> None:
    """Bind the token to our request: exact, or (native, D7) raw or lowercase-hex SHA-256."""
    if nonce is None:
        return
    claim = payload.get("nonce")
    if claim is None:  # we sent one; Apple dropping it is never acceptable here
        raise InvalidIdentityToken("missing nonce")
    if not isinstance(claim, str):
        raise InvalidIdentityToken("invalid nonce")
    accepted = [nonce]
    if mode == "native":
        accepted.append(hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).hexdigest())
    if not any(_equal(claim, a) for a in accepted):
        raise InvalidIdentityToken("nonce mismatch")


def _check_hash(payload: dict[str, Any], name: str, value: str | None) -> None:
    """OIDC c_hash/at_hash: base64url of the left half of SHA-256, checked when both exist."""
    if value is None or name not in payload:
        return
    claim = payload[name]
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()[:16]
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    if not isinstance(claim, str) or not _equal(claim, expected):
        raise InvalidIdentityToken(f"{name} mismatch")


def _check_optional(payload: dict[str, Any]) -> None:
    """Claims we store must have a sane type; Apple's string/bool flags are left to claims.py."""
    email = payload.get("email")
    if email is not None and not isinstance(email, str):
        raise InvalidIdentityToken("invalid email")
    for name in ("auth_time", "real_user_status"):
        value = payload.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            payload.pop(name)  # informational only: drop rather than fail a real login


def _equal(a: str, b: str) -> bool:
    """Constant-time string equality that also copes with non-ASCII and lone surrogates."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))
