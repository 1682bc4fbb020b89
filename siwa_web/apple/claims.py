"""The verified content of an Apple identity token, normalised."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

RELAY_DOMAIN = "privaterelay.appleid.com"


def as_bool(value: Any) -> bool:
    """Apple sends these flags as JSON booleans or as the strings "true"/"false"."""
    return value is True or value == "true"


@dataclass(frozen=True)
class AppleClaims:
    """What we may rely on after verification; `raw` keeps every claim for logging fields."""

    sub: str
    iss: str
    aud: str
    iat: int
    exp: int
    email: str | None = None
    email_verified: bool = False
    is_private_email: bool = False
    nonce: str | None = None
    nonce_supported: bool | None = None
    c_hash: str | None = None
    at_hash: str | None = None
    auth_time: int | None = None
    real_user_status: int | None = None
    # Only for 60 days after the app moved to another team: the user's link to their old sub.
    transfer_sub: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AppleClaims:
        """Build from an already-verified payload, normalising Apple's type drift."""
        email = payload.get("email") or None
        private = payload.get("is_private_email")
        if private is None:  # sometimes absent even for relay addresses
            is_private = bool(email and email.lower().endswith("@" + RELAY_DOMAIN))
        else:
            is_private = as_bool(private)
        nonce_supported = payload.get("nonce_supported")
        return cls(
            sub=payload["sub"],
            iss=payload["iss"],
            aud=payload["aud"],
            iat=int(payload["iat"]),
            exp=int(payload["exp"]),
            email=email,
            email_verified=as_bool(payload.get("email_verified")),
            is_private_email=is_private,
            nonce=payload.get("nonce"),
            nonce_supported=None if nonce_supported is None else as_bool(nonce_supported),
            c_hash=payload.get("c_hash"),
            at_hash=payload.get("at_hash"),
            auth_time=payload.get("auth_time"),
            real_user_status=payload.get("real_user_status"),
            transfer_sub=_transfer_sub(payload.get("transfer_sub")),
            raw=dict(payload),
        )


def _transfer_sub(value: Any) -> str | None:
    """Keep a `transfer_sub` we can store and look up: printable ASCII, at most 255 chars."""
    if not isinstance(value, str) or not 0 < len(value) <= 255:
        return None
    return value if value.isascii() and value.isprintable() and " " not in value else None


@dataclass(frozen=True)
class AppleTokens:
    """Apple's token-endpoint answer; `refresh_token` only on the authorization_code grant."""

    id_token: str
    access_token: str | None = None
    refresh_token: str | None = None
    expires_in: int | None = None


#: Longest first or last name kept from Apple's one-time `user` data.
NAME_MAX = 100


@dataclass(frozen=True)
class Name:
    """The one-time, user-editable name Apple hands over on first authorization."""

    first: str | None = None
    last: str | None = None

    @classmethod
    def from_apple(cls, data: object) -> Name | None:
        """Parse `{"name": {"firstName": .., "lastName": ..}}`; None if unusable."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), dict):
            return None
        parts = []
        for key in ("firstName", "lastName"):
            value = data["name"].get(key)
            if value is None:
                parts.append(None)
                continue
            if not isinstance(value, str) or len(value) > NAME_MAX:
                return None
            value = " ".join(value.split())  # no control characters or newlines
            parts.append(value or None)
        if not any(parts):
            return None
        return cls(*parts)
