"""The relying-party examples of docs/examples/, loaded afresh and run on live servers.

`FlaskExamples` starts copies of docs/examples/webapp_flask.py next to a `live_server`: each
copy is registered with `flask clients create` as an operator would (its callback, its
/signed-out page and its /backchannel-logout receiver), imported with its own environment and
served on its own port of `host` (any loopback address: 127.0.0.0/8 is allowed for http).
"""
from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
import uuid
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from types import ModuleType

from werkzeug.serving import make_server

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def load_example(name: str, monkeypatch, **env: str) -> ModuleType:
    """Import docs/examples/<name>.py afresh, reading `env` as its environment."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module_name = f"example_{name}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


def create_with_cli(live_server, *args: str) -> dict:
    """`flask clients create --type web …`, as an operator runs it; its JSON output."""
    result = live_server.app.test_cli_runner().invoke(
        args=["clients", "create", "--type", "web", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@dataclass
class RunningExample:
    url: str
    module: ModuleType
    client: dict
    userinfo_calls: list = field(default_factory=list)
    logout_tokens: list = field(default_factory=list)  # (token, accepted) per POST received

    @property
    def signed_in(self) -> dict:
        """The example's own record of signed-in siwa-web sessions, by `sid`."""
        return self.module.SIGNED_IN


class FlaskExamples:
    """Start docs/examples/webapp_flask.py as many times as needed; `stop()` ends them all."""

    def __init__(self, live_server, monkeypatch, host: str = "127.0.0.1") -> None:
        self.live, self.monkeypatch, self.host = live_server, monkeypatch, host
        self.servers: list = []

    def start(self, *, first_party: bool, name: str = "Example web app") -> RunningExample:
        port = free_port(self.host)
        url = f"http://{self.host}:{port}"
        client = create_with_cli(
            self.live, "--name", name, "--redirect-uri", url + "/callback",
            "--post-logout-redirect-uri", url + "/signed-out",
            "--backchannel-logout-uri", url + "/backchannel-logout",
            *(["--first-party"] if first_party else []))
        assert client["token_endpoint_auth_method"] == "client_secret_basic"
        module = load_example(
            "webapp_flask", self.monkeypatch, SIWA_ISSUER=self.live.url,
            CLIENT_ID=client["client_id"], CLIENT_SECRET=client["client_secret"],
            APP_SECRET_KEY=uuid.uuid4().hex)
        # Two copies on one host would share one cookie name (cookies ignore ports).
        module.app.config["SESSION_COOKIE_NAME"] = f"example_webapp_{port}"
        running = RunningExample(url, module, client)
        self._record(running)
        server = make_server(self.host, port, module.app, threaded=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.servers.append(server)
        return running

    def _record(self, running: RunningExample) -> None:
        """Keep what /userinfo answered (with which tokens) and every logout token received."""
        module = running.module
        real_userinfo, real_logout_claims = module.oauth.siwa.userinfo, module.logout_claims

        def userinfo(**kwargs):
            claims = real_userinfo(**kwargs)
            running.userinfo_calls.append((kwargs["token"], dict(claims)))
            return claims

        def logout_claims(token: str) -> dict:
            try:
                claims = real_logout_claims(token)
            except Exception:
                running.logout_tokens.append((token, False))
                raise
            running.logout_tokens.append((token, True))
            return claims

        self.monkeypatch.setattr(module.oauth.siwa, "userinfo", userinfo)
        self.monkeypatch.setattr(module, "logout_claims", logout_claims)

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
