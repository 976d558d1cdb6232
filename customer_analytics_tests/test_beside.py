"""Work beside a replacement: the week summary and the segment sums on a second connection.

They must give the same tables as when done in the replacement itself, and give way — never
hang — when a replacement of a table they read is already waiting for the first connection.
"""

from __future__ import annotations

import threading
import time
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import select, text

from customer_analytics import segments, summaries
from customer_analytics.asof import AsOf
from customer_analytics.resources.tables import (
    cohort_activity,
    customer_history,
    customer_month_summary,
    customer_segments,
    customer_week_summary,
    segment_metrics,
    segment_migration,
)
from customer_analytics.resources.warehouse import Warehouse, partition_name

MONTH = date(2025, 3, 1)
STAMPS = {"computed_at", "run_id", "built_at"}

# The module's pipeline on PostgreSQL only: on SQLite nothing runs beside.
on_postgres = pytest.mark.parametrize("scored_warehouse", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                      indirect=True)


def month_rows(warehouse: Warehouse, table, column: str) -> pd.DataFrame:
    frame = warehouse.read_frame(select(table).where(table.c[column] == MONTH))
    frame = frame.drop(columns=[c for c in frame.columns if c in STAMPS])
    return frame.sort_values(list(frame.columns), ignore_index=True)


def segment_tables(warehouse: Warehouse) -> list[pd.DataFrame]:
    return [month_rows(warehouse, table, "as_of_month") for table in (customer_segments, segment_metrics, segment_migration)]


def summary_tables(warehouse: Warehouse) -> list[pd.DataFrame]:
    return [month_rows(warehouse, customer_month_summary, "summary_month"),
            month_rows(warehouse, customer_week_summary, "summary_month"),
            month_rows(warehouse, customer_history, "as_of_month").drop(columns=["as_of"]),
            month_rows(warehouse, cohort_activity, "summary_month")]


def assert_same(before: list[pd.DataFrame], after: list[pd.DataFrame]) -> None:
    for old, new in zip(before, after):
        assert len(new) > 0
        pd.testing.assert_frame_equal(old, new)


