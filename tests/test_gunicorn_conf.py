"""gunicorn.conf.py: production defaults, environment overrides, refusal of bad values."""
from __future__ import annotations

import runpy
from pathlib import Path

import prometheus_client  # noqa: F401 - loaded now, before any test sets PROMETHEUS_MULTIPROC_DIR
import pytest

CONF = str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py")


@pytest.fixture(autouse=True)
def metrics_dir(tmp_path, monkeypatch):
    """The hooks run here prepare PROMETHEUS_MULTIPROC_DIR: a scratch one, not /dev/shm's."""
    path = tmp_path / "prometheus"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    monkeypatch.delenv("SIWA_MADE_METRICS_DIR", raising=False)
    return path


def load(monkeypatch, **env: str) -> dict:
    for name in ("GUNICORN_WORKERS", "WEB_CONCURRENCY", "GUNICORN_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(CONF)


def test_defaults(monkeypatch):
    conf = load(monkeypatch)
    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 4, 16)
    assert conf["preload_app"] is False


def test_environment_overrides(monkeypatch):
    conf = load(monkeypatch, GUNICORN_WORKERS="2", GUNICORN_THREADS="8")
    assert (conf["workers"], conf["threads"]) == (2, 8)


@pytest.mark.parametrize(("name", "value"), [("GUNICORN_THREADS", "0"),
                                             ("GUNICORN_WORKERS", "four")])
def test_bad_values_stop_with_the_name(monkeypatch, name, value):
    with pytest.raises(SystemExit, match=name):
        load(monkeypatch, **{name: value})


# --- SO_REUSEPORT: the kernel spreads connections over the workers ----------------------------


@pytest.mark.parametrize(("binds", "env", "expected"), [
    (["127.0.0.1:8000"], {}, True),
    (["0.0.0.0:8000", "[::]:8000"], {}, True),
    (["unix:/run/siwa.sock"], {}, False),  # each worker would unlink the others' socket file
    (["127.0.0.1:8000", "unix:/run/siwa.sock"], {}, False),
    (["fd://3"], {}, False),
    (["127.0.0.1:8000"], {"LISTEN_FDS": "1"}, False),  # systemd socket activation
    (["127.0.0.1:8000"], {"GUNICORN_FD": "5"}, False),  # a USR2 re-exec inherits the sockets
    (["127.0.0.1:8000"], {"GUNICORN_REUSE_PORT": "0"}, False),
    (["127.0.0.1:8000"], {"GUNICORN_REUSE_PORT": "off"}, False),
    (["127.0.0.1:8000"], {"GUNICORN_REUSE_PORT": "1"}, True),
])
def test_reuse_port_only_where_safe(monkeypatch, binds, env, expected):
    conf = load(monkeypatch)
    assert conf["reuse_port_is_safe"](binds, env) is expected


class Arbiter:
    """What the hooks use of gunicorn's arbiter: settings, log, LISTENERS, WORKERS, num_workers."""

    def __init__(self, bind: list[str], workers: int) -> None:
        import logging

        from gunicorn.config import Config

        self.cfg = Config()
        self.cfg.set("bind", bind)  # as `-b ...` on the command line
        self.log = logging.getLogger("test_gunicorn_conf")
        self.LISTENERS: list = []
        self.WORKERS: dict = {}
        self.num_workers = workers
        self.next_pid = 100

    def spawn(self, conf: dict):
        """As Arbiter.spawn_worker: a worker given the master's sockets, then pre_fork."""
        from types import SimpleNamespace

        self.next_pid += 1
        worker = SimpleNamespace(pid=self.next_pid, sockets=self.LISTENERS)
        conf["pre_fork"](self, worker)
        self.WORKERS[worker.pid] = worker
        return worker

    def reap(self, conf: dict, worker) -> None:
        """As Arbiter.reap_workers: forget the worker, then child_exit."""
        del self.WORKERS[worker.pid]
        conf["child_exit"](self, worker)

    def close(self) -> None:
        for lnr in self.LISTENERS:
            lnr.close()


def _ports(listeners) -> set[int]:
    return {lnr.getsockname()[1] for lnr in listeners}


