"""Per-customer-month summaries and the as-of customer history, computed in SQL where the events live.

Every as-of table is derived from these instead of from raw history, so the cost of a month
stays flat as years of events pile up:

* `customer_month_summary`: a row per purchasing customer and month with what RFM, BG/NBD,
  Gamma-Gamma and cohorts need (purchases, revenue, distinct purchase dates and their revenue,
  first/last purchase);
* `customer_history`: a row per customer as of the end of the month, the running total of those
  summaries plus the revenue of each customer's first 30 and 90 days. It is built as the
  previous month's history plus this month's summaries, so its cost does not grow with the
  months behind it; it is rebuilt in full from every summary when the previous month's history
  is missing or stale.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd

from sqlalchemy import select

from customer_analytics.config import add_months
from customer_analytics.resources.tables import (
    cohort_activity,
    cohort_activity_builds,
    customer_history,
    customer_history_builds,
    customer_month_summary,
    customer_week_summary,
)
from customer_analytics.resources.warehouse import GIVE_WAY, Replacement, Warehouse

# The month's purchases, read where each query needs them: on PostgreSQL from the covering index
# of purchases (`raw_events_purchases_idx`), in customer order, so the month summary groups them by
# customer and date without hashing or sorting a million rows (an incremental sort orders each
# customer's few purchases by date). Copying them into a temporary table first and grouping that
# by customer and date, then sorting the groups by customer, took 1.8-1.9 s more a month at 10M
# events (0.46 s for the copy, 1.25 s for the grouping, then a sort where the index gives the order).
PURCHASES_SQL = """
SELECT customer_id, event_date, event_timestamp, revenue
FROM {raw_events}
WHERE event_month = :month AND event_type = 'purchase' AND event_timestamp < :as_of
"""

# A customer's first date comes from a window over their dates: one order by customer feeds both the
# window and the grouping. Grouping the firsts apart and joining them back hashed every row twice
# more (10M events: 2.8 s against 1.3 s).
MONTH_SUMMARY_SQL = """
SELECT :month, customer_id, SUM(purchases), SUM(revenue), COUNT(*),
       SUM(CASE WHEN revenue > 0 THEN 1 ELSE 0 END),
       SUM(CASE WHEN revenue > 0 THEN revenue ELSE 0 END),
       MIN(first_at), MAX(last_at), MIN(event_date), MAX(event_date),
       SUM(CASE WHEN event_date = first_date THEN revenue ELSE 0 END),
       :as_of, :computed_at
FROM (
    SELECT d.*, MIN(d.event_date) OVER (PARTITION BY d.customer_id) AS first_date
    FROM (
        SELECT customer_id, event_date, COUNT(*) AS purchases, SUM(revenue) AS revenue,
               MIN(event_timestamp) AS first_at, MAX(event_timestamp) AS last_at
        FROM ({purchases}) r
        GROUP BY customer_id, event_date
    ) d
) d
GROUP BY customer_id
"""

# Ordered as the purchases arrive from the index, so PostgreSQL groups them as they stream instead of
# hashing 900k customer-weeks (10M events: 1.2-1.4 s against 1.6-1.7 s).
WEEK_SUMMARY_SQL = """
SELECT :month, customer_id, {week} AS week_start, COUNT(*), SUM(revenue)
FROM ({purchases}) r
GROUP BY customer_id, {week}
ORDER BY customer_id, week_start
"""

SUMMARY_COLUMNS = ("customer_id, summary_month, purchases, revenue, purchase_days, positive_days, positive_day_revenue, "
                   "first_purchase_at, last_purchase_at, first_purchase_date, last_purchase_date, first_day_revenue")

# The previous month's history plus this month's (staged) summaries, a customer's row from either or
# both, plus what the month's purchases add to the customer's first 30 / 90 days (`WINDOW_ADDS`).
# Every purchase in the history is before the month's, so the firsts (first purchase, cohort,
# first-day revenue) come from the history when it has the customer and the lasts from the month.
# PostgreSQL joins the two (a hash full join of 1M + 1M customers: 1.8 s, against 4.4 s for the
# union and GROUP BY below); SQLite before 3.39 has no FULL JOIN, so there the union is aggregated.
HISTORY_INCREMENT_SQL = """
SELECT :month, COALESCE(p.customer_id, m.customer_id),
       COALESCE(p.purchases, 0) + COALESCE(m.purchases, 0), COALESCE(p.revenue, 0) + COALESCE(m.revenue, 0),
       COALESCE(p.purchase_days, 0) + COALESCE(m.purchase_days, 0),
       COALESCE(p.positive_days, 0) + COALESCE(m.positive_days, 0),
       COALESCE(p.positive_day_revenue, 0) + COALESCE(m.positive_day_revenue, 0),
       COALESCE(p.first_purchase_at, m.first_purchase_at), COALESCE(m.last_purchase_at, p.last_purchase_at),
       COALESCE(p.first_purchase_date, m.first_purchase_date), COALESCE(m.last_purchase_date, p.last_purchase_date),
       COALESCE(p.first_month, m.summary_month), COALESCE(p.first_day_revenue, m.first_day_revenue),
       COALESCE(p.revenue_30d, 0) + {add_30}, COALESCE(p.revenue_90d, 0) + {add_90},
       :as_of, :computed_at
