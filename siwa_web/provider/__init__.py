"""Web apps signing people in through siwa-web: the OpenID Provider's browser endpoints."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """The authorization endpoint, its sign-in resumption, consent, and RP-initiated logout."""
    from . import logout
    from . import views

    views.init_app(app)
    logout.init_app(app)
