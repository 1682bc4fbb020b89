"""Native token exchange: every catalogue case TX-01 … TX-27 (docs/security.md), parametrised.

Each refusal asserts the status, the error code, that nothing was stored (row counts of every
table but the audit trail) and, where the catalogue says so, that Apple was never called.
"""
from __future__ import annotations

import json
import logging

import jwt as pyjwt
import pytest
import requests
from sqlalchemy import event

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AppleToken
from siwa_web.models import RefreshToken
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.users import accounts
from support.apple import BUNDLE_ID
from support.apple import REMOVE
from support.apple import SERVICES_ID
from support.apple import sha256_hex
from support.config import ISSUER
from support.tokens import ACCESS_TOKEN_TYPE
from support.tokens import API_SCOPE
from support.tokens import APPLE_CODE_TYPE
from support.tokens import OTHER_BUNDLE_ID
from support.tokens import PARTNER_API
from support.tokens import TOKEN_EXCHANGE
from support.tokens import assert_oauth_error
from support.tokens import audit_events
from support.tokens import bearer
from support.tokens import decode
from support.tokens import exchange
from support.tokens import exchange_params
from support.tokens import post_token
from support.tokens import rows_without_audit
from support.tokens import snapshot

API = ISSUER + "/api"
GOOD_PROFILE = '{"name":{"firstName":"Ada","lastName":"Lovelace"}}'


@pytest.fixture
def code(fake_apple, native_client) -> str:
    """A fresh native Apple code (aud = the bundle id)."""
    return fake_apple.authorize(client_id=native_client.bundle_id).code


def refused(app, client, fake_apple, data, status, error, *, as_json=False, apple_called=False):
    """POST, assert the error, that nothing was stored, and whether Apple was called."""
    before = rows_without_audit(app)
    response = post_token(client, data, as_json=as_json)
    body = assert_oauth_error(response, status, error)
    assert rows_without_audit(app) == before
    assert bool(fake_apple.token_requests) is apple_called
    return body


# --- TX-01 baseline, TX-25 token shapes ---------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_tx01_baseline(app, client, fake_apple, native_client, code, as_json):
    response = post_token(client, exchange_params(native_client, code), as_json=as_json)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in",
                         "id_token", "refresh_token", "scope"}
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == app.config["ACCESS_TOKEN_TTL"]
    assert body["scope"] == "openid profile email offline_access"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert "Set-Cookie" not in response.headers
    [sent] = fake_apple.token_requests
    assert sent["client_id"] == BUNDLE_ID
    assert sent["grant_type"] == "authorization_code"
    assert sent["code"] == code
    assert "redirect_uri" not in sent
    [event] = audit_events(app, "native_exchange")
    assert event["outcome"] == "success" and event["client_id"] == native_client.client_id


def test_tx25_token_shapes(app, client, fake_apple, native_client):
    body = exchange(client, fake_apple, native_client, user_profile=GOOD_PROFILE,
                    nonce="raw-nonce-1", sub="001111.aaaa.0001").get_json()
    at_header = pyjwt.get_unverified_header(body["access_token"])
    assert at_header["typ"] == "at+jwt" and at_header["alg"] == "ES256" and at_header["kid"]
    at = decode(client, body["access_token"], audience=API, issuer=ISSUER,
                require=["iss", "sub", "aud", "exp", "iat", "jti", "client_id"])
    assert at["client_id"] == native_client.client_id
    assert at["scope"] == "openid profile email offline_access"
    assert at["exp"] - at["iat"] == app.config["ACCESS_TOKEN_TTL"]
    assert at["sub"] != "001111.aaaa.0001"
    assert isinstance(at["auth_time"], int) and at["sid"]
    with app.app_context():
        user = db.session.get(User, at["sub"])
        assert user is not None and user.first_name == "Ada"
        family = db.session.get(TokenFamily, at["sid"])
        assert family.user_id == user.id and family.client_id == native_client.client_id

    id_header = pyjwt.get_unverified_header(body["id_token"])
    assert id_header["typ"] == "JWT" and id_header["typ"] != "at+jwt"
    id_token = decode(client, body["id_token"], audience=native_client.client_id, issuer=ISSUER)
    assert id_token["sub"] == at["sub"]
    assert id_token["nonce"] == "raw-nonce-1"
    assert id_token["name"] == "Ada Lovelace"
    assert id_token["given_name"] == "Ada" and id_token["family_name"] == "Lovelace"
    assert id_token["email"].endswith("@privaterelay.appleid.com")
    assert id_token["email_verified"] is True
    assert "auth_time" in id_token

    assert body["refresh_token"].count(".") == 0  # opaque, not a JWT
    assert len(body["refresh_token"]) >= 43
    with pytest.raises(pyjwt.DecodeError):
        pyjwt.get_unverified_header(body["refresh_token"])


def test_id_token_claims_follow_scopes(app, client, fake_apple, native_client):
    body = exchange(client, fake_apple, native_client, scope="openid",
                    user_profile=GOOD_PROFILE).get_json()
    id_token = decode(client, body["id_token"], audience=native_client.client_id, issuer=ISSUER)
    assert not {"email", "email_verified", "name", "nonce"} & set(id_token)


def test_without_openid_there_is_no_id_token(client, fake_apple, native_client):
    body = exchange(client, fake_apple, native_client, scope="offline_access").get_json()
    assert "id_token" not in body and "refresh_token" in body


