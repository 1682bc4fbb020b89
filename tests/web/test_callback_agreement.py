"""The browser callback's answer agrees with the stored rows at every point of failure.

A fault at each database statement of POST /auth/apple/callback in turn, and at its sign-in
COMMIT with and without the server having applied it: either the sign-in was answered (303)
and its session is stored, or 503 was answered and no user, identity, session or success audit
row was added (tests/tokens/test_commit_agreement.py does the same for the token endpoint).
"""
from __future__ import annotations

import pytest

from support.faults import MAX_STATEMENTS
from support.faults import assert_agrees
from support.faults import stored
from support.web import CALLBACK
from support.web import callback_form
from support.web import start_login


def test_callback_agrees_with_the_database_whichever_statement_fails(app, client, fake_apple,
                                                                     db_faults):
    statuses = []
    for nth in range(1, MAX_STATEMENTS):
        form = callback_form(fake_apple, start_login(client))  # not under test
        before = stored(app)
        db_faults.fail_statement(".", nth=nth)
        fired_before = db_faults.fired
        response = client.post(CALLBACK, data=form)
        fired = db_faults.fired - fired_before
        db_faults.disarm()
        after = stored(app)
        grew = {"web_sessions", "successes"} | (
            {"users", "identities"} if before["users"] == 0 else set())
        assert_agrees(response, before, after, 303, grew)
        statuses.append(response.status_code)
        if not fired:
            break
    assert statuses[-1] == 303 and set(statuses[:-1]) == {503}


@pytest.mark.parametrize("applied", [False, True], ids=["commit_lost", "answer_lost"])
def test_callback_when_commit_fails(app, client, fake_apple, db_faults, applied):
    start = start_login(client)
    form = callback_form(fake_apple, start)
    before = stored(app)
    db_faults.fail_commit(applied=applied, nth=2)  # the 1st consumes the login transaction
    response = client.post(CALLBACK, data=form)
    assert db_faults.fired == 1
    assert_agrees(response, before, stored(app), 303,
                  {"web_sessions", "successes", "users", "identities"})
    assert response.status_code == (303 if applied else 503)
