"""Apple server-to-server notifications (NTF-01 … NTF-15 in docs/security.md)."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AppleToken
from siwa_web.models import NotificationEvent
from siwa_web.models import User
from siwa_web.models import WebSession
from support.apple import REMOVE
from support.config import count_rows
from support.notifications import notification as support_notification
from support.web import sign_in

URL = "/apple/notifications"
SUB = "000111.feedfacefeedfacefeedfacefeedface.0111"


def notification(fake_apple, type_="consent-revoked", sub=SUB, *, events=None, **claims):
    return support_notification(fake_apple, type_, sub, events=events, **claims)


@pytest.fixture
def member(client, app, fake_apple):
    """A user signed in on the web with the Apple ID SUB."""
    assert sign_in(client, fake_apple, sub=SUB).status_code == 303
    return client


def post(client, token):
    return client.post(URL, json={"payload": token})


def live_sessions(app):
    with app.app_context():
        return db.session.execute(
            select(WebSession).where(WebSession.revoked_at.is_(None))).scalars().all()


def test_consent_revoked_ends_sessions_and_marks_apple_tokens_dead(member, app, fake_apple):
    assert post(member, notification(fake_apple)).status_code == 200
    assert live_sessions(app) == []
    with app.app_context():
        [token] = db.session.execute(select(AppleToken)).scalars().all()
        assert token.refresh_token_encrypted is None  # no copy of a dead token is kept
        assert token.check_state == "revoked" and token.invalidated_at is not None
        assert len(db.session.execute(select(AppleIdentity)).scalars().all()) == 1
        [event] = db.session.execute(select(NotificationEvent)).scalars().all()
        assert (event.aud, event.client_id, event.outcome) == (
            fake_apple.SERVICES_ID, None, "applied")
    resp = member.get("/dashboard")
    assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"]


@pytest.mark.parametrize("kind", ["account-delete", "account-deleted"])
def test_account_deletion_disables_a_user_with_no_other_login(member, app, fake_apple, kind):
    assert post(member, notification(fake_apple, kind)).status_code == 200
    with app.app_context():
        [user] = db.session.execute(select(User)).scalars().all()
        assert user.disabled_at is not None and user.identities == []
    assert live_sessions(app) == []


def test_email_disabled_only_flags_deliverability(member, app, fake_apple):
    assert post(member, notification(fake_apple, "email-disabled")).status_code == 200
    with app.app_context():
        [user] = db.session.execute(select(User)).scalars().all()
        assert user.email_deliverable is False
    assert len(live_sessions(app)) == 1
    post(member, notification(fake_apple, "email-enabled"))
    with app.app_context():
        assert db.session.execute(select(User)).scalar_one().email_deliverable is True


def test_duplicate_delivery_acts_once(member, app, fake_apple):
    token = notification(fake_apple, "email-disabled")
    assert post(member, token).status_code == 200
    assert post(member, token).status_code == 200
    with app.app_context():
        assert len(db.session.execute(select(NotificationEvent)).scalars().all()) == 1


@pytest.mark.parametrize("type_, sub, aud, outcome", [
    ("foo-bar", SUB, None, "unknown_type"),
    ("x" * 200, SUB, None, "unknown_type"),
    ("consent-revoked", "999.unknown.9", None, "unknown_sub"),
    ("consent-revoked", SUB, "com.other.team.app", "unknown_aud"),
    ("account-deleted", SUB, "com.other.team.app", "unknown_aud"),
    ("email-disabled", SUB, "com.other.team.app", "unknown_aud"),
])
def test_unknown_type_sub_or_app_is_acknowledged_and_only_recorded(
        member, app, fake_apple, type_, sub, aud, outcome):
    before = count_rows(app)
    claims = {"aud": aud} if aud else {}
    token = notification(fake_apple, type_, sub, **claims)
    assert post(member, token).status_code == 200
    assert post(member, token).status_code == 200  # Apple's repeat: still one row
    after = count_rows(app)
    assert after.pop("notification_events") == before.pop("notification_events") + 1
    after.pop("audit_events"), before.pop("audit_events")
    assert after == before
    assert len(live_sessions(app)) == 1
    with app.app_context():
        [event] = db.session.execute(select(NotificationEvent)).scalars().all()
        assert (event.outcome, event.aud, event.client_id) == (
            outcome, aud or fake_apple.SERVICES_ID, None)
        user = db.session.execute(select(User)).scalar_one()
        assert user.email_deliverable is True and user.disabled_at is None
        assert db.session.execute(select(AppleToken)).scalar_one().check_state is None


def hostile_tokens(fake_apple):
    return {
        "foreign signature": notification(fake_apple, key=fake_apple.foreign_key),
        "alg none": fake_apple.mint_none_token(**_claims(fake_apple)),
        "hs256 with apple public key": fake_apple.mint_hs256_token(**_claims(fake_apple)),
        "issuer with slash": notification(fake_apple, iss="https://appleid.apple.com/"),
        "issuer lookalike": notification(fake_apple, iss="https://appleid.apple.com.evil.example"),
        "array audience": notification(fake_apple, aud=[fake_apple.SERVICES_ID]),
        "empty audience": notification(fake_apple, aud=""),
        "expired": notification(fake_apple, exp=int(time.time()) - 3600),
        "issued in the future": notification(fake_apple, iat=int(time.time()) + 3600),
        "no jti": notification(fake_apple, jti=REMOVE),
        "no events": notification(fake_apple, events=REMOVE),
        "events not json": notification(fake_apple, events="{oops"),
        "events without sub": notification(fake_apple, events=json.dumps({"type": "x"})),
        "events without type": notification(fake_apple, events=json.dumps({"sub": SUB})),
        "jwe": "a.b.c.d.e",
    }


def _claims(fake_apple):
    now = int(time.time())
    return {"aud": fake_apple.SERVICES_ID, "jti": "j1", "iat": now, "exp": now + 60,
            "events": json.dumps({"type": "consent-revoked", "sub": SUB})}


HOSTILE = ["foreign signature", "alg none", "hs256 with apple public key", "issuer with slash",
           "issuer lookalike", "array audience", "empty audience", "expired",
           "issued in the future", "no jti", "no events", "events not json",
           "events without sub", "events without type", "jwe"]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_notifications_change_nothing(member, app, fake_apple, case):
    token = hostile_tokens(fake_apple)[case]
    before = count_rows(app)
    resp = post(member, token)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"
    assert count_rows(app) == before
    assert len(live_sessions(app)) == 1


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"payload": 5}', b'{"payload": ""}',
                                  json.dumps({"payload": "x" * 20000}).encode()])
def test_transport_garbage(client, body):
    resp = client.post(URL, data=body, content_type="application/json")
    assert resp.status_code == 400


def test_oversized_body_and_wrong_method(client):
    assert client.post(URL, data=b"x" * 100_000, content_type="application/json").status_code == 413
    assert client.get(URL).status_code == 405


def test_native_bundle_id_is_an_accepted_audience(member, app, fake_apple, runner):
    with app.app_context():
        from siwa_web.models import Client

        db.session.add(Client(id="cli_test", name="iOS", bundle_id=fake_apple.BUNDLE_ID))
        db.session.commit()
    token = notification(fake_apple, "email-disabled", aud=fake_apple.BUNDLE_ID)
    assert post(member, token).status_code == 200
    with app.app_context():
        [event] = db.session.execute(select(NotificationEvent)).scalars().all()
        assert (event.aud, event.client_id, event.outcome) == (
            fake_apple.BUNDLE_ID, "cli_test", "applied")
        assert db.session.execute(select(User)).scalar_one().email_deliverable is False


def test_a_notification_never_signs_anyone_in(app, fake_apple, client):
    sign_in(app.test_client(), fake_apple, sub=SUB)
    resp = post(client, notification(fake_apple, "email-enabled"))
    assert resp.status_code == 200 and not resp.headers.getlist("Set-Cookie")
    assert client.get("/dashboard").status_code == 302
