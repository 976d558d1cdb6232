"""Landing → raw_events → summaries → cohort_ltv and ltv_summary, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import select

from customer_analytics import cohorts
from customer_analytics.asof import AsOf
from customer_analytics.assets.cohorts import cohort_ltv_asset, ltv_summary_asset
from customer_analytics.cohorts import (
    cohort_activity_rows,
    cohort_ltv,
    compute_cohort_ltv,
    compute_ltv_summary,
    kept_activity_is_current,
    ltv_summary,
    refresh_cohort_activity,
)
from customer_analytics.loading import load_events_month
from customer_analytics.resources.tables import cohort_activity
from customer_analytics.summaries import summarize_month
from customer_analytics.resources import WarehouseResource
from customer_analytics.transforms.cohorts import cohort_ltv_from_purchases
from customer_analytics_tests.landing_builder import event, write_ndjson
from customer_analytics_tests.test_asof import build

APRIL = date(2025, 4, 1)  # as_of = 2025-05-01 00:00:00 UTC, as_of_date 2025-04-30

PURCHASES = [
    ("dave", "2025-01-05 10:00:00", 3.0),
    ("alice", "2025-01-15 10:00:00", 10.0),
    ("alice", "2025-03-10 12:00:00", 5.0),
    ("bob", "2025-01-31 23:00:00", 20.0),           # last day of January; 90 days end May 1 23:00 > as_of
    ("bob", "2025-02-01 01:00:00", 4.0),            # same ISO week, next month
    ("carol", "2025-02-28 12:00:00", 8.0),
    ("carol", "2025-03-02 09:00:00", 2.0),
    ("erin", "2025-03-01 08:00:00.250000", 10.0),   # a Saturday: week of Mon 2025-02-24, with carol
    ("erin", "2025-03-31 08:00:00.249999", 1.0),    # a microsecond before first + 30 days: in the window
    ("erin", "2025-03-31 08:00:00.250000", 100.0),  # exactly first + 30 days: not in it
    ("frank", "2025-03-15 23:59:59.999999", 5.0),   # SQLite's date functions would round this up
    ("frank", "2025-04-14 23:59:59.999998", 2.0),   # in
    ("frank", "2025-04-14 23:59:59.999999", 50.0),  # exactly first + 30 days: out
    ("hank", "2025-04-01 00:00:00", 6.0),           # first + 30 days == as_of: counted
    ("hank", "2025-04-30 23:59:59.999999", 1.5),
    ("gina", "2025-04-01 00:00:00.000001", 7.0),    # first + 30 days a microsecond after as_of: not counted
]
LATER = [("alice", "2025-05-01 00:00:00", 1000.0)]  # at as_of: not part of April's figures


@pytest.fixture
def shop(tmp_path):
    root = tmp_path / "landing"
    records = [event(f"p{i}", c, ts, price=rev) for i, (c, ts, rev) in enumerate(PURCHASES + LATER)]
    records.append(event("v1", "zoe", "2025-02-10 10:00:00", event_type="page_view", price=99.0))  # not a purchase
    write_ndjson(root / "events" / "2025.ndjson", records)
    return root


def _load(warehouse, shop):
    build(warehouse, shop, date(2025, 1, 1), date(2025, 5, 1))


def _cohort_rows(frame: pd.DataFrame, granularity: str) -> list[tuple]:
    part = frame[frame["granularity"] == granularity].sort_values(["cohort_start", "period"])
    return [(str(pd.Timestamp(r.cohort_start).date()), int(r.period), int(r.customers), int(r.active_customers),
             float(r.cumulative_revenue), round(float(r.cumulative_revenue_per_customer), 6)) for r in part.itertuples()]


def test_cohort_ltv_as_of_april(warehouse, shop):
    _load(warehouse, shop)
    rows = compute_cohort_ltv(warehouse, AsOf.for_month(APRIL), run_id="r1")
    assert _cohort_rows(rows, "month") == [
        ("2025-01-01", 0, 3, 3, 33.0, 11.0),
        ("2025-01-01", 1, 3, 1, 37.0, 12.333333),
        ("2025-01-01", 2, 3, 1, 42.0, 14.0),
        ("2025-01-01", 3, 3, 0, 42.0, 14.0),        # no purchase in April: flat
        ("2025-02-01", 0, 1, 1, 8.0, 8.0),
        ("2025-02-01", 1, 1, 1, 10.0, 10.0),
        ("2025-02-01", 2, 1, 0, 10.0, 10.0),
        ("2025-03-01", 0, 2, 2, 116.0, 58.0),       # erin 111 + frank 5
        ("2025-03-01", 1, 2, 1, 168.0, 84.0),       # frank 52
        ("2025-04-01", 0, 2, 2, 14.5, 7.25),        # hank 7.5 + gina 7; alice's May purchase is not counted
    ]
    week = {(c, p): (n, a, cum) for c, p, n, a, cum, _ in _cohort_rows(rows, "week")}
    assert week[("2025-01-27", 0)] == (1, 1, 24.0), "bob's week spans January and February summaries"
    assert week[("2025-02-24", 0)] == (2, 2, 20.0), "carol and erin start in the week of Feb 24"
    assert week[("2025-02-24", 5)] == (2, 1, 121.0) and week[("2025-02-24", 9)] == (2, 0, 121.0)
    assert max(p for c, p in week if c == "2025-02-24") == 9, "up to the week of Mon 2025-04-28"
    assert week[("2025-03-31", 0)] == (2, 2, 13.0), "hank 6 and gina 7: April 1st is a Tuesday"
    assert week[("2025-03-31", 4)] == (2, 1, 14.5), "hank's Apr 30 purchase, in the week of Apr 28"

    # The SQL path agrees with the pure pandas reference on every row.
    purchases = pd.DataFrame(PURCHASES, columns=["customer_id", "event_timestamp", "revenue"])
    purchases["event_timestamp"] = pd.to_datetime(purchases["event_timestamp"], format="ISO8601")
    reference = cohort_ltv_from_purchases(purchases, date(2025, 4, 30))
    columns = list(reference.columns)
    pd.testing.assert_frame_equal(rows[columns].reset_index(drop=True), reference.reset_index(drop=True), check_dtype=False)

    stored = warehouse.read_frame(select(cohort_ltv))
    assert len(stored) == len(rows) and set(stored["as_of_month"].astype(str)) == {"2025-04-01"}


def test_ltv_summary_windows_to_the_microsecond(warehouse, shop):
    _load(warehouse, shop)
    row = compute_ltv_summary(warehouse, AsOf.for_month(APRIL)).iloc[0]
    # 30 days: dave 3, alice 10, bob 24, carol 10, erin 10 + 1, frank 5 + 2, hank 6 + 1.5; not gina.
    assert int(row["customers_30d"]) == 7
    assert row["average_ltv_30d"] == pytest.approx(72.5 / 7, abs=1e-9)
    # 90 days (first purchase on or before Jan 31 00:00): dave 3 and alice 10 + 5; bob started 23 hours too late.
    assert int(row["customers_90d"]) == 2
    assert row["average_ltv_90d"] == pytest.approx(9.0, abs=1e-9)
    stored = warehouse.read_frame(select(ltv_summary))
    assert len(stored) == 1 and int(stored.iloc[0]["customers_30d"]) == 7
    assert float(stored.iloc[0]["average_ltv_30d"]) == pytest.approx(72.5 / 7, abs=1e-9)


def test_nobody_qualifies_yet(warehouse, shop):
    _load(warehouse, shop)
    row = compute_ltv_summary(warehouse, AsOf.for_month(date(2025, 1, 1))).iloc[0]  # as_of Feb 1: nobody has 30 days
    assert (int(row["customers_30d"]), int(row["customers_90d"])) == (0, 0)
    assert pd.isna(row["average_ltv_30d"]) and pd.isna(row["average_ltv_90d"])
    stored = warehouse.read_frame(select(ltv_summary)).iloc[0]
    assert stored["average_ltv_30d"] is None or pd.isna(stored["average_ltv_30d"])
    assert int(stored["customers_30d"]) == 0


def test_no_purchases_gives_no_cohort_rows(warehouse, tmp_path):
    landing = tmp_path / "landing"
    write_ndjson(landing / "events" / "a.ndjson", [event("v1", "zoe", "2025-01-10 10:00:00", event_type="page_view", price=None)])
    build(warehouse, landing, date(2025, 1, 1), date(2025, 1, 1))
    as_of = AsOf.for_month(date(2025, 1, 1))
    assert compute_cohort_ltv(warehouse, as_of).empty
    summary = compute_ltv_summary(warehouse, as_of)
    assert len(summary) == 1 and int(summary.iloc[0]["customers_30d"]) == 0
    assert warehouse.read_frame(select(cohort_ltv)).empty and len(warehouse.read_frame(select(ltv_summary))) == 1


def test_rerunning_gives_identical_rows(warehouse, shop):
    _load(warehouse, shop)
    as_of = AsOf.for_month(APRIL)
    snapshots = []
    for run in ("a", "b"):
        compute_cohort_ltv(warehouse, as_of, run_id=run)
        compute_ltv_summary(warehouse, as_of, run_id=run)
        cohorts = warehouse.read_frame(select(cohort_ltv).order_by("granularity", "cohort_start", "period"))
        summary = warehouse.read_frame(select(ltv_summary))
        snapshots.append((cohorts.drop(columns=["computed_at", "run_id"]), summary.drop(columns=["computed_at", "run_id"])))
    pd.testing.assert_frame_equal(snapshots[0][0], snapshots[1][0])
    pd.testing.assert_frame_equal(snapshots[0][1], snapshots[1][1])
    assert len(snapshots[0][0]) > 0


def test_assets_materialize_with_their_check(warehouse, shop):
    _load(warehouse, shop)
    resources = {"warehouse": WarehouseResource(db_url=warehouse.url, db_schema=warehouse.schema)}
    result = dg.materialize([cohort_ltv_asset, ltv_summary_asset], partition_key="2025-04", resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"cumulative_revenue_never_falls": True}
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert metadata["cohort_ltv"]["monthly_rows"].value == 10
    assert metadata["ltv_summary"]["customers_30d"].value == 7


def _activity(warehouse, as_of: AsOf, granularity: str, *, kept: bool) -> list[tuple]:
    frame = cohort_activity_rows(warehouse, as_of, granularity, kept=kept)
    return [(str(pd.Timestamp(r.cohort_start).date()), str(pd.Timestamp(r.period_start).date()), int(r.active_customers),
             round(float(r.revenue), 6)) for r in frame.itertuples()]


LATE = ("frank", "2025-02-10 10:00:00", 3.0)  # a late purchase: it moves frank into February's cohort


def _deliver_late(warehouse, shop, month: date, customer: str, timestamp: str, price: float) -> None:
    """One late purchase in `month`, loaded and summarized again (after the later months were built)."""
    write_ndjson(shop / "events" / "late.ndjson", [event("late-1", customer, timestamp, price=price)])
    load_events_month(warehouse, str(shop), month, first_month=date(2025, 1, 1), last_month=date(2025, 5, 1))
    summarize_month(warehouse, month, as_of=AsOf.for_month(month).instant)


def _assert_april_cohort_ltv_is_the_reference(warehouse, *extra) -> None:
    """April's cohort_ltv, computed now, equals the purchase-level reference over PURCHASES and `extra`."""
    purchases = pd.DataFrame(PURCHASES + list(extra), columns=["customer_id", "event_timestamp", "revenue"])
    purchases["event_timestamp"] = pd.to_datetime(purchases["event_timestamp"], format="ISO8601")
    reference = cohort_ltv_from_purchases(purchases, date(2025, 4, 30))
    rows = compute_cohort_ltv(warehouse, AsOf.for_month(APRIL))
    columns = list(reference.columns)
    pd.testing.assert_frame_equal(rows[columns].reset_index(drop=True), reference.reset_index(drop=True), check_dtype=False)


