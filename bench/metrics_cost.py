#!/usr/bin/env python3
"""What counting costs per request, in one process, without the noise of a loaded machine.

    .venv/bin/python bench/metrics_cost.py [--requests 20000] [--rounds 5]

Builds siwa-web twice in each of two fresh interpreters, metrics off (no METRICS_TOKEN) and
on, and sends both, in alternating rounds, the same cheap request through Flask's test client
(`GET /.well-known/openid-configuration`: no database, so the request hooks are most of what
metrics add). Process CPU time per request, median over the rounds. Run once with the values
in this process (as under `flask run`) and once in prometheus_client's multiprocess mode (as
under gunicorn: every value written to a memory-mapped file). Also times the recorder's calls
one by one. bench/tokens.py --metrics measures the real endpoints under load, beside each other.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = "/.well-known/openid-configuration"


def _app(tmp: str, token: str | None):
    from siwa_web import create_app

    config = {"TESTING": True, "SECRET_KEY": "bench", "ISSUER": "https://siwa-bench.invalid",
              "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/bench.sqlite", "APPLE_EMULATOR": True}
    if token:
        config["METRICS_TOKEN"] = token
    return create_app(config)


def _per_request_us(client, count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        client.get(PATH)
    return (time.process_time() - started) / count * 1e6


def _per_call_us(call, count: int = 200_000) -> float:
    started = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - started) / count * 1e6


def measure(requests: int, rounds: int) -> dict:
    """In this interpreter (its PROMETHEUS_MULTIPROC_DIR, if any, decides the mode)."""
    from siwa_web.infra import metrics

    with tempfile.TemporaryDirectory() as tmp:
        off = _app(tmp, None).test_client()
        on = _app(tmp, "bench-metrics-token-0123456789").test_client()
        for client in (off, on):
            _per_request_us(client, 200)  # warm up
        offs, ons = [], []
        for rnd in range(rounds):
            pair = ((off, offs), (on, ons)) if rnd % 2 == 0 else ((on, ons), (off, offs))
            for client, results in pair:
                results.append(_per_request_us(client, requests))
        hooks_us = _hooks_us(on.application)
    recorder = metrics.Recorder()
    return {
        "off_us": statistics.median(offs), "on_us": statistics.median(ons),
        "min_off_us": min(offs), "min_on_us": min(ons),
        "hooks_us": hooks_us,
        "counter_inc_us": _per_call_us(lambda: recorder.bearer_check("success")),
        "apple_call_us": _per_call_us(lambda: recorder.apple_call("token", "success", 0.05)),
    }


def _hooks_us(app) -> float:
    """The request timer alone (not its after-request hook), around an app that answers at once."""
    from siwa_web.infra import metrics

    def answer(environ, start_response):
        start_response("200 OK", [])
        return [b""]

    timer = metrics.RequestTimer(answer)
    environ = {"REQUEST_METHOD": "GET"}
    return _per_call_us(lambda: timer(environ, lambda *a: None), 100_000)


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/metrics_cost.py", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="requests per run (2000)")
    p.add_argument("--rounds", type=int, default=20, help="alternating rounds (20)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(a.requests, a.rounds)))
        return 0
    for mode in ("single process", "multiprocess (gunicorn)"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory() as values:
            if mode.startswith("multi"):
                env["PROMETHEUS_MULTIPROC_DIR"] = values
            done = subprocess.run(
                [sys.executable, __file__, "--child", "--requests", str(a.requests),
                 "--rounds", str(a.rounds)], env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{mode}: {PATH} through the test client, CPU per request: median "
              f"{r['off_us']:.0f} us off, {r['on_us']:.0f} us on (x{r['on_us'] / r['off_us']:.3f});"
              f" fastest round {r['min_off_us']:.0f} off, {r['min_on_us']:.0f} on "
              f"(x{r['min_on_us'] / r['min_off_us']:.3f}). Alone: the request timer "
              f"{r['hooks_us']:.1f} us, one counter {r['counter_inc_us']:.2f} us, one Apple call "
              f"(counter + histogram) {r['apple_call_us']:.2f} us")
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
