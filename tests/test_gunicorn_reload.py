"""The production server under load survives what operators do to it: HUP, KILL, TERM, USR2.

Real processes, started as an operator starts them (`gunicorn -c gunicorn.conf.py app:app` in
the project directory, production settings, SQLite in a scratch directory), on 127.0.0.1 only.
Every load loop stops at a deadline and a request count. Slow (some 40 s in all), not skipped.
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
CHEAP = "/.well-known/openid-configuration"  # no database, no Apple: the cost is the stack's


# --- processes and sockets, read from /proc ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def workers_of(master: int) -> set[int]:
    """Live (not yet reaped zombie) children of `master`."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == master and fields[0] != "Z":
                found.add(int(entry))
    return found


def is_dead(pid: int) -> bool:
    fields = _stat(pid)
    return fields is None or fields[0] == "Z"


def listening_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets in LISTEN state on `port` (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
                inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets `pid` holds open."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def accepted_by(port: int, client_port: int, pids: set[int]) -> int | None:
    """The pid among `pids` that accepted our connection from `client_port` to `port`."""
    wanted = f":{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[2].endswith(wanted) and fields[9] != "0":
            inode = int(fields[9])
            for pid in pids:
                if inode in socket_inodes(pid):
                    return pid
    return None


def listeners_per_worker(port: int, workers: set[int]) -> tuple[set[int], dict[int, set[int]]]:
    listening = listening_inodes(port)
    return listening, {pid: socket_inodes(pid) & listening for pid in workers}


def assert_each_worker_listens_on_its_own(port: int, workers: set[int]) -> None:
    """One listening socket per worker, none shared, and none that no worker accepts from."""
    listening, held = listeners_per_worker(port, workers)
    layout = f"listening {sorted(listening)}, held by worker {held}"
    assert all(len(inodes) == 1 for inodes in held.values()), layout
    assert len(set().union(*held.values())) == len(workers), layout
    assert set().union(*held.values()) == listening, layout


def wait_until(condition, timeout: float, what: str, server: Gunicorn | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s"
                                 + (f"; gunicorn log:\n{server.log_tail()}" if server else ""))
        time.sleep(0.05)


class Gunicorn:
    """A gunicorn master we started (in its own session); `stop()` ends it by its pid."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path,
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         pass_fds=pass_fds)
        self.pid = self.proc.pid

    def workers(self) -> set[int]:
        return workers_of(self.pid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_for(self, count: int, probe, timeout: float = 30.0) -> set[int]:
        """Wait until `count` workers run and `probe()` answers; return their pids."""
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n"
                                     + self.log_tail())
            workers = self.workers()
            return workers if len(workers) == count and probe() else None
        return wait_until(up, timeout, f"{count} workers answering", self)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # quick shutdown; the master stops its workers
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)  # the session we created for it, only
                self.proc.wait(timeout=15)


# --- the production app, as an operator runs it ------------------------------------------------


def _apple_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def production_env(tmp_path_factory) -> tuple[dict[str, str], Path]:
    """Production settings (Apple unreachable on purpose) and a migrated SQLite template."""
    from cryptography.fernet import Fernet

    template = tmp_path_factory.mktemp("reload-db") / "template.sqlite"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIWA_", "GUNICORN_", "WEB_CONCURRENCY", "LISTEN_"))}
    env.update({
        "SIWA_ENV": "production",
        "SIWA_SECRET_KEY": secrets.token_urlsafe(48),
        "SIWA_TOKEN_ENCRYPTION_KEYS": json.dumps([Fernet.generate_key().decode()]),
        "SIWA_SQLALCHEMY_DATABASE_URI": f"sqlite:///{template}",
        "SIWA_ISSUER": "https://id.example.test",
        "SIWA_APPLE_TEAM_ID": "TEAMRELOAD",
        "SIWA_APPLE_KEY_ID": "KEYRELOAD1",
        "SIWA_APPLE_SERVICES_ID": "com.example.reload.web",
        "SIWA_APPLE_PRIVATE_KEY": _apple_key(),
        "SIWA_APPLE_BASE_URL": f"http://{HOST}:9",  # nothing listens: never called here
        "PYTHONUNBUFFERED": "1",
    })
    done = subprocess.run([str(BIN / "flask"), "--app", "app", "db", "upgrade"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return env, template


@pytest.fixture
def serve(production_env, tmp_path):
    """serve(workers) -> (server, port, worker pids): `gunicorn -c gunicorn.conf.py app:app`."""
    started: list[Gunicorn] = []

    def start(workers: int, threads: int = 4, **extra_env: str) -> tuple[Gunicorn, int, set[int]]:
        base, template = production_env
        db = tmp_path / "siwa.sqlite"
        shutil.copy(template, db)
        port = free_port()
        env = dict(base, SIWA_SQLALCHEMY_DATABASE_URI=f"sqlite:///{db}",
                   GUNICORN_WORKERS=str(workers), GUNICORN_THREADS=str(threads),
                   GUNICORN_BIND=f"{HOST}:{port}", **extra_env)
        # Our own control socket: the default one (in $HOME) belongs to whichever gunicorn
        # started last on this machine.
        argv = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py",
                "--control-socket", str(tmp_path / "gunicorn.ctl"), "app:app"]
        server = Gunicorn(argv, env, ROOT, tmp_path / "gunicorn.log")
        started.append(server)
        pids = server.wait_for(workers, lambda: get(port) == "ok")
        return server, port, pids

    yield start
    for server in started:
        server.stop()


def get(port: int, keep: http.client.HTTPConnection | None = None) -> str:
    """GET the cheap endpoint: "ok", "refused", or what went wrong."""
    conn = keep or http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", CHEAP, headers={} if keep else {"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        if response.status == 200 and b'"issuer"' in body:
            return "ok"
        return f"HTTP {response.status}"
    except ConnectionRefusedError:
        return "refused"
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        if keep is None:
            conn.close()


@dataclass
class Outcome:
    started: float
    took: float
    result: str
    opened: float  # when its connection was opened (earlier than `started` on keep-alive reuse)


class Load:
    """Steady GETs from a few threads: most open a connection per request, one keeps its own.

    Each thread pauses `pause` seconds between requests (some 300 requests/s in all, leaving CPU
    to the workers being started), and stops when the `with` block ends, after `seconds`, or
    after `limit` requests.
    """

    def __init__(self, port: int, threads: int = 4, seconds: float = 60.0,
                 limit: int = 20_000, pause: float = 0.01) -> None:
        self.port, self.seconds, self.limit, self.pause = port, seconds, limit, pause
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i == 0,), daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, keep_alive: bool) -> None:
        deadline = time.monotonic() + self.seconds
        conn = None
        opened = 0.0
        for _ in range(self.limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                break
            if keep_alive and conn is None:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
                opened = time.monotonic()
            started = time.monotonic()
            result = get(self.port, conn)
            took = time.monotonic() - started
            if conn is not None and (result != "ok" or conn.sock is None):
                conn.close()  # the server said Connection: close, or the connection failed
                conn = None
            with self._lock:
                self.outcomes.append(Outcome(started, took, result,
                                             opened if conn is not None or keep_alive else started))
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def results(self, since: float = 0.0, until: float = float("inf"), *,
                new_connections: bool = False) -> Counter:
        """Outcomes of requests started in [since, until); with `new_connections`, only those
        sent on a connection opened in that window too (not a keep-alive one from before)."""
        with self._lock:
            return Counter(o.result for o in self.outcomes if since <= o.started < until
                           and (not new_connections or o.opened >= since))

    def slowest(self) -> float:
        with self._lock:
            return max((o.took for o in self.outcomes), default=0.0)


class SlowPost:
    """A POST /oauth/token whose body trickles in over `seconds`: a request in flight that long.

    `send_head()` sends the headers and a first bit of the body (a worker accepts it and its
    thread waits for the rest); `finish()` sends the rest slowly and reads the whole answer,
    "ok" when it is the app's own OAuth error (4xx with a JSON error), else what went wrong.
    """

    BODY = b"grant_type=refresh_token&client_id=reload-test&refresh_token=" + b"x" * 40

    def __init__(self, port: int, seconds: float = 1.2) -> None:
        self.port, self.seconds = port, seconds
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.result: str | None = None

    def send_head(self) -> SlowPost:
        self.sock.sendall(b"POST /oauth/token HTTP/1.1\r\nHost: id.example.test\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          b"Connection: close\r\nContent-Length: %d\r\n\r\n"
                          % len(self.BODY) + self.BODY[:10])
        return self

    def client_port(self) -> int:
        return self.sock.getsockname()[1]

    def finish(self) -> str:
        try:
            rest = range(10, len(self.BODY), 5)
            for i in rest:
                time.sleep(self.seconds / len(rest))
                self.sock.sendall(self.BODY[i:i + 5])
            answer = b""
            while chunk := self.sock.recv(65536):
                answer += chunk
            head, _, payload = answer.partition(b"\r\n\r\n")
            ok = head.startswith(b"HTTP/1.1 4") and "error" in json.loads(payload or b"{}")
            self.result = "ok" if ok else f"answer {answer[:200]!r}"
        except (OSError, ValueError) as exc:
            self.result = f"{type(exc).__name__}: {exc}"
        finally:
            self.sock.close()
        return self.result


# --- SIGHUP -------------------------------------------------------------------------------------


def test_sighup_under_load_drops_nothing_and_every_new_worker_listens(serve):
    server, port, old = serve(3)
    assert_each_worker_listens_on_its_own(port, old)
    with Load(port) as load:
        time.sleep(1.0)
        # Requests in flight through the reload keep their old workers stopping for a while.
        slow = [SlowPost(port, seconds=2.0).send_head() for _ in range(3)]
        wait_until(lambda: all(accepted_by(port, s.client_port(), old) for s in slow), 10,
                   "the old workers accepting the slow requests", server)
        finishing = [threading.Thread(target=s.finish) for s in slow]
        for thread in finishing:
            thread.start()
        time.sleep(0.3)
        hup = time.monotonic()
        os.kill(server.pid, signal.SIGHUP)
        new = wait_until(lambda: (w := server.workers()) and len(w) == 3 and not w & old and w,
                         30, "three new workers and none of the old", server)
        replaced = time.monotonic()
        # The new workers answer (they load the app first: the requests meanwhile wait).
        wait_until(lambda: sum(load.results(since=replaced).values()) >= 30, 30,
                   "30 requests started and answered after the reload", server)
        for thread in finishing:
            thread.join(timeout=30)
    before, across, after = (load.results(until=hup), load.results(hup, replaced),
                             load.results(since=replaced))
    summary = (f"before HUP {dict(before)}, during {dict(across)}, after {dict(after)}; "
               f"slowest answer {load.slowest():.2f} s; slow requests {[s.result for s in slow]}")
    everything = before + across + after
    assert everything["refused"] == 0, summary
    assert set(everything) == {"ok"}, summary
    assert [s.result for s in slow] == ["ok"] * 3, summary
    assert all(is_dead(pid) for pid in old)
    assert_each_worker_listens_on_its_own(port, new)


# --- SIGKILL ------------------------------------------------------------------------------------


def test_a_killed_worker_is_replaced_and_new_connections_succeed(serve):
    server, port, old = serve(3)
    victim = min(old)
    with Load(port) as load:
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: is_dead(victim), 10, "the killed worker gone")
        dead = time.monotonic()
        workers = wait_until(lambda: (w := server.workers()) and len(w) == 3 and victim not in w
                             and w, 30, "a replacement worker", server)
        replaced = time.monotonic()
        wait_until(lambda: sum(load.results(since=replaced).values()) >= 30, 30,
                   "30 requests started and answered after the replacement", server)
    in_flight, later = load.results(until=dead), load.results(since=dead, new_connections=True)
    summary = (f"started before the kill {dict(in_flight)}, after {dict(later)}; "
               f"slowest answer {load.slowest():.2f} s")
    # Only connections the killed worker had already taken may fail (a request in flight, or
    # the keep-alive client's next request on its connection): every new connection succeeds.
    assert set(later) == {"ok"}, summary
    assert sum(n for result, n in in_flight.items() if result != "ok") <= 4, summary
    assert workers - old and workers & old == old - {victim}
    assert_each_worker_listens_on_its_own(port, workers)


# --- metrics from every worker ------------------------------------------------------------------

METRICS_TOKEN = "gunicorn-scrape-0123456789abcdef"


def scraped_total(port: int, route: str = CHEAP) -> float:
    """GET /metrics on a new connection (either worker may answer); requests counted on `route`."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}",
                                                 "Connection": "close"})
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200, text[:500]
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "siwa_http_requests_total" and sample.labels["route"] == route)


