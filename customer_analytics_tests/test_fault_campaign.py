"""Kill -9 campaign against the real PostgreSQL: a killed run leaves every partition whole.

A month is materialized (state A), more landing data arrives, and `customer-analytics
materialize` is started for that month and killed with SIGKILL at a random moment, again and
again. After every kill, each partition of every table (and each unpartitioned table) must
hold either its contents in A or its contents after a complete run (B), compared by row count
and a content hash that ignores run stamps. A final uninterrupted run must give B, and B must
equal a single clean run in a fresh schema. Two runs of the month started at once must end
with the same tables as one.

The suite runs a few trials; `CUSTOMER_ANALYTICS_FAULT_TRIALS=20 pytest -m faults -s
customer_analytics_tests/test_fault_campaign.py` runs the full campaign and prints its figures.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Float, text

from customer_analytics.resources.tables import metadata, partition_column
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics_tests.conftest import _drop_schema, _fresh_postgres, _postgres_or_skip
from customer_analytics_tests.landing_builder import event, write_ndjson

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

TRIALS = int(os.environ.get("CUSTOMER_ANALYTICS_FAULT_TRIALS", "2"))
MONTH = "2025-02"
# When and by which run a row was written: everything else must match.
STAMPS = {"computed_at", "run_id", "ingested_at", "rejected_at", "fitted_at", "built_at", "updated_at", "scanned_at",
          "loaded_at", "changed_at", "landing_changed_at"}
# Bookkeeping that records how a run went rather than what the data is.
SKIPPED_TABLES = {"customer_history_builds", "rerun_requests"}
CLI = str(Path(sys.executable).parent / "customer-analytics")


def snapshot(warehouse: Warehouse) -> dict[tuple[str, str], tuple[int, str]]:
    """(table, partition or '*') -> (rows, md5 of the sorted rows without stamps; floats to 6 decimals)."""
    out = {}
    with warehouse.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name in SKIPPED_TABLES:
                continue
            values = []
            for column in table.columns:
                if column.name in STAMPS or (column.primary_key and column.autoincrement is True):
                    continue  # run stamps, and surrogate keys (a killed transaction still uses up sequence values)
                name = warehouse.quote(column.name)
                value = f"round({name}::numeric, 6)::text" if isinstance(column.type, Float) else f"{name}::text"
                values.append(f"coalesce({value}, '<null>')")
            row_text = "concat_ws('|', " + ", ".join(values) + ")"
            part = partition_column(table)
            key = f"{warehouse.quote(part)}::text" if part else "'*'"
            sql = (f"SELECT part_key, COUNT(*), md5(string_agg(row_text, E'\\n' ORDER BY row_text)) "
                   f"FROM (SELECT {key} AS part_key, {row_text} AS row_text FROM {warehouse.qualified(table.name)}) t "
                   f"GROUP BY part_key")
            for part_value, rows, digest in connection.execute(text(sql)):
                out[(table.name, part_value)] = (rows, digest)
    return out


def cli_env(warehouse: Warehouse, landing: Path, home: Path) -> dict:
    return {**os.environ, "CUSTOMER_ANALYTICS_DB_URL": warehouse.url, "CUSTOMER_ANALYTICS_DB_SCHEMA": warehouse.schema,
            "CUSTOMER_ANALYTICS_LANDING_DIR": str(landing), "DAGSTER_HOME": str(home)}


def run_cli(env: dict, *args: str) -> None:
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def step_events(home: Path, runs: int | None = 1) -> list[tuple[str, str, float]] | None:
    """(event type, step key, unix time) of the step events of the newest `runs` runs in DAGSTER_HOME (None: all);
    None before any run."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    try:
        found = instance.get_runs(limit=runs)
        if not found:
            return None
        return [(record.event_log_entry.dagster_event.event_type_value, record.event_log_entry.step_key,
                 record.event_log_entry.timestamp)
                for run in found for record in instance.get_records_for_run(run.run_id, limit=10_000).records
                if record.event_log_entry.is_dagster_event and record.event_log_entry.step_key]
    finally:
        instance.dispose()