FROM (SELECT * FROM {history} WHERE as_of_month = :previous) p
FULL JOIN {month_summary} m ON m.customer_id = p.customer_id
LEFT JOIN {window} w ON w.customer_id = m.customer_id
"""
HISTORY_INCREMENT_SQLITE_SQL = """
WITH parts AS (
    SELECT customer_id, 1 AS carried, purchases, revenue, purchase_days, positive_days, positive_day_revenue,
           first_purchase_at, last_purchase_at, first_purchase_date, last_purchase_date, first_month,
           first_day_revenue, revenue_30d, revenue_90d
    FROM {history} WHERE as_of_month = :previous
    UNION ALL
    SELECT m.customer_id, 0, m.purchases, m.revenue, m.purchase_days, m.positive_days, m.positive_day_revenue,
           m.first_purchase_at, m.last_purchase_at, m.first_purchase_date, m.last_purchase_date, m.summary_month,
           m.first_day_revenue, {add_30}, {add_90}
    FROM {month_summary} m
    LEFT JOIN (SELECT customer_id, first_purchase_at FROM {history} WHERE as_of_month = :previous) p
      ON p.customer_id = m.customer_id
    LEFT JOIN {window} w ON w.customer_id = m.customer_id
)
SELECT :month, customer_id, SUM(purchases), SUM(revenue), SUM(purchase_days), SUM(positive_days),
       SUM(positive_day_revenue), MIN(first_purchase_at), MAX(last_purchase_at), MIN(first_purchase_date),
       MAX(last_purchase_date), MIN(first_month),
       COALESCE(MAX(CASE WHEN carried = 1 THEN first_day_revenue END), MAX(first_day_revenue)),
       SUM(revenue_30d), SUM(revenue_90d), :as_of, :computed_at
FROM parts
GROUP BY customer_id
"""

# Every summary up to the month: the earlier months' published rows and this month's staged ones.
HISTORY_FULL_SQL = """
WITH summaries AS (
    SELECT {columns} FROM {published} WHERE summary_month < :month
    UNION ALL
    SELECT {columns} FROM {month_summary}
), totals AS (
    SELECT customer_id, SUM(purchases) AS purchases, SUM(revenue) AS revenue, SUM(purchase_days) AS purchase_days,
           SUM(positive_days) AS positive_days, SUM(positive_day_revenue) AS positive_day_revenue,
           MIN(first_purchase_at) AS first_purchase_at, MAX(last_purchase_at) AS last_purchase_at,
           MIN(first_purchase_date) AS first_purchase_date, MAX(last_purchase_date) AS last_purchase_date,
           MIN(summary_month) AS first_month
    FROM summaries
    GROUP BY customer_id
)
SELECT :month, t.customer_id, t.purchases, t.revenue, t.purchase_days, t.positive_days, t.positive_day_revenue,
       t.first_purchase_at, t.last_purchase_at, t.first_purchase_date, t.last_purchase_date, t.first_month,
       s.first_day_revenue, 0, 0, :as_of, :computed_at
