"""customer_history: extended month by month, rebuilt in full when the previous month's is stale.

Every month's history, and its month and week summaries, are compared with the same figures
computed in pandas from the landing events, whichever way the history was built.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest
from sqlalchemy import select

from customer_analytics.asof import AsOf
from customer_analytics.config import add_months
from customer_analytics.loading import load_events_month
from customer_analytics.resources.tables import (
    customer_history,
    customer_history_builds,
    customer_month_summary,
    customer_week_summary,
)
from customer_analytics.summaries import summarize_month
from customer_analytics_tests.landing_builder import event, write_ndjson

FIRST, LAST = date(2025, 1, 1), date(2025, 5, 1)

EVENTS = [
    event("a1", "alice", "2025-01-20 10:00:00", price=10.0),
    event("a2", "alice", "2025-02-15 08:00:00", price=20.0),           # inside 30 days
    event("a3", "alice", "2025-02-19 10:00:00", price=5.0),            # exactly +30 days: 90-day window only
    event("a4", "alice", "2025-04-20 09:59:59.999999", price=7.0),     # last microsecond of the 90 days
    event("a5", "alice", "2025-04-20 10:00:00", price=3.0),            # exactly +90 days: outside
    event("b1", "bob", "2025-02-28 23:00:00", price=4.0),
    event("b2", "bob", "2025-03-30 22:59:00", price=6.0, quantity=2),  # inside 30 days, across a month end
    event("b3", "bob", "2025-05-29 23:00:00", price=1.0),              # exactly +90 days
    event("b4", "bob", "2025-03-01 09:00:00", event_type="page_view", price=None, quantity=None),
    event("c1", "carol", "2025-03-02 00:00:00", price=0.0),
    event("c2", "carol", "2025-03-02 12:00:00", price=1.5),            # same first day
    event("d1", "dave", "2025-05-31 23:59:59", price=9.0),
]


def expected_history(events: list[dict], as_of: datetime) -> pd.DataFrame:
    """The history as of `as_of`, straight from the events."""
    frame = pd.DataFrame(events)
    frame = frame[frame["event_type"] == "purchase"].copy()
    frame["at"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    frame = frame[frame["at"] < as_of]
    frame["revenue"] = frame["price"] * frame["quantity"]
    rows = {}
    for customer, purchases in frame.groupby("customer_id"):
        first = purchases["at"].min()
        rows[customer] = {
            "purchases": len(purchases), "revenue": purchases["revenue"].sum(),
            "purchase_days": purchases["at"].dt.date.nunique(),
            "first_month": first.date().replace(day=1),
            "revenue_30d": purchases.loc[purchases["at"] < first + timedelta(days=30), "revenue"].sum(),
            "revenue_90d": purchases.loc[purchases["at"] < first + timedelta(days=90), "revenue"].sum(),
        }
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def stored_history(warehouse, month: date) -> pd.DataFrame:
    frame = warehouse.read_frame(select(customer_history).where(customer_history.c.as_of_month == month))
    frame["first_month"] = pd.to_datetime(frame["first_month"]).dt.date
    columns = ["purchases", "revenue", "purchase_days", "first_month", "revenue_30d", "revenue_90d"]
    return frame.set_index("customer_id").sort_index()[columns]


def build_method(warehouse, month: date) -> str:
    return warehouse.scalar(select(customer_history_builds.c.method).where(customer_history_builds.c.as_of_month == month))


def load_and_summarize(warehouse, landing, month: date, *, now: datetime | None = None) -> dict:
    load_events_month(warehouse, str(landing), month, first_month=FIRST, last_month=LAST)
    return summarize_month(warehouse, month, as_of=AsOf.for_month(month, now).instant)


def assert_history_matches(warehouse, month: date, events: list[dict], as_of: datetime) -> None:
    expected = expected_history(events, as_of)
    stored = stored_history(warehouse, month)
    assert list(stored.index) == list(expected.index)
    for column in expected.columns:
        if column == "first_month":
            assert stored[column].tolist() == expected[column].tolist(), column
        else:
            assert stored[column].to_numpy() == pytest.approx(expected[column].to_numpy(), abs=1e-9), column


def test_history_is_extended_month_by_month_and_equals_the_events(warehouse, tmp_path):
    landing = tmp_path / "landing"
    write_ndjson(landing / "events" / "all.ndjson", EVENTS)
    methods = []
    month = FIRST
    while month <= LAST:
        counts = load_and_summarize(warehouse, landing, month)
        methods.append(counts["history_method"])
        assert build_method(warehouse, month) == counts["history_method"]
        assert_history_matches(warehouse, month, EVENTS, AsOf.for_month(month).instant)
        month = add_months(month, 1)
    assert methods == ["full"] + ["incremental"] * 4


def test_a_rebuilt_earlier_month_makes_later_histories_rebuild_in_full(warehouse, tmp_path):
    landing = tmp_path / "landing"
    write_ndjson(landing / "events" / "all.ndjson", EVENTS)
    month = FIRST
    while month <= LAST:
        load_and_summarize(warehouse, landing, month)
        month = add_months(month, 1)
    # A late purchase for February lands, and February is rebuilt.
    late = [event("late", "erin", "2025-02-03 10:00:00", price=11.0)]
    write_ndjson(landing / "events" / "late.ndjson", late)
    assert load_and_summarize(warehouse, landing, date(2025, 2, 1))["history_method"] == "incremental"
    # April's history now rests on a March history built before February's: not extendable.
    counts = load_and_summarize(warehouse, landing, date(2025, 4, 1))
    assert counts["history_method"] == "full"
    assert_history_matches(warehouse, date(2025, 4, 1), EVENTS + late, AsOf.for_month(date(2025, 4, 1)).instant)
    # March rebuilt, then May extends April again.
    assert load_and_summarize(warehouse, landing, date(2025, 3, 1))["history_method"] == "incremental"
    assert load_and_summarize(warehouse, landing, date(2025, 5, 1))["history_method"] == "full"  # April predates March
    assert_history_matches(warehouse, LAST, EVENTS + late, AsOf.for_month(LAST).instant)


def test_a_history_built_mid_month_is_not_extended(warehouse, tmp_path):
    landing = tmp_path / "landing"
    write_ndjson(landing / "events" / "all.ndjson", EVENTS)
    load_and_summarize(warehouse, landing, FIRST)
    # February computed on Feb 16th and never again: a2 counts, a3 (Feb 19th) not yet.
    february, march = date(2025, 2, 1), date(2025, 3, 1)
    mid = datetime(2025, 2, 16, tzinfo=timezone.utc)
    load_and_summarize(warehouse, landing, february, now=mid)
    assert_history_matches(warehouse, february, EVENTS, mid)
    counts = load_and_summarize(warehouse, landing, march)
    assert counts["history_method"] == "full"
    # Totals follow February's summaries (as of Feb 16th); the 30/90-day windows are read from the events.
    stored = stored_history(warehouse, march)
    as_of = AsOf.for_month(march).instant
    seen = [e for e in EVENTS if not (e["event_timestamp"].startswith("2025-02") and e["event_timestamp"] >= "2025-02-16")]
    totals = expected_history(seen, as_of)
    assert stored.loc["alice", "revenue"] == pytest.approx(totals.loc["alice", "revenue"]) == 30.0
    assert stored["purchases"].tolist() == totals["purchases"].tolist()
    assert stored.loc["alice", "revenue_90d"] == pytest.approx(35.0)  # a3 included


def expected_summaries(events: list[dict], month: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The month's customer-month and customer-week summaries, straight from the events."""
    frame = pd.DataFrame(events)
    frame = frame[frame["event_type"] == "purchase"].copy()
    frame["at"] = pd.to_datetime(frame["event_timestamp"], utc=True, format="ISO8601")
    frame = frame[(frame["at"] >= pd.Timestamp(month, tz="UTC")) & (frame["at"] < pd.Timestamp(add_months(month, 1), tz="UTC"))]
    frame["revenue"] = frame["price"] * frame["quantity"]
    frame["day"] = frame["at"].dt.date
    days = frame.groupby(["customer_id", "day"])["revenue"].sum().reset_index()
    months = {}
    for customer, rows in days.groupby("customer_id"):
        positive = rows[rows["revenue"] > 0]
        purchases = frame[frame["customer_id"] == customer]
        months[customer] = {
            "purchases": len(purchases), "revenue": rows["revenue"].sum(), "purchase_days": len(rows),
            "positive_days": len(positive), "positive_day_revenue": positive["revenue"].sum(),
            "first_day_revenue": rows.loc[rows["day"] == rows["day"].min(), "revenue"].sum(),
            "first_purchase_at": purchases["at"].min(), "last_purchase_at": purchases["at"].max(),
        }
    frame["week_start"] = frame["at"].dt.tz_localize(None).dt.normalize() - pd.to_timedelta(frame["at"].dt.day_of_week, unit="D")
    weeks = frame.groupby(["customer_id", "week_start"]).agg(purchases=("revenue", "size"), revenue=("revenue", "sum"))
    return pd.DataFrame.from_dict(months, orient="index").sort_index(), weeks.sort_index()


