"""The emulator's teams and app transfers: subs per team, transfer_sub, the 60-day window."""
from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from support.emulator import APPLE_AUD
from support.emulator import BUNDLE_ID
from support.emulator import KEY_ID
from support.emulator import SUB
from support.emulator import TEAM_ID
from support.emulator import WEB_ID
from support.emulator import claims_of

TEAM_B = "TEAMBBBB02"
KEY_B = "KEYBBBB002"
DAY = 86400


@pytest.fixture(scope="module")
def team_b_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _secret(key, team: str, kid: str, client_id: str, now: int) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    claims = {"iss": team, "iat": now, "exp": now + 3600, "aud": APPLE_AUD, "sub": client_id}
    return jwt.encode({"alg": "ES256", "kid": kid}, claims, ECKey.import_key(pem),
                      algorithms=["ES256"])


class Team:
    """One team's side of the migration API, as TN3159 describes its calls."""

    def __init__(self, emu, key, team: str, kid: str) -> None:
        self.emu, self.key, self.team, self.kid = emu, key, team, kid

    def secret(self, client_id: str = WEB_ID) -> str:
        """Signed at Apple's time, as a team whose clock is right would after 60 days."""
        now = int(self.emu.admin("clock", method="GET").get_json()["now"])
        return _secret(self.key, self.team, self.kid, client_id, now)

    def access_token(self, client_id: str = WEB_ID) -> str:
        resp = self.emu.client.post("/auth/token", data={
            "client_id": client_id, "client_secret": self.secret(client_id),
            "grant_type": "client_credentials", "scope": "user.migration"})
        assert resp.status_code == 200, resp.data
        return resp.get_json()["access_token"]

    def migrate(self, token: str | None = None, client_id: str = WEB_ID, **fields):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.emu.client.post("/auth/usermigrationinfo", headers=headers, data={
            "client_id": client_id, "client_secret": self.secret(client_id), **fields})


@pytest.fixture
def teams(emu, team_b_key):
    resp = emu.admin("teams", {"team_id": TEAM_B, "client_keys": {KEY_B: _public(team_b_key)}})
    assert resp.status_code == 200, resp.data
    assert resp.get_json() == {"owner": TEAM_ID, "teams": {TEAM_ID: [KEY_ID], TEAM_B: [KEY_B]}}
    return Team(emu, emu.key, TEAM_ID, KEY_ID), Team(emu, team_b_key, TEAM_B, KEY_B)


@pytest.fixture
def signed_up(emu):
    """A user who signed in to the web app (consent given) under team A."""
    fields = emu.fields()
    return claims_of(fields["id_token"])["sub"]


def test_full_migration_and_the_claim_in_identity_tokens(emu, teams, signed_up):
    a, b = teams
    token = a.access_token()
    resp = a.migrate(token, sub=signed_up, target=TEAM_B)
    assert resp.status_code == 200, resp.data
    transfer_sub = resp.get_json()["transfer_sub"]
    assert SUB.match(transfer_sub) and transfer_sub != signed_up
    assert a.migrate(token, sub=signed_up, target=TEAM_B).get_json() == {
        "transfer_sub": transfer_sub}  # stable for the user and direction

    moved = emu.admin("transfer", {"to_team": TEAM_B}).get_json()
    assert moved["from_team"] == TEAM_ID and moved["window_ends"] == moved["at"] + 60 * DAY

    answer = b.migrate(b.access_token(), transfer_sub=transfer_sub)
    assert answer.status_code == 200, answer.data
    new = answer.get_json()
    assert SUB.match(new["sub"]) and new["sub"] != signed_up
    assert new["email"] == "maria@example.com" and new["is_private_email"] is False

    # A sign-in now: team B's sub, and the link for the 60 days.
    claims = claims_of(emu.fields(account=emu.admin("users", method="GET")
                                  .get_json()["users"][0]["id"])["id_token"])
    assert claims["sub"] == new["sub"] and claims["transfer_sub"] == transfer_sub
    emu.admin("clock", {"advance": 61 * DAY})
    user_id = emu.admin("users", method="GET").get_json()["users"][0]["id"]
    assert "transfer_sub" not in claims_of(emu.fields(account=user_id)["id_token"])
    expired = b.migrate(b.access_token(), transfer_sub=transfer_sub)
    assert expired.status_code == 400 and expired.get_json()["error"] == "invalid_request"


def test_team_a_credentials_stop_working_except_for_migration_in_the_window(emu, teams,
                                                                             signed_up):
    a, b = teams
    emu.admin("transfer", {"to_team": TEAM_B})
    redeem = emu.token(grant_type="authorization_code", code="c-unknown")  # team A's secret
    assert redeem.get_json()["error"] == "invalid_client"
    resp = a.migrate(a.access_token(), sub=signed_up, target=TEAM_B)  # still allowed: 60 days
    assert resp.status_code == 200, resp.data
    assert b.migrate(b.access_token(), transfer_sub=resp.get_json()["transfer_sub"]
                     ).status_code == 200
    emu.admin("clock", {"advance": 61 * DAY})
    late = emu.client.post("/auth/token", data={
        "client_id": WEB_ID, "client_secret": a.secret(), "grant_type": "client_credentials",
        "scope": "user.migration"})
    assert late.get_json()["error"] == "invalid_client"


