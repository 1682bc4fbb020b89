"""Production gunicorn settings for siwa-web: `gunicorn -c gunicorn.conf.py app:app`.

Equivalent to the README's `gunicorn --worker-class gthread --workers 4 --threads 16 app:app`.
Threaded workers matter here: a native sign-in waits on Apple for tens of milliseconds, and a
sync worker would sit idle for that time (see docs/performance.md). Worker slots are
workers x threads; keep that at or above the number of sign-ins you expect to be waiting on
Apple at once.

Every thread may hold a database connection, so each worker's SQLAlchemy pool must be at least
as large as `threads` (SIWA_DB_POOL_SIZE / SIWA_DB_MAX_OVERFLOW, 16 + 8 by default): a pool
smaller than the thread count can hang a busy worker (docs/performance.md, section 1). And
workers x (pool_size + max_overflow) must stay below the database's connection limit.

Environment (all optional; command-line flags still win over this file):

  GUNICORN_WORKERS   worker processes (default: $WEB_CONCURRENCY, else 4)
  GUNICORN_THREADS   threads per worker (default 16)
  GUNICORN_BIND      address(es) to listen on, comma-separated (default 127.0.0.1:8000)
  GUNICORN_TIMEOUT   seconds before a silent worker is restarted (default 30; it must exceed
                     SIWA_APPLE_CONNECT_TIMEOUT + SIWA_APPLE_READ_TIMEOUT)
  GUNICORN_KEEPALIVE seconds an idle keep-alive connection is kept open (default 2, gunicorn's)
  GUNICORN_REUSE_PORT 0 to share one listening socket between the workers; by default each
                     worker listens on its own (SO_REUSEPORT) when every bind is a TCP address
                     and no socket is inherited (systemd activation, USR2 re-exec). See
                     `on_starting` below.
"""
from __future__ import annotations

import os


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"gunicorn.conf.py: {name} must be at least {minimum}, got {value}")
    return value


worker_class = "gthread"
workers = _int("GUNICORN_WORKERS", _int("WEB_CONCURRENCY", 4))
threads = _int("GUNICORN_THREADS", 16)
bind = [b.strip() for b in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
        if b.strip()]
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 30
keepalive = _int("GUNICORN_KEEPALIVE", 2)

# The app builds its database engine, key ring and Apple client per worker: never share them
# across fork().
preload_app = False
# Heartbeat files on tmpfs, so a slow disk cannot make the arbiter kill healthy workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Error log to stderr; no access log by default (the app logs what matters as JSON lines).
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")


def reuse_port_is_safe(binds: list[str], environ: dict[str, str]) -> bool:
    """SO_REUSEPORT only for TCP addresses gunicorn binds itself (not unix:, fd://, systemd)."""
    choice = environ.get("GUNICORN_REUSE_PORT", "").strip().lower()
    if choice in ("0", "false", "no", "off"):
        return False
    if "LISTEN_FDS" in environ or "GUNICORN_FD" in environ:
        return False  # inherited sockets (systemd activation, USR2 re-exec) stay shared
    return all(not b.startswith(("unix:", "fd://")) for b in binds)


def on_starting(server) -> None:
    """Let the kernel spread connections over the workers (gunicorn's `reuse_port`).

    Without it every worker accept()s from one shared socket, and whichever is awake when a
    burst of keep-alive connections arrives takes them all: a measured round sent all 16 of
    the load generator's connections to one worker, which its GIL held to one core while three
    workers idled. With it each worker listens on its own socket and Linux hashes connections
    across them. Decided here, once gunicorn's command line (`-b`) is applied.
    """
    import socket

    wanted = hasattr(socket, "SO_REUSEPORT") and reuse_port_is_safe(server.cfg.bind, os.environ)
    server.cfg.set("reuse_port", wanted)


def post_worker_init(worker) -> None:
    """Move everything loaded so far out of the garbage collector's sight (`gc.freeze`).

    The app, its libraries and their module-level data are some 135,000 objects that live as
    long as the worker, and every full collection walked all of them again: about 85 ms during
    which none of the worker's threads ran, once every few thousand requests. Frozen, they are
    never scanned; collections see only what requests create. Runs in each worker once the app
    is loaded (`preload_app` is off).
    """
    import gc

    gc.collect()
    gc.freeze()
