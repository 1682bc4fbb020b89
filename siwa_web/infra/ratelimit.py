"""Flask-Limiter bound to the app, its per-request hooks kept only where a limit needs them.

Routes with `@limiter.limit` check their limits inside the decorator. Flask-Limiter's
before_request hook is what applies every other kind of limit: application-wide, default and
meta limits (declared on the `Limiter` or as RATELIMIT_APPLICATION, RATELIMIT_DEFAULT,
RATELIMIT_META), limits on blueprints (`limiter.limit(...)(bp)`, `limiter.shared_limit(...)(bp)`)
and the in-memory fallback limits (RATELIMIT_IN_MEMORY_FALLBACK). With none of those declared
the hook only filters an empty list — about 100 µs on every request, a quarter of a
Bearer-protected API call — so `finish` drops it, once every blueprint is registered.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import flask_limiter
from flask import Flask
from flask_limiter import Limiter

from . import ratelimit_guard
from .extensions import limiter
from .ratelimit_store import local_uri

log = logging.getLogger(__name__)

STORAGE_URI = "RATELIMIT_STORAGE_URI"
STORAGE_OPTIONS = "RATELIMIT_STORAGE_OPTIONS"


def init_app(app: Flask) -> None:
    """Bind the limiter; `memory://` (the default) counts in siwa-web's own `siwa-memory://` store,
    `redis://` in the guarded Redis store (ratelimit_guard: short timeouts, a circuit breaker).

    The settings are handed to Flask-Limiter mapped and then put back as they were, so the config
    still shows what was configured. Its per-request hooks stay until `finish`.
    """
    configured, options = app.config.get(STORAGE_URI), app.config.get(STORAGE_OPTIONS)
    uri = ratelimit_guard.guarded_uri(local_uri(configured))
    app.config[STORAGE_URI] = uri
    if uri != local_uri(configured):  # Redis: bounded, never retried, behind the breaker
        cfg = app.config
        app.config[STORAGE_OPTIONS] = {
            **ratelimit_guard.redis_options(float(cfg["RATELIMIT_STORE_CONNECT_TIMEOUT"]),
                                            float(cfg["RATELIMIT_STORE_TIMEOUT"])),
            ratelimit_guard.BREAKER_OPTION: float(cfg["RATELIMIT_STORE_BREAKER_SECONDS"]),
            **(options or {}),
        }
    try:
        limiter.init_app(app)
    finally:
        app.config[STORAGE_URI] = configured
        if options is None:
            app.config.pop(STORAGE_OPTIONS, None)
        else:
            app.config[STORAGE_OPTIONS] = options


def finish(app: Flask) -> None:
    """Drop the per-request hooks of each limiter on `app` that has no limit needing them.

    Called last in `create_app`: a blueprint may get its limit after `init_app` ran, as long as
    that is before the blueprint is registered with the app. A limit declared later still (on a
    blueprint registered after `create_app` returned) would not be seen.
    """
    for ext in list(app.extensions.get("limiter", ())):
        found = declared(ext)
        reasons = found.needing_request_hook(app)
        if reasons:
            log.info("rate limits are checked before every request, for %s", "; ".join(reasons),
                     extra={"event": "ratelimit_hooks"})
            continue
        _drop_hooks(app, ext, keep_after_request=found.needing_after_hook())


@dataclass(frozen=True)
class Declared:
    """What kinds of limits a `Limiter` holds (not their values: a callable may vary them)."""

    application: bool  # application_limits / RATELIMIT_APPLICATION
    default: bool  # default_limits / RATELIMIT_DEFAULT
    meta: bool  # meta_limits / RATELIMIT_META
    fallback: bool  # in_memory_fallback / RATELIMIT_IN_MEMORY_FALLBACK
    blueprints: frozenset[str]  # names of blueprints given a limit
    deduct_when: bool  # a decorated limit counted after the response
    headers: bool  # X-RateLimit-* and Retry-After headers on every limited response

    def needing_request_hook(self, app: Flask) -> list[str]:
        """Why the before_request hook must stay on `app`; empty when it has nothing to do."""
        reasons = []
        if self.application:
            reasons.append("application-wide limits (application_limits, RATELIMIT_APPLICATION)")
        if self.default:
            reasons.append("default limits (default_limits, RATELIMIT_DEFAULT)")
        if self.meta:
            reasons.append("meta limits (meta_limits, RATELIMIT_META)")
        if self.fallback:
            reasons.append("in-memory fallback limits "
                           "(in_memory_fallback, RATELIMIT_IN_MEMORY_FALLBACK)")
        limited = sorted(self.blueprints & _blueprint_names(app))
        if limited:
            reasons.append("limits on blueprint " + ", ".join(limited))
        return reasons

    def needing_after_hook(self) -> bool:
        """Whether the after_request hook has work: headers to add or a hit to count."""
        return self.headers or self.deduct_when


def declared(ext: Limiter) -> Declared:
    """Read what `ext` declared from Flask-Limiter's internals (it has no public view of them).

    tests/infra/test_ratelimit_hooks.py pins each attribute read here, so an upgrade that moves
    one fails there; at start-up it fails here, naming the attribute.
    """
    try:
        manager = ext.limit_manager
        decorated = [group for groups in manager._decorated_limits.values() for group in groups]
        return Declared(
            application=bool(manager._application_limits),
            default=bool(manager._default_limits),
            meta=bool(ext._meta_limits),
            fallback=bool(ext._in_memory_fallback),
            blueprints=frozenset(name for name, groups in manager._blueprint_limits.items()
                                 if groups),
            deduct_when=any(group.deduct_when for group in decorated),
            headers=bool(ext._headers_enabled),
        )
    except AttributeError as exc:
        raise RuntimeError(
            f"Flask-Limiter {flask_limiter.__version__} has no {exc.name or exc}: "
            "siwa_web.infra.ratelimit.declared reads it to tell which per-request hooks the "
            "declared rate limits need; adapt it to this version"
        ) from exc


def _blueprint_names(app: Flask) -> set[str]:
    """Every name a blueprint limit may be declared under: registered and nesting names."""
    names = set()
    for registered, blueprint in app.blueprints.items():
        names.add(blueprint.name)
        names.update(registered.split("."))
    return names


def _drop_hooks(app: Flask, ext: Limiter, *, keep_after_request: bool) -> None:
    """Remove `ext`'s before_request and teardown hooks, and its after_request one unless kept.

    The teardown only resets per-request state that lives on the request context, which is
    discarded anyway.
    """
    hooks = app.before_request_funcs.get(None, [])
    app.before_request_funcs[None] = [h for h in hooks if h != ext._check_request_limit]
    teardown = app.teardown_request_funcs.get(None, [])
    app.teardown_request_funcs[None] = [
        h for h in teardown if getattr(h, "__self__", None) is not ext
    ]
    if keep_after_request:
        return
    hooks = app.after_request_funcs.get(None, [])
    app.after_request_funcs[None] = [
        h for h in hooks if not (isinstance(h, partial) and h.args == (ext,))
    ]
