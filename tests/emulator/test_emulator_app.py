"""Wiring into siwa-web: settings_from_app, the /__apple mount, `flask emulator run`, isolation."""
from __future__ import annotations

import time

from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey

from siwa_web import create_app
from siwa_web.config import EMULATOR_DEFAULTS
from siwa_web.emulator import create_emulator_app
from siwa_web.emulator import settings_from_app
from siwa_web.infra.extensions import db
from siwa_web.models import Client
from support.emulator import MOUNTED_ISSUER
from support.emulator import form_fields


def _secret(private_pem: str, team: str, kid: str, client_id: str) -> str:
    now = int(time.time())
    claims = {"iss": team, "iat": now, "exp": now + 600, "aud": "https://appleid.apple.com",
              "sub": client_id}
    return jwt.encode({"alg": "ES256", "kid": kid}, claims, ECKey.import_key(private_pem),
                      algorithms=["ES256"])


def _add_client(app, bundle_id: str) -> None:
    with app.app_context():
        db.session.add(Client(id=bundle_id.rsplit(".", 1)[-1], name="App", bundle_id=bundle_id,
                              audiences=[], scopes=[]))
        db.session.commit()



def test_settings_from_app(app, app_config):
    _add_client(app, "com.example.native")
    app.config["EMULATOR_BUNDLE_IDS"] = ["com.example.extra"]
    settings = settings_from_app(app)
    assert settings.team_id == app_config["APPLE_TEAM_ID"]
    assert settings.services == {app_config["APPLE_SERVICES_ID"]:
                                 [app_config["ISSUER"] + "/auth/apple/callback"]}
    assert set(settings.bundle_ids()) == {"com.example.native", "com.example.extra"}
    assert settings.base_url == app_config["APPLE_BASE_URL"]
    assert settings.issuer == "https://appleid.apple.com"
    assert settings.notification_url == app_config["ISSUER"] + "/apple/notifications"
    assert settings.allow_insecure_redirects is True
    private = serialization.load_pem_private_key(app_config["APPLE_PRIVATE_KEY"].encode(), None)
    expected = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert settings.client_keys == {app_config["APPLE_KEY_ID"]: expected}
    assert "PRIVATE" not in expected


def test_settings_from_app_secret_is_accepted_by_the_emulator(app, app_config):
    client = create_emulator_app(settings_from_app(app)).test_client()
    sid = app_config["APPLE_SERVICES_ID"]
    secret = _secret(app_config["APPLE_PRIVATE_KEY"], app_config["APPLE_TEAM_ID"],
                     app_config["APPLE_KEY_ID"], sid)
    resp = client.post("/auth/token", data={"client_id": sid, "client_secret": secret,
                                            "grant_type": "client_credentials",
                                            "scope": "user.migration"})
    assert resp.status_code == 200


def test_notification_url_can_be_configured(app):
    app.config["EMULATOR_NOTIFICATION_URL"] = "https://hooks.example/apple"
    assert settings_from_app(app).notification_url == "https://hooks.example/apple"


def test_bundle_ids_survive_an_unmigrated_database(app_config, tmp_path):
    cfg = dict(app_config, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'empty.sqlite'}",
               EMULATOR_BUNDLE_IDS=["com.example.extra"])
    app = create_app(cfg)
    assert list(settings_from_app(app).bundle_ids()) == ["com.example.extra"]
    with app.app_context():
        db.engine.dispose()


def test_mounted_at_apple_path(mounted):
    emulator = mounted.extensions["siwa.emulator"]
    assert emulator.name == "siwa_web.emulator"
    client = mounted.test_client()
    keys = client.get("/__apple/auth/keys")
    assert keys.status_code == 200 and len(keys.get_json()["keys"]) == 2
    doc = client.get("/__apple/.well-known/openid-configuration").get_json()
    assert doc["jwks_uri"] == f"{MOUNTED_ISSUER}/__apple/auth/keys"
    assert doc["issuer"] == "https://appleid.apple.com"


