"""BI views: named, documented SELECTs over the warehouse tables that dashboards query directly.

Every view is computed when it is read, so it never needs recreating when data arrives; the
"latest month" views find the month themselves (`MAX(as_of_month)` in a subquery). The SQL runs
on SQLite and PostgreSQL; the few differences (date arithmetic) are chosen from the warehouse's
dialect. No view exposes personal data (customer_profiles.email, first_name, last_name).

Money (revenue, prices, CLTV, predicted revenue) is rounded to cents in the views, after any sum
or average, and stays a floating-point column (REAL on SQLite, double precision on PostgreSQL, as
in the tables): BI tools show 375.41, not 375.4065624999982, and can still compute with it. The
tables keep full precision. PostgreSQL has no ROUND(double precision, int), hence the detour
through numeric and back (`_money`).

`create_views` (re)creates them all in one transaction; a view whose base table does not exist
is skipped, with the missing table named. the README, section BI views documents each view for BI users.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import inspect, text

from customer_analytics.resources.warehouse import Warehouse, lock_key
# The suggestions' thresholds: defined once, beside the segments' rules in words (segment_definitions).
from customer_analytics.transforms.segments import (
    ACTIVE_DAYS,
    BROWSING_WINDOW_DAYS,
    FREQUENT_BROWSER_SESSIONS,
    LAPSING_DAYS,
)


def _money(wh: Warehouse, expression: str) -> str:
    """`expression` rounded to cents, still a float column on both dialects."""
    if wh.dialect == "postgresql":
        return f"CAST(ROUND(CAST({expression} AS numeric), 2) AS double precision)"
    return f"ROUND({expression}, 2)"


def _purchases_per_customer(wh: Warehouse) -> str:
    return (
        "SELECT customer_id, SUM(revenue) AS cltv, COUNT(*) AS purchases, "
        "MIN(event_timestamp) AS first_purchase_at, MAX(event_timestamp) AS last_purchase_at "
        f"FROM {wh.qualified('raw_events')} WHERE event_type = 'purchase' GROUP BY customer_id"
    )


def _latest(wh: Warehouse, table: str) -> str:
    return f"(SELECT MAX(as_of_month) FROM {wh.qualified(table)})"


def _cltv_summary(wh: Warehouse) -> str:
    return (
        f"SELECT {_money(wh, 'AVG(c.cltv)')} AS average_cltv, COUNT(*) AS customers, "
        f"{_money(wh, 'COALESCE(SUM(c.cltv), 0)')} AS total_revenue\n"
        f"FROM ({_purchases_per_customer(wh)}) AS c"
    )


def _customer_cltv(wh: Warehouse) -> str:
    return (
        f"SELECT c.customer_id, {_money(wh, 'c.cltv')} AS cltv, c.purchases, c.first_purchase_at, c.last_purchase_at\n"
        f"FROM ({_purchases_per_customer(wh)}) AS c"
    )


def _cltv_by_location(wh: Warehouse) -> str:
    return (
        f"SELECT l.location, COUNT(*) AS customers, {_money(wh, 'AVG(l.cltv)')} AS average_cltv, "
        f"{_money(wh, 'SUM(l.cltv)')} AS total_revenue\n"
        "FROM (\n"
        "  SELECT CASE WHEN TRIM(p.location) <> '' THEN p.location ELSE 'unknown' END AS location, c.cltv\n"
        f"  FROM ({_purchases_per_customer(wh)}) AS c\n"
        f"  LEFT JOIN {wh.qualified('customer_profiles')} AS p ON p.customer_id = c.customer_id\n"
        ") AS l\n"
        "GROUP BY l.location"
    )


def _customer_purchase_history(wh: Warehouse) -> str:
    return (
        "SELECT customer_id, event_id, event_timestamp, event_date, product_id, category_id, "
        f"{_money(wh, 'price')} AS price, quantity, {_money(wh, 'revenue')} AS revenue, country, device_type, event_month\n"
        f"FROM {wh.qualified('raw_events')}\n"
        "WHERE event_type = 'purchase'"
    )


def _customer_activity(wh: Warehouse) -> str:
    return (
        "SELECT customer_id, event_type, event_date, COUNT(*) AS events, COUNT(DISTINCT session_id) AS sessions, "
        f"{_money(wh, 'SUM(revenue)')} AS revenue\n"
        f"FROM {wh.qualified('raw_events')}\n"
        "GROUP BY customer_id, event_type, event_date"
    )


def _customer_behavioral_analysis(wh: Warehouse) -> str:
    # `purchased`: the customer bought on that day with that country and device (window partitions
    # group NULLs together, so no null-safe join is needed).
    return (
        "SELECT e.event_date, e.event_type, e.country, e.device_type, COUNT(*) AS events,\n"
        "  COUNT(DISTINCT e.session_id) AS sessions, COUNT(DISTINCT e.customer_id) AS customers,\n"
        "  COUNT(DISTINCT CASE WHEN e.purchased = 1 THEN e.customer_id END) AS purchasers, "
        f"{_money(wh, 'SUM(e.revenue)')} AS revenue\n"
        "FROM (\n"
        "  SELECT event_date, event_type, country, device_type, session_id, customer_id, revenue,\n"
        "    MAX(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END)\n"
        "      OVER (PARTITION BY event_date, country, device_type, customer_id) AS purchased\n"
        f"  FROM {wh.qualified('raw_events')}\n"
        ") AS e\n"
        "GROUP BY e.event_date, e.event_type, e.country, e.device_type"
    )


def _segment_customers(wh: Warehouse) -> str:
    return (
        "SELECT s.as_of_month, s.customer_id, s.segment, s.rfm_segment, p.country, p.city, p.location, p.age,\n"
        f"  {_money(wh, 'r.monetary')} AS lifetime_value, v.clv_score, "
        f"{_money(wh, 'v.predicted_revenue_24m')} AS predicted_revenue_24m, s.previous_segment, s.segment_changed\n"
        f"FROM {wh.qualified('customer_segments')} AS s\n"
        f"LEFT JOIN {wh.qualified('customer_profiles')} AS p ON p.customer_id = s.customer_id\n"
        f"LEFT JOIN {wh.qualified('customer_rfm')} AS r ON r.as_of_month = s.as_of_month AND r.customer_id = s.customer_id\n"
        f"LEFT JOIN {wh.qualified('customer_clv')} AS v ON v.as_of_month = s.as_of_month AND v.customer_id = s.customer_id\n"
        f"WHERE s.as_of_month = {_latest(wh, 'customer_segments')}"
    )


def _segment_metrics_latest(wh: Warehouse) -> str:
    return (
        "SELECT as_of_month, segment_type, segment, country, customers, share, avg_clv_score,\n"
        f"  {_money(wh, 'avg_predicted_revenue')} AS avg_predicted_revenue, {_money(wh, 'total_revenue')} AS total_revenue,\n"
        "  avg_recency_days, avg_frequency, computed_at\n"
        f"FROM {wh.qualified('segment_metrics')}\n"
        f"WHERE as_of_month = {_latest(wh, 'segment_metrics')}"
    )


def _customer_segmentation_suggestions(wh: Warehouse) -> str:
    if wh.dialect == "postgresql":
        window_start = f"w.as_of_date - {BROWSING_WINDOW_DAYS}"
    else:
        window_start = f"date(w.as_of_date, '-{BROWSING_WINDOW_DAYS} days')"
    rfm = wh.qualified("customer_rfm")
    latest = _latest(wh, "customer_rfm")
    days = "CAST(r.recency_days AS TEXT)"
    return (
        "SELECT r.as_of_month, r.customer_id,\n"
        "  CASE\n"
        f"    WHEN r.m_score = 5 AND r.recency_days <= {ACTIVE_DAYS} THEN 'High Value Active'\n"
        f"    WHEN r.m_score >= 4 AND r.recency_days > {LAPSING_DAYS} THEN 'Lapsing Big Spender'\n"
        f"    WHEN COALESCE(b.sessions_30d, 0) >= {FREQUENT_BROWSER_SESSIONS} AND r.frequency <= 1 THEN 'Frequent Browser, Rare Buyer'\n"
        "    WHEN r.frequency = 1 THEN 'One-time Buyer'\n"
        "    ELSE 'Regular'\n"
        "  END AS suggested_segment,\n"
        "  CASE\n"
        f"    WHEN r.m_score = 5 AND r.recency_days <= {ACTIVE_DAYS}\n"
        f"      THEN 'spend in the top fifth (M score 5), last purchase ' || {days} || ' days ago (<= {ACTIVE_DAYS})'\n"
        f"    WHEN r.m_score >= 4 AND r.recency_days > {LAPSING_DAYS}\n"
        "      THEN 'high spend (M score ' || CAST(r.m_score AS TEXT) || '), but no purchase for ' || "
        f"{days} || ' days (> {LAPSING_DAYS})'\n"
        f"    WHEN COALESCE(b.sessions_30d, 0) >= {FREQUENT_BROWSER_SESSIONS} AND r.frequency <= 1\n"
        "      THEN CAST(b.sessions_30d AS TEXT) || ' sessions in the last "
        f"{BROWSING_WINDOW_DAYS} days (>= {FREQUENT_BROWSER_SESSIONS}), ' || CAST(r.frequency AS TEXT) || ' purchase ever'\n"
        "    WHEN r.frequency = 1 THEN 'a single purchase, ' || " + days + " || ' days ago'\n"
        "    ELSE CAST(r.frequency AS TEXT) || ' purchases, last one ' || " + days + " || ' days ago'\n"
        "  END AS reason,\n"
        f"  r.recency_days, r.frequency, {_money(wh, 'r.monetary')} AS monetary, r.m_score, "
        "COALESCE(b.sessions_30d, 0) AS sessions_30d\n"
        f"FROM {rfm} AS r\n"
        "LEFT JOIN (\n"
        "  SELECT e.customer_id, COUNT(DISTINCT e.session_id) AS sessions_30d\n"
        f"  FROM {wh.qualified('raw_events')} AS e\n"
        f"  JOIN (SELECT MAX(as_of_date) AS as_of_date FROM {rfm} WHERE as_of_month = {latest}) AS w\n"
        f"    ON e.event_date > {window_start} AND e.event_date <= w.as_of_date\n"
        "  GROUP BY e.customer_id\n"
        ") AS b ON b.customer_id = r.customer_id\n"
        f"WHERE r.as_of_month = {latest}"
    )


def _segment_members(wh: Warehouse) -> str:
    # One `segment_name` to filter on, whichever kind of segment it names (segment_definitions has them all):
    # a customer of the latest month appears once per kind (value, RFM, behavioural).
    names = (
        "  SELECT s.as_of_month, s.customer_id, 'value-based' AS segment_type, s.segment AS segment_name\n"
        f"  FROM {wh.qualified('customer_segments')} AS s WHERE s.as_of_month = {_latest(wh, 'customer_segments')}\n"
        "  UNION ALL\n"
        "  SELECT s.as_of_month, s.customer_id, 'rfm', s.rfm_segment\n"
        f"  FROM {wh.qualified('customer_segments')} AS s WHERE s.as_of_month = {_latest(wh, 'customer_segments')}\n"
        "    AND s.rfm_segment IS NOT NULL\n"
        "  UNION ALL\n"
        "  SELECT g.as_of_month, g.customer_id, 'behavioral', g.suggested_segment\n"
        f"  FROM ({_customer_segmentation_suggestions(wh)}) AS g"
    )
    return (
        "SELECT m.as_of_month, m.customer_id, m.segment_type, m.segment_name, p.country, p.city, p.location, p.age,\n"
        f"  {_money(wh, 'r.monetary')} AS lifetime_value, v.clv_score, {_money(wh, 'v.predicted_revenue_24m')} AS predicted_revenue_24m\n"
        f"FROM (\n{names}\n) AS m\n"
        f"LEFT JOIN {wh.qualified('customer_profiles')} AS p ON p.customer_id = m.customer_id\n"
        f"LEFT JOIN {wh.qualified('customer_rfm')} AS r ON r.as_of_month = m.as_of_month AND r.customer_id = m.customer_id\n"
        f"LEFT JOIN {wh.qualified('customer_clv')} AS v ON v.as_of_month = m.as_of_month AND v.customer_id = m.customer_id"
    )


def _customer_clv_latest(wh: Warehouse) -> str:
    return (
        f"SELECT v.as_of_month, v.customer_id, v.clv_score, {_money(wh, 'v.predicted_revenue_24m')} AS predicted_revenue_24m,\n"
        f"  v.churn_probability, r.recency_days AS recency, r.frequency, {_money(wh, 'r.monetary')} AS monetary, "
        "v.segment, v.computed_at\n"
        f"FROM {wh.qualified('customer_clv')} AS v\n"
        f"LEFT JOIN {wh.qualified('customer_rfm')} AS r ON r.as_of_month = v.as_of_month AND r.customer_id = v.customer_id\n"
        f"WHERE v.as_of_month = {_latest(wh, 'customer_clv')}"
    )


def _customer_events(wh: Warehouse) -> str:
    # Event by event, for "what did this customer do" lists (filter customer_id, ORDER BY event_timestamp
    # DESC, LIMIT n); customer_activity is the daily aggregate of the same rows.
    return (
        "SELECT customer_id, event_id, event_type, event_timestamp, event_date, session_id, page_url, product_id,\n"
        f"  category_id, {_money(wh, 'price')} AS price, quantity, {_money(wh, 'revenue')} AS revenue, device_type, "
        "country, event_month\n"
        f"FROM {wh.qualified('raw_events')}"
    )


def _cohort_ltv_latest(wh: Warehouse) -> str:
    # `period_granularity` spells the cut as LTV-cohort APIs do (monthly / weekly) beside `granularity`.
    # `days_since_cohort_end` expresses their `range` (24h / 7d / 30d / 90d: the cohorts with a first
    # purchase in the last N days are those with days_since_cohort_end < N) without date arithmetic.
    if wh.dialect == "postgresql":
        cohort_end = ("CASE granularity WHEN 'week' THEN cohort_start + 6 "
                      "ELSE CAST(cohort_start + INTERVAL '1 month' - INTERVAL '1 day' AS DATE) END")
        days_since = "({date} - {start})"
    else:
        cohort_end = ("CASE granularity WHEN 'week' THEN date(cohort_start, '+6 days') "
                      "ELSE date(cohort_start, '+1 month', '-1 day') END")
        days_since = "CAST(julianday({date}) - julianday({start}) AS INTEGER)"
    return (
        "SELECT as_of_month, granularity, period_granularity, cohort_start, cohort_end,\n"
        f"  {days_since.format(date='as_of_date', start='cohort_start')} AS days_since_cohort_start,\n"
        f"  {days_since.format(date='as_of_date', start='cohort_end')} AS days_since_cohort_end,\n"
        "  period, period_start, customers, active_customers, period_revenue, cumulative_revenue,\n"
        "  cumulative_revenue_per_customer, as_of_date\n"
        "FROM (\n"
        "  SELECT as_of_month, granularity,\n"
        "    CASE granularity WHEN 'month' THEN 'monthly' WHEN 'week' THEN 'weekly' ELSE granularity END AS period_granularity,\n"
        f"    cohort_start, {cohort_end} AS cohort_end, period, period_start, customers, active_customers,\n"
        f"    {_money(wh, 'period_revenue')} AS period_revenue, {_money(wh, 'cumulative_revenue')} AS cumulative_revenue,\n"
        f"    {_money(wh, 'cumulative_revenue_per_customer')} AS cumulative_revenue_per_customer, as_of_date\n"
        f"  FROM {wh.qualified('cohort_ltv')}\n"
        f"  WHERE as_of_month = {_latest(wh, 'cohort_ltv')}\n"
        ") AS c"
    )


def _ltv_summary_latest(wh: Warehouse) -> str:
    return (
        f"SELECT as_of_month, {_money(wh, 'average_ltv_30d')} AS average_ltv_30d, {_money(wh, 'average_ltv_90d')} AS average_ltv_90d,\n"
        "  customers_30d, customers_90d, as_of, as_of_date\n"
        f"FROM {wh.qualified('ltv_summary')}\n"
        f"WHERE as_of_month = {_latest(wh, 'ltv_summary')}"
    )


# name -> (base tables, SQL builder, what it answers)
_VIEWS: dict[str, tuple[tuple[str, ...], Callable[[Warehouse], str], str]] = {
    "cltv_summary": (("raw_events",), _cltv_summary,
                     "Average all-time purchase revenue per purchasing customer (one row)."),
    "customer_cltv": (("raw_events",), _customer_cltv,
                      "All-time purchase revenue, purchases, first and last purchase per customer."),
    "cltv_by_location": (("raw_events", "customer_profiles"), _cltv_by_location,
                         "Average CLTV per profile location ('unknown' without a profile or location)."),
    "customer_purchase_history": (("raw_events",), _customer_purchase_history,
                                  "One row per purchase; filter by customer, date range, category."),
    "customer_activity": (("raw_events",), _customer_activity,
                          "Events, sessions and revenue per customer, event type and day."),
    "customer_behavioral_analysis": (("raw_events",), _customer_behavioral_analysis,
                                     "Events, sessions, customers, purchasers and revenue by day, event type, country and device."),
    "segment_customers": (("customer_segments", "customer_profiles", "customer_rfm", "customer_clv"), _segment_customers,
                          "Members of each value segment in the latest month, without personal data."),
    "segment_metrics_latest": (("segment_metrics",), _segment_metrics_latest,
                               "segment_metrics rows of the latest month."),
    "customer_segmentation_suggestions": (("customer_rfm", "raw_events"), _customer_segmentation_suggestions,
                                          "A suggested behavioural segment and its reason per customer, latest month (first matching rule)."),
    "customer_clv_latest": (("customer_clv", "customer_rfm"), _customer_clv_latest,
                            "CLV scores of the latest month with that month's recency, frequency and monetary."),
    "segment_members": (("customer_segments", "customer_rfm", "raw_events", "customer_profiles", "customer_clv"),
                        _segment_members,
                        "Members of every segment of the latest month under one segment_name (value, RFM or behavioural, "
                        "as in segment_definitions), with country, age, lifetime value and CLV to filter on."),
    "customer_events": (("raw_events",), _customer_events,
                        "One row per event (type, time, session, page, product, revenue): a customer's activity "
                        "list; filter by customer_id, order by event_timestamp, limit."),
    "cohort_ltv_latest": (("cohort_ltv",), _cohort_ltv_latest,
                          "cohort_ltv rows of the latest month, with period_granularity 'monthly' / 'weekly' beside "
                          "granularity 'month' / 'week', and the cohort's last day and age in days (an API's range=90d "
                          "is days_since_cohort_end < 90)."),
    "ltv_summary_latest": (("ltv_summary",), _ltv_summary_latest, "ltv_summary row of the latest month."),
}

VIEW_NAMES: tuple[str, ...] = tuple(_VIEWS)
VIEW_TABLES: dict[str, tuple[str, ...]] = {name: spec[0] for name, spec in _VIEWS.items()}
VIEW_DESCRIPTIONS: dict[str, str] = {name: spec[2] for name, spec in _VIEWS.items()}


def view_sql(name: str, warehouse: Warehouse) -> str:
    """The SELECT behind view `name` for this warehouse's dialect."""
    if name not in _VIEWS:
        raise KeyError(f"unknown view {name!r}: the views are {', '.join(VIEW_NAMES)}")
    return _VIEWS[name][1](warehouse)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def create_views(warehouse: Warehouse) -> dict[str, str]:
    """(Re)create every view in one transaction: name -> 'created' or 'skipped: missing table X'.

    A view whose base table does not exist is skipped, and a stale copy of it is dropped (it
    could not be read anyway). Views depend only on tables, never on each other.
    """
    warehouse.ensure_tables()
    postgres = warehouse.dialect == "postgresql"
    schema = warehouse.schema if postgres else None
    results: dict[str, str] = {}
    with warehouse.begin(immediate=True) as connection:
        if postgres:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(warehouse.schema, "bi_views")})
        inspector = inspect(connection)
        present = {table: inspector.has_table(table, schema=schema)
                   for table in sorted({t for tables in VIEW_TABLES.values() for t in tables})}
        for name in VIEW_NAMES:
            qualified = warehouse.qualified(name)
            connection.execute(text(f"DROP VIEW IF EXISTS {qualified}"))
            missing = [table for table in VIEW_TABLES[name] if not present[table]]
            if missing:
                results[name] = f"skipped: missing table{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
                continue
            connection.execute(text(f"CREATE VIEW {qualified} AS\n{view_sql(name, warehouse)}"))
            if postgres:
                connection.execute(text(f"COMMENT ON VIEW {qualified} IS {_literal(VIEW_DESCRIPTIONS[name])}"))
            results[name] = "created"
    return results


def view_row_counts(warehouse: Warehouse, names) -> dict[str, int]:
    """Rows each of the named views returns now."""
    counts = {}
    with warehouse.connect() as connection:
        for name in names:
            counts[name] = int(connection.execute(text(f"SELECT COUNT(*) FROM {warehouse.qualified(name)}")).scalar())
    return counts
