"""Smoke test of `python -m benchmarks.run` at a tiny size on the test PostgreSQL (no lifetimes, no timings asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from benchmarks.events import FIRST_MONTH
from benchmarks.recompute_floor import floor
from customer_analytics.asof import AsOf, compute_clv
from customer_analytics.config import add_months
from customer_analytics.resources.warehouse import Warehouse
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


@pytest.mark.postgres
def test_the_recompute_floor_runs_on_a_kept_schema_and_writes_the_pipelines_scores(tmp_path):
    url = _postgres_or_skip()
    schema = f"ca_bench_floor_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    warehouse = Warehouse(url, schema)
    try:
        prepared = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--db", url, "--schema", schema, "--events", "3000", "--customers", "300",
             "--months", "2", "--repeats", "1", "--files", "1", "--skip-lifetimes", "--fit-customers", "2000", "--keep",
             "--json", str(tmp_path / "run.json")],
            cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
        )
        assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
        floor_command = [sys.executable, "-m", "benchmarks.recompute_floor", "--db", url, "--schema", schema, "--repeats", "1"]
        refused = subprocess.run(floor_command + ["--month", "2023-12-01"], cwd=REPO, capture_output=True, text=True,
                                 timeout=60, env=env)
        assert refused.returncode == 2 and "is not a recomputed month" in refused.stderr
        assert f"valid: {FIRST_MONTH}, {add_months(FIRST_MONTH, 1)}" in refused.stderr
        out = tmp_path / "floor.json"
        done = subprocess.run(floor_command + ["--json", str(out)], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        result = json.loads(out.read_text())
        assert result["month"] == add_months(FIRST_MONTH, 1).isoformat(), "the latest recomputed month by default"
        assert {name: len(runs) for name, runs in result["samples"].items()} == {"bare": 1, "floor": 1, "copies": 1,
                                                                               "recompute": 1}
        assert list(result["medians"]["copies"]["links"]) == ["customer_history", "customer_rfm", "customer_segments"]
        links = result["medians"]["floor"]["links"]
        assert list(links) == ["month_summary", "group_by_and_read", "fit", "score", "write_customer_clv"]
        assert all(seconds > 0 for seconds in links.values())
        assert sum(links.values()) <= result["medians"]["floor"]["wall_s"]
        assert "| floor |" in done.stdout and "| copies |" in done.stdout and "| recompute |" in done.stdout
        assert "floor + copies:" in done.stdout

        # The floor's chain scores as the pipeline does: its customer_clv equals compute_clv's on the same month.
        month = add_months(FIRST_MONTH, 1)
        as_of = AsOf.for_month(month)
        compute_clv(warehouse, as_of)
        columns = ("customer_id, clv_score, predicted_revenue_24m, expected_purchases_12m, p_alive, churn_probability, "
                   'expected_order_value, segment, model, frequency, recency, "T"')
        query = f"SELECT {columns} FROM {warehouse.qualified('customer_clv')} WHERE as_of_month = :month ORDER BY customer_id"
        pipeline = warehouse.read_frame(query, {"month": month})
        floor(warehouse, month)
        floored = warehouse.read_frame(query, {"month": month})
        assert len(pipeline) > 100
        pd.testing.assert_frame_equal(floored, pipeline, rtol=1e-9)
    finally:
        with warehouse.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        warehouse.engine.dispose()