def test_kept_activity_adds_up_to_the_summaries_month_by_month(warehouse, shop):
    """Months built in order keep their cohort activity; adding it up gives what the summaries give."""
    _load(warehouse, shop)
    for month in (date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1), APRIL):
        as_of = AsOf.for_month(month)
        assert kept_activity_is_current(warehouse, month), month
        for granularity in ("month", "week"):
            kept = _activity(warehouse, as_of, granularity, kept=True)
            assert kept == _activity(warehouse, as_of, granularity, kept=False), (month, granularity)
    # Bob's week (Mon Jan 27) has purchases in the January and the February rows, and counts him once.
    week = {(c, p): (a, r) for c, p, a, r in _activity(warehouse, AsOf.for_month(APRIL), "week", kept=True)}
    assert week[("2025-01-27", "2025-01-27")] == (1, 24.0)


def test_a_rebuilt_earlier_month_is_not_read_from_kept_activity(warehouse, shop):
    """A late purchase moves frank into February's cohort; until March and April are rebuilt, cohort_ltv reads the summaries."""
    _load(warehouse, shop)
    _deliver_late(warehouse, shop, date(2025, 2, 1), *LATE)
    assert not kept_activity_is_current(warehouse, APRIL)
    summarize_month(warehouse, APRIL, as_of=AsOf.for_month(APRIL).instant)
    assert not kept_activity_is_current(warehouse, APRIL), "March's activity still predates February's rebuild"
    # And it would be wrong: March's kept row still counts frank in the March cohort.
    assert _activity(warehouse, AsOf.for_month(APRIL), "month", kept=True) != \
        _activity(warehouse, AsOf.for_month(APRIL), "month", kept=False)

    _assert_april_cohort_ltv_is_the_reference(warehouse, LATE)

    # Rebuilt in order again, the kept activity is current and gives the same rows.
    for month in (date(2025, 3, 1), APRIL):
        summarize_month(warehouse, month, as_of=AsOf.for_month(month).instant)
    assert kept_activity_is_current(warehouse, APRIL)
    _assert_april_cohort_ltv_is_the_reference(warehouse, LATE)


