"""The Redis rate-limit store behind short timeouts and a circuit breaker: it fails open, fast.

A stopped or hung Redis used to cost every limited request redis-py's socket timeout (5 s,
none at all before redis-py 6) once per limit, and requests that waited held worker threads
that unrelated requests then queued behind. Here:

* every connect and every command is bounded (`RATELIMIT_STORE_CONNECT_TIMEOUT`,
  `RATELIMIT_STORE_TIMEOUT`, default 0.25 s each) and never retried (redis-py 6 retries three
  times by default);
* the first failure opens the breaker for `RATELIMIT_STORE_BREAKER_SECONDS` (default 30 s):
  meanwhile no request touches Redis at all and every limit lets its request through;
* then one request (only one) tries Redis again: success closes the breaker, failure opens it
  for another period. So a dead or hung store adds at most one connect plus one command
  timeout to one request per period, and nothing to all the others.
* Opening is logged once per period at WARNING, recovery once at INFO.

Failing open is a choice: rate limits protect sign-in from abuse; they must not take sign-in
down with them. For the length of an outage limits are not enforced (per-process memory
counting instead would let each worker allow the full limit again, and mislead).

The store registers under schemes of its own (`siwa-redis://`, `siwa-rediss://`,
`siwa-redis+unix://`); `guarded_uri` maps the configured `redis://…` URI to them when the
limiter is bound (infra/ratelimit.py), so the config still shows what was configured.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from limits.storage import RedisStorage

log = logging.getLogger(__name__)
PREFIX = "siwa-"
SCHEMES = ("redis", "rediss", "redis+unix")
BREAKER_OPTION = "breaker_seconds"


def guarded_uri(uri: str | None) -> str | None:
    """`redis://…` → `siwa-redis://…` (likewise rediss, redis+unix); anything else unchanged."""
    if not uri:
        return uri
    scheme, sep, rest = str(uri).partition("://")
    return f"{PREFIX}{scheme}{sep}{rest}" if sep and scheme in SCHEMES else uri


def redis_options(connect_timeout: float, timeout: float) -> dict[str, Any]:
    """redis-py client options: bounded connect and commands, no retries."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_connect_timeout": connect_timeout, "socket_timeout": timeout,
            "retry_on_timeout": False, "retry": Retry(NoBackoff(), 0)}


class Breaker:
    """Closed, open for `period` seconds after a failure, then half-open for one trial call."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None: closed
        self._trial = False  # a half-open trial call is under way

    @property
    def closed(self) -> bool:
        return self._open_until is None

    def allow(self) -> bool:
        """Whether this call may use the store; once open, only one caller per period may."""
        if self._open_until is None:
            return True
        with self._lock:
            if self._open_until is None:
                return True
            if self._trial or self._clock() < self._open_until:
                return False
            self._trial = True
            return True

    def succeeded(self) -> None:
        if self._open_until is None:
            return
        with self._lock:
            if self._open_until is not None:
                self._open_until, self._trial = None, False
                log.info("rate-limit store answers again; limits are counted again",
                         extra={"event": "ratelimit_store_restored"})

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            reopening = self._open_until is None or self._trial
            self._open_until, self._trial = self._clock() + self.period, False
        if reopening:  # once per period: the failures while it is open never reach here
            log.warning("rate-limit store failed (%s); limits let requests through for %g s",
                        type(exc).__name__, self.period,
                        extra={"event": "ratelimit_store_failed",
                               "reason": "ratelimit_store_unavailable"})


def _guard(method: str, when_open: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap RedisStorage.`method`: skipped while the breaker is open, failures open it."""
    original = getattr(RedisStorage, method)

    def guarded(self: GuardedRedisStorage, *args: Any, **kwargs: Any) -> Any:
        breaker = self.breaker
        if not breaker.allow():
            return when_open(*args, **kwargs)
        try:
            result = original(self, *args, **kwargs)
        except Exception as exc:  # a Redis error, timeout, refused connection, lost socket
            breaker.failed(exc)
            return when_open(*args, **kwargs)
        breaker.succeeded()
        return result

    guarded.__name__ = method
    guarded.__doc__ = f"RedisStorage.{method}, failing open (see the module docstring)."
    return guarded


class GuardedRedisStorage(RedisStorage):
    """limits' Redis store, each call behind `breaker`; while it is open, limits let all through.

    What an open breaker answers is what an empty store would: no hits counted, windows that
    end now, room in every moving or sliding window; `check` (readiness) says False.
    """

    STORAGE_SCHEME = [PREFIX + scheme for scheme in SCHEMES]

    def __init__(self, uri: str, **options: Any) -> None:
        self.breaker = Breaker(float(options.pop(BREAKER_OPTION, 30.0)))
        super().__init__(uri.removeprefix(PREFIX), **options)

    incr = _guard("incr", lambda *a, **k: 0)
    get = _guard("get", lambda *a, **k: 0)
    get_expiry = _guard("get_expiry", lambda *a, **k: time.time())
    check = _guard("check", lambda *a, **k: False)
    reset = _guard("reset", lambda *a, **k: None)
    clear = _guard("clear", lambda *a, **k: None)
    acquire_entry = _guard("acquire_entry", lambda *a, **k: True)
    get_moving_window = _guard("get_moving_window", lambda *a, **k: (time.time(), 0))
    acquire_sliding_window_entry = _guard("acquire_sliding_window_entry", lambda *a, **k: True)
    get_sliding_window = _guard("get_sliding_window", lambda *a, **k: (0, 0.0, 0, 0.0))
    clear_sliding_window = _guard("clear_sliding_window", lambda *a, **k: None)
