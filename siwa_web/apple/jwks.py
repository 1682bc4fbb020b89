"""Apple's signing keys, cached by kid, refetched rarely, and served stale through an outage."""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from joserfc.jwk import RSAKey

from .errors import AppleUnavailable
from .errors import InvalidIdentityToken

log = logging.getLogger("siwa_web.apple")
MIN_RSA_BITS = 2048


class AppleKeySet:
    """Keys from `fetch()` (Apple's JWKS JSON), parsed once and looked up by `kid`.

    * Refetched by a lookup once older than `max_age / 2`; served at most `max_age`, so an
      Apple outage shorter than half a day goes unnoticed (REL-09).
    * An unknown kid triggers at most one refetch per `refetch_cooldown`, so forged kids cannot
      make us hammer Apple (REL-08) while a real rotation costs one fetch (REL-07).
    * After a failed fetch nothing is fetched for `refetch_cooldown`: a cold cache fails fast.
    * Entries that are not usable RS256 signing keys are ignored, never fatal.
    """

    def __init__(self, fetch: Callable[[], dict], *, max_age: float = 86400,
                 refetch_cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.max_age = max_age
        self.refetch_cooldown = refetch_cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, RSAKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch attempt, successful or not
        self._kid_refetch_at: float | None = None  # last refetch caused by an unknown kid
        self._last_failed = False

    def key_for(self, kid: str) -> RSAKey:
        """Return Apple's key `kid`; InvalidIdentityToken if Apple has none, AppleUnavailable if
        we cannot know."""
        now = self._clock()
        key = self._keys.get(kid) if self._fresh(now) else None
        if key is not None:
            return key
        with self._lock:
            now = self._clock()  # after the wait: another thread may have just fetched
            reason = self._fetch_reason(kid, now)
            if reason == "unknown kid":
                self._kid_refetch_at = now
            if reason is not None:
                self._refresh(now)
            if not self._usable(now):
                raise AppleUnavailable("Apple's signing keys are unavailable")
            key = self._keys.get(kid)
            if key is None:
                if self._last_failed:
                    raise AppleUnavailable("Apple's signing keys could not be refreshed")
                raise InvalidIdentityToken("unknown key id")
            return key

    def _fresh(self, now: float) -> bool:
        """True while no refresh is due (the common, lock-free path)."""
        return _elapsed(self._fetched_at, now) < self.max_age / 2

    def _usable(self, now: float) -> bool:
        return _elapsed(self._fetched_at, now) < self.max_age

    def _fetch_reason(self, kid: str, now: float) -> str | None:
        """Why to fetch now, or None: backing off after a failure, or nothing to gain."""
        if self._last_failed and _elapsed(self._attempted_at, now) < self.refetch_cooldown:
            return None
        if not self._fresh(now):
            return "due"
        if kid not in self._keys and _elapsed(self._kid_refetch_at, now) >= self.refetch_cooldown:
            return "unknown kid"
        return None

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            keys = parse_jwks(self._fetch())
        except Exception as exc:  # fetch is injected: any failure means "keep what we have"
            self._last_failed = True
            log.warning("Apple JWKS fetch failed: %s", type(exc).__name__,
                        extra={"event": "apple_keys_unavailable"})
            return
        self._keys, self._fetched_at, self._last_failed = keys, now, False


def _elapsed(since: float | None, now: float) -> float:
    """Seconds since `since`; never, or a clock that went backwards, counts as forever."""
    if since is None or now < since:
        return math.inf
    return now - since


def parse_jwks(document: Any) -> dict[str, RSAKey]:
    """Import the usable keys of a JWK Set; an empty result counts as a failed fetch."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWK Set")
    keys: dict[str, RSAKey] = {}
    for entry in entries:
        key = _import_entry(entry)
        if key is not None:
            keys[entry["kid"]] = key
    if not keys:
        raise ValueError("JWK Set has no usable RS256 key")
    return keys


def _import_entry(entry: Any) -> RSAKey | None:
    """One RS256 signing key, or None for anything unusable (RFC 7517 §5: ignore, go on)."""
    if not isinstance(entry, dict) or entry.get("kty") != "RSA":
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
        return None
    public = {k: entry[k] for k in ("kty", "n", "e") if k in entry}  # never a private part
    try:
        key = RSAKey.import_key(public)
        if key.raw_value.key_size < MIN_RSA_BITS:
            return None
    except Exception:  # malformed n/e in one entry must not cost us the other keys
        return None
    return key
