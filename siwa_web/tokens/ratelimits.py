"""Fixed-window limits counted straight in the limiter's store, for the token endpoint.

`POST /oauth/token` is the hottest write path. Flask-Limiter's route decorator resolves,
filters and scopes its limits through dozens of context-local lookups per request: about 80 µs
in-process (a refused token request took 230 µs with it, 137 µs without). Here the same
`limits` strategy hits the same store (`RATELIMIT_STORAGE_URI`, shared with Flask-Limiter's
other routes) in a few µs.
"""
from __future__ import annotations

import logging
import math
import time
from functools import lru_cache

from flask import current_app
from limits import RateLimitItem
from limits import parse_many
from limits.storage import Storage
from limits.strategies import STRATEGIES

from ..infra import metrics
from ..infra.extensions import limiter

log = logging.getLogger(__name__)


class RateLimited(Exception):
    """A limit is spent; the caller may retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited; retry after {retry_after} s")
        self.retry_after = retry_after


@lru_cache(maxsize=64)
def _items(limit: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(limit))


def hit(
    storage: Storage, limit: str, scope: str, key: str, *, swallow_errors: bool,
    strategy_name: str = "fixed-window",
) -> None:
    """Count one request of `key` against `limit` (e.g. "60/minute; 1000/day").

    `strategy_name` is Flask-Limiter's RATELIMIT_STRATEGY, so every route counts alike.
    :raises RateLimited: when a window of the limit is spent (later windows are not counted).
    A failing store is logged and lets the request through when `swallow_errors` is set.
    """
    strategy = STRATEGIES[strategy_name](storage)
    try:
        for item in _items(limit):
            if not strategy.hit(item, scope, key):
                reset = strategy.get_window_stats(item, scope, key).reset_time
                raise RateLimited(max(1, math.ceil(reset - time.time())))
    except RateLimited:
        raise
    except Exception as exc:  # the store (Redis, say) failed
        if not swallow_errors:
            raise
        log.warning("rate-limit store failed (%s); request let through", type(exc).__name__,
                    extra={"event": "ratelimit_store_failed"})


def hit_setting(setting: str, scope: str, key: str) -> None:
    """Count one request of `key` against the limit configured as `setting`, in the app's
    limiter store, with the app's strategy and error handling; nothing when limits are off.

    :raises RateLimited: (and counts the refusal under the setting's name in the metrics)
    """
    cfg = current_app.config
    if not cfg.get("RATELIMIT_ENABLED", True):
        return
    try:
        hit(limiter.storage, cfg[setting], scope, key,
            swallow_errors=bool(cfg.get("RATELIMIT_SWALLOW_ERRORS")),
            strategy_name=cfg.get("RATELIMIT_STRATEGY") or "fixed-window")
    except RateLimited:
        metrics.recorder().rate_limited(setting)
        raise