FROM totals t JOIN summaries s ON s.customer_id = t.customer_id AND s.summary_month = t.first_month
"""

# What this month's purchases add to the revenue of each customer's first 30 / 90 days, computed
# before the history's rows are written instead of updating them afterwards (at 2M events that
# UPDATE rewrote 85k of 196k fresh rows: 0.99 s, then statistics gathered again).
# A window runs from the customer's first purchase ever (`first`: the previous history's, else
# the month's) for 30 / 90 days, to an exact instant. Every purchase of the month lies between the
# customer's first and last purchase of the month (its summary), so a window that ends at or before
# the first adds nothing and one that ends after the last adds the month's revenue: `WINDOW_ADDS`,
# written into the history's query, with no lookup. Only a customer whose window ends among their
# purchases of the month needs those purchases (`WINDOW_INSIDE_SQL`: at 10M events, month 2,
# 59,873 of 632,844 customers); it has a window that was still open at the month's start, so a first
# purchase no more than 90 days before. Keeping the others out of that table (they were written
# there with their adds) made that table 1.3-1.4 s → 0.54-0.60 s, and the join of it cheaper.
WINDOW_INSIDE_SQL = """
WITH windows AS (
    SELECT m.customer_id, m.first_purchase_at AS month_first, m.last_purchase_at AS month_last,
           {end_30} AS end_30, {end_90} AS end_90
    FROM {month_summary} m
    LEFT JOIN (SELECT customer_id, first_purchase_at FROM {history} WHERE as_of_month = :previous) p
      ON p.customer_id = m.customer_id
    WHERE {first} >= :window_floor
)
SELECT w.customer_id, SUM(CASE WHEN r.event_timestamp < w.end_30 THEN r.revenue ELSE 0 END) AS add_30,
       SUM(CASE WHEN r.event_timestamp < w.end_90 THEN r.revenue ELSE 0 END) AS add_90
FROM windows w JOIN ({purchases}) r ON r.customer_id = w.customer_id
WHERE (w.end_30 > w.month_first AND w.end_30 <= w.month_last) OR (w.end_90 > w.month_first AND w.end_90 <= w.month_last)
GROUP BY w.customer_id
"""
# The add of one window in the history's query (`m` the month's summary, `w` WINDOW_INSIDE_SQL's
# table): the exact sum for a window that ends among the month's purchases, else all or nothing. A
# customer without purchases this month (no `m`) adds nothing.
WINDOW_ADDS = "COALESCE(w.add_{days}, CASE WHEN {end} > m.last_purchase_at THEN m.revenue ELSE 0 END)"

# A history rebuilt in full: the revenue of each customer's first 30 / 90 days, from the events of
# every month a window spans, added to the freshly staged rows.
WINDOW_REVENUE_SQL = """
UPDATE {history} AS h
SET revenue_30d = h.revenue_30d + w.add_30, revenue_90d = h.revenue_90d + w.add_90
FROM (
    SELECT c.customer_id,
           SUM(CASE WHEN r.event_timestamp < {end_30} THEN r.revenue ELSE 0 END) AS add_30,
           SUM(r.revenue) AS add_90
    FROM {history} c
    JOIN {raw_events} r
      ON r.customer_id = c.customer_id
     AND r.event_type = 'purchase' AND r.event_month <= :month
     AND r.event_month >= c.first_month AND r.event_month <= {end_90_month}
     AND r.event_timestamp >= c.first_purchase_at AND r.event_timestamp < {end_90} AND r.event_timestamp < :as_of
    GROUP BY c.customer_id
) w
WHERE h.customer_id = w.customer_id
"""


# Cohort activity of the month, kept so that cohort_ltv adds up a few hundred rows per month instead of
# joining every summary with the history. A customer active in a month has had their first purchase by
# then, so their cohort never changes later (unless an earlier month is rebuilt: see
# `cohorts.kept_activity_is_current`).
MONTH_ACTIVITY_SQL = """
SELECT :month, 'month', h.first_month, :month, COUNT(*), SUM(s.revenue), :computed_at
FROM {month_summary} s JOIN {history} h ON h.customer_id = s.customer_id
GROUP BY h.first_month
"""

# A week that began in the previous month: its customers active there too were counted in that
# month's row, so they are not counted again (the revenue of each part is its own). Only the
# previous month's last week can be such a week (`:week_floor` is 7 days before the month), so
# only its rows are looked up, not the whole month's. `{customers}` holds each customer's
# first_purchase_date and `{first_week}` makes it a cohort week (see `week_activity_sql`).
# `week_summary` may be a whole table (a partition not found), hence the filter.
WEEK_ACTIVITY_SQL = """
SELECT :month, 'week', first_week, week_start, SUM(CASE WHEN seen IS NULL THEN 1 ELSE 0 END), SUM(revenue),
       :computed_at
