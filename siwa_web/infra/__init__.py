"""Plumbing every part shares: extensions, logging, metrics, crypto, headers, pools, rate limits."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the core imports infra.crypto, which must not load Flask
    from flask import Flask


def init_app(app: Flask) -> None:
    """Bind the shared plumbing, in the order the rest relies on."""
    from . import apple_client
    from . import csrf
    from . import database
    from . import logs
    from . import metrics
    from . import ratelimit
    from . import security_headers

    metrics.init_app(app)  # first: its request timing wraps every other hook
    logs.init_app(app)
    database.init_app(app)
    csrf.init_app(app)
    ratelimit.init_app(app)
    security_headers.init_app(app)
    apple_client.init_app(app)
