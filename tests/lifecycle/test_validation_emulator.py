"""The daily token check end to end against the built-in Apple emulator, mounted at /__apple:
a person stops using Sign in with Apple in Settings (no notification), and the next check
signs them out."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import AppleToken
from siwa_web.models.base import now_utc
from siwa_web.oauth import clients
from support.tokens import NativeClient
from support.tokens import bearer
from support.tokens import exchange_params

BUNDLE = "com.example.siwa.ios"



def native_sign_in(app) -> tuple[dict, str, NativeClient]:
    """The iOS app signs in through the emulator and exchanges the code at /oauth/token."""
    with app.app_context():
        client = clients.create(db.session, name="Acme", bundle_id=BUNDLE)
        db.session.commit()
        native = NativeClient(client.id, BUNDLE)
    http = app.test_client()
    credential = http.post("/__apple/__emulator/native/authorize", json={
        "bundle_id": BUNDLE, "email": "maria@example.com", "first_name": "Maria"}).get_json()
    resp = http.post("/oauth/token", data=exchange_params(
        native, credential["authorizationCode"]))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json(), credential["user"], native


def make_due(app) -> None:
    with app.app_context():
        db.session.execute(update(AppleToken).values(next_check_at=now_utc() - timedelta(1)))
        db.session.commit()


def check(app):
    return app.test_cli_runner().invoke(args=["apple", "validate-tokens"])


def emulator_refreshes(app) -> list[dict]:
    log = app.test_client().get("/__apple/__emulator/requests?endpoint=token").get_json()
    return [r for r in log["requests"] if r["grant_type"] == "refresh_token"]


def test_consent_withdrawn_in_settings_is_found_by_the_daily_check(mounted):
    tokens, sub, native = native_sign_in(mounted)
    http = mounted.test_client()
    make_due(mounted)
    result = check(mounted)
    assert result.exit_code == 0 and "1 valid" in result.output, result.output
    [call] = emulator_refreshes(mounted)
    assert call["client_id"] == BUNDLE and call["status"] == 200
    # Settings → Sign in with Apple → Stop using: Apple sends no notification.
    result = mounted.test_cli_runner().invoke(args=["emulator", "withdraw-consent", sub])
    assert result.exit_code == 0, result.output
    notifications = http.get("/__apple/__emulator/notifications").get_json()["notifications"]
    assert notifications == []
    assert http.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    make_due(mounted)
    result = check(mounted)
    assert result.exit_code == 0 and "1 revoked" in result.output, result.output
    assert emulator_refreshes(mounted)[-1]["error"] == "invalid_grant"
    assert http.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 401
    again = http.post("/oauth/token", data={"grant_type": "refresh_token",
                                            "refresh_token": tokens["refresh_token"],
                                            "client_id": native.client_id})
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    with mounted.app_context():
        [row] = db.session.scalars(select(AppleToken)).all()
        assert row.check_state == "revoked" and row.refresh_token_encrypted is None


def test_withdraw_consent_command_names_an_unknown_sub(mounted):
    result = mounted.test_cli_runner().invoke(
        args=["emulator", "withdraw-consent", "000000.nobody.0000"])
    assert result.exit_code != 0 and "no such user" in result.output
