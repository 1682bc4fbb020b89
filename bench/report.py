"""Turn bench/tokens.py measurements into ratios, verdicts, a console report and markdown."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:results:begin (written by bench/tokens.py; edits inside are overwritten) -->"
END = "<!-- bench:results:end -->"

BACKEND_NAMES = {"sqlite": "SQLite (WAL)", "postgres": "PostgreSQL"}
CASE_LABELS = {
    "hello": "floor: bare Flask JSON",
    "sign": "floor: + one ES256 sign",
    "verify_floor": "floor: + one ES256 verify",
    "verify_lookup": "floor: verify + family PK lookup",
    "api_me": "GET /api/me (Bearer)",
    "refresh_floor": "floor: minimal refresh",
    "refresh": "refresh grant",
    "code_flow": "code flow, iterations/s",
    "exchange_0ms": "token exchange, Apple 0 ms",
    "api_me_metrics": "GET /api/me, metrics on",
    "refresh_metrics": "refresh grant, metrics on",
}
NOISY_CORES = 0.25  # others' CPU above this during a run makes its numbers suspect

CASE_ORDER = ["hello", "sign", "verify_floor", "verify_lookup", "api_me", "api_me_metrics",
              "refresh_floor", "refresh", "refresh_metrics", "code_flow", "exchange_0ms"]


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    real: str
    floor: str | None  # None: min(exchange at 0 ms, slots / latency)
    threshold: float | None  # None: informational, never fails the run
    optional: bool = False  # left out of the report when its real case was not run


def exchange_case(latency: float) -> str:
    return f"exchange_{latency * 1000:g}ms"


def targets(latency: float) -> list[Target]:
    ms = f"{latency * 1000:g}"
    return [
        Target("api_me", "/api/me ÷ verify floor", "api_me", "verify_floor", 0.85),
        Target("refresh", "refresh grant ÷ minimal-refresh floor", "refresh", "refresh_floor",
               0.70),
        # One iteration is two requests (authorize with a live session, redeem the code);
        # its rate is compared with the refresh grant's, measured beside it in each round.
        Target("code_flow", "code flow (authorize + redeem) ÷ refresh grant", "code_flow",
               "refresh", 0.50),
        Target("exchange",
               f"exchange with {ms} ms Apple latency ÷ min(CPU ceiling, slots ÷ latency)",
               exchange_case(latency), None, 0.50),
        Target("api_me_lookup", "/api/me ÷ verify + family-lookup floor (informational)",
               "api_me", "verify_lookup", None),
        # `--metrics`: the same hot paths on a second server with METRICS_TOKEN set. Each must
        # still meet its target; its ratio to the same path without metrics is the overhead.
        Target("api_me_metrics", "/api/me with metrics on ÷ verify floor", "api_me_metrics",
               "verify_floor", 0.85, optional=True),
        Target("refresh_metrics", "refresh grant with metrics on ÷ minimal-refresh floor",
               "refresh_metrics", "refresh_floor", 0.70, optional=True),
        Target("api_me_metrics_cost", "/api/me: metrics on ÷ off (informational)",
               "api_me_metrics", "api_me", None, optional=True),
        Target("refresh_metrics_cost", "refresh grant: metrics on ÷ off (informational)",
               "refresh_metrics", "refresh", None, optional=True),
    ]


@dataclass
class Verdict:
    target: Target
    ratios: list[float]  # per round
    floors: list[float]  # the floor throughput each ratio was taken against
    cpu_ratios: list[float] = field(default_factory=list)  # floor CPU/req ÷ real CPU/req
    p50_ratios: list[float] = field(default_factory=list)
    p99_ratios: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    noisy: list[str] = field(default_factory=list)  # rounds disturbed by other jobs (not a failure)
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure

    @property
    def median(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def informational(self) -> bool:
        return self.target.threshold is None

    @property
    def passed(self) -> bool:
        if self.informational:
            return True
        median = self.median
        return median is not None and median >= self.target.threshold and not self.problems

    @property
    def verdict(self) -> str:
        return "info" if self.informational else ("PASS" if self.passed else "FAIL")

    @property
    def goal(self) -> str:
        return "–" if self.informational else f"≥ {self.target.threshold:.2f}"


@dataclass
class BackendSummary:
    backend: str
    by_case: dict[str, list[Any]]  # case -> measurements in round order
    verdicts: list[Verdict]


@dataclass
class Summary:
    backends: list[BackendSummary]
    skipped: dict[str, str]
    latency: float
    slots: int

    @property
    def all_passed(self) -> bool:
        return bool(self.backends) and not self.skipped and all(
            v.passed for b in self.backends for v in b.verdicts)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _problems(ms: list[Any]) -> list[str]:
    out = []
    for m in ms:
        if not m.clean:
            bits = [f"{k}={getattr(m, k)}" for k in ("non2xx", "timeouts", "socket_errors")
                    if getattr(m, k)]
            bits += [f"{k}={v}".replace("|", "/") for k, v in m.notes.items()]
            out.append(f"{m.case} round {m.round}: " + ", ".join(bits))
    return out


def summarize(measurements: list[Any], *, slots: int, latency: float,
              skipped: dict[str, str] | None = None) -> Summary:
    backends: list[BackendSummary] = []
    for backend in dict.fromkeys(m.backend for m in measurements):
        by_case: dict[str, list[Any]] = {}
        for m in measurements:
            if m.backend == backend:
                by_case.setdefault(m.case, []).append(m)
        verdicts = []
        for t in targets(latency):
            if t.optional and t.real not in by_case:
                continue
            real = {m.round: m for m in by_case.get(t.real, [])}
            if t.floor is not None:
                floor = {m.round: m for m in by_case.get(t.floor, [])}
            else:
                floor = {m.round: m for m in by_case.get("exchange_0ms", [])}
            v = Verdict(t, [], [])
            for rnd in sorted(set(real) & set(floor)):
                r, f = real[rnd], floor[rnd]
                if "stalled" in f.notes:  # no floor to compare with in this round
                    continue
                base = f.rps if t.floor is not None else min(f.rps, slots / latency)
                v.floors.append(base)
                v.ratios.append(r.rps / base if base else 0.0)
                if t.floor is not None and r.server_cpu_us:
                    v.cpu_ratios.append(f.server_cpu_us / r.server_cpu_us)
                if t.floor is not None and f.p50_ms and f.p99_ms:
                    v.p50_ratios.append(r.p50_ms / f.p50_ms)
                    v.p99_ratios.append(r.p99_ms / f.p99_ms)
            if t.floor is None:
                # Only the latency run must be clean ("no timeouts"); trouble in the 0 ms run
                # (SQLite lock waits, say) is shown but does not decide the target.
                v.problems = _problems(list(real.values()))
                v.notes = [p + " (CPU-ceiling run)" for p in _problems(list(floor.values()))]
            else:
                v.problems = _problems(list(real.values()) + list(floor.values()))
            both = set(real) & set(floor)
            loud = [m for m in list(real.values()) + list(floor.values())
                    if m.other_cores > NOISY_CORES and m.round in both]
            if loud:
                rounds = ", ".join(str(r) for r in sorted({m.round for m in loud}))
                worst = max(m.other_cores for m in loud)
                v.noisy = [f"round(s) {rounds}, other jobs up to {worst:.2f} cores"]
            if not v.ratios and not v.informational:
                v.problems.append("not measured")
            verdicts.append(v)
        backends.append(BackendSummary(backend, by_case, verdicts))
    return Summary(backends, dict(skipped or {}), latency, slots)


def _label(case: str, latency: float) -> str:
    if case == exchange_case(latency):
        return f"token exchange, Apple {latency * 1000:g} ms"
    return CASE_LABELS.get(case, case)


def _cases(b: BackendSummary, latency: float) -> list[str]:
    order = CASE_ORDER + [exchange_case(latency)]
    return [c for c in order if c in b.by_case] + [c for c in b.by_case if c not in order]


def _fmt_ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def render_text(summary: Summary, settings: dict[str, Any]) -> str:
    lines = [f"Settings: {settings['gunicorn']}; {settings['wrk']}; "
             f"exchange with latency: -c{settings['exchange_connections']}"]
    if settings.get("app_settings"):
        lines.append("WHAT-IF RUN, not the production configuration: "
                     + " ".join(settings["app_settings"]))
    for b in summary.backends:
        lines += ["", f"== {BACKEND_NAMES.get(b.backend, b.backend)} =="]
        rounds = max(len(v) for v in b.by_case.values())
        head = f"{'case':<34}" + "".join(f"{'round ' + str(i + 1):>12}" for i in range(rounds))
        lines.append(head + f"{'median':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}"
                            f"{'others':>8}")
        for case in _cases(b, summary.latency):
            ms = b.by_case[case]
            cells = "".join(f"{m.rps:12.1f}" for m in ms) + " " * 12 * (rounds - len(ms))
            lines.append(f"{_label(case, summary.latency):<34}{cells}"
                         f"{_median([m.rps for m in ms]):10.1f}"
                         f"{_median([m.p50_ms for m in ms]):10.2f}"
                         f"{_median([m.p99_ms for m in ms]):10.2f}"
                         f"{_median([m.server_cpu_us for m in ms]):12.0f}"
                         f"{max(m.other_cores for m in ms):8.2f}")
        lines.append("targets (median of per-round ratios):")
        for v in b.verdicts:
            per_round = " ".join(_fmt_ratio(r) for r in v.ratios)
            verdict = v.verdict
            extra = ""
            if v.p50_ratios:
                extra = (f"  [CPU/req ratio {_median(v.cpu_ratios):.2f}; latency vs floor: "
                         f"p50 x{_median(v.p50_ratios):.2f}, p99 x{_median(v.p99_ratios):.2f}]")
            lines.append(f"  {v.target.label}: rounds {per_round} -> median "
                         f"{_fmt_ratio(v.median)} (goal {v.goal}) {verdict}{extra}")
            for p in v.problems:
                lines.append(f"      problem: {p}")
            for p in v.notes:
                lines.append(f"      note: {p}")
            for p in v.noisy:
                lines.append(f"      noisy: {p}")
    for backend, reason in summary.skipped.items():
        lines += ["", f"== {BACKEND_NAMES.get(backend, backend)}: NOT MEASURED — {reason}"]
    return "\n".join(lines)


def _code(versions: dict[str, str]) -> str:
    if not versions:
        return "unknown."
    if len(set(versions.values())) == 1:
        return next(iter(versions.values())) + "."
    return "; ".join(f"{BACKEND_NAMES.get(b, b)}: {v}" for b, v in versions.items()) + \
        " (the code changed during the run)."


def _threads(counts: dict[str, list[int]]) -> str:
    listed = "; ".join(f"{name} {', '.join(map(str, n))}" for name, n in counts.items())
    return (f"* **Threads per worker before round 1** (pool + main thread, all started; "
            f"section 6): {listed}.")


def render_markdown(summary: Summary, machine: dict[str, Any], settings: dict[str, Any]) -> str:
    m = machine
    out = [
        BEGIN,
        "",
        f"### Run of {m['date']}"
        + (" (quick smoke run: not for conclusions)" if settings["quick"] else ""),
        "",
        *([f"**What-if run, not the production configuration:** "
           f"`{' '.join(settings['app_settings'])}`", ""] if settings.get("app_settings") else []),
        f"* **Machine:** {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['memory']} RAM, "
        f"Linux {m['kernel']}.",
        f"* **Software:** Python {m['python']}, gunicorn {m['gunicorn']}, Flask {m['flask']}, "
        f"Werkzeug {m['werkzeug']}, SQLAlchemy {m['sqlalchemy']}, joserfc {m['joserfc']}, "
        f"cryptography {m['cryptography']}, psycopg {m['psycopg']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgresql']}, {m['wrk']}.",
        f"* **Server:** {settings['gunicorn']}, `SIWA_ENV=production`; app, floors, "
        "Apple emulator, database and wrk share the same CPUs.",
        *([_threads(settings["threads_per_worker"])] if settings.get("threads_per_worker") else []),
        "* **Code measured:** " + _code(settings.get("code") or {}),
        f"* **Load:** {settings['wrk']}; the exchange with latency uses "
        f"`-c{settings['exchange_connections']}` (one connection per worker slot). "
        f"{settings['rounds']} interleaved round(s); the whole run took {settings['elapsed_s']} s.",
        "",
    ]
    for b in summary.backends:
        name = BACKEND_NAMES.get(b.backend, b.backend)
        out += [f"#### {name}: targets", "",
                "| Target | Per round | Median | Goal | Result | CPU ratio |",
                "|---|---|---:|---:|---|---:|"]
        for v in b.verdicts:
            per_round = ", ".join(_fmt_ratio(r) for r in v.ratios) or "–"
            result = {"PASS": "**pass**", "FAIL": "**FAIL**", "info": "informational"}[v.verdict]
            if v.problems:
                result += " (" + "; ".join(v.problems) + ")"
            if v.notes:
                result += " — note: " + "; ".join(v.notes)
            if v.noisy:
                result += " — noisy: " + "; ".join(v.noisy)
            floors = ""
            if v.target.floor is None and v.floors:
                floors = f" (floor per round: {', '.join(f'{f:.0f}' for f in v.floors)} req/s)"
            cpu = f"{_median(v.cpu_ratios):.2f}" if v.cpu_ratios else "–"
            out.append(f"| {v.target.label}{floors} | {per_round} | {_fmt_ratio(v.median)} | "
                       f"{v.goal} | {result} | {cpu} |")
        out += ["", "*CPU ratio*: median over the rounds of the floor's server CPU per request ÷ "
                "the real endpoint's — the same comparison as the throughput ratio, but much less "
                "disturbed by other jobs on the machine (informational)."]
        lat = [v for v in b.verdicts if v.p50_ratios and not v.informational]
        if lat:
            out += ["", "Latency against the same floor (median of per-round ratios, "
                    "informational): "
                    + "; ".join(f"{v.target.real}: p50 ×{_median(v.p50_ratios):.2f}, "
                                f"p99 ×{_median(v.p99_ratios):.2f}" for v in lat) + "."]
        out += ["", f"#### {name}: every measurement", "",
                "CPU columns are per request: the measured server (gunicorn master + workers), the "
                "Apple emulator, PostgreSQL's processes. *Busy* is the whole machine in cores; "
                "*others* is the part of it used by none of our processes (wrk included in ours): "
                "other jobs on the machine, i.e. noise.", "",
                "| Endpoint | Round | req/s | p50 ms | p99 ms | server µs | Apple µs | PG µs "
                "| busy | others | conns | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for case in _cases(b, summary.latency):
            for x in b.by_case[case]:
                errors = "none" if x.clean else ", ".join(
                    [f"{k} {getattr(x, k)}" for k in ("non2xx", "timeouts", "socket_errors")
                     if getattr(x, k)] + [f"{k} {v}".replace("|", "/") for k, v in x.notes.items()])
                apple = f"{x.apple_cpu_us:.0f}" if case.startswith("exchange") else "–"
                pg = f"{x.pg_cpu_us:.0f}" if b.backend == "postgres" else "–"
                others = f"{x.other_cores:.2f}" + (" ⚠" if x.other_cores > NOISY_CORES else "")
                out.append(f"| {_label(case, summary.latency)} | {x.round} | {x.rps:.1f} | "
                           f"{x.p50_ms:.2f} | {x.p99_ms:.2f} | {x.server_cpu_us:.0f} | {apple} | "
                           f"{pg} | {x.busy_cores:.2f} | {others} | {x.connections} | {errors} |")
        out.append("")
    for backend, reason in summary.skipped.items():
        out += [f"#### {BACKEND_NAMES.get(backend, backend)}: not measured", "", reason, ""]
    out.append(END)
    return "\n".join(out)


DOC_TEMPLATE = """# Performance

