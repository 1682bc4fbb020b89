"""Does siwa-web stay steady at production data sizes? (PostgreSQL; docs/performance.md, 10.)

    python bench/datasize.py [--users 100000 --tokens 1000000 --events 2000000] [--rounds 3]
                             [--explain-only] [--json out.json]

Two databases side by side, each served by its own gunicorn with the same settings
(gunicorn.conf.py): a small one (what bench/tokens.py measures) and a big one filled by
set-based SQL (bench/datasize_sql.py). Then:

1. the refresh grant and GET /api/me, interleaved small/big in every round (order swapped each
   round): target, big >= 0.9 x small (median of the per-round ratios);
2. `flask prune` on the big database, deleting its expired rows in batches while refreshes
   run: target, their p99 <= 2 x the idle p99 measured just before;
3. every hot path run once through a recording server (bench/recorder.py) against the big
   database and each statement EXPLAINed (bench/explain.py): sequential scans of big tables
   are listed.

Reuses bench/tokens.py's machinery (Apple emulator, gunicorn start, wrk runs, CPU windows).
Everything listens on 127.0.0.1; the databases it creates are dropped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasize_sql  # noqa: E402
import explain  # noqa: E402
import harness  # noqa: E402
import recorder  # noqa: E402
import tokens  # noqa: E402
from harness import BenchError  # noqa: E402


@dataclass
class Site:
    """One database and the server in front of it."""

    name: str
    db_url: str
    env: dict[str, str]
    client_id: str = ""
    web_client_id: str = ""
    web_secret: str = ""
    app: Any = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--tokens", type=int, default=1_000_000, help="refresh tokens (4 a family)")
    p.add_argument("--events", type=int, default=2_000_000, help="audit events")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--prune-batch", type=int, default=None,
                   help="SIWA_PRUNE_BATCH_SIZE for flask prune (default: siwa-web's, 1000)")
    p.add_argument("--prune-pause", type=float, default=None,
                   help="SIWA_PRUNE_PAUSE_SECONDS (default: siwa-web's, 0)")
    p.add_argument("--prune-sleep-ratio", type=float, default=None,
                   help="SIWA_PRUNE_SLEEP_RATIO (default: siwa-web's, 1)")
    p.add_argument("--explain-only", action="store_true",
                   help="generate the big database, EXPLAIN the hot paths, stop")
    p.add_argument("--json", type=Path, help="write every measurement and finding here")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return p.parse_args(argv)


class DataSize(tokens.Bench):
    def __init__(self, args: argparse.Namespace) -> None:
        opts = tokens.Options(rounds=args.rounds, duration=args.duration, warmup=args.warmup,
                              connections=args.connections, backends=("postgres",), doc=None,
                              keep=args.keep, groups=("api", "refresh", "code"))
        super().__init__(opts)
        self.args = args
        self.result: dict[str, Any] = {}

    def use(self, site: Site) -> None:
        """Point bench/tokens.py's cases at `site`."""
        self.app = self.floor = site.app
        self.client_id, self.db_url, self.backend = site.client_id, site.db_url, site.name
        self.web_client_id, self.web_secret = site.web_client_id, site.web_secret

    def prepare(self, name: str) -> Site:
        url = self.make_database("postgres")
        if url is None:
            raise BenchError("PostgreSQL is needed: " + self.skipped.get("postgres", ""))
        site = Site(name, url, self.app_env(url, 0))
        self.flask(site.env, "db", "upgrade")
        site.client_id = json.loads(self.flask(site.env, "clients", "create", "--name",
                                               "Bench iOS", "--bundle-id",
                                               tokens.BUNDLE_ID))["client_id"]
        web = json.loads(self.flask(site.env, "clients", "create", "--type", "web", "--name",
                                    "Bench Web", "--redirect-uri", tokens.WEB_REDIRECT,
                                    "--first-party"))
        site.web_client_id, site.web_secret = web["client_id"], web["client_secret"]
        return site

    def run(self) -> int:
        a = self.args
        harness.ensure_wrk()
        self.machine = harness.machine_description(self.opts.pg_admin_url)
        self.log(f"load average {os.getloadavg()}; scratch {self.work}")
        started = time.monotonic()
        try:
            self.start_apple()
            small, big = self.prepare("small"), self.prepare("big")
            self.log(f"[big] generating {a.users:,} users, {a.tokens:,} refresh tokens, "
                     f"{a.events:,} audit events")
            t0 = time.monotonic()
            natives = [big.client_id] + self.extra_clients(big, 3)
            took = datasize_sql.generate(big.db_url, users=a.users, tokens=a.tokens,
                                         events=a.events, clients=natives,
                                         web_client=big.web_client_id, log=self.log)
            self.result["generated"] = {"seconds": round(time.monotonic() - t0, 1),
                                        "per_table": took, "rows": self.row_counts(big)}
            self.result["explain"] = self.explain(big)
            if not a.explain_only:
                self.measure_sites(small, big)
        finally:
            self.result["elapsed_s"] = round(time.monotonic() - started)
            self.result["load_average"] = os.getloadavg()
            self.cleanup()
        self.result["measurements"] = [asdict(m) for m in self.measurements]
        print(json.dumps({k: v for k, v in self.result.items()
                          if k not in ("measurements", "explain")}, indent=1))
        if a.json:
            a.json.write_text(json.dumps(self.result, indent=1, default=str))
        if a.explain_only:
            return 1 if any(f["seq_scans"] for f in self.result["explain"]) else 0
        return 0 if self.result.get("passed") else 1

    def measure_sites(self, small: Site, big: Site) -> None:
        """Targets 1 and 2: rates interleaved small/big, then prune under refresh load."""
        for site in (small, big):
            site.app = self.start_gunicorn(f"app-{site.name}", "app:app", site.env,
                                           harness.free_port(),
                                           ready="/.well-known/openid-configuration")
        self.use(small)
        self.fill_thread_pools_of([small.app, big.app])
        self.rates(small, big)
        self.prune_under_load(big)

    # --- set-up ------------------------------------------------------------------------------

    def extra_clients(self, site: Site, n: int) -> list[str]:
        ids = []
        for i in range(n):
            ids.append(json.loads(self.flask(
                site.env, "clients", "create", "--name", f"Datasize App {i}", "--bundle-id",
                f"com.example.datasize.app{i}"))["client_id"])
        return ids

    def row_counts(self, site: Site) -> dict[str, int]:
        import psycopg

        with psycopg.connect(site.db_url.replace("postgresql+psycopg://", "postgresql://")) as c:
            return {t: c.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                    for t in ("users", "apple_identities", "token_families", "refresh_tokens",
                              "audit_events", "backchannel_logouts", "web_sessions")}

    def fill_thread_pools_of(self, servers: list[Any]) -> None:
        for server in servers:
            harness.run_wrk(server.base_url + "/.well-known/openid-configuration",
                            connections=4 * self.slots, duration=2, latency=False)

    # --- 1. rates, interleaved ---------------------------------------------------------------

    def rates(self, small: Site, big: Site) -> None:
        for rnd in range(1, self.opts.rounds + 1):
            self.log(f"round {rnd}/{self.opts.rounds}")
            order = [small, big] if rnd % 2 else [big, small]
            for case in ("refresh", "api_me"):
                for site in order:
                    self.use(site)
                    (self.case_refresh if case == "refresh" else self.case_api_me)(rnd)
        ratios: dict[str, Any] = {}
        for case in ("refresh", "api_me"):
            per_round = []
            for rnd in range(1, self.opts.rounds + 1):
                got = {m.backend: m.rps for m in self.measurements
                       if m.case == case and m.round == rnd}
                if got.get("small"):
                    per_round.append(round(got["big"] / got["small"], 3))
            ratios[case] = {"per_round": per_round, "median": statistics.median(per_round)}
        self.result["rate_ratio_big_over_small"] = ratios
        self.result["rates_pass"] = all(r["median"] >= 0.9 for r in ratios.values())

    # --- 2. prune while refreshes run --------------------------------------------------------

    def prune_under_load(self, big: Site) -> None:
        self.use(big)
        before = self.row_counts(big)
        idle = [self.case_refresh_tagged("refresh_idle", r) for r in (1, 2)]
        env = dict(big.env)
        for name, value in (("SIWA_PRUNE_BATCH_SIZE", self.args.prune_batch),
                            ("SIWA_PRUNE_PAUSE_SECONDS", self.args.prune_pause),
                            ("SIWA_PRUNE_SLEEP_RATIO", self.args.prune_sleep_ratio)):
            if value is not None:
                env[name] = str(value)
        out = self.work / "prune.out"
        chosen = " ".join(f"{k}={v}" for k, v in env.items() if k.startswith("SIWA_PRUNE_"))
        self.log(f"[big] flask prune ({chosen or 'default batches and pacing'}) "
                 "while refreshes run")
        t0 = time.monotonic()
        with open(out, "w") as sink:
            proc = subprocess.Popen([harness.venv_bin("flask"), "--app", "app", "prune"],
                                    cwd=tokens.ROOT, env=env, stdout=sink,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        during = []
        try:
            rnd = 1
            while proc.poll() is None and rnd <= 200:
                during.append(self.case_refresh_tagged("refresh_during_prune", rnd))
                rnd += 1
            proc.wait(timeout=3600)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        seconds = round(time.monotonic() - t0, 1)
        if proc.returncode != 0:
            raise BenchError(f"flask prune failed: {out.read_text()[-2000:]}")
        after = self.row_counts(big)
        removed = {t: before[t] - after[t] for t in before}
        idle_p99 = statistics.median(m.p99_ms for m in idle)
        during_p99 = max(m.p99_ms for m in during) if during else 0.0
        self.result["prune"] = {
            "seconds": seconds, "printed": json.loads(out.read_text().strip().splitlines()[-1]),
            "rows_removed": removed, "rows_removed_total": sum(removed.values()),
            "idle_p99_ms": idle_p99, "during_p99_ms_worst": during_p99,
            "during_p99_ms": [m.p99_ms for m in during],
            "during_rps": [round(m.rps, 1) for m in during],
            "p99_ratio_worst": round(during_p99 / idle_p99, 2) if idle_p99 else None,
        }
        self.result["prune_pass"] = bool(during) and during_p99 <= 2 * idle_p99 \
            and sum(removed.values()) >= 1_000_000
        self.result["passed"] = self.result["rates_pass"] and self.result["prune_pass"]

    def case_refresh_tagged(self, case: str, rnd: int) -> Any:
        m = self.measure(rnd, case, self.app, "/oauth/token", lambda phase, conns, s:
                         self.chain_args("/oauth/token", self.app_seeds(2 * conns + 8),
                                         "&client_id=" + self.client_id))
        return m

    # --- 3. EXPLAIN the hot paths ------------------------------------------------------------

    def explain(self, big: Site) -> list[dict[str, Any]]:
        """Run each hot path once through a recording server, then EXPLAIN what it sent."""
        record = self.work / "statements.pickle"
        env = dict(big.env, BENCH_RECORD_FILE=str(record))
        server = self.start_gunicorn("recorder", "recorder:create_app()", env,
                                     harness.free_port(),
                                     extra=["-w", "1", "-k", "gthread", "--threads", "4",
                                            "--pythonpath", str(tokens.BENCH_DIR)],
                                     ready="/.well-known/openid-configuration")
        big.app = server
        self.use(big)
        self.log("[big] hot paths through the recorder: exchange, refresh, /api/me, browser "
                 "sign-in, authorize + code, dashboard")
        got = self.exchange_once()
        self.http.post(server.base_url + "/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": got["refresh_token"],
            "client_id": self.client_id})
        self.http.get(server.base_url + "/api/me",
                      headers={"Authorization": "Bearer " + got["access_token"]})
        self.browser_cookie = self.sign_in_browser()
        self.pkce_file = self.write_lines("pkce.txt", [" ".join(tokens.pkce_pair())])
        self.code_flow_once()
        user_id = self.browser_user(big)
        datasize_sql.heavy_user(big.db_url, user_id, big.client_id)
        r = self.http.get(server.base_url + "/dashboard", headers={
            "Cookie": self.browser_cookie, "Host": tokens.ISSUER_HOST})
        if r.status_code != 200:
            raise BenchError(f"dashboard answered {r.status_code}")
        server.stop()
        self.servers.remove(server)
        self.record_batch_jobs(big, str(record))
        findings = explain.analyse(recorder.read(str(record)), big.db_url)
        print(explain.render(findings))
        return [f.__dict__ for f in findings]

    def browser_user(self, site: Site) -> str:
        import psycopg

        with psycopg.connect(site.db_url.replace("postgresql+psycopg://", "postgresql://")) as c:
            return c.execute("SELECT user_id FROM web_sessions ORDER BY created_at DESC "
                             "LIMIT 1").fetchone()[0]

    def record_batch_jobs(self, site: Site, record: str) -> None:
        """Prune's batch statements and the outbox's claim, recorded in this process and
        rolled back (explain.py runs them again, rolled back too)."""
        saved = dict(os.environ)
        os.environ.update(site.env)
        try:
            from siwa_web import create_app
            from siwa_web.infra.extensions import db
            from siwa_web.lifecycle import pruning

            app = create_app()
            with app.app_context():
                recorder.attach(db.engine, record, label="flask prune (one batch)")
                for stmt in pruning._statements().values():
                    pruning.delete_one_batch(stmt, self.args.prune_batch
                                             or app.config["PRUNE_BATCH_SIZE"])
                    db.session.rollback()
                db.engine.dispose()
            app = create_app()
            with app.app_context():
                recorder.attach(db.engine, record, label="flask outbox retry (claim)")
                from siwa_web.lifecycle.backchannel import BACKCHANNEL_LOGOUTS
                from siwa_web.lifecycle.revocations import APPLE_REVOCATIONS
                from siwa_web.models.base import now_utc

                for box in (BACKCHANNEL_LOGOUTS, APPLE_REVOCATIONS):
                    db.session.execute(box.due_statement(now_utc()))
                    box.pending_summary()
                db.session.rollback()
                db.engine.dispose()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, tokens._terminate)
    bench = DataSize(args)
    try:
        return bench.run()
    except BenchError as exc:
        print(f"bench/datasize.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
