"""Refresh grant: catalogue RT-01 … RT-12 (docs/security.md) and decisions D2/D3.

Elapsed time is simulated by moving stored timestamps into the past.
"""
from __future__ import annotations

import jwt as pyjwt
import pytest

from siwa_web.infra.crypto import token_hash
from siwa_web.infra.extensions import db
from siwa_web.models import RefreshToken
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.models.base import now_utc
from support.apple import SERVICES_ID
from support.config import ISSUER
from support.tokens import API_SCOPE
from support.tokens import assert_oauth_error
from support.tokens import audit_events
from support.tokens import bearer
from support.tokens import decode
from support.tokens import exchange
from support.tokens import post_token
from support.tokens import refresh_params
from support.tokens import rows_without_audit
from support.tokens import shift
from support.tokens import snapshot

API = ISSUER + "/api"
TABLES = ("token_families", "refresh_tokens", "users")


def state(app):
    return {t: snapshot(app, t) for t in TABLES}


def refresh(client, native, token, **extra):
    return post_token(client, refresh_params(native, token, **extra))


def rotate(client, native, token, **extra):
    response = refresh(client, native, token, **extra)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refused(app, client, native, token, status, error, **extra):
    """Refresh, assert the error and that no row changed (NC)."""
    before = state(app)
    body = assert_oauth_error(refresh(client, native, token, **extra), status, error)
    assert state(app) == before
    return body


def family_of(app, token):
    with app.app_context():
        row = db.session.execute(
            db.select(RefreshToken).where(RefreshToken.token_hash == token_hash(token))
        ).scalar_one()
        family = row.family
        return {"id": family.id, "revoked_at": family.revoked_at, "reason": family.revoked_reason,
                "ip": family.ip, "ua": family.user_agent, "last_used_at": family.last_used_at,
                "row": {"id": row.id, "parent_id": row.parent_id, "used_at": row.used_at,
                        "scope": row.scope}}


def test_rt01_baseline_rotation(app, client, native_client, native_session):
    rt0 = native_session["refresh_token"]
    before = rows_without_audit(app)
    body = post_token(client, refresh_params(native_client, rt0),
                      headers={"User-Agent": "ExampleApp/2.0 iOS/18"},
                      environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert body.status_code == 200
    assert body.headers["Cache-Control"] == "no-store" and "Set-Cookie" not in body.headers
    body = body.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "id_token",
                         "refresh_token"}
    rt1 = body["refresh_token"]
    assert rt1 != rt0
    after = rows_without_audit(app)
    assert after["refresh_tokens"] == before["refresh_tokens"] + 1
    assert after["token_families"] == before["token_families"]
    old, new = family_of(app, rt0), family_of(app, rt1)
    assert old["row"]["used_at"] is not None and new["row"]["used_at"] is None
    assert new["row"]["parent_id"] == old["row"]["id"] and new["id"] == old["id"]
    assert new["ip"] == "198.51.100.7" and new["ua"] == "ExampleApp/2.0 iOS/18"
    first_at = pyjwt.decode(native_session["access_token"], options={"verify_signature": False})
    at = decode(client, body["access_token"], audience=API, issuer=ISSUER)
    assert at["jti"] != first_at["jti"]
    assert at["sid"] == first_at["sid"] and at["sub"] == first_at["sub"]
    assert at["auth_time"] == first_at["auth_time"]
    idt = decode(client, body["id_token"], audience=native_client.client_id, issuer=ISSUER)
    assert idt["sub"] == at["sub"] and "nonce" not in idt
    [event] = audit_events(app, "refresh")
    assert event["outcome"] == "success" and event["client_id"] == native_client.client_id


def test_rotation_chain_and_json_body(app, client, native_client, native_session):
    token = native_session["refresh_token"]
    for _ in range(3):
        response = post_token(client, refresh_params(native_client, token), as_json=True)
        assert response.status_code == 200
        token = response.get_json()["refresh_token"]
    assert rows_without_audit(app)["refresh_tokens"] == 4
    api = client.get("/api/me", headers=bearer(response.get_json()["access_token"]))
    assert api.status_code == 200


@pytest.mark.parametrize("token", ["A" * 43, "", "x", "z" * 5000])
def test_rt02_unknown(app, client, native_client, native_session, token):
    if token == "":
        refused(app, client, native_client, token, 400, "invalid_request")
    else:
        refused(app, client, native_client, token, 400, "invalid_grant")


@pytest.mark.parametrize("which", ["absolute", "idle"])
def test_rt03_lifetimes(app, client, native_client, native_session, which):
    if which == "absolute":
        shift(app, "token_families", "expires_at", -app.config["REFRESH_TOKEN_ABSOLUTE_TTL"])
    else:
        shift(app, "refresh_tokens", "idle_expires_at", -app.config["REFRESH_TOKEN_IDLE_TTL"])
    refused(app, client, native_client, native_session["refresh_token"], 400, "invalid_grant")


