"""Cohort lifetime value as of a month: `cohort_ltv` and `ltv_summary` (SQL + publishing, no Dagster).

* `cohort_ltv` groups customers by the month (ISO week) of their first purchase and follows each
  cohort period by period: active customers and cumulative revenue. The warehouse adds up each
  month's kept `cohort_activity` to one row per cohort and activity period (a few hundred rows,
  whatever the number of customers or months), or, while that is not current, aggregates the
  customer-month / customer-week summaries to the same rows; `transforms.cohorts.cohort_table`
  does the period arithmetic.
* `ltv_summary` is the average revenue of a customer's first 30 and 90 days. The window ends at
  an exact instant (first purchase + N × 24 hours); the summaries step keeps each customer's
  window revenue in `customer_history` (from the purchase events themselves), so this is one
  aggregate over the month's history.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd
from sqlalchemy import select

from customer_analytics.asof import AsOf, stamp_as_of
from customer_analytics.config import add_months
from customer_analytics.resources.tables import (
    cohort_activity,
    cohort_activity_builds,
    cohort_ltv,
    ltv_summary,
)
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.summaries import (
    build_cohort_activity,
    cohort_activity_params,
    history_builds,
    month_start,
    plus_days,
)
from customer_analytics.transforms.cohorts import GRANULARITIES, cohort_table

# The kept activity of every month up to this one (see `summaries.build_cohort_activity`): a few
# hundred rows per month, whatever the number of customers.
KEPT_ACTIVITY_SQL = """
SELECT cohort_start, period_start, SUM(active_customers) AS active_customers, SUM(revenue) AS revenue
FROM {activity}
WHERE granularity = :granularity AND summary_month <= :month
GROUP BY cohort_start, period_start
ORDER BY cohort_start, period_start
"""

# The same from the summaries themselves, when the kept activity cannot be trusted: one row per
# cohort and month with purchases (the month summary holds one row per customer and month, and the
# month's customer_history names each customer's cohort, first_month).
MONTH_ACTIVITY_SQL = """
SELECT h.first_month AS cohort_start, s.summary_month AS period_start, COUNT(*) AS active_customers,
       SUM(s.revenue) AS revenue
FROM {month_summary} s
JOIN {history} h ON h.as_of_month = :month AND h.customer_id = s.customer_id
WHERE s.summary_month <= :month
GROUP BY h.first_month, s.summary_month
ORDER BY h.first_month, s.summary_month
"""

# A week spanning two months has a row in each month's partition: sum them per customer and week first.
# The weekly cohort is the week of the first purchase date.
WEEK_ACTIVITY_SQL = """
WITH weeks AS (
    SELECT customer_id, week_start, SUM(revenue) AS revenue
    FROM {week_summary}
    WHERE summary_month <= :month
    GROUP BY customer_id, week_start
), firsts AS (
    SELECT customer_id, {first_week} AS cohort_start FROM {history} WHERE as_of_month = :month
)
SELECT f.cohort_start, w.week_start AS period_start, COUNT(*) AS active_customers, SUM(w.revenue) AS revenue
FROM weeks w JOIN firsts f ON f.customer_id = w.customer_id
GROUP BY f.cohort_start, w.week_start
ORDER BY f.cohort_start, w.week_start
"""

# The history row of each customer carries the revenue of their first 30 / 90 days so far; a
# customer counts once the window has closed by as_of.
LTV_SUMMARY_SQL = """
SELECT SUM(CASE WHEN {end_30} <= :as_of THEN 1 ELSE 0 END) AS customers_30d,
       AVG(CASE WHEN {end_30} <= :as_of THEN revenue_30d END) AS average_ltv_30d,
       SUM(CASE WHEN {end_90} <= :as_of THEN 1 ELSE 0 END) AS customers_90d,
       AVG(CASE WHEN {end_90} <= :as_of THEN revenue_90d END) AS average_ltv_90d
