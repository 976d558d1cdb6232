"""A month's load among others: what finding redeliveries across months costs a load.

    python -m benchmarks.month_reload --events 500000 --months 6 \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test --json benchmarks/results/month_reload.json

Every month is loaded once, oldest first (each load looks up its ids in the months before it),
then the last month is loaded again --repeats times (looking them up in every other month).
Prints each load's seconds and rows/s; the JSON keeps them with the host's facts.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

from benchmarks.events import month_events, write_ndjson_files
from customer_analytics.config import add_months
from customer_analytics.loading import load_events_month
from customer_analytics.resources.warehouse import Warehouse

FIRST = date(2025, 1, 1)
SCHEMA = "ca_bench_reload"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500_000, help="events per month")
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--db", required=True, help="warehouse URL (PostgreSQL: a scratch schema is created and dropped)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    months = [add_months(FIRST, i) for i in range(args.months)]
    last = months[-1]
    loads = []
    with tempfile.TemporaryDirectory() as folder:
        landing = Path(folder)
        for index, month in enumerate(months):
            write_ndjson_files(month_events(month, args.events, max(args.events // 10, 1), seed=index),
                               landing / "events", stem=f"{month:%Y-%m}")
        warehouse = Warehouse(args.db, SCHEMA)
        _drop(warehouse)
        try:
            for round_, month in [("first", m) for m in months] + [("reload", last)] * args.repeats:
                started = time.perf_counter()
                report = load_events_month(warehouse, str(landing), month, first_month=FIRST, last_month=last)
                seconds = time.perf_counter() - started
                loads.append({"round": round_, "month": f"{month:%Y-%m}", "rows": report.loaded, "seconds": round(seconds, 3)})
                print(f"{round_:<6} {month:%Y-%m}: {report.loaded:,} rows in {seconds:.2f} s = "
                      f"{report.loaded / seconds:,.0f} rows/s", flush=True)
        finally:
            _drop(warehouse)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "benchmark": "month_reload", "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "dialect": warehouse.dialect, "events_per_month": args.events,
            "months": args.months, "loads": loads,
        }, indent=2) + "\n")


def _drop(warehouse: Warehouse) -> None:
    if warehouse.dialect == "postgresql":
        with warehouse.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