def test_rt03_idle_expiry_slides_but_never_beyond_absolute(app, client, native_client,
                                                           native_session):
    rt1 = rotate(client, native_client, native_session["refresh_token"])["refresh_token"]
    with app.app_context():
        row = db.session.execute(db.select(RefreshToken).where(
            RefreshToken.token_hash == token_hash(rt1))).scalar_one()
        assert row.idle_expires_at <= row.family.expires_at
        assert row.idle_expires_at > now_utc()


def test_rt04_cross_client(app, client, native_client, other_client, native_session):
    refused(app, client, other_client, native_session["refresh_token"], 400, "invalid_grant")
    assert family_of(app, native_session["refresh_token"])["revoked_at"] is None
    rotate(client, native_client, native_session["refresh_token"])  # still valid for its owner


@pytest.mark.parametrize("client_id", [None, "cli_unknown"])
def test_unknown_client_on_refresh(app, client, native_client, native_session, client_id):
    data = refresh_params(native_client, native_session["refresh_token"], client_id=client_id)
    before = state(app)
    assert_oauth_error(post_token(client, {k: v for k, v in data.items() if v}), 401,
                       "invalid_client")
    assert state(app) == before


def test_web_client_may_not_refresh(app, client, native_client, native_session):
    """The web sign-in's Services ID may not use the token endpoint (as TX-11 for the exchange)."""
    data = refresh_params(native_client, native_session["refresh_token"], client_id=SERVICES_ID)
    before = state(app)
    assert_oauth_error(post_token(client, data), 400, "unauthorized_client")
    assert state(app) == before
    rotate(client, native_client, native_session["refresh_token"])  # untouched for its owner


def test_rt05_replay_of_parent_after_grace(app, client, native_client, native_session):
    rt0 = native_session["refresh_token"]
    body = rotate(client, native_client, rt0)
    shift(app, "refresh_tokens", "used_at", -(app.config["REFRESH_TOKEN_GRACE_SECONDS"] + 1))
    before = rows_without_audit(app)
    assert_oauth_error(refresh(client, native_client, rt0), 400, "invalid_grant")
    assert rows_without_audit(app) == before
    family = family_of(app, rt0)
    assert family["revoked_at"] is not None and family["reason"] == "reuse_detected"
    # the whole family is dead: the newest token and its access token too
    assert_oauth_error(refresh(client, native_client, body["refresh_token"]), 400, "invalid_grant")
    api = client.get("/api/me", headers=bearer(body["access_token"]))
    assert api.status_code == 401
    [event] = audit_events(app, "refresh_token_reuse_detected")
    assert event["client_id"] == native_client.client_id and event["user_id"]
    assert event["details"]["family_id"] == family["id"]


def test_rt06_grandparent_inside_grace(app, client, native_client, native_session):
    rt0 = native_session["refresh_token"]
    rt1 = rotate(client, native_client, rt0)["refresh_token"]
    rt2 = rotate(client, native_client, rt1)["refresh_token"]
    assert_oauth_error(refresh(client, native_client, rt0), 400, "invalid_grant")
    assert family_of(app, rt0)["revoked_at"] is not None
    assert_oauth_error(refresh(client, native_client, rt2), 400, "invalid_grant")
    assert len(audit_events(app, "refresh_token_reuse_detected")) == 1


def test_rt07_lost_response_retry_gets_the_same_successor(app, client, native_client,
                                                          native_session):
    rt0 = native_session["refresh_token"]
    first = rotate(client, native_client, rt0)
    before = rows_without_audit(app)
    again = rotate(client, native_client, rt0)
    assert again["refresh_token"] == first["refresh_token"]
    assert again["access_token"] != first["access_token"]
    assert rows_without_audit(app) == before
    assert family_of(app, rt0)["revoked_at"] is None
    rotate(client, native_client, first["refresh_token"])  # the successor still works
    assert [e["reason"] for e in audit_events(app, "refresh")] == [None, "grace_retry", None]


def test_rt07_retry_after_the_child_was_used_is_reuse(app, client, native_client, native_session):
    rt0 = native_session["refresh_token"]
    rt1 = rotate(client, native_client, rt0)["refresh_token"]
    rotate(client, native_client, rt1)
    # rt0 is now a grandparent: its retry is reuse even inside the window
    assert_oauth_error(refresh(client, native_client, rt0), 400, "invalid_grant")
    assert family_of(app, rt0)["revoked_at"] is not None


def test_rt07_successor_copy_is_wiped(app, client, native_client, native_session):
    rt0 = native_session["refresh_token"]
    rt1 = rotate(client, native_client, rt0)["refresh_token"]
    rt2 = rotate(client, native_client, rt1)["refresh_token"]
    with app.app_context():
        rows = {r.token_hash: r.successor_encrypted for r in
                db.session.execute(db.select(RefreshToken)).scalars()}
    assert rows[token_hash(rt0)] is None  # grandparent: wiped when rt1 was used
    assert rows[token_hash(rt1)] is not None  # parent of the live token: kept for a retry
    assert rows[token_hash(rt2)] is None
    assert rt2 not in str(rows)  # never stored in plaintext


