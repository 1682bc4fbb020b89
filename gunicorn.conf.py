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
                     "Listening sockets" below.

  PROMETHEUS_MULTIPROC_DIR  where the workers keep their metrics (default: a fresh directory
                     under /dev/shm, removed when the master exits). See "Metrics" below.

Reloading: `kill -HUP <master>` re-reads this file and replaces every worker without refusing
or dropping a connection (tests/test_gunicorn_reload.py).
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


# --- Listening sockets ------------------------------------------------------------------------
#
# One listening socket per worker (SO_REUSEPORT) lets the kernel spread new connections over the
# workers. Without it every worker accept()s from one shared socket, and whichever is awake when
# a burst of keep-alive connections arrives takes them all: a measured round sent all 16 of the
# load generator's connections to one worker, which its GIL held to one core while three workers
# idled (docs/performance.md, section 7).
#
# gunicorn's own `reuse_port` setting is not used for this: with it each worker binds its socket
# after fork, and
#   * SIGHUP re-reads this file, which resets the setting, and the master (which never bound a
#     socket) forked the new workers with none: nothing listened any more;
#   * even kept on, a stopping worker's socket stays in the kernel's group, and keeps receiving
#     its share of new connections, until the worker has finished its requests in flight; the
#     connections queued on it then are reset when it closes.
# So the master binds the sockets itself, one per worker, once at start (`on_starting`), and hands
# each worker it forks one of them (`pre_fork`): a worker replacing another (SIGHUP, a crash, a
# kill) takes over the same socket with whatever connections wait on it. `pre_fork` runs before
# every fork (start, reload, replacement) and decides from the sockets the master holds, not from
# settings a reload re-reads, so nothing depends on which hooks a reload runs or in what order.
# The sockets stay open while the server runs. Shared sockets (unix:, inherited,
# GUNICORN_REUSE_PORT=0) are bound or inherited by gunicorn as usual and left alone.

# On the arbiter, which outlives every reload of this file: one slot per worker, each a list of
# listening sockets (one per bind address). On each worker: the slot it accepts from.
SLOTS = "siwa_listener_slots"
SLOT = "siwa_listener_slot"


def reuse_port_is_safe(binds: list[str], environ: dict[str, str]) -> bool:
    """SO_REUSEPORT only for TCP addresses gunicorn binds itself (not unix:, fd://, systemd)."""
    choice = environ.get("GUNICORN_REUSE_PORT", "").strip().lower()
    if choice in ("0", "false", "no", "off"):
        return False
    if "LISTEN_FDS" in environ or "GUNICORN_FD" in environ:
        return False  # inherited sockets (systemd activation, USR2 re-exec) stay shared
    return all(not b.startswith(("unix:", "fd://")) for b in binds)


class _ReusePort:
    """gunicorn's settings with `reuse_port` on: its socket classes then bind with SO_REUSEPORT."""

    reuse_port = True

    def __init__(self, cfg) -> None:
        self._cfg = cfg

    def __getattr__(self, name: str):
        return getattr(self._cfg, name)


def _bind_slot(server, like: list | None = None) -> list:
    """One listening socket per bind address; `like`: on exactly the addresses of that slot."""
    from gunicorn import sock

    conf = _ReusePort(server.cfg)
    if like is None:
        return sock.create_sockets(conf, server.log)
    return [type(lnr)(lnr.getsockname(), conf, server.log) for lnr in like]  # port 0 too


def _slots(server) -> list[list] | None:
    """The per-worker sockets, while they are still the master's (None: sockets are shared)."""
    slots = getattr(server, SLOTS, None)
    if slots and not all(lnr in server.LISTENERS for slot in slots for lnr in slot):
        if server.LISTENERS:  # else it is shutting down
            # A reload with a new bind address: gunicorn closed them and bound shared sockets.
            server.log.warning("New listening address: the workers share its socket from now on")
        setattr(server, SLOTS, None)
        return None
    return slots


def on_starting(server) -> None:
    """Prepare the metrics directory; decide how the workers listen, once gunicorn's command
    line (`-b`) is applied; bind.

    Runs in the master before it binds anything. Per-worker sockets: bind one per worker here;
    gunicorn then binds nothing (its LISTENERS are set). Otherwise gunicorn binds or inherits the
    shared sockets as usual.
    """
    import socket

    prepare_metrics_dir(server, os.environ)
    server.cfg.set("reuse_port", False)  # never gunicorn's per-worker binding (see above)
    setattr(server, SLOTS, None)
    if not (hasattr(socket, "SO_REUSEPORT") and reuse_port_is_safe(server.cfg.bind, os.environ)):
        return
    first = _bind_slot(server)
    slots = [first] + [_bind_slot(server, like=first) for _ in range(server.num_workers - 1)]
    server.LISTENERS = [lnr for slot in slots for lnr in slot]
    setattr(server, SLOTS, slots)
    server.log.info("Each worker listens on its own socket (SO_REUSEPORT), %d in all", len(slots))