FROM (
    SELECT w.week_start, w.revenue, e.customer_id AS seen, {first_week} AS first_week
    FROM {week_summary} w
    LEFT JOIN {customers} c ON c.customer_id = w.customer_id
    LEFT JOIN (
        SELECT customer_id, week_start FROM {published_weeks}
        WHERE summary_month = :previous AND week_start > :week_floor AND week_start < :month
    ) e ON e.customer_id = w.customer_id AND e.week_start = w.week_start
    WHERE w.summary_month = :month
) w
GROUP BY first_week, week_start
"""


def plus_days(warehouse: Warehouse, column: str, days: int) -> str:
    """SQL for `column` (a UTC timestamp) + `days` × 24 hours, to the microsecond.

    SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' and its date functions round to milliseconds (and
    `datetime()` drops the fraction), so the whole seconds are shifted and the stored fraction is
    put back. PostgreSQL adds hours, not days: a day interval follows the session's time zone
    across daylight-saving changes.
    """
    if warehouse.dialect == "postgresql":
        return f"({column} + interval '{days * 24} hours')"
    return f"(datetime(substr({column}, 1, 19), '+{days} days') || substr({column}, 20))"


def month_of_plus_days(warehouse: Warehouse, column: str, days: int) -> str:
    """SQL for the first day of the UTC month of `column` + `days` days (a DATE; text on SQLite)."""
    if warehouse.dialect == "postgresql":
        return f"CAST(date_trunc('month', ({column} + interval '{days * 24} hours') AT TIME ZONE 'UTC') AS DATE)"
    return f"date(substr({column}, 1, 19), '+{days} days', 'start of month')"


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=timezone.utc)


def month_as_of(month: date, now: datetime | None = None) -> datetime:
    """The instant a month's figures are as of: the next month's start, or now for the month in progress."""
    now = now or datetime.now(timezone.utc)
    end = datetime(*add_months(month, 1).timetuple()[:3], tzinfo=timezone.utc)
    return min(end, now)


def summarize_month(warehouse: Warehouse, month: date, *, as_of: datetime, computed_at: datetime | None = None) -> dict:
    """Replace `month`'s customer-month and customer-week summaries, customer history and cohort activity;
    returns row counts.

    The week summary reads only the month's purchases, so on PostgreSQL it is built and published
    on another connection while the month summary and the history are built (`Replacement.beside`),
    with the month's week cohort activity when the history is extended (the customers' first
    purchases are then the previous history's, else the month's). At 10M events (month 2, six
    rounds taking turns) the step took a median 14.5 s with the week summary on its path, 11.0 s
    with it beside; at month 12 (three rounds each) 6.72 s with the week cohort activity on the
    path, 6.37 s with it beside too.
    """
    computed_at = computed_at or datetime.now(timezone.utc)
    warehouse.ensure_tables()
    previous = add_months(month, -1)
    params = {"month": month, "as_of": as_of, "computed_at": computed_at}
    activity_params = cohort_activity_params(month, computed_at)
    purchases = PURCHASES_SQL.format(raw_events=warehouse.qualified("raw_events"))
    # Every month's summaries and history are built one at a time (one lock for all months), so a
    # build sees every earlier month's history as it is and `built_at` orders the builds. So the
    # previous month's history and week summary, which the work beside reads too, stay put.
    with warehouse.replace(lock_name="customer_history") as replacement:
        incremental = extendable_history(warehouse, month)
        previous_history = warehouse.partition_of(customer_history.name, previous) if incremental else None
        replacement.replace_partition(customer_month_summary, month)
        with replacement.beside(summarize_weeks, warehouse, month, purchases, params, previous_history, activity_params,
                                reads=[warehouse.partition_of("raw_events", month)]) as beside:
            customers = replacement.append_select(
                customer_month_summary, [c.name for c in customer_month_summary.columns],
                MONTH_SUMMARY_SQL.format(purchases=purchases), params,
            )
            built_at = datetime.now(timezone.utc)
            history = build_history(warehouse, replacement, month, purchases, incremental=incremental, as_of=as_of,
                                    computed_at=computed_at, built_at=built_at)
        weeks, week_activity = beside.result() or (None, None)
        if weeks is None:  # SQLite, or the other connection gave way: staged here
            weeks = stage_weeks(warehouse, replacement, month, purchases, params)
            week_summary = replacement.staged(customer_week_summary)
        else:
            week_summary = warehouse.partition_of(customer_week_summary.name, month)
        activity = build_cohort_activity(warehouse, replacement, month, activity_params, week_summary, week_activity,
                                         built_at=built_at)
    return {"customers": customers, "customer_weeks": weeks, **history, "cohort_activity_rows": activity}


def stage_weeks(warehouse: Warehouse, replacement: Replacement, month: date, purchases: str, params: dict) -> int:
    """Stage `month`'s customer_week_summary from its purchases (`PURCHASES_SQL`); returns its rows."""
    replacement.replace_partition(customer_week_summary, month)
    return replacement.append_select(customer_week_summary, [c.name for c in customer_week_summary.columns],
                                     WEEK_SUMMARY_SQL.format(purchases=purchases, week=warehouse.week_start("event_date")),
                                     params)