def test_metrics_sum_every_worker_and_keep_a_killed_workers_counts(serve, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")  # must not be read
    server, port, pids = serve(2, SIWA_METRICS_TOKEN=METRICS_TOKEN,
                               PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    assert not (metrics_dir / "counter_1.db").exists()
    before = scraped_total(port)
    for _ in range(40):  # new connections, spread over both workers' sockets by the kernel
        assert get(port) == "ok"
    counted_by = {int(f.stem.split("_")[1]) for f in metrics_dir.glob("counter_*.db")}
    assert pids <= counted_by, (pids, counted_by)  # both workers counted requests
    totals = {scraped_total(port) for _ in range(10)}  # whichever worker answers
    assert totals == {before + 40}
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: is_dead(victim), 10, "the killed worker gone")
    wait_until(lambda: (w := server.workers()) and len(w) == 2 and victim not in w and w, 30,
               "a replacement worker", server)
    assert scraped_total(port) == before + 40  # a dead worker's counts are still summed


# --- SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_lets_an_in_flight_request_finish(serve):
    server, port, workers = serve(2)
    slow = SlowPost(port, seconds=1.2).send_head()
    owner = wait_until(lambda: accepted_by(port, slow.client_port(), workers), 10,
                       "a worker accepting the slow request", server)
    time.sleep(0.3)  # the worker's thread now waits for the rest of the body
    os.kill(server.pid, signal.SIGTERM)
    stopping = time.monotonic()
    assert slow.finish() == "ok"  # the app's whole answer, sent while the server stops
    answered = time.monotonic()
    assert server.proc.wait(timeout=30) == 0, server.log_tail()
    assert answered - stopping >= 1.0  # the request was in flight through the shutdown
    assert is_dead(owner)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5).close()


