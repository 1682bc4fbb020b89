"""siwa-web nodes as real processes behind a switchable load balancer (tests/test_nodes.py).

A `Cluster` is what an operator runs: one PostgreSQL database (the suite's, migrated with
`flask db upgrade`, emptied at the end), one Redis rate-limit store, the Apple emulator as
its own process (`flask emulator run`), and each node a `gunicorn -c gunicorn.conf.py app:app`
of its own, on its own port, with the same SIWA_* environment. Browsers reach the nodes through
`Balancer`, a TCP proxy on the one public address (the ISSUER) that sends each new connection
to the node the test chose — a load balancer without sticky sessions, made deterministic.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import requests
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.config import empty_postgres

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
START_TIMEOUT = 90  # seconds: two CPUs shared with other runs make a cold start slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --- the load balancer --------------------------------------------------------------------------


class Balancer(threading.Thread):
    """A TCP proxy on 127.0.0.1: each new connection goes to `target` (a node's port).

    Connections already open stay where they are, as behind any layer-4 balancer: callers
    close their keep-alive connections to move over. Which node served what is in each
    node's access log (`Cluster.served`).
    """

    def __init__(self, backends: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.backends = backends
        self.target = next(iter(backends))
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self._stopping = False
        self._open: set[socket.socket] = set()

    def run(self) -> None:
        while not self._stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, self.target), daemon=True).start()

    def _serve(self, client: socket.socket, name: str) -> None:
        try:
            upstream = socket.create_connection((HOST, self.backends[name]), timeout=30)
        except OSError:
            client.close()
            return
        self._open.update((client, upstream))
        pump = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        pump.start()
        _pipe(client, upstream)
        pump.join(30)

    def stop(self) -> None:
        """Stop accepting and close every connection (the nodes then have no client left)."""
        self._stopping = True
        self.listener.close()
        for sock in list(self._open):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --- the processes ------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen
    log: Path
    access_log: Path

    def requests(self) -> list[str]:
        """The request lines ("GET /path HTTP/1.1") this node has answered, in order."""
        if not self.access_log.exists():
            return []
        return self.access_log.read_text(errors="replace").splitlines()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass
class Cluster:
    """What the nodes share (environment, database, Redis) and the running processes."""

    env: dict[str, str]
    database_url: str
    redis_url: str
    redis_prefix: str
    balancer: Balancer
    emulator_url: str
    nodes: dict[str, Node] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)
    browsers: list = field(default_factory=list)  # HttpBrowsers that route_to moves along
    client_id: str = ""

    @property
    def public_url(self) -> str:
        """The ISSUER: the balancer's address, as browsers and apps know the service."""
        return self.env["SIWA_ISSUER"]

    def flask(self, *args: str) -> str:
        """Run a `flask --app app …` command as an operator would on any node; its stdout."""
        done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def route_to(self, name: str) -> None:
        """New connections through the balancer go to node `name` from now on; the browsers'
        keep-alive connections are closed (they would stay with their node, as at any
        layer-4 balancer)."""
        self.balancer.target = name
        for browser in self.browsers:
            browser.session.close()

    def mark(self) -> dict[str, int]:
        """How many requests each node has answered so far (for `served`)."""
        return self._settled()

    def served(self, name: str, since: dict[str, int]) -> list[str]:
        """Request lines node `name` answered after `since` (a `mark`)."""
        self._settled()
        return self.nodes[name].requests()[since[name]:]

    def _settled(self, quiet: float = 0.3, timeout: float = 5.0) -> dict[str, int]:
        """The access-log line counts once no node has added a line for `quiet` seconds.

        gunicorn writes a request's line just after sending the response, so a client that
        has its answer may read the log a moment too early.
        """
        deadline = time.monotonic() + timeout
        counts = {name: len(node.requests()) for name, node in self.nodes.items()}
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = {name: len(node.requests()) for name, node in self.nodes.items()}
            if now != counts:
                counts, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return counts

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text(errors='replace')[-4000:]}"
                         for n in self.nodes.values())


def node_environment(database_url: str, redis_url: str, prefix: str, public_url: str,
                     emulator_url: str, **extra: str) -> dict[str, str]:
    """The same SIWA_* settings on every node, as a deployment would give them."""
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIWA_", "GUNICORN_"))}
    env.update({
        "SIWA_SECRET_KEY": secrets.token_urlsafe(32),
        "SIWA_TOKEN_ENCRYPTION_KEYS": json.dumps([Fernet.generate_key().decode()]),
        "SIWA_SQLALCHEMY_DATABASE_URI": database_url,
        "SIWA_RATELIMIT_STORAGE_URI": redis_url,
        "SIWA_RATELIMIT_KEY_PREFIX": prefix,
        "SIWA_RATELIMIT_SWALLOW_ERRORS": "false",
        "SIWA_ISSUER": public_url,
        # the test reaches each node by its own address, not ISSUER's host
        "SIWA_ENFORCE_ISSUER_HOST": "false",
        "SIWA_APPLE_EMULATOR": "true",
        "SIWA_APPLE_BASE_URL": emulator_url,
        "SIWA_APPLE_PRIVATE_KEY": key,
        "SIWA_LOG_LEVEL": "WARNING",
        **extra,
    })
    return env


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited with {process.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {START_TIMEOUT} s:\n"
                         f"{log.read_text(errors='replace')[-4000:]}")


def _spawn(cluster: Cluster, argv: list[str], log: Path, env: dict[str, str] | None = None):
    out = log.open("wb")
    process = subprocess.Popen(argv, cwd=ROOT, env=env or cluster.env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    cluster.processes.append(process)
    return process


@contextmanager
def cluster(database_url: str, redis_url: str, workdir: Path,
            names: tuple[str, ...] = ("a", "b"), **settings: str) -> Iterator[Cluster]:
    """The nodes `names` on the PostgreSQL database `database_url`, emptied afterwards."""
    ports = {n: free_port() for n in names}
    balancer = Balancer(ports)
    emulator_port = free_port()
    emulator_url = f"http://{HOST}:{emulator_port}"
    prefix = f"siwa-nodes-{uuid.uuid4().hex[:8]}"
    env = node_environment(database_url, redis_url, prefix, f"http://localhost:{balancer.port}",
                           emulator_url, **settings)
    found = Cluster(env, database_url, redis_url, prefix, balancer, emulator_url)
    try:
        found.flask("db", "upgrade")
        log = workdir / "emulator.log"
        process = _spawn(found, [str(BIN / "flask"), "--app", "app", "emulator", "run",
                                 "--host", HOST, "--port", str(emulator_port)], log)
        _wait_until_up(emulator_url + "/auth/keys", process, log)
        for node, port in ports.items():
            log = workdir / f"node-{node}.log"
            env = dict(found.env, GUNICORN_BIND=f"{HOST}:{port}", GUNICORN_WORKERS="1",
                       GUNICORN_THREADS="8")
            access = workdir / f"node-{node}-access.log"
            process = _spawn(found, [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py",
                                     "--access-logfile", str(access),
                                     "--access-logformat", "%(r)s", "app:app"], log, env)
            found.nodes[node] = Node(node, port, process, log, access)
        for node in found.nodes.values():
            _wait_until_up(node.url + "/healthz", node.process, node.log)
        balancer.start()
        yield found
    finally:
        for browser in found.browsers:
            browser.session.close()
        balancer.stop()
        for process in found.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown; werkzeug's stop
        for process in found.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        _clear_redis(redis_url, prefix)
        empty_postgres(database_url)


def _clear_redis(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
