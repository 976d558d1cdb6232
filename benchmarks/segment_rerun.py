"""How long a segment rerun (segment_rerun_job) takes in a month with N scored customers.

Builds `--months` months of synthetic events in which about `--customers` customers buy, loads
and scores them (summaries, RFM, CLV, segments), then times `segment_rerun_job` — the job the
sensor launches — in process, for every value segment and for a 10-customer forced rerun: the
median of `--repeats` runs after a warm-up. With `--daemon` (PostgreSQL only) it then starts
the real dagster-webserver and dagster-daemon on a throwaway instance (the end-to-end tests'
harness), writes a rerun request per value segment with `customer-analytics request-rerun`,
and reports the run's own duration and the time from request to SUCCESS, sensor interval
included. `--keep` leaves the data in schema `--schema`.

    python -m benchmarks.segment_rerun --db postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --customers 100000 --daemon
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from sqlalchemy import func, select

from benchmarks.events import month_events, write_ndjson_files
from customer_analytics.asof import AsOf, compute_scores
from customer_analytics.config import add_months
from customer_analytics.jobs import rerun_run_config, segment_rerun_job
from customer_analytics.loading import load_events_month
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import customer_clv
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.segments import compute_segments
from customer_analytics.summaries import summarize_month

FIRST = date(2025, 1, 1)
SEGMENTS = ("high", "medium", "low", "at_risk")


def build(warehouse: Warehouse, customers: int, months: int) -> date:
    # ~10 % of events are purchases; 12 events per customer a month make nearly every customer a buyer.
    events = customers * 12
    last = add_months(FIRST, months - 1)
    with tempfile.TemporaryDirectory() as folder:
        month = FIRST
        for index in range(months):
            write_ndjson_files(month_events(month, events, customers, seed=index), Path(folder) / "events",
                               files=2, stem=f"{month:%Y-%m}")
            load_events_month(warehouse, folder, month, first_month=FIRST, last_month=last)
            summarize_month(warehouse, month, as_of=AsOf.for_month(month).instant)
            month = add_months(month, 1)
    as_of = AsOf.for_month(last)
    compute_scores(warehouse, as_of)
    compute_segments(warehouse, last)
    return last


def timed_run(warehouse: Warehouse, config: dict) -> float:
    resources = {"warehouse": WarehouseResource(db_url=warehouse.url, db_schema=warehouse.schema)}
    started = time.perf_counter()
    result = segment_rerun_job.execute_in_process(run_config=config, resources=resources)
    assert result.success
    return time.perf_counter() - started


def through_daemon(warehouse: Warehouse, month: date, sizes: dict) -> None:
    """Sensor-launched reruns through the real webserver + daemon (the end-to-end tests' harness)."""
    from customer_analytics_tests.dagster_services import DagsterServices

    print("\n| sensor-launched rerun | customers rescored | run start → end, s | request → SUCCESS, s |\n|---|---:|---:|---:|")
    with DagsterServices(pg_url=warehouse.url, extra_env={"CUSTOMER_ANALYTICS_DB_SCHEMA": warehouse.schema}) as services:
        services.warehouse_schema = warehouse.schema
        try:
            for count, segment in enumerate(SEGMENTS, start=1):
                started = time.perf_counter()
                services.cli("request-rerun", "--segment", segment, "--month", f"{month:%Y-%m}", "--by", "benchmark")
                run = services.wait_for_runs("segment_rerun_job", count=count, timeout=180)[0]
                status = services.wait_for_run(run["runId"], timeout=600)
                waited = time.perf_counter() - started
                (run,) = [r for r in services.runs("segment_rerun_job") if r["runId"] == run["runId"]]
                print(f"| {segment} ({status}) | {sizes.get(segment, 0):,} | {run['endTime'] - run['startTime']:.1f} | "
                      f"{waited:.1f} |", flush=True)
        finally:
            services.warehouse_schema = None  # the services must not drop the benchmark's schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="warehouse URL")
    parser.add_argument("--schema", default="ca_bench_rerun", help="PostgreSQL schema (dropped first)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument("--daemon", action="store_true", help="also time sensor-launched runs through the real daemon")
    parser.add_argument("--reuse", action="store_true", help="reuse the data already in --schema (from --keep)")
    args = parser.parse_args()
    warehouse = Warehouse(args.db, args.schema)
    if warehouse.dialect == "postgresql" and not args.reuse:
        with warehouse.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {warehouse.quote(args.schema)} CASCADE")
    started = time.perf_counter()
    month = add_months(FIRST, args.months - 1) if args.reuse else build(warehouse, args.customers, args.months)
    scored = warehouse.scalar(select(func.count()).select_from(customer_clv).where(customer_clv.c.as_of_month == month))
    sizes = dict(warehouse.read_frame(select(customer_clv.c.segment, func.count()).where(customer_clv.c.as_of_month == month)
                                      .group_by(customer_clv.c.segment)).itertuples(index=False))
    print(f"{month:%Y-%m}: {scored:,} scored customers ({', '.join(f'{s} {n:,}' for s, n in sizes.items())}); "
          f"built in {time.perf_counter() - started:.0f} s", flush=True)
    few = warehouse.read_frame(select(customer_clv.c.customer_id).where(customer_clv.c.as_of_month == month).limit(10))
    cases = [(segment, rerun_run_config(segment, f"{month:%Y-%m}", None, None), sizes.get(segment, 0)) for segment in SEGMENTS]
    cases.append(("10 listed customers", rerun_run_config("high", f"{month:%Y-%m}", few["customer_id"].tolist(), None), 10))
    print("| rerun | customers rescored | seconds (median) |\n|---|---:|---:|")
    for name, config, size in cases:
        runs = [timed_run(warehouse, config) for _ in range(args.repeats + 1)][1:]
        print(f"| {name} | {size:,} | {statistics.median(runs):.2f} |", flush=True)
    if args.daemon:
        through_daemon(warehouse, month, sizes)
    if warehouse.dialect == "postgresql" and not args.keep:
        with warehouse.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {warehouse.quote(args.schema)} CASCADE")


if __name__ == "__main__":
    main()
