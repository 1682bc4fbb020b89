"""The ES256 client-secret JWT Apple wants on every token and revoke call, cached per client id."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from joserfc import jwt
from joserfc.jwk import ECKey

APPLE_AUDIENCE = "https://appleid.apple.com"
MAX_LIFETIME = 15777000  # Apple's limit: exp <= iat + 15777000 (about 6 months)
DEFAULT_LIFETIME = 15552000  # 180 days, comfortably under the limit
BACKDATE = 60  # Apple rejects an iat in its future; our clock may run a little ahead


class ClientSecretFactory:
    """Sign client secrets once per client id and reuse them until half their life is gone."""

    def __init__(self, team_id: str, key_id: str, private_key_pem: str, *,
                 lifetime: int = DEFAULT_LIFETIME,
                 clock: Callable[[], float] = time.time) -> None:
        if not 600 <= lifetime <= MAX_LIFETIME:
            raise ValueError(f"client secret lifetime must be 600..{MAX_LIFETIME} seconds")
        self.team_id = team_id
        self.key_id = key_id
        self.lifetime = lifetime
        self._clock = clock
        self._key = _load_key(private_key_pem)  # parse once: signing is then ~45 µs
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, float, str]] = {}  # client_id -> (made, renew, jwt)

    def __repr__(self) -> str:
        return f"ClientSecretFactory(team_id={self.team_id!r}, key_id={self.key_id!r})"

    def get(self, client_id: str) -> str:
        """Return a valid secret for `client_id` (its `sub`), signing a new one when due."""
        now = self._clock()
        cached = self._cache.get(client_id)
        if cached and cached[0] <= now < cached[1]:
            return cached[2]
        with self._lock:
            cached = self._cache.get(client_id)
            if cached and cached[0] <= now < cached[1]:
                return cached[2]
            secret = self._sign(client_id, int(now))
            # Renew at half-life so a secret is never near `exp`; a clock jump back also renews.
            self._cache[client_id] = (now, now + self.lifetime / 2, secret)
            return secret

    def _sign(self, client_id: str, now: int) -> str:
        iat = now - BACKDATE
        claims = {"iss": self.team_id, "iat": iat, "exp": iat + self.lifetime,
                  "aud": APPLE_AUDIENCE, "sub": client_id}
        header = {"alg": "ES256", "kid": self.key_id}
        return jwt.encode(header, claims, self._key, algorithms=["ES256"], default_type=None)


def _load_key(pem: str) -> ECKey:
    """Import the team's .p8 key; anything but an EC P-256 private key is a setup error."""
    try:
        key = ECKey.import_key(pem)
    except Exception as exc:  # joserfc raises several types for bad PEM text
        raise ValueError("Apple private key is not a PEM EC key (the .p8 file's text)") from exc
    if key.curve_name != "P-256" or not key.is_private:
        raise ValueError("Apple private key must be an EC P-256 private key")
    return key
