"""siwa-web's in-process rate-limit store: fixed-window counters swept by their callers.

`limits` 5.8's own memory store starts a `threading.Timer` that lives 10 ms, and every counted
request starts a new one once the last has ended. Under load that was a thread started about
every 10 ms per worker, by whichever request thread noticed, and it cost ~300 µs of CPU per
refresh grant (the benchmark's CPU per request fell from 2040 to 1730 µs without it). Its
counters also share no lock with that timer's sweep. Here one lock guards every counter; a
request that finds the last sweep older than `SWEEP_SECONDS` drops expired keys itself; no
thread is ever started.

The store registers under a scheme of its own, `siwa-memory://`, so importing siwa_web leaves
`limits`' `memory://` alone for any other code in the process. siwa-web's limiter maps the
documented `RATELIMIT_STORAGE_URI = "memory://"` (the default) to this scheme when it is bound
(`local_uri`, used by `siwa_web.infra.ratelimit`). It supports the fixed-window strategy,
Flask-Limiter's default and the only one siwa-web uses; asking for another strategy fails at
start-up in `limits` with a message naming the strategy.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from limits.storage import Storage

SWEEP_SECONDS = 1.0
SCHEME = "siwa-memory"


def local_uri(uri: str | None) -> str | None:
    """The storage URI siwa-web's limiter uses for `uri`: `memory://` (or none) means this store.

    Any other URI (`redis://…`, or `siwa-memory://` itself) is returned unchanged.
    """
    if not uri:
        return f"{SCHEME}://"
    scheme, sep, rest = str(uri).partition("://")
    return f"{SCHEME}{sep}{rest}" if sep and scheme == "memory" else uri


class LocalMemoryStorage(Storage):
    """Counters keyed by limit and caller; each lives until its window ends."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False,
                 **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (count, window ends at)
        self._next_sweep = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Count `amount` hits; a key whose window has ended starts a new window of `expiry` s."""
        now = time.time()
        with self._lock:
            self._sweep(now)
            count, ends = self._windows.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + expiry
            count += amount
            self._windows[key] = (count, ends)
            return count

    def get(self, key: str) -> int:
        count, ends = self._windows.get(key, (0, 0.0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        _count, ends = self._windows.get(key, (0, 0.0))
        return ends if ends > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        with self._lock:
            dropped = len(self._windows)
            self._windows = {}
            return dropped

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Forget ended windows, at most once per `SWEEP_SECONDS` (the caller holds the lock)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
