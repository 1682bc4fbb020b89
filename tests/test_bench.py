"""The benchmark (bench/tokens.py) stays runnable: its modules import and `--help` works.

Nothing here measures anything; the benchmark itself is run by hand (see docs/performance.md).
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield
    for name in ("tokens", "harness", "report", "floors", "apple", "servers", "granian_apps",
                 "guarantee_app", "server_guarantees"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("module", ["harness", "report", "floors", "apple", "tokens", "servers",
                                    "granian_apps", "guarantee_app", "server_guarantees"])
def test_bench_modules_import(bench_path, module):
    importlib.import_module(module)


def test_bench_lua_scripts_exist():
    for script in ("bodies.lua", "chain.lua", "codeflow.lua"):
        assert (BENCH / script).is_file()


def test_tokens_help():
    done = subprocess.run([sys.executable, str(BENCH / "tokens.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout
    assert "docs/performance.md" in done.stdout


def test_worker_threads_counts_each_childs_threads(bench_path):
    """The thread counts the benchmark reports come from /proc, per child of the master."""
    import types

    harness = importlib.import_module("harness")
    script = ("import sys, threading, time\n"
              "for _ in range(3):\n"
              "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
              "print('ready', flush=True); sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        master = types.SimpleNamespace(proc=types.SimpleNamespace(pid=os.getpid()))
        assert 4 in harness.worker_threads(master)  # three started + the main thread
        assert harness.worker_threads(types.SimpleNamespace(proc=None)) == []
    finally:
        child.communicate("\n", timeout=10)


def _measurement(tokens, case, rnd, rps, **kw):
    values = dict(backend="sqlite", round=rnd, case=case, rps=rps, p50_ms=10.0, p99_ms=20.0,
                  requests=int(rps * 5), connections=16, non2xx=0, timeouts=0, socket_errors=0,
                  server_cpu_us=1000.0, apple_cpu_us=0.0, pg_cpu_us=0.0, wrk_cores=0.1,
                  busy_cores=2.0, other_cores=0.0)
    values.update(kw)
    return tokens.Measurement(**values)


def test_code_flow_target_is_the_median_of_per_round_ratios_to_the_refresh_grant(bench_path):
    tokens = importlib.import_module("tokens")
    report = importlib.import_module("report")
    ms = [_measurement(tokens, "refresh", r, rps) for r, rps in ((1, 200), (2, 100), (3, 200))]
    ms += [_measurement(tokens, "code_flow", r, rps) for r, rps in ((1, 90), (2, 60), (3, 120))]
    summary = report.summarize(ms, slots=64, latency=0.1)
    verdict = next(v for v in summary.backends[0].verdicts if v.target.key == "code_flow")
    assert verdict.target.floor == "refresh" and verdict.target.threshold == 0.50
    assert verdict.ratios == [0.45, 0.6, 0.6] and verdict.median == 0.6
    assert verdict.passed and verdict.verdict == "PASS"
    text = report.render_text(summary, {"gunicorn": "g", "wrk": "w", "exchange_connections": 64})
    assert "code flow, iterations/s" in text
    assert ("code flow (authorize + redeem) ÷ refresh grant: rounds 0.45 0.60 0.60 -> median "
            "0.60 (goal ≥ 0.50) PASS") in text
    markdown = report.render_markdown(summary, _MACHINE, _SETTINGS)
    assert "| code flow (authorize + redeem) ÷ refresh grant | 0.45, 0.60, 0.60 | 0.60 | ≥ 0.50 " \
           "| **pass** |" in markdown
    slow = [_measurement(tokens, "code_flow", r, 40) for r in (1, 2, 3)]
    failing = report.summarize(ms[:3] + slow, slots=64, latency=0.1)
    assert not next(v for v in failing.backends[0].verdicts if v.target.key == "code_flow").passed
    assert not failing.all_passed


def test_an_unexpected_answer_makes_a_code_flow_run_fail(bench_path):
    """A 303 back to the login page is no 4xx: wrk would not count it, the script does."""
    tokens = importlib.import_module("tokens")
    report = importlib.import_module("report")
    bad = _measurement(tokens, "code_flow", 1, 150, notes={"unexpected": "3"})
    assert not bad.clean
    summary = report.summarize([_measurement(tokens, "refresh", 1, 200), bad], slots=64,
                               latency=0.1)
    verdict = next(v for v in summary.backends[0].verdicts if v.target.key == "code_flow")
    assert verdict.median == 0.75 and not verdict.passed
    assert verdict.problems == ["code_flow round 1: unexpected=3"]


_MACHINE = {k: "x" for k in ("date", "nproc", "cpu", "memory", "kernel", "python", "gunicorn",
                             "flask", "werkzeug", "sqlalchemy", "joserfc", "cryptography",
                             "psycopg", "sqlite", "postgresql", "wrk")}
_SETTINGS = {"gunicorn": "g", "wrk": "w", "exchange_connections": 64, "rounds": 3,
             "quick": False, "elapsed_s": 1}


class _FakeProvider:
    """Just enough of /oauth/authorize and /oauth/token to check what codeflow.lua sends."""

    COOKIE, BASIC = "__Host-siwa=session.value", "Basic " + base64.b64encode(b"cli:sec").decode()
    REDIRECT = "https://app.example/callback"

    def __init__(self, signed_in: bool = True) -> None:
        self.signed_in = signed_in
        self.codes: dict[str, str] = {}
        self.states: set[str] = set()
        self.nonces: set[str] = set()
        self.redeemed = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        from werkzeug.wrappers import Request
        from werkzeug.wrappers import Response

        request = Request(environ)
        if request.path == "/oauth/authorize" and request.method == "GET":
            response = self.authorize(request)
        elif request.path == "/oauth/token" and request.method == "POST":
            response = self.token(request)
        else:
            response = Response("not here", status=404)
        return response(environ, start_response)

    def authorize(self, request):
        import secrets

        from werkzeug.utils import redirect

        args = request.args
        if not self.signed_in:
            return redirect("/auth/login?next=/oauth/authorize", code=303)
        expected = {"response_type": "code", "client_id": "cli", "redirect_uri": self.REDIRECT,
                    "scope": "openid offline_access", "code_challenge_method": "S256"}
        with self.lock:
            if request.headers.get("Cookie") != self.COOKIE or any(
                    args.get(k) != v for k, v in expected.items()):
                self.errors.append(f"authorize: {request.headers.get('Cookie')} {dict(args)}")
            if args["state"] in self.states or args["nonce"] in self.nonces:
                self.errors.append(f"authorize: state or nonce reused: {dict(args)}")
            self.states.add(args["state"])
            self.nonces.add(args["nonce"])
            code = secrets.token_urlsafe(32)
            self.codes[code] = args["code_challenge"]
        query = urlencode({"code": code, "state": args["state"], "iss": "https://siwa.test"})
        return redirect(f"{self.REDIRECT}?{query}#_", code=303)

    def token(self, request):
        from werkzeug.wrappers import Response

        form = request.form
        with self.lock:
            challenge = self.codes.pop(form.get("code", ""), None)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            good = (challenge is not None and request.headers.get("Authorization") == self.BASIC
                    and form.get("grant_type") == "authorization_code"
                    and form.get("redirect_uri") == self.REDIRECT
                    and base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge)
            if not good:
                self.errors.append(f"token: {dict(form)}")
                return Response('{"error": "invalid_grant"}', status=400)
            self.redeemed += 1
        return Response('{"id_token": "x", "access_token": "y"}', mimetype="application/json")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.parametrize("signed_in", [True, False])
def test_codeflow_lua_authorizes_then_redeems_each_code_once(bench_path, tmp_path, signed_in):
    """The Lua script of the code-flow case against a fake provider, for one second."""
    from urllib.parse import quote

    from werkzeug.serving import make_server

    harness = importlib.import_module("harness")
    tokens = importlib.import_module("tokens")
    provider = _FakeProvider(signed_in=signed_in)
    server = make_server("127.0.0.1", 0, provider, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    pairs = tmp_path / "pkce.txt"
    pairs.write_text("\n".join(" ".join(tokens.pkce_pair()) for _ in range(5)) + "\n")
    path = "/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": "cli", "redirect_uri": _FakeProvider.REDIRECT,
        "scope": "openid offline_access", "code_challenge_method": "S256"}, quote_via=quote)
    try:
        res = harness.run_wrk(
            f"http://127.0.0.1:{server.server_port}/oauth/authorize", connections=4, duration=1,
            script=BENCH / "codeflow.lua", script_args=(
                path, _FakeProvider.COOKIE, _FakeProvider.BASIC,
                quote(_FakeProvider.REDIRECT, safe=""), str(pairs)))
    finally:
        server.shutdown()
        thread.join(timeout=10)
    iterations = int(res.extra["iterations"])
    if not signed_in:  # sent to the login page: no code, every answer unexpected
        assert iterations == 0 and int(res.extra["unexpected"]) > 0 and res.non2xx == 0
        assert res.extra["first_error"].startswith("authorize:303:")
        return
    assert provider.errors == [] and res.extra["unexpected"] == "0" and res.non2xx == 0
    assert iterations > 0 and int(res.extra["authorized"]) >= iterations
    assert 0 <= provider.redeemed - iterations <= 4  # answers wrk no longer read at the end
    assert int(res.extra["duration_us"]) > 0


def test_metrics_targets_appear_only_when_metrics_were_measured(bench_path):
    """`--metrics`: the hot paths with metrics on meet the same targets; on ÷ off is reported."""
    tokens = importlib.import_module("tokens")
    report = importlib.import_module("report")
    plain = [_measurement(tokens, case, r, rps) for r in (1, 2, 3)
             for case, rps in (("verify_floor", 1000), ("api_me", 900), ("refresh_floor", 500),
                               ("refresh", 400))]
    keys = {v.target.key for v in report.summarize(plain, slots=64, latency=0.1)
            .backends[0].verdicts}
    assert not {k for k in keys if "metrics" in k}  # a run without --metrics: not "not measured"
    on = [_measurement(tokens, "api_me_metrics", r, rps) for r, rps in ((1, 880), (2, 870),
                                                                          (3, 890))]
    on += [_measurement(tokens, "refresh_metrics", r, 392) for r in (1, 2, 3)]
    verdicts = {v.target.key: v for v in report.summarize(plain + on, slots=64, latency=0.1)
                .backends[0].verdicts}
    assert verdicts["api_me_metrics"].median == pytest.approx(0.88)
    assert verdicts["api_me_metrics"].passed  # goal 0.85 of the verify floor
    assert verdicts["api_me_metrics_cost"].median == pytest.approx(880 / 900)
    assert verdicts["refresh_metrics_cost"].median == pytest.approx(0.98)
    assert verdicts["refresh_metrics_cost"].informational
    slow = [_measurement(tokens, "api_me_metrics", r, 800) for r in (1, 2, 3)]
    assert not next(v for v in report.summarize(plain + slow, slots=64, latency=0.1)
                    .backends[0].verdicts if v.target.key == "api_me_metrics").passed


def test_tokens_metrics_option(bench_path):
    tokens = importlib.import_module("tokens")
    assert tokens.parse_args(["--quick", "--metrics"]).metrics
    assert not tokens.parse_args(["--quick"]).metrics


# --- HTTP servers side by side (--servers) -----------------------------------------------------


def _pair(tokens, case, rnd, base_rps, other_rps, **other):
    return [_measurement(tokens, case, rnd, base_rps, server="gunicorn"),
            _measurement(tokens, case, rnd, other_rps, server="granian", **other)]


def test_servers_are_compared_round_by_round_against_the_first(bench_path):
    tokens = importlib.import_module("tokens")
    report = importlib.import_module("report")
    ms = []
    for rnd, (base, other) in enumerate(((1000, 1600), (1000, 1400), (900, 1440)), start=1):
        ms += _pair(tokens, "api_me", rnd, base, other, server_cpu_us=500.0)
        ms += _pair(tokens, "refresh", rnd, 100, 110)
        ms += _pair(tokens, "exchange_100ms", rnd, 200, 196)
    rows = {r.case: r for r in report.compare_servers(ms, ("gunicorn", "granian"), 0.1)}
    api = rows["api_me"]
    assert api.server == "granian" and api.ratios == [1.6, 1.4, 1.6] and api.median == 1.6
    assert api.goal == 1.5 and api.verdict == "PASS"
    assert api.cpu_ratios == [2.0, 2.0, 2.0]  # gunicorn's 1000 us per request / granian's 500
    assert rows["refresh"].median == pytest.approx(1.1) and rows["refresh"].verdict == "FAIL"
    assert rows["exchange_100ms"].goal == 0.95 and rows["exchange_100ms"].verdict == "PASS"
    text = report.render_comparison(list(rows.values()), "gunicorn")
    assert "1.60, 1.40, 1.60" in text and "median 1.60 (goal ≥ 1.50) PASS" in text
    assert "token exchange, Apple 100 ms" in text
    markdown = report.render_comparison(list(rows.values()), "gunicorn", markdown=True)
    assert "| SQLite (WAL) | granian | GET /api/me (Bearer) | 1.60, 1.40, 1.60 | 1.60 | ≥ 1.50 " \
           "| PASS | 2.00 |" in markdown


def test_a_timeout_on_either_side_fails_the_exchange_comparison(bench_path):
    tokens = importlib.import_module("tokens")
    report = importlib.import_module("report")
    ms = _pair(tokens, "exchange_100ms", 1, 200, 260, timeouts=3)
    ms += _pair(tokens, "hello", 1, 1000, 3000)
    rows = {r.case: r for r in report.compare_servers(ms, ("gunicorn", "granian"), 0.1)}
    assert rows["exchange_100ms"].median == 1.3 and rows["exchange_100ms"].verdict == "FAIL"
    assert rows["exchange_100ms"].problems == ["granian round 1: timeouts=3"]
    assert rows["hello"].goal is None and rows["hello"].verdict == "info"


def test_a_case_missing_under_the_second_server_is_not_measured(bench_path):
    tokens = importlib.import_module("tokens")
    report = importlib.import_module("report")
    ms = [_measurement(tokens, "api_me", 1, 1000, server="gunicorn")]
    (row,) = report.compare_servers(ms, ("gunicorn", "granian"), 0.1)
    assert row.ratios == [] and row.verdict == "FAIL" and row.problems == ["not measured"]


def test_servers_option(bench_path):
    tokens = importlib.import_module("tokens")
    assert tokens.parse_args([]).servers == ("gunicorn",)
    both = tokens.parse_args(["--servers", "gunicorn,granian"])
    assert both.servers == ("gunicorn", "granian")
    assert both.doc is None  # a comparison never rewrites the results section by itself
    assert tokens.parse_args(["--servers", "gunicorn,granian", "--doc", "x.md"]).doc == \
        Path("x.md")
    for bad in ("uwsgi", "gunicorn,gunicorn", ","):
        with pytest.raises(SystemExit):
            tokens.parse_args(["--servers", bad])


def test_both_servers_get_the_same_worker_slots(bench_path, tmp_path):
    servers = importlib.import_module("servers")
    common = dict(binary="/bin/x", host="127.0.0.1", port=8123, workers=3, threads=7,
                  root=tmp_path, bench_dir=tmp_path / "bench", conf=tmp_path / "g.conf.py")
    g = servers.launch("gunicorn", target="app", **common)
    assert g.argv[-1] == "app:app" and g.argv[1:3] == ["-c", str(tmp_path / "g.conf.py")]
    assert "127.0.0.1:8123" in g.argv and g.workers == 3
    floors = servers.launch("gunicorn", target="floors", **common)
    assert floors.argv[-1] == "floors:create_app()" and str(tmp_path / "bench") in floors.argv
    r = servers.launch("granian", target="app", **common)
    flags = dict(zip(r.argv[1::2], r.argv[2::2], strict=False))
    assert r.argv[-1] == "granian_apps:siwa"
    assert ["--workers", "3"] == r.argv[r.argv.index("--workers"):][:2]
    assert ["--blocking-threads", "7"] == r.argv[r.argv.index("--blocking-threads"):][:2]
    assert "--respawn-failed-workers" in r.argv and "--factory" in r.argv
    assert flags["--interface"] == "wsgi" and r.workers == 3
    assert r.env["PYTHONPATH"].split(":") == [str(tmp_path / "bench"), str(tmp_path)]
    assert servers.launch("granian", target="x", spec="guarantee_app:create()",
                          **common).argv[-1] == "guarantee_app:create"
    with pytest.raises(ValueError):
        servers.launch("uwsgi", target="app", **common)


def test_guarantee_app_names_its_worker_and_sleeps_on_request(bench_path):
    from werkzeug.test import Client

    app = importlib.import_module("guarantee_app").create()
    client = Client(app)
    r = client.get("/pid", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert r.status_code == 200 and r.json == {"pid": os.getpid(), "remote_addr": "192.0.2.7"}
    assert client.get("/slow?s=0.01").status_code == 200
    assert client.get("/elsewhere").status_code == 404
