"""The database's share of ingesting a month, against the ingestion anchor: the ceiling of the ratio.

Ingestion ends with the month's rows in a `raw_events` partition that has its primary key
(event_id, event_month) and its index of customers' purchases. However fast the Python side,
PostgreSQL has to COPY the rows and build both indexes; the anchor only COPYs into an unindexed
table. This measures both on the same rows (medians after a warm-up) and prints the best ratio
the design allows: anchor seconds / database seconds.

    python -m benchmarks.ingest_floor --db postgresql+psycopg://postgres@127.0.0.1:5432/test --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from benchmarks.events import month_events
from benchmarks.run import median_of
from customer_analytics.resources.tables import raw_events

MONTH = date(2024, 1, 1)
# The partial index's columns and condition as `raw_events` declares them (tables.py).
PURCHASES_INDEX = next(i for i in raw_events.indexes if i.name == "raw_events_purchases_idx").dialect_options["postgresql"]
TYPES = {"event_timestamp": "timestamptz", "price": "double precision", "quantity": "bigint"}


def copy_rows(connection, table: str, csv_path: Path) -> None:
    with connection.cursor() as cursor, open(csv_path, "rb") as handle:
        with cursor.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
            while data := handle.read(1 << 20):
                copy.write(data)


def timed(connection, statement: str) -> float:
    started = time.perf_counter()
    connection.execute(statement)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="PostgreSQL URL (scratch tables are created and dropped)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.events < 1 or args.repeats < 1:
        parser.error("--events and --repeats must be positive")
    conninfo = make_url(args.db).set(drivername="postgresql").render_as_string(hide_password=False)
    frame = month_events(MONTH, args.events, args.customers, seed=1)
    columns = list(frame.columns)
    table = f"ca_ingest_floor_{os.getpid()}"  # a scratch table of this process
    # The columns the purchases index includes that the delivered rows lack hold one value each: the
    # index's sort is by customer, and these are fixed-width whatever their values.
    definition = ", ".join(f'"{c}" {TYPES.get(c, "text")}' for c in columns) + (
        f", event_month date NOT NULL DEFAULT DATE '{MONTH.isoformat()}', "
        f"event_date date NOT NULL DEFAULT DATE '{MONTH.isoformat()}', revenue double precision NOT NULL DEFAULT 0")
    with tempfile.TemporaryDirectory(prefix="ca-floor-") as folder, psycopg.connect(conninfo, autocommit=True) as connection:
        csv_path = Path(folder) / "events.csv"
        frame.to_csv(csv_path, index=False, header=False)
        del frame
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(f"CREATE TABLE {table} ({definition})")
        parts: dict[str, list[float]] = {"copy": [], "primary key": [], "purchases index": [], "analyze": []}

        def anchor():
            connection.execute(f"TRUNCATE {table}")
            copy_rows(connection, f"{table} ({', '.join(columns)})", csv_path)

        def database_share():
            connection.execute(f"DROP INDEX IF EXISTS {table}_pkey, {table}_purchases")
            connection.execute(f"TRUNCATE {table}")
            started = time.perf_counter()
            copy_rows(connection, f"{table} ({', '.join(columns)})", csv_path)
            parts["copy"].append(time.perf_counter() - started)
            connection.execute("SET maintenance_work_mem = '256MB'")  # as the partition swap does
            parts["primary key"].append(timed(connection, f'CREATE UNIQUE INDEX {table}_pkey ON {table} (event_id COLLATE "C", event_month)'))
            parts["purchases index"].append(timed(
                connection, f'CREATE INDEX {table}_purchases ON {table} (customer_id COLLATE "C") '
                            f"INCLUDE ({', '.join(PURCHASES_INDEX['include'])}) WHERE {PURCHASES_INDEX['where']}"))
            parts["analyze"].append(timed(connection, f"ANALYZE {table}"))

        anchor_s = median_of(anchor, args.repeats)
        database_s = median_of(database_share, args.repeats)
        connection.execute(f"DROP TABLE {table}")
    medians = {name: statistics.median(values[1:]) for name, values in parts.items()}  # [0] is the warm-up
    result = {"events": args.events, "anchor_copy_s": anchor_s, "database_s": database_s, "parts_s": medians,
              "best_ratio": anchor_s / database_s}
    print(json.dumps(result, indent=2))
    print(f"\n{args.events:,} rows: the anchor COPY takes {anchor_s:.2f} s; COPY + both indexes + ANALYZE take "
          f"{database_s:.2f} s, so ingestion can reach at most {anchor_s / database_s:.2f}× the anchor's throughput")


if __name__ == "__main__":
    main()
