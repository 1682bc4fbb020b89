"""Every way of declaring a Flask-Limiter limit answers 429; without such limits, no request hook.

Flask-Limiter's before_request hook costs ~100 µs per request and is dropped when only
decorated routes are limited (siwa_web.infra.ratelimit.finish). These tests declare each other
kind of limit the way an app would — blueprint limits after `init_app` ran but before the
blueprint is registered — and check that it is enforced.
"""
from __future__ import annotations

from functools import partial

import pytest
from flask import Blueprint
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from siwa_web import create_app
from siwa_web import lifecycle
from siwa_web.infra import ratelimit
from siwa_web.infra.extensions import limiter
from siwa_web.infra.ratelimit import Declared


def _limiter_hooks(app: Flask, ext: Limiter = limiter) -> dict[str, list]:
    """The app-wide hooks Flask-Limiter registered for `ext` that are still in place."""
    return {
        "before": [h for h in app.before_request_funcs.get(None, [])
                   if getattr(h, "__self__", None) is ext],
        "after": [h for h in app.after_request_funcs.get(None, [])
                  if isinstance(h, partial) and h.args == (ext,)],
        "teardown": [h for h in app.teardown_request_funcs.get(None, [])
                     if getattr(h, "__self__", None) is ext],
    }


@pytest.fixture
def build(app_config, monkeypatch, declarations):
    """create_app with `declare(app)` run after every part's init_app, before `finish`."""

    def build(declare=None, **settings):
        if declare is not None:
            original = lifecycle.init_app

            def init_app(app):
                original(app)
                declare(app)

            monkeypatch.setattr(lifecycle, "init_app", init_app)
        return create_app(dict(app_config, **settings))

    return build


def probe(name: str = "probe", decorate=None) -> Blueprint:
    """A blueprint with two plain routes; `decorate` wraps the first one's view."""
    bp = Blueprint(name, __name__, url_prefix=f"/{name}")

    def one():
        return "one"

    def two():
        return "two"

    bp.add_url_rule("/one", "one", decorate(one) if decorate else one)
    bp.add_url_rule("/two", "two", two)
    return bp


def statuses(app, *paths: str) -> list[int]:
    client = app.test_client()
    return [client.get(path).status_code for path in paths]


# --- no such limits: no hook ------------------------------------------------------------------


def test_without_global_or_blueprint_limits_no_request_hook_runs(app):
    assert _limiter_hooks(app) == {"before": [], "after": [], "teardown": []}
    # the decorated route still counts inside its decorator
    assert ratelimit.declared(limiter).needing_request_hook(app) == []


def test_the_api_path_runs_no_limiter_hook(app):
    """What a Bearer call to /api/me runs around its view: our CSRF method check before, nothing
    more (Flask-WTF's own hook, stood down by WTF_CSRF_CHECK_DEFAULT, is removed), and after it
    only the end of the request's transaction (moved there from the teardown, where a failure
    could no longer change the answer: web/errors.py). The issuer-host check is off in tests."""
    assert [h.__name__ for h in app.before_request_funcs.get(None, [])] == ["_csrf_protect"]
    assert app.config["WTF_CSRF_CHECK_DEFAULT"] is False
    assert [h.__name__ for h in app.after_request_funcs.get(None, [])] == ["_end_transaction"]


# --- limits on a blueprint --------------------------------------------------------------------


def test_blueprint_limit_declared_after_init_app(build):
    def declare(app):
        bp = probe()
        limiter.limit("2/minute")(bp)  # declared after limiter.init_app(app) ran ...
        app.register_blueprint(bp)  # ... and before the blueprint is registered

    app = build(declare)
    assert _limiter_hooks(app)["before"]
    assert statuses(app, "/probe/one", "/probe/one", "/probe/one", "/probe/two") \
        == [200, 200, 429, 200]  # a per-route limit: /probe/two has a budget of its own


def test_shared_limit_on_a_blueprint(build):
    def declare(app):
        bp = probe()
        limiter.shared_limit("2/minute", scope="probe-shared")(bp)
        app.register_blueprint(bp)

    app = build(declare)
    assert statuses(app, "/probe/one", "/probe/two", "/probe/one", "/probe/two") \
        == [200, 200, 429, 429]


def test_limit_on_a_parent_blueprint_covers_the_nested_one(build):
    def declare(app):
        parent = Blueprint("parent", __name__, url_prefix="/parent")
        parent.register_blueprint(probe("child"))
        limiter.limit("1/minute")(parent)
        app.register_blueprint(parent)

    app = build(declare)
    assert statuses(app, "/parent/child/one", "/parent/child/one") == [200, 429]


def test_a_limit_on_a_blueprint_this_app_lacks_keeps_no_hook(build):
    limiter.limit("1/minute")(probe("elsewhere"))  # never registered with this app
    app = build()
    assert _limiter_hooks(app)["before"] == []


# --- limits declared in config ----------------------------------------------------------------


def test_default_limit_in_config(build):
    app = build(lambda app: app.register_blueprint(probe()), RATELIMIT_DEFAULT="2/minute")
    assert statuses(app, "/probe/two", "/probe/two", "/probe/two") == [200, 200, 429]


