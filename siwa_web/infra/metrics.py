"""The Prometheus metrics of one process, and how the app counts into them (docs/operations.md).

Every metric is defined here, once per process, on this module's registry: one place lists
what exists and with which labels. Features count through the app's `Recorder` (`recorder()`),
which is a do-nothing `OFF` while metrics are off (no `METRICS_TOKEN`), so a deployment
without metrics pays nothing for them. The Flask-free core (oauth, apple) never imports this
module: the Apple client is handed `Recorder.apple_call` as its observer (infra/apple_client.py),
and token outcomes are counted by the token service's views around the core.

Under gunicorn, `PROMETHEUS_MULTIPROC_DIR` (set by gunicorn.conf.py before any worker starts)
makes prometheus_client keep each worker's values in files there, which `/metrics` sums
(siwa_web/ops/metrics.py). Without it the values live in this process only.

Labels stay bounded: every label value is a name from siwa-web's code (a route's URL rule, an
OAuth error code, a limit's setting name...), never request input, a user, a client or an IP.
The two values that come from requests, the HTTP method and the grant type, are mapped onto
fixed sets first.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

from flask import has_request_context
from flask import request
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram

if TYPE_CHECKING:
    from flask import Flask

EXTENSION = "siwa_metrics"
TOKEN_SETTING = "METRICS_TOKEN"
OTHER = "other"
UNMATCHED = "unmatched"  # a request no route matched (404, 405): never its raw path
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REGISTRY = CollectorRegistry(auto_describe=True)

# Request latencies of a few ms (a Bearer check) up to the Apple timeouts (seconds).
REQUEST_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
APPLE_BUCKETS = (.025, .05, .1, .25, .5, 1, 2, 4, 8, 16)

HTTP_REQUESTS = Counter(
    "siwa_http_requests", "Requests answered, by route (URL rule), method and status.",
    ["route", "method", "status"], registry=REGISTRY)
HTTP_DURATION = Histogram(
    "siwa_http_request_duration_seconds",
    "Time until the response is ready (its body not sent), by route and method.",
    ["route", "method"], buckets=REQUEST_BUCKETS, registry=REGISTRY)
TOKEN_GRANTS = Counter(
    "siwa_token_grants", "POST /oauth/token answers, by grant type and outcome "
    "(success or the OAuth error code).", ["grant_type", "outcome"], registry=REGISTRY)
BEARER_CHECKS = Counter(
    "siwa_bearer_checks", "Bearer access-token checks of the APIs, by outcome "
    "(success or the RFC 6750 error code; missing_token without credentials).",
    ["outcome"], registry=REGISTRY)
WEB_SIGN_INS = Counter(
    "siwa_web_sign_ins", "Browser sign-ins finished at Apple's callback, by outcome.",
    ["outcome"], registry=REGISTRY)
AUTHORIZE = Counter(
    "siwa_authorize_requests", "Answers of the web apps' authorization endpoint, by outcome.",
    ["outcome"], registry=REGISTRY)
APPLE_CALLS = Counter(
    "siwa_apple_requests", "Calls to Apple, by endpoint and outcome.",
    ["endpoint", "outcome"], registry=REGISTRY)
APPLE_DURATION = Histogram(
    "siwa_apple_request_duration_seconds", "Time of a call to Apple, by endpoint.",
    ["endpoint"], buckets=APPLE_BUCKETS, registry=REGISTRY)
RATE_LIMITED = Counter(
    "siwa_rate_limited", "Requests refused by a rate limit, by the limit's setting name.",
    ["limit"], registry=REGISTRY)


class Recorder:
    """Counts what happens into this process's metrics; one per app with metrics on.

    The series of the hot paths (a Bearer check, a grant, an authorization) are kept once
    looked up: `labels()` takes a lock and checks its arguments each time, which cost as much
    as the count itself. Label values are bounded, so the kept series are too.
    """

    enabled = True

    def __init__(self) -> None:
        self._series: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._series.get(key)
        if child is None:
            child = self._series[key] = metric.labels(*labels)
        return child

    def token_grant(self, grant_type: str, outcome: str) -> None:
        self._child(TOKEN_GRANTS, grant_type, outcome).inc()

    def bearer_check(self, outcome: str) -> None:
        self._child(BEARER_CHECKS, outcome).inc()

    def web_sign_in(self, outcome: str) -> None:
        WEB_SIGN_INS.labels(outcome).inc()

    def authorize(self, outcome: str) -> None:
        self._child(AUTHORIZE, outcome).inc()

    def rate_limited(self, setting: str) -> None:
        """`setting`: the limit's setting name, e.g. RATELIMIT_TOKEN_PER_IP (label token_per_ip)."""
        RATE_LIMITED.labels(setting.removeprefix("RATELIMIT_").lower()).inc()

    def apple_call(self, endpoint: str, outcome: str, seconds: float) -> None:
        """The Apple client's observer (siwa_web/apple/client.py names endpoint and outcome)."""
        APPLE_CALLS.labels(endpoint, outcome).inc()
        APPLE_DURATION.labels(endpoint).observe(seconds)


