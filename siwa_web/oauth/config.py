"""The token service's settings, read once from the app config (protocol code never reads Flask)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUPPORTED_ALGS = ("ES256", "ES384", "RS256")


@dataclass(frozen=True)
class TokenSettings:
    """Issuer, audiences, lifetimes and keys of the tokens we issue."""

    issuer: str
    default_audience: str
    access_token_ttl: int
    id_token_ttl: int
    refresh_idle_ttl: int
    refresh_absolute_ttl: int
    grace_seconds: int
    signing_alg: str
    encryption_keys: tuple[str, ...]
    key_cache_seconds: float = 5.0
    liveness_cache_seconds: float = 0.0
    #: How long each worker's authorization endpoint may answer from its copy of a client.
    client_cache_seconds: float = 0.0
    #: Client ids of the web sign-in (Apple Services IDs): known to us, but not token clients.
    web_client_ids: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TokenSettings:
        alg = config["SIGNING_ALG"]
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"SIGNING_ALG must be one of {', '.join(SUPPORTED_ALGS)}")
        grace = int(config["REFRESH_TOKEN_GRACE_SECONDS"])
        if not 0 <= grace <= 60:
            raise ValueError("REFRESH_TOKEN_GRACE_SECONDS must be between 0 and 60")
        return cls(
            issuer=config["ISSUER"],
            default_audience=config["DEFAULT_AUDIENCE"],
            access_token_ttl=int(config["ACCESS_TOKEN_TTL"]),
            id_token_ttl=int(config["ID_TOKEN_TTL"]),
            refresh_idle_ttl=int(config["REFRESH_TOKEN_IDLE_TTL"]),
            refresh_absolute_ttl=int(config["REFRESH_TOKEN_ABSOLUTE_TTL"]),
            grace_seconds=grace,
            signing_alg=alg,
            encryption_keys=tuple(config["TOKEN_ENCRYPTION_KEYS"]),
            key_cache_seconds=float(config.get("SIGNING_KEY_CACHE_SECONDS", 5.0)),
            liveness_cache_seconds=_non_negative(config, "LIVENESS_CACHE_SECONDS"),
            client_cache_seconds=_non_negative(config, "CLIENT_CACHE_SECONDS"),
            web_client_ids=frozenset(filter(None, [config.get("APPLE_SERVICES_ID")])),
        )

    @property
    def max_token_lifetime(self) -> int:
        """The longest any JWT we sign stays valid: how long a retired key must stay published."""
        return max(self.access_token_ttl, self.id_token_ttl)


def _non_negative(config: Mapping[str, Any], key: str) -> float:
    value = float(config.get(key, 0) or 0)
    if value < 0:
        raise ValueError(f"{key} must be 0 (off) or a number of seconds")
    return value
