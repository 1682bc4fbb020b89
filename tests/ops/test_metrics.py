"""GET /metrics: who may scrape it, and that each counter moves when its event happens.

Scrapes are parsed with prometheus_client's own parser, as Prometheus reads them. Metrics live
per process (not per app), so every assertion is about how much a series grew during the test.
Apple is mocked at the HTTP boundary only (requests-mock) or is the built-in emulator.
"""
from __future__ import annotations

import re
import secrets
from datetime import timedelta

import pytest
import requests

from siwa_web import create_app
from siwa_web.config import ConfigError
from siwa_web.infra import metrics
from siwa_web.infra.extensions import db
from siwa_web.models import AppleRevocation
from siwa_web.models import BackchannelLogout
from siwa_web.models.base import now_utc
from siwa_web.web import failures
from support.emulator import form_fields
from support.metrics import METRICS_TOKEN
from support.metrics import moved
from support.metrics import parse
from support.metrics import scrape
from support.metrics import value
from support.tokens import bearer
from support.tokens import exchange
from support.tokens import post_token
from support.tokens import refresh_params
from support.webapps import authorize_params
from support.webapps import pkce
from support.webapps import register

GRANTS = "siwa_token_grants_total"
BEARER = "siwa_bearer_checks_total"
SIGN_INS = "siwa_web_sign_ins_total"
AUTHORIZE = "siwa_authorize_requests_total"
APPLE = "siwa_apple_requests_total"
LIMITED = "siwa_rate_limited_total"
REQUESTS = "siwa_http_requests_total"
REFRESH = "refresh_token"


@pytest.fixture
def app_config(app_config):
    return app_config | {"METRICS_TOKEN": METRICS_TOKEN, "METRICS_OUTBOX_CACHE_SECONDS": 0}


def _unref(response) -> str:
    return re.sub(r"\b[0-9A-F]{8,64}\b", "REF", response.get_data(as_text=True))  # the request id


def own_ip() -> dict:
    """A client address of this test's own, so no other test's rate-limit counts meet it."""
    return {"environ_base": {"REMOTE_ADDR": f"10.{secrets.randbelow(250)}."
                                            f"{secrets.randbelow(250)}.{secrets.randbelow(250)}"}}


# --- who may scrape --------------------------------------------------------------------------


def test_off_without_a_token_the_endpoint_does_not_exist_and_nothing_is_counted(app_config):
    app = create_app({k: v for k, v in app_config.items() if k != "METRICS_TOKEN"})
    client = app.test_client()
    unknown = client.get("/no-such-page")
    for headers in ({}, {"Authorization": f"Bearer {METRICS_TOKEN}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 404
        # indistinguishable from any 404 (but for the page's error reference)
        assert _unref(response) == _unref(unknown)
    assert metrics.recorder(app) is metrics.OFF
    assert app.extensions["siwa.apple"].observer.__name__ == "_ignore"
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Bearer wrong-token-0123456789abcdef",
    f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x", f"Bearer {METRICS_TOKEN[:-1]}",
    f"Token {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN.upper()}",
])
def test_a_missing_or_wrong_token_gets_401_with_a_challenge_and_no_metrics(
        client, nothing_stored, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="siwa-metrics"')
    assert ('error="invalid_token"' in challenge) == bool(authorization)
    text = response.get_data(as_text=True)
    assert "siwa_" not in text and METRICS_TOKEN not in text
    assert response.headers["Cache-Control"] == "no-store"


def test_the_right_token_gets_the_text_format_uncached_and_uncookied(client):
    response = client.get("/metrics", headers={"Authorization": f"bearer  {METRICS_TOKEN} "})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    samples = parse(response.get_data(as_text=True))
    assert value(samples, "siwa_outbox_stats_up") == 1


def test_scrapes_are_never_rate_limited(app_config, declarations):
    app = create_app(app_config | {"RATELIMIT_APPLICATION": "2/minute"})
    client = app.test_client()
    statuses = {client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                           **own_ip()).status_code for _ in range(5)}
    assert statuses == {200}
    with app.app_context():
        db.engine.dispose()


def test_scrapes_are_not_in_the_access_log(client, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="werkzeug"):
        scrape(client)
    quiet = [f for f in logging.getLogger("werkzeug").filters if hasattr(f, "paths")]
    assert quiet and "/metrics" in quiet[0].paths


