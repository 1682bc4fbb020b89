"""A dead or hung Redis rate-limit store costs one request a short bound per breaker period.

Found in production: with Redis stopped (SIGSTOP), each POST /oauth/token waited redis-py's
5 s socket timeout once per limit, and 80 such requests pushed unrelated GET /api/me p50 from
7 ms to 10.1 s. A real socket server that accepts and never answers stands for the stopped
Redis; a closed port for a dead one (siwa_web/infra/ratelimit_guard.py).
"""
from __future__ import annotations

import logging
import threading
import time

import pytest

from siwa_web import create_app
from siwa_web.infra.extensions import db
from siwa_web.infra.extensions import limiter
from siwa_web.infra.ratelimit_guard import Breaker
from siwa_web.infra.ratelimit_guard import GuardedRedisStorage
from siwa_web.ops.health import redis_storage
from support.servers import closed_port
from support.servers import elapsed

BOUND = 0.25 + 0.25  # RATELIMIT_STORE_CONNECT_TIMEOUT + RATELIMIT_STORE_TIMEOUT
SLACK = 0.35  # the rest of a request on a shared, busy test machine
REFUSED = 401  # the limits let the request through; the unknown client is refused
TOKEN_FORM = {"grant_type": "refresh_token", "refresh_token": "not-a-token", "client_id": "x"}
WARNING = "rate-limit store failed"


def make_app(app_config, uri: str, **settings):
    return create_app(dict(app_config, RATELIMIT_STORAGE_URI=uri, **settings))


def token_request(client):
    return client.post("/oauth/token", data=TOKEN_FORM)


def store_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if WARNING in r.getMessage()]


@pytest.fixture
def silent_redis(silent_server):
    return f"redis://127.0.0.1:{silent_server.port}/3"


@pytest.fixture
def dead_redis():
    return f"redis://127.0.0.1:{closed_port()}/3"


@pytest.fixture(params=["silent", "dead"])
def broken_redis(request):
    return request.getfixturevalue(f"{request.param}_redis")


def dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


def test_a_redis_uri_gets_the_guarded_store_and_the_config_keeps_what_was_set(app_config,
                                                                              silent_redis):
    app = make_app(app_config, silent_redis)
    assert isinstance(limiter.storage, GuardedRedisStorage)
    assert app.config["RATELIMIT_STORAGE_URI"] == silent_redis
    assert "RATELIMIT_STORAGE_OPTIONS" not in app.config
    connection = limiter.storage.storage.connection_pool.connection_kwargs
    assert connection["socket_connect_timeout"] == 0.25 and connection["socket_timeout"] == 0.25
    dispose(app)


@pytest.mark.parametrize("redis", ["silent", "dead"])
def test_token_requests_pay_the_bound_once_per_period(app_config, request, silent_server,
                                                      redis, caplog):
    app = make_app(app_config, request.getfixturevalue(f"{redis}_redis"))
    client = app.test_client()
    with caplog.at_level(logging.INFO):
        first, first_seconds = elapsed(token_request, client)
        asked = silent_server.received
        rest = [elapsed(token_request, client) for _ in range(10)]
    dispose(app)
    assert first.status_code == REFUSED
    assert first_seconds < BOUND + SLACK
    assert all(r.status_code == REFUSED for r, _ in rest)
    assert silent_server.received == asked  # the breaker is open: Redis is not asked at all
    # (asking it would cost the command timeout twice, once per limit)
    assert max(seconds for _, seconds in rest) < BOUND
    assert len(store_warnings(caplog)) == 1  # logged once per period


def test_the_browser_sign_in_limit_fails_open_just_as_fast(app_config, broken_redis):
    """Flask-Limiter's decorated limits go through the same guarded store."""
    app = make_app(app_config, broken_redis, RATELIMIT_LOGIN_PER_IP="1/minute")
    client = app.test_client()
    timed = [elapsed(client.get, "/auth/apple/login") for _ in range(4)]
    dispose(app)
    assert [r.status_code for r, _ in timed] == [303] * 4  # not enforced while Redis is down
    assert timed[0][1] < BOUND + SLACK
    assert max(seconds for _, seconds in timed[1:]) < 0.25  # no timeout paid again


def test_after_the_period_one_request_tries_again(app_config, silent_redis, silent_server,
                                                  caplog):
    app = make_app(app_config, silent_redis, RATELIMIT_STORE_BREAKER_SECONDS=2.0)
    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        token_request(client)
        asked = silent_server.received
        time.sleep(2.1)
        trial, trial_seconds = elapsed(token_request, client)
        after = [elapsed(token_request, client)[1] for _ in range(3)]
    dispose(app)
    assert trial.status_code == REFUSED and trial_seconds < BOUND + SLACK
    assert silent_server.received > asked  # the trial asked Redis again
    assert max(after) < BOUND
    assert len(store_warnings(caplog)) == 2  # one per period


def test_concurrent_requests_do_not_queue_behind_a_hung_store(app_config, silent_redis):
    """Threads of one worker at once: only the first to fail waits, the rest go straight on."""
    app = make_app(app_config, silent_redis)
    results: list[tuple[int, float]] = []

    def one() -> None:
        response, seconds = elapsed(token_request, app.test_client())
        results.append((response.status_code, seconds))

    token_request(app.test_client())  # opens the breaker
    threads = [threading.Thread(target=one) for _ in range(16)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    dispose(app)
    assert [status for status, _ in results] == [REFUSED] * 16
    assert wall < 3.0, wall  # 16 requests of a few ms each on two shared cores


def test_readyz_keeps_its_own_short_bound(app_config, silent_redis):
    """/readyz asks Redis itself (not through the breaker): a hung store is a 503 in time."""
    app = make_app(app_config, silent_redis, HEALTH_CHECK_TIMEOUT=1.0)
    response, seconds = elapsed(app.test_client().get, "/readyz")
    storage = redis_storage(app, 1.0)
    dispose(app)
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"]["ok"] is False
    assert seconds < 1.0 + 2 * SLACK  # (redis-py's own default: 5 s, retried three times)
    assert storage.storage.connection_pool.connection_kwargs["retry"]._retries == 0


# --- the breaker alone -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_lets_one_trial_through_per_period_and_closes_on_success(caplog):
    clock = Clock()
    breaker = Breaker(30, clock=clock)
    assert breaker.allow()
    with caplog.at_level(logging.INFO):
        breaker.failed(TimeoutError())
        assert not breaker.allow()
        clock.now += 29.9
        assert not breaker.allow()
        clock.now += 0.2
        assert breaker.allow()  # the trial
        assert not breaker.allow()  # only one at a time
        breaker.failed(TimeoutError())
        assert not breaker.allow()
        clock.now += 30
        assert breaker.allow()
        breaker.succeeded()
    assert breaker.closed and breaker.allow() and breaker.allow()
    messages = [r.getMessage() for r in caplog.records]
    assert sum(WARNING in m for m in messages) == 2
    assert sum("answers again" in m for m in messages) == 1
