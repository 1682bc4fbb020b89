"""Rate limits shared by every worker through Redis (SIWA_RATELIMIT_STORAGE_URI)."""
from __future__ import annotations

import os

import pytest
from conftest import answers

from siwa_web import create_app


def _redis_url() -> str | None:
    url = os.environ.get("SIWA_TEST_REDIS_URL")
    if url:
        return url  # CI starts Redis: a failure to reach it must fail the test, not skip it
    return "redis://127.0.0.1:6379/15" if answers(6379) else None


REDIS_URL = _redis_url()
pytestmark = pytest.mark.skipif(REDIS_URL is None, reason="no Redis on 127.0.0.1:6379 "
                                "(set SIWA_TEST_REDIS_URL; .ci/run starts one)")


def test_two_workers_share_one_limit(app_config):
    """Two app instances stand for two gunicorn workers: the limit is counted once, in Redis.

    The Redis database is reserved for tests (index 15 by default) and emptied around the test.
    """
    import redis

    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    config = dict(app_config, RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_LOGIN_PER_IP="4/minute",
                  RATELIMIT_SWALLOW_ERRORS=False)
    worker_a = create_app(config).test_client()
    worker_b = create_app(config).test_client()
    try:
        statuses = [w.get("/auth/apple/login").status_code
                    for w in (worker_a, worker_b, worker_a, worker_b, worker_a, worker_b)]
        assert statuses == [303, 303, 303, 303, 429, 429]
        # the count lives in Redis, where other processes see it too
        assert [k for k in store.scan_iter() if b"auth.start" in k]
    finally:
        store.flushdb()


def test_token_endpoint_limit_is_shared_through_redis(app_config):
    """The token endpoint counts in the same Redis store as Flask-Limiter's routes."""
    import redis

    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    config = dict(app_config, RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_TOKEN_PER_IP="3/minute",
                  RATELIMIT_SWALLOW_ERRORS=False)
    workers = [create_app(config).test_client() for _ in range(2)]
    try:
        statuses = [workers[i % 2].post("/oauth/token", data={"grant_type": "password"}).status_code
                    for i in range(5)]
        assert statuses == [400, 400, 400, 429, 429]
        assert [k for k in store.scan_iter() if b"oauth-ip" in k]
    finally:
        store.flushdb()


def test_token_endpoint_follows_the_configured_strategy(app_config):
    """With RATELIMIT_STRATEGY = moving-window the token endpoint keeps a moving window too."""
    import redis

    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    config = dict(app_config, RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_TOKEN_PER_IP="2/minute",
                  RATELIMIT_STRATEGY="moving-window", RATELIMIT_SWALLOW_ERRORS=False)
    client = create_app(config).test_client()
    try:
        statuses = [client.post("/oauth/token", data={"grant_type": "password"}).status_code
                    for _ in range(3)]
        assert statuses == [400, 400, 429]
        # a moving window is a Redis list of hit times, not a fixed-window counter
        keys = [k for k in store.scan_iter() if b"oauth-ip" in k]
        assert keys and all(store.type(k) == b"list" for k in keys)
    finally:
        store.flushdb()
