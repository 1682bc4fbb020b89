"""Placeholder: server-side web sessions (filled in with the web flow)."""
from flask import Flask

from .extensions import login_manager


def init_app(app: Flask) -> None:
    login_manager.init_app(app)

    @login_manager.user_loader
    def _load(_token: str):
        return None
