"""Fixed-window limits of the token endpoint, counted in the limiter's store."""
from __future__ import annotations

import logging

import pytest

from siwa_web.infra import ratelimit_store
from siwa_web.infra.ratelimit_store import LocalMemoryStorage
from siwa_web.tokens import ratelimits
from siwa_web.tokens.ratelimits import RateLimited
from support.tokens import assert_oauth_error


@pytest.fixture
def store():
    return LocalMemoryStorage("siwa-memory://")


class BrokenStore(LocalMemoryStorage):
    """A store whose server is down (what Redis does when unreachable)."""

    def incr(self, key, expiry, amount=1):
        raise ConnectionError("store unreachable at redis://:secret@cache:6379")


def test_allows_up_to_the_limit_then_refuses(store):
    for _ in range(3):
        ratelimits.hit(store, "3/minute", "s", "k", swallow_errors=False)
    with pytest.raises(RateLimited) as info:
        ratelimits.hit(store, "3/minute", "s", "k", swallow_errors=False)
    assert 1 <= info.value.retry_after <= 60
    ratelimits.hit(store, "3/minute", "s", "other-key", swallow_errors=False)
    ratelimits.hit(store, "3/minute", "other-scope", "k", swallow_errors=False)


def test_every_window_of_a_compound_limit_counts(store):
    limit = "100/minute; 2/second"
    ratelimits.hit(store, limit, "s", "k", swallow_errors=False)
    ratelimits.hit(store, limit, "s", "k", swallow_errors=False)
    with pytest.raises(RateLimited) as info:
        ratelimits.hit(store, limit, "s", "k", swallow_errors=False)
    assert info.value.retry_after == 1  # the spent window is the one-second one


def test_window_end_gives_retry_after(store, monkeypatch):
    now = {"t": 1000.0}
    monkeypatch.setattr(ratelimit_store.time, "time", lambda: now["t"])
    monkeypatch.setattr(ratelimits.time, "time", lambda: now["t"])
    ratelimits.hit(store, "1/minute", "s", "k", swallow_errors=False)
    now["t"] = 1030.2
    with pytest.raises(RateLimited) as info:
        ratelimits.hit(store, "1/minute", "s", "k", swallow_errors=False)
    assert info.value.retry_after == 30  # 29.8 s rounded up


def test_a_failing_store_is_logged_without_its_url_and_lets_the_request_through(caplog):
    with caplog.at_level(logging.WARNING, logger="siwa_web.tokens.ratelimits"):
        ratelimits.hit(BrokenStore(), "1/minute", "s", "k", swallow_errors=True)
    assert "ConnectionError" in caplog.text
    assert "secret" not in caplog.text


def test_a_failing_store_raises_when_errors_are_not_swallowed():
    with pytest.raises(ConnectionError):
        ratelimits.hit(BrokenStore(), "1/minute", "s", "k", swallow_errors=False)


# --- through the endpoints --------------------------------------------------------------------


@pytest.fixture
def tight(app_config):
    app_config.update(RATELIMIT_TOKEN_PER_IP="3/minute", RATELIMIT_TOKEN_PER_CLIENT="100/minute")


def test_revocation_shares_the_per_ip_budget_with_the_token_endpoint(tight, app, client):
    environ = {"REMOTE_ADDR": "10.9.0.1"}
    # no client_id: refused as invalid_client, but counted against the address all the same
    assert client.post("/oauth/revoke", data={"token": "x"}, environ_base=environ).status_code \
        == 401
    for _ in range(2):
        assert client.post("/oauth/token", data={"grant_type": "password"},
                           environ_base=environ).status_code == 400
    refused = client.post("/oauth/revoke", data={"token": "x"}, environ_base=environ)
    body = assert_oauth_error(refused, 429, "too_many_requests")
    assert "error_description" in body and int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["Cache-Control"] == "no-store"


def test_disabled_limits_count_nothing(app_config):
    from siwa_web import create_app

    app = create_app(dict(app_config, RATELIMIT_ENABLED=False, RATELIMIT_TOKEN_PER_IP="1/minute"))
    client = app.test_client()
    statuses = {client.post("/oauth/token", data={"grant_type": "password"}).status_code
                for _ in range(5)}
    assert statuses == {400}


def test_store_outage_does_not_take_sign_in_down(app, client, monkeypatch, caplog):
    from siwa_web.infra.extensions import limiter

    def down(*_args, **_kwargs):
        raise ConnectionError("unreachable")

    monkeypatch.setattr(limiter.storage, "incr", down)
    with caplog.at_level(logging.WARNING, logger="siwa_web.tokens.ratelimits"):
        response = client.post("/oauth/token", data={"grant_type": "password"})
    assert_oauth_error(response, 400, "unsupported_grant_type")
    assert "rate-limit store failed" in caplog.text
