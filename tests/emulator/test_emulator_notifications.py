"""Server-to-server notifications and the "Stop using Apple ID" simulation."""
from __future__ import annotations

import json

import pytest
import requests

from support.emulator import WEB_ID

URL = "https://rp.example.com/auth/apple/notifications"


@pytest.fixture
def signed_in(emu) -> dict:
    """A user who signed in on the web; returns their admin view and tokens."""
    tokens = emu.redeem(emu.fields()["code"]).get_json()
    user = emu.admin("users", method="GET").get_json()["users"][0]
    return {"user": user, "tokens": tokens}


def _delivered(emu, requests_mock) -> dict:
    """The single POST the RP received, verified against the JWKS."""
    assert requests_mock.call_count == 1
    sent = requests_mock.request_history[0]
    assert sent.method == "POST" and sent.headers["Content-Type"] == "application/json"
    body = sent.json()
    assert list(body) == ["payload"]
    token = emu.verify(body["payload"])
    assert token.header == {"kid": token.header["kid"], "alg": "RS256"}
    return token.claims


@pytest.mark.parametrize("event_type", ["consent-revoked", "account-delete", "account-deleted"])
def test_revoking_events_are_signed_and_end_the_session(emu, signed_in, requests_mock, event_type):
    requests_mock.post(URL, status_code=200)
    result = emu.admin("notifications", {"type": event_type, "sub": signed_in["user"]["sub"]})
    assert result.status_code == 200
    assert result.get_json()["delivered"] is True and result.get_json()["status"] == 200
    claims = _delivered(emu, requests_mock)
    assert claims["iss"] == "https://appleid.apple.com" and claims["aud"] == WEB_ID
    assert claims["exp"] - claims["iat"] == 86400 and len(claims["jti"]) >= 16
    assert isinstance(claims["events"], str)  # a JSON string, as Apple sends it
    events = json.loads(claims["events"])
    assert events["type"] == event_type and events["sub"] == signed_in["user"]["sub"]
    assert abs(events["event_time"] / 1000 - claims["iat"]) < 5  # milliseconds
    refresh = emu.token(grant_type="refresh_token",
                        refresh_token=signed_in["tokens"]["refresh_token"])
    assert refresh.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(("event_type", "forwarding"),
                         [("email-disabled", False), ("email-enabled", True)])
def test_email_events_carry_relay_address_and_flip_forwarding(emu, signed_in, requests_mock,
                                                              event_type, forwarding):
    requests_mock.post(URL, status_code=200)
    user = signed_in["user"]
    emu.admin("notifications", {"type": event_type, "user_id": user["id"], "aud": "com.x.app"})
    claims = _delivered(emu, requests_mock)
    events = json.loads(claims["events"])
    assert claims["aud"] == "com.x.app"
    assert events["email"] == user["relay_email"] and events["is_private_email"] is True
    after = emu.admin(f"users/{user['id']}", method="GET").get_json()
    assert after["forwarding"] is forwarding
    assert after["authorization"]["status"] == "authorized"


def test_is_private_email_string_style_applies_to_notifications(emu, signed_in, requests_mock):
    requests_mock.post(URL, status_code=200)
    emu.admin("claims", {"is_private_email": "string"})
    emu.admin("notifications", {"type": "email-enabled", "user_id": signed_in["user"]["id"]})
    assert json.loads(_delivered(emu, requests_mock)["events"])["is_private_email"] == "true"


def test_non_200_and_unreachable_are_reported(emu, signed_in, requests_mock):
    requests_mock.post(URL, status_code=500)
    requests_mock.post("https://down.example/n", exc=requests.ConnectionError("refused"))
    failed = emu.admin("notifications", {"type": "email-disabled",
                                         "user_id": signed_in["user"]["id"]}).get_json()
    assert failed["delivered"] is False and failed["status"] == 500
    down = emu.admin("notifications", {"type": "email-enabled", "user_id": signed_in["user"]["id"],
                                       "url": "https://down.example/n"}).get_json()
    assert down["delivered"] is False and "refused" in down["error"]
    sent = emu.admin("notifications", method="GET").get_json()["notifications"]
    assert [(n["type"], n["status"]) for n in sent] == [("email-disabled", 500),
                                                         ("email-enabled", None)]


@pytest.mark.parametrize(("body", "status"), [
    ({"type": "consent-withdrawn", "sub": "x"}, 400),
    ({"type": "consent-revoked"}, 404),
    ({"type": "consent-revoked", "sub": "000000.nobody.0000"}, 404),
    ({"type": 5, "sub": "x"}, 400),
])
def test_bad_notification_requests(emu, signed_in, requests_mock, body, status):
    assert emu.admin("notifications", body).status_code == status
    assert requests_mock.call_count == 0


def test_settings_revoke_sends_consent_revoked(emu, signed_in, requests_mock):
    requests_mock.post(URL, status_code=200)
    resp = emu.admin(f"users/{signed_in['user']['id']}/revoke").get_json()
    assert resp["user"]["authorization"]["status"] == "revoked"
    assert resp["notification"]["delivered"] is True
    assert json.loads(_delivered(emu, requests_mock)["events"])["type"] == "consent-revoked"
    again = emu.fields(account=signed_in["user"]["id"])
    assert "user" in again  # first authorization again


def test_settings_revoke_without_notification(emu, signed_in, requests_mock):
    resp = emu.admin(f"users/{signed_in['user']['id']}/revoke", {"notify": False}).get_json()
    assert resp["notification"] is None
    assert resp["user"]["refresh_tokens"][0]["revoked"] is True
    assert requests_mock.call_count == 0
    assert emu.admin("users/nobody/revoke").status_code == 404