def test_month_and_week_summaries_equal_the_events(warehouse, tmp_path):
    landing = tmp_path / "landing"
    events = EVENTS + [
        event("e1", "erin", "2025-03-31 23:59:59.5", price=2.0, quantity=3),  # Monday: its own week
        event("e2", "erin", "2025-03-30 12:00:00", price=0.0),              # Sunday: the week before; a day of no revenue
        event("e3", "erin", "2025-03-29 13:00:00", price=1.0),              # her first day
    ]
    write_ndjson(landing / "events" / "all.ndjson", events)
    month = FIRST
    while month <= LAST:
        load_and_summarize(warehouse, landing, month)
        expected_months, expected_weeks = expected_summaries(events, month)
        months = warehouse.read_frame(select(customer_month_summary).where(customer_month_summary.c.summary_month == month))
        months = months.set_index("customer_id").sort_index()
        assert list(months.index) == list(expected_months.index), month
        for column in ("purchases", "purchase_days", "positive_days"):
            assert months[column].tolist() == expected_months[column].tolist(), (month, column)
        for column in ("revenue", "positive_day_revenue", "first_day_revenue"):
            assert months[column].to_numpy() == pytest.approx(expected_months[column].to_numpy(), abs=1e-9), (month, column)
        for column in ("first_purchase_at", "last_purchase_at"):
            stored = pd.to_datetime(months[column], utc=True, format="ISO8601")
            assert stored.tolist() == expected_months[column].tolist(), (month, column)
        weeks = warehouse.read_frame(select(customer_week_summary).where(customer_week_summary.c.summary_month == month))
        weeks["week_start"] = pd.to_datetime(weeks["week_start"])
        weeks = weeks.set_index(["customer_id", "week_start"]).sort_index()
        assert list(weeks.index) == list(expected_weeks.index), month
        assert weeks["purchases"].tolist() == expected_weeks["purchases"].tolist(), month
        assert weeks["revenue"].to_numpy() == pytest.approx(expected_weeks["revenue"].to_numpy(), abs=1e-9), month
        month = add_months(month, 1)