class Off(Recorder):
    """Metrics are off: nothing is counted."""

    enabled = False

    def token_grant(self, grant_type: str, outcome: str) -> None:
        pass

    def bearer_check(self, outcome: str) -> None:
        pass

    def web_sign_in(self, outcome: str) -> None:
        pass

    def authorize(self, outcome: str) -> None:
        pass

    def rate_limited(self, setting: str) -> None:
        pass

    def apple_call(self, endpoint: str, outcome: str, seconds: float) -> None:
        pass


OFF = Off()


def recorder(app: Flask | None = None) -> Recorder:
    """The recorder of `app` (default: the current app); `OFF` while its metrics are off."""
    if app is None:
        from flask import current_app

        app = current_app._get_current_object()  # type: ignore[attr-defined]
    return app.extensions.get(EXTENSION, OFF)


def is_enabled(config: dict) -> bool:
    return bool(config.get(TOKEN_SETTING))


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER


# --- request latency by route ------------------------------------------------------------------


class RequestTimer:
    """WSGI middleware: each request's time and status, by the URL rule Flask matched.

    Timing around the app covers every request hook and the session too; a pair of Flask
    before/after-request hooks would cost more. The matched rule is read when the app starts
    its response: Flask does that while the request is still current, and forgets the request
    right after. The time ends when the response is ready, before its body is sent.
    """

    def __init__(self, wsgi_app: Callable) -> None:
        self.wsgi_app = wsgi_app
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: list[tuple[str, Any]] = []

        def remember_status(line: str, headers: list, *exc_info: Any) -> Any:
            seen.append((line, request.url_rule if has_request_context() else None))
            return start_response(line, headers, *exc_info)

        try:
            return self.wsgi_app(environ, remember_status)
        finally:
            line, rule = seen[-1] if seen else ("500", None)
            self._observe(environ, line[:3], rule, time.perf_counter() - started)

    def _observe(self, environ: dict[str, Any], status: str, rule: Any, seconds: float) -> None:
        key = (rule.rule if rule is not None else UNMATCHED,
               method_label(environ.get("REQUEST_METHOD", "")), status)
        series = self._series.get(key)
        if series is None:  # bounded: routes x methods x the statuses the app answers
            series = self._series[key] = (HTTP_DURATION.labels(*key[:2]),
                                          HTTP_REQUESTS.labels(*key))
        series[0].observe(seconds)
        series[1].inc()


def init_app(app: Flask) -> None:
    """With metrics on: the app's recorder, and the request timer around the app."""
    if not is_enabled(app.config):
        return
    app.extensions[EXTENSION] = Recorder()
    app.wsgi_app = RequestTimer(app.wsgi_app)  # type: ignore[method-assign]
