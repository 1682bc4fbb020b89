"""Health probes for load balancers and Kubernetes: `GET /healthz` and `GET /readyz`.

`/healthz` says the process answers requests; it does no I/O at all. `/readyz` says this process
can do its work: the database answers `SELECT 1`, the token service's signing keys can be read
(never created: the first token request does that), and Redis answers when it holds the
rate-limit counters. 200 or 503, with one JSON entry per check; errors are fixed phrases and
exception class names, never a connection string or an exception's text.

Each dependency is asked in a daemon thread and waited for at most `HEALTH_CHECK_TIMEOUT`
seconds, so a hung database or Redis costs a 503 within that bound, not a request timeout.
Probes that arrive while a check is still running wait for that same check instead of starting
another: a hung dependency holds at most one thread (and one connection) per check and process.
On PostgreSQL the database check opens its own short-lived connection (connect and statement
timeouts set), so it neither waits behind busy requests for a pooled connection nor holds one.

Neither route writes, reads the session cookie, is rate limited or logged per call (the
development server's access log leaves them out; so does gunicorn's, which is off); a change
from ready to not ready and back is logged once each.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask.typing import ResponseReturnValue
from limits.storage import Storage
from limits.storage import storage_from_string
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from ..infra import logs
from ..infra import ratelimit_guard
from ..infra.extensions import db
from ..infra.extensions import limiter
from ..infra.nostore import no_store_json
from ..oauth.keys import KeyRing
from ..tokens.extension import EXTENSION as TOKEN_SERVICE
from ..web import sessions

log = logging.getLogger(__name__)

EXTENSION = "siwa_readiness"
TIMEOUT = "HEALTH_CHECK_TIMEOUT"
PATHS = ("/healthz", "/readyz")

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is alive: no database, no Redis, nothing that could be slow."""
    return no_store_json({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """The process can serve: every dependency answered within the time allowed."""
    readiness: Readiness = current_app.extensions[EXTENSION]
    ready, body = readiness.check()
    return no_store_json(body, 200 if ready else 503)


# --- what each check finds ----------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One check's answer: `public` goes into the JSON body as it is, so it names no secret."""

    ok: bool
    public: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, error: str, exc: BaseException | None = None) -> Result:
        public: dict[str, Any] = {"error": error}
        if exc is not None:
            public["cause"] = _cause(exc)
        return cls(False, public)


def _cause(exc: BaseException) -> str:
    """The driver's exception class when SQLAlchemy wrapped one (OperationalError, timeout...)."""
    inner = getattr(exc, "orig", None)
    return type(inner if isinstance(inner, BaseException) else exc).__name__


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def check_database(engine: Engine, keys: KeyRing) -> Callable[[dict[str, Result]], None]:
    """`SELECT 1`, then the signing keys, which are read from the same database."""

    def run(results: dict[str, Result]) -> None:
        started = time.monotonic()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1").scalar_one()
        except Exception as exc:  # noqa: BLE001 - whatever the driver raised, it did not answer
            results["database"] = Result.failed("SELECT 1 failed", exc)
            results["signing_keys"] = Result.failed("not checked: the database did not answer")
            return
        results["database"] = Result(True, {"ms": _ms(started)})
        results["signing_keys"] = check_signing_keys(keys)

    return run


def check_signing_keys(keys: KeyRing) -> Result:
    """The key ring's published keys, re-read when its cache is stale; never creates a key."""
    try:
        published = keys.published()
    except ValueError as exc:  # TokenCipher: no configured key opens the signing key
        return Result.failed("the signing key cannot be decrypted: check TOKEN_ENCRYPTION_KEYS",
                             exc)
    except Exception as exc:  # noqa: BLE001
        return Result.failed("the signing keys could not be read", exc)
    signer = next((k for k in published if k.status == "signing" and k.private is not None),
                  None)
    public: dict[str, Any] = {"published": len(published)}
    if signer is not None:
        public["signing_kid"] = signer.kid
    else:
        public["note"] = "no signing key yet: the first token request creates one"
    return Result(True, public)


def check_redis(storage: Storage) -> Callable[[dict[str, Result]], None]:
    """PING through a client of the rate-limit store with short socket timeouts."""

    def run(results: dict[str, Result]) -> None:
        started = time.monotonic()
        try:
            answered = storage.check()  # True, or False for any error (limits catches them)
        except Exception:  # noqa: BLE001
            answered = False
        results["redis"] = (Result(True, {"ms": _ms(started)}) if answered
                            else Result.failed("PING failed"))

    return run


# --- running checks with a deadline ------------------------------------------------------------


class _Flight:
    """One run of a probe: the results it has so far, and whether it has finished."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.results: dict[str, Result] = {}


class Probe:
    """A check of one dependency (giving results under `names`), run by one thread at a time."""

    def __init__(self, name: str, names: tuple[str, ...],
                 run: Callable[[dict[str, Result]], None]) -> None:
        self.name = name
        self.names = names
        self._run = run
        self._lock = threading.Lock()
        self._flight: _Flight | None = None

    def start(self) -> _Flight:
        """Start a run, or join the one in flight (a hung dependency holds one thread only)."""
        with self._lock:
            flight = self._flight
            if flight is None or flight.done.is_set():
                flight = self._flight = _Flight()
                threading.Thread(target=self._fly, args=(flight,), daemon=True,
                                 name=f"siwa-readyz-{self.name}").start()
            return flight

    def _fly(self, flight: _Flight) -> None:
        try:
            self._run(flight.results)
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave the flight open
            for name in self.names:
                flight.results.setdefault(name, Result.failed("the check itself failed", exc))
        finally:
            flight.done.set()


class Readiness:
    """The probes of one app and what the last answer was (to log changes, not every call)."""

    def __init__(self, probes: list[Probe], timeout: float) -> None:
        self.probes = probes
        self.timeout = timeout
        self._ready: bool | None = None
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, dict[str, Any]]:
        """Run every probe at once; wait for each until the shared deadline."""
        deadline = time.monotonic() + self.timeout
        flights = [(probe, probe.start()) for probe in self.probes]
        results: dict[str, Result] = {}
        for probe, flight in flights:
            flight.done.wait(max(0.0, deadline - time.monotonic()))
            silent = Result.failed(f"no answer within {self.timeout:g} s")
            first, *after = probe.names
            results[first] = flight.results.get(first) or silent
            for name in after:  # asked only once the first one answered
                results[name] = flight.results.get(name) or (
                    silent if first in flight.results
                    else Result.failed(f"not checked: no answer from the {first} yet"))
        failed = [name for name, result in results.items() if not result.ok]
        self._note(results, failed)
        body: dict[str, Any] = {"status": "not ready" if failed else "ready"}
        if failed:
            body["failed"] = failed
        body["checks"] = {name: {"ok": r.ok, **r.public} for name, r in results.items()}
        return not failed, body

    def _note(self, results: dict[str, Result], failed: list[str]) -> None:
        """Log when readiness changes (the first answer too, if it is "not ready")."""
        with self._lock:
            before, self._ready = self._ready, not failed
        if failed and before is not False:
            log.warning("not ready: %s", "; ".join(
                f"{name} ({results[name].public.get('cause') or results[name].public['error']})"
                for name in failed), extra={"event": "readiness_lost"})
        elif not failed and before is False:
            log.info("ready again", extra={"event": "readiness_restored"})


# --- wiring -------------------------------------------------------------------------------------


def probe_engine(app: Flask, timeout: float) -> Engine:
    """The engine the database check uses.

    PostgreSQL: a connection of its own per check (NullPool) with libpq's connect timeout (whole
    seconds, at least 2) and a server-side statement timeout; the thread's deadline bounds the
    rest (a server that accepted the connection and went silent). SQLite: the app's own engine;
    a fresh connection to a missing file would create it.
    """
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        return engine
    options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
    connect_args = dict(options.get("connect_args") or {})
    statement_timeout = f"-c statement_timeout={max(1, int(timeout * 1000))}"
    configured = connect_args.get("options") or engine.url.query.get("options")
    if isinstance(configured, tuple):  # `?options=` given twice in the URL
        configured = " ".join(configured)
    connect_args["options"] = " ".join(filter(None, [configured, statement_timeout]))
    connect_args["connect_timeout"] = max(2, math.ceil(timeout))
    return create_engine(engine.url, poolclass=NullPool, connect_args=connect_args)


def redis_storage(app: Flask, timeout: float) -> Storage | None:
    """A client of the rate-limit store when that is Redis (any redis scheme), else None."""
    uri = str(app.config.get("RATELIMIT_STORAGE_URI") or "")
    if not uri.split(":", 1)[0].startswith("redis"):
        return None
    options = dict(app.config.get("RATELIMIT_STORAGE_OPTIONS") or {})
    options.update(ratelimit_guard.redis_options(timeout, timeout))  # and never retried
    return storage_from_string(uri, **options)


def init_app(app: Flask) -> None:
    """The two routes, and the probes /readyz runs (built now; nothing connects yet)."""
    try:
        timeout = float(app.config[TIMEOUT])
    except (TypeError, ValueError):
        timeout = -1.0
    if not 0 < timeout <= 60:
        raise ValueError(f"{TIMEOUT} must be a number of seconds above 0 (at most 60)")
    keys = app.extensions[TOKEN_SERVICE].keys
    probes = [Probe("database", ("database", "signing_keys"),
                    check_database(probe_engine(app, timeout), keys))]
    storage = redis_storage(app, timeout)
    if storage is not None:
        probes.append(Probe("redis", ("redis",), check_redis(storage)))
    app.extensions[EXTENSION] = Readiness(probes, timeout)
    limiter.exempt(bp)  # a probe is never refused for asking too often (default, app limits)
    app.register_blueprint(bp)
    sessions.without_session(app, *PATHS)
    logs.quiet_access_log(*PATHS)