# --- SIGHUP keeps each listening layout: per worker, shared, unix, inherited --------------------


PID_APP = (
    "import os\n"
    "def app(environ, start_response):\n"
    "    body = str(os.getpid()).encode()\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
    "                              ('Content-Length', str(len(body)))])\n"
    "    return [body]\n"
)


def _ask_pid(port: int | None = None, unix: Path | None = None) -> int | None:
    try:
        if unix is not None:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            sock.connect(str(unix))
        else:
            sock = socket.create_connection((HOST, port), timeout=5)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        return int(answer.partition(b"\r\n\r\n")[2])
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("layout", ["per-worker", "GUNICORN_REUSE_PORT=0", "unix", "systemd"])
def test_sighup_keeps_the_listening_layout(tmp_path, layout):
    (tmp_path / "pidapp.py").write_text(PID_APP)
    port, unix = free_port(), None
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY", "LISTEN_"))}
    env.update(GUNICORN_WORKERS="3", GUNICORN_THREADS="2", GUNICORN_BIND=f"{HOST}:{port}")
    argv = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
            "--control-socket", str(tmp_path / "gunicorn.ctl"), "pidapp:app"]
    pass_fds: tuple[int, ...] = ()
    inherited = None
    if layout == "GUNICORN_REUSE_PORT=0":
        env["GUNICORN_REUSE_PORT"] = "0"
    elif layout == "unix":
        unix = tmp_path / "siwa.sock"
        env["GUNICORN_BIND"] = f"unix:{unix}"
    elif layout == "systemd":
        # Socket activation: the listening socket arrives as fd 3 with LISTEN_FDS/LISTEN_PID.
        inherited = socket.socket()
        inherited.bind((HOST, port))
        inherited.listen(128)
        pass_fds = (inherited.fileno(),)
        argv = [sys.executable, "-c",
                "import os, sys; os.dup2(int(sys.argv[1]), 3); "
                "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
                "os.execv(sys.argv[2], sys.argv[2:])", str(inherited.fileno()), *argv]
    server = Gunicorn(argv, env, tmp_path, tmp_path / "gunicorn.log", pass_fds=pass_fds)
    if inherited is not None:
        inherited.close()  # gunicorn holds it now

    def answers(workers: set[int]) -> bool:
        """Fresh connections are answered by `workers` only, and (one socket per worker, where
        the kernel picks the worker) by every one of them. Bounded: 200 connections at most."""
        seen = set()
        for _ in range(200):
            seen.add(_ask_pid(port, unix))
            if not seen <= workers:
                return False
            if seen == workers or (seen and layout != "per-worker"):
                return True
        return False

    try:
        old = server.wait_for(3, lambda: _ask_pid(port, unix) is not None, timeout=20)
        wait_until(lambda: answers(server.workers()), 20, "every worker answering", server)
        before = listening_inodes(port)
        os.kill(server.pid, signal.SIGHUP)
        new = wait_until(lambda: (w := server.workers()) and len(w) == 3 and not w & old and w,
                         20, "three new workers", server)
        wait_until(lambda: answers(new), 20, "every new worker answering", server)
        if layout == "per-worker":
            assert_each_worker_listens_on_its_own(port, new)
        elif layout == "unix":
            assert listening_inodes(port) == set() and unix.is_socket()
        else:  # one socket, shared by every worker, the very one from before the reload
            listening, held = listeners_per_worker(port, new)
            assert listening == before and len(listening) == 1, (listening, held)
            assert all(inodes == listening for inodes in held.values()), held
    finally:
        server.stop()


