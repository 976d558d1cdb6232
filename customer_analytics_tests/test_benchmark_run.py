"""Smoke test of `python -m benchmarks.run` at a tiny size on the test PostgreSQL (no lifetimes, no timings asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from customer_analytics_tests.conftest import _postgres_or_skip

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.postgres
def test_the_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path):
    url = _postgres_or_skip()
    out = tmp_path / "run.json"
    schema = f"ca_bench_smoke_{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--db", url, "--schema", schema, "--events", "6000", "--customers", "600",
         "--months", "2", "--repeats", "1", "--files", "2", "--skip-lifetimes", "--fit-customers", "3000", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    names = [f["figure"] for f in result["figures"]]
    assert names[0].startswith("ingestion of one month") and names[1] == "nightly recompute of one month"
    assert any(n.startswith("growth") for n in names) and names[-1].startswith("memory")
    assert result["rows"] == 6000, "every generated event of the month is valid and loaded"
    assert result["copy_s"] > 0 and result["ingestion_s"] > 0 and result["bare_s"] > 0 and result["peak_rss_bytes"] > 0
    # Each anchor ran once per measured run of its work, in turns (one repeat here).
    assert {name: len(values) for name, values in result["samples_s"].items()} == {
        "copy": 1, "ingestion": 1, "bare": 1, "recompute": 1}
    assert "| figure | project | anchor | ratio | target | met? |" in done.stdout


@pytest.mark.postgres
def test_the_ingestion_floor_benchmark_runs_at_a_tiny_size():
    url = _postgres_or_skip()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest_floor", "--db", url, "--events", "3000", "--customers", "300", "--repeats", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert result["events"] == 3000 and result["anchor_copy_s"] > 0
    assert set(result["parts_s"]) == {"copy", "primary key", "purchases index", "analyze"}
    assert result["database_s"] >= result["parts_s"]["copy"] and 0 < result["best_ratio"]
    assert "ingestion can reach at most" in done.stdout
