"""The HTTP servers bench/tokens.py can run siwa-web and the floors under (`--servers`).

`gunicorn` is the production set-up: `gunicorn -c gunicorn.conf.py` (gthread). `granian` is the
candidate measured against it: granian's WSGI interface with the same number of worker processes
and, per worker, as many blocking threads as gunicorn has threads, one Rust runtime thread, HTTP/1
only, and `gc.freeze()` after load (bench/granian_apps.py). Both read the worker and thread
counts from gunicorn.conf.py (GUNICORN_WORKERS, GUNICORN_THREADS), so a comparison always has
the same number of worker slots on each side.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

KINDS = ("gunicorn", "granian")

# siwa-web's WSGI target and the floors', per server (granian calls a factory in each worker).
TARGETS = {
    "gunicorn": {"app": "app:app", "floors": "floors:create_app()"},
    "granian": {"app": "granian_apps:siwa", "floors": "granian_apps:floors"},
}


@dataclass(frozen=True)
class Launch:
    """How to start one server: its command line, extra environment, and how to stop it."""

    argv: list[str]
    env: dict[str, str]
    stop_signal: int
    workers: int  # worker processes to wait for at start-up


def launch(kind: str, *, binary: str, target: str, host: str, port: int, workers: int,
           threads: int, root: Path, bench_dir: Path, conf: Path,
           spec: str | None = None) -> Launch:
    """The command line of server `kind` serving `target` ('app' or 'floors') on host:port;
    `spec`: another WSGI target instead (a factory call for gunicorn, its name for granian)."""
    if kind == "gunicorn":
        argv = [binary, "-c", str(conf), "--no-control-socket", "-b", f"{host}:{port}"]
        if target != "app":
            argv += ["--pythonpath", str(bench_dir)]
        # SIGQUIT is gunicorn's quick shutdown: a stuck request must not hold the bench for
        # the 30 s graceful timeout; the master stops its workers.
        return Launch(argv + [spec or TARGETS[kind][target]], {}, signal.SIGQUIT, workers)
    if kind == "granian":
        argv = [binary, "--interface", "wsgi", "--factory", "--host", host, "--port", str(port),
                "--workers", str(workers), "--blocking-threads", str(threads),
                # Idle blocking threads stop after 30 s by default; the rounds must not find the
                # pool of one server emptier than the other's (docs/performance.md, section 6).
                "--blocking-threads-idle-timeout", "600",
                "--runtime-threads", "1", "--http", "1", "--no-ws",
                "--respawn-failed-workers", "--workers-kill-timeout", "10",
                "--log-level", "warning", "--working-dir", str(root),
                (spec or TARGETS[kind][target]).removesuffix("()")]
        # granian_apps (and the floors) live in bench/, siwa-web's app.py in the checkout.
        return Launch(argv, {"PYTHONPATH": f"{bench_dir}:{root}"}, signal.SIGTERM, workers)
    raise ValueError(f"unknown server {kind!r}; choose from {', '.join(KINDS)}")
