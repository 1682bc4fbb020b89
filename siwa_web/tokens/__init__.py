"""The HTTP face of the token service: token, revocation, JWKS, discovery, Bearer APIs, CLI."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The authorization server, its endpoints, the Bearer-protected APIs and the CLI."""
    from . import api
    from . import cli
    from . import service
    from . import views

    service.init_app(app)
    views.init_app(app)
    api.init_app(app)
    cli.init_app(app)
