"""Out-of-band consent withdrawal (Settings → Stop using): tokens die, no notification."""
from __future__ import annotations

import pytest

from support.emulator import BUNDLE_ID


def native_user(emu) -> dict:
    credential = emu.admin("native/authorize", {"bundle_id": BUNDLE_ID,
                                                "email": "ana@example.com"}).get_json()
    code = credential["authorizationCode"]
    tokens = emu.token(BUNDLE_ID, grant_type="authorization_code", code=code).get_json()
    return {"sub": credential["user"], "refresh_token": tokens["refresh_token"]}


def refresh(emu, token: str):
    return emu.token(BUNDLE_ID, grant_type="refresh_token", refresh_token=token)


@pytest.mark.parametrize("how", ["json", "form"])
def test_withdrawing_consent_kills_the_tokens_and_sends_nothing(emu, how):
    user = native_user(emu)
    assert refresh(emu, user["refresh_token"]).status_code == 200
    if how == "json":
        resp = emu.admin("consent/withdraw", {"sub": user["sub"]})
        assert resp.status_code == 200
        body = resp.get_json()["user"]
        assert body["authorization"]["status"] == "revoked"
        assert all(t["revoked"] for t in body["refresh_tokens"])
    else:  # the page's button
        resp = emu.client.post("/__emulator/consent/withdraw", data={"sub": user["sub"]})
        assert resp.status_code == 303 and resp.headers["Location"].endswith("/__emulator/consent")
    answer = refresh(emu, user["refresh_token"])
    assert answer.status_code == 400 and answer.get_json() == {
        "error": "invalid_grant", "error_description": "The token has expired or has been revoked."}
    assert emu.admin("notifications", method="GET").get_json()["notifications"] == []


def test_the_page_lists_users_and_offers_stop_using_while_authorized(emu):
    user = native_user(emu)
    page = emu.client.get("/__emulator/consent").get_data(as_text=True)
    assert user["sub"] in page and "Stop using" in page and "authorized" in page
    emu.admin("consent/withdraw", {"sub": user["sub"]})
    page = emu.client.get("/__emulator/consent").get_data(as_text=True)
    assert "Stop using</button>" not in page and "revoked" in page


def test_the_page_escapes_what_it_shows(emu):
    emu.admin("users", {"email": "<script>x</script>@example.com"})
    page = emu.client.get("/__emulator/consent").get_data(as_text=True)
    assert "<script>x" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize("body, status", [({"sub": "000000.nobody.0000"}, 404),
                                          ({"user_id": "nobody"}, 404), ({}, 404),
                                          ({"sub": 5}, 400), ([1], 400)])
def test_bad_withdrawals(emu, body, status):
    user = native_user(emu)
    assert emu.admin("consent/withdraw", body).status_code == status
    assert refresh(emu, user["refresh_token"]).status_code == 200


@pytest.mark.parametrize("status, exit_ok", [(200, True), (404, False)])
def test_the_command_calls_a_standalone_emulator(app, requests_mock, status, exit_ok):
    """Not mounted: the command asks the emulator at APPLE_BASE_URL (`flask emulator run`)."""
    url = app.config["APPLE_BASE_URL"] + "/__emulator/consent/withdraw"
    mock = requests_mock.post(url, status_code=status, json={})
    result = app.test_cli_runner().invoke(args=["emulator", "withdraw-consent", "001.x.1"])
    assert (result.exit_code == 0) is exit_ok, result.output
    assert mock.last_request.json() == {"sub": "001.x.1"}
    if not exit_ok:
        assert "answered 404" in result.output
