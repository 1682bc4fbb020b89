"""Apple for the benchmark: siwa-web's emulator, plus a switchable latency on its token endpoint.

Run by bench/tokens.py as ONE gunicorn worker with many threads (the emulator keeps its codes
in memory, so every call must reach the same process):

    gunicorn -w 1 -k gthread --threads 128 --pythonpath bench 'apple:create_app()'

A tiny WSGI middleware in front of the emulator sleeps before every `POST /auth/token` for the
configured time: a stand-in for the round trip to appleid.apple.com. The emulator's own
`/__emulator/failures` delays are consumed one call at a time (at most 1000 queued), which
does not fit a run of thousands of exchanges. The sleep releases the GIL, so a waiting call
costs no CPU, exactly like waiting on the network.

  GET  /__bench/latency              -> {"seconds": s}
  POST /__bench/latency?seconds=0.1  -> set it (0 = answer at once)
  POST /__bench/mint                 {"count": n, "bundle_id": b, "user_ids": [...]}
                                     -> {"codes": [...]}: n native sign-ins, each made by calling
                                     the emulator's own `POST /__emulator/native/authorize`
                                     in-process (round-robin over the users), to pre-mint the
                                     single-use codes of an exchange round without n HTTP calls

Environment: the same SIWA_APPLE_TEAM_ID, SIWA_APPLE_KEY_ID, SIWA_APPLE_PRIVATE_KEY and
SIWA_APPLE_SERVICES_ID as the app under test (so the emulator trusts its client secrets), and
BENCH_BUNDLE_IDS (comma-separated bundle ids of the registered native clients) and
BENCH_APPLE_BASE_URL (where this server listens).

The bundle ids are fixed here instead of being read from siwa-web's database on every token
call (as `flask emulator run` does): Apple does not query our database, and those extra reads
would be charged to the SQLite file and the CPU under test.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

LATENCY_PATH = "/__bench/latency"
MINT_PATH = "/__bench/mint"
MAX_LATENCY = 10.0
MAX_MINT = 50_000


class LatencyMiddleware:
    """Sleep `seconds` before each `POST /auth/token`; the value is changed over HTTP."""

    def __init__(self, app: Callable, seconds: float = 0.0) -> None:
        self.app = app
        self.seconds = seconds
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == LATENCY_PATH:
            return self._control(environ, start_response)
        if path == MINT_PATH and environ.get("REQUEST_METHOD") == "POST":
            return self._mint(environ, start_response)
        if path == "/auth/token" and environ.get("REQUEST_METHOD") == "POST" and self.seconds > 0:
            time.sleep(self.seconds)
        return self.app(environ, start_response)

    def _control(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        status = "200 OK"
        if environ.get("REQUEST_METHOD") == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            try:
                seconds = float(query.get("seconds", [""])[0])
                if not 0 <= seconds <= MAX_LATENCY:
                    raise ValueError
                with self._lock:
                    self.seconds = seconds
            except ValueError:
                status = "400 Bad Request"
        return _json(start_response, status, {"seconds": self.seconds})


    def _mint(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            spec = json.loads(environ["wsgi.input"].read(size) or b"{}")
            count, bundle_id = int(spec["count"]), str(spec["bundle_id"])
            users = list(spec["user_ids"])
            if not 0 < count <= MAX_MINT or not users:
                raise ValueError("count must be 1..50000 and user_ids non-empty")
        except (KeyError, TypeError, ValueError) as exc:
            return _json(start_response, "400 Bad Request", {"error": str(exc)})
        client = self.app.test_client()
        codes = []
        for i in range(count):
            answer = client.post("/__emulator/native/authorize",
                                 json={"bundle_id": bundle_id, "user_id": users[i % len(users)]})
            if answer.status_code != 200:
                return _json(start_response, "502 Bad Gateway",
                             {"error": f"native/authorize answered {answer.status_code}",
                              "body": answer.get_data(as_text=True)[:500]})
            codes.append(answer.get_json()["authorizationCode"])
        return _json(start_response, "200 OK", {"codes": codes})


def _json(start_response: Callable, status: str, data: Any) -> Iterable[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def create_app() -> LatencyMiddleware:
    from siwa_web.emulator import EmulatorSettings
    from siwa_web.emulator import create_emulator_app
    from siwa_web.emulator.settings import public_pem

    env = os.environ
    bundle_ids = tuple(b for b in env.get("BENCH_BUNDLE_IDS", "").split(",") if b)
    services_id = env["SIWA_APPLE_SERVICES_ID"]
    issuer = env.get("SIWA_ISSUER", "https://bench.invalid")
    settings = EmulatorSettings(
        team_id=env["SIWA_APPLE_TEAM_ID"],
        client_keys={env["SIWA_APPLE_KEY_ID"]: public_pem(env["SIWA_APPLE_PRIVATE_KEY"])},
        services={services_id: [issuer + "/auth/apple/callback"]},
        base_url=env["BENCH_APPLE_BASE_URL"],
        bundle_ids=lambda: bundle_ids,
        notification_url=None,
    )
    return LatencyMiddleware(create_emulator_app(settings))