def test_a_month_built_while_in_progress_is_not_read_from_kept_activity(warehouse, shop):
    build(warehouse, shop, date(2025, 1, 1), date(2025, 5, 1), until=date(2025, 2, 1))
    mid_march = datetime(2025, 3, 16, tzinfo=timezone.utc)
    load_events_month(warehouse, str(shop), date(2025, 3, 1), first_month=date(2025, 1, 1), last_month=date(2025, 5, 1))
    summarize_month(warehouse, date(2025, 3, 1), as_of=AsOf.for_month(date(2025, 3, 1), mid_march).instant)
    assert kept_activity_is_current(warehouse, date(2025, 3, 1)), "the month in progress is its own latest build"
    load_events_month(warehouse, str(shop), APRIL, first_month=date(2025, 1, 1), last_month=date(2025, 5, 1))
    summarize_month(warehouse, APRIL, as_of=AsOf.for_month(APRIL).instant)
    assert not kept_activity_is_current(warehouse, APRIL), "March was kept as of mid-March"


def test_stale_kept_activity_is_rebuilt_from_the_latest_history(warehouse, shop):
    """After a rebuilt earlier month, cohort_ltv rebuilds the stale months' kept activity from the latest history
    (when it is the latest build), so later runs add up kept rows again instead of every summary."""
    _load(warehouse, shop)
    _deliver_late(warehouse, shop, date(2025, 2, 1), *LATE)
    # April's history is not the latest build: nothing is rebuilt, and the summaries give the rows.
    assert refresh_cohort_activity(warehouse, APRIL) == []
    summarize_month(warehouse, APRIL, as_of=AsOf.for_month(APRIL).instant)
    slow = {g: _activity(warehouse, AsOf.for_month(APRIL), g, kept=False) for g in ("month", "week")}
    assert not kept_activity_is_current(warehouse, APRIL)

    _assert_april_cohort_ltv_is_the_reference(warehouse, LATE)
    # March was stale (February rebuilt after it): rebuilt from April's history, frank now in February's cohort.
    assert kept_activity_is_current(warehouse, APRIL)
    for granularity in ("month", "week"):
        assert _activity(warehouse, AsOf.for_month(APRIL), granularity, kept=True) == slow[granularity], granularity
    march = warehouse.read_frame(select(cohort_activity).where(cohort_activity.c.summary_month == date(2025, 3, 1))
                                 .where(cohort_activity.c.granularity == "month"))
    march_cohorts = {str(pd.Timestamp(c).date()): int(n) for c, n in zip(march["cohort_start"], march["active_customers"])}
    assert march_cohorts.get("2025-02-01") == 2 and "2025-03-01" in march_cohorts  # carol and frank; erin's is March
    assert refresh_cohort_activity(warehouse, APRIL) == [], "nothing stale any more"
    _assert_april_cohort_ltv_is_the_reference(warehouse, LATE)


