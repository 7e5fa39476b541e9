"""`python -m bench --quick` runs end to end: the table, the JSON, and every correctness check passed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_prints_the_table_writes_json_and_passes_its_checks(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # Only the measures that run in seconds: serving and loading are covered by their own tests.
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--runs", "1", "--json", str(out),
                             "--only", "storage", "--only", "queries", "--only", "rollups"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "baseline median [min-max]" in result.stdout and "checks: " in result.stdout
    report = json.loads(out.read_text())
    assert report["checks"] and all(c["ok"] for c in report["checks"])
    assert {"payload storage vs raw JSON", "failure rate per hour, 30 days, all workflows"} <= \
        {r["measure"] for r in report["rows"]}