FROM {history}
WHERE as_of_month = :month
"""


def kept_activity_is_current(warehouse: Warehouse, month: date) -> bool:
    """Whether every month's kept cohort_activity up to `month` agrees with `month`'s customer_history.

    Each month's activity is built with its history, in one transaction. It stays right as long as
    no month up to it has been rebuilt since (a late purchase can move a customer to an earlier
    cohort) and every earlier month was built as of its end, not while in progress. So a month's
    activity must be no older than the latest build of any month up to it: as the nightly runs
    leave them (builds in month order), or as `refresh_cohort_activity` rewrites them.
    """
    history = history_builds(warehouse, month)
    if history.empty or history["as_of_month"].iloc[-1] != month:
        return False
    return _built_as_of_their_ends(history) and not _stale_months(history, _kept_at(warehouse, month))


def _kept_at(warehouse: Warehouse, month: date) -> dict[date, pd.Timestamp]:
    kept = warehouse.read_frame(
        select(cohort_activity_builds.c.summary_month, cohort_activity_builds.c.built_at)
        .where(cohort_activity_builds.c.summary_month <= month))
    return dict(zip(pd.to_datetime(kept["summary_month"]).dt.date, pd.to_datetime(kept["built_at"], utc=True, format="ISO8601")))


def _stale_months(history: pd.DataFrame, kept_at: dict[date, pd.Timestamp]) -> list[date]:
    """The months (of `history_builds`) whose kept activity is missing or older than the latest build of any
    month up to them."""
    stale, latest = [], None
    for row in history.itertuples(index=False):
        latest = row.built_at if latest is None else max(latest, row.built_at)
        if kept_at.get(row.as_of_month) is None or kept_at[row.as_of_month] < latest:
            stale.append(row.as_of_month)
    return stale


def _built_as_of_their_ends(history: pd.DataFrame) -> bool:
    """Whether every month of `history_builds` but the last was built as of its end, not while in progress."""
    ends = history["as_of_month"].map(lambda m: pd.Timestamp(month_start(add_months(m, 1))))
    return bool((history["as_of"].iloc[:-1] == ends.iloc[:-1]).all())


def refresh_cohort_activity(warehouse: Warehouse, month: date) -> list[date]:
    """Rebuild the kept cohort_activity of the months up to `month` whose activity a later rebuild of an
    earlier month made stale, from `month`'s history (when that is the latest build of them all and every
    earlier month was built as of its end); returns the months rebuilt, oldest first.

    Each is rebuilt in a transaction of its own under the history builds' lock, as a build keeps it: a
    crash leaves some months rebuilt and the others stale, which the next call picks up.
    """
    history = history_builds(warehouse, month)
    if history.empty or history["as_of_month"].iloc[-1] != month or history["built_at"].iloc[-1] != history["built_at"].max():
        return []  # `month`'s history does not hold the latest of every earlier month's purchases
    if not _built_as_of_their_ends(history):
        return []  # a month built while in progress: its summaries are partial, its rebuild will come
    stale = _stale_months(history, _kept_at(warehouse, month))
    built_at = history["built_at"].iloc[-1]
    history_rows = (f"(SELECT customer_id, first_month, first_purchase_date FROM {warehouse.qualified('customer_history')} "
                    "WHERE as_of_month = :history_month)")
    done = []
    for summary_month in stale:
        with warehouse.replace(lock_name="customer_history") as replacement:
            if history_builds(warehouse, month)["built_at"].max() != built_at:
                break  # a month was built meanwhile: what is left stays stale, for the next call
            now = datetime.now(timezone.utc)
            build_cohort_activity(
                warehouse, replacement, summary_month, {**cohort_activity_params(summary_month, now), "history_month": month},
                warehouse.partition_of("customer_week_summary", summary_month), None, built_at=now, history=history_rows,
                month_summary=(f"(SELECT * FROM {warehouse.qualified('customer_month_summary')} "
                               "WHERE summary_month = :month)"))
        done.append(summary_month)
    return done


def cohort_activity_rows(warehouse: Warehouse, as_of: AsOf, granularity: str, *, kept: bool | None = None) -> pd.DataFrame:
    """One row per cohort and period with purchases (cohort_start, period_start, active_customers, revenue)
    up to `as_of.month`: from the kept cohort_activity when it is current (`kept`, checked when None),
    else aggregated in SQL from the month (week) summaries."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    if kept is None:
        kept = kept_activity_is_current(warehouse, as_of.month)
    if kept:
        sql = KEPT_ACTIVITY_SQL.format(activity=warehouse.qualified(cohort_activity.name))
    elif granularity == "month":
        sql = MONTH_ACTIVITY_SQL.format(month_summary=warehouse.qualified("customer_month_summary"),
                                        history=warehouse.partition_of("customer_history", as_of.month))
    elif granularity == "week":
        sql = WEEK_ACTIVITY_SQL.format(week_summary=warehouse.qualified("customer_week_summary"),
                                       history=warehouse.partition_of("customer_history", as_of.month),
                                       first_week=warehouse.week_start("first_purchase_date"))
    frame = warehouse.read_frame(sql, warehouse.sql_params({"month": as_of.month, "granularity": granularity}))
    for column in ("cohort_start", "period_start"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    frame["active_customers"] = frame["active_customers"].astype("int64")
    frame["revenue"] = frame["revenue"].astype("float64")
    return frame


def cohort_ltv_rows(warehouse: Warehouse, as_of: AsOf, *, refresh: bool = False) -> pd.DataFrame:
    """The month's `cohort_ltv` rows (both granularities), without the stamps. With `refresh`, stale kept
    activity is rebuilt first where it can be (`refresh_cohort_activity`); otherwise nothing is written."""
    warehouse.ensure_tables()
    kept = kept_activity_is_current(warehouse, as_of.month)
    if not kept and refresh and refresh_cohort_activity(warehouse, as_of.month):
        kept = kept_activity_is_current(warehouse, as_of.month)
    tables = [cohort_table(cohort_activity_rows(warehouse, as_of, g, kept=kept), g, as_of.day) for g in GRANULARITIES]
    return pd.concat(tables, ignore_index=True)


def ltv_summary_row(warehouse: Warehouse, as_of: AsOf) -> dict:
    """average_ltv_30d/90d and customers_30d/90d as of `as_of` (one SQL query)."""
    warehouse.ensure_tables()
    sql = LTV_SUMMARY_SQL.format(history=warehouse.qualified("customer_history"),
                                 end_30=plus_days(warehouse, "first_purchase_at", 30),
                                 end_90=plus_days(warehouse, "first_purchase_at", 90))
    row = warehouse.read_frame(sql, warehouse.sql_params({"month": as_of.month, "as_of": as_of.instant})).iloc[0]

    def number(value):
        return None if value is None or pd.isna(value) else float(value)

    return {
        "average_ltv_30d": number(row["average_ltv_30d"]),
        "average_ltv_90d": number(row["average_ltv_90d"]),
        "customers_30d": int(row["customers_30d"] or 0),
        "customers_90d": int(row["customers_90d"] or 0),
    }


def compute_cohort_ltv(warehouse: Warehouse, as_of: AsOf, *, run_id: str = "",
                       computed_at: datetime | None = None) -> pd.DataFrame:
    """Replace `cohort_ltv` for the month; returns the rows written (none when nobody has purchased yet).

    Kept cohort activity made stale by a rebuilt earlier month is rebuilt first (`refresh_cohort_activity`):
    otherwise every later month's cohort_ltv would aggregate every summary until the months in between
    are rebuilt (at 10,000,000 events and a million customers, 22-24 s against 0.1 s).
    """
    computed_at = computed_at or datetime.now(timezone.utc)
    rows = stamp_as_of(cohort_ltv_rows(warehouse, as_of, refresh=True), as_of, computed_at, run_id)
    warehouse.replace_month(cohort_ltv, as_of.month, rows)
    return rows


def compute_ltv_summary(warehouse: Warehouse, as_of: AsOf, *, run_id: str = "",
                        computed_at: datetime | None = None) -> pd.DataFrame:
    """Replace `ltv_summary` for the month (always one row); returns it."""
    computed_at = computed_at or datetime.now(timezone.utc)
    figures = ltv_summary_row(warehouse, as_of)
    row = pd.DataFrame([{**figures, "as_of": pd.Timestamp(as_of.instant)}])
    row = row.astype({"average_ltv_30d": "float64", "average_ltv_90d": "float64",
                      "customers_30d": "int64", "customers_90d": "int64"})
    row = stamp_as_of(row, as_of, computed_at, run_id)
    warehouse.replace_month(ltv_summary, as_of.month, row)
    return row
