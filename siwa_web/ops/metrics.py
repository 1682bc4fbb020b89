"""`GET /metrics`: the Prometheus text format, for a scraper presenting `METRICS_TOKEN`.

Why a Bearer token and not a separate listening address: siwa-web runs as one WSGI app behind
gunicorn (gunicorn.conf.py binds the public sockets, one per worker), so a second bind would
reach the same app and could not be told apart inside it without trusting the proxy's headers;
a token works the same behind any proxy and in any container. Without `METRICS_TOKEN` the route
is not registered at all (404, like any unknown path) and nothing is counted
(siwa_web/infra/metrics.py). A missing or wrong token gets 401 with a `WWW-Authenticate`
challenge; the token is compared in constant time and never logged.

The route is not rate limited (a scraper asks every few seconds), not in the access log, reads
no session cookie and never touches the database except for the outbox gauges, which are
computed here when a scrape asks for them: one query per outbox on its partial index of unsent
rows, with a one-second statement timeout on PostgreSQL, and cached for
`METRICS_OUTBOX_CACHE_SECONDS` in each worker, so a scraper (or several) costs the database at
most one such query per outbox and worker in that time.

Under gunicorn (`PROMETHEUS_MULTIPROC_DIR` set, see gunicorn.conf.py) the counters of every
worker, including workers that have exited since the master started, are read from that
directory and summed, whichever worker answers the scrape.
"""
from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import request
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..infra import logs
from ..infra import metrics
from ..infra.extensions import db
from ..infra.extensions import limiter
from ..lifecycle.backchannel import BACKCHANNEL_LOGOUTS
from ..lifecycle.outbox import Outbox
from ..lifecycle.revocations import APPLE_REVOCATIONS
from ..models.base import now_utc
from ..web import sessions

log = logging.getLogger(__name__)

PATH = "/metrics"
EXTENSION = "siwa_metrics_outboxes"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REALM = "siwa-metrics"
QUERY_TIMEOUT_MS = 1000
OUTBOXES = (APPLE_REVOCATIONS, BACKCHANNEL_LOGOUTS)

bp = Blueprint("metrics", __name__)


@bp.get(PATH)
def scrape() -> ResponseReturnValue:
    """Every metric of every worker, in the Prometheus text format."""
    if not _authorized(request.headers.get("Authorization"), current_app.config):
        error = ', error="invalid_token"' if request.headers.get("Authorization") else ""
        return Response(
            '{"error": "invalid_token"}\n', 401, mimetype="application/json",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"{error}',
                     "Cache-Control": "no-store"})
    body = generate_latest(Scrape(current_app.extensions[EXTENSION]))
    return Response(body, 200, content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def _authorized(header: str | None, config: dict) -> bool:
    """`Authorization: Bearer <METRICS_TOKEN>`, compared in constant time."""
    expected = config.get(metrics.TOKEN_SETTING)
    if not expected or not header:
        return False
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


class Scrape:
    """What one scrape reads: the counters (this process's, or all workers') and the outboxes."""

    def __init__(self, outboxes: OutboxGauges) -> None:
        self.outboxes = outboxes

    def collect(self) -> Iterator[Metric]:
        yield from counters().collect()
        yield from self.outboxes.collect()


def counters() -> Collector:
    """All workers' values under gunicorn (`PROMETHEUS_MULTIPROC_DIR`), else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return metrics.REGISTRY


# --- outbox gauges ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Depth:
    """An outbox's unsent rows: how many, and when the oldest was written (None: none)."""

    pending: int
    oldest: datetime | None


def read_depth(engine: Engine, outbox: Outbox) -> Depth:
    """One query on the outbox's partial index of unsent rows (`ix_<table>_pending`)."""
    model = outbox.model
    stmt = select(func.count(), func.min(model.created_at)).where(model.sent_at.is_(None))
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {QUERY_TIMEOUT_MS}")
        count, oldest = conn.execute(stmt).one()
        conn.rollback()
    return Depth(int(count or 0), oldest)


class OutboxGauges:
    """The outboxes' depth and oldest age, read at most once per `ttl` seconds per process.

    Scrapes that arrive while a read runs wait for it (bounded by the statement timeout) and
    share its answer. A failed read is logged once, until a read succeeds again, and shows as
    `siwa_outbox_stats_up 0` without depth gauges (a stale number would look healthy).
    """

    def __init__(self, engine: Engine, outboxes: tuple[Outbox, ...], ttl: float) -> None:
        self.engine = engine
        self.outboxes = outboxes
        self.ttl = ttl
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._depths: dict[str, Depth] | None = None
        self._failing = False

    def depths(self) -> dict[str, Depth] | None:
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                self._depths = self._read()
                self._read_at = time.monotonic()
            return self._depths

    def _read(self) -> dict[str, Depth] | None:
        try:
            found = {box.event: read_depth(self.engine, box) for box in self.outboxes}
        except Exception as exc:  # noqa: BLE001 - whatever failed, the scrape must still answer
            if not self._failing:
                log.warning("outbox gauges could not be read: %s", type(exc).__name__,
                            extra={"event": "metrics_outbox_failed"})
            self._failing = True
            return None
        self._failing = False
        return found

    def collect(self) -> Iterator[Metric]:
        depths = self.depths()
        up = GaugeMetricFamily("siwa_outbox_stats_up",
                               "1 if the outbox gauges could be read from the database, else 0.")
        up.add_metric([], 1 if depths is not None else 0)
        yield up
        if depths is None:
            return
        pending = GaugeMetricFamily("siwa_outbox_pending", "Rows not yet sent, by outbox.",
                                    labels=["outbox"])
        age = GaugeMetricFamily(
            "siwa_outbox_oldest_pending_age_seconds",
            "Age of the oldest row not yet sent, by outbox (0 when none waits).",
            labels=["outbox"])
        now = now_utc()
        for name, depth in depths.items():
            pending.add_metric([name], depth.pending)
            waited = (now - depth.oldest).total_seconds() if depth.oldest is not None else 0.0
            age.add_metric([name], max(0.0, waited))
        yield pending
        yield age


def init_app(app: Flask) -> None:
    """Register `/metrics` only when `METRICS_TOKEN` is set; otherwise it does not exist."""
    if not metrics.is_enabled(app.config):
        return
    with app.app_context():
        engine = db.engine
    app.extensions[EXTENSION] = OutboxGauges(
        engine, OUTBOXES, float(app.config["METRICS_OUTBOX_CACHE_SECONDS"]))
    limiter.exempt(bp)  # a scraper is never refused for asking often
    app.register_blueprint(bp)
    sessions.without_session(app, PATH)
    logs.quiet_access_log(PATH)
