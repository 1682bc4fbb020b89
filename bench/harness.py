"""Process and load-generator plumbing for bench/tokens.py: servers, wrk, CPU accounting.

Everything listens on and talks to 127.0.0.1 only. Processes started here run in their own
session and are stopped by their own pid (the gunicorn master, which stops its workers).
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why and what to do."""


# --- wrk -------------------------------------------------------------------------------------


def ensure_wrk(install: bool = True) -> str:
    """Return the path of wrk, installing Debian's package when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if not install:
        raise BenchError("wrk is not installed; install it with: apt-get install -y wrk")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("wrk is not installed and cannot be installed here "
                         "(needs root and apt-get); install it with: apt-get install -y wrk")
    print("wrk is missing: installing Debian's package (apt-get install -y wrk) ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "env": env}
    done = subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], **quiet)
        done = subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet)
    found = shutil.which("wrk")
    if done.returncode != 0 or not found:
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise BenchError(f"could not install wrk with apt-get: {detail[0]}")
    return found


_DURATION = re.compile(r"([\d.]+)(us|ms|s|m)\b")


def to_ms(text: str) -> float:
    """wrk's '1.23ms' / '850.00us' / '1.02s' / '1.00m' in milliseconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    non2xx: int = 0
    timeouts: int = 0
    socket_errors: int = 0  # connect + read + write
    extra: dict[str, str] = field(default_factory=dict)  # `bench: key=value` lines from Lua
    raw: str = ""
    cpu_s: float = 0.0  # CPU used by wrk itself


