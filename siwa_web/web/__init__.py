"""Browser sign-in: the login page, the trip to Apple, the form_post callback, web sessions."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Web sessions behind Flask-Login, siwa-web's error pages, the sign-in routes."""
    from . import errors
    from . import host
    from . import sessions
    from . import views

    host.init_app(app)
    sessions.init_app(app)
    errors.init_app(app)
    views.init_app(app)