def steps_in_flight(home: Path) -> list[str]:
    """Steps of the newest run in DAGSTER_HOME that had started and not finished."""
    events = step_events(home)
    if events is None:
        return ["(before the run started)"]
    started = [step for kind, step, _ in events if kind == "STEP_START"]
    finished = {step for kind, step, _ in events if kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED")}
    running = [step for step in started if step not in finished]
    return running or (["(between steps)"] if started else ["(run starting)"])


def wait_for_step_start(home: Path, step: str, process_started: float, process: subprocess.Popen) -> None:
    """Return once `step` has started in a run begun after `process_started`, or the process has ended."""
    while process.poll() is None:
        events = step_events(home, runs=3) or []
        if any(kind == "STEP_START" and key == step and at >= process_started for kind, key, at in events):
            return
        time.sleep(0.05)


def step_windows(home: Path, process_started: float) -> list[tuple[str, float, float]]:
    """(step, start, end) in seconds after the `materialize` process started, for each step it ran, longest first."""
    events = sorted((event for event in step_events(home, runs=None) or [] if event[2] >= process_started),
                    key=lambda event: event[2])
    starts = {step: at for kind, step, at in events if kind == "STEP_START"}
    ends = {step: at for kind, step, at in events if kind in ("STEP_SUCCESS", "STEP_FAILURE")}
    windows = [(step, at - process_started, ends[step] - process_started) for step, at in starts.items() if step in ends]
    return sorted(windows, key=lambda window: window[1] - window[2])


@pytest.fixture
def campaign(tmp_path):
    _postgres_or_skip()
    made = []

    def schema() -> Warehouse:
        warehouse, name = _fresh_postgres(os.environ["CUSTOMER_ANALYTICS_TEST_PG_URL"])
        made.append((warehouse, name))
        return warehouse

    yield schema
    for warehouse, name in made:
        _drop_schema(warehouse, name)


def test_a_killed_run_leaves_every_partition_old_or_new(campaign, tmp_path):
    landing, home = tmp_path / "landing", tmp_path / "dagster_home"
    warehouse = campaign()
    env = cli_env(warehouse, landing, home)
    run_cli(env, "generate-sample", "--out", str(landing), "--customers", "300", "--start", "2025-01",
            "--months", "2", "--seed", "11")
    run_cli(env, "materialize", "--from", "2025-01", "--to", MONTH)
    before = snapshot(warehouse)

    # New data for the month: purchases by old and new customers, and a bad record for the quarantine.
    write_ndjson(landing / "events" / "late-2025-02.ndjson", [
        *(event(f"late-{i}", f"late-customer-{i % 40}", f"2025-02-{1 + i % 27:02d} 1{i % 10}:00:00", price=5.0 + i)
          for i in range(400)),
        {"event_id": "late-bad", "customer_id": "x", "event_type": "purchase", "event_timestamp": "2025-02-30 10:00:00"},
    ])
    started = time.perf_counter()
    # The single-run result with the new data, in a fresh schema; its month run times the steps to aim at.
    reference = campaign()
    reference_home = tmp_path / "reference_home"
    reference_env = cli_env(reference, landing, reference_home)
    run_cli(reference_env, "materialize", "--from", "2025-01", "--to", "2025-01")
    process_started = time.time()
    run_cli(reference_env, "materialize", "--from", MONTH, "--to", MONTH)
    windows = step_windows(reference_home, process_started)
    assert {"ingest_events", "customer_summaries", "customer_value"} <= {step for step, _, _ in windows}, windows
    single_run = snapshot(reference)

    # Each trial aims at one step in turn, longest first (ingestion, summaries, model fit, writes, ...): once the
    # step has started in the trial's run, it waits a random part of the step's span in the reference run, then
    # kills. A run that ends before its kill is no trial; it is started again.
    rng = random.Random(int(os.environ.get("CUSTOMER_ANALYTICS_FAULT_SEED", "20261123")))
    outcomes, aimed, in_flight, after_kill = Counter(), Counter(), Counter(), []
    while outcomes["killed"] < TRIALS and sum(outcomes.values()) < 3 * TRIALS:
        step, begin, end = windows[sum(outcomes.values()) % len(windows)]
        process_started = time.time()
        process = subprocess.Popen([CLI, "materialize", "--from", MONTH, "--to", MONTH], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_step_start(home, step, process_started, process)
        time.sleep(rng.uniform(0, 0.8 * (end - begin)))
        finished = process.poll() is not None
        if not finished:
            os.killpg(process.pid, signal.SIGKILL)
            aimed[step] += 1
            for running in steps_in_flight(home):
                in_flight[running] += 1
        process.wait()
        outcomes["finished" if finished else "killed"] += 1
        after_kill.append(snapshot(warehouse))

    run_cli(env, "materialize", "--from", MONTH, "--to", MONTH)
    after = snapshot(warehouse)
    assert after != before, "the new landing data must change the month"

    # Every partition after every kill: A's or B's contents, nothing in between, nothing lost.
    checked = 0
    for state in after_kill:
        assert set(state) <= set(before) | set(after)
        for key in set(before) | set(after):
            assert state.get(key) in (before.get(key), after.get(key)), f"{key}: neither the old nor the new contents"
            checked += 1

    # A rerun after all that gives exactly the single-run result.
    assert after == single_run

    # Two materializations of the month started at once (no run queue: two CLI processes) end as one run would.
    both = campaign()
    both_env = cli_env(both, landing, tmp_path / "both_home")
    run_cli(both_env, "materialize", "--from", "2025-01", "--to", "2025-01")
    runs = [subprocess.Popen([CLI, "materialize", "--from", MONTH, "--to", MONTH], env=both_env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert snapshot(both) == single_run

    changed = sorted(key for key in after if before.get(key) != after[key])
    print(f"\n[fault campaign] {outcomes['killed']} kills in {sum(outcomes.values())} runs, "
          f"{checked} partition checks over {len(set(before) | set(after))} partitions, {len(changed)} changed by "
          f"the new data, rows lost 0; kills aimed at: {dict(aimed)}; steps running when killed: {dict(in_flight)}; "
          f"{time.perf_counter() - started:.0f} s")
    assert outcomes["killed"] == TRIALS, f"only {outcomes['killed']} of {TRIALS} runs were killed before they ended"

