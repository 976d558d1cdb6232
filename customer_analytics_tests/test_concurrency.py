"""Two writers of the same month never interleave: readers see one complete version, the last writer wins whole.

The run queue (dagster.yaml: one run per `dagster/partition` value) keeps runs of the same month
apart; these tests show the second guard, the warehouse's lock per (table, month), holds on its own.
"""

from __future__ import annotations

import threading
import time
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import func, select

from customer_analytics.resources.tables import segment_migration

MONTH = date(2025, 3, 1)
ROWS = 400


def migration_rows(writer: int) -> pd.DataFrame:
    return pd.DataFrame({
        "as_of_month": pd.Timestamp(MONTH), "from_segment": [f"s{i}" for i in range(ROWS)], "to_segment": "high",
        "customers": writer, "computed_at": pd.Timestamp.now(tz="UTC"), "run_id": f"writer-{writer}",
    })


def test_concurrent_replacements_of_a_month_leave_one_whole_version(warehouse):
    warehouse.ensure_tables()
    warehouse.replace_month(segment_migration, MONTH, migration_rows(0))
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def read():
        while not done.is_set():
            frame = warehouse.read_frame(select(func.count(), func.count(func.distinct(segment_migration.c.run_id)))
                                         .where(segment_migration.c.as_of_month == MONTH))
            seen.append(tuple(int(v) for v in frame.iloc[0]))

    def write(writer):
        warehouse.replace_month(segment_migration, MONTH, migration_rows(writer))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(1, 5)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()

    final = warehouse.read_frame(select(segment_migration).where(segment_migration.c.as_of_month == MONTH))
    assert len(final) == ROWS and final["run_id"].nunique() == 1 and final["customers"].nunique() == 1
    assert seen and set(seen) == {(ROWS, 1)}, "a reader only ever sees one complete version"


@pytest.mark.postgres
def test_the_lock_makes_a_second_writer_of_the_same_month_wait(pg_warehouse):
    pg_warehouse.ensure_tables()
    times: dict[str, float] = {}
    holding = threading.Event()

    def first():
        with pg_warehouse.replace(lock_name=f"segment_migration/{MONTH:%Y-%m}") as replacement:
            holding.set()
            replacement.replace_partition(segment_migration, MONTH)
            replacement.append(segment_migration, migration_rows(1))
            time.sleep(0.8)
        times["first published"] = time.monotonic()

    def other(name, lock):
        holding.wait()
        with pg_warehouse.replace(lock_name=lock):
            times[name] = time.monotonic()

    threads = [threading.Thread(target=first),
               threading.Thread(target=other, args=("same month entered", (f"segment_migration/{MONTH:%Y-%m}", "customer_clv/2025-03"))),
               threading.Thread(target=other, args=("other month entered", "segment_migration/2025-02"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert times["same month entered"] >= times["first published"] - 0.05, times
    assert times["other month entered"] < times["first published"] - 0.3, "other months are not held up"
