"""Operators: health probes and support commands."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """`GET /healthz`, `GET /readyz` and `flask users ...` (after the token service is built)."""
    from . import health
    from . import users_cli

    health.init_app(app)
    users_cli.init_app(app)
