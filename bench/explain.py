"""EXPLAIN (ANALYZE, BUFFERS) every statement bench/recorder.py recorded, and flag the bad ones.

    python bench/explain.py RECORD_FILE postgresql://postgres@127.0.0.1:5432/DB [--min-rows N]

Each distinct statement (first parameters seen) is explained with its real parameters inside a
transaction that is rolled back, so an UPDATE or DELETE explained with ANALYZE changes nothing.
A plan is flagged when it reads a table of at least --min-rows rows (default 10,000) by a
sequential scan, or sorts/aggregates more rows than the statement returns by 100x or more.
PostgreSQL only: the point is the planner's choice at production size.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import recorder  # noqa: E402 - bench/ is not a package

SKIP = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SELECT 1", "SHOW ",
        "SELECT PG_", "SET ", "NOTIFY ", "LISTEN ")


@dataclass
class Finding:
    where: str
    statement: str
    ms: float
    rows: int
    buffers: int  # shared blocks hit + read
    seq_scans: list[str] = field(default_factory=list)  # "table (rows)"
    nodes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.seq_scans)


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", ()):
        found += _walk(child)
    return found


def table_sizes(conn: Any) -> dict[str, int]:
    rows = conn.execute("SELECT relname, GREATEST(reltuples, 0)::bigint FROM pg_class "
                        "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")
    return dict(rows.fetchall())


def explain_one(conn: Any, statement: str, parameters: Any) -> dict[str, Any]:
    """The JSON plan of one statement, run for real and then rolled back. An INSERT whose row
    the app already committed (same key) cannot run again: its plan alone, without ANALYZE."""
    import psycopg

    try:
        cur = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
        return cur.fetchone()[0][0]
    except psycopg.errors.UniqueViolation:
        conn.rollback()
        cur = conn.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        return cur.fetchone()[0][0]
    finally:
        conn.rollback()


def analyse(records: list[tuple[str, str, Any, bool]], url: str,
            min_rows: int = 10_000) -> list[Finding]:
    import psycopg

    seen: set[str] = set()
    findings = []
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        sizes = table_sizes(conn)
        conn.rollback()
        for where, statement, parameters, executemany in records:
            text = " ".join(statement.split())
            if executemany or text in seen or text.upper().startswith(SKIP):
                continue
            seen.add(text)
            try:
                plan = explain_one(conn, statement, parameters)
            except Exception as exc:  # noqa: BLE001 - report the statement, go on with the rest
                print(f"could not explain ({where}): {exc}: {text[:200]}", file=sys.stderr)
                continue
            top = plan["Plan"]
            nodes = _walk(top)
            seq = [f"{n['Relation Name']} ({sizes.get(n['Relation Name'], 0):,} rows)"
                   for n in nodes if n["Node Type"] == "Seq Scan"
                   and sizes.get(n.get("Relation Name", ""), 0) >= min_rows]
            findings.append(Finding(
                where=where, statement=text, ms=float(plan.get("Execution Time", 0.0)),
                rows=int(top.get("Actual Rows", 0)),
                buffers=int(top.get("Shared Hit Blocks", 0))
                + int(top.get("Shared Read Blocks", 0)),
                seq_scans=seq,
                nodes=sorted({f"{n['Node Type']}" + (f" on {n['Relation Name']}"
                              if "Relation Name" in n else "")
                              + (f" using {n['Index Name']}" if "Index Name" in n else "")
                              for n in nodes if "Relation Name" in n}),
            ))
    return findings


def render(findings: list[Finding], width: int = 110) -> str:
    lines = []
    for f in sorted(findings, key=lambda f: (not f.flagged, f.where, -f.ms)):
        mark = "SEQ SCAN" if f.flagged else "ok"
        lines.append(f"[{mark}] {f.where}: {f.ms:.2f} ms, {f.rows} rows, {f.buffers} buffers")
        lines.append(f"    {f.statement[:width]}{'…' if len(f.statement) > width else ''}")
        lines.append(f"    plan: {'; '.join(f.nodes) or '(no table)'}")
        for scan in f.seq_scans:
            lines.append(f"    !! sequential scan of {scan}")
    flagged = sum(f.flagged for f in findings)
    lines.append(f"{len(findings)} distinct statements explained, {flagged} with a sequential "
                 f"scan of a big table")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("record_file")
    p.add_argument("database_url")
    p.add_argument("--min-rows", type=int, default=10_000)
    p.add_argument("--json", type=Path, help="also write the findings here")
    o = p.parse_args(argv)
    findings = analyse(recorder.read(o.record_file), o.database_url, o.min_rows)
    print(render(findings))
    if o.json:
        o.json.write_text(json.dumps([f.__dict__ for f in findings], indent=1))
    return 1 if any(f.flagged for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