@pytest.fixture
def no_grace(app_config):
    app_config["REFRESH_TOKEN_GRACE_SECONDS"] = 0


def test_grace_zero_is_pinned(no_grace, app, client, native_client, fake_apple):
    """With G=0 a second use is always reuse: the family is revoked (strict)."""
    body = exchange(client, fake_apple, native_client).get_json()
    rotate(client, native_client, body["refresh_token"])
    assert_oauth_error(refresh(client, native_client, body["refresh_token"]), 400, "invalid_grant")
    assert family_of(app, body["refresh_token"])["reason"] == "reuse_detected"


@pytest.mark.parametrize("scope", ["openid admin", "openid " + API_SCOPE, "offline_access email x"])
def test_rt08_scope_escalation(app, client, native_client, native_session, scope):
    refused(app, client, native_client, native_session["refresh_token"], 400, "invalid_scope",
            scope=scope)


def test_rt08_scope_narrowing(app, client, native_client, native_session):
    body = rotate(client, native_client, native_session["refresh_token"], scope="openid email")
    assert body["scope"] == "openid email"
    at = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert at["scope"] == "openid email"
    idt = pyjwt.decode(body["id_token"], options={"verify_signature": False})
    assert "email" in idt and "name" not in idt
    # the refresh token keeps the original grant (RFC 6749 §6): widening back is allowed
    assert family_of(app, body["refresh_token"])["row"]["scope"] == \
        "openid profile email offline_access"
    again = rotate(client, native_client, body["refresh_token"], scope="openid profile")
    assert again["scope"] == "openid profile"


@pytest.mark.parametrize("what", ["family_revoked", "user_disabled", "user_deleted"])
def test_rt09_upstream_revocation(app, client, native_client, native_session, what):
    from siwa_web.oauth.refresh import revoke_user_families

    sub = pyjwt.decode(native_session["access_token"], options={"verify_signature": False})["sub"]
    with app.app_context():
        if what == "family_revoked":
            assert revoke_user_families(db.session, sub, "consent_revoked") == 1
        elif what == "user_disabled":
            db.session.get(User, sub).disabled_at = now_utc()
        else:
            db.session.delete(db.session.get(User, sub))
        db.session.commit()
    refused(app, client, native_client, native_session["refresh_token"], 400, "invalid_grant")


def test_rt10_wrong_token_kinds(app, client, native_client, native_session, fake_apple):
    rt = native_session["refresh_token"]
    [apple_refresh] = list(fake_apple._refresh)  # the Apple refresh token we stored
    for token in (native_session["access_token"], native_session["id_token"], apple_refresh,
                  rt + " ", " " + rt, rt.swapcase(), rt[:-1], rt + "A"):
        refused(app, client, native_client, token, 400, "invalid_grant")
    rotate(client, native_client, rt)  # none of that touched the real one


def test_rt11_missing_parameter(app, client, native_client, native_session):
    data = refresh_params(native_client, "x")
    del data["refresh_token"]
    before = state(app)
    assert_oauth_error(post_token(client, data), 400, "invalid_request")
    assert state(app) == before


def test_rt11_duplicate_refresh_token(app, client, native_client, native_session):
    rt = native_session["refresh_token"]
    data = refresh_params(native_client, rt)
    data["refresh_token"] = [rt, rt]
    before = state(app)
    assert_oauth_error(post_token(client, data), 400, "invalid_request")
    assert state(app) == before


def test_rt12_refresh_token_as_bearer(client, native_session):
    response = client.get("/api/me", headers=bearer(native_session["refresh_token"]))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_failures_are_audited(app, client, native_client, native_session):
    refresh(client, native_client, "A" * 43)
    [event] = audit_events(app, "refresh")
    assert event["outcome"] == "failure" and event["reason"] == "refresh_token_unknown"
    assert event["client_id"] == native_client.client_id
    assert "A" * 43 not in str(event)


def test_no_offline_access_family_has_no_refresh(app, client, native_client, fake_apple):
    body = exchange(client, fake_apple, native_client, scope="openid").get_json()
    assert "refresh_token" not in body
    with app.app_context():
        family = db.session.execute(db.select(TokenFamily)).scalar_one()
        lifetime = (family.expires_at - family.created_at).total_seconds()
        assert lifetime == app.config["ACCESS_TOKEN_TTL"]


def test_disabled_client_cannot_refresh(app, client, native_client, native_session):
    from siwa_web.models import Client

    with app.app_context():
        db.session.get(Client, native_client.client_id).disabled_at = now_utc()
        db.session.commit()
    refused(app, client, native_client, native_session["refresh_token"], 401, "invalid_client")
