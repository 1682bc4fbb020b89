"""The answer and the stored rows agree at every point of failure: a 503 means nothing was stored.

Found in production: in a crash-style PostgreSQL stop one token exchange answered 503 although
its user, family, refresh token and success audit row had committed. Here a fault is injected
at each database statement of the native exchange, the refresh grant and the browser callback in
turn (tests/support/faults.py), and at COMMIT itself, with and without the server having applied
it; after each, either success was answered and the session is stored, or 503 was answered and
nothing is. The browser callback's cases are in tests/web/test_callback_agreement.py.
"""
from __future__ import annotations

import logging

import pytest

from support.apple import BUNDLE_ID
from support.faults import MAX_STATEMENTS
from support.faults import assert_agrees
from support.faults import stored
from support.tokens import exchange_params
from support.tokens import post_token
from support.tokens import refresh_params

# The exchange commits twice: its validation reads (before Apple is called), then the sign-in.
SIGN_IN_COMMIT = 2


@pytest.fixture(autouse=True)
def first_signing_key(app):
    """The first key is created by the first grant, with a COMMIT of its own; create it now."""
    from siwa_web.tokens.extension import server

    with app.app_context():
        server().keys.signer()


@pytest.fixture
def app_config(app_config):
    """Signing keys re-read on every use: their reload is one more place a fault can hit."""
    return {**app_config, "SIGNING_KEY_CACHE_SECONDS": 0}


def run_with_each_fault(db_faults, attempt) -> list[int]:
    """`attempt(arm)` arms the fault just before its request: the nth statement fails, for
    every n until a request runs through."""
    statuses = []
    for nth in range(1, MAX_STATEMENTS):
        fired = db_faults.fired
        status = attempt(lambda: db_faults.fail_statement(".", nth=nth))  # noqa: B023
        fired = db_faults.fired - fired
        db_faults.disarm()
        statuses.append(status)
        if not fired:  # it finished before its nth statement: every statement was tried
            return statuses
    pytest.fail("more statements than MAX_STATEMENTS")


# --- native exchange -------------------------------------------------------------------------


def test_exchange_agrees_with_the_database_whichever_statement_fails(app, client, fake_apple,
                                                                     native_client, db_faults):
    def attempt(arm) -> int:
        code = fake_apple.authorize(client_id=BUNDLE_ID).code
        before = stored(app)
        arm()
        response = post_token(client, exchange_params(native_client, code))
        db_faults.disarm()
        assert_agrees(response, before, stored(app), 200,
                      {"users", "families", "refresh_tokens", "identities", "successes"}
                      if before["users"] == 0 else {"families", "refresh_tokens", "successes"})
        return response.status_code

    statuses = run_with_each_fault(db_faults, attempt)
    assert statuses[-1] == 200 and set(statuses[:-1]) == {503}
    assert len(statuses) > 5


@pytest.mark.parametrize("applied", [False, True], ids=["commit_lost", "answer_lost"])
def test_exchange_when_commit_fails(app, client, fake_apple, native_client, db_faults, applied):
    """A COMMIT that fails is asked about: applied means success, not applied means 503."""
    code = fake_apple.authorize(client_id=BUNDLE_ID).code
    before = stored(app)
    db_faults.fail_commit(applied=applied, nth=SIGN_IN_COMMIT)
    response = post_token(client, exchange_params(native_client, code))
    assert db_faults.fired == 1
    after = stored(app)
    assert_agrees(response, before, after, 200,
                  {"users", "families", "refresh_tokens", "identities", "successes"})
    assert response.status_code == (200 if applied else 503)


def test_exchange_when_commit_fails_and_the_database_cannot_be_asked(
        app, client, fake_apple, native_client, db_faults, caplog):
    """The one case the answer cannot know: 503, and an ERROR line naming the family."""
    code = fake_apple.authorize(client_id=BUNDLE_ID).code
    db_faults.fail_commit(applied=True, nth=SIGN_IN_COMMIT)
    db_faults.fail_statement(r"^SELECT token_families\.id\s+FROM token_families")
    with caplog.at_level(logging.ERROR):
        response = post_token(client, exchange_params(native_client, code))
    assert db_faults.fired == 2
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    unknown = [r for r in caplog.records if "cannot be asked" in r.getMessage()]
    assert unknown and "family" in unknown[0].getMessage()


# --- refresh grant ---------------------------------------------------------------------------


def test_refresh_agrees_with_the_database_whichever_statement_fails(app, client, native_session,
                                                                    native_client, db_faults):
    token = native_session["refresh_token"]

    def attempt(arm) -> int:
        before = stored(app)
        arm()
        response = post_token(client, refresh_params(native_client, token))
        db_faults.disarm()
        assert_agrees(response, before, stored(app), 200, {"refresh_tokens", "successes"})
        return response.status_code

    statuses = run_with_each_fault(db_faults, attempt)
    assert statuses[-1] == 200 and set(statuses[:-1]) == {503}


@pytest.mark.parametrize("applied", [False, True], ids=["commit_lost", "answer_lost"])
def test_refresh_when_commit_fails(app, client, native_session, native_client, db_faults,
                                   applied):
    before = stored(app)
    db_faults.fail_commit(applied=applied)
    response = post_token(client, refresh_params(native_client, native_session["refresh_token"]))
    assert db_faults.fired == 1
    assert_agrees(response, before, stored(app), 200, {"refresh_tokens", "successes"})
    assert response.status_code == (200 if applied else 503)
    if applied:  # the new refresh token is the one stored: it works
        again = post_token(client, refresh_params(native_client,
                                                  response.get_json()["refresh_token"]))
        assert again.status_code == 200