def test_mounted_web_flow_uses_the_app_redirect_uri(mounted):
    client = mounted.test_client()
    client.post("/__apple/__emulator/next-login", json={"email": "m@example.com",
                                                        "first_name": "M", "last_name": "R"})
    resp = client.get("/__apple/auth/authorize", query_string={
        "client_id": EMULATOR_DEFAULTS["APPLE_SERVICES_ID"],
        "redirect_uri": f"{MOUNTED_ISSUER}/auth/apple/callback",
        "response_type": "code id_token", "response_mode": "form_post", "scope": "name email",
        "state": "s"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert 'src="/__apple/static/autosubmit.js"' in page
    assert 'href="/__apple/static/emulator.css"' in page
    assert set(form_fields(page)) == {"code", "id_token", "state", "user"}
    assert client.get("/__apple/static/autosubmit.js").status_code == 200


def test_mounted_emulator_reads_bundle_ids_from_the_database(mounted):
    _add_client(mounted, "com.example.registered")
    client = mounted.test_client()
    cred = client.post("/__apple/__emulator/native/authorize", json={
        "bundle_id": "com.example.registered", "email": "n@example.com"}).get_json()
    secret = _secret(mounted.config["APPLE_PRIVATE_KEY"], mounted.config["APPLE_TEAM_ID"],
                     mounted.config["APPLE_KEY_ID"], "com.example.registered")
    resp = client.post("/__apple/auth/token", data={
        "client_id": "com.example.registered", "client_secret": secret,
        "grant_type": "authorization_code", "code": cred["authorizationCode"]})
    assert resp.status_code == 200, resp.data
    assert "refresh_token" in resp.get_json()


def test_not_mounted_with_real_apple(app):
    assert "siwa.emulator" not in app.extensions
    assert app.test_client().get("/__apple/auth/keys").status_code == 404


def test_not_mounted_when_pointing_at_a_standalone_emulator(app_config):
    cfg = {k: v for k, v in app_config.items() if k != "APPLE_BASE_URL"}
    app = create_app(cfg | {"APPLE_EMULATOR": True, "APPLE_BASE_URL": "http://127.0.0.1:5001"})
    assert "siwa.emulator" not in app.extensions
    assert app.test_client().get("/__apple/auth/keys").status_code == 404
    with app.app_context():
        db.engine.dispose()


def test_cli_runs_the_emulator_standalone(app, monkeypatch):
    calls = []
    monkeypatch.setattr("siwa_web.emulator.cli.run_simple",
                        lambda host, port, wsgi, **kw: calls.append((host, port, wsgi, kw)))
    result = app.test_cli_runner().invoke(args=["emulator", "run", "--port", "5055"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:5055" in result.output
    host, port, wsgi, kwargs = calls[0]
    assert (host, port, kwargs) == ("127.0.0.1", 5055, {"threaded": True})
    doc = wsgi.test_client().get("/.well-known/openid-configuration").get_json()
    assert doc["token_endpoint"] == "http://127.0.0.1:5055/auth/token"


def test_cli_defaults(app, monkeypatch):
    calls = []
    monkeypatch.setattr("siwa_web.emulator.cli.run_simple",
                        lambda host, port, wsgi, **kw: calls.append((host, port)))
    assert app.test_cli_runner().invoke(args=["emulator", "run"]).exit_code == 0
    assert calls == [("127.0.0.1", 5001)]


def test_two_emulators_do_not_share_state(settings):
    one, two = (create_emulator_app(settings).test_client() for _ in range(2))
    assert one.post("/__emulator/users", json={"email": "a@b.example"}).status_code == 201
    assert two.get("/__emulator/users").get_json()["users"] == []
    kids = [{k["kid"] for k in c.get("/auth/keys").get_json()["keys"]} for c in (one, two)]
    assert not kids[0] & kids[1]