class QueuedReplacement:
    """Another session asking to replace `table` (ACCESS EXCLUSIVE) while the replacement holds it: its
    request waits, and every later request for the table queues behind it."""

    def __init__(self, warehouse: Warehouse, table: str):
        self.warehouse, self.table, self.granted = warehouse, table, threading.Event()
        self.thread = threading.Thread(target=self._lock, daemon=True)

    def _lock(self) -> None:
        with self.warehouse.begin() as connection:
            # Bounded, so that work beside which fails to give way fails the test instead of hanging it.
            connection.execute(text("SET LOCAL lock_timeout = '30s'"))
            connection.execute(text(f"LOCK TABLE {self.warehouse.qualified(self.table)} IN ACCESS EXCLUSIVE MODE"))
            self.granted.set()

    def ahead_of(self, function):
        """`function`, called once this request is queued; the errors it raises are kept in `errors`."""
        self.errors: list[Exception] = []

        def queued_first(*args, **kwargs):
            self.start_and_wait_queued()  # the replacement already holds the table: the request waits
            try:
                return function(*args, **kwargs)
            except Exception as error:
                self.errors.append(error)
                raise

        return queued_first

    def assert_given_way_then_granted(self) -> None:
        """The work beside gave way once, with a lock timeout, and the request was granted after."""
        assert len(self.errors) == 1 and "lock timeout" in str(self.errors[0])
        self.thread.join(timeout=30)
        assert self.granted.is_set()  # once the replacement was published

    def start_and_wait_queued(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            waiting = self.warehouse.scalar(
                "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock' "
                "AND relation = CAST(:table AS regclass)", {"table": self.warehouse.qualified(self.table)})
            if waiting:
                return
            time.sleep(0.02)
        raise AssertionError(f"the lock on {self.table} was neither queued nor granted")


@on_postgres
def test_segment_sums_beside_the_membership_give_the_same_tables(scored_warehouse, monkeypatch):
    warehouse = scored_warehouse
    before = segment_tables(warehouse)
    outcomes = []
    read_frame = warehouse.read_frame

    def spy(statement, params=None, **options):
        frame = read_frame(statement, params, **options)
        if options.get("lock_timeout"):
            outcomes.append((len(frame), options.get("parallel_workers", True)))
        return frame

    monkeypatch.setattr(warehouse, "read_frame", spy)
    segments.compute_segments(warehouse, MONTH)
    assert outcomes and outcomes[0][0] > 0  # the sums were taken on the other connection
    assert outcomes[0][1] is False  # on one backend, not on workers taking the insert's cores
    assert_same(before, segment_tables(warehouse))


@on_postgres
def test_without_parallel_workers_a_read_or_a_replacement_plans_none_and_the_next_one_may(scored_warehouse):
    setting = "SELECT current_setting('max_parallel_workers_per_gather') AS workers"
    default = scored_warehouse.read_frame(setting)["workers"].iloc[0]
    assert scored_warehouse.read_frame(setting, parallel_workers=False)["workers"].iloc[0] == "0"
    assert default != "0" and scored_warehouse.read_frame(setting)["workers"].iloc[0] == default
    for parallel_workers, expected in ((False, "0"), (True, default)):
        with scored_warehouse.replace(lock_name="test/workers", parallel_workers=parallel_workers) as replacement:
            assert replacement.query(setting, {})["workers"].iloc[0] == expected


@on_postgres
def test_segment_sums_give_way_to_a_waiting_replacement(scored_warehouse, monkeypatch):
    warehouse = scored_warehouse
    before = segment_tables(warehouse)
    monkeypatch.setattr(segments, "GIVE_WAY", "200ms")
    locker = QueuedReplacement(warehouse, partition_name("customer_clv", MONTH))
    read_frame = warehouse.read_frame
    queued_read = locker.ahead_of(read_frame)

    def sums_after_a_queued_replacement(statement, params=None, **options):
        return (queued_read if options.get("lock_timeout") else read_frame)(statement, params, **options)

    monkeypatch.setattr(warehouse, "read_frame", sums_after_a_queued_replacement)
    started = time.monotonic()
    segments.compute_segments(warehouse, MONTH)
    assert time.monotonic() - started < 60
    locker.assert_given_way_then_granted()
    assert_same(before, segment_tables(warehouse))


@on_postgres
def test_week_summary_gives_way_to_a_waiting_replacement(scored_warehouse, monkeypatch):
    # The tables before were built beside; after, in the replacement: the week cohort activity
    # from the previous history's first purchases must equal the one from the month's history.
    warehouse = scored_warehouse
    before = summary_tables(warehouse)
    monkeypatch.setattr(summaries, "GIVE_WAY", "200ms")
    locker = QueuedReplacement(warehouse, partition_name("raw_events", MONTH))
    monkeypatch.setattr(summaries, "summarize_weeks", locker.ahead_of(summaries.summarize_weeks))
    counts = summaries.summarize_month(warehouse, MONTH, as_of=AsOf.for_month(MONTH).instant)
    assert counts["customer_weeks"] == len(before[1])  # not published beside, but staged with the rest
    locker.assert_given_way_then_granted()
    assert_same(before, summary_tables(warehouse))


@on_postgres
def test_week_summary_beside_the_history_gives_the_same_tables(scored_warehouse, monkeypatch):
    warehouse = scored_warehouse
    before = summary_tables(warehouse)
    results = []
    summarize_weeks = summaries.summarize_weeks
    monkeypatch.setattr(summaries, "summarize_weeks", lambda *args: results.append(summarize_weeks(*args)) or results[-1])
    summaries.summarize_month(warehouse, MONTH, as_of=AsOf.for_month(MONTH).instant)
    (weeks, week_activity), = results  # published beside, with the week cohort activity (the history is extended)
    assert weeks == len(before[1]) and len(week_activity) > 0
    assert_same(before, summary_tables(warehouse))


def test_work_beside_runs_first_on_sqlite_and_its_error_is_raised_by_result(tmp_path):
    warehouse = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    order = []

    def fail():
        order.append("beside")
        raise ValueError("beside failed")

    with warehouse.beside(fail) as outcome:
        order.append("block")
    assert order == ["beside", "block"]
    with pytest.raises(ValueError, match="beside failed"):
        outcome.result()
