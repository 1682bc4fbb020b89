"""Operators: health probes, Prometheus metrics and support commands."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """`GET /healthz`, `GET /readyz`, `GET /metrics` (with METRICS_TOKEN), `flask users ...`
    (after the token service is built) and `flask apple doctor`."""
    from . import doctor
    from . import health
    from . import metrics
    from . import users_cli

    health.init_app(app)
    metrics.init_app(app)
    users_cli.init_app(app)
    doctor.init_app(app)