@pytest.mark.parametrize("token", ["short", "x" * 15, "has space in it 123",
                                   "tab\there-0123456789"])
def test_a_guessable_or_malformed_token_stops_start_up_without_echoing_it(app_config, token):
    with pytest.raises(ConfigError) as caught:
        create_app(app_config | {"METRICS_TOKEN": token})
    assert caught.value.key == "METRICS_TOKEN" and token not in str(caught.value)


# --- the token endpoint and the Bearer APIs ---------------------------------------------------


def test_grants_count_successes_and_errors_by_grant_type(client, fake_apple, native_client):
    before = scrape(client)
    first = exchange(client, fake_apple, native_client)
    assert first.status_code == 200
    refreshed = post_token(client, refresh_params(native_client, first.get_json()["refresh_token"]))
    assert refreshed.status_code == 200
    refused = post_token(client, refresh_params(native_client, "not-a-refresh-token"))
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    after = scrape(client)
    exchange_type = "urn:ietf:params:oauth:grant-type:token-exchange"
    assert moved(before, after, GRANTS, grant_type=exchange_type, outcome="success") == 1
    assert moved(before, after, GRANTS, grant_type=REFRESH, outcome="success") == 1
    assert moved(before, after, GRANTS, grant_type=REFRESH, outcome="invalid_grant") == 1
    assert moved(before, after, REQUESTS, route="/oauth/token", method="POST", status="400") == 1


def test_bearer_checks_count_each_outcome(client, fake_apple, native_client):
    access = exchange(client, fake_apple, native_client).get_json()["access_token"]
    before = scrape(client)
    assert client.get("/api/me", headers=bearer(access)).status_code == 200
    assert client.get("/api/me", headers=bearer(access[:-4] + "AAAA")).status_code == 401
    assert client.get("/api/me").status_code == 401
    after = scrape(client)
    assert moved(before, after, BEARER, outcome="success") == 1
    assert moved(before, after, BEARER, outcome="invalid_token") == 1
    assert moved(before, after, BEARER, outcome="missing_token") == 1
    assert moved(before, after, REQUESTS, route="/api/me", method="GET", status="200") == 1
    assert moved(before, after, REQUESTS, route="/api/me", method="GET", status="401") == 2


# --- rate limits ---------------------------------------------------------------------------------


def test_rate_limit_refusals_count_by_limit_name(app_config):
    app = create_app(app_config | {"RATELIMIT_TOKEN_PER_IP": "1/minute",
                                   "RATELIMIT_LOGIN_PER_IP": "1/minute",
                                   "RATELIMIT_AUTHORIZE_PER_IP": "1/minute"})
    client = app.test_client()
    ip = own_ip()
    before = scrape(client)
    for _ in range(2):
        token = client.post("/oauth/token", data={"grant_type": REFRESH, "refresh_token": "x"},
                            **ip)
        login = client.get("/auth/apple/login", **ip)
        authorize = client.get("/oauth/authorize", query_string={"client_id": "nope"}, **ip)
    assert (token.status_code, login.status_code, authorize.status_code) == (429, 429, 429)
    after = scrape(client)
    for limit in ("token_per_ip", "login_per_ip", "authorize_per_ip"):
        assert moved(before, after, LIMITED, limit=limit) == 1, limit
    assert moved(before, after, GRANTS, grant_type=REFRESH, outcome="too_many_requests") == 1
    assert moved(before, after, AUTHORIZE, outcome="rate_limited") == 1
    with app.app_context():
        db.engine.dispose()


# --- Apple ---------------------------------------------------------------------------------------