def week_activity_sql(warehouse: Warehouse, month: date, week_summary: str, *, history: str | None = None,
                      previous_history: str | None = None) -> str:
    """`WEEK_ACTIVITY_SQL` over `week_summary` with the customers' first purchases from the month's
    `history`, or else from the `previous_history` it extends: a customer absent there made their
    first purchase in their first week of this month."""
    published_weeks = warehouse.partition_of(customer_week_summary.name, add_months(month, -1))
    if history is not None:
        return WEEK_ACTIVITY_SQL.format(week_summary=week_summary, customers=history, published_weeks=published_weeks,
                                        first_week=warehouse.week_start("c.first_purchase_date"))
    customers = f"(SELECT customer_id, first_purchase_date FROM {previous_history} WHERE as_of_month = :previous)"
    first_week = f"COALESCE({warehouse.week_start('c.first_purchase_date')}, MIN(w.week_start) OVER (PARTITION BY w.customer_id))"
    return WEEK_ACTIVITY_SQL.format(week_summary=week_summary, customers=customers, published_weeks=published_weeks,
                                    first_week=first_week)


def summarize_weeks(warehouse: Warehouse, month: date, purchases: str, params: dict, previous_history: str | None,
                    activity_params: dict) -> tuple[int, pd.DataFrame | None]:
    """Replace and publish `month`'s customer_week_summary from its purchases (`PURCHASES_SQL`), giving way
    rather than waiting for a lock (see `Replacement.beside`). Returns its rows and, when the month's
    history extends `previous_history`, the month's week rows of cohort_activity."""
    # On one backend: parallel workers would take the cores the month summary and history run on.
    with warehouse.replace(lock_name=f"{customer_week_summary.name}/{month:%Y-%m}", lock_timeout=GIVE_WAY,
                           parallel_workers=False) as replacement:
        weeks = stage_weeks(warehouse, replacement, month, purchases, params)
        if previous_history is None:
            return weeks, None
        activity = replacement.query(week_activity_sql(warehouse, month, replacement.staged(customer_week_summary),
                                                       previous_history=previous_history), activity_params)
        activity.columns = [c.name for c in cohort_activity.columns]
        return weeks, activity


def cohort_activity_params(month: date, computed_at: datetime) -> dict:
    """The parameters of `month`'s cohort activity queries (`MONTH_ACTIVITY_SQL`, `WEEK_ACTIVITY_SQL`)."""
    return {"month": month, "previous": add_months(month, -1), "week_floor": month - timedelta(days=7),
            "computed_at": computed_at}


def build_cohort_activity(warehouse: Warehouse, replacement: Replacement, month: date, params: dict, week_summary: str,
                          week_activity: pd.DataFrame | None, *, built_at: datetime, history: str | None = None,
                          month_summary: str | None = None) -> int:
    """Stage `month`'s cohort_activity (after `build_history`): its month rows from the staged month summary
    and history, its week rows `week_activity` (from `summarize_weeks`) or else from `week_summary` (the SQL
    name of a table holding the month's week summary); returns its rows. `history` and `month_summary` may
    name other tables holding one month's rows (`cohorts.refresh_cohort_activity`)."""
    history = history or replacement.staged(customer_history)
    columns = [c.name for c in cohort_activity.columns]
    replacement.replace_partition(cohort_activity, month)
    # A few hundred rows from joins of a million: at 10M events the week's took 1.1-1.2 s as an
    # INSERT … SELECT and 0.56 s as a query on parallel workers (`few_rows`).
    rows = replacement.append_select(cohort_activity, columns, MONTH_ACTIVITY_SQL.format(
        month_summary=month_summary or replacement.staged(customer_month_summary), history=history), params, few_rows=True)
    if week_activity is not None:
        replacement.append(cohort_activity, week_activity)
        rows += len(week_activity)
    else:
        rows += replacement.append_select(cohort_activity, columns, week_activity_sql(
            warehouse, month, week_summary, history=history), params, few_rows=True)
    replacement.delete_where(cohort_activity_builds, cohort_activity_builds.c.summary_month == month)
    replacement.append(cohort_activity_builds, pd.DataFrame([{"summary_month": pd.Timestamp(month),
                                                              "built_at": pd.Timestamp(built_at)}]))
    return rows


