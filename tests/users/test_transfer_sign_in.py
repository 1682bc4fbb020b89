"""A sign-in during a team transfer's window, through the real flows with Apple on requests-mock.

The identity token's `transfer_sub` only ever finds the identity we exported it for; it never
takes an identity away from a sub that has one, and a claim we cannot use is ignored.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import User
from support.dashboard import Browser
from support.tokens import audit_events
from support.tokens import exchange_params
from support.tokens import post_token
from support.web import sign_in

OLD_SUB = "000111.0123456789abcdef0123456789abcdef.0001"
NEW_SUB = "000222.fedcba9876543210fedcba9876543210.0002"
OTHER_SUB = "000333.00000000000000000000000000000000.0003"
TRANSFER_SUB = "417607.e68ba878e1be1652bbf12acbcd492d8a.1827"


def rows(app) -> dict[str, tuple]:
    with app.app_context():
        return {i.id: (i.user_id, i.sub, i.previous_sub, i.transferred_at is not None)
                for i in db.session.execute(select(AppleIdentity)).scalars()}


def users(app) -> int:
    with app.app_context():
        return len(db.session.execute(select(User.id)).all())


@pytest.fixture
def exported(app, client, fake_apple):
    """Maria signed up under the old team; `export` stored her transfer_sub."""
    assert sign_in(client, fake_apple, sub=OLD_SUB).status_code == 303
    with app.app_context():
        db.session.execute(update(AppleIdentity).values(
            transfer_sub=TRANSFER_SUB, transfer_team="TEAMBBBB02"))
        db.session.commit()
        identity = db.session.execute(select(AppleIdentity)).scalar_one()
        return identity.id, identity.user_id


@pytest.mark.parametrize("flow", ["web", "native"])
def test_the_transfer_sub_finds_the_exported_identity(app, fake_apple, exported, flow,
                                                      native_client):
    identity_id, user_id = exported
    fresh = app.test_client()
    if flow == "web":
        assert sign_in(fresh, fake_apple, sub=NEW_SUB, transfer_sub=TRANSFER_SUB
                       ).status_code == 303
    else:
        code = fake_apple.authorize(client_id=native_client.bundle_id, sub=NEW_SUB,
                                    transfer_sub=TRANSFER_SUB).code
        resp = post_token(fresh, exchange_params(native_client, code))
        assert resp.status_code == 200, resp.get_json()
    assert rows(app) == {identity_id: (user_id, NEW_SUB, OLD_SUB, True)}
    assert users(app) == 1
    [event] = audit_events(app, "apple_identity_transferred")
    assert event["user_id"] == user_id and event["reason"] == "sign_in"


def test_a_sub_with_an_identity_of_its_own_is_never_moved(app, fake_apple, exported):
    assert sign_in(app.test_client(), fake_apple, sub=OTHER_SUB).status_code == 303
    before = rows(app)
    assert sign_in(app.test_client(), fake_apple, sub=OTHER_SUB,
                   transfer_sub=TRANSFER_SUB).status_code == 303
    assert rows(app) == before  # the other user signed in; Maria's identity is untouched
    assert audit_events(app, "apple_identity_transferred") == []


@pytest.mark.parametrize("claim", ["417607.unknown.0000", 417607, ["x"], "", "x" * 300, "a b"])
def test_a_transfer_sub_we_did_not_export_finds_nobody(app, fake_apple, exported, claim):
    identity_id, user_id = exported
    assert sign_in(app.test_client(), fake_apple, sub=NEW_SUB, transfer_sub=claim
                   ).status_code == 303
    now = rows(app)
    assert now[identity_id] == (user_id, OLD_SUB, None, False)
    assert users(app) == 2  # a new account, as for any unknown Apple ID
    assert audit_events(app, "apple_identity_transferred") == []


def test_a_fresh_sign_in_to_delete_the_account_works_during_the_window(app, fake_apple):
    """Re-authentication (before deleting the account) accepts the moved Apple ID as the same."""
    browser = Browser(app, fake_apple).sign_in(OLD_SUB)
    with app.app_context():
        db.session.execute(update(AppleIdentity).values(transfer_sub=TRANSFER_SUB))
        db.session.commit()
    resp = browser.reauth(NEW_SUB, transfer_sub=TRANSFER_SUB)
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard/delete"
    [(_, sub, previous, moved)] = rows(app).values()
    assert (sub, previous, moved) == (NEW_SUB, OLD_SUB, True)
    assert users(app) == 1
