#!/usr/bin/env python3
"""Benchmark siwa-web's token service against floors measured in the same run.

    .venv/bin/python bench/tokens.py          # full run (~15 min): 9 rounds, SQLite, PostgreSQL,
                                              # then rewrites the results in docs/performance.md
    .venv/bin/python bench/tokens.py --quick  # smoke run (~2 min); docs left alone

What runs, all on 127.0.0.1:

* siwa-web under gunicorn with the production settings (`gunicorn -c gunicorn.conf.py app:app`,
  SIWA_ENV=production, its own database, migrated with `flask db upgrade`, one native client
  and one first-party confidential web client registered with `flask clients create`);
* the floors (bench/floors.py) under the same gunicorn settings, on the same database;
* Apple: siwa-web's emulator (bench/apple.py), one process, with a switchable delay on its
  token endpoint;
* wrk, one thread, keep-alive connections (`-t1 -c16 -d5s` by default, 9 rounds), after a warm-up.

Each round measures, floor and real side by side (their order alternates between rounds):
the verify floor and `GET /api/me`; the minimal-refresh floor and the refresh grant, with a web
app's code flow right beside the grant (floor, grant, code flow; in even rounds the reverse);
then the token exchange with Apple answering at once (the CPU ceiling) and with 100 ms of added
latency (with as many connections as the server has worker slots, so the client is not the
limit). With `--metrics`, a second siwa-web server on the same database has METRICS_TOKEN set
(Prometheus metrics on, GET /metrics): /api/me and the refresh grant are measured on it too,
right beside the same requests on the server without metrics, for the overhead ratio.
The bare-Flask and one-signature floors are measured once, in the first round of the first
database (they do not touch it). Targets are medians over the rounds of real ÷ floor; the code
flow's yardstick is the refresh grant (code flow iterations/s ÷ refresh grants/s).

Single-use inputs are prepared before every wrk run: Apple codes are minted through the
emulator's `POST /__emulator/native/authorize` and fed to wrk one per request
(bench/bodies.lua); refresh tokens come from real exchanges (or, for the floor, from its table)
and are chained by bench/chain.lua, each response's new token being used by a later request.
The code flow needs none: one iteration is `GET /oauth/authorize` with a signed-in browser's
session cookie (a fresh state and nonce, a PKCE S256 challenge), whose 303 carries the code that
the next request redeems with `POST /oauth/token` (bench/codeflow.lua). The browser is signed in
once per database, through the real flow (the emulator answering its sign-in page headlessly),
and its cookie reused by every authorization.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import html
import json
import os
import re
import runpy
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
# The siwa_web this script imports (HTTP session, SQLite gate of the floors) is the one of the
# checkout it measures, which its servers import too (they run with this checkout as their
# working directory), not whichever one the virtualenv was installed from.
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

import harness  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
from harness import BenchError  # noqa: E402
from harness import Server  # noqa: E402

BUNDLE_ID = "com.example.siwa.bench"
ISSUER = "https://siwa-bench.invalid"  # production wants https; served as plain HTTP on loopback
# Every request names ISSUER's host, as a reverse proxy forwards it: production answers browser
# pages on that host only (siwa_web/web/host.py), and the check's cost belongs in the numbers.
ISSUER_HOST = urllib.parse.urlsplit(ISSUER).netloc
AUDIENCE = ISSUER + "/api"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
APPLE_CODE = "http://auth0.com/oauth/token-type/apple-authz-code"
SCOPE = "openid profile email offline_access"
APPLE_USERS = 200  # distinct Apple IDs the exchanges round-robin over
WEB_REDIRECT = "https://app.siwa-bench.invalid/callback"  # the web app's; never followed
CODE_SCOPE = "openid profile email offline_access"  # the code flow's: a refresh token too
PKCE_PAIRS = 64  # verifier/challenge pairs the code flow's authorizations take in turn
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STALL_SECONDS = 3  # this long without a single answer during a run means the server hung
METRICS_TOKEN = "bench-metrics-" + secrets.token_hex(16)  # the metrics-on server's scrape token
DEFAULT_DOC = ROOT / "docs" / "performance.md"


@dataclass
class Options:
    rounds: int = 9
    duration: float = 5.0
    warmup: float = 1.0
    connections: int = 16
    latency: float = 0.100
    backends: tuple[str, ...] = ("sqlite", "postgres")
    pg_admin_url: str = PG_ADMIN_URL
    doc: Path | None = DEFAULT_DOC
    json_path: Path | None = None
    keep: bool = False
    quick: bool = False
    install_wrk: bool = True
    groups: tuple[str, ...] = ("context", "api", "refresh", "code", "exchange")
    metrics: bool = False  # also measure /api/me and the refresh grant with metrics on
    app_settings: tuple[tuple[str, str], ...] = ()  # what-if overrides (SIWA_<KEY>=<VALUE>)
    # HTTP servers to measure side by side (bench/servers.py); the first is the baseline.
    servers: tuple[str, ...] = ("gunicorn",)


@dataclass
class Measurement:
    backend: str
    round: int
    case: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    connections: int
    non2xx: int
    timeouts: int
    socket_errors: int
    server_cpu_us: float  # CPU of the measured gunicorn (master + workers) per request
    apple_cpu_us: float  # CPU of the emulator per request (exchange cases)
    pg_cpu_us: float  # CPU of PostgreSQL's processes per request
    wrk_cores: float  # CPU of wrk, in cores
    busy_cores: float  # whole machine: app + Apple + database + wrk + anything else
    other_cores: float  # busy cores that none of the above used: other people's jobs (noise)
    notes: dict[str, str] = field(default_factory=dict)
    server: str = "gunicorn"  # the HTTP server app and floors ran under (bench/servers.py)

    @property
    def clean(self) -> bool:
        return not (self.non2xx or self.timeouts or self.socket_errors
                    or self.notes.get("starved", "0") != "0" or "stalled" in self.notes
                    or self.notes.get("unexpected", "0") != "0")


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        prog="bench/tokens.py",
        description="Benchmark siwa-web's token service (refresh grant, /api/me, web apps' "
                    "code flow, token exchange) "
                    "against floors measured in the same run; SQLite (WAL) and PostgreSQL.",
        epilog="Gunicorn settings come from gunicorn.conf.py (GUNICORN_WORKERS, GUNICORN_THREADS). "
               "Results go to docs/performance.md (between its bench:results markers) after a "
               "full run; --quick leaves the file alone unless --doc is given.",
    )
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round of 3 s runs after 1 s warm-ups (~2 min)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 9; quick: 1)")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 5; quick: 3)")
    p.add_argument("--warmup", type=float,
                   help="seconds of warm-up before each run (default 1)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--latency-ms", type=float, default=100.0,
                   help="added Apple latency for the second exchange case (default 100)")
    p.add_argument("--backends", default="sqlite,postgres",
                   help="comma-separated: sqlite, postgres (default both)")
    p.add_argument("--pg-admin-url", default=PG_ADMIN_URL,
                   help="PostgreSQL server to create the throw-away database on "
                        f"(default {PG_ADMIN_URL})")
    p.add_argument("--doc", type=Path, help="markdown file to write the results into "
                   "(default docs/performance.md for a full run)")
    p.add_argument("--no-doc", action="store_true", help="do not write any markdown file")
    p.add_argument("--json", type=Path, dest="json_path",
                   help="also write every measurement as JSON")
    p.add_argument("--only", help="comma-separated subset of the case groups, for investigating: "
                   "context (bare Flask and sign floors), api (verify floors and /api/me), "
                   "refresh, code (the code flow, with the refresh grant it is compared "
                   "with), exchange; targets of groups not run are reported as not measured")
    p.add_argument("--metrics", action="store_true",
                   help="also run /api/me and the refresh grant on a second server with "
                        "Prometheus metrics on (METRICS_TOKEN set), each beside the same case "
                        "without metrics; reports their targets and the on ÷ off ratios")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="app_settings",
                   help="what-if: run siwa-web with SIWA_KEY=VALUE on top of the production "
                        "settings (repeatable), e.g. "
                        "--set 'SQLALCHEMY_ENGINE_OPTIONS={\"pool_size\": 32}'; "
                        "the report says the run was not the production configuration")
    p.add_argument("--servers", default="gunicorn",
                   help="comma-separated HTTP servers to run app and floors under, side by side "
                        f"in every round ({', '.join(servers.KINDS)}; default gunicorn). With "
                        "more than one, each round starts every server's app and floors afresh, "
                        "measures them in turn (order alternating), and the report adds each "
                        "case's rate under the others ÷ under the first; such runs leave "
                        "docs/performance.md alone unless --doc is given")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch directory (logs, databases)")
    p.add_argument("--no-install", action="store_true",
                   help="fail instead of apt-get installing wrk")
    a = p.parse_args(argv)
    backends = tuple(b.strip() for b in a.backends.split(",") if b.strip())
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown or not backends:
        p.error(f"unknown backend(s): {', '.join(sorted(unknown)) or '(none given)'}")
    opts = Options(
        rounds=a.rounds or (1 if a.quick else 9),
        duration=a.duration or (3.0 if a.quick else 5.0),
        warmup=a.warmup if a.warmup is not None else 1.0,
        connections=a.connections, latency=a.latency_ms / 1000.0, backends=backends,
        pg_admin_url=a.pg_admin_url, json_path=a.json_path, keep=a.keep, quick=a.quick,
        install_wrk=not a.no_install, metrics=a.metrics,
    )
    for item in a.app_settings:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("SIWA_")
        if not sep or not key or not key.replace("_", "").isalnum():
            p.error(f"--set wants KEY=VALUE, got {item!r}")
        opts.app_settings += ((key.upper(), value),)
    if a.only:
        groups = tuple(g.strip() for g in a.only.split(",") if g.strip())
        bad = set(groups) - set(Options.groups)
        if bad or not groups:
            p.error(f"unknown group(s) for --only: {', '.join(sorted(bad)) or '(none given)'}")
        opts.groups = groups
    kinds = tuple(k.strip() for k in a.servers.split(",") if k.strip())
    if not kinds or set(kinds) - set(servers.KINDS) or len(set(kinds)) != len(kinds):
        p.error(f"--servers wants distinct names from {', '.join(servers.KINDS)}, "
                f"got {a.servers!r}")
    opts.servers = kinds
    if opts.rounds < 1 or opts.duration < 1 or opts.connections < 1 or opts.latency <= 0:
        p.error("rounds, duration and connections must be positive, latency above 0")
    if a.no_doc:
        opts.doc = None
    elif a.doc is not None:
        opts.doc = a.doc
    else:
        opts.doc = None if a.quick or len(kinds) > 1 else DEFAULT_DOC
    return opts


def gunicorn_settings() -> dict[str, Any]:
    """workers/threads as gunicorn.conf.py resolves them from the environment."""
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    return {"workers": int(conf["workers"]), "threads": int(conf["threads"]),
            "worker_class": conf["worker_class"]}


def code_version() -> str:
    """Which siwa-web code is measured: the commit, whether it has local changes, and a hash
    of the package's Python files as they are right now (the checkout is shared and busy)."""
    import hashlib
    import subprocess

    digest = hashlib.sha256()
    for path in sorted((ROOT / "siwa_web").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "siwa_web", "app.py",
                                "migrations", "gunicorn.conf.py"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", ""
    changes = " + uncommitted changes" if dirty else ""
    return f"{head or 'unknown'}{changes} (siwa_web/*.py sha256 {digest.hexdigest()[:12]})"


def new_ec_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def form(fields: dict[str, str]) -> str:
    return urllib.parse.urlencode(fields)


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def with_host(args: dict[str, Any]) -> dict[str, Any]:
    """wrk arguments plus ISSUER's Host header (wrk's scripts take it from `wrk.headers`)."""
    return {**args, "headers": (*args.get("headers", ()), "Host: " + ISSUER_HOST)}


def set_cookies(response: Any) -> dict[str, str]:
    """name -> value of every cookie a response sets (read from the raw headers: our cookies
    are Secure, which a cookie jar would never send back over plain HTTP)."""
    from http.cookies import SimpleCookie

    found: dict[str, str] = {}
    for header in response.raw.headers.getlist("Set-Cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update({name: morsel.value for name, morsel in jar.items()})
    return found


def jwt_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (only to check what the bench asked for came back)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Http:
    """A small keep-alive client pool for set-up calls (minting, seeding), not for measuring.

    Connections idle for a second are reopened before use: gunicorn closes keep-alive
    connections after 2 s, and a request sent as it does so fails with a reset (a full run
    once died of it minting a token after the exchange rounds). siwa-web's Apple client
    guards against the same race the same way.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def session(self):
        s = getattr(self._local, "s", None)
        if s is None:
            from siwa_web.apple.http import session

            s = self._local.s = session(idle_seconds=1.0, pool_size=4)
        return s

    def post(self, url: str, **kw):
        return self.session().post(url, timeout=60, **kw)

    def get(self, url: str, **kw):
        return self.session().get(url, timeout=60, **kw)


class Bench:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.work = Path(tempfile.mkdtemp(prefix="siwa-bench-"))
        self.http = Http()
        self.servers: list[Server] = []
        self.pg_databases: list[str] = []
        self.measurements: list[Measurement] = []
        self.skipped: dict[str, str] = {}
        self.gunicorn = gunicorn_settings()
        self.slots = self.gunicorn["workers"] * self.gunicorn["threads"]
        self.exchange_connections = min(max(self.slots, opts.connections), 256)
        self.apple_key = new_ec_pem()
        self.floor_key = new_ec_pem()
        self.apple: Server | None = None
        self.apple_users: list[str] = []
        self.rate_hint: dict[str, float] = {}
        self.code_versions: dict[str, str] = {}
        self.thread_counts: dict[str, list[int]] = {}
        self.server_kind = opts.servers[0]

    # --- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        opts = self.opts
        harness.ensure_wrk(install=opts.install_wrk)
        pg_url = opts.pg_admin_url if "postgres" in opts.backends else None
        self.machine = harness.machine_description(pg_url)
        self.log(f"scratch directory {self.work}; gunicorn {self.gunicorn['workers']} workers x "
                 f"{self.gunicorn['threads']} threads ({self.slots} slots); wrk -t1 "
                 f"-c{opts.connections} -d{opts.duration:g}s after {opts.warmup:g}s warm-up; "
                 f"{opts.rounds} round(s)")
        started = time.monotonic()
        try:
            self.start_apple()
            for index, backend in enumerate(opts.backends):
                db_url = self.make_database(backend)
                if db_url is None:
                    continue
                self.run_backend(backend, db_url, context=index == 0 or not self.measurements)
        finally:
            self.cleanup()
        elapsed = time.monotonic() - started
        settings = self.settings_description(elapsed)
        kinds = opts.servers
        summaries = {}
        for kind in kinds:
            ms = [m for m in self.measurements if m.server == kind]
            summaries[kind] = report.summarize(ms, slots=self.slots, latency=opts.latency,
                                               skipped=self.skipped)
            print()
            if len(kinds) > 1:
                print(f"######## under {kind} ########")
            print(report.render_text(summaries[kind], dict(settings, gunicorn=(
                settings["gunicorn"] if kind == "gunicorn" else settings["servers"][kind]))))
        passed = all(s.all_passed for s in summaries.values())
        comparison: list[report.ServerRatio] = []
        if len(kinds) > 1:
            comparison = report.compare_servers(self.measurements, kinds, opts.latency)
            print()
            print(report.render_comparison(comparison, kinds[0]))
            print()
            print(report.render_comparison(comparison, kinds[0], markdown=True))
            passed = passed and all(r.verdict != "FAIL" for r in comparison)
        if opts.json_path:
            opts.json_path.write_text(json.dumps({
                "machine": self.machine, "settings": settings,
                "measurements": [asdict(m) for m in self.measurements],
                "servers_compared": [asdict(r) | {"median": r.median, "verdict": r.verdict}
                                     for r in comparison],
            }, indent=1))
            self.log(f"raw measurements written to {opts.json_path}")
        if opts.doc:
            report.update_doc(opts.doc, report.render_markdown(summaries[kinds[0]], self.machine,
                                                                settings))
            self.log(f"results written to {opts.doc}")
        return 0 if passed else 1

    def settings_description(self, elapsed: float) -> dict[str, Any]:
        o = self.opts
        return {
            "gunicorn": f"gunicorn -c gunicorn.conf.py: {self.gunicorn['worker_class']}, "
                        f"{self.gunicorn['workers']} workers x {self.gunicorn['threads']} threads "
                        f"= {self.slots} slots",
            "wrk": f"wrk -t1 -c{o.connections} -d{o.duration:g}s --latency --timeout=2s, "
                   f"{o.warmup:g}s warm-up (same connections) before every run",
            "servers": {kind: self.server_description(kind) for kind in o.servers},
            "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "exchange_connections": self.exchange_connections,
            "latency_ms": o.latency * 1000,
            "rounds": o.rounds,
            "quick": o.quick,
            "elapsed_s": round(elapsed),
            "slots": self.slots,
            "app_settings": [f"SIWA_{k}={v}" for k, v in o.app_settings],
            "code": self.code_versions,
            "groups": list(o.groups) + (["metrics"] if o.metrics else []),
            "threads_per_worker": self.thread_counts,
        }

    def server_description(self, kind: str) -> str:
        w, t = self.gunicorn["workers"], self.gunicorn["threads"]
        if kind == "granian":
            return (f"granian --interface wsgi: {w} workers x {t} blocking threads = {self.slots} "
                    f"slots, 1 runtime thread, HTTP/1, gc.freeze after load")
        return f"gunicorn -c gunicorn.conf.py: {self.gunicorn['worker_class']}, {w} x {t}"

    def cleanup(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        for name in self.pg_databases:
            try:
                self.pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001 - report and go on cleaning
                self.log(f"could not drop database {name}: {exc}")
        self.pg_databases.clear()
        if self.opts.keep:
            self.log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    @staticmethod
    def log(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    # --- databases ---------------------------------------------------------------------------

    def pg_admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.opts.pg_admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def make_database(self, backend: str) -> str | None:
        if backend == "sqlite":
            return f"sqlite:///{self.work / 'siwa-bench.sqlite'}"
        name = f"siwa_bench_{os.getpid()}_{secrets.token_hex(3)}"
        try:
            self.pg_admin(f'CREATE DATABASE "{name}"')
        except Exception as exc:  # noqa: BLE001 - any connection problem means: skip, loudly
            reason = (f"PostgreSQL not reachable at {self.opts.pg_admin_url}: "
                      f"{type(exc).__name__}: {exc}")
            self.log("SKIPPING PostgreSQL: " + reason)
            self.skipped["postgres"] = reason
            return None
        self.pg_databases.append(name)
        parts = urllib.parse.urlsplit(self.opts.pg_admin_url)
        return urllib.parse.urlunsplit(
            ("postgresql+psycopg", parts.netloc, "/" + name, parts.query, ""))

    # --- servers -----------------------------------------------------------------------------

    def app_env(self, db_url: str, app_port: int) -> dict[str, str]:
        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if not k.startswith("SIWA_")}
        env.update({
            "SIWA_ENV": "production",
            "SIWA_SECRET_KEY": secrets.token_urlsafe(48),
            "SIWA_TOKEN_ENCRYPTION_KEYS": json.dumps([Fernet.generate_key().decode()]),
            "SIWA_SQLALCHEMY_DATABASE_URI": db_url,
            "SIWA_ISSUER": ISSUER,
            "SIWA_APPLE_TEAM_ID": "BENCHTEAM1",
            "SIWA_APPLE_KEY_ID": "BENCHKEY01",
            "SIWA_APPLE_SERVICES_ID": "com.example.siwa.bench.web",
            "SIWA_APPLE_PRIVATE_KEY": self.apple_key,
            "SIWA_APPLE_BASE_URL": self.apple.base_url if self.apple else "http://127.0.0.1:9",
            "SIWA_APPLE_EMULATOR": "false",
            # The limiter stays on (its cost is part of the endpoint) but must not throttle wrk.
            "SIWA_RATELIMIT_TOKEN_PER_IP": "100000000/minute",
            "SIWA_RATELIMIT_TOKEN_PER_CLIENT": "100000000/minute",
            "SIWA_RATELIMIT_AUTHORIZE_PER_IP": "100000000/minute",
            "BENCH_DB_URL": db_url,
            "BENCH_FLOOR_KEY_PEM": self.floor_key,
            "BENCH_ISSUER": ISSUER,
            "BENCH_AUDIENCE": AUDIENCE,
            "BENCH_BUNDLE_IDS": BUNDLE_ID,
            "PYTHONUNBUFFERED": "1",
        })
        for key, value in self.opts.app_settings:
            env["SIWA_" + key] = value
        return env

    def start_gunicorn(self, name: str, target: str, env: dict[str, str], port: int,
                 extra: list[str] | None = None, ready: str = "/") -> Server:
        argv = [harness.venv_bin("gunicorn"), *(extra or ["-c", str(ROOT / "gunicorn.conf.py")]),
                "--no-control-socket", "-b", f"{harness.HOST}:{port}", target]
        server = Server(name, argv, env=env, cwd=ROOT, log=self.work / f"{name}.log", port=port)
        self.servers.append(server)
        return server.start(ready_path=ready)

    def start_server(self, kind: str, name: str, target: str, env: dict[str, str], port: int,
                     ready: str) -> Server:
        """siwa-web (`target` 'app') or the floors ('floors') under HTTP server `kind`."""
        binary = harness.venv_bin(kind)
        how = servers.launch(kind, binary=binary, target=target, host=harness.HOST, port=port,
                             workers=self.gunicorn["workers"], threads=self.gunicorn["threads"],
                             root=ROOT, bench_dir=BENCH_DIR, conf=ROOT / "gunicorn.conf.py")
        server = Server(name, how.argv, env={**env, **how.env}, cwd=ROOT,
                        log=self.work / f"{name}.log", port=port, stop_signal=how.stop_signal,
                        workers=how.workers)
        self.servers.append(server)
        return server.start(ready_path=ready)

    def start_pair(self, kind: str, backend: str, env: dict[str, str]) -> None:
        """siwa-web and the floors under server `kind`, each on a fresh port."""
        tag = "" if len(self.opts.servers) == 1 else f"-{kind}"
        self.server_kind = kind
        self.app = self.start_server(kind, f"app-{backend}{tag}", "app", env, harness.free_port(),
                                     ready="/.well-known/openid-configuration")
        self.floor = self.start_server(kind, f"floors-{backend}{tag}", "floors", env,
                                       harness.free_port(), ready="/hello")
        if self.opts.metrics:
            self.app_metrics = self.start_server(
                kind, f"app-metrics-{backend}{tag}", "app",
                dict(env, SIWA_METRICS_TOKEN=METRICS_TOKEN), harness.free_port(),
                ready="/.well-known/openid-configuration")

    def stop_pair(self) -> None:
        for server in (self.floor, self.app, self.app_metrics):
            if server is None:
                continue
            server.stop()
            if server in self.servers:
                self.servers.remove(server)

    def start_apple(self) -> None:
        port = harness.free_port()
        env = self.app_env("sqlite://", 0)
        env["BENCH_APPLE_BASE_URL"] = f"http://{harness.HOST}:{port}"
        self.apple = self.start_gunicorn(
            "apple", "apple:create_app()", env, port,
            extra=["-w", "1", "-k", "gthread",
                   "--threads", str(max(128, 2 * self.exchange_connections)),
                   "--pythonpath", str(BENCH_DIR)],
            ready="/__bench/latency",
        )
        self.set_latency(0)
        for i in range(APPLE_USERS):
            r = self.http.post(self.apple.base_url + "/__emulator/users",
                               json={"email": f"bench{i}@example.com", "first_name": "Bench",
                                     "last_name": f"User{i}"})
            if r.status_code != 201:
                raise BenchError(
                    f"emulator refused to create a user: {r.status_code} {r.text[:200]}")
            self.apple_users.append(r.json()["id"])
        self.log(f"Apple emulator on {self.apple.base_url} with {APPLE_USERS} users")

    def set_latency(self, seconds: float) -> None:
        assert self.apple is not None
        r = self.http.post(f"{self.apple.base_url}/__bench/latency?seconds={seconds}")
        if r.status_code != 200:
            raise BenchError(f"could not set Apple latency: {r.status_code} {r.text}")

    def flask(self, env: dict[str, str], *args: str) -> str:
        import subprocess

        done = subprocess.run([harness.venv_bin("flask"), "--app", "app", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise BenchError(f"flask {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    # --- one database ------------------------------------------------------------------------

    def run_backend(self, backend: str, db_url: str, context: bool) -> None:
        import floors

        o = self.opts
        self.code_versions[backend] = code_version()
        env = self.app_env(db_url, 0)
        self.log(f"[{backend}] migrating and registering the native client")
        self.flask(env, "db", "upgrade")
        created = json.loads(self.flask(env, "clients", "create", "--name", "Bench iOS",
                                        "--bundle-id", BUNDLE_ID))
        self.client_id = created["client_id"]
        if "code" in o.groups:
            self.log(f"[{backend}] registering the web app (first party, confidential)")
            web = json.loads(self.flask(env, "clients", "create", "--type", "web",
                                        "--name", "Bench Web", "--redirect-uri", WEB_REDIRECT,
                                        "--first-party"))
            self.web_client_id, self.web_secret = web["client_id"], web["client_secret"]
        engine = floors.make_engine(db_url)
        floors.create_table(engine)
        engine.dispose()
        self.db_url, self.backend = db_url, backend
        kinds = self.opts.servers
        self.app = self.floor = self.app_metrics = None
        try:
            if len(kinds) == 1:
                self.start_pair(kinds[0], backend, env)
                self.prepare_pair(backend, True)
            for rnd in range(1, o.rounds + 1):
                # Several servers: each round starts each afresh and measures it, the order
                # alternating between rounds, so neither is always measured first or hotter.
                for kind in (kinds if rnd % 2 else tuple(reversed(kinds))):
                    if len(kinds) > 1:
                        self.start_pair(kind, backend, env)
                        self.prepare_pair(backend, rnd == 1)
                    self.log(f"[{backend}] round {rnd}/{o.rounds}"
                             + (f", {kind}" if len(kinds) > 1 else ""))
                    self.run_round(rnd, context)
                    if len(kinds) > 1:
                        self.stop_pair()
            if o.metrics and self.app_metrics is not None:
                self.log(f"[{backend}] the metrics-on server counted: {self.scrape_summary()}")
        finally:
            self.set_latency(0)
            self.stop_pair()

    def prepare_pair(self, backend: str, record_threads: bool) -> None:
        """Sign the browser in, check every request kind once, start every worker thread."""
        if "code" in self.opts.groups:
            self.browser_cookie = self.sign_in_browser()
            self.pkce_file = self.write_lines(
                f"pkce-{backend}.txt", [" ".join(pkce_pair()) for _ in range(PKCE_PAIRS)])
        self.preflight()
        self.fill_thread_pools(record=record_threads)

    def run_round(self, rnd: int, context: bool) -> None:
        groups = self.opts.groups
        if context and rnd == 1 and "context" in groups:
            self.case_hello(rnd)
            self.case_sign(rnd)
        if "api" in groups or self.opts.metrics:
            cases = [self.case_verify_floor] if "api" in groups else []
            cases.append(self.case_api_me)
            if self.opts.metrics:
                cases.append(self.case_api_me_metrics)
            for case in cases if rnd % 2 else reversed(cases):
                case(rnd)
        self.refresh_and_code(rnd)
        if rnd == 1 and "api" in groups:
            self.case_verify_lookup(rnd)
        if "exchange" in groups:
            self.case_exchange(rnd, latency=0.0)
            self.case_exchange(rnd, latency=self.opts.latency)

    def refresh_and_code(self, rnd: int) -> None:
        """The refresh pair (floor and grant) and the code flow beside the grant, its yardstick:
        odd rounds floor, grant, code flow; even rounds the other way round. With the code flow
        but not the refresh group, the grant is measured alone (no floor), for the ratio."""
        groups = self.opts.groups
        cases: list[Callable[[int], None]] = []
        if "refresh" in groups:
            cases += [self.case_refresh_floor, self.case_refresh]
        elif "code" in groups or self.opts.metrics:
            cases.append(self.case_refresh)
        if self.opts.metrics:
            cases.append(self.case_refresh_metrics)
        if "code" in groups:
            cases.append(self.case_code_flow)
        for case in cases if rnd % 2 else reversed(cases):
            case(rnd)

    def fill_thread_pools(self, record: bool = True) -> None:
        """Start every worker thread of the app and of the floors before the first round.

        gthread starts a thread only when a request finds none idle, and never stops one. The
        exchange with Apple latency (one connection per slot) makes the app's workers start all
        of theirs, while the floors' workers, never that busy, kept about half as many. Served
        by more threads, the same requests measured 2-4 % slower, so the floors were compared in
        a state the app could not be in (docs/performance.md, section 6). A short burst of
        4 x slots connections fills both alike; the counts are logged and reported.
        """
        want = self.gunicorn["threads"] + 1  # the pool's threads and the worker's main thread
        if self.server_kind != "gunicorn":
            # granian's worker also runs its Rust runtime's threads; its blocking threads
            # start on demand as gthread's do: one burst each, counts reported as they are.
            want = 0
        servers = [(self.app, "/.well-known/openid-configuration"), (self.floor, "/hello")]
        if self.app_metrics is not None:
            servers.append((self.app_metrics, "/.well-known/openid-configuration"))
        for server, path in servers:
            for _attempt in range(3):
                harness.run_wrk(server.base_url + path, connections=4 * self.slots, duration=2,
                                latency=False)
                counts = harness.worker_threads(server)
                if counts and min(counts) >= want:
                    break
            if record:
                self.thread_counts[f"{server.name}"] = counts
            self.log(f"  {server.name}: threads per worker {counts} (pool of "
                     f"{self.gunicorn['threads']} + main thread)")

    def preflight(self) -> None:
        """One request of every kind, so a broken set-up fails here with its real error."""
        tokens = self.exchange_once()
        for key in ("access_token", "refresh_token", "id_token"):
            if key not in tokens:
                raise BenchError(f"token exchange answered without {key}: {sorted(tokens)}")
        r = self.http.get(self.app.base_url + "/api/me",
                          headers={"Authorization": "Bearer " + tokens["access_token"]})
        if r.status_code != 200:
            raise BenchError(f"/api/me answered {r.status_code}: {r.text[:300]}")
        r = self.http.post(self.app.base_url + "/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
            "client_id": self.client_id})
        if r.status_code != 200 or "refresh_token" not in r.json():
            raise BenchError(f"refresh grant answered {r.status_code}: {r.text[:300]}")
        seeds = self.floor_seeds(1)
        r = self.http.post(self.floor.base_url + "/refresh", data={"refresh_token": seeds[0]})
        if r.status_code != 200:
            raise BenchError(f"refresh floor answered {r.status_code}: {r.text[:300]}")
        for path in ("/verify", "/verify_lookup"):
            r = self.http.get(self.floor.base_url + path,
                              headers={"Authorization": "Bearer " + self.floor_bearer()})
            if r.status_code != 200:
                raise BenchError(f"floor {path} answered {r.status_code}: {r.text[:300]}")
        if "code" in self.opts.groups:
            self.code_flow_once()

    # --- inputs ------------------------------------------------------------------------------

    def mint_codes(self, count: int) -> list[str]:
        assert self.apple is not None
        codes: list[str] = []
        while len(codes) < count:
            n = min(5000, count - len(codes))
            r = self.http.post(self.apple.base_url + "/__bench/mint",
                               json={"count": n, "bundle_id": BUNDLE_ID,
                                     "user_ids": self.apple_users})
            if r.status_code != 200:
                raise BenchError(f"minting Apple codes failed: {r.status_code} {r.text[:300]}")
            codes += r.json()["codes"]
        return codes

    def exchange_body(self, code: str) -> str:
        return form({"grant_type": TOKEN_EXCHANGE, "subject_token_type": APPLE_CODE,
                     "subject_token": code, "client_id": self.client_id, "scope": SCOPE})

    def exchange_once(self, code: str | None = None) -> dict[str, Any]:
        code = code or self.mint_codes(1)[0]
        r = self.http.post(self.app.base_url + "/oauth/token", data=self.exchange_body(code),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        if r.status_code != 200:
            raise BenchError(f"token exchange answered {r.status_code}: {r.text[:300]} "
                             f"(see {self.app.log})")
        return r.json()

    def app_seeds(self, count: int) -> list[str]:
        """Fresh refresh tokens from real exchanges (one sign-in each)."""
        codes = self.mint_codes(count)
        with ThreadPoolExecutor(8) as pool:
            return [t["refresh_token"] for t in pool.map(self.exchange_once, codes)]

    def floor_seeds(self, count: int) -> list[str]:
        import floors

        engine = floors.make_engine(self.db_url)
        try:
            return floors.seed_refresh_tokens(engine, count)
        finally:
            engine.dispose()

    def sign_in_browser(self) -> str:
        """Sign a browser in to siwa-web through the real flow, once; returns its Cookie header.

        `GET /auth/apple/login` (a login transaction and its cookie), the emulator's sign-in
        answered headlessly (`POST /__emulator/next-login`, then its `/auth/authorize` gives the
        auto-submitting form_post page), then that form POSTed to `/auth/apple/callback` with
        the transaction cookie: siwa-web redeems the Apple code and sets its session cookie.
        The session is not single-use: every authorization of the code flow presents it.
        """
        import requests

        assert self.apple is not None
        base = self.app.base_url
        with requests.Session() as browser:
            browser.trust_env = False  # loopback only: no proxy from the environment
            browser.headers["Host"] = ISSUER_HOST
            start = browser.get(base + "/auth/apple/login", params={"next": "/dashboard"},
                                allow_redirects=False, timeout=60)
            to_apple = start.headers.get("Location", "")
            if start.status_code != 303 or not to_apple.startswith(self.apple.base_url):
                raise BenchError(f"/auth/apple/login answered {start.status_code} "
                                 f"to {to_apple!r}: {start.text[:300]}")
            tx_cookies = {k: v for k, v in set_cookies(start).items() if v}
            queued = browser.post(self.apple.base_url + "/__emulator/next-login",
                                  json={"user_id": self.apple_users[0]}, timeout=60,
                                  headers={"Host": urllib.parse.urlsplit(to_apple).netloc})
            if queued.status_code != 200:
                raise BenchError(f"emulator next-login answered {queued.status_code}: "
                                 f"{queued.text[:300]}")
            page = browser.get(to_apple, allow_redirects=False, timeout=60,
                               headers={"Host": urllib.parse.urlsplit(to_apple).netloc})
            fields = {name: html.unescape(value) for name, value in re.findall(
                r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
            if page.status_code != 200 or "code" not in fields:
                raise BenchError(f"emulator's authorize answered {page.status_code} without a "
                                 f"code: {page.text[:300]}")
            browser.cookies.clear()
            back = browser.post(base + "/auth/apple/callback", data=fields, headers={
                "Cookie": "; ".join(f"{k}={v}" for k, v in tx_cookies.items())},
                allow_redirects=False, timeout=60)
            session = {k: v for k, v in set_cookies(back).items() if v}
            if back.status_code != 303 or not session:
                raise BenchError(f"/auth/apple/callback answered {back.status_code} with no "
                                 f"session cookie: {back.text[:300]} (see {self.app.log})")
            cookie = "; ".join(f"{k}={v}" for k, v in session.items())
            browser.cookies.clear()
            check = browser.get(base + "/dashboard", headers={"Cookie": cookie},
                                allow_redirects=False, timeout=60)
            if check.status_code != 200:
                raise BenchError(f"the signed-in browser's /dashboard answered "
                                 f"{check.status_code}: {check.headers.get('Location')}")
        self.log(f"  browser signed in through Apple (emulator): cookie {', '.join(session)}")
        return cookie

    def web_basic(self) -> str:
        raw = f"{self.web_client_id}:{self.web_secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def authorize_path(self) -> str:
        """`/oauth/authorize?...` with everything but state, nonce and code_challenge."""
        return "/oauth/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": self.web_client_id,
            "redirect_uri": WEB_REDIRECT, "scope": CODE_SCOPE, "code_challenge_method": "S256",
        }, quote_via=urllib.parse.quote)

    def code_flow_once(self) -> None:
        """One iteration of the code flow as bench/codeflow.lua sends it, checked in full."""
        import requests

        verifier, challenge = self.pkce_file.read_text().split("\n")[0].split()
        state, nonce = "1.preflight." + secrets.token_hex(4), "n" + secrets.token_hex(8)
        with requests.Session() as browser:
            browser.trust_env = False
            browser.headers["Host"] = ISSUER_HOST
            r = browser.get(self.app.base_url + self.authorize_path() + "&" + form(
                {"state": state, "nonce": nonce, "code_challenge": challenge}),
                headers={"Cookie": self.browser_cookie}, allow_redirects=False, timeout=60)
            back = urllib.parse.urlsplit(r.headers.get("Location", ""))
            got = dict(urllib.parse.parse_qsl(back.query))
            if r.status_code != 303 or not back.geturl().startswith(WEB_REDIRECT) \
                    or "code" not in got or got.get("state") != state or got.get("iss") != ISSUER:
                raise BenchError(f"/oauth/authorize answered {r.status_code} to "
                                 f"{r.headers.get('Location')!r}, not at once with a code: "
                                 f"{r.text[:300]} (see {self.app.log})")
            r = browser.post(self.app.base_url + "/oauth/token", data={
                "grant_type": "authorization_code", "code": got["code"],
                "redirect_uri": WEB_REDIRECT, "code_verifier": verifier},
                headers={"Authorization": self.web_basic()}, timeout=60)
        body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
        missing = [k for k in ("id_token", "access_token", "refresh_token") if k not in body]
        if r.status_code != 200 or missing:
            raise BenchError(f"code redemption answered {r.status_code} without {missing}: "
                             f"{r.text[:300]}")
        claims = jwt_claims(body["id_token"])
        if claims.get("nonce") != nonce or claims.get("aud") != self.web_client_id:
            raise BenchError(f"the code flow's ID token has nonce {claims.get('nonce')!r} and "
                             f"aud {claims.get('aud')!r}, not {nonce!r} and {self.web_client_id}")

    def floor_bearer(self) -> str:
        import floors
        from joserfc.jwk import ECKey

        return floors.sign_floor_token(ECKey.import_key(self.floor_key), ISSUER, AUDIENCE,
                                       sub="floor-user", family=floors.FLOOR_FAMILY, ttl=86400)

    def write_lines(self, name: str, lines: list[str]) -> Path:
        path = self.work / name
        path.write_text("\n".join(lines) + "\n")
        return path

    # --- measuring ---------------------------------------------------------------------------

    def measure(self, rnd: int, case: str, server: Server, path: str,
                prepare: Callable[[str, int, float], dict[str, Any]], *,
                connections: int | None = None) -> Measurement:
        """Warm up, then one measured wrk run; `prepare(phase, connections, seconds)` gives the
        wrk arguments (script, script_args, headers) with fresh single-use inputs."""
        o = self.opts
        conns = connections or o.connections
        url = server.base_url + path
        if o.warmup > 0:
            args = with_host(prepare("warmup", conns, o.warmup))
            warm = harness.run_wrk(url, connections=conns, duration=o.warmup, latency=False, **args)
            self.rate_hint[case] = max(self.rate_hint.get(case, 0.0), warm.rps)
        for attempt in (1, 2):
            args = with_host(prepare("run", conns, o.duration))
            window = harness.CpuWindow({"app": self.app, "floor": self.floor,
                                        "apple": self.apple}).start()
            res = harness.run_wrk(url, connections=conns, duration=o.duration, **args)
            window.stop(wrk_cpu=res.cpu_s)
            starved = int(res.extra.get("starved", "0"))
            if not starved or attempt == 2:
                break
            # Fed too few single-use inputs: size by what was just achieved and run again.
            self.rate_hint[case] = max(self.rate_hint.get(case, 0.0), res.rps) * 1.5
            self.log(f"  {case}: ran out of single-use inputs ({starved} starved); running again")
        self.rate_hint[case] = max(self.rate_hint.get(case, 0.0), res.rps)
        notes = {k: v for k, v in res.extra.items()
                 if k in ("starved", "failed", "unexpected", "first_error") and v not in ("0", "")}
        unanswered = int(res.extra.get("unanswered", "0"))
        silence = int(res.extra.get("longest_silence", "0"))
        # A hung server: seconds without a single answer, or more requests unanswered at the
        # end than can legitimately be in flight (Little's law: rps x latency).
        in_flight = res.rps * max(res.p99_ms, 0) / 1000  # Little's law, generously (p99)
        if silence >= STALL_SECONDS:
            notes["stalled"] = f"no answer at all for {silence} s"
        elif unanswered > in_flight + 2:
            notes["stalled"] = (f"{unanswered} requests never answered, while rate x latency "
                                f"allows ~{in_flight:.0f} in flight: part of the server hung")
        if "iterations" in res.extra:
            # Several requests per iteration (the code flow): rate and CPU per iteration, i.e.
            # per code redeemed; wrk's latencies stay per request.
            seconds = int(res.extra.get("duration_us", "0")) / 1e6 or (
                res.requests / res.rps if res.rps else 0.0)
            res.requests = int(res.extra["iterations"])
            res.rps = res.requests / seconds if seconds else 0.0
        n = max(res.requests, 1)
        which = "app" if server is self.app else "floor"
        m = Measurement(
            backend=self.backend, round=rnd, case=case, rps=res.rps, p50_ms=res.p50_ms,
            p99_ms=res.p99_ms, requests=res.requests, connections=conns, non2xx=res.non2xx,
            timeouts=res.timeouts, socket_errors=res.socket_errors,
            server_cpu_us=round(window.server_cpu[which] / n * 1e6, 1),
            apple_cpu_us=round(window.server_cpu["apple"] / n * 1e6, 1),
            pg_cpu_us=round(window.postgres_cpu / n * 1e6, 1),
            wrk_cores=round(res.cpu_s / max(window.wall, 1e-9), 2),
            busy_cores=round(window.busy_cores, 2),
            other_cores=round(window.other_cores, 2),
            notes=notes, server=self.server_kind,
        )
        self.measurements.append(m)
        flag = "" if m.clean else f"  !! non2xx={m.non2xx} timeouts={m.timeouts} " \
                                   f"errors={m.socket_errors} {m.notes}"
        if "stalled" in m.notes:
            # Requests may still be stuck inside the server (waiting for a database connection,
            # say); a fresh one keeps that from leaking into the next measurement.
            self.log(f"  {case} stalled: restarting {server.name}")
            self.restart(server)
        self.log(f"  {case:<15} {m.rps:9.1f} req/s  p50 {m.p50_ms:8.2f} ms  p99 {m.p99_ms:8.2f} ms"
                 f"  cpu {m.server_cpu_us:7.0f} us/req  busy {m.busy_cores:.2f} cores"
                 f" (others' {m.other_cores:.2f}){flag}")
        return m

    def inputs_needed(self, case: str, seconds: float, conns: int, default_rate: float) -> int:
        rate = self.rate_hint.get(case) or default_rate
        return int(rate * 2.0 * (seconds + 1)) + 2 * conns + 20

    def case_hello(self, rnd: int) -> None:
        self.measure(rnd, "hello", self.floor, "/hello", lambda *_: {})

    def case_sign(self, rnd: int) -> None:
        self.measure(rnd, "sign", self.floor, "/sign", lambda *_: {})

    def case_verify_floor(self, rnd: int) -> None:
        bearer = "Authorization: Bearer " + self.floor_bearer()
        self.measure(rnd, "verify_floor", self.floor, "/verify", lambda *_: {"headers": (bearer,)})

    def case_verify_lookup(self, rnd: int) -> None:
        bearer = "Authorization: Bearer " + self.floor_bearer()
        self.measure(rnd, "verify_lookup", self.floor, "/verify_lookup",
                     lambda *_: {"headers": (bearer,)})

    def case_api_me(self, rnd: int, case: str = "api_me") -> None:
        def prepare(phase: str, conns: int, seconds: float) -> dict[str, Any]:
            token = self.exchange_once()["access_token"]  # fresh: access tokens live 10 minutes
            return {"headers": ("Authorization: Bearer " + token,)}

        self.measure(rnd, case, self.app, "/api/me", prepare)

    @contextlib.contextmanager
    def metrics_on(self):
        """Measure on the metrics-on server: it stands in for the app (inputs, CPU) meanwhile."""
        assert self.app_metrics is not None
        plain, self.app = self.app, self.app_metrics
        try:
            yield
        finally:
            self.app = plain

    def case_api_me_metrics(self, rnd: int) -> None:
        with self.metrics_on():
            self.case_api_me(rnd, case="api_me_metrics")

    def case_refresh_metrics(self, rnd: int) -> None:
        with self.metrics_on():
            self.case_refresh(rnd, case="refresh_metrics")

    def scrape_summary(self) -> str:
        """What the metrics-on server's /metrics counted, so a run shows metrics were on."""
        assert self.app_metrics is not None
        r = self.http.get(self.app_metrics.base_url + "/metrics",
                          headers={"Authorization": "Bearer " + METRICS_TOKEN})
        if r.status_code != 200:
            raise BenchError(f"/metrics answered {r.status_code}: {r.text[:300]}")
        wanted = ("siwa_token_grants_total", "siwa_bearer_checks_total")
        totals = {name: 0.0 for name in wanted}
        for line in r.text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
        return ", ".join(f"{name} {int(total)}" for name, total in totals.items())

    def chain_args(self, path: str, seeds: list[str], extra: str) -> dict[str, Any]:
        f = self.write_lines(f"seeds-{secrets.token_hex(4)}.txt", seeds)
        return {"script": BENCH_DIR / "chain.lua", "script_args": (path, str(f), extra)}

    def case_refresh_floor(self, rnd: int) -> None:
        def prepare(phase: str, conns: int, seconds: float) -> dict[str, Any]:
            return self.chain_args("/refresh", self.floor_seeds(2 * conns + 8), "")

        self.measure(rnd, "refresh_floor", self.floor, "/refresh", prepare)

    def case_refresh(self, rnd: int, case: str = "refresh") -> None:
        def prepare(phase: str, conns: int, seconds: float) -> dict[str, Any]:
            return self.chain_args("/oauth/token", self.app_seeds(2 * conns + 8),
                                   "&client_id=" + self.client_id)

        self.measure(rnd, case, self.app, "/oauth/token", prepare)

    def case_code_flow(self, rnd: int) -> None:
        """A web app's sign-in with a live siwa-web session: authorize, then redeem the code
        (bench/codeflow.lua); its rate and CPU are per iteration, i.e. per two requests."""
        args = (self.authorize_path(), self.browser_cookie, self.web_basic(),
                urllib.parse.quote(WEB_REDIRECT, safe=""), str(self.pkce_file))

        def prepare(phase: str, conns: int, seconds: float) -> dict[str, Any]:
            return {"script": BENCH_DIR / "codeflow.lua", "script_args": args}

        self.measure(rnd, "code_flow", self.app, "/oauth/authorize", prepare)

    def case_exchange(self, rnd: int, latency: float) -> None:
        case = "exchange_0ms" if latency == 0 else f"exchange_{latency * 1000:g}ms"
        conns = self.opts.connections if latency == 0 else self.exchange_connections
        # Upper bound on the rate, to size the code file before anything was measured.
        cpu_bound = self.rate_hint.get("exchange_0ms", 600.0)
        default = cpu_bound if latency == 0 else min(cpu_bound * 1.3, conns / latency)

        def prepare(phase: str, c: int, seconds: float) -> dict[str, Any]:
            codes = self.mint_codes(self.inputs_needed(case, seconds, c, default))
            f = self.write_lines(f"codes-{secrets.token_hex(4)}.txt",
                                 [self.exchange_body(code) for code in codes])
            return {"script": BENCH_DIR / "bodies.lua", "script_args": ("/oauth/token", str(f))}

        self.set_latency(latency)
        try:
            self.measure(rnd, case, self.app, "/oauth/token", prepare, connections=conns)
        finally:
            self.set_latency(0)

    def restart(self, server: Server) -> None:
        server.stop()
        server.start(ready_path="/.well-known/openid-configuration" if server is self.app
                     else "/hello")


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through Bench.run's cleanup (servers, databases)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    bench = Bench(opts)
    try:
        return bench.run()
    except BenchError as exc:
        print(f"bench/tokens.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench/tokens.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