How fast siwa-web's token service is on a given machine, measured by `bench/tokens.py` against
floors measured in the same run. Run `.venv/bin/python bench/tokens.py` to refresh the results
below.

## Results

{block}
"""


def update_doc(path: Path, block: str) -> None:
    """Replace the text between the markers; create the file (or the section) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DOC_TEMPLATE.format(block=block))
        return
    text = path.read_text()
    start, end = text.find(BEGIN.split(" (")[0]), text.find(END)
    if start == -1 or end == -1 or end < start:
        path.write_text(text.rstrip("\n") + "\n\n## Results\n\n" + block + "\n")
        return
    path.write_text(text[:start] + block + text[end + len(END):])


# --- HTTP servers side by side (bench/tokens.py --servers) ------------------------------------

# What another server must reach against the baseline (gunicorn gthread) in the same run: median
# of the per-round ratios of its rate to the baseline's, for the same case on the same database.
SERVER_GOALS = {"api_me": 1.5, "refresh": 1.15}
SERVER_EXCHANGE_GOAL = 0.95  # with no timeouts


@dataclass
class ServerRatio:
    backend: str
    server: str
    case: str
    ratios: list[float]  # per round: rate under `server` ÷ under the baseline
    cpu_ratios: list[float]  # per round: baseline CPU per request ÷ `server`'s
    goal: float | None
    problems: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return "info"
        ok = self.median is not None and self.median >= self.goal and not self.problems
        return "PASS" if ok else "FAIL"


