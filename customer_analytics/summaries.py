"""Per-customer-month summaries, computed in SQL where the events live.

Every as-of table is derived from these summaries instead of from raw history, so the cost of
a month stays flat as years of events pile up: a summary row per purchasing customer and
month carries what RFM, BG/NBD, Gamma-Gamma and cohorts need (purchases, revenue, distinct
purchase dates and their revenue, first/last purchase).
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from customer_analytics.config import add_months
from customer_analytics.resources.tables import customer_month_summary, customer_week_summary
from customer_analytics.resources.warehouse import Warehouse

MONTH_SUMMARY_SQL = """
WITH days AS (
    SELECT customer_id, event_date, COUNT(*) AS purchases, SUM(revenue) AS revenue,
           MIN(event_timestamp) AS first_at, MAX(event_timestamp) AS last_at
    FROM {raw_events}
    WHERE event_month = :month AND event_type = 'purchase' AND event_timestamp < :as_of
    GROUP BY customer_id, event_date
), firsts AS (
    SELECT customer_id, MIN(event_date) AS first_date FROM days GROUP BY customer_id
)
SELECT :month, d.customer_id, SUM(d.purchases), SUM(d.revenue), COUNT(*),
       SUM(CASE WHEN d.revenue > 0 THEN 1 ELSE 0 END),
       SUM(CASE WHEN d.revenue > 0 THEN d.revenue ELSE 0 END),
       MIN(d.first_at), MAX(d.last_at), MIN(d.event_date), MAX(d.event_date),
       SUM(CASE WHEN d.event_date = f.first_date THEN d.revenue ELSE 0 END),
       :as_of, :computed_at
FROM days d JOIN firsts f ON f.customer_id = d.customer_id
GROUP BY d.customer_id
"""

WEEK_SUMMARY_SQL = """
SELECT :month, customer_id, {week} AS week_start, COUNT(*), SUM(revenue)
FROM {raw_events}
WHERE event_month = :month AND event_type = 'purchase' AND event_timestamp < :as_of
GROUP BY customer_id, {week}
"""


def month_as_of(month: date, now: datetime | None = None) -> datetime:
    """The instant a month's figures are as of: the next month's start, or now for the month in progress."""
    now = now or datetime.now(timezone.utc)
    end = datetime(*add_months(month, 1).timetuple()[:3], tzinfo=timezone.utc)
    return min(end, now)


def summarize_month(warehouse: Warehouse, month: date, *, as_of: datetime, computed_at: datetime | None = None) -> dict:
    """Replace `month`'s customer-month and customer-week summaries; returns row counts."""
    computed_at = computed_at or datetime.now(timezone.utc)
    warehouse.ensure_tables()
    params = {"month": month, "as_of": as_of, "computed_at": computed_at}
    raw = warehouse.qualified("raw_events")
    with warehouse.replace(lock_name=f"customer_month_summary/{month:%Y-%m}") as replacement:
        replacement.replace_partition(customer_month_summary, month)
        replacement.replace_partition(customer_week_summary, month)
        customers = replacement.append_select(
            customer_month_summary, [c.name for c in customer_month_summary.columns],
            MONTH_SUMMARY_SQL.format(raw_events=raw), params,
        )
        weeks = replacement.append_select(
            customer_week_summary, [c.name for c in customer_week_summary.columns],
            WEEK_SUMMARY_SQL.format(raw_events=raw, week=warehouse.week_start("event_date")), params,
        )
    return {"customers": customers, "customer_weeks": weeks}
