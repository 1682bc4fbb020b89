"""Where the app keeps its authorization server, and how a request finds it."""
from __future__ import annotations

from flask import current_app

from ..oauth import AuthorizationServer

EXTENSION = "siwa_oauth"


def server() -> AuthorizationServer:
    """Return the current app's authorization server."""
    return current_app.extensions[EXTENSION]
