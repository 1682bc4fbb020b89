"""Typed failures of talking to Apple; callers map them to 400/503/500, never to a crash."""
from __future__ import annotations


class AppleError(Exception):
    """Base class for everything that can go wrong with Apple."""


class AppleUnavailable(AppleError):
    """Apple timed out, answered 5xx, or answered garbage: retry later (503)."""


class AppleRejected(AppleError):
    """Apple answered a well-formed OAuth error (400), e.g. invalid_grant for a used code."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(f"Apple rejected the request: {error}")
        self.error = error
        self.description = description


class AppleMisconfigured(AppleRejected):
    """Apple said invalid_client: our Team ID, key, Key ID or client id is wrong (500)."""


class InvalidIdentityToken(AppleError):
    """An Apple identity token failed verification; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid Apple identity token: {reason}")
        self.reason = reason
