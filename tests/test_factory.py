"""The app factory: config load order, derived defaults, refusal of bad production settings."""
from __future__ import annotations

import pytest

from siwa_web import create_app
from siwa_web.config import ConfigError


def test_testing_flag(app):
    assert app.testing
    assert not create_app({"SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": "sqlite://"}).testing


def test_env_overrides_instance_and_defaults(monkeypatch, app_config):
    monkeypatch.setenv("SIWA_ACCESS_TOKEN_TTL", "123")
    monkeypatch.setenv("SIWA_ISSUER", "https://env.example")
    app = create_app({k: v for k, v in app_config.items() if k != "ISSUER"})
    assert app.config["ACCESS_TOKEN_TTL"] == 123
    assert app.config["ISSUER"] == "https://env.example"
    # the test dict beats the environment
    app = create_app(app_config)
    assert app.config["ISSUER"] == "https://siwa.test"


def _prod(app_config, **changes):
    cfg = {k: v for k, v in app_config.items() if k != "TESTING"}
    cfg.update(ENV="production", TOKEN_ENCRYPTION_KEYS=["x" * 43 + "="], APPLE_EMULATOR=None)
    cfg.update(changes)
    return cfg


def test_production_with_full_settings_starts(app_config):
    from cryptography.fernet import Fernet

    app = create_app(_prod(app_config, TOKEN_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]))
    assert app.config["APPLE_EMULATOR"] is False
    assert app.config["APPLE_BASE_URL"] == "https://appleid.apple.com"


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("SECRET_KEY", None, "SIWA_SECRET_KEY"),
        ("TOKEN_ENCRYPTION_KEYS", [], "SIWA_TOKEN_ENCRYPTION_KEYS"),
        ("APPLE_TEAM_ID", None, "SIWA_APPLE_TEAM_ID"),
        ("APPLE_KEY_ID", "", "SIWA_APPLE_KEY_ID"),
        ("APPLE_SERVICES_ID", None, "SIWA_APPLE_SERVICES_ID"),
        ("APPLE_PRIVATE_KEY", "not a pem", "SIWA_APPLE_PRIVATE_KEY"),
        ("ISSUER", "http://insecure.example", "SIWA_ISSUER"),
        ("ISSUER", "not a url", "SIWA_ISSUER"),
        ("APPLE_BASE_URL", "ftp://apple", "SIWA_APPLE_BASE_URL"),
        ("APPLE_EMULATOR", True, "SIWA_APPLE_EMULATOR"),
    ],
)
def test_production_refuses_bad_settings_naming_the_key(app_config, key, value, expected):
    with pytest.raises(ConfigError) as info:
        create_app(_prod(app_config, **{key: value}))
    assert expected in str(info.value)


@pytest.mark.parametrize(("key", "value"), [
    ("DB_POOL_SIZE", "many"), ("DB_POOL_SIZE", 0), ("DB_MAX_OVERFLOW", -1),
    ("DB_PING_IDLE_SECONDS", "soon"), ("DB_PING_IDLE_SECONDS", -5), ("APPLE_READ_TIMEOUT", 0),
    ("APPLE_HTTP_IDLE_SECONDS", None), ("APPLE_HTTP_IDLE_SECONDS", True),
    ("LIVENESS_CACHE_SECONDS", "30s"), ("SQLITE_WRITER_GATE", "yes"),
])
def test_bad_numbers_stop_start_up_naming_the_key(app_config, key, value):
    with pytest.raises(ConfigError) as info:
        create_app({**app_config, key: value})
    assert f"SIWA_{key}" in str(info.value)


@pytest.mark.parametrize(("key", "value", "says"), [
    ("RATELIMIT_TOKEN_PER_IP", "sixty a minute", "60/minute"),
    ("RATELIMIT_TOKEN_PER_CLIENT", "", "60/minute"),
    ("RATELIMIT_LOGIN_PER_IP", None, "60/minute"),
    ("RATELIMIT_STRATEGY", "moving-window", "fixed windows only"),
    ("RATELIMIT_STRATEGY", "sliding-window-counter", "redis://"),
    ("RATELIMIT_STRATEGY", "leaky-bucket", "fixed-window, moving-window"),
])
def test_bad_rate_limits_stop_start_up_naming_the_key(app_config, key, value, says):
    with pytest.raises(ConfigError) as info:
        create_app({**app_config, key: value})
    assert f"SIWA_{key}" in str(info.value) and says in str(info.value)