def compare_servers(measurements: list[Any], kinds: tuple[str, ...] | list[str],
                    latency: float) -> list[ServerRatio]:
    """Every case measured under each server in the same rounds, as a ratio to the first."""
    goals = dict(SERVER_GOALS, **{exchange_case(latency): SERVER_EXCHANGE_GOAL})
    base, others = kinds[0], kinds[1:]
    index = {(m.backend, m.server, m.case, m.round): m for m in measurements}
    out = []
    for backend in dict.fromkeys(m.backend for m in measurements):
        cases = list(dict.fromkeys(m.case for m in measurements if m.backend == backend))
        order = CASE_ORDER + [exchange_case(latency)]
        cases.sort(key=lambda c: order.index(c) if c in order else len(order))
        for kind in others:
            for case in cases:
                row = ServerRatio(backend, kind, case, [], [], goals.get(case))
                rounds = sorted({m.round for m in measurements
                                 if (m.backend, m.case) == (backend, case)})
                for rnd in rounds:
                    b = index.get((backend, base, case, rnd))
                    o = index.get((backend, kind, case, rnd))
                    if b is None or o is None or not b.rps:
                        continue
                    row.ratios.append(o.rps / b.rps)
                    if o.server_cpu_us:
                        row.cpu_ratios.append(b.server_cpu_us / o.server_cpu_us)
                    for side, m in ((base, b), (kind, o)):
                        if not m.clean:
                            row.problems.append(f"{side} round {rnd}: " + ", ".join(
                                [f"{k}={getattr(m, k)}" for k in
                                 ("non2xx", "timeouts", "socket_errors") if getattr(m, k)]
                                + [f"{k}={v}" for k, v in m.notes.items()]))
                if row.goal is not None and not row.ratios:
                    row.problems.append("not measured")
                out.append(row)
    return out


