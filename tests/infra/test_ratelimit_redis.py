"""Rate limits shared by every worker through Redis (SIWA_RATELIMIT_STORAGE_URI)."""
from __future__ import annotations

import pytest

from siwa_web import create_app
from support.config import REDIS_URL

pytestmark = pytest.mark.skipif(REDIS_URL is None, reason="no Redis on 127.0.0.1:6379 "
                                "(set SIWA_TEST_REDIS_URL; .ci/run starts one)")


@pytest.fixture
def store():
    """The Redis database reserved for tests (index 15 by default), emptied around each test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


def workers(app_config, count: int, **settings):
    """`count` app instances on one Redis store: they stand for gunicorn workers."""
    config = dict(app_config, RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_SWALLOW_ERRORS=False,
                  **settings)
    return [create_app(config).test_client() for _ in range(count)]


def test_two_workers_share_one_limit(app_config, store):
    """Two workers: the browser sign-in limit is counted once, in Redis."""
    worker_a, worker_b = workers(app_config, 2, RATELIMIT_LOGIN_PER_IP="4/minute")
    statuses = [w.get("/auth/apple/login").status_code
                for w in (worker_a, worker_b, worker_a, worker_b, worker_a, worker_b)]
    assert statuses == [303, 303, 303, 303, 429, 429]
    # the count lives in Redis, where other processes see it too
    assert [k for k in store.scan_iter() if b"auth.start" in k]


def test_token_endpoint_limit_is_shared_through_redis(app_config, store):
    """The token endpoint counts in the same Redis store as Flask-Limiter's routes."""
    pair = workers(app_config, 2, RATELIMIT_TOKEN_PER_IP="3/minute")
    statuses = [pair[i % 2].post("/oauth/token", data={"grant_type": "password"}).status_code
                for i in range(5)]
    assert statuses == [400, 400, 400, 429, 429]
    assert [k for k in store.scan_iter() if b"oauth-ip" in k]


def test_token_endpoint_follows_the_configured_strategy(app_config, store):
    """With RATELIMIT_STRATEGY = moving-window the token endpoint keeps a moving window too."""
    (client,) = workers(app_config, 1, RATELIMIT_TOKEN_PER_IP="2/minute",
                        RATELIMIT_STRATEGY="moving-window")
    statuses = [client.post("/oauth/token", data={"grant_type": "password"}).status_code
                for _ in range(3)]
    assert statuses == [400, 400, 429]
    # a moving window is a Redis list of hit times, not a fixed-window counter
    keys = [k for k in store.scan_iter() if b"oauth-ip" in k]
    assert keys and all(store.type(k) == b"list" for k in keys)