def test_numbers_from_the_environment_are_parsed(monkeypatch, app_config):
    monkeypatch.setenv("SIWA_DB_PING_IDLE_SECONDS", "2.5")
    monkeypatch.setenv("SIWA_SQLITE_WRITER_GATE", "false")
    app = create_app(app_config)
    assert app.config["DB_PING_IDLE_SECONDS"] == 2.5
    assert app.config["SQLITE_WRITER_GATE"] is False


def test_production_refuses_an_rsa_key(app_config):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    with pytest.raises(ConfigError, match="EC P-256"):
        create_app(_prod(app_config, APPLE_PRIVATE_KEY=pem))


def test_private_key_path_is_read_relative_to_instance(app_config, tmp_path):
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(app_config["APPLE_PRIVATE_KEY"])
    cfg = dict(app_config, APPLE_PRIVATE_KEY=None, APPLE_PRIVATE_KEY_PATH=str(key_file))
    assert create_app(cfg).config["APPLE_PRIVATE_KEY"] == app_config["APPLE_PRIVATE_KEY"]
    with pytest.raises(ConfigError, match="SIWA_APPLE_PRIVATE_KEY_PATH"):
        create_app(dict(cfg, APPLE_PRIVATE_KEY_PATH=str(tmp_path / "missing.p8")))


def test_development_without_credentials_wires_the_emulator(app_config):
    cfg = {k: v for k, v in app_config.items()
           if not k.startswith("APPLE_")} | {"ISSUER": "http://localhost:5000"}
    app = create_app(cfg)
    assert app.config["APPLE_EMULATOR"] is True
    assert app.config["APPLE_BASE_URL"] == "http://localhost:5000/__apple"
    assert app.config["APPLE_REDIRECT_URI"] == "http://localhost:5000/auth/apple/callback"
    assert app.config["SESSION_COOKIE_NAME"] == "siwa_session"
    assert "Apple emulator" in app.test_client().get("/auth/login").get_data(as_text=True)


def test_explicit_base_url_is_kept_for_a_standalone_emulator(app_config):
    cfg = {k: v for k, v in app_config.items() if not k.startswith("APPLE_")}
    cfg.update(APPLE_EMULATOR=True, APPLE_BASE_URL="http://127.0.0.1:5001")
    assert create_app(cfg).config["APPLE_BASE_URL"] == "http://127.0.0.1:5001"


def test_https_issuer_gets_host_prefixed_secure_cookie(app):
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-siwa"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_mounted_emulator_is_reached_in_process(app_config):
    """`make run` mode: the app's Apple calls go straight to the mounted emulator, no socket."""
    from siwa_web.infra.apple_client import apple_client

    cfg = {k: v for k, v in app_config.items()
           if not k.startswith("APPLE_")} | {"ISSUER": "http://localhost:59999"}
    app = create_app(cfg)
    assert app.config["APPLE_BASE_URL"] == "http://localhost:59999/__apple"
    with app.app_context():
        keys = apple_client().session.get("http://localhost:59999/__apple/auth/keys").json()
        kid = keys["keys"][0]["kid"]
        assert apple_client().keys.key_for(kid) is not None
    assert app.test_client().get("/__apple/auth/keys").json == keys


@pytest.mark.parametrize(("value", "on"), [("true", True), ("false", False), ("1", True),
                                           ("0", False)])
def test_apple_emulator_from_the_environment(monkeypatch, app_config, value, on):
    """The docs write SIWA_APPLE_EMULATOR=true; 1/0 mean the same."""
    cfg = {k: v for k, v in app_config.items() if k != "APPLE_EMULATOR"}
    cfg["APPLE_BASE_URL"] = "http://127.0.0.1:5001"
    monkeypatch.setenv("SIWA_APPLE_EMULATOR", value)
    assert create_app(cfg).config["APPLE_EMULATOR"] is on


@pytest.mark.parametrize("value", ["off", "no", "yes", "2", '"true"'])
def test_apple_emulator_other_spellings_stop_start_up(monkeypatch, app_config, value):
    """Text such as "off" would otherwise be truthy and start the emulator."""
    cfg = {k: v for k, v in app_config.items() if k != "APPLE_EMULATOR"}
    monkeypatch.setenv("SIWA_APPLE_EMULATOR", value)
    with pytest.raises(ConfigError, match="SIWA_APPLE_EMULATOR: must be true or false"):
        create_app(cfg)
