"""MigrationClient against requests-mock: what it sends, and every bad answer typed, not trusted."""
from __future__ import annotations

from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
import requests

from siwa_web.apple import AppleClient
from siwa_web.apple import AppleMisconfigured
from siwa_web.apple import AppleRejected
from siwa_web.apple import AppleSettings
from siwa_web.apple import AppleUnavailable
from siwa_web.apple.claims import AppleClaims
from siwa_web.apple.migration import MigrationClient
from support.apple import FakeClock
from support.config import KEY_ID
from support.config import SERVICES_ID
from support.config import TEAM_ID

BASE = "https://appleid.apple.com"
TOKEN_URL = f"{BASE}/auth/token"
INFO_URL = f"{BASE}/auth/usermigrationinfo"
SUB = "001234.0123456789abcdef0123456789abcdef.0001"
TRANSFER_SUB = "417607.e68ba878e1be1652bbf12acbcd492d8a.1827"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def migration(apple_private_key_pem, clock) -> MigrationClient:
    apple = AppleClient(AppleSettings(base_url=BASE, team_id=TEAM_ID, key_id=KEY_ID,
                                      private_key_pem=apple_private_key_pem), clock=clock)
    return MigrationClient(apple, SERVICES_ID)


def form(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.text).items()}


def bearer(requests_mock, access="a-one", expires_in=3600):
    return requests_mock.post(TOKEN_URL, json={"access_token": access, "token_type": "Bearer",
                                               "expires_in": expires_in})


def test_old_team_gets_a_transfer_sub_with_a_migration_token(migration, requests_mock,
                                                             apple_private_key_pem):
    token = bearer(requests_mock)
    info = requests_mock.post(INFO_URL, json={"transfer_sub": TRANSFER_SUB})
    assert migration.transfer_sub(SUB, "TEAMBBBB02") == TRANSFER_SUB
    assert migration.transfer_sub(SUB, "TEAMBBBB02") == TRANSFER_SUB
    assert token.call_count == 1  # reused
    sent = form(token.last_request)
    assert sent["grant_type"] == "client_credentials" and sent["scope"] == "user.migration"
    call = form(info.last_request)
    assert call["sub"] == SUB and call["target"] == "TEAMBBBB02"
    assert call["client_id"] == SERVICES_ID
    assert info.last_request.headers["Authorization"] == "Bearer a-one"
    public = pyjwt.get_unverified_header(call["client_secret"])
    assert public == {"alg": "ES256", "kid": KEY_ID}


def test_the_migration_token_is_renewed_before_it_expires(migration, requests_mock, clock):
    token = bearer(requests_mock, expires_in=600)
    requests_mock.post(INFO_URL, json={"transfer_sub": TRANSFER_SUB})
    migration.transfer_sub(SUB, "TEAMBBBB02")
    clock.advance(539)
    migration.transfer_sub(SUB, "TEAMBBBB02")
    assert token.call_count == 1
    clock.advance(2)
    migration.transfer_sub(SUB, "TEAMBBBB02")
    assert token.call_count == 2


@pytest.mark.parametrize("body,private", [
    ({"sub": "041827.bc78.0219", "email": "x@privaterelay.appleid.com",
      "is_private_email": True}, True),
    ({"sub": "041827.bc78.0219", "email": "x@privaterelay.appleid.com",
      "is_private_email": "true"}, True),
    ({"sub": "041827.bc78.0219", "email": "x@privaterelay.appleid.com"}, True),
    ({"sub": "041827.bc78.0219", "email": "maria@example.com", "is_private_email": False},
     False),
    ({"sub": "041827.bc78.0219"}, False),
])
def test_new_team_trades_a_transfer_sub_for_the_new_sub(migration, requests_mock, body, private):
    bearer(requests_mock)
    info = requests_mock.post(INFO_URL, json=body)
    user = migration.exchange(TRANSFER_SUB)
    assert user.sub == body["sub"] and user.email == body.get("email")
    assert user.is_private_email is private
    assert form(info.last_request)["transfer_sub"] == TRANSFER_SUB
    assert "sub" not in form(info.last_request)


