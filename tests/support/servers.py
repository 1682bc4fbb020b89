"""Misbehaving servers on 127.0.0.1 for failure-bound tests: real sockets, real timeouts.

* `closed_port()`: a port nothing listens on (connections are refused at once).
* `SilentServer`: accepts TCP connections, reads whatever comes, never answers (a hung Redis
  or PostgreSQL). Fixture `silent_server`.
* `TricklingHTTPServer`: answers HTTP requests per path with an `Answer` that may come late
  and one byte every `interval` seconds, so no single socket read ever times out (a
  slow-loris upstream).
Each runs in daemon threads and is stopped at the end of the test.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import pytest


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Listener:
    """A listening socket whose connections are each served by `serve(conn)` in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.connections: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.connections.append(conn)
            threading.Thread(target=self._serve_quietly, args=(conn,), daemon=True).start()

    def _serve_quietly(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except OSError:
            pass

    def serve(self, conn: socket.socket) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass


class SilentServer(_Listener):
    """Accepts and reads, never writes: every client waits for its own timeout.

    `received` counts the chunks read (each command a client sent, roughly).
    """

    received = 0

    def serve(self, conn: socket.socket) -> None:
        while not self.stopped.is_set():
            if not conn.recv(65536):
                return
            self.received += 1


@dataclass
class Answer:
    """One path's answer: after `delay` seconds, `body` (JSON) one byte per `interval` seconds
    (all at once when `interval` is 0)."""

    body: bytes = b"{}"
    interval: float = 0.0
    delay: float = 0.0
    status: int = 200


class TricklingHTTPServer(_Listener):
    """An HTTP server whose answers, per path, come as slowly as told (`answers[path]`);
    paths it was not told about trickle `default`. `paths` lists the request lines read."""

    def __init__(self, default: Answer | None = None, **answers: Answer) -> None:
        self.default = default or Answer(interval=0.5)
        self.answers = {"/" + name.replace("_", "/"): a for name, a in answers.items()}
        self.paths: list[str] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        self.paths.append(line)
        path = line.split(" ")[1] if " " in line else "/"
        answer = self.answers.get(path, self.default)
        raw = (f"HTTP/1.1 {answer.status} X\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n"
               ).encode() + answer.body
        if self.stopped.wait(answer.delay):
            return
        if not answer.interval:
            conn.sendall(raw)
        for i in range(len(raw) if answer.interval else 0):
            if self.stopped.wait(answer.interval if i else 0):
                return
            conn.sendall(raw[i:i + 1])
        conn.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.stop()


def elapsed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - started


@pytest.fixture
def trickling_server():
    """Build with `trickling_server(default=Answer(...), auth_token=Answer(...))`; stopped after."""
    made: list[TricklingHTTPServer] = []

    def build(default: Answer | None = None, **answers: Answer) -> TricklingHTTPServer:
        made.append(TricklingHTTPServer(default, **answers))
        return made[-1]

    yield build
    for server in made:
        server.stop()
