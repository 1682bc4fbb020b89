#!/usr/bin/env python3
"""Does an HTTP server keep siwa-web's serving guarantees? Reproducible checks, a few seconds each.

    .venv/bin/python bench/server_guarantees.py                  # gunicorn and granian
    .venv/bin/python bench/server_guarantees.py --servers granian --json out.json

Each server is started the way bench/tokens.py starts it (bench/servers.py: gunicorn with
gunicorn.conf.py, granian with its WSGI interface and `--respawn-failed-workers`), here with
2 workers x 4 threads serving bench/guarantee_app.py, and gunicorn's worker timeout at 5 s so a
hung worker is noticed within the check. The checks, each on a fresh server:

  headers     a 10 KB header, 100 x 5 KB headers (500 KB), an 8 KB request line: refused?
  sockets     listening sockets on the port (one per worker, or one shared), and the
              REMOTE_ADDR the app sees for a request with X-Forwarded-For
  kill9       SIGKILL one worker while 4 clients send requests: failed answers, is it
              replaced, does the server stay up?
  sigstop     SIGSTOP one worker (a hung worker), then new connections for 15 s: how many
              time out, and is the stopped worker killed and replaced?
  reload      SIGHUP while a 3 s request is in flight: does it finish, is anything refused?
  shutdown    SIGTERM while a 3 s request is in flight: does it finish before the exit?

Prints one line per check and exits 0; the verdicts are for a human (docs/performance.md,
section 10). Everything listens on 127.0.0.1 only; servers are stopped by their own pid.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
import servers  # noqa: E402

WORKERS, THREADS = 2, 4
GUNICORN_TIMEOUT = 5


def start(kind: str, work: Path) -> harness.Server:
    port = harness.free_port()
    how = servers.launch(kind, binary=harness.venv_bin(kind), target="guarantee",
                         host=harness.HOST, port=port, workers=WORKERS, threads=THREADS,
                         root=ROOT, bench_dir=BENCH_DIR, conf=ROOT / "gunicorn.conf.py",
                         spec="guarantee_app:create()")
    env = dict(os.environ, GUNICORN_WORKERS=str(WORKERS), GUNICORN_THREADS=str(THREADS),
               GUNICORN_TIMEOUT=str(GUNICORN_TIMEOUT), PYTHONPATH=str(BENCH_DIR))
    env.update(how.env)
    server = harness.Server(kind, how.argv, env=env, cwd=ROOT, log=work / f"{kind}.log",
                            port=port, stop_signal=how.stop_signal, workers=how.workers)
    return server.start(ready_path="/pid")


def workers(server: harness.Server) -> list[int]:
    """The worker processes: the main process's children that answer requests (granian's main
    process may have helpers; gunicorn's has none)."""
    return sorted(harness.children(server.proc.pid)) if server.proc else []


def get(server: harness.Server, path: str, headers: dict[str, str] | None = None,
        timeout: float = 5.0) -> tuple[int | str, bytes]:
    """One request on a new connection: (status, body) or (error name, b"")."""
    conn = http.client.HTTPConnection(harness.HOST, server.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, b""
    finally:
        conn.close()


def check_headers(server: harness.Server) -> dict[str, Any]:
    big = {"X-Big": "a" * 10_000}
    many = {f"X-H{i}": "b" * 5_000 for i in range(100)}
    return {
        "10 KB header": get(server, "/pid", big)[0],
        "100 x 5 KB headers (500 KB)": get(server, "/pid", many)[0],
        "8 KB request line": get(server, "/pid?q=" + "c" * 8_000)[0],
        "8 KB header total (control)": get(server, "/pid", {"X-Ok": "d" * 4_000})[0],
    }


def listening_sockets(port: int) -> int:
    """LISTEN sockets bound to 127.0.0.1:port, from /proc/net/tcp."""
    want = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == want and fields[3] == "0A":
            count += 1
    return count


def remote_addr(server: harness.Server) -> str | None:
    """REMOTE_ADDR the app sees when the client sends X-Forwarded-For: the peer's address is
    what TRUST_PROXY_HOPS (Werkzeug's ProxyFix) builds on, whatever the server."""
    status, body = get(server, "/pid", {"X-Forwarded-For": "203.0.113.9"})
    return json.loads(body)["remote_addr"] if status == 200 else f"status {status}"


class Load:
    """`clients` threads sending GET /pid on new connections until stopped; counts outcomes."""

    def __init__(self, server: harness.Server, clients: int = 4, timeout: float = 3.0) -> None:
        self.server, self.timeout = server, timeout
        self.ok = 0
        self.failed: dict[str, int] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        while not self.stop.is_set():
            status, _ = get(self.server, "/pid", timeout=self.timeout)
            with self.lock:
                if status == 200:
                    self.ok += 1
                else:
                    self.failed[str(status)] = self.failed.get(str(status), 0) + 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)


