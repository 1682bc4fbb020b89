"""Flask-Limiter bound to the app, without per-request hooks that would have nothing to do."""
from __future__ import annotations

from functools import partial

from flask import Flask

from .extensions import limiter
from .ratelimit_store import local_uri

STORAGE_URI = "RATELIMIT_STORAGE_URI"


def init_app(app: Flask) -> None:
    """Bind the limiter; `memory://` (the default) counts in siwa-web's own `siwa-memory://` store.

    The setting is handed to Flask-Limiter mapped and then put back as it was, so the config
    still shows what was configured.
    """
    configured = app.config.get(STORAGE_URI)
    app.config[STORAGE_URI] = local_uri(configured)
    try:
        limiter.init_app(app)
    finally:
        app.config[STORAGE_URI] = configured
    _limit_only_decorated_routes(app)


def _limit_only_decorated_routes(app: Flask) -> None:
    """Drop Flask-Limiter's per-request hooks: we set no default or application-wide limits.

    Routes with `@limiter.limit` check their limits inside the decorator, so the global
    before_request hook only filtered an empty list — about 100 µs on every request, a quarter
    of a Bearer-protected API call — and the after-request and teardown hooks had nothing to do.
    """
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
