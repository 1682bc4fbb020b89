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
