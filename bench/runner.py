"""The benchmark driver: one database, every measure, one table and the same as JSON.

Every figure is a ratio against a baseline measured in the same run on the same database,
because absolute numbers on a shared machine drift. Speed never fails the run; a crash or a
wrong result (counts, byte-exact round trips) does.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrations import Roles
from services.db import Database, EmbeddedServer, normalise_url

SCALES = {"quick": 300, "10k": 10_000, "100k": 100_000, "1m": 1_000_000}


@dataclass
class Row:
    """One line of the table: baseline beside product, medians of the runs with min and max."""

    measure: str
    unit: str
    baseline: list[float] = field(default_factory=list)
    product: list[float] = field(default_factory=list)
    target: str = ""
    higher_is_better: bool = True
    ratio_kind: str = "product/baseline"
    met: bool | None = None
    note: str = ""

    def summary(self, values: list[float]) -> dict[str, float] | None:
        """Median, min and max of a list of run values."""
        if not values:
            return None
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}

    def ratio(self) -> float | None:
        """Product median over baseline median (or the inverse, as ratio_kind says)."""
        b, p = self.summary(self.baseline), self.summary(self.product)
        if not b or not p or not b["median"] or not p["median"]:
            return None
        return b["median"] / p["median"] if self.ratio_kind == "baseline/product" else p["median"] / b["median"]


@dataclass
class Context:
    """What every measure gets: the database, sizes, where to put temporary files, the checks list."""

    database: Database
    admin_url: Any
    scale: str
    executions: int
    runs: int
    workdir: Path
    rows: list[Row] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.scale == "quick"

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        """Record a correctness check; a failed one fails the run."""
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        if not ok:
            print(f"CHECK FAILED: {name}: {detail}", file=sys.stderr)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def progress(self, line: str, *, every: float = 10.0) -> None:
        """Print a progress line on stderr, at most one per `every` seconds: long work must not look hung."""
        now = time.perf_counter()
        if now - self.extras.get("progress_shown", float("-inf")) >= every:
            self.extras["progress_shown"] = now
            print(f"   {line}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered))) - 1))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, about two minutes (the default)")
    size.add_argument("--scale", choices=sorted(SCALES.keys() - {"quick"}),
                      help="load that many executions (10 steps each) once into --data-dir and reuse them")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(".flowledger-bench"),
                        help="reusable database directory for --scale (kept between runs)")
    parser.add_argument("--only", action="append", default=[], help="run only these measures (repeatable)")
    return parser.parse_args(argv)


def open_database(args: argparse.Namespace, workdir: Path) -> tuple[Database, EmbeddedServer | None]:
    """DATABASE_URL when set, else an embedded server (temporary for --quick, reusable for --scale)."""
    server = None
    if os.environ.get("DATABASE_URL"):
        url = normalise_url(os.environ["DATABASE_URL"])
    else:
        # Short path: the server's unix socket lives in pgdata and socket paths are limited to 107 bytes.
        pgdata = (args.data_dir.resolve() / "pgdata") if args.scale else workdir / "pgdata"
        server = EmbeddedServer(pgdata)
        url = server.start()
    database = Database(admin_url=url, roles=Roles(), pool_size=20)
    database.migrate()
    return database, server


def measures() -> list[tuple[str, Callable[[Context], None]]]:
    """Every measure in the order it runs."""
    from bench import batch, browser, http, ingest, queries, retention, storage

    return [("storage", storage.run), ("queries", queries.run), ("rollups", queries.run_rollups),
            ("ingest", ingest.run), ("batch", batch.run), ("http", http.run), ("browser", browser.run),
            ("retention", retention.run)]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every measure ran and every check passed."""
    args = parse_args(argv)
    scale = args.scale or "quick"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flbench-", dir="/tmp") as tmp:
        database, server = open_database(args, Path(tmp))
        ctx = Context(database, database.admin_url, scale, SCALES[scale], max(1, args.runs), Path(tmp))
        crashed: list[str] = []
        try:
            from bench import dataset

            dataset.ensure(ctx)
            for name, run in measures():
                if args.only and name not in args.only:
                    continue
                print(f"-- {name}", file=sys.stderr, flush=True)
                began = time.perf_counter()
                try:
                    run(ctx)
                except Exception:  # one broken measure is reported; the others still run
                    crashed.append(name)
                    ctx.check(f"{name} ran", False, traceback.format_exc(limit=8))
                ctx.extras.setdefault("seconds", {})[name] = round(time.perf_counter() - began, 1)
        finally:
            for stop in ctx.extras.get("stoppers", []):
                stop()
            database.dispose()
            if server is not None:
                server.stop()
    report = build_report(ctx, time.perf_counter() - started)
    print(format_table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwritten to {args.json}")
    failed = [c for c in ctx.checks if not c["ok"]]
    return 1 if failed or crashed else 0


def build_report(ctx: Context, seconds: float) -> dict[str, Any]:
    """The JSON document: machine, scale, each row with medians, ratio and target, the checks."""
    rows = []
    for row in ctx.rows:
        data = asdict(row)
        data["baseline"], data["product"] = row.summary(row.baseline), row.summary(row.product)
        data["ratio"] = row.ratio()
        rows.append(data)
    return {"when": datetime.now(UTC).isoformat(), "scale": ctx.scale, "executions": ctx.executions,
            "runs": ctx.runs, "seconds": round(seconds, 1),
            "machine": {"cpus": os.cpu_count(), "memory_gib": _memory_gib(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "rows": rows, "checks": ctx.checks,
            "measure_seconds": ctx.extras.get("seconds", {}), "dataset": ctx.extras.get("dataset")}


def format_table(report: dict[str, Any]) -> str:
    """The one table: measure, baseline, product, ratio, target, met."""
    header = ("measure", "baseline median [min-max]", "product median [min-max]", "ratio", "target", "met")
    lines = [header]
    for row in report["rows"]:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        lines.append((f"{row['measure']} ({row['unit']})", _cell(row["baseline"]), _cell(row["product"]),
                      ratio, row["target"], met))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    notes = [f"  {r['measure']}: {r['note']}" for r in report["rows"] if r["note"]]
    checks = report["checks"]
    ok = sum(c["ok"] for c in checks)
    tail = [f"\nscale {report['scale']} ({report['executions']:,} executions), {report['runs']} runs, "
            f"{report['seconds']} s, {report['machine']['cpus']} cpus, {report['machine']['memory_gib']} GiB",
            f"checks: {ok}/{len(checks)} passed"] + [f"  FAILED {c['check']}: {c['detail']}" for c in checks
                                                      if not c["ok"]]
    return "\n".join(out + (["\nnotes:"] + notes if notes else []) + tail)


def _cell(summary: dict[str, float] | None) -> str:
    if not summary:
        return "-"
    return f"{_num(summary['median'])} [{_num(summary['min'])}-{_num(summary['max'])}]"


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _memory_gib() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        return 0.0
