"""The per-process rate-limit store (`siwa-memory://`): exact counts, windows, no timer threads."""
from __future__ import annotations

import threading

import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from limits.strategies import MovingWindowRateLimiter

from siwa_web.infra import ratelimit_store
from siwa_web.infra.extensions import limiter
from siwa_web.infra.ratelimit_store import LocalMemoryStorage


class Clock:
    """Stands in for time.time inside the store only."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(ratelimit_store.time, "time", fake)
    return fake


@pytest.fixture
def store():
    return LocalMemoryStorage("siwa-memory://")


def test_own_scheme_is_this_store():
    assert isinstance(storage_from_string("siwa-memory://"), LocalMemoryStorage)


def test_importing_siwa_web_leaves_limits_memory_scheme_alone():
    import siwa_web  # noqa: F401  (imported already; the point is that it has been)

    store = storage_from_string("memory://")
    assert type(store) is MemoryStorage
    timer = getattr(store, "timer", None)  # limits 5.8 starts a 10 ms timer thread: let it end
    if timer is not None:
        timer.join()


def test_app_limiter_uses_it_for_the_default_memory_setting(app):
    assert app.config["RATELIMIT_STORAGE_URI"] == "memory://"  # the setting, as configured
    assert isinstance(limiter.storage, LocalMemoryStorage)


@pytest.mark.parametrize("uri", ["memory://", "siwa-memory://", "", None])
def test_every_in_process_setting_means_this_store(app_config, uri):
    from siwa_web import create_app

    app = create_app(dict(app_config, RATELIMIT_STORAGE_URI=uri))
    assert app.config["RATELIMIT_STORAGE_URI"] == uri
    assert isinstance(limiter.storage, LocalMemoryStorage)


@pytest.mark.parametrize(("uri", "expected"), [
    ("memory://", "siwa-memory://"),
    (None, "siwa-memory://"),
    ("siwa-memory://", "siwa-memory://"),
    ("redis://cache:6379/0", "redis://cache:6379/0"),
    ("memcached://memory:11211", "memcached://memory:11211"),
])
def test_local_uri(uri, expected):
    assert ratelimit_store.local_uri(uri) == expected


def test_counts_within_a_window_then_starts_again(store, clock):
    assert [store.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert store.get("k") == 3
    assert store.get_expiry("k") == clock.now + 60
    clock.now += 59.9
    assert store.incr("k", 60) == 4
    clock.now += 0.1  # the window that began 60 s ago has ended
    assert store.get("k") == 0
    assert store.get_expiry("k") == clock.now
    assert store.incr("k", 60) == 1
    assert store.get_expiry("k") == clock.now + 60


def test_amount_and_separate_keys(store, clock):
    assert store.incr("a", 10, amount=5) == 5
    assert store.incr("b", 10) == 1
    assert (store.get("a"), store.get("b"), store.get("unknown")) == (5, 1, 0)


def test_clear_and_reset(store, clock):
    store.incr("a", 10)
    store.incr("b", 10)
    store.clear("a")
    store.clear("never-seen")
    assert (store.get("a"), store.get("b")) == (0, 1)
    assert store.reset() == 1
    assert store.get("b") == 0
    assert store.check() is True


def test_ended_windows_are_swept(store, clock):
    for i in range(100):
        store.incr(f"caller-{i}", 5)
    store.incr("long", 3600)
    clock.now += ratelimit_store.SWEEP_SECONDS + 5
    store.incr("trigger", 5)
    assert set(store._windows) == {"long", "trigger"}


def test_sweeps_at_most_once_per_interval(store, clock):
    store.incr("short", 0.5)
    clock.now += 0.6  # ended, but the last sweep (at the first incr) was under a second ago
    store.incr("other", 60)
    assert "short" in store._windows
    assert store.get("short") == 0  # ended windows count as empty whether swept or not
    clock.now += ratelimit_store.SWEEP_SECONDS
    store.incr("other", 60)
    assert "short" not in store._windows


def test_no_lost_hits_and_no_threads_under_contention(store):
    threads_before = threading.active_count()
    start = threading.Barrier(16)
    seen_threads: list[int] = []

    def hammer():
        start.wait()
        for _ in range(2000):
            store.incr("shared", 60)
        seen_threads.append(threading.active_count())

    workers = [threading.Thread(target=hammer) for _ in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert store.get("shared") == 16 * 2000
    # nothing but the 16 workers (and this thread) ever ran: the store starts no timer threads
    assert max(seen_threads) <= threads_before + 16
    assert threading.active_count() == threads_before


def test_fixed_window_strategy_limits(store, clock):
    limit = parse("3/minute")
    strategy = FixedWindowRateLimiter(store)
    assert [strategy.hit(limit, "10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert strategy.hit(limit, "10.0.0.2") is True
    stats = strategy.get_window_stats(limit, "10.0.0.1")
    assert stats.remaining == 0 and stats.reset_time == clock.now + 60
    clock.now += 60
    assert strategy.hit(limit, "10.0.0.1") is True


def test_other_strategies_are_refused_clearly(store):
    with pytest.raises(NotImplementedError, match="MovingWindow"):
        MovingWindowRateLimiter(store)