def pre_fork(server, worker) -> None:
    """In the master, before each worker is forked: give it its own socket.

    The slot with the fewest live workers: the one a dead worker left, or during a reload the
    old worker's (which stops accepting as the new one starts). A new slot only when the
    workers outnumber the slots (TTIN, a reload with more workers).
    """
    server.cfg.set("reuse_port", False)  # a reload re-read the settings: still never per worker
    slots = _slots(server)
    if not slots:
        return  # shared sockets: gunicorn gave the worker all of them
    users = {id(slot): 0 for slot in slots}
    for other in server.WORKERS.values():
        own = getattr(other, SLOT, None)
        if own is not None and id(own) in users:
            users[id(own)] += 1
    slot = min(slots, key=lambda s: users[id(s)])
    if users[id(slot)] and len(slots) < server.num_workers:
        try:
            added = _bind_slot(server, like=slots[0])
        except OSError:
            server.log.exception("Could not bind another listening socket; sharing one")
        else:
            slots.append(added)
            server.LISTENERS.extend(added)
            slot = added
    setattr(worker, SLOT, slot)
    worker.sockets = slot


def post_fork(server, worker) -> None:
    """In the new worker: close the other workers' sockets, so only their owner holds them."""
    own = getattr(worker, SLOT, None)
    for slot in getattr(server, SLOTS, None) or ():
        if slot is not own:
            for lnr in slot:
                lnr.close()


def child_exit(server, worker) -> None:
    """In the master, once a worker is gone: tell the metrics; close its socket if no worker
    will take it over.

    That is when fewer workers are wanted (TTOU, a reload with fewer workers): nobody would ever
    accept the connections the kernel still sends it. After a crash the replacement takes it.
    """
    mark_metrics_dead(worker.pid, os.environ)
    slots = _slots(server)
    own = getattr(worker, SLOT, None)
    if not slots or own is None or len(server.WORKERS) < server.num_workers:
        return
    if any(getattr(other, SLOT, None) is own for other in server.WORKERS.values()):
        return
    slots[:] = [slot for slot in slots if slot is not own]
    server.LISTENERS[:] = [lnr for lnr in server.LISTENERS if all(lnr is not o for o in own)]
    for lnr in own:
        lnr.close()


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


# --- Metrics ----------------------------------------------------------------------------------
#
# Each worker counts into its own files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
# multiprocess mode) and `GET /metrics`, whichever worker answers it, sums them all
# (siwa_web/ops/metrics.py). The variable must be set before a worker imports prometheus_client,
# so the master sets it once at start (`on_starting`), before the first fork; the workers
# inherit it. The directory must not hold files of an earlier run, which would be counted again:
# a directory given by the operator is emptied at start; by default the master makes a fresh one
# (on tmpfs, like the heartbeat files) and removes it when it exits. A USR2 upgrade's new master
# makes its own fresh directory (the old master removes the one it made when it exits).
# `child_exit` tells prometheus_client that a worker is gone (`mark_process_dead`), which drops
# its files of live gauges; its counters stay, so totals never go down when a worker is replaced.
# Nothing here loads prometheus_client before the variable is set.

METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
MADE_METRICS_DIR = "SIWA_MADE_METRICS_DIR"  # the directory a master of ours made (not given)
_MADE = "siwa_made_metrics_dir"


def prepare_metrics_dir(server, environ) -> str:
    """Set PROMETHEUS_MULTIPROC_DIR in `environ` to an empty directory; return its path."""
    import tempfile
    from pathlib import Path

    given = environ.get(METRICS_DIR, "").strip()
    if given and given != environ.get(MADE_METRICS_DIR):
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        if "GUNICORN_FD" not in environ:  # a USR2 upgrade's old workers still write there
            for stale in path.glob("*.db"):
                stale.unlink()
        setattr(server, _MADE, None)
        return given
    made = tempfile.mkdtemp(prefix="siwa-metrics-",
                            dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    environ[METRICS_DIR] = environ[MADE_METRICS_DIR] = made
    setattr(server, _MADE, made)
    return made


def mark_metrics_dead(pid: int, environ) -> None:
    """A worker exited: prometheus_client forgets its live gauges (counters are kept)."""
    if not environ.get(METRICS_DIR):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def on_exit(server) -> None:
    """The master is stopping: remove the metrics directory it made (never a given one)."""
    import shutil

    made = getattr(server, _MADE, None)
    if made:
        shutil.rmtree(made, ignore_errors=True)
