"""One month's as-of cost with 1, 6 and 12 months of history (every derived table of that month).

Builds 12 months of synthetic events in a landing folder, loads and summarizes each month, then
times the as-of work (RFM, CLV fit + scores, segments, cohorts, LTV summary) for months 1, 6
and 12: the median of several runs after a warm-up.

    python -m benchmarks.history_growth --db postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --events 500000 --customers 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.events import FIRST_MONTH, month_events, write_ndjson_files
from customer_analytics.asof import AsOf, compute_scores
from customer_analytics.cohorts import compute_cohort_ltv, compute_ltv_summary
from customer_analytics.config import add_months
from customer_analytics.loading import load_events_month
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.segments import compute_segments
from customer_analytics.summaries import summarize_month

FIRST = FIRST_MONTH  # the customers (`benchmarks.events.population`) are drawn from it


def as_of_work(warehouse: Warehouse, month: date) -> float:
    as_of = AsOf.for_month(month)
    started = time.perf_counter()
    compute_scores(warehouse, as_of)
    compute_segments(warehouse, month)
    compute_cohort_ltv(warehouse, as_of)
    compute_ltv_summary(warehouse, as_of)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="warehouse URL (a scratch schema is created and dropped)")
    parser.add_argument("--events", type=int, default=500_000, help="events per month")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warehouse = Warehouse(args.db, "ca_bench_history")
    if warehouse.dialect == "postgresql":
        with warehouse.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA IF EXISTS ca_bench_history CASCADE")
    with tempfile.TemporaryDirectory() as folder:
        landing = Path(folder)
        last = add_months(FIRST, 11)
        month = FIRST
        for index in range(12):
            frame = month_events(month, args.events, args.customers, seed=index)
            write_ndjson_files(frame, landing / "events", files=2, stem=f"{month:%Y-%m}")
            load_events_month(warehouse, str(landing), month, first_month=FIRST, last_month=last)
            summarize_month(warehouse, month, as_of=AsOf.for_month(month).instant)
            month = add_months(month, 1)
        results = {}
        for months in (1, 6, 12):
            month = add_months(FIRST, months - 1)
            runs = [as_of_work(warehouse, month) for _ in range(args.repeats + 1)][1:]
            results[months] = statistics.median(runs)
            print(f"history {months:2d} months: as-of work for {month:%Y-%m} {results[months]:.2f} s (median of {args.repeats})", flush=True)
        print(f"month 12 / month 1: {results[12] / results[1]:.2f}x")
    if warehouse.dialect == "postgresql":
        with warehouse.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA IF EXISTS ca_bench_history CASCADE")


if __name__ == "__main__":
    main()