def wait_workers(server: harness.Server, gone: int, seconds: float) -> float | None:
    """Seconds until WORKERS workers are running again without `gone`; None if not in time."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        now = workers(server)
        alive = [p for p in now if p != gone and _state(p) not in ("Z", "T", None)]
        if gone not in now and len(alive) >= WORKERS:
            return round(time.monotonic() - t0, 1)
        time.sleep(0.2)
    return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def check_kill9(server: harness.Server) -> dict[str, Any]:
    victim = workers(server)[0]
    with Load(server) as load:
        time.sleep(1)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_workers(server, victim, 15)
        time.sleep(1)
    return {"failed answers": load.failed, "ok": load.ok,
            "replaced after s": replaced, "server still running": server.proc.poll() is None,
            "answers after": get(server, "/pid")[0]}


def check_sigstop(server: harness.Server) -> dict[str, Any]:
    victim = workers(server)[0]
    os.kill(victim, signal.SIGSTOP)
    try:
        with Load(server, timeout=2.0) as load:
            replaced = wait_workers(server, victim, 15)
            time.sleep(0.5)
        state = _state(victim)
    finally:
        if _state(victim) is not None:
            os.kill(victim, signal.SIGCONT)
    return {"failed answers in 15 s": load.failed, "ok": load.ok, "replaced after s": replaced,
            "stopped worker afterwards": "gone" if state in (None, "Z") else f"state {state}"}


def in_flight(server: harness.Server, sig: int) -> dict[str, Any]:
    """A 3 s request in flight, then `sig` to the main process: what happens to it?"""
    out: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: out.update(slow=get(server, "/slow?s=3", timeout=20)))
    slow.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    server.proc.send_signal(sig)
    after = []
    if sig == signal.SIGHUP:
        with Load(server) as load:
            time.sleep(5)
        after = [load.ok, load.failed]
    slow.join(timeout=25)
    status = out.get("slow", ("no answer", b""))[0]
    result = {"in-flight request": status, "signal to answer s": round(time.monotonic() - t0, 1)}
    if sig == signal.SIGHUP:
        result.update({"ok during reload": after[0], "failed during reload": after[1]})
    else:
        try:
            server.proc.wait(timeout=20)
            result["exit status"] = server.proc.returncode
        except Exception:  # noqa: BLE001 - reported, the server is stopped below anyway
            result["exit status"] = "still running after 20 s"
    return result


def run(kind: str, work: Path, only: set[str] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    checks = [
        ("headers", check_headers),
        ("sockets", lambda s: {"listening sockets": listening_sockets(s.port),
                               "workers": len(workers(s)), "REMOTE_ADDR": remote_addr(s)}),
        ("kill9", check_kill9),
        ("sigstop", check_sigstop),
        ("reload", lambda s: in_flight(s, signal.SIGHUP)),
        ("shutdown", lambda s: in_flight(s, signal.SIGTERM)),
    ]
    for name, check in checks:
        if only and name not in only:
            continue
        server = start(kind, work)
        try:
            results[name] = check(server)
        finally:
            server.stop()
        print(f"{kind:<9} {name:<9} {json.dumps(results[name])}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/server_guarantees.py", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--servers", default=",".join(servers.KINDS))
    p.add_argument("--checks", help="comma-separated subset: headers, sockets, kill9, sigstop, "
                   "reload, shutdown (default all)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="siwa-guarantees-"))
    only = {c.strip() for c in a.checks.split(",") if c.strip()} if a.checks else None
    out = {kind: run(kind, work, only) for kind in a.servers.split(",") if kind}
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    print(f"server logs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
