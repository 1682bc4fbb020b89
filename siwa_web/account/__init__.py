"""The account dashboard for signed-in people: what it shows and the controls on it."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The dashboard's routes, the template filters its cards use, and `DELETE /api/account`."""
    from . import api
    from . import cards
    from . import views

    views.init_app(app)
    api.init_app(app)
    cards.init_app(app)
