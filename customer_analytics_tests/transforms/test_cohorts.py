"""Cohort arithmetic on hand-computed examples, and its invariants on generated purchases."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_analytics.transforms.cohorts import (
    cohort_activity,
    cohort_ltv_from_purchases,
    cohort_table,
    cumulative_revenue_never_falls,
    period_index,
    period_start,
)

# As of the end of April 2025 (as_of_date Wednesday 2025-04-30, whose ISO week starts Monday 2025-04-28).
AS_OF_DAY = date(2025, 4, 30)
PURCHASES = pd.DataFrame([
    ("dave", "2025-01-05 10:00:00", 3.0),    # a Sunday: week of Monday 2024-12-30
    ("alice", "2025-01-15 10:00:00", 10.0),
    ("alice", "2025-03-10 12:00:00", 5.0),   # nothing in February: Jan cohort's period 1 is bob only
    ("bob", "2025-01-31 23:00:00", 20.0),    # first purchase on the last day of January
    ("bob", "2025-02-01 01:00:00", 4.0),     # next day, next month, same ISO week (Mon 2025-01-27)
    ("carol", "2025-02-28 12:00:00", 8.0),
    ("carol", "2025-03-02 09:00:00", 2.0),   # week of Mon 2025-02-24 spans February and March
], columns=["customer_id", "event_timestamp", "revenue"])


def _rows(frame: pd.DataFrame, granularity: str) -> list[tuple]:
    part = frame[frame["granularity"] == granularity]
    return [(str(r.cohort_start.date()), r.period, str(r.period_start.date()), r.customers, r.active_customers,
             r.cumulative_revenue, round(r.cumulative_revenue_per_customer, 6)) for r in part.itertuples()]


def test_monthly_cohorts_by_hand():
    table = cohort_ltv_from_purchases(PURCHASES, AS_OF_DAY)
    assert _rows(table, "month") == [
        # cohort, period, period start, customers, active, cumulative revenue, per customer
        ("2025-01-01", 0, "2025-01-01", 3, 3, 33.0, 11.0),      # dave 3 + alice 10 + bob 20 (Jan 31)
        ("2025-01-01", 1, "2025-02-01", 3, 1, 37.0, 12.333333),  # bob's Feb 1st purchase
        ("2025-01-01", 2, "2025-03-01", 3, 1, 42.0, 14.0),       # alice again
        ("2025-01-01", 3, "2025-04-01", 3, 0, 42.0, 14.0),       # no purchase: flat
        ("2025-02-01", 0, "2025-02-01", 1, 1, 8.0, 8.0),
        ("2025-02-01", 1, "2025-03-01", 1, 1, 10.0, 10.0),
        ("2025-02-01", 2, "2025-04-01", 1, 0, 10.0, 10.0),
    ]


def test_weekly_cohorts_by_hand():
    table = cohort_ltv_from_purchases(PURCHASES, AS_OF_DAY)
    week = table[table["granularity"] == "week"]
    cohorts = week.groupby(week["cohort_start"].dt.date.astype(str))
    # Every cohort runs from period 0 to the week of Monday 2025-04-28.
    assert cohorts["period"].max().to_dict() == {"2024-12-30": 17, "2025-01-13": 15, "2025-01-27": 13, "2025-02-24": 9}
    assert cohorts.size().to_dict() == {"2024-12-30": 18, "2025-01-13": 16, "2025-01-27": 14, "2025-02-24": 10}
    assert (cohorts["period_start"].max() == pd.Timestamp("2025-04-28")).all()
    rows = {(c, p): (n, a, cum) for c, p, _, n, a, cum, _ in _rows(table, "week")}
    assert rows[("2025-01-27", 0)] == (1, 1, 24.0), "bob's Jan 31 and Feb 1 purchases share a week"
    assert rows[("2025-01-27", 1)] == (1, 0, 24.0)
    assert rows[("2025-02-24", 0)] == (1, 1, 10.0), "carol's Feb 28 and Mar 2 purchases share a week"
    assert rows[("2025-01-13", 7)] == (1, 0, 10.0) and rows[("2025-01-13", 8)] == (1, 1, 15.0), "Mar 10 is 8 weeks on"
    assert rows[("2025-01-13", 15)] == (1, 0, 15.0)
    assert rows[("2024-12-30", 17)] == (1, 0, 3.0)


def test_periods_and_starts():
    stamps = pd.Series(pd.to_datetime(["2025-03-02 09:00", "2025-03-03 00:00", "2024-12-31 23:59"]))
    assert list(period_start(stamps, "week").dt.date.astype(str)) == ["2025-02-24", "2025-03-03", "2024-12-30"]
    assert list(period_start(stamps, "month").dt.date.astype(str)) == ["2025-03-01", "2025-03-01", "2024-12-01"]
    # Zoned timestamps count in UTC: 23:30 at UTC−1 on Feb 28 is March 1st.
    zoned = pd.Series(pd.to_datetime(["2025-02-28T23:30:00-01:00"]))
    assert str(period_start(zoned, "month").iloc[0].date()) == "2025-03-01"
    starts = pd.Series(pd.to_datetime(["2024-11-01", "2024-12-30"]))
    assert list(period_index(starts, pd.Series(pd.to_datetime(["2025-02-01", "2025-03-10"])), "month")) == [3, 3]
    assert list(period_index(pd.Series(pd.to_datetime(["2024-12-30"])), pd.Series(pd.to_datetime(["2025-03-10"])), "week")) == [10]


def test_activity_is_aggregated_per_cohort_and_period():
    rows = pd.DataFrame({"customer_id": ["a", "a", "b", "b", "c"],
                         "period_start": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-01-01", "2025-02-01", "2025-02-01"]),
                         "revenue": [1.0, 2.0, 4.0, 8.0, 16.0]})
    activity = cohort_activity(rows)
    assert [(str(r.cohort_start.date()), str(r.period_start.date()), r.active_customers, r.revenue) for r in activity.itertuples()] == [
        ("2025-01-01", "2025-01-01", 2, 7.0), ("2025-01-01", "2025-02-01", 1, 8.0), ("2025-02-01", "2025-02-01", 1, 16.0)]


def test_no_purchases_no_rows():
    empty = pd.DataFrame({"customer_id": pd.Series(dtype=str), "event_timestamp": pd.Series(dtype="datetime64[ns]"),
                          "revenue": pd.Series(dtype=float)})
    table = cohort_ltv_from_purchases(empty, AS_OF_DAY)
    assert table.empty and "cumulative_revenue" in table.columns
    assert cumulative_revenue_never_falls(table)


def test_inconsistent_activity_is_refused():
    activity = pd.DataFrame({"cohort_start": pd.to_datetime(["2025-01-01"]), "period_start": pd.to_datetime(["2025-02-01"]),
                             "active_customers": [1], "revenue": [1.0]})
    with pytest.raises(ValueError, match="period-0"):
        cohort_table(activity, "month", AS_OF_DAY)
    after = pd.DataFrame({"cohort_start": pd.to_datetime(["2025-05-01"]), "period_start": pd.to_datetime(["2025-05-01"]),
                          "active_customers": [1], "revenue": [1.0]})
    with pytest.raises(ValueError, match="after the as-of date"):
        cohort_table(after, "month", AS_OF_DAY)


def test_the_check_sees_a_fall():
    table = cohort_ltv_from_purchases(PURCHASES, AS_OF_DAY)
    assert cumulative_revenue_never_falls(table)
    broken = table.copy()
    broken.loc[(broken["granularity"] == "month") & (broken["period"] == 3), "cumulative_revenue"] = 41.0
    assert not cumulative_revenue_never_falls(broken)


BASE = date(2024, 12, 20)


@settings(max_examples=60, deadline=None)
@given(
    purchases=st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 200), st.integers(0, 86_399),
                                 st.integers(0, 100_000).map(lambda cents: cents / 100)), max_size=40),
    extra_days=st.integers(0, 60),
)
def test_cohort_invariants(purchases, extra_days):
    frame = pd.DataFrame({
        "customer_id": [p[0] for p in purchases],
        "event_timestamp": pd.to_datetime([pd.Timestamp(BASE) + timedelta(days=p[1], seconds=p[2]) for p in purchases]),
        "revenue": [p[3] for p in purchases],
    })
    as_of_day = BASE + timedelta(days=max((p[1] for p in purchases), default=0) + extra_days)
    table = cohort_ltv_from_purchases(frame, as_of_day)
    if not purchases:
        assert table.empty
        return
    assert cumulative_revenue_never_falls(table)
    for granularity, part in table.groupby("granularity"):
        last = period_start(pd.Series([pd.Timestamp(as_of_day)]), granularity).iloc[0]
        for _cohort, rows in part.groupby("cohort_start"):
            assert rows["customers"].nunique() == 1
            assert list(rows["period"]) == list(range(len(rows))), "every period from 0, none missing"
            assert rows["period_start"].iloc[-1] == last
            assert (rows["active_customers"] <= rows["customers"]).all()
            assert rows["active_customers"].iloc[0] == rows["customers"].iloc[0]
            assert rows["cumulative_revenue_per_customer"].to_numpy() == pytest.approx(
                (rows["cumulative_revenue"] / rows["customers"]).to_numpy())
        finals = part.groupby("cohort_start")
        assert finals["customers"].first().sum() == frame["customer_id"].nunique()
        assert finals["cumulative_revenue"].last().sum() == pytest.approx(frame["revenue"].sum())


def test_a_period_without_purchases_never_lowers_the_running_sum():
    """pandas' grouped cumsum compensates rounding, so adding 0.0 once moved 107.52000000000001 down an ulp."""
    frame = pd.DataFrame({"customer_id": ["a", "a", "a"],
                          "event_timestamp": pd.to_datetime(["2024-12-20", "2024-12-23", "2024-12-23"]),
                          "revenue": [22.32, 42.6, 42.6]})
    table = cohort_ltv_from_purchases(frame, date(2024, 12, 30))
    week = table[table["granularity"] == "week"]["cumulative_revenue"].tolist()
    assert len(week) == 3 and week[2] == week[1]
    assert cumulative_revenue_never_falls(table)
