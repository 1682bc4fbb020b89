"""Everything the Apple client needs to know, as one immutable value built from app config."""
from __future__ import annotations

from dataclasses import dataclass

APPLE_ISSUERS = ("https://appleid.apple.com", "https://account.apple.com")


@dataclass(frozen=True)
class AppleSettings:
    """Team credentials, endpoints and verification limits; endpoints derive from `base_url`."""

    base_url: str
    team_id: str
    key_id: str
    private_key_pem: str
    issuers: tuple[str, ...] = APPLE_ISSUERS
    connect_timeout: float = 3.0
    read_timeout: float = 8.0
    call_deadline: float = 6.0  # one call to Apple, all of it (reads one byte at a time too)
    budget: float = 9.0  # every Apple call of one sign-in together (AppleClient.budget)
    http_idle_seconds: float = 1.5  # never reuse a keep-alive connection idle this long
    jwks_max_age: int = 86400
    jwks_refetch_cooldown: float = 30.0
    leeway: int = 60
    id_token_max_age: int = 86460

    def __repr__(self) -> str:
        """Never show the private key, even in a traceback."""
        return (f"AppleSettings(base_url={self.base_url!r}, team_id={self.team_id!r}, "
                f"key_id={self.key_id!r}, issuers={self.issuers!r})")

    @property
    def authorize_url(self) -> str:
        return self._url("/auth/authorize")

    @property
    def token_url(self) -> str:
        return self._url("/auth/token")

    @property
    def revoke_url(self) -> str:
        return self._url("/auth/revoke")

    @property
    def migration_url(self) -> str:
        return self._url("/auth/usermigrationinfo")

    @property
    def keys_url(self) -> str:
        return self._url("/auth/keys")

    @property
    def timeout(self) -> tuple[float, float]:
        """The (connect, read) pair requests expects."""
        return (self.connect_timeout, self.read_timeout)

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path