def test_application_limit_in_config(build):
    app = build(lambda app: app.register_blueprint(probe()), RATELIMIT_APPLICATION="2/minute")
    # one budget for every route together
    assert statuses(app, "/probe/one", "/probe/two", "/probe/one") == [200, 200, 429]


def test_meta_limit_in_config_stops_every_route_after_a_breach(build):
    def declare(app):
        app.register_blueprint(probe(decorate=limiter.limit("1/minute")))

    app = build(declare, RATELIMIT_META="1/minute")
    # /probe/one breaches its own limit once; the meta limit then refuses every route
    assert statuses(app, "/probe/two", "/probe/one", "/probe/one", "/probe/two") \
        == [200, 200, 429, 429]


def test_in_memory_fallback_keeps_the_hook(build):
    app = build(RATELIMIT_IN_MEMORY_FALLBACK="10/minute")
    assert _limiter_hooks(app)["before"]


# --- limits declared on a Limiter -------------------------------------------------------------


def _own_limiter(**declared) -> Limiter:
    return Limiter(get_remote_address, storage_uri="siwa-memory://", **declared)


@pytest.mark.parametrize("kind", ["default_limits", "application_limits"])
def test_limits_declared_on_a_limiter(build, kind):
    other = _own_limiter(**{kind: ["2/minute"]})

    def declare(app):
        other.init_app(app)
        app.register_blueprint(probe())

    app = build(declare)
    assert _limiter_hooks(app, other)["before"]
    assert _limiter_hooks(app)["before"] == []  # siwa-web's limiter still has nothing to check
    assert statuses(app, "/probe/two", "/probe/two", "/probe/two") == [200, 200, 429]


def test_deduct_when_limit_on_a_route_is_counted_after_the_response(build):
    def declare(app):
        counted = limiter.limit("2/minute", deduct_when=lambda resp: resp.status_code == 200)
        app.register_blueprint(probe(decorate=counted))

    app = build(declare)
    hooks = _limiter_hooks(app)
    assert hooks["before"] == [] and hooks["after"]  # only the after_request hook has work
    assert statuses(app, "/probe/one", "/probe/one", "/probe/one") == [200, 200, 429]


def test_headers_keep_the_after_hook_only(build):
    # Flask-Limiter reads this setting into its first app only: start as a fresh process would
    limiter._headers_enabled = None
    app = build(RATELIMIT_HEADERS_ENABLED=True, RATELIMIT_LOGIN_PER_IP="1/minute")
    hooks = _limiter_hooks(app)
    assert hooks["before"] == [] and hooks["after"]
    client = app.test_client()
    assert client.get("/auth/apple/login").status_code == 303
    refused = client.get("/auth/apple/login")
    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Limit"] == "1" and int(refused.headers["Retry-After"]) > 0


def test_kept_hooks_are_logged_with_the_reason(build, caplog):
    with caplog.at_level("INFO", logger="siwa_web.infra.ratelimit"):
        build(RATELIMIT_DEFAULT="100/minute")
    assert "default limits (default_limits, RATELIMIT_DEFAULT)" in caplog.text


# --- Flask-Limiter internals read by siwa_web.infra.ratelimit ---------------------------------


def test_flask_limiter_internals_we_read_are_still_there():
    """Fails on a Flask-Limiter upgrade that moves what `declared` and `finish` rely on."""
    bare = _own_limiter()
    assert ratelimit.declared(bare) == Declared(
        application=False, default=False, meta=False, fallback=False, blueprints=frozenset(),
        deduct_when=False, headers=False)

    full = _own_limiter(default_limits=["1/minute"], application_limits=["2/minute"],
                        meta_limits=["3/minute"], in_memory_fallback=["4/minute"],
                        headers_enabled=True)
    full.limit("5/minute")(Blueprint("pinned", __name__))
    full.limit("6/minute", deduct_when=lambda response: True)(lambda: "")
    assert ratelimit.declared(full) == Declared(
        application=True, default=True, meta=True, fallback=True,
        blueprints=frozenset({"pinned"}), deduct_when=True, headers=True)

    # the hooks `init_app` registers, as `_drop_hooks` finds them
    app = Flask(__name__)
    bare.init_app(app)
    hooks = _limiter_hooks(app, bare)
    assert hooks["before"] == [bare._check_request_limit]
    assert len(hooks["after"]) == 1 and len(hooks["teardown"]) == 1
    assert (len(app.before_request_funcs[None]), len(app.after_request_funcs[None]),
            len(app.teardown_request_funcs[None])) == (1, 1, 1)
    ratelimit.finish(app)
    assert _limiter_hooks(app, bare) == {"before": [], "after": [], "teardown": []}


def test_a_moved_internal_fails_loudly_naming_it(monkeypatch):
    monkeypatch.delattr(limiter.limit_manager, "_blueprint_limits")
    with pytest.raises(RuntimeError, match="_blueprint_limits.*adapt it"):
        ratelimit.declared(limiter)

