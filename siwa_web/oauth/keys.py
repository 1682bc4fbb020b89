"""Our JWT signing keys: created on first use, parsed once per process, rotated, published.

Keys live in the `signing_keys` table (private half encrypted with TOKEN_ENCRYPTION_KEYS), so
every worker and host signs with the same key. Each process keeps the parsed keys in a
`KeyRing`; it re-reads the (small) key list at most every `key_cache_seconds`, or sooner when a
token names a kid it does not know (at most once per `MISS_COOLDOWN`, so random kids cannot
turn into a query flood). A key is only ever looked up by `kid` as a dictionary key.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from joserfc.jwk import ECKey
from joserfc.jwk import RSAKey
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from ..infra.crypto import TokenCipher
from ..models import SigningKey
from ..models.base import now_utc
from .collaborators import DbSession
from .config import TokenSettings

Key = ECKey | RSAKey
MISS_COOLDOWN = 1.0  # seconds between reloads caused by unknown kids
_CURVES = {"ES256": "P-256", "ES384": "P-384"}


@dataclass(frozen=True)
class LoadedKey:
    """A parsed key: `private` only for the signer, `public` for every published key."""

    kid: str
    alg: str
    public: Key
    public_jwk: dict
    created_at: datetime
    retired_at: datetime | None
    unpublish_after: datetime | None
    private: Key | None = None

    @property
    def status(self) -> str:
        return status_of(self)


def status_of(key: LoadedKey | SigningKey) -> str:
    """"signing", "published" (retired, its tokens may still be valid) or "unpublished"."""
    if key.retired_at is None:
        return "signing"
    if key.unpublish_after is None or key.unpublish_after > now_utc():
        return "published"
    return "unpublished"


def generate(alg: str) -> Key:
    """Return a fresh private key for `alg`."""
    if alg in _CURVES:
        return ECKey.generate_key(_CURVES[alg])
    return RSAKey.generate_key(2048)


def _import_private(pem: str, alg: str) -> Key:
    return ECKey.import_key(pem) if alg in _CURVES else RSAKey.import_key(pem)


def _import_public(jwk: dict, alg: str) -> Key:
    return ECKey.import_key(jwk) if alg in _CURVES else RSAKey.import_key(jwk)


def _published():
    return or_(SigningKey.unpublish_after.is_(None), SigningKey.unpublish_after > now_utc())


class KeyRing:
    """The per-process cache of our keys; thread-safe."""

    def __init__(self, settings: TokenSettings, engine: Engine) -> None:
        self.settings = settings
        # Its own connections, never the request's session: a reload or the first key's
        # creation must not commit or roll back what the request is doing.
        self._engine = engine
        self._cipher = TokenCipher(list(settings.encryption_keys))
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._keys: dict[str, LoadedKey] = {}
        self._signer: LoadedKey | None = None
        self._loaded_at = float("-inf")
        self._miss_at = float("-inf")

    # --- reading -------------------------------------------------------------------------------

    def signer(self) -> LoadedKey:
        """Return the key that signs new tokens, creating the first one if there is none."""
        self._maybe_reload()
        if self._signer is None:
            with self._create_lock:  # one first key per process, not one per thread
                self.reload()
                if self._signer is None:
                    with self._engine.begin() as conn:
                        create_key(conn, self.settings, self._cipher)
                    self.reload()
        if self._signer is None:  # pragma: no cover - creation failed without raising
            raise RuntimeError("no signing key available")
        return self._signer

    def existing_signer(self) -> LoadedKey | None:
        """The key that signs new tokens if there is one; never creates one (a read only)."""
        self._maybe_reload()
        return self._signer

    def verification_key(self, kid: str) -> LoadedKey | None:
        """Return the published key named `kid`, or None; reloads once on a miss (rate-limited)."""
        self._maybe_reload()
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._miss_at >= MISS_COOLDOWN:
            self._miss_at = time.monotonic()
            self.reload()
            key = self._keys.get(kid)
        return key

    def published(self) -> list[LoadedKey]:
        """Return every key whose tokens may still be valid (the JWKS)."""
        self._maybe_reload()
        return sorted(self._keys.values(), key=lambda k: k.created_at, reverse=True)

    def jwks(self) -> dict:
        """Return the public JWK Set (RFC 7517) of every published key."""
        return {"keys": [k.public_jwk for k in self.published()]}

    # --- cache ---------------------------------------------------------------------------------

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= self.settings.key_cache_seconds

    def _maybe_reload(self) -> None:
        """Re-read a stale key list without making request threads queue behind the reload.

        One thread reloads; the others keep using the cached keys (seconds stale at worst).
        Queueing would hold their pooled connections while the reloader needs one more, which
        deadlocked a full pool under load (bench/pool_deadlock.py). A cold cache must wait.
        """
        if not self._stale():
            return
        if not self._keys:
            self.reload(only_if_stale=True)
        elif self._lock.acquire(blocking=False):
            try:
                self._reload_locked(only_if_stale=True)
            finally:
                self._lock.release()

    def reload(self, *, only_if_stale: bool = False) -> None:
        """Re-read the key list; parse only keys not seen before.

        With `only_if_stale`, threads that waited for the lock while another one reloaded
        do not query again.
        """
        with self._lock:
            self._reload_locked(only_if_stale=only_if_stale)

    def _reload_locked(self, *, only_if_stale: bool) -> None:
        """The reload itself; the caller holds `_lock`."""
        if only_if_stale and not self._stale():
            return
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    SigningKey.kid, SigningKey.alg, SigningKey.public_jwk,
                    SigningKey.created_at, SigningKey.retired_at, SigningKey.unpublish_after,
                ).where(_published())
            ).all()
            keys: dict[str, LoadedKey] = {}
            for row in rows:
                old = self._keys.get(row.kid)
                keys[row.kid] = LoadedKey(
                    kid=row.kid, alg=row.alg,
                    public=old.public if old else _import_public(row.public_jwk, row.alg),
                    public_jwk=row.public_jwk, created_at=row.created_at,
                    retired_at=row.retired_at, unpublish_after=row.unpublish_after,
                    private=old.private if old else None,
                )
            signer = _newest_active(keys.values())
            if signer is not None and signer.private is None:
                pem = conn.execute(
                    select(SigningKey.private_key_encrypted).where(SigningKey.kid == signer.kid)
                ).scalar_one()
                private = _import_private(self._cipher.decrypt(pem), signer.alg)
                signer = keys[signer.kid] = _with_private(signer, private)
        self._keys = keys
        self._signer = signer
        self._loaded_at = time.monotonic()


def _with_private(key: LoadedKey, private: Key) -> LoadedKey:
    return LoadedKey(**{**key.__dict__, "private": private})


def _newest_active(keys) -> LoadedKey | None:
    active = [k for k in keys if k.retired_at is None]
    return max(active, key=lambda k: (k.created_at, k.kid), default=None)


# --- writing (first use, CLI) ------------------------------------------------------------------


def create_key(conn: Connection, settings: TokenSettings, cipher: TokenCipher | None = None) -> str:
    """Insert a new signing key through `conn` (the caller's transaction) and return its kid.

    The kid is the key's RFC 7638 thumbprint.
    """
    cipher = cipher or TokenCipher(list(settings.encryption_keys))
    key = generate(settings.signing_alg)
    kid = key.thumbprint()
    public = {**key.as_dict(private=False), "kid": kid, "alg": settings.signing_alg, "use": "sig"}
    conn.execute(insert(SigningKey).values(
        kid=kid, alg=settings.signing_alg, public_jwk=public, created_at=now_utc(),
        private_key_encrypted=cipher.encrypt(key.as_pem(private=True).decode()),
    ))
    return kid


def rotate(engine: Engine, settings: TokenSettings) -> tuple[str, list[tuple[str, datetime]]]:
    """Make a new key the signer; retired keys stay published until their tokens have expired.

    Other processes may keep signing with the old key for up to `key_cache_seconds`, so the
    old key stays published that much longer, plus a minute of clock leeway.
    Returns (new kid, [(retired kid, unpublish_after), ...]).
    """
    now = now_utc()
    unpublish = now + timedelta(
        seconds=settings.max_token_lifetime + settings.key_cache_seconds + 60
    )
    with engine.begin() as conn:
        retired = conn.execute(
            select(SigningKey.kid).where(SigningKey.retired_at.is_(None))
        ).scalars().all()
        conn.execute(
            update(SigningKey).where(SigningKey.retired_at.is_(None))
            .values(retired_at=now, unpublish_after=unpublish)
        )
        kid = create_key(conn, settings)  # same transaction: never a moment without a signer
    return kid, [(old, unpublish) for old in retired]


def list_keys(session: DbSession) -> list[SigningKey]:
    """Every key row, newest first (for `flask keys list`)."""
    return list(session.execute(
        select(SigningKey).order_by(SigningKey.created_at.desc())
    ).scalars())