def test_default_scope_is_openid(client, fake_apple, native_client):
    body = exchange(client, fake_apple, native_client, scope=None).get_json()
    assert body["scope"] == "openid"
    assert "id_token" in body and "refresh_token" not in body


def test_apple_refresh_token_is_stored_encrypted_per_bundle_id(app, client, fake_apple,
                                                               native_client):
    exchange(client, fake_apple, native_client)
    with app.app_context():
        [row] = db.session.execute(db.select(AppleToken)).scalars().all()
        assert row.client_id == BUNDLE_ID
        assert row.refresh_token_encrypted and not row.refresh_token_encrypted.startswith("r")
    assert not any(r[1] == BUNDLE_ID and str(r).count(".0.mock.") for r in
                   snapshot(app, "apple_tokens"))


def test_second_sign_in_reuses_the_user(app, client, fake_apple, native_client):
    first = exchange(client, fake_apple, native_client, sub="000001.same.0001").get_json()
    second = exchange(client, fake_apple, native_client, sub="000001.same.0001").get_json()
    def sub(body):
        return pyjwt.decode(body["access_token"], options={"verify_signature": False})["sub"]

    assert sub(first) == sub(second)
    counts = rows_without_audit(app)
    assert counts["users"] == 1 and counts["apple_identities"] == 1
    assert counts["token_families"] == 2


def test_returning_sign_in_keeps_apples_newest_refresh_token(app, client, fake_apple,
                                                             native_client):
    def stored():
        with app.app_context():
            identity = db.session.execute(db.select(AppleIdentity)).scalar_one()
            [row] = identity.apple_tokens
            return identity.last_used_at, accounts.cipher().decrypt(row.refresh_token_encrypted)

    exchange(client, fake_apple, native_client, sub="000002.back.0001")
    first_used, first_token = stored()
    exchange(client, fake_apple, native_client, sub="000002.back.0001")
    second_used, second_token = stored()
    assert [first_token, second_token] == fake_apple.issued_refresh_tokens
    assert second_used > first_used


def test_returning_sign_in_with_a_new_email_updates_user_and_identity(app, client, fake_apple,
                                                                     native_client):
    """Apple says the user stopped hiding their email: stored at once, and seen by /api/me."""
    sub = "000004.moved.0001"
    first = exchange(client, fake_apple, native_client, sub=sub).get_json()
    assert client.get("/api/me", headers=bearer(first["access_token"])).get_json()["email"] \
        .endswith("@privaterelay.appleid.com")
    code = fake_apple.authorize(client_id=native_client.bundle_id, sub=sub,
                                email="ada@example.com", is_private_email=False).code
    assert post_token(client, exchange_params(native_client, code)).status_code == 200
    with app.app_context():
        identity = db.session.execute(db.select(AppleIdentity)).scalar_one()
        assert (identity.email, identity.is_private_email) == ("ada@example.com", False)
        user = identity.user
        assert (user.email, user.is_private_email) == ("ada@example.com", False)
    # The first session's token reads the user afresh: the cached profile was dropped.
    me = client.get("/api/me", headers=bearer(first["access_token"])).get_json()
    assert me["email"] == "ada@example.com"


@pytest.mark.parametrize("scope", ["openid offline_access", "openid"])
def test_family_lifetimes(app, client, fake_apple, native_client, scope):
    body = exchange(client, fake_apple, native_client, scope=scope).get_json()
    with app.app_context():
        family = db.session.execute(db.select(TokenFamily)).scalar_one()
        tokens = db.session.execute(db.select(RefreshToken)).scalars().all()
        assert family.created_at == family.last_used_at
        assert family.scope == scope and family.audience == API
        assert family.ip == "127.0.0.1" and family.revoked_at is None
        lifetime = (family.expires_at - family.created_at).total_seconds()
        if scope == "openid":  # no refresh token: the session ends with the access token
            assert "refresh_token" not in body and tokens == []
            assert lifetime == app.config["ACCESS_TOKEN_TTL"]
            return
        assert lifetime == app.config["REFRESH_TOKEN_ABSOLUTE_TTL"]
        [token] = tokens
        assert token.family_id == family.id and token.parent_id is None
        assert token.scope == scope and token.used_at is None
        assert token.created_at == family.created_at
        idle = (token.idle_expires_at - token.created_at).total_seconds()
        assert idle == app.config["REFRESH_TOKEN_IDLE_TTL"]
        assert token.token_hash == sha256_hex(body["refresh_token"])