def test_a_rebuild_of_stale_activity_that_fails_midway_leaves_the_rest_for_the_next_run(warehouse, shop, monkeypatch):
    _load(warehouse, shop)
    _deliver_late(warehouse, shop, date(2025, 1, 1), "dave", "2025-01-20 10:00:00", 1.0)
    summarize_month(warehouse, APRIL, as_of=AsOf.for_month(APRIL).instant)  # February and March are stale now
    slow = {g: _activity(warehouse, AsOf.for_month(APRIL), g, kept=False) for g in ("month", "week")}
    real, calls = cohorts.build_cohort_activity, []

    def failing_on_march(warehouse, replacement, month, *args, **kwargs):
        calls.append(month)
        if month == date(2025, 3, 1):
            raise RuntimeError("connection lost")
        return real(warehouse, replacement, month, *args, **kwargs)

    monkeypatch.setattr(cohorts, "build_cohort_activity", failing_on_march)
    with pytest.raises(RuntimeError, match="connection lost"):
        refresh_cohort_activity(warehouse, APRIL)
    assert calls == [date(2025, 2, 1), date(2025, 3, 1)]
    assert not kept_activity_is_current(warehouse, APRIL), "March is still stale"
    assert kept_activity_is_current(warehouse, date(2025, 2, 1)), "February was rebuilt and published"
    monkeypatch.undo()
    assert refresh_cohort_activity(warehouse, APRIL) == [date(2025, 3, 1)]
    assert kept_activity_is_current(warehouse, APRIL)
    for granularity in ("month", "week"):
        assert _activity(warehouse, AsOf.for_month(APRIL), granularity, kept=True) == slow[granularity], granularity
