"""Apple's user-migration API, for moving the app to another team (TN3159).

Every user's `sub` is scoped to a team, so when the app moves, each user gets a new one. The
old team asks Apple for a `transfer_sub` per user (`sub` + `target` team), the new team trades
each `transfer_sub` for the user's new `sub`. Both calls need a migration access token
(`client_credentials` with `scope=user.migration`) plus the usual client secret.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import requests

from .claims import RELAY_DOMAIN
from .claims import as_bool
from .client import AppleClient
from .client import _answer
from .errors import AppleUnavailable

log = logging.getLogger("siwa_web.apple")
MIGRATION_SCOPE = "user.migration"
TOKEN_MARGIN = 60  # renew the migration token this long before Apple says it expires
_OPAQUE = re.compile(r"[\x21-\x7e]{1,255}")  # what we store and look up: printable, bounded


@dataclass(frozen=True)
class MigratedUser:
    """What the new team learns about a user from their `transfer_sub`."""

    sub: str
    email: str | None
    is_private_email: bool


class MigrationClient:
    """Migration calls for one client id of the configured team; reuses its access token."""

    def __init__(self, apple: AppleClient, client_id: str) -> None:
        self.apple = apple
        self.client_id = client_id
        self._token: str | None = None
        self._token_until = 0.0

    def transfer_sub(self, sub: str, target_team: str) -> str:
        """Old team: the `transfer_sub` linking `sub` to the user in `target_team`.

        :raises AppleRejected: e.g. invalid_request when the user revoked access.
        :raises AppleMisconfigured: our credentials are wrong (invalid_client).
        :raises AppleUnavailable: timeout, 5xx, or an answer without a usable transfer_sub.
        """
        body = self._call({"sub": sub, "target": target_team})
        return _opaque(body.get("transfer_sub"), "transfer_sub")

    def exchange(self, transfer_sub: str) -> MigratedUser:
        """New team: the user's `sub` (and email) in this team for a stored `transfer_sub`."""
        body = self._call({"transfer_sub": transfer_sub})
        sub = _opaque(body.get("sub"), "sub")
        email = body.get("email")
        email = email if isinstance(email, str) and "@" in email and len(email) <= 320 else None
        private = body.get("is_private_email")
        if private is None:
            is_private = bool(email and email.lower().endswith("@" + RELAY_DOMAIN))
        else:
            is_private = as_bool(private)
        return MigratedUser(sub=sub, email=email, is_private_email=is_private)

    def access_token(self) -> str:
        """A `user.migration` access token, fetched once and renewed shortly before expiry."""
        now = self.apple._clock()
        if self._token is not None and now < self._token_until:
            return self._token
        form = {"client_id": self.client_id,
                "client_secret": self.apple.client_secrets.get(self.client_id),
                "grant_type": "client_credentials", "scope": MIGRATION_SCOPE}
        body = self._post("migration token", self.apple.settings.token_url, form, {})
        token = _opaque(body.get("access_token"), "access_token")
        expires_in = body.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int) and expires_in > 0 else 3600
        self._token, self._token_until = token, now + max(lifetime - TOKEN_MARGIN, 1)
        return token

    def _call(self, fields: dict[str, str]) -> dict[str, Any]:
        form = {**fields, "client_id": self.client_id,
                "client_secret": self.apple.client_secrets.get(self.client_id)}
        headers = {"Authorization": f"Bearer {self.access_token()}"}
        return self._post("usermigrationinfo", self.apple.settings.migration_url, form, headers)

    def _post(self, what: str, url: str, form: dict[str, str],
              headers: dict[str, str]) -> dict[str, Any]:
        settings = self.apple.settings
        try:
            resp = self.apple.session.post(
                url, data=form, timeout=settings.timeout, allow_redirects=False,
                headers={"Accept": "application/json", **headers})
        except requests.RequestException as exc:
            log.warning("Apple %s call failed: %s", what, type(exc).__name__,
                        extra={"event": "apple_unavailable"})
            raise AppleUnavailable(f"Apple {what} call failed: {type(exc).__name__}") from exc
        return _answer(what, resp)


def _opaque(value: Any, name: str) -> str:
    """An identifier from Apple's answer; anything else is garbage, treated as an outage."""
    if not isinstance(value, str) or not _OPAQUE.fullmatch(value):
        log.warning("Apple usermigrationinfo answered 200 without a usable %s", name,
                    extra={"event": "apple_answer_unusable"})
        raise AppleUnavailable(f"Apple answered without a usable {name}")
    return value
