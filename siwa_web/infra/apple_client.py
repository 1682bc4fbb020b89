"""Flask glue: one AppleClient per app, built from app.config, reachable as apple_client()."""
from __future__ import annotations

from flask import Flask
from flask import current_app

from ..apple import AppleClient
from ..apple import AppleSettings
from . import metrics

EXTENSION_KEY = "siwa.apple"


def settings_from_config(config: dict) -> AppleSettings:
    """Translate APPLE_* config keys (see siwa_web/settings.py) into AppleSettings."""
    issuers = config.get("APPLE_ISSUERS") or AppleSettings.issuers
    if isinstance(issuers, str):
        issuers = [issuers]
    return AppleSettings(
        base_url=config["APPLE_BASE_URL"],
        team_id=config["APPLE_TEAM_ID"],
        key_id=config["APPLE_KEY_ID"],
        private_key_pem=config["APPLE_PRIVATE_KEY"],
        issuers=tuple(issuers),
        connect_timeout=float(config.get("APPLE_CONNECT_TIMEOUT", 3.0)),
        read_timeout=float(config.get("APPLE_READ_TIMEOUT", 8.0)),
        call_deadline=float(config.get("APPLE_CALL_DEADLINE", 6.0)),
        budget=float(config.get("APPLE_SIGN_IN_BUDGET", 9.0)),
        http_idle_seconds=float(config.get("APPLE_HTTP_IDLE_SECONDS", 1.5)),
        jwks_max_age=int(config.get("APPLE_JWKS_MAX_AGE", 86400)),
        jwks_refetch_cooldown=float(config.get("APPLE_JWKS_REFETCH_COOLDOWN", 30.0)),
        leeway=int(config.get("APPLE_TOKEN_LEEWAY", 60)),
        id_token_max_age=int(config.get("APPLE_ID_TOKEN_MAX_AGE", 86460)),
    )


def init_app(app: Flask) -> None:
    """Build the app's AppleClient once; its key and secret caches then live as long as the app.

    With metrics on, every call to Apple is counted and timed (`metrics.Recorder.apple_call`).
    """
    recorder = metrics.recorder(app)
    observer = recorder.apple_call if recorder.enabled else None
    app.extensions[EXTENSION_KEY] = AppleClient(settings_from_config(app.config),
                                                observer=observer)


def apple_client() -> AppleClient:
    """The AppleClient of the current app."""
    return current_app.extensions[EXTENSION_KEY]