def test_apple_calls_count_by_endpoint_and_outcome_with_their_latency(
        client, fake_apple, native_client):
    before = scrape(client)
    assert exchange(client, fake_apple, native_client).status_code == 200
    fake_apple.outage("token")
    assert exchange(client, fake_apple, native_client).status_code == 503
    fake_apple.restore("token")
    fake_apple.next_token_response(exc=requests.exceptions.ReadTimeout)
    assert exchange(client, fake_apple, native_client).status_code == 503
    fake_apple.next_token_response(status=400, json={"error": "invalid_grant"}, delay=0.3)
    assert exchange(client, fake_apple, native_client).status_code == 400
    after = scrape(client)
    hist = "siwa_apple_request_duration_seconds"
    for outcome in ("success", "server_error", "timeout", "rejected"):
        assert moved(before, after, APPLE, endpoint="token", outcome=outcome) == 1, outcome
    assert moved(before, after, APPLE, endpoint="keys", outcome="success") <= 1
    assert moved(before, after, hist + "_count", endpoint="token") == 4
    assert moved(before, after, hist + "_sum", endpoint="token") >= 0.3
    # The late refusal is in the 0.5 s bucket and not in the 0.25 s one.
    slow = (moved(before, after, hist + "_bucket", endpoint="token", le="0.5")
            - moved(before, after, hist + "_bucket", endpoint="token", le="0.25"))
    assert slow >= 1


# --- web sign-in through the emulator ------------------------------------------------------------


@pytest.fixture
def emulated(app_config):
    """siwa-web in development with the built-in Apple emulator at /__apple (no Apple mock)."""
    cfg = {k: v for k, v in app_config.items()
           if k not in ("APPLE_TEAM_ID", "APPLE_KEY_ID", "APPLE_SERVICES_ID", "APPLE_BASE_URL")}
    app = create_app(cfg | {"APPLE_EMULATOR": True, "ISSUER": "http://localhost:5000"})
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_web_sign_in_through_the_emulator_counts_the_sign_in_and_its_apple_calls(emulated):
    client = emulated.test_client()
    before = scrape(client)
    client.post("/__apple/__emulator/next-login", json={"email": "m@example.com",
                                                        "first_name": "M", "last_name": "R"})
    to_apple = client.get("/auth/apple/login", **own_ip())
    assert to_apple.status_code == 303
    page = client.get(to_apple.headers["Location"].removeprefix("http://localhost:5000"))
    back = client.post("/auth/apple/callback", data=form_fields(page.get_data(as_text=True)))
    assert back.status_code == 303 and back.headers["Location"] == "/dashboard"
    replay = client.post("/auth/apple/callback", data=form_fields(page.get_data(as_text=True)))
    assert replay.status_code == 400  # the state was used: a failure, counted by its row
    after = scrape(client)
    assert moved(before, after, SIGN_INS, outcome="success") == 1
    assert moved(before, after, SIGN_INS, outcome="invalid_state") == 1
    assert moved(before, after, APPLE, endpoint="token", outcome="success") == 1
    assert moved(before, after, REQUESTS, route="/auth/apple/callback", method="POST",
                 status="303") == 1


def test_every_callback_failure_has_its_own_fixed_outcome():
    outcomes = [row.outcome for row in failures.FAILURES]
    assert all(outcomes) and len(set(outcomes)) == len(outcomes)
    assert all(o.isascii() and o.replace("_", "").isalnum() for o in outcomes)


# --- the authorization endpoint -------------------------------------------------------------


def test_authorization_outcomes(app, client):
    webapp = register(app)
    _verifier, challenge = pkce()
    before = scrape(client)
    waits = client.get("/oauth/authorize", query_string=authorize_params(webapp, challenge))
    assert waits.status_code == 303  # no session: it waits for a sign-in
    refused = client.get("/oauth/authorize",
                         query_string=authorize_params(webapp, challenge, prompt="none"))
    assert refused.status_code == 303 and "error=login_required" in refused.headers["Location"]
    unsafe = client.get("/oauth/authorize", query_string={"client_id": "no-such-app"})
    assert unsafe.status_code == 400
    gone = client.get("/oauth/authorize/resume", query_string={"request": "no-such-request"})
    assert gone.status_code == 400
    after = scrape(client)
    for outcome in ("login", "login_required", "unsafe_request", "expired"):
        assert moved(before, after, AUTHORIZE, outcome=outcome) == 1, outcome


# --- outboxes -------------------------------------------------------------------------------


