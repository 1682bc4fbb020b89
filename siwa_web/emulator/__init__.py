"""Developers and tests: an offline stand-in for appleid.apple.com (docs/emulator.md)."""
from __future__ import annotations

from flask import Flask

from . import cli
from .app import create_emulator_app
from .app import mount
from .app import should_mount
from .settings import EmulatorSettings
from .settings import settings_from_app

__all__ = ["EmulatorSettings", "create_emulator_app", "init_app", "settings_from_app"]


def init_app(app: Flask) -> None:
    """Add `flask emulator run`; mount at /__apple when APPLE_BASE_URL points there."""
    cli.init_app(app)
    if should_mount(app):
        mount(app)
