"""The Apple HTTP session reuses keep-alive connections, but never one that sat idle too long."""
from __future__ import annotations

import inspect
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest
import urllib3
from urllib3 import PoolManager
from urllib3 import ProxyManager
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.connectionpool import HTTPSConnectionPool

from siwa_web.apple import http
from siwa_web.apple.client import AppleClient
from siwa_web.apple.settings import AppleSettings


class _KeepAlive(BaseHTTPRequestHandler):
    """Answers `{}`; records each request's client port and target (absolute when proxied)."""

    protocol_version = "HTTP/1.1"  # keep connections open between requests

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.ports.append(self.client_address[1])
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    httpd.daemon_threads = True
    httpd.ports, httpd.paths = [], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_port}/auth/token"


def test_a_busy_connection_is_reused(server):
    s = http.session(idle_seconds=5)
    for _ in range(3):
        assert s.post(url(server), data={"a": "b"}, timeout=5).status_code == 200
    assert len(set(server.ports)) == 1


def test_a_connection_idle_too_long_is_replaced_before_sending(server):
    s = http.session(idle_seconds=0.2)
    assert s.post(url(server), data={"a": "b"}, timeout=5).status_code == 200
    time.sleep(0.3)
    assert s.post(url(server), data={"a": "b"}, timeout=5).status_code == 200
    assert len(server.ports) == 2 and server.ports[0] != server.ports[1]


def test_https_pools_get_the_limit_too():
    adapter = http.session(idle_seconds=0.7).get_adapter("https://appleid.apple.com")
    pool = adapter.poolmanager.connection_from_url("https://appleid.apple.com/auth/token")
    assert pool.idle_seconds == 0.7
    assert pool.scheme == "https"


def test_the_apple_client_uses_the_configured_limit(apple_private_key_pem):
    settings = AppleSettings(base_url="https://appleid.apple.com", team_id="T", key_id="K",
                             private_key_pem=apple_private_key_pem, http_idle_seconds=0.9)
    client = AppleClient(settings)
    adapter = client.session.get_adapter(settings.token_url)
    assert isinstance(adapter, http.IdleLimitAdapter)
    assert adapter.poolmanager.connection_from_url(settings.token_url).idle_seconds == 0.9


APPLE = "http://apple.test"


def test_the_environments_proxy_is_used(server, monkeypatch):
    proxy = server  # a forward proxy that answers itself is enough to see it was asked
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    s = http.session(idle_seconds=5, base_url=APPLE)
    monkeypatch.delenv("HTTP_PROXY")  # read once, when the session was made
    assert s.post(APPLE + "/auth/token", data={"a": "b"}, timeout=5).status_code == 200
    assert proxy.paths == [APPLE + "/auth/token"]


def test_a_proxys_connections_get_the_limit_too(server, monkeypatch):
    proxy = server
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    s = http.session(idle_seconds=0.5, base_url=APPLE)
    for pause in (0, 0, 0.6):
        time.sleep(pause)
        assert s.post(APPLE + "/auth/token", data={"a": "b"}, timeout=5).status_code == 200
    assert proxy.paths == [APPLE + "/auth/token"] * 3
    assert proxy.ports[0] == proxy.ports[1] != proxy.ports[2]  # reused while busy, not once idle


def test_tunnelled_https_pools_get_the_limit_too():
    adapter = http.session(idle_seconds=0.7).get_adapter("https://appleid.apple.com")
    manager = adapter.proxy_manager_for("http://proxy.internal:3128")
    pool = manager.connection_from_url("https://appleid.apple.com/auth/token")
    assert pool.idle_seconds == 0.7
    assert pool.scheme == "https" and pool.proxy is not None
    assert adapter.proxy_manager_for("http://proxy.internal:3128") is manager


def test_no_proxy_for_apple_is_honoured(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "appleid.apple.com")
    s = http.session(idle_seconds=5, base_url="https://appleid.apple.com")
    assert not s.trust_env and "https" not in s.proxies


