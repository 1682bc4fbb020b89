"""siwa-web: Sign in with Apple for browsers and native apps, with our own tokens."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask
from flask import request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config
from .json_provider import ReusedEncoderJSONProvider

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: config (defaults → instance/config.py → SIWA_* → test dict), then parts."""
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.json = ReusedEncoderJSONProvider(app)
    config.load(app, test_config)
    if app.config["TRUST_PROXY_HOPS"]:
        hops = int(app.config["TRUST_PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from . import apple_events
    from . import apple_service
    from . import auth
    from . import dashboard
    from . import emulator
    from . import errors
    from . import logs
    from . import maintenance
    from . import models  # noqa: F401  (register tables for migrations)
    from . import pool_ping
    from . import security
    from . import sessions
    from . import token_service
    from .extensions import db
    from .extensions import limiter
    from .extensions import migrate

    logs.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    _csrf_for_unsafe_methods_only(app)
    limiter.init_app(app)
    _limit_only_decorated_routes(app)
    with app.app_context():
        _tune_sqlite(db.engine)
        pool_ping.install(db.engine, float(app.config["DB_PING_IDLE_SECONDS"]))
    sessions.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    apple_service.init_app(app)
    emulator.init_app(app)
    auth.init_app(app)
    dashboard.init_app(app)
    token_service.init_app(app)
    apple_events.init_app(app)
    maintenance.init_app(app)
    return app


def _csrf_for_unsafe_methods_only(app: Flask) -> None:
    """Flask-WTF's CSRF check on every request, but GET/HEAD/OPTIONS leave at once.

    Its own hook looks up the view's exemption before it looks at the method — a few
    microseconds on every API call — so it is removed. Ours asks the method first and then
    runs the very same check (`protect(apply_exemptions=True)`), so `@csrf.exempt` keeps
    working.
    """
    from .extensions import csrf

    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # read by Flask-WTF's own hook: stand it down
    csrf.init_app(app)
    # ... and drop that hook, which would now return at once on every request.
    app.before_request_funcs[None] = [
        h for h in app.before_request_funcs.get(None, [])
        if getattr(h, "__module__", "") != "flask_wtf.csrf"
    ]

    @app.before_request
    def _csrf_protect() -> None:
        cfg = app.config
        # `request` resolved once: a read through the proxy costs as much as the rest here.
        method = request._get_current_object().method  # type: ignore[attr-defined]
        if method in cfg["WTF_CSRF_METHODS"] and cfg["WTF_CSRF_ENABLED"]:
            csrf.protect(apply_exemptions=True)


def _limit_only_decorated_routes(app: Flask) -> None:
    """Drop Flask-Limiter's per-request hooks: we set no default or application-wide limits.

    Routes with `@limiter.limit` check their limits inside the decorator, so the global
    before_request hook only filtered an empty list — about 100 µs on every request, a quarter
    of a Bearer-protected API call — and the after-request and teardown hooks had nothing to do.
    """
    from .extensions import limiter

    if app.config.get("RATELIMIT_DEFAULT") or app.config.get("RATELIMIT_APPLICATION"):
        return
    hooks = app.before_request_funcs.get(None, [])
    app.before_request_funcs[None] = [h for h in hooks if h != limiter._check_request_limit]
    # Its teardown only resets per-request state that lives on the request context, which is
    # discarded anyway.
    teardown = app.teardown_request_funcs.get(None, [])
    app.teardown_request_funcs[None] = [
        h for h in teardown if getattr(h, "__self__", None) is not limiter
    ]
    if app.config.get("RATELIMIT_HEADERS_ENABLED"):
        return
    # Without X-RateLimit-* headers (or deduct_when limits, which we do not use) the
    # after_request hook has nothing to add either.
    hooks = app.after_request_funcs.get(None, [])
    app.after_request_funcs[None] = [
        h for h in hooks if not (isinstance(h, partial) and h.args == (limiter,))
    ]


def _tune_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout and enforced foreign keys for SQLite; nothing for other databases."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - exercised via SQLite
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
