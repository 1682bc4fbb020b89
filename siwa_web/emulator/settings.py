"""What the emulator trusts: the team, its client-secret keys, Services IDs and bundle ids."""
from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

APPLE_ISSUER = "https://appleid.apple.com"
STATE_FILE_NAME = "emulator-state.sqlite"
NOTIFICATION_PATH = "/apple/notifications"  # siwa-web's receiver (siwa_web/apple_events.py)


def _no_bundle_ids() -> Iterable[str]:
    return ()


@dataclass
class EmulatorSettings:
    """One emulated Apple team: everything Apple would know from the developer portal."""

    team_id: str
    client_keys: dict[str, str]  # Key ID -> PEM public key (EC P-256) that verifies client secrets
    services: dict[str, list[str]]  # Services ID -> registered return URLs
    base_url: str  # where the emulator is reachable (discovery document)
    bundle_ids: Callable[[], Iterable[str]] = field(default=_no_bundle_ids)
    issuer: str = APPLE_ISSUER  # `iss` of identity tokens stays Apple's real string
    allow_insecure_redirects: bool = True  # dev only: http:// and localhost return URLs
    notification_url: str | None = None
    id_token_lifetime: int = 600
    app_name: str = "siwa-web"  # what Apple's sheet calls the app (its name, never the client id)
    state_file: Path | None = None  # where users, consents and keys survive restarts; None: memory

    def is_bundle_id(self, client_id: str) -> bool:
        """Ask every time: apps are registered while the emulator runs."""
        return client_id in set(self.bundle_ids())

    def is_client(self, client_id: str) -> bool:
        """A client is a Services ID or a native bundle id of the team."""
        return client_id in self.services or self.is_bundle_id(client_id)


def public_pem(private_pem: str) -> str:
    """Derive the public half Apple keeps when the team uploads its .p8 key."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def settings_from_app(app: Flask) -> EmulatorSettings:
    """Build settings from siwa-web's config so the emulator trusts exactly that app."""
    cfg = app.config

    def bundle_ids() -> list[str]:
        from ..infra.extensions import db
        from ..models import Client

        extra = list(cfg.get("EMULATOR_BUNDLE_IDS") or ())
        try:
            with app.app_context():
                rows = db.session.execute(db.select(Client.bundle_id)).scalars().all()
        except SQLAlchemyError as exc:  # e.g. database not migrated yet: web flows still work
            log.warning("emulator: cannot read registered bundle ids: %s", exc,
                        extra={"event": "emulator"})
            return extra
        return [*rows, *extra]

    return EmulatorSettings(
        team_id=cfg["APPLE_TEAM_ID"],
        client_keys={cfg["APPLE_KEY_ID"]: public_pem(cfg["APPLE_PRIVATE_KEY"])},
        services={cfg["APPLE_SERVICES_ID"]: [cfg["APPLE_REDIRECT_URI"]]},
        bundle_ids=bundle_ids,
        base_url=cfg["APPLE_BASE_URL"],
        notification_url=cfg.get("EMULATOR_NOTIFICATION_URL")
        or cfg["ISSUER"] + NOTIFICATION_PATH,
        app_name=cfg.get("EMULATOR_APP_NAME") or "siwa-web",
        state_file=state_file(app),
    )


def state_file(app: Flask) -> Path | None:
    """EMULATOR_STATE_FILE: unset means instance/emulator-state.sqlite, "" keeps state in memory;
    a relative path is taken inside instance/."""
    configured = app.config.get("EMULATOR_STATE_FILE")
    if configured == "" or configured is False:
        return None
    path = Path(configured or STATE_FILE_NAME)
    return path if path.is_absolute() else Path(app.instance_path) / path