def test_moving_back_restores_the_first_teams_subs(emu, teams, signed_up):
    emu.admin("transfer", {"to_team": TEAM_B})
    user = emu.admin("users", method="GET").get_json()["users"][0]
    assert user["sub"] != signed_up
    emu.admin("transfer", {"to_team": TEAM_ID})
    assert emu.admin("users", method="GET").get_json()["users"][0]["sub"] == signed_up


def test_relay_addresses_differ_per_team(emu, teams):
    fields = emu.fields(choice="hide")
    relay = claims_of(fields["id_token"])["email"]
    emu.admin("transfer", {"to_team": TEAM_B})
    user_id = emu.admin("users", method="GET").get_json()["users"][0]["id"]
    after = claims_of(emu.fields(account=user_id)["id_token"])
    assert after["email"].endswith("@privaterelay.appleid.com") and after["email"] != relay


@pytest.mark.parametrize("case", [
    "no-bearer", "bearer-of-another-client", "unknown-bearer", "no-fields", "unknown-sub",
    "unknown-target", "own-team-as-target", "revoked-user", "transfer-sub-before-transfer",
    "transfer-sub-by-old-team", "unknown-transfer-sub", "bad-secret",
])
def test_migration_errors(emu, teams, signed_up, case):
    a, b = teams
    token = a.access_token()
    calls = {
        "no-bearer": lambda: a.migrate(None, sub=signed_up, target=TEAM_B),
        "bearer-of-another-client": lambda: a.migrate(a.access_token(BUNDLE_ID), sub=signed_up,
                                                      target=TEAM_B),
        "unknown-bearer": lambda: a.migrate("a-made-up", sub=signed_up, target=TEAM_B),
        "no-fields": lambda: a.migrate(token),
        "unknown-sub": lambda: a.migrate(token, sub="000000.0.0000", target=TEAM_B),
        "unknown-target": lambda: a.migrate(token, sub=signed_up, target="NOSUCHTEAM"),
        "own-team-as-target": lambda: a.migrate(token, sub=signed_up, target=TEAM_ID),
    }
    if case == "revoked-user":
        user_id = emu.admin("users", method="GET").get_json()["users"][0]["id"]
        emu.admin(f"users/{user_id}/revoke", {"notify": False})
        resp = a.migrate(token, sub=signed_up, target=TEAM_B)
    elif case in ("transfer-sub-before-transfer", "transfer-sub-by-old-team"):
        ts = a.migrate(token, sub=signed_up, target=TEAM_B).get_json()["transfer_sub"]
        if case == "transfer-sub-by-old-team":
            emu.admin("transfer", {"to_team": TEAM_B})
            resp = a.migrate(a.access_token(), transfer_sub=ts)
        else:
            resp = a.migrate(token, transfer_sub=ts)
    elif case == "unknown-transfer-sub":
        emu.admin("transfer", {"to_team": TEAM_B})
        resp = b.migrate(b.access_token(), transfer_sub="123456.deadbeef.0001")
    elif case == "bad-secret":
        resp = emu.client.post("/auth/usermigrationinfo", headers={
            "Authorization": f"Bearer {token}"}, data={
            "client_id": WEB_ID, "client_secret": "x.y.z", "sub": signed_up, "target": TEAM_B})
    else:
        resp = calls[case]()
    assert resp.status_code == 400
    expected = "invalid_client" if case == "bad-secret" else "invalid_request"
    assert resp.get_json()["error"] == expected


@pytest.mark.parametrize("body", [
    {"team_id": "short", "client_keys": {"K": "x"}},
    {"team_id": TEAM_B, "client_keys": {}},
    {"team_id": TEAM_B, "client_keys": {"K": "not a pem"}},
    {"team_id": TEAM_ID, "client_keys": None},
])
def test_admin_refuses_bad_teams(emu, body, team_b_key):
    if body.get("client_keys") is None:
        body = {**body, "client_keys": {"K": _public(team_b_key)}}
    resp = emu.admin("teams", body)
    assert resp.status_code == 400
    assert emu.admin("teams", method="GET").get_json()["teams"] == {TEAM_ID: [KEY_ID]}


@pytest.mark.parametrize("to_team", ["", TEAM_ID, "UNKNOWN001"])
def test_admin_refuses_a_transfer_to_an_unknown_or_the_same_team(emu, teams, signed_up, to_team):
    resp = emu.admin("transfer", {"to_team": to_team})
    assert resp.status_code == 400
    assert emu.admin("users", method="GET").get_json()["users"][0]["sub"] == signed_up


def test_answers_are_dated_by_apples_clock(emu):
    from email.utils import parsedate_to_datetime

    emu.admin("clock", {"offset": 3600})
    date = parsedate_to_datetime(emu.client.get("/auth/keys").headers["Date"]).timestamp()
    assert abs(date - (time.time() + 3600)) < 5
