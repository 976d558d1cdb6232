"""Ingestion throughput of one month: landing NDJSON → raw_events, all validation included.

    python -m benchmarks.ingest_month --events 1000000 \\
        --db sqlite:////tmp/bench.db --db postgresql+psycopg://postgres@127.0.0.1:5432/test

Each --db gets a fresh scratch schema (PostgreSQL) and the same files; the month is loaded
--repeats times (the later loads replace it), and rows/s is printed per load.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.events import month_events, write_ndjson_files
from customer_analytics.loading import load_events_month
from customer_analytics.resources.warehouse import Warehouse

MONTH = date(2025, 3, 1)
SCHEMA = "ca_bench_ingest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", action="append", required=True, help="warehouse URL; repeat to compare")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        landing = Path(folder)
        started = time.perf_counter()
        write_ndjson_files(month_events(MONTH, args.events, max(args.events // 10, 1)), landing / "events")
        print(f"generated {args.events:,} events in {time.perf_counter() - started:.1f} s", flush=True)
        for url in args.db:
            warehouse = Warehouse(url, SCHEMA)
            if warehouse.dialect == "postgresql":
                with warehouse.begin() as connection:
                    connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            for _ in range(args.repeats):
                started = time.perf_counter()
                report = load_events_month(warehouse, str(landing), MONTH, first_month=date(2025, 1, 1), last_month=date(2025, 12, 1))
                seconds = time.perf_counter() - started
                print(f"{warehouse.dialect}: {report.loaded:,} rows in {seconds:.1f} s = {report.loaded / seconds:,.0f} rows/s", flush=True)
            if warehouse.dialect == "postgresql":
                with warehouse.begin() as connection:
                    connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
