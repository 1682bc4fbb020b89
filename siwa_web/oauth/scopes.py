"""Scopes: parsing (RFC 6749 §3.3), the OpenID scopes every client may ask for, and narrowing."""
from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from .errors import InvalidScopeError

OPENID = "openid"
PROFILE = "profile"
EMAIL = "email"
OFFLINE_ACCESS = "offline_access"
STANDARD_SCOPES = (OPENID, PROFILE, EMAIL, OFFLINE_ACCESS)
DEFAULT_SCOPE = OPENID
MAX_SCOPE_LENGTH = 1000  # the width of the scope columns
# scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,100}\Z")


def is_scope_token(value: str) -> bool:
    return bool(_SCOPE_TOKEN.match(value))


def parse(value: str | None, *, default: str | None = None) -> tuple[str, ...]:
    """Split a scope parameter into unique tokens, in request order.

    :raises InvalidScopeError: if it is too long, empty or contains a malformed token.
    """
    if value is None:
        value = default or ""
    if len(value) > MAX_SCOPE_LENGTH:
        raise InvalidScopeError(reason="scope_too_long")
    tokens = value.split(" ")
    if not value or any(not is_scope_token(t) for t in tokens):
        raise InvalidScopeError(reason="scope_malformed")
    return tuple(dict.fromkeys(tokens))


def join(scopes: tuple[str, ...] | list[str]) -> str:
    return " ".join(scopes)


def allowed_for(client_scopes: list[str]) -> frozenset[str]:
    """Return what a client may request: the OpenID scopes plus its own API scopes."""
    return frozenset(STANDARD_SCOPES) | frozenset(client_scopes or ())


def require_subset(
    requested: tuple[str, ...], allowed: frozenset[str] | set[str], reason: str
) -> None:
    """:raises InvalidScopeError: if any requested scope is outside `allowed`."""
    if not set(requested) <= set(allowed):
        raise InvalidScopeError(reason=reason)


def profile_claims(granted: Collection[str], *, email: str | None, email_verified: bool,
                   first_name: str | None, last_name: str | None) -> dict[str, Any]:
    """OIDC standard claims the granted scopes allow (Core §5.4): ID tokens and /userinfo."""
    claims: dict[str, Any] = {}
    if EMAIL in granted and email:
        claims["email"] = email
        claims["email_verified"] = email_verified
    if PROFILE in granted:
        name = " ".join(p for p in (first_name, last_name) if p)
        if name:
            claims["name"] = name
        if first_name:
            claims["given_name"] = first_name
        if last_name:
            claims["family_name"] = last_name
    return claims