def _reuse_port(lnr) -> bool:
    import socket

    return bool(lnr.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


@pytest.mark.parametrize("bind", [["unix:/tmp/siwa-test.sock"], ["fd://3"]])
def test_shared_sockets_stay_gunicorns(monkeypatch, bind):
    conf = load(monkeypatch)
    arbiter = Arbiter(bind, 2)
    conf["on_starting"](arbiter)
    assert arbiter.cfg.reuse_port is False and arbiter.LISTENERS == []  # gunicorn binds them
    worker = arbiter.spawn(conf)
    assert worker.sockets is arbiter.LISTENERS  # every worker gets all of them


def test_the_master_binds_one_socket_per_worker_and_keeps_them_across_a_reload(monkeypatch):
    from gunicorn.config import Config

    conf = load(monkeypatch)
    arbiter = Arbiter(["127.0.0.1:0"], 3)  # port 0: every socket on the port the first got
    try:
        conf["on_starting"](arbiter)
        assert arbiter.cfg.reuse_port is False  # gunicorn itself never binds per worker
        bound = list(arbiter.LISTENERS)
        assert len(bound) == 3 and len(_ports(bound)) == 1 and all(map(_reuse_port, bound))

        old = [arbiter.spawn(conf) for _ in range(3)]
        assert sorted(id(lnr) for w in old for lnr in w.sockets) == sorted(map(id, bound))

        # SIGHUP: the file is read again into new settings (here even with --reuse-port), the
        # new workers are forked while the old ones still run, then the old ones exit.
        arbiter.cfg = Config()
        arbiter.cfg.set("reuse_port", True)
        new = [arbiter.spawn(conf) for _ in range(3)]
        assert arbiter.cfg.reuse_port is False  # the worker will not bind one of its own
        for worker in old:
            arbiter.reap(conf, worker)
        assert arbiter.LISTENERS == bound  # the same sockets, none closed, none added
        assert all(lnr.sock is not None for lnr in bound)
        assert sorted(id(lnr) for w in new for lnr in w.sockets) == sorted(map(id, bound))
    finally:
        arbiter.close()


def test_a_dead_workers_socket_goes_to_its_replacement(monkeypatch):
    conf = load(monkeypatch)
    arbiter = Arbiter(["127.0.0.1:0"], 2)
    try:
        conf["on_starting"](arbiter)
        first, second = arbiter.spawn(conf), arbiter.spawn(conf)
        arbiter.reap(conf, first)  # killed: the arbiter spawns a replacement next
        assert first.sockets[0].sock is not None
        assert arbiter.spawn(conf).sockets is first.sockets
        assert second.sockets is not first.sockets
    finally:
        arbiter.close()


def test_ttin_adds_a_socket_and_ttou_closes_the_one_left_without_a_worker(monkeypatch):
    conf = load(monkeypatch)
    arbiter = Arbiter(["127.0.0.1:0"], 2)
    try:
        conf["on_starting"](arbiter)
        oldest, second = arbiter.spawn(conf), arbiter.spawn(conf)
        arbiter.num_workers = 3  # TTIN
        third = arbiter.spawn(conf)
        assert len(arbiter.LISTENERS) == 3 and len(_ports(arbiter.LISTENERS)) == 1
        assert third.sockets[0] is arbiter.LISTENERS[2] and _reuse_port(third.sockets[0])

        arbiter.num_workers = 2  # TTOU: the oldest worker is stopped
        arbiter.reap(conf, oldest)
        assert oldest.sockets[0].sock is None  # nobody would accept from it again
        assert arbiter.LISTENERS == second.sockets + third.sockets
    finally:
        arbiter.close()


def test_a_new_address_on_reload_is_shared(monkeypatch):
    conf = load(monkeypatch)
    arbiter = Arbiter(["127.0.0.1:0"], 2)
    try:
        conf["on_starting"](arbiter)
        arbiter.spawn(conf)
        arbiter.close()  # Arbiter.reload() on a new bind address: closes them, binds shared ones
        arbiter.LISTENERS = ["<shared socket>"]
        assert arbiter.spawn(conf).sockets is arbiter.LISTENERS
    finally:
        arbiter.LISTENERS = []


def _listeners(port: int) -> int:
    """LISTEN sockets on 127.0.0.1:`port` (one per worker with SO_REUSEPORT, else one)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and local.endswith(f":{port:04X}"):
            count += 1
    return count


@pytest.fixture
def pid_app(tmp_path):
    (tmp_path / "pidapp.py").write_text(
        "import gc, os\n"
        "LOADED = [object() for _ in range(1000)]  # stands in for the app's long-lived objects\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain'), ('Connection', 'close')])\n"
        "    if environ['PATH_INFO'] == '/frozen':\n"
        "        return [str(gc.get_freeze_count()).encode()]\n"
        "    return [str(os.getpid()).encode()]\n"
    )
    return tmp_path


def _serve(pid_app, **env: str):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    environ.update(GUNICORN_WORKERS="2", GUNICORN_THREADS="2",
                   GUNICORN_BIND=f"127.0.0.1:{port}", **env)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen([gunicorn, "-c", CONF, "--chdir", str(pid_app), "pidapp:app"],
                            env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            if _listeners(port) >= (2 if env.get("GUNICORN_REUSE_PORT") != "0" else 1):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("gunicorn did not come up")
        time.sleep(0.1)
    return proc, port, url


def test_every_worker_listens_and_connections_reach_both(pid_app):
    import urllib.request

    proc, port, url = _serve(pid_app)
    try:
        assert _listeners(port) == 2
        pids = {urllib.request.urlopen(url, timeout=5).read() for _ in range(40)}
        assert len(pids) == 2  # 40 new connections hashed over 2 sockets: both get some
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_one_shared_socket_when_turned_off(pid_app):
    proc, port, _url = _serve(pid_app, GUNICORN_REUSE_PORT="0")
    try:
        assert _listeners(port) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_workers_freeze_what_the_app_loaded(pid_app):
    """Objects alive once the app is loaded are out of the collector's sight in every worker."""
    import urllib.request

    proc, _port, url = _serve(pid_app)
    try:
        frozen = {int(urllib.request.urlopen(url + "frozen", timeout=5).read()) for _ in range(20)}
        assert min(frozen) >= 1000  # at least the app module's own objects, in either worker
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- the metrics directory -----------------------------------------------------------------------


def test_a_given_metrics_directory_is_made_or_emptied_at_start(monkeypatch, metrics_dir):
    conf = load(monkeypatch)
    arbiter = Arbiter(["unix:/tmp/never-bound.sock"], 1)
    conf["on_starting"](arbiter)
    assert metrics_dir.is_dir() and not list(metrics_dir.iterdir())  # made
    (metrics_dir / "counter_99.db").write_bytes(b"x")
    (metrics_dir / "notes.txt").write_text("the operator's")
    conf["on_starting"](arbiter)
    assert [p.name for p in metrics_dir.iterdir()] == ["notes.txt"]  # only old values go
    conf["on_exit"](arbiter)
    assert metrics_dir.is_dir()  # given, so never removed
    import os

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(metrics_dir)


def test_without_one_the_master_makes_a_fresh_directory_and_removes_it_at_exit(monkeypatch):
    import os
    from pathlib import Path

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    conf = load(monkeypatch)
    arbiter = Arbiter(["unix:/tmp/never-bound.sock"], 1)
    try:
        conf["on_starting"](arbiter)
        made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert made.is_dir() and made.name.startswith("siwa-metrics-")
        assert os.environ["SIWA_MADE_METRICS_DIR"] == str(made)
        # A USR2 upgrade's new master inherits the variable, and makes its own directory.
        upgraded = Arbiter(["unix:/tmp/never-bound.sock"], 1)
        conf["on_starting"](upgraded)
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] != str(made)
        conf["on_exit"](upgraded)
        conf["on_exit"](arbiter)
        assert not made.exists()
    finally:  # what the hooks set, not through monkeypatch: it must not come back
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        os.environ.pop("SIWA_MADE_METRICS_DIR", None)


def test_child_exit_forgets_the_dead_workers_live_gauges(monkeypatch, metrics_dir):
    conf = load(monkeypatch)
    metrics_dir.mkdir()
    for name in ("gauge_livesum_101.db", "gauge_liveall_101.db", "counter_101.db",
                 "gauge_livesum_102.db"):
        (metrics_dir / name).write_bytes(b"")
    arbiter = Arbiter(["unix:/tmp/never-bound.sock"], 2)
    from types import SimpleNamespace

    conf["child_exit"](arbiter, SimpleNamespace(pid=101))
    assert sorted(p.name for p in metrics_dir.iterdir()) == ["counter_101.db",
                                                             "gauge_livesum_102.db"]