def test_usr2_upgrade_inherits_every_socket(tmp_path):
    """USR2 re-executes gunicorn beside the running one, which hands over its sockets.

    The new master inherits every listening socket (GUNICORN_FD) and its workers share them;
    once the old master is stopped it serves alone, and a SIGHUP keeps the same sockets.
    """
    (tmp_path / "pidapp.py").write_text(PID_APP)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY", "LISTEN_"))}
    env.update(GUNICORN_WORKERS="2", GUNICORN_THREADS="2", GUNICORN_BIND=f"{HOST}:{port}")
    argv = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
            "--control-socket", str(tmp_path / "gunicorn.ctl"), "pidapp:app"]
    old_master = Gunicorn(argv, env, tmp_path, tmp_path / "gunicorn.log")
    new_master = None

    def answered_by(workers: set[int]) -> bool:
        return all(_ask_pid(port) in workers for _ in range(20))

    try:
        old_workers = old_master.wait_for(2, lambda: _ask_pid(port) is not None, timeout=20)
        sockets = listening_inodes(port)
        assert_each_worker_listens_on_its_own(port, old_workers)
        os.kill(old_master.pid, signal.SIGUSR2)
        new_master = wait_until(
            lambda: next((pid for pid in workers_of(old_master.pid) - old_workers
                          if len(workers_of(pid)) == 2), None),
            20, "a new master with two workers", old_master)
        new_workers = workers_of(new_master)
        old_master.proc.terminate()  # the operator stops the old one once the new one runs
        assert old_master.proc.wait(timeout=30) == 0, old_master.log_tail()
        wait_until(lambda: answered_by(new_workers), 20, "the new workers answering",
                   old_master)
        listening, held = listeners_per_worker(port, new_workers)
        assert listening == sockets and all(h == sockets for h in held.values()), held

        os.kill(new_master, signal.SIGHUP)
        reloaded = wait_until(lambda: (w := workers_of(new_master)) and len(w) == 2
                              and not w & new_workers and w, 20, "two reloaded workers",
                              old_master)
        wait_until(lambda: answered_by(reloaded), 20, "the reloaded workers answering",
                   old_master)
        assert listening_inodes(port) == sockets
    finally:
        old_master.stop()
        if new_master is not None and not is_dead(new_master):
            os.kill(new_master, signal.SIGQUIT)  # its workers follow it
            try:
                wait_until(lambda: is_dead(new_master), 15, "the new master stopping")
            finally:
                if not is_dead(new_master):
                    os.kill(new_master, signal.SIGKILL)
