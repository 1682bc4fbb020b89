"""CSRF protection for browser forms: Flask-WTF's check, asked only for unsafe methods."""
from __future__ import annotations

from flask import Flask
from flask import request

from .extensions import csrf


def init_app(app: Flask) -> None:
    """Flask-WTF's CSRF check on every request, but GET/HEAD/OPTIONS leave at once.

    Its own hook looks up the view's exemption before it looks at the method — a few
    microseconds on every API call — so it is stood down through its documented setting
    (`WTF_CSRF_CHECK_DEFAULT`; it then returns after two config reads). Ours asks the method
    first and then runs the very same check (`protect(apply_exemptions=True)`), so
    `@csrf.exempt` keeps working.
    """
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    hooks = app.before_request_funcs.setdefault(None, [])
    theirs = len(hooks)
    csrf.init_app(app)
    # Stood down, its hook would still be called (and asked whether it is a coroutine) on
    # every request only to return: it goes, and ours below does the checking.
    del hooks[theirs:]

    @app.before_request
    def _csrf_protect() -> None:
        cfg = app.config
        # `request` resolved once: a read through the proxy costs as much as the rest here.
        method = request._get_current_object().method  # type: ignore[attr-defined]
        if method in cfg["WTF_CSRF_METHODS"] and cfg["WTF_CSRF_ENABLED"]:
            csrf.protect(apply_exemptions=True)