def test_returning_sign_in_statements(app, client, fake_apple, native_client):
    """Each statement is a round trip on PostgreSQL: no lazy loads, no flush before the end."""
    exchange(client, fake_apple, native_client, sub="000003.count.0001")
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def seen(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        response = exchange(client, fake_apple, native_client, sub="000003.count.0001")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert response.status_code == 200
    selects = [s for s in statements if s.startswith("SELECT")]
    assert len(selects) == 2, selects  # the client, then identity + user + Apple tokens at once
    assert "FROM clients" in selects[0] and "JOIN users" in selects[1]
    assert "apple_tokens" in selects[1]
    writes = [s.split(" (")[0].split(" SET")[0] for s in statements if not s.startswith("SELECT")]
    if engine.dialect.name == "postgresql":  # family and first token in one statement
        assert sorted(writes) == sorted([
            "WITH started AS", "INSERT INTO audit_events",
            "UPDATE apple_identities", "UPDATE apple_tokens",
        ])
    else:  # a transaction that takes the write lock first; family and token one by one
        assert sorted(writes) == sorted([
            "BEGIN IMMEDIATE", "INSERT INTO token_families", "INSERT INTO refresh_tokens",
            "INSERT INTO audit_events", "UPDATE apple_identities", "UPDATE apple_tokens",
        ])


# --- TX-02 … TX-09: request shape, all refused before Apple -------------------------------------


def test_tx02_get_is_405(app, client, fake_apple, native_client, code, caplog):
    before = rows_without_audit(app)
    with caplog.at_level(logging.DEBUG):
        response = client.get("/oauth/token", query_string=exchange_params(native_client, code))
    assert response.status_code == 405
    assert rows_without_audit(app) == before
    assert fake_apple.token_requests == []
    assert code not in caplog.text


@pytest.mark.parametrize("how", ["query_only", "multipart", "text_plain", "no_body"])
def test_tx03_body_format(app, client, fake_apple, native_client, code, how):
    params = exchange_params(native_client, code)
    before = rows_without_audit(app)
    if how == "query_only":
        response = client.post("/oauth/token", query_string=params)
    elif how == "multipart":
        response = client.post("/oauth/token", data=params, content_type="multipart/form-data")
    elif how == "text_plain":
        response = client.post("/oauth/token", data="grant_type=x", content_type="text/plain")
    else:
        response = client.post("/oauth/token")
    assert_oauth_error(response, 400, "invalid_request")
    assert rows_without_audit(app) == before
    assert fake_apple.token_requests == []


@pytest.mark.parametrize("body", [
    "not json", "[1, 2]", '"a string"', '{"grant_type": 5}', '{"client_id": ["a", "b"]}',
    '{"grant_type": "x", "grant_type": "y"}', "[" * 5000,
], ids=["garbage", "array", "string", "number_value", "list_value", "duplicate_key", "deep"])
def test_tx03_json_body_garbage(app, client, fake_apple, body):
    before = rows_without_audit(app)
    response = client.post("/oauth/token", data=body, content_type="application/json")
    assert_oauth_error(response, 400, "invalid_request")
    assert rows_without_audit(app) == before


def test_tx04_missing_grant_type(app, client, fake_apple, native_client, code):
    data = exchange_params(native_client, code)
    del data["grant_type"]
    refused(app, client, fake_apple, data, 400, "invalid_request")


@pytest.mark.parametrize("grant_type", [
    "password", "client_credentials", "implicit",
    "urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:device_code",
])
def test_tx05_unsupported_grants(app, client, fake_apple, native_client, code, grant_type):
    data = exchange_params(native_client, code, grant_type=grant_type)
    refused(app, client, fake_apple, data, 400, "unsupported_grant_type")


def test_tx05_a_native_client_may_not_use_the_web_apps_code_grant(
        app, client, fake_apple, native_client, code):
    """authorization_code is for web clients: a native client gets unauthorized_client."""
    data = exchange_params(native_client, code, grant_type="authorization_code")
    refused(app, client, fake_apple, data, 400, "unauthorized_client")


def test_tx05_misspelled_urn_names_the_right_one(app, client, fake_apple, native_client, code):
    data = exchange_params(native_client, code,
                           grant_type="urn:ietf:params:oath:grant-type:token-exchange")
    body = refused(app, client, fake_apple, data, 400, "unsupported_grant_type")
    assert TOKEN_EXCHANGE in body["error_description"]


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_tx06_missing_subject_token(app, client, fake_apple, native_client, as_json):
    data = exchange_params(native_client, "x")
    del data["subject_token"]
    refused(app, client, fake_apple, data, 400, "invalid_request", as_json=as_json)


@pytest.mark.parametrize("token_type", [
    None, "", "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:access_token", "urn:ietf:params:oauth:token-type:jwt",
    APPLE_CODE_TYPE + " ", " " + APPLE_CODE_TYPE, APPLE_CODE_TYPE.upper(),
    "http://auth0.com/oauth/token-type/Apple-Authz-Code",
])
def test_tx07_wrong_subject_token_type(app, client, fake_apple, native_client, code, token_type):
    data = exchange_params(native_client, code, subject_token_type=token_type)
    refused(app, client, fake_apple, data, 400, "invalid_request")


@pytest.mark.parametrize("param", ["subject_token", "client_id", "scope", "grant_type", "nonce"])
def test_tx08_duplicate_parameters(app, client, fake_apple, native_client, code, param):
    data = exchange_params(native_client, code, nonce="n")
    data[param] = [data[param], data[param] + "x"]
    refused(app, client, fake_apple, data, 400, "invalid_request")


def test_tx08_duplicate_identical_values_are_still_refused(app, client, fake_apple,
                                                           native_client, code):
    data = exchange_params(native_client, code)
    data["subject_token"] = [code, code]
    refused(app, client, fake_apple, data, 400, "invalid_request")


def test_tx08_duplicate_json_keys(app, client, fake_apple, native_client, code):
    body = json.dumps(exchange_params(native_client, code))[:-1] + f', "subject_token": "{code}"}}'
    before = rows_without_audit(app)
    response = client.post("/oauth/token", data=body, content_type="application/json")
    assert_oauth_error(response, 400, "invalid_request")
    assert rows_without_audit(app) == before and fake_apple.token_requests == []


@pytest.mark.parametrize("extra", [
    {"actor_token": "abc", "actor_token_type": "urn:ietf:params:oauth:token-type:jwt"},
    {"actor_token_type": "urn:ietf:params:oauth:token-type:jwt"},
    {"actor_token": "abc"},
    {"requested_token_type": "urn:ietf:params:oauth:token-type:id_token"},
])
def test_tx09_actor_tokens_refused(app, client, fake_apple, native_client, code, extra):
    data = exchange_params(native_client, code, **extra)
    refused(app, client, fake_apple, data, 400, "invalid_request")


# --- TX-10 … TX-13: client, audience, scope ------------------------------------------------------


def _disable(app, client_id):
    from siwa_web.models import Client
    from siwa_web.models.base import now_utc

    with app.app_context():
        db.session.get(Client, client_id).disabled_at = now_utc()
        db.session.commit()


@pytest.mark.parametrize("case", ["unknown", "missing", "disabled", "empty", "huge"])
def test_tx10_client_identity(app, client, fake_apple, native_client, code, case):
    data = exchange_params(native_client, code)
    if case == "unknown":
        data["client_id"] = "cli_doesnotexist"
    elif case == "missing":
        del data["client_id"]
    elif case == "empty":
        data["client_id"] = ""
    elif case == "huge":
        data["client_id"] = "c" * 5000
    else:
        _disable(app, native_client.client_id)
    refused(app, client, fake_apple, data, 401, "invalid_client")


def test_tx11_web_client_may_not_use_the_exchange(app, client, fake_apple, native_client, code):
    """The web sign-in's Services ID is a web-only client: 400 unauthorized_client, as TX-11."""
    data = exchange_params(native_client, code, client_id=SERVICES_ID)
    body = refused(app, client, fake_apple, data, 400, "unauthorized_client")
    assert "Services ID" in body["error_description"]
    assert "flask clients create" in body["error_description"]
    [event] = audit_events(app, "native_exchange")
    assert (event["outcome"], event["reason"]) == ("failure", "web_client")
    assert event["client_id"] == SERVICES_ID


@pytest.mark.parametrize("client_id", [SERVICES_ID.upper(), SERVICES_ID + " ", "x" + SERVICES_ID])
def test_tx11_only_the_exact_services_id_is_a_web_client(app, client, fake_apple, native_client,
                                                         code, client_id):
    data = exchange_params(native_client, code, client_id=client_id)
    refused(app, client, fake_apple, data, 401, "invalid_client")


@pytest.mark.parametrize("audience", [
    "https://not-allowed.example", [PARTNER_API, "https://not-allowed.example"],
    [PARTNER_API, API], "CLIENT_ID", PARTNER_API + "/", API.upper(),
], ids=["not_allowed", "two_one_bad", "two_good", "client_id", "trailing_slash", "case"])
def test_tx12_audience(app, client, fake_apple, native_client, code, audience):
    if audience == "CLIENT_ID":
        audience = native_client.client_id
    data = exchange_params(native_client, code, audience=audience)
    refused(app, client, fake_apple, data, 400, "invalid_target")


def test_tx12_resource_alias_and_conflict(app, client, fake_apple, native_client, code):
    data = exchange_params(native_client, code, audience=API, resource=PARTNER_API)
    refused(app, client, fake_apple, data, 400, "invalid_target")


def test_tx12_other_clients_audience_is_refused(app, client, fake_apple, other_client):
    code = fake_apple.authorize(client_id=other_client.bundle_id).code
    data = exchange_params(other_client, code, audience=PARTNER_API)
    refused(app, client, fake_apple, data, 400, "invalid_target")


@pytest.mark.parametrize("audience", [None, API, PARTNER_API])
def test_tx12_allowed_audiences(client, fake_apple, native_client, audience):
    body = exchange(client, fake_apple, native_client, audience=audience).get_json()
    claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == (audience or API)


@pytest.mark.parametrize("scope", [
    "openid admin", "openid " + "x" * 10_000, "unknown", "openid  profile", "openid\tprofile",
    'openid "quoted"', "OPENID", "openid write:things",
], ids=["admin", "10k", "unknown", "double_space", "tab", "quote", "case", "not_granted_api"])
def test_tx13_scope(app, client, fake_apple, native_client, code, scope):
    data = exchange_params(native_client, code, scope=scope)
    refused(app, client, fake_apple, data, 400, "invalid_scope")


def test_tx13_without_offline_access_no_refresh_token(app, client, fake_apple, native_client):
    body = exchange(client, fake_apple, native_client, scope="openid profile").get_json()
    assert "refresh_token" not in body and "id_token" in body
    counts = rows_without_audit(app)
    assert counts["refresh_tokens"] == 0 and counts["token_families"] == 1


def test_tx13_client_api_scope_allowed(client, fake_apple, native_client):
    body = exchange(client, fake_apple, native_client, scope=f"openid {API_SCOPE}").get_json()
    assert body["scope"] == f"openid {API_SCOPE}"


def test_tx13_api_scope_of_another_client_refused(app, client, fake_apple, other_client):
    code = fake_apple.authorize(client_id=other_client.bundle_id).code
    data = exchange_params(other_client, code, scope=f"openid {API_SCOPE}")
    refused(app, client, fake_apple, data, 400, "invalid_scope")


# --- TX-14 … TX-18: what Apple says --------------------------------------------------------------


def test_tx14_used_code(app, client, fake_apple, native_client, code):
    assert post_token(client, exchange_params(native_client, code)).status_code == 200
    before = rows_without_audit(app)
    response = post_token(client, exchange_params(native_client, code))
    body = assert_oauth_error(response, 400, "invalid_grant")
    assert body["error_description"] == "The code has already been used."  # D1: passed on
    assert rows_without_audit(app) == before
    assert len(fake_apple.token_requests) == 2


GENERIC = "The grant is invalid, expired or revoked."


@pytest.mark.parametrize("description, shown", [
    ("The code has expired or has been revoked.", "The code has expired or has been revoked."),
    ('bad "quote"', GENERIC), ("back\\slash", GENERIC), ("caf\u00e9", "caf?"),
    ("x" * 500, "x" * 200), (None, GENERIC),
], ids=["apple_text", "quote", "backslash", "non_ascii", "long", "none"])
def test_tx15_expired_code_and_description_hygiene(app, client, fake_apple, native_client, code,
                                                   description, shown):
    fake_apple.next_token_response(status=400, json={
        "error": "invalid_grant", **({"error_description": description} if description else {})})
    data = exchange_params(native_client, code)
    body = refused(app, client, fake_apple, data, 400, "invalid_grant", apple_called=True)
    assert body["error_description"] == shown


def test_tx16_web_code_at_native_endpoint(app, client, fake_apple, native_client):
    code = fake_apple.authorize(client_id=SERVICES_ID).code
    data = exchange_params(native_client, code)
    refused(app, client, fake_apple, data, 400, "invalid_grant", apple_called=True)
    assert [r["client_id"] for r in fake_apple.token_requests] == [BUNDLE_ID]  # no fallback


@pytest.mark.parametrize("claims", [
    {"aud": SERVICES_ID}, {"aud": OTHER_BUNDLE_ID}, {"aud": [BUNDLE_ID, "other"]},
    {"aud": REMOVE}, {"aud": ""},
    {"iss": "https://appleid.apple.com/"}, {"iss": "http://appleid.apple.com"},
    {"iss": "https://appleid.apple.com.evil.example"}, {"iss": "HTTPS://APPLEID.APPLE.COM"},
    {"iss": REMOVE}, {"exp": 1}, {"sub": REMOVE}, {"iat": REMOVE},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_tx17_wrong_claims_in_apples_answer(app, client, fake_apple, native_client, code, claims):
    id_token = fake_apple.mint_id_token(**{"aud": BUNDLE_ID, **claims})
    fake_apple.next_token_response(json={"access_token": "a", "id_token": id_token,
                                         "token_type": "Bearer", "expires_in": 3600})
    data = exchange_params(native_client, code)
    refused(app, client, fake_apple, data, 400, "invalid_grant", apple_called=True)


@pytest.mark.parametrize("forge", ["foreign", "none", "hs256", "es256"])
def test_tx17_forged_signatures(app, client, fake_apple, native_client, code, forge):
    mint = {
        "foreign": lambda: fake_apple.mint_id_token(aud=BUNDLE_ID, key=fake_apple.foreign_key),
        "none": lambda: fake_apple.mint_none_token(aud=BUNDLE_ID),
        "hs256": lambda: fake_apple.mint_hs256_token(aud=BUNDLE_ID),
        "es256": lambda: fake_apple.mint_es256_token(aud=BUNDLE_ID),
    }[forge]
    fake_apple.next_token_response(json={"access_token": "a", "id_token": mint()})
    data = exchange_params(native_client, code)
    refused(app, client, fake_apple, data, 400, "invalid_grant", apple_called=True)


_MALFORMED_ID_TOKENS = {
    "alg_none_empty_signature": lambda apple: apple.mint_none_token(aud=BUNDLE_ID),
    "alg_none_uppercase": lambda apple: apple.mint_id_token(alg="none", header={"alg": "None"},
                                                            aud=BUNDLE_ID),
    "hs256_public_pem": lambda apple: apple.mint_hs256_token(aud=BUNDLE_ID),
    "hs256_public_jwk": lambda apple: apple.mint_hs256_token("jwk", aud=BUNDLE_ID),
    "missing_kid": lambda apple: apple.mint_id_token(header={"kid": REMOVE}, aud=BUNDLE_ID),
    "empty_kid": lambda apple: apple.mint_id_token(kid="", aud=BUNDLE_ID),
    "garbage_one_segment": lambda apple: "garbage",
    "garbage_two_segments": lambda apple: "abc.def",
    "garbage_empty_segments": lambda apple: "..",
    "garbage_not_base64url": lambda apple: "!!!.$$$.%%%",
    "garbage_header_not_json": lambda apple: "bm90LWpzb24.e30.c2ln",
    "garbage_four_segments": lambda apple: "a.b.c.d",
    "garbage_signature": lambda apple: apple.mint_id_token(aud=BUNDLE_ID).rsplit(".", 1)[0]
    + ".AAAA",
}


@pytest.mark.parametrize("make", list(_MALFORMED_ID_TOKENS.values()),
                         ids=list(_MALFORMED_ID_TOKENS))
def test_tx17_malformed_identity_token_is_invalid_grant(app, client, fake_apple, native_client,
                                                         code, make):
    """A malformed or forged identity token is Apple's bad answer about this code: 400, not 503."""
    fake_apple.next_token_response(json={"access_token": "a", "id_token": make(fake_apple)})
    data = exchange_params(native_client, code)
    refused(app, client, fake_apple, data, 400, "invalid_grant", apple_called=True)


def test_tx17_unknown_kid_after_refetch_is_invalid_grant(app, client, fake_apple, native_client):
    """A kid Apple does not publish, even after one refetch of its keys, is a forgery (400)."""
    assert exchange(client, fake_apple, native_client).status_code == 200  # keys now cached
    calls = fake_apple.jwks_calls
    code = fake_apple.authorize(client_id=BUNDLE_ID).code
    forged = fake_apple.mint_id_token(kid="NOTAPPLES1", aud=BUNDLE_ID, code=code)
    fake_apple.next_token_response(json={"access_token": "a", "id_token": forged})
    before = rows_without_audit(app)
    response = post_token(client, exchange_params(native_client, code))
    assert_oauth_error(response, 400, "invalid_grant")
    assert fake_apple.jwks_calls == calls + 1  # refetched once, then refused
    assert rows_without_audit(app) == before


@pytest.mark.parametrize("id_token", [None, "", 42], ids=["missing", "empty", "not_a_string"])
def test_tx17_answer_without_identity_token_is_an_outage(app, client, fake_apple, native_client,
                                                          code, id_token):
    """No identity token at all is a garbled answer from Apple, not a verdict on the code: 503."""
    answer = {"access_token": "a", **({} if id_token is None else {"id_token": id_token})}
    fake_apple.next_token_response(json=answer)
    data = exchange_params(native_client, code)
    refused(app, client, fake_apple, data, 503, "temporarily_unavailable", apple_called=True)


@pytest.mark.parametrize("sent, in_token", [
    ("raw1", sha256_hex("raw2")), ("raw1", "raw2"), (None, sha256_hex("raw1")), ("raw1", None),
], ids=["hash_mismatch", "raw_mismatch", "unexpected_nonce", "missing_nonce"])
def test_tx18_nonce_binding(app, client, fake_apple, native_client, sent, in_token):
    code = fake_apple.authorize(client_id=BUNDLE_ID, nonce=in_token).code
    data = exchange_params(native_client, code, nonce=sent)
    body = refused(app, client, fake_apple, data, 400, "invalid_grant", apple_called=True)
    # the description says it is the nonce, so the app developer knows what to fix
    assert "nonce" in body["error_description"]
    expected = {
        ("raw1", sha256_hex("raw2")): "The nonce in the identity token from Apple does not "
                                      "match the nonce sent.",
        ("raw1", "raw2"): "The nonce in the identity token from Apple does not match the "
                          "nonce sent.",
        ("raw1", None): "The identity token from Apple carries no nonce, but a nonce was sent.",
        (None, sha256_hex("raw1")): "The identity token carries a nonce but none was sent.",
    }[(sent, in_token)]
    assert body["error_description"] == expected


@pytest.mark.parametrize("in_token", ["hashed", "raw"])
def test_tx18_nonce_accepted_raw_or_hashed(client, fake_apple, native_client, in_token):
    raw = "a-raw-nonce-from-the-app"
    code = fake_apple.authorize(client_id=BUNDLE_ID,
                                nonce=sha256_hex(raw) if in_token == "hashed" else raw).code
    response = post_token(client, exchange_params(native_client, code, nonce=raw))
    assert response.status_code == 200, response.get_json()
    id_token = pyjwt.decode(response.get_json()["id_token"], options={"verify_signature": False})
    assert id_token["nonce"] == raw


@pytest.mark.parametrize("nonce", ["has space", "x" * 300, "caf\u00e9", "new\nline"])
def test_tx18_malformed_nonce(app, client, fake_apple, native_client, code, nonce):
    data = exchange_params(native_client, code, nonce=nonce)
    refused(app, client, fake_apple, data, 400, "invalid_request")


# --- TX-19 … TX-22: size, characters, user_profile -----------------------------------------------


@pytest.mark.parametrize("field, size", [("subject_token", 1025), ("subject_token", 20_000),
                                         ("user_profile", 5_000)])
def test_tx19_oversized_fields(app, client, fake_apple, native_client, field, size):
    value = ("a" * size if field == "subject_token"
             else json.dumps({"name": {"firstName": "a" * size}}))
    data = exchange_params(native_client, "code", **{field: value})
    refused(app, client, fake_apple, data, 400, "invalid_request")


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_tx19_body_over_max_content_length(app, client, fake_apple, native_client, code, as_json):
    data = exchange_params(native_client, code, user_profile="x" * (1024 * 1024))
    before = rows_without_audit(app)
    response = post_token(client, data, as_json=as_json)
    assert response.status_code == 413
    assert response.get_json()["error"] == "invalid_request"
    assert rows_without_audit(app) == before and fake_apple.token_requests == []


@pytest.mark.parametrize("token", [
    "abc\r\ndef", "abc\x00def", "abc%00def", "c\u00f6de", "abc def", "abc/def", "abc+def=",
    "<script>", "\x1b[31mred",
])
def test_tx20_hostile_subject_token(app, client, fake_apple, native_client, token):
    body = refused(app, client, fake_apple, exchange_params(native_client, token), 400,
                   "invalid_request")
    assert token not in body["error_description"]


def test_tx20_hostile_client_id_not_echoed_or_logged_raw(app, client, fake_apple, native_client,
                                                         code, caplog):
    hostile = "cli_\x1b[31mred\r\nINFO forged line"
    with caplog.at_level(logging.INFO, logger="siwa_web"):
        body = refused(app, client, fake_apple, exchange_params(native_client, code,
                                                                client_id=hostile),
                       401, "invalid_client")
    assert "forged" not in body["error_description"]
    assert all("\x1b" not in r.getMessage() and "\n" not in r.getMessage() for r in caplog.records)
    [event] = audit_events(app, "native_exchange")
    assert "\x1b" not in event["client_id"] and "\n" not in event["client_id"]


@pytest.mark.parametrize("profile", [
    "not json", "[1]", '"str"', '{"name": "Ada"}', '{"name": {"firstName": 5}}',
    '{"name": {"firstName": "' + "x" * 101 + '"}}', "{" * 2000 + "}" * 2000,
    '{"name": {"firstName": "' + "x" * 3000 + '"}}',
], ids=["garbage", "array", "string", "name_string", "name_number", "101_chars", "deep", "3000"])
def test_tx21_invalid_user_profile_refused_before_apple(app, client, fake_apple, native_client,
                                                        code, profile):
    data = exchange_params(native_client, code, user_profile=profile)
    refused(app, client, fake_apple, data, 400, "invalid_request")


def _user(app, access_token):
    sub = pyjwt.decode(access_token, options={"verify_signature": False})["sub"]
    with app.app_context():
        user = db.session.get(User, sub)
        return {"first": user.first_name, "last": user.last_name, "email": user.email}


def test_tx21_profile_email_is_ignored(app, client, fake_apple, native_client):
    profile = '{"email": "ceo@example.com", "name": {"firstName": "Ada"}}'
    body = exchange(client, fake_apple, native_client, user_profile=profile).get_json()
    user = _user(app, body["access_token"])
    assert user["email"].endswith("@privaterelay.appleid.com") and user["first"] == "Ada"


def test_tx21_profile_for_existing_user_does_not_rename(app, client, fake_apple, native_client):
    exchange(client, fake_apple, native_client, sub="000002.x.0001", user_profile=GOOD_PROFILE)
    body = exchange(client, fake_apple, native_client, sub="000002.x.0001",
                    user_profile='{"name":{"firstName":"Mallory","lastName":"X"}}').get_json()
    assert _user(app, body["access_token"])["first"] == "Ada"


def test_tx21_profile_as_json_object_in_json_body(app, client, fake_apple, native_client):
    profile = {"name": {"firstName": "Grace", "lastName": "Hopper"}}
    body = exchange(client, fake_apple, native_client, as_json=True,
                    user_profile=profile).get_json()
    assert _user(app, body["access_token"])["first"] == "Grace"


def test_tx21_empty_name_is_fine(app, client, fake_apple, native_client):
    body = exchange(client, fake_apple, native_client,
                    user_profile='{"name": {"firstName": "", "lastName": null}}').get_json()
    assert _user(app, body["access_token"])["first"] is None


def test_tx22_name_stored_verbatim(app, client, fake_apple, native_client):
    xss = "<img src=x onerror=alert(1)>"
    body = exchange(client, fake_apple, native_client,
                    user_profile=json.dumps({"name": {"firstName": xss}})).get_json()
    assert _user(app, body["access_token"])["first"] == xss


# --- TX-23 … TX-24, REL-06: Apple failures -------------------------------------------------------


@pytest.mark.parametrize("reply", [
    {"exc": requests.exceptions.ReadTimeout}, {"exc": requests.exceptions.ConnectTimeout},
    {"exc": requests.exceptions.ConnectionError}, {"status": 500, "text": "oops"},
    {"status": 502, "text": "<html>bad gateway</html>"}, {"status": 200, "text": "<html></html>"},
    {"status": 200, "text": '{"id_token": "a.b"'}, {"status": 200, "json": {"access_token": "a"}},
    {"status": 200, "json": {"id_token": ""}},
], ids=["read_timeout", "connect_timeout", "connection", "500", "502_html", "200_html",
        "truncated", "no_id_token", "empty_id_token"])
def test_tx23_apple_unavailable(app, client, fake_apple, native_client, code, reply):
    fake_apple.next_token_response(**reply)
    data = exchange_params(native_client, code)
    refused(app, client, fake_apple, data, 503, "temporarily_unavailable", apple_called=True)
    response = post_token(client, exchange_params(native_client, fake_apple.authorize(
        client_id=BUNDLE_ID).code))
    assert response.status_code == 200  # the next request works again
    assert len(fake_apple.token_requests) == 2  # and nothing was retried


def test_tx23_retry_after_header(client, fake_apple, native_client, code):
    fake_apple.next_token_response(exc=requests.exceptions.ReadTimeout)
    response = post_token(client, exchange_params(native_client, code))
    assert int(response.headers["Retry-After"]) > 0


def test_tx23_apple_keys_unreachable_cold_cache(app, client, fake_apple, native_client, code):
    fake_apple.outage("keys")
    data = exchange_params(native_client, code)
    refused(app, client, fake_apple, data, 503, "temporarily_unavailable", apple_called=True)


def test_tx24_our_apple_credentials_broken(app, client, fake_apple, native_client, code, caplog):
    fake_apple.next_token_response(status=400, json={"error": "invalid_client"})
    with caplog.at_level(logging.ERROR, logger="siwa_web"):
        body = refused(app, client, fake_apple, exchange_params(native_client, code), 500,
                       "server_error", apple_called=True)
    secret = fake_apple.token_requests[0]["client_secret"]
    assert secret not in json.dumps(body)
    assert secret not in caplog.text
    assert any("invalid_client" in r.getMessage() for r in caplog.records if r.levelno >= 40)
    [event] = audit_events(app, "native_exchange")
    assert event["outcome"] == "failure" and event["reason"] == "apple_invalid_client"


# --- TX-26 … TX-27 -------------------------------------------------------------------------------


def test_tx26_disabled_user(app, client, fake_apple, native_client):
    from siwa_web.models.base import now_utc

    body = exchange(client, fake_apple, native_client, sub="000003.x.0001").get_json()
    sub = pyjwt.decode(body["access_token"], options={"verify_signature": False})["sub"]
    with app.app_context():
        db.session.get(User, sub).disabled_at = now_utc()
        db.session.commit()
    tables = ["users", "token_families", "refresh_tokens", "apple_tokens"]
    before = {t: snapshot(app, t) for t in tables}
    code = fake_apple.authorize(client_id=BUNDLE_ID, sub="000003.x.0001").code
    refused(app, client, fake_apple, exchange_params(native_client, code), 400, "invalid_grant",
            apple_called=True)
    assert {t: snapshot(app, t) for t in tables} == before
    assert client.get("/api/me", headers=bearer(body["access_token"])).status_code == 401


@pytest.fixture
def low_limits(app_config):
    app_config.update(RATELIMIT_TOKEN_PER_IP="5/minute", RATELIMIT_TOKEN_PER_CLIENT="8/minute")


def _burst(client, native, n, **environ):
    data = exchange_params(native, "unused-code", grant_type="password")
    return [post_token(client, data, environ_base=environ) for _ in range(n)]


def test_tx27_rate_limit_per_ip(low_limits, app, client, fake_apple, native_client):
    responses = _burst(client, native_client, 6, REMOTE_ADDR="10.0.0.1")
    assert [r.status_code for r in responses] == [400] * 5 + [429]
    body = assert_oauth_error(responses[-1], 429, "too_many_requests")
    assert 0 < int(responses[-1].headers["Retry-After"]) <= 61
    assert "error_description" in body
    # a spoofed X-Forwarded-For is not trusted (TRUST_PROXY_HOPS = 0)
    spoofed = client.post("/oauth/token", data={"grant_type": "password"},
                          headers={"X-Forwarded-For": "203.0.113.9"},
                          environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert spoofed.status_code == 429
    # another address is not affected
    assert _burst(client, native_client, 1, REMOTE_ADDR="10.0.0.2")[0].status_code == 400


def test_tx27_rate_limit_per_client(low_limits, app, client, fake_apple, native_client):
    statuses = [r.status_code for i in range(3)
                for r in _burst(client, native_client, 3, REMOTE_ADDR=f"10.0.1.{i}")]
    assert statuses == [400] * 8 + [429]


def test_tx27_rate_limit_also_for_json(low_limits, app, client, fake_apple, native_client):
    data = exchange_params(native_client, "unused", grant_type="password")
    statuses = [post_token(client, data, as_json=True,
                           environ_base={"REMOTE_ADDR": f"10.0.2.{i}"}).status_code
                for i in range(9)]
    assert statuses == [400] * 8 + [429]


# --- no secret in logs or at rest ----------------------------------------------------


def test_x01_x06_no_tokens_in_logs_or_database(app, client, fake_apple, native_client, caplog):
    from support.tokens import refresh_params

    with caplog.at_level(logging.DEBUG):
        code = fake_apple.authorize(client_id=BUNDLE_ID).code
        first = post_token(client, exchange_params(native_client, code)).get_json()
        again = refresh_params(native_client, first["refresh_token"])
        second = post_token(client, again).get_json()
        post_token(client, refresh_params(native_client, first["refresh_token"]))  # grace retry
        client.get("/api/me", headers=bearer(second["access_token"]))
        client.post("/oauth/revoke", data={"token": second["refresh_token"],
                                           "client_id": native_client.client_id})
    apple_refresh = list(fake_apple._refresh)
    secrets = [code, *apple_refresh, fake_apple.token_requests[0]["client_secret"],
               *(first[k] for k in ("access_token", "id_token", "refresh_token")),
               *(second[k] for k in ("access_token", "id_token", "refresh_token"))]
    logged = caplog.text
    dump = json.dumps({t: snapshot(app, t) for t in rows_without_audit(app)}, default=str)
    dump += json.dumps(audit_events(app), default=str)
    for secret in secrets:
        assert secret not in logged
        assert secret not in dump


def test_commit_failure_is_503_and_nothing_stored(app, client, fake_apple, native_client, code,
                                                  monkeypatch):
    from sqlalchemy.exc import OperationalError

    def down():
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(db.session, "commit", down)
    before = rows_without_audit(app)
    response = post_token(client, exchange_params(native_client, code))
    assert_oauth_error(response, 503, "temporarily_unavailable")
    monkeypatch.undo()
    assert rows_without_audit(app) == before
