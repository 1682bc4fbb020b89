"""Verify Apple's server-to-server notification JWS: same keys as identity tokens.

The payload has no top-level `sub`; `events` is a JSON-encoded string in real deliveries (an
object in some docs) carrying `type`, `sub`, `event_time` (ms) and, for email events, `email`
and `is_private_email`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import bounded_json
from .claims import as_bool
from .errors import InvalidIdentityToken
from .id_token import verify_apple_jws
from .jwks import AppleKeySet

MAX_FIELD = 255
MAX_AGE = 2 * 86400  # Apple sets exp = iat + 1 day; older deliveries are refused


@dataclass(frozen=True)
class AppleEvent:
    """One verified notification."""

    jti: str
    type: str
    sub: str
    aud: str
    event_time: int | None = None
    email: str | None = None
    is_private_email: bool | None = None


def verify_notification(
    token: str, keys: AppleKeySet, *, audiences: Iterable[str] | None, issuers: Iterable[str],
    leeway: int, clock: Callable[[], float] = time.time,
) -> AppleEvent:
    """Return the event of a genuine, current notification addressed to one of our client ids.

    With `audiences=None` any one client id is accepted (a single string, never a list): the
    caller then maps `aud` to its app itself, so that a genuine notification for an app it does
    not know can be acknowledged rather than refused and retried by Apple forever.

    :raises InvalidIdentityToken: any check failed (`reason` is short and safe to log).
    :raises AppleUnavailable: Apple's keys could not be obtained.
    """
    payload = verify_apple_jws(token, keys)
    for name in ("iss", "aud", "iat", "exp", "jti", "events"):
        if name not in payload:
            raise InvalidIdentityToken(f"missing {name}")
    if not isinstance(payload["iss"], str) or payload["iss"] not in tuple(issuers):
        raise InvalidIdentityToken("invalid iss")
    aud = payload["aud"]
    if not isinstance(aud, str) or (audiences is not None and aud not in set(audiences)):
        raise InvalidIdentityToken("invalid aud")
    aud = _short_string(aud, "aud")
    _check_times(payload, clock(), leeway)
    jti = _short_string(payload["jti"], "jti")
    events = _events(payload["events"])
    return AppleEvent(
        jti=jti,
        type=_short_string(events.get("type"), "type"),
        sub=_short_string(events.get("sub"), "sub"),
        aud=aud,
        event_time=_int_or_none(events.get("event_time")),
        email=events["email"] if isinstance(events.get("email"), str) else None,
        is_private_email=(None if events.get("is_private_email") is None
                          else as_bool(events["is_private_email"])),
    )


def _check_times(payload: dict[str, Any], now: float, leeway: int) -> None:
    exp, iat = payload["exp"], payload["iat"]
    for value in (exp, iat):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidIdentityToken("invalid time claim")
    if now >= exp + leeway:
        raise InvalidIdentityToken("expired")
    if iat > now + leeway or now - iat > MAX_AGE:
        raise InvalidIdentityToken("iat out of range")


def _events(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = bounded_json.loads(value)
        except ValueError as exc:
            raise InvalidIdentityToken("malformed events") from exc
    if not isinstance(value, dict):
        raise InvalidIdentityToken("malformed events")
    return value


def _short_string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD or not value.isprintable():
        raise InvalidIdentityToken(f"invalid {name}")
    return value


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
