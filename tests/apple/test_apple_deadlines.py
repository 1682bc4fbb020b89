"""Every call to Apple has a total deadline, and a sign-in a budget for all its Apple calls.

Found in production: an Apple token endpoint that sent one byte every 1.7 s held a token
exchange for 40.4 s (requests' timeouts are per socket read), and a slow token call followed by
a key refetch took 15.0 s. Apple here is a real HTTP server on 127.0.0.1 that trickles its
answers (tests/support/servers.py), so the sockets, timeouts and watchdog are all real.
"""
from __future__ import annotations

import base64
import json

import pytest

from siwa_web import create_app
from siwa_web.apple import AppleClient
from siwa_web.apple import AppleSettings
from siwa_web.apple.errors import AppleUnavailable
from siwa_web.infra.extensions import db
from siwa_web.oauth import clients
from support.apple import BUNDLE_ID
from support.apple import KEY_ID
from support.apple import TEAM_ID
from support.config import count_rows
from support.servers import Answer
from support.servers import elapsed
from support.tokens import NativeClient
from support.tokens import exchange_params
from support.tokens import post_token
from support.web import CALLBACK
from support.web import start_login

SLACK = 0.8  # thread scheduling, a shared two-core machine
TRICKLE = Answer(interval=0.3)  # never 0.3 s without a byte: no read timeout ever trips


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# An identity token of the right shape whose key must be fetched (the fetch never ends in time).
ID_TOKEN = f"{b64({'alg': 'RS256', 'kid': 'SLOWKID'})}.{b64({'sub': 'x'})}.c2ln"
TOKEN_ANSWER = json.dumps({"access_token": "a", "id_token": ID_TOKEN}).encode()


def client_for(url: str, pem: str, **limits: float) -> AppleClient:
    return AppleClient(AppleSettings(url, TEAM_ID, KEY_ID, pem, **limits))


# --- one call ----------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["token", "keys"])
def test_a_trickling_answer_is_cut_at_the_call_deadline(trickling_server, apple_private_key_pem,
                                                        call):
    apple = trickling_server(default=TRICKLE)
    client = client_for(apple.url, apple_private_key_pem, read_timeout=8.0, call_deadline=1.0)
    do = {"token": lambda: client.exchange_code(client_id=BUNDLE_ID, code="c1"),
          "keys": client._fetch_jwks}[call]
    with pytest.raises(AppleUnavailable):
        do()
    assert len(apple.paths) == 1  # sent once, never retried (Apple codes are single use)


def test_the_call_deadline_bounds_the_time(trickling_server, apple_private_key_pem):
    apple = trickling_server(default=TRICKLE)
    client = client_for(apple.url, apple_private_key_pem, read_timeout=8.0, call_deadline=1.0)

    def call():
        with pytest.raises(AppleUnavailable):
            client.exchange_code(client_id=BUNDLE_ID, code="c1")

    _, seconds = elapsed(call)
    assert 0.9 < seconds < 1.0 + SLACK


def test_a_fast_answer_is_untouched_by_the_watchdog(trickling_server, apple_private_key_pem):
    apple = trickling_server(auth_token=Answer(body=TOKEN_ANSWER))
    client = client_for(apple.url, apple_private_key_pem, call_deadline=1.0)
    for _ in range(3):  # on fresh and pooled connections alike
        assert client.exchange_code(client_id=BUNDLE_ID, code="c1").id_token == ID_TOKEN


def test_no_call_starts_once_the_budget_is_spent(trickling_server, apple_private_key_pem):
    apple = trickling_server(auth_token=Answer(body=TOKEN_ANSWER, delay=0.7))
    client = client_for(apple.url, apple_private_key_pem, call_deadline=5.0, budget=0.5)

    def sign_in():
        with client.budget(), pytest.raises(AppleUnavailable):
            client.exchange_code(client_id=BUNDLE_ID, code="c1")
            client.exchange_code(client_id=BUNDLE_ID, code="c2")

    _, seconds = elapsed(sign_in)
    assert seconds < 0.5 + SLACK
    assert len(apple.paths) == 1


# --- a whole native exchange -----------------------------------------------------------------


@pytest.fixture
def slow_apple_config(app_config):
    """The app's Apple is whatever URL a test gives it; a 1 s call deadline, a 2 s budget."""
    return {**app_config, "APPLE_CALL_DEADLINE": 1.0, "APPLE_SIGN_IN_BUDGET": 2.0,
            "APPLE_READ_TIMEOUT": 8.0}


@pytest.fixture
def native_app():
    """Build the app with Apple at `url` and one native client; its pool is closed after."""
    made = []

    def build(config: dict, url: str):
        made.append(_native_app(config, url))
        return made[-1]

    yield build
    for app, _ in made:
        with app.app_context():
            db.engine.dispose()


def _native_app(slow_apple_config, url: str):
    app = create_app({**slow_apple_config, "APPLE_BASE_URL": url})
    with app.app_context():
        client = clients.create(db.session, name="Slow iOS", bundle_id=BUNDLE_ID)
        db.session.commit()
        client_id = client.id
    return app, client_id


def assert_503_in(response, seconds: float, limit: float) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert seconds < limit + SLACK, seconds


@pytest.mark.parametrize("apple_answers", [
    {"default": TRICKLE},  # the token call trickles: cut at the call deadline
    # the token answer comes late, then the key fetch trickles: cut when the budget is spent
    {"default": TRICKLE, "auth_token": Answer(body=TOKEN_ANSWER, delay=0.9)},
], ids=["token_trickles", "slow_token_then_keys_trickle"])
def test_a_native_exchange_ends_within_the_budget(slow_apple_config, trickling_server,
                                                  native_app, apple_answers):
    apple = trickling_server(**apple_answers)
    app, client_id = native_app(slow_apple_config, apple.url)
    before = count_rows(app)
    data = exchange_params(NativeClient(client_id, BUNDLE_ID), "c1.0.abc")
    response, seconds = elapsed(post_token, app.test_client(), data)
    assert_503_in(response, seconds, 2.0)
    after = count_rows(app)
    before.pop("audit_events"), after.pop("audit_events")
    assert after == before


# --- a browser callback ------------------------------------------------------------------------


def test_a_browser_callback_ends_within_the_budget(slow_apple_config, trickling_server,
                                                   native_app):
    """The front-channel token's key fetch trickles: the HTML 503 page, within the budget."""
    apple = trickling_server(default=TRICKLE)
    app, _ = native_app(slow_apple_config, apple.url)
    client = app.test_client()
    start = start_login(client)
    form = {"code": "c1.0.abc", "id_token": ID_TOKEN, "state": start.state}
    response, seconds = elapsed(client.post, CALLBACK, data=form)
    assert response.status_code == 503
    assert "Apple is not answering" in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0
    assert seconds < 2.0 + SLACK