@pytest.mark.parametrize("email", [["x@y"], "no-at-sign", "a" * 400 + "@x.example", 7])
def test_a_malformed_email_is_dropped(migration, requests_mock, email):
    bearer(requests_mock)
    requests_mock.post(INFO_URL, json={"sub": "041827.bc78.0219", "email": email})
    assert migration.exchange(TRANSFER_SUB).email is None


BAD = [
    pytest.param({"status_code": 503, "text": "<html>down</html>"}, AppleUnavailable, id="503"),
    pytest.param({"status_code": 200, "text": "not json"}, AppleUnavailable, id="garbage"),
    pytest.param({"status_code": 200, "json": []}, AppleUnavailable, id="json-list"),
    pytest.param({"status_code": 200, "json": {}}, AppleUnavailable, id="empty"),
    pytest.param({"status_code": 200, "json": {"transfer_sub": 5, "sub": 5}}, AppleUnavailable,
                 id="numbers"),
    pytest.param({"status_code": 200, "json": {"transfer_sub": "a b", "sub": "a b"}},
                 AppleUnavailable, id="spaces"),
    pytest.param({"status_code": 200, "json": {"transfer_sub": "x" * 256, "sub": "x" * 256}},
                 AppleUnavailable, id="too-long"),
    pytest.param({"status_code": 200, "json": {"transfer_sub": "\u00e9t\u00e9", "sub": "\n"}},
                 AppleUnavailable, id="not-ascii"),
    pytest.param({"exc": requests.exceptions.ConnectTimeout}, AppleUnavailable, id="timeout"),
    pytest.param({"status_code": 400, "json": {"error": "invalid_request"}}, AppleRejected,
                 id="invalid_request"),
    pytest.param({"status_code": 400, "json": {"error": "invalid_client"}}, AppleMisconfigured,
                 id="invalid_client"),
]


@pytest.mark.parametrize("answer,error", BAD)
@pytest.mark.parametrize("call", ["transfer_sub", "exchange"])
def test_bad_answers_raise_typed_errors(migration, requests_mock, answer, error, call):
    bearer(requests_mock)
    requests_mock.post(INFO_URL, **answer)
    with pytest.raises(error):
        if call == "transfer_sub":
            migration.transfer_sub(SUB, "TEAMBBBB02")
        else:
            migration.exchange(TRANSFER_SUB)


@pytest.mark.parametrize("answer", [
    {"status_code": 200, "json": {"token_type": "Bearer"}},
    {"status_code": 200, "json": {"access_token": ""}},
    {"status_code": 502, "text": "bad gateway"},
    {"exc": requests.exceptions.ReadTimeout},
])
def test_no_usable_migration_token_is_an_outage(migration, requests_mock, answer):
    requests_mock.post(TOKEN_URL, **answer)
    info = requests_mock.post(INFO_URL, json={"transfer_sub": TRANSFER_SUB})
    with pytest.raises(AppleUnavailable):
        migration.transfer_sub(SUB, "TEAMBBBB02")
    assert info.call_count == 0


CLAIMS = {"iss": "https://appleid.apple.com", "aud": SERVICES_ID, "sub": SUB, "iat": 1,
          "exp": 2}


@pytest.mark.parametrize("value", [None, 5, ["x"], {"a": 1}, "", "a b", "x" * 256, "caf\u00e9",
                                   "tab\there"])
def test_an_unusable_transfer_sub_claim_is_ignored(value):
    assert AppleClaims.from_payload({**CLAIMS, "transfer_sub": value}).transfer_sub is None


def test_a_transfer_sub_claim_is_kept():
    claims = AppleClaims.from_payload({**CLAIMS, "transfer_sub": TRANSFER_SUB})
    assert claims.transfer_sub == TRANSFER_SUB
