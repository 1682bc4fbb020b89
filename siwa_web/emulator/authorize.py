"""Validate `/auth/authorize` like Apple: the response_type/mode/scope matrix."""
from __future__ import annotations

import ipaddress
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from werkzeug.datastructures import MultiDict

from .errors import AppleError
from .settings import EmulatorSettings

PARAMS = ("client_id", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce")
RESPONSE_MODES = ("query", "fragment", "form_post")
USER_SCOPES = frozenset({"name", "email"})
IGNORED_SCOPES = frozenset({"openid"})
SCOPES_NEED_FORM_POST = "response_mode must be form_post when name or email scope is requested."
INVALID_MODE = "Invalid response mode"
INVALID_TYPE = "Invalid response type"
INVALID_REDIRECT = "Invalid web redirect url."


@dataclass(frozen=True)
class AuthorizeRequest:
    """A request that passed validation: what the consent page and delivery need."""

    client_id: str
    redirect_uri: str
    id_token: bool  # response_type was `code id_token`
    response_mode: str
    scopes: frozenset[str]  # only name/email
    state: str | None
    nonce: str | None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scopes": sorted(self.scopes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthorizeRequest:
        return cls(**{**data, "scopes": frozenset(data["scopes"])})


def parse(settings: EmulatorSettings, args: MultiDict[str, str]) -> AuthorizeRequest:
    """Return the request or raise the `AppleError` Apple would answer with (never redirected)."""
    for name in PARAMS:
        if len(args.getlist(name)) > 1:
            raise AppleError("invalid_request", f"Duplicate parameter: {name}")
    client_id = _client_id(settings, args.get("client_id", ""))
    redirect_uri = _redirect_uri(settings, client_id, args.get("redirect_uri", ""))
    id_token = _response_type(args.get("response_type", ""))
    scopes = _scopes(args.get("scope", ""))
    mode = args.get("response_mode") or ("fragment" if id_token else "query")
    if mode not in RESPONSE_MODES:
        raise AppleError("invalid_request", INVALID_MODE)
    if scopes and mode != "form_post":
        raise AppleError("invalid_request", SCOPES_NEED_FORM_POST)
    if id_token and mode == "query":
        raise AppleError("invalid_request", INVALID_MODE)
    return AuthorizeRequest(client_id, redirect_uri, id_token, mode, scopes,
                            args.get("state") or None, args.get("nonce") or None)


def _client_id(settings: EmulatorSettings, client_id: str) -> str:
    if not client_id:
        raise AppleError("invalid_request", "client_id is required.")
    if settings.is_client(client_id):
        return client_id
    if any(client_id.lower() == known.lower() for known in settings.services):
        raise AppleError("invalid_request", "Invalid client id or web redirect url.")
    raise AppleError("invalid_client")


def _redirect_uri(settings: EmulatorSettings, client_id: str, uri: str) -> str:
    if not uri or uri not in settings.services.get(client_id, ()):
        raise AppleError("unauthorized_client")
    if not settings.allow_insecure_redirects and not is_secure_redirect(uri):
        raise AppleError("invalid_request", INVALID_REDIRECT)
    return uri


def is_secure_redirect(uri: str) -> bool:
    """Apple's rule: https, a domain name (no IP, no localhost), no fragment."""
    parts = urlsplit(uri)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme != "https" or not host or "#" in uri or "." not in host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _response_type(value: str) -> bool:
    """`code` or `code id_token` in either order; `+` and `%20` both arrive as a space."""
    parts = value.split(" ")
    if parts == ["code"]:
        return False
    if sorted(parts) == ["code", "id_token"]:
        return True
    raise AppleError("invalid_request", INVALID_TYPE)


def _scopes(value: str) -> frozenset[str]:
    words = [w for w in value.split(" ") if w]
    unknown = [w for w in words if w not in USER_SCOPES | IGNORED_SCOPES]
    if unknown:
        raise AppleError("invalid_scope")
    return frozenset(words) & USER_SCOPES
