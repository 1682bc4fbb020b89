"""Redirect URIs of web clients: what may be registered, and the one way a request matches.

Registration refuses anything a browser could be bent through: relative or opaque URIs,
fragments, user information (`https://good@evil`), wildcards, dot segments and control
characters. Plain `http` is allowed only on loopback hosts, and only outside production.
A request's `redirect_uri` then matches only by simple string comparison with a registered
one: no normalisation, no case folding, no prefix or pattern matching.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_LENGTH = 2000
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class RedirectUriError(ValueError):
    """The URI cannot be registered; the message names the problem."""


def check_registrable(uri: str, *, production: bool, what: str = "redirect URI") -> str:
    """Return `uri` if it may be registered. :raises RedirectUriError: naming the problem."""
    if not uri or len(uri) > MAX_LENGTH:
        raise RedirectUriError(f"{what} must be 1-{MAX_LENGTH} characters")
    if not uri.isprintable() or any(ch.isspace() for ch in uri):
        raise RedirectUriError(f"{what} {uri!r} contains spaces or control characters")
    if "#" in uri:
        raise RedirectUriError(f"{what} {uri!r} must not contain a fragment (#)")
    if "*" in uri:
        raise RedirectUriError(f"{what} {uri!r} must not contain wildcards")
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # an unclosed `[` of an IPv6 host, a netloc altered by NFKC
        raise RedirectUriError(f"{what} {uri!r} is not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise RedirectUriError(f"{what} {uri!r} must be an absolute https:// URL")
    if not parts.hostname:  # `https://:443/cb` has a netloc but no host
        raise RedirectUriError(f"{what} {uri!r} must name a host")
    if "@" in parts.netloc:
        raise RedirectUriError(f"{what} {uri!r} must not contain user information (@)")
    if "\\" in uri or "%2e" in uri.lower() or any(
            seg in (".", "..") for seg in parts.path.split("/")):
        raise RedirectUriError(f"{what} {uri!r} must not contain dot segments or backslashes")
    host = (parts.hostname or "").lower()
    if parts.scheme == "http":
        if production:
            raise RedirectUriError(f"{what} {uri!r} must use https in production")
        if not is_loopback(host):
            raise RedirectUriError(
                f"{what} {uri!r}: plain http is allowed only for localhost / loopback addresses")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise RedirectUriError(f"{what} {uri!r} has an invalid port") from exc
    return uri


def is_loopback(host: str) -> bool:
    """localhost, or an address of the loopback range (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def matches(presented: str | None, registered: tuple[str, ...] | list[str]) -> bool:
    """Simple string comparison with one registered URI (RFC 3986 §6.2.1), nothing looser."""
    return presented is not None and presented in registered