def render_comparison(rows: list[ServerRatio], base: str, markdown: bool = False) -> str:
    """The side-by-side table: per-round ratios, median, goal, CPU ratio (console or markdown)."""
    if markdown:
        lines = [f"| Database | Server | Case | Per round (÷ {base}) | Median | Goal | Result "
                 "| CPU ratio |", "|---|---|---|---|---:|---:|---|---:|"]
    else:
        lines = [f"== servers side by side: rate ÷ rate under {base}, same round =="]
    for r in rows:
        per_round = ", ".join(f"{x:.2f}" for x in r.ratios) or "–"
        goal = "–" if r.goal is None else f"≥ {r.goal:.2f}"
        cpu = f"{_median(r.cpu_ratios):.2f}" if r.cpu_ratios else "–"
        problems = ("; " + "; ".join(r.problems)) if r.problems else ""
        name = BACKEND_NAMES.get(r.backend, r.backend)
        label = CASE_LABELS.get(r.case) or (
            f"token exchange, Apple {r.case.removeprefix('exchange_').removesuffix('ms')} ms"
            if r.case.startswith("exchange_") else r.case)
        if markdown:
            lines.append(f"| {name} | {r.server} | {label} | {per_round} | "
                         f"{_fmt_ratio(r.median)} | {goal} | {r.verdict}{problems} | {cpu} |")
        else:
            lines.append(f"  {name:<13} {r.server:<9} {label:<34} {per_round:<24} median "
                         f"{_fmt_ratio(r.median)} (goal {goal}) {r.verdict}  CPU ratio {cpu}"
                         f"{problems}")
    return "\n".join(lines)
