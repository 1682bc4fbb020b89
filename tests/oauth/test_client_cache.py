"""The authorization endpoint's per-worker copy of clients (oauth/clients.ClientCache)."""
from __future__ import annotations

import pytest
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import Client
from siwa_web.models.base import now_utc
from siwa_web.oauth import clients
from support.config import recorded_statements
from support.web import sign_in
from support.webapps import answer
from support.webapps import authorize_params
from support.webapps import pkce
from support.webapps import redeem
from support.webapps import register


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_reads(statements: list[str]) -> list[str]:
    return [s for s in statements if "FROM clients" in s]


def _disable(client_id: str) -> None:
    db.session.execute(update(Client).where(Client.id == client_id).values(disabled_at=now_utc()))
    db.session.commit()


def test_a_fresh_copy_answers_without_a_query_and_a_stale_one_is_read_again(app):
    webapp = register(app)
    clock = Clock()
    cache = clients.ClientCache(5, clock=clock)
    with app.app_context(), recorded_statements(app) as statements:
        first = cache.get(db.session, webapp.client_id)
        again = cache.get(db.session, webapp.client_id)
        assert first is again and first.id == webapp.client_id
        assert len(client_reads(statements)) == 1
        _disable(webapp.client_id)
        clock.now += 4.9
        assert cache.get(db.session, webapp.client_id) is first  # within the documented bound
        clock.now += 0.2
        assert cache.get(db.session, webapp.client_id) is None  # disabled: read again, refused
        assert len(client_reads(statements)) == 2
        assert cache.get(db.session, webapp.client_id) is None
        assert len(client_reads(statements)) == 3  # a refused id is never kept


@pytest.mark.parametrize("client_id", ["cli_unknown", "x" * 65, "bad\nid", None, ""])
def test_unknown_and_absurd_ids_are_not_kept(app, client_id):
    cache = clients.ClientCache(5)
    with app.app_context():
        assert cache.get(db.session, client_id) is None
    assert cache._entries == {}


def test_the_cache_is_bounded(app):
    apps = [register(app, name=f"App {n}") for n in range(5)]
    cache = clients.ClientCache(60)
    cache.MAX_ENTRIES = 3
    with app.app_context():
        for webapp in apps * 2:
            assert cache.get(db.session, webapp.client_id).id == webapp.client_id
            assert len(cache._entries) <= cache.MAX_ENTRIES


def test_zero_seconds_reads_every_time(app):
    webapp = register(app)
    cache = clients.ClientCache(0)
    with app.app_context(), recorded_statements(app) as statements:
        cache.get(db.session, webapp.client_id)
        cache.get(db.session, webapp.client_id)
    assert len(client_reads(statements)) == 2 and cache._entries == {}


def test_forget_drops_this_processs_copy(app):
    webapp = register(app)
    cache = clients.ClientCache(60)
    with app.app_context():
        assert cache.get(db.session, webapp.client_id) is not None
        _disable(webapp.client_id)
        cache.forget(webapp.client_id)
        assert cache.get(db.session, webapp.client_id) is None


@pytest.fixture
def app_config(app_config):
    app_config["CLIENT_CACHE_SECONDS"] = 60  # long enough that a disabled client is still kept
    return app_config


def test_a_code_issued_from_a_stale_copy_is_not_redeemable_once_the_client_is_disabled(
        app, client, fake_apple):
    """The cache only delays refusals at the authorization endpoint: redeeming reads the client."""
    sign_in(client, fake_apple)
    webapp = register(app)
    verifier, challenge = pkce()
    params = authorize_params(webapp, challenge)
    assert answer(client.get("/oauth/authorize", query_string=params))["code"]  # now cached
    with app.app_context():
        _disable(webapp.client_id)
    back = answer(client.get("/oauth/authorize", query_string=params))  # from the copy
    response = redeem(client, webapp, back["code"], verifier)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
