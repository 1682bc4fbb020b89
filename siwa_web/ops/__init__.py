"""Operators: health probes and support commands."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """`GET /healthz` and `GET /readyz` (after the token service is built: they read its keys)."""
    from . import health

    health.init_app(app)