def history_builds(warehouse: Warehouse, through: date) -> pd.DataFrame:
    """`customer_history_builds` up to `through`, by month: as_of_month (date), built_at and as_of (UTC timestamps)."""
    builds = warehouse.read_frame(
        select(customer_history_builds.c.as_of_month, customer_history_builds.c.built_at, customer_history_builds.c.as_of)
        .where(customer_history_builds.c.as_of_month <= through)
    )
    builds["as_of_month"] = pd.to_datetime(builds["as_of_month"]).dt.date
    for column in ("built_at", "as_of"):
        builds[column] = pd.to_datetime(builds[column], utc=True, format="ISO8601")
    return builds.sort_values("as_of_month", ignore_index=True)


def extendable_history(warehouse: Warehouse, month: date) -> bool:
    """Whether the previous month's customer_history can be extended by `month`'s summaries.

    It must have been built as of the end of its month (not while that month was in progress)
    and after every earlier month's history: a month rebuilt since then changed the totals it
    carries. Call under the `customer_history` lock.
    """
    previous = add_months(month, -1)
    builds = history_builds(warehouse, previous)
    if builds.empty:
        return False
    last = builds[builds["as_of_month"] == previous]
    if last.empty or last["as_of"].iloc[0] != pd.Timestamp(month_start(month)):
        return False
    return bool((builds["built_at"] <= last["built_at"].iloc[0]).all())


def build_history(warehouse: Warehouse, replacement: Replacement, month: date, purchases: str, *, incremental: bool,
                  as_of: datetime, computed_at: datetime, built_at: datetime) -> dict:
    """Stage `month`'s customer_history (after its summaries, in the same replacement): extending the
    previous month's when `incremental` (`extendable_history`), else rebuilt from every summary.

    `purchases` is the month's `PURCHASES_SQL`, which an extended history's windows read.
    """
    staged_summary = replacement.staged(customer_month_summary)
    replacement.analyze(staged_summary)
    replacement.replace_partition(customer_history, month)
    params = {"month": month, "previous": add_months(month, -1), "as_of": as_of, "computed_at": computed_at}
    if incremental:
        previous_history = warehouse.partition_of(customer_history.name, add_months(month, -1))
        first = "COALESCE(p.first_purchase_at, m.first_purchase_at)"
        end_30, end_90 = plus_days(warehouse, first, 30), plus_days(warehouse, first, 90)
        window = replacement.temp_table("window_revenue", WINDOW_INSIDE_SQL.format(
            month_summary=staged_summary, history=previous_history, purchases=purchases, first=first,
            end_30=end_30, end_90=end_90,
        ), {**params, "window_floor": month_start(month) - timedelta(days=90)})
        template = HISTORY_INCREMENT_SQL if warehouse.dialect == "postgresql" else HISTORY_INCREMENT_SQLITE_SQL
        sql = template.format(history=previous_history, month_summary=staged_summary, window=window,
                              add_30=WINDOW_ADDS.format(days=30, end=end_30), add_90=WINDOW_ADDS.format(days=90, end=end_90))
    else:
        sql = HISTORY_FULL_SQL.format(columns=SUMMARY_COLUMNS, published=warehouse.qualified(customer_month_summary.name),
                                      month_summary=staged_summary)
    customers = replacement.append_select(customer_history, [c.name for c in customer_history.columns], sql, params)
    staged = replacement.staged(customer_history)
    replacement.analyze(staged)  # for the joins below and cohort activity's; publishing needs no other unless updated
    if not incremental:
        replacement.execute(WINDOW_REVENUE_SQL.format(
            history=staged, raw_events=warehouse.qualified("raw_events"),
            end_30=plus_days(warehouse, "c.first_purchase_at", 30), end_90=plus_days(warehouse, "c.first_purchase_at", 90),
            end_90_month=month_of_plus_days(warehouse, "c.first_purchase_at", 90),
        ), params, writes=customer_history)
    replacement.delete_where(customer_history_builds, customer_history_builds.c.as_of_month == month)
    replacement.append(customer_history_builds, pd.DataFrame([{
        "as_of_month": pd.Timestamp(month), "method": "incremental" if incremental else "full",
        "built_at": pd.Timestamp(built_at), "as_of": pd.Timestamp(as_of), "customers": customers,
    }]))
    return {"history_customers": customers, "history_method": "incremental" if incremental else "full"}