def parse_wrk(text: str) -> WrkResult:
    """Read requests/s, the p50/p99 of `--latency`, errors and our Lua `bench:` lines."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise BenchError("could not read wrk's output:\n" + text[-2000:])
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.M)
        lat[pct] = to_ms(m.group(1)) if m else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    extra = dict(re.findall(r"^bench: (\w+)=(\S*)", text, re.M))
    return WrkResult(
        rps=float(rps.group(1)), requests=int(total.group(1)), p50_ms=lat["50"], p99_ms=lat["99"],
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        timeouts=int(sock.group(4)) if sock else 0,
        socket_errors=sum(int(sock.group(i)) for i in (1, 2, 3)) if sock else 0,
        extra=extra, raw=text,
    )


def run_wrk(url: str, *, connections: int, duration: float, script: Path | None = None,
            script_args: tuple[str, ...] = (), headers: tuple[str, ...] = (),
            timeout: str = "2s", latency: bool = True) -> WrkResult:
    """One wrk run, one thread (`-t1`), `connections` keep-alive connections."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
           f"--timeout={timeout}"]
    if latency:
        cmd.append("--latency")
    for header in headers:
        cmd += ["-H", header]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout[-500:]
        raise BenchError(f"wrk failed ({done.returncode}): {detail}")
    result = parse_wrk(done.stdout)
    result.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """A server's main process we started (gunicorn's master, granian's); `stop()` ends it (and
    its workers) by its pid, with `stop_signal` (gunicorn's quick shutdown by default)."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path,
                 log: Path, port: int, stop_signal: int = signal.SIGQUIT,
                 workers: int | None = None) -> None:
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log, self.port = log, port
        self.stop_signal, self.workers = stop_signal, workers
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, ready_path: str = "/", timeout: float = 60.0) -> Server:
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} at start-up; "
                                 f"see {self.log}:\n{tail(self.log)}")
            try:
                status, _ = http("GET", self.base_url + ready_path, timeout=2)
                if status < 500 and self._workers_up():
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise BenchError(f"{self.name} did not answer within {timeout:.0f}s; see {self.log}")

    def _workers_up(self) -> bool:
        if self.workers is not None:
            return len(children(self.proc.pid)) >= self.workers if self.proc else False
        one_worker = "-w" in self.argv and self.argv[self.argv.index("-w") + 1] == "1"
        return one_worker or len(self.pids()) > 1

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)] if self.proc else []

    def cpu_seconds(self) -> float:
        return cpu_ticks(self.pids()) / TICK

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # gunicorn: SIGQUIT is the quick shutdown (a stuck request must not hold us for the
        # 30 s graceful timeout); the master stops its workers.
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the session we created for it, only
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
                out.append(int(entry))
    return out


def worker_threads(server: Server) -> list[int]:
    """Threads in each worker of a `server` (its main process's children), smallest first."""
    counts = []
    for pid in children(server.proc.pid) if server.proc else []:
        try:
            counts.append(len(os.listdir(f"/proc/{pid}/task")))
        except OSError:
            continue
    return sorted(counts)


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def pids_named(comm: str) -> list[int]:
    """Processes whose command name is `comm` (read-only look at /proc, e.g. PostgreSQL's)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                    out.append(int(entry))
            except OSError:
                continue
    return out


def ticks_by_pid(pids: list[int]) -> dict[int, int]:
    return {pid: cpu_ticks([pid]) for pid in pids}


def machine_busy() -> tuple[int, int, int]:
    """(busy, busy in processes, total) jiffies of the whole machine; iowait counts as idle,
    and interrupt/softirq time (loopback networking) and steal are busy but no process's."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system = fields[0], fields[1], fields[2]
    return sum(fields[:8]) - fields[3] - fields[4], user + nice + system, sum(fields[:8])


@dataclass
class CpuWindow:
    """CPU used between `start()` and `stop()`: by our servers, by PostgreSQL, by the whole
    machine; `other_cores` is what nobody of ours used (other users' jobs: noise)."""

    servers: dict[str, Server]
    wall: float = 0.0
    server_cpu: dict[str, float] = field(default_factory=dict)
    postgres_cpu: float = 0.0
    busy_cores: float = 0.0
    other_cores: float = 0.0

    def start(self) -> CpuWindow:
        self._t0 = time.monotonic()
        self._cpu0 = {n: s.cpu_seconds() for n, s in self.servers.items()}
        self._pg0 = ticks_by_pid(pids_named("postgres"))
        self._busy0 = machine_busy()
        return self

    def stop(self, wrk_cpu: float = 0.0) -> CpuWindow:
        busy1 = machine_busy()
        self.wall = time.monotonic() - self._t0
        self.server_cpu = {n: s.cpu_seconds() - self._cpu0[n] for n, s in self.servers.items()}
        pg1 = ticks_by_pid(pids_named("postgres"))
        self.postgres_cpu = sum(t - self._pg0.get(pid, 0) for pid, t in pg1.items()) / TICK
        ncpu = os.cpu_count() or 1
        total = max(1, busy1[2] - self._busy0[2])
        self.busy_cores = (busy1[0] - self._busy0[0]) / total * ncpu
        in_processes = (busy1[1] - self._busy0[1]) / total * ncpu
        ours = sum(self.server_cpu.values()) + self.postgres_cpu + wrk_cpu
        self.other_cores = max(0.0, in_processes - ours / max(self.wall, 1e-9))
        return self


# --- machine ---------------------------------------------------------------------------------


def machine_description(pg_url: str | None) -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": "unknown",
        "memory": "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
                break
    except OSError:
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        hyp = re.search(r"Hypervisor vendor:\s+(\S+)", lscpu)
        if hyp:
            info["cpu"] += f" ({hyp.group(1)} guest)"
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib import metadata

    for dist in ("gunicorn", "flask", "werkzeug", "sqlalchemy", "joserfc", "cryptography",
                 "psycopg"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = "-"
    import sqlite3

    info["sqlite"] = sqlite3.sqlite_version
    try:
        info["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True
                                     ).stdout.split(" [")[0].strip()
    except OSError:
        info["wrk"] = "-"
    info["postgresql"] = "-"
    if pg_url:
        try:
            import psycopg

            with psycopg.connect(pg_url, connect_timeout=5) as conn:
                info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - informational only
            info["postgresql"] = f"unknown ({type(exc).__name__})"
    return info


def venv_bin(name: str) -> str:
    """A console script next to this interpreter (the project's .venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise BenchError(f"{name} not found next to {sys.executable} or on PATH")
    return found