def test_outbox_gauges_show_unsent_rows_and_the_oldest_ones_age(app, client):
    assert value(scrape(client), "siwa_outbox_pending", outbox="apple_revocation") == 0
    webapp = register(app)
    now = now_utc()
    with app.app_context():
        for age, sent in ((600, False), (60, False), (9000, True)):
            db.session.add(AppleRevocation(client_id="com.example.app", token_encrypted="x",
                                           created_at=now - timedelta(seconds=age),
                                           sent_at=now if sent else None))
        db.session.add(BackchannelLogout(client_id=webapp.client_id, sid="s",
                                         created_at=now - timedelta(seconds=30)))
        db.session.commit()
    samples = scrape(client)
    assert value(samples, "siwa_outbox_pending", outbox="apple_revocation") == 2
    assert value(samples, "siwa_outbox_pending", outbox="backchannel_logout") == 1
    age = value(samples, "siwa_outbox_oldest_pending_age_seconds", outbox="apple_revocation")
    assert 600 <= age < 700  # the oldest unsent row, not the older sent one
    assert 30 <= value(samples, "siwa_outbox_oldest_pending_age_seconds",
                       outbox="backchannel_logout") < 130
    assert value(samples, "siwa_outbox_stats_up") == 1


def test_outbox_gauges_are_read_at_most_once_per_cache_period(app_config):
    app = create_app(app_config | {"METRICS_OUTBOX_CACHE_SECONDS": 3600})
    client = app.test_client()
    queries = []
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *a: queries.append(statement))
    for _ in range(3):
        scrape(client)
    outbox_reads = [q for q in queries if "sent_at IS NULL" in q]
    assert len(outbox_reads) == 2  # one per outbox, for the first scrape only
    assert len(queries) == len(outbox_reads) + sum(q.startswith("SET") for q in queries)
    with app.app_context():
        db.engine.dispose()


def test_a_failing_outbox_read_still_answers_the_scrape(app, client, caplog):
    from sqlalchemy import text

    def rename(source: str, target: str) -> None:
        with app.app_context():
            db.session.execute(text(f"ALTER TABLE {source} RENAME TO {target}"))
            db.session.commit()

    # moved away, not dropped: on PostgreSQL the suite's database is shared by later tests
    rename("backchannel_logouts", "backchannel_logouts_away")
    try:
        response = client.get("/metrics",
                              headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    finally:
        rename("backchannel_logouts_away", "backchannel_logouts")
    assert response.status_code == 200
    samples = parse(response.get_data(as_text=True))
    assert value(samples, "siwa_outbox_stats_up") == 0
    assert ("siwa_outbox_pending", (("outbox", "apple_revocation"),)) not in samples
    assert any(r.getMessage().startswith("outbox gauges could not be read") for r in caplog.records)


# --- label cardinality ---------------------------------------------------------------------------


def _hostile_requests(client, marker: str) -> None:
    """Requests whose paths, methods, headers and parameters are attacker-chosen."""
    ip = own_ip()
    client.get(f"/{marker}/../etc/passwd", **ip)
    client.get(f"/api/{marker}", **ip)
    client.open("/oauth/token", method=f"X{marker[:8].upper()}", **ip)
    client.post("/oauth/token", data={"grant_type": marker, "client_id": marker}, **ip)
    client.post("/oauth/token", json={"grant_type": marker, "client_id": marker}, **ip)
    client.post("/oauth/token", data={"grant_type": REFRESH, "refresh_token": marker,
                                      "client_id": marker}, **ip)
    client.get("/api/me", headers={"Authorization": f"{marker} {marker}"}, **ip)
    client.get("/api/me", headers={"Authorization": f"Bearer {marker}"}, **ip)
    client.get("/oauth/authorize", query_string={"client_id": marker, "redirect_uri": marker},
               **ip)
    client.post("/auth/apple/callback", data={"state": marker, "code": marker}, **ip)
    client.get("/metrics", headers={"Authorization": f"Bearer {marker}"}, **ip)


def test_unknown_paths_and_hostile_values_create_no_new_label_values(client, fake_apple):
    _hostile_requests(client, "first" + secrets.token_hex(8))
    first = scrape(client)
    marker = "second" + secrets.token_hex(8)
    _hostile_requests(client, marker)
    second_text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    second = parse(second_text.get_data(as_text=True))
    assert set(second) == set(first)  # the same series, only their values moved
    assert marker not in second_text.get_data(as_text=True)
    assert moved(first, second, REQUESTS, route="unmatched", method="GET", status="404") == 2
    assert moved(first, second, REQUESTS, route="unmatched", method="other", status="405") == 1
    assert moved(first, second, GRANTS, grant_type="other",
                 outcome="unsupported_grant_type") == 2