@pytest.mark.parametrize("name", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_environments_ca_bundle_is_used(monkeypatch, name, tmp_path):
    for other in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, str(tmp_path / "corporate-ca.pem"))
    s = http.session(idle_seconds=5, base_url="https://appleid.apple.com")
    assert s.verify == str(tmp_path / "corporate-ca.pem")


def test_the_environment_is_not_read_per_request(server, monkeypatch):
    s = http.session(idle_seconds=5, base_url=url(server))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    assert s.post(url(server), data={"a": "b"}, timeout=5).status_code == 200


def test_the_apple_client_fixes_its_environment(apple_private_key_pem, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = AppleSettings(base_url="https://appleid.apple.com", team_id="T", key_id="K",
                             private_key_pem=apple_private_key_pem)
    session = AppleClient(settings).session
    assert not session.trust_env
    assert session.proxies["https"] == "http://proxy.internal:3128"


# --- the private urllib3 hooks the idle limit overrides (why: the comment in apple/http.py) -----


def _changed(what: str) -> str:
    return (f"urllib3 {urllib3.__version__} changed {what}, which siwa_web/apple/http.py "
            "overrides to close pooled connections to Apple idle for APPLE_HTTP_IDLE_SECONDS: "
            "redo that idle limit for this urllib3 (see the comment in apple/http.py)")


@pytest.mark.parametrize("pool_class", [HTTPConnectionPool, HTTPSConnectionPool])
@pytest.mark.parametrize("name, parameters", [("_get_conn", ["self", "timeout"]),
                                              ("_put_conn", ["self", "conn"])])
def test_urllib3_pools_still_have_the_hooks(pool_class, name, parameters):
    method = getattr(pool_class, name, None)
    assert callable(method), _changed(f"{pool_class.__name__}.{name} (it is gone)")
    signature = inspect.signature(method)
    assert list(signature.parameters) == parameters, \
        _changed(f"{pool_class.__name__}.{name}{signature}")
    if name == "_get_conn":
        assert signature.parameters["timeout"].default is None, \
            _changed(f"{pool_class.__name__}.{name}{signature}")


@pytest.mark.parametrize("manager", [PoolManager, lambda: ProxyManager("http://proxy.test:3128")],
                         ids=["PoolManager", "ProxyManager"])
def test_urllib3_pool_managers_still_take_pool_classes_by_scheme(manager):
    manager = manager()
    classes = getattr(manager, "pool_classes_by_scheme", None)
    assert classes == {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}, \
        _changed(f"{type(manager).__name__}.pool_classes_by_scheme (now {classes!r})")
    mine = type("Mine", (HTTPSConnectionPool,), {})
    manager.pool_classes_by_scheme = {**classes, "https": mine}
    assert type(manager.connection_from_url("https://appleid.apple.com/auth/token")) is mine, \
        _changed(f"how {type(manager).__name__} picks its pool class (not pool_classes_by_scheme)")


def test_urllib3_still_takes_and_returns_connections_through_the_hooks(server, monkeypatch):
    s = http.session(idle_seconds=5)
    pool_class = type(s.get_adapter(url(server)).poolmanager.connection_from_url(url(server)))
    calls = []

    def spy(name):
        hook = getattr(pool_class, name)

        def called(pool, *args, **kwargs):
            calls.append((name, args[0] is not None if name == "_put_conn" else None))
            return hook(pool, *args, **kwargs)
        return called

    for name in ("_get_conn", "_put_conn"):
        monkeypatch.setattr(pool_class, name, spy(name))
    for _ in range(2):
        assert s.post(url(server), data={"a": "b"}, timeout=5).status_code == 200
    assert calls == [("_get_conn", None), ("_put_conn", True)] * 2, \
        _changed(f"when pools call _get_conn/_put_conn (a request made these calls: {calls})")
    assert len(set(server.ports)) == 1
