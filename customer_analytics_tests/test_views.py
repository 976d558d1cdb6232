"""The BI views: exact figures on hand-made rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import inspect, text

from customer_analytics.assets.views import bi_views
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import (
    customer_clv,
    customer_profiles,
    customer_rfm,
    customer_segments,
    raw_events,
    segment_metrics,
)
from customer_analytics.views import VIEW_NAMES, VIEW_TABLES, create_views, view_sql

UTC = "UTC"
NOW = pd.Timestamp("2025-03-01 06:00", tz=UTC)

# event_id, customer_id, event_type, timestamp (UTC), session, product, category, price, quantity, device, country
EVENTS = [
    ("e1", "c1", "page_view", "2025-01-05 09:50", "s1", "p1", "A", None, None, "mobile", "US"),
    ("e2", "c1", "purchase", "2025-01-05 10:00", "s1", "p1", "A", 10.0, 2, "mobile", "US"),
    ("e3", "c3", "page_view", "2025-01-05 11:00", "s4", "p1", "A", None, None, "mobile", "US"),
    ("e4", "c3", "purchase", "2025-01-03 12:00", "s8", "p9", "C", 1.0, 3, "desktop", "US"),
    ("e5", "c2", "page_view", "2025-01-20 07:55", "s3", "p3", "A", None, None, "desktop", "DE"),
    ("e6", "c2", "purchase", "2025-01-20 08:00", "s3", "p3", "A", 100.0, 1, "desktop", "DE"),
    ("e15", "c3", "page_view", "2025-01-30 10:00", "s7", None, None, None, None, "mobile", "US"),
    ("e16", "c5", "page_view", "2025-01-29 10:00", "s11", None, None, None, None, "tablet", "FR"),
    ("e8", "c1", "purchase", "2025-02-10 12:00", "s2", "p2", "B", 5.0, 1, "desktop", "US"),
    ("e9", "c3", "page_view", "2025-02-11 10:00", "s5", None, None, None, None, "mobile", "US"),
    ("e10", "c3", "page_view", "2025-02-12 10:00", "s6", None, None, None, None, "mobile", "US"),
    ("e11", "c3", "page_view", "2025-02-12 10:05", "s6", None, None, None, None, "mobile", "US"),
    ("e12", "c5", "purchase", "2025-02-01 09:00", "s9", "p4", "B", 7.5, 2, "tablet", "FR"),
    ("e13", "c5", "page_view", "2025-02-02 09:00", "s12", None, None, None, None, "tablet", "FR"),
    ("e14", "c4", "page_view", "2025-02-01 10:00", None, None, None, None, None, "mobile", None),
]

PROFILES = [  # customer_id, email, first, last, age, city, country, location
    ("c1", "ann@example.com", "Ann", "Lee", 30, "New York", "US", "New York"),
    ("c2", "bob@example.com", "Bob", "Kim", 41, "Berlin", "DE", ""),
    ("c3", "cy@example.com", "Cy", "Roe", 25, "New York", "US", "New York"),
    ("c4", "di@example.com", "Di", "Fox", 52, "Paris", "FR", "Paris"),
]
PERSONAL_VALUES = {v for p in PROFILES for v in p[1:4]}

# as_of_month -> customer_id, recency_days, frequency, monetary, m_score (hand-set, not derived from the events)
RFM = {
    "2025-01": [("c1", 26, 1, 20.0, 4), ("c2", 11, 1, 100.0, 5), ("c3", 28, 1, 3.0, 1), ("c7", 5, 2, 50.0, 5)],
    "2025-02": [("c1", 18, 2, 25.0, 5), ("c2", 95, 1, 100.0, 4), ("c3", 56, 1, 3.0, 1), ("c5", 27, 1, 15.0, 2),
                ("c6", 40, 3, 60.0, 3), ("c8", 30, 1, 200.0, 5), ("c9", 90, 2, 80.0, 4)],
}
AS_OF_DATE = {"2025-01": "2025-01-31", "2025-02": "2025-02-28"}

# as_of_month -> customer_id, clv_score, predicted_revenue_24m, churn_probability, segment
CLV = {
    "2025-01": [("c1", 50, 30.0, 0.2, "medium"), ("c2", 80, 150.0, 0.1, "high"), ("c3", 10, 2.0, 0.4, "low"),
                ("c7", 70, 60.0, 0.3, "high")],
    "2025-02": [("c1", 90, 40.0, 0.25, "high"), ("c2", 60, 20.0, 0.75, "at_risk"), ("c3", 5, 1.5, 0.3, "low"),
                ("c5", 40, 12.0, 0.2, "medium"), ("c6", 70, 55.0, 0.15, "high")],
}

# as_of_month -> customer_id, segment, rfm_segment, previous_segment, segment_changed
SEGMENTS = {
    "2025-01": [("c1", "medium", "New Customers", None, True), ("c7", "high", "Champions", None, True)],
    "2025-02": [("c1", "high", "Champions", "medium", True), ("c2", "at_risk", "Can't Lose Them", None, True),
                ("c3", "low", "Hibernating", None, True), ("c5", "medium", "New Customers", None, True)],
}

# as_of_month -> segment_type, segment, country, customers, share, avg_clv_score, total_revenue
METRICS = {
    "2025-01": [("value", "high", None, 1, 0.5, 70.0, 50.0)],
    "2025-02": [("value", "high", None, 1, 0.25, 90.0, 25.0), ("value", "high", "US", 1, 0.5, 90.0, 25.0),
                ("rfm", "Champions", None, 1, 0.25, 90.0, 25.0)],
}


def _month(key: str) -> date:
    return date.fromisoformat(f"{key}-01")


def _replace_table(warehouse, table, frame, key_column):
    with warehouse.replace(lock_name=f"test/{table.name}") as r:
        r.delete_where(table, table.c[key_column].is_not(None))
        r.append(table, frame)


def _replace_month(warehouse, table, month: str, frame):
    with warehouse.replace(lock_name=f"test/{table.name}/{month}") as r:
        r.replace_partition(table, _month(month))
        r.append(table, frame)


def _events_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["event_id", "customer_id", "event_type", "event_timestamp", "session_id",
                                        "product_id", "category_id", "price", "quantity", "device_type", "country"])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame["event_date"] = frame["event_timestamp"].dt.tz_localize(None).dt.normalize()
    frame["event_month"] = frame["event_date"].dt.to_period("M").dt.to_timestamp()
    frame["quantity"] = frame["quantity"].astype("Int64")
    frame["revenue"] = (frame["price"].fillna(0) * frame["quantity"].fillna(0).astype(float)).where(
        frame["event_type"] == "purchase", 0.0)
    frame["page_url"] = "/x"
    frame["source"] = "events"
    frame["source_file"] = "events/test.ndjson"
    frame["source_record"] = range(1, len(frame) + 1)
    frame["ingested_at"] = NOW
    return frame


def _load(warehouse) -> None:
    events = _events_frame(EVENTS)
    for month, rows in events.groupby(events["event_month"].dt.strftime("%Y-%m")):
        _replace_month(warehouse, raw_events, month, rows)
    profiles = pd.DataFrame(PROFILES, columns=["customer_id", "email", "first_name", "last_name", "age", "city",
                                               "country", "location"])
    profiles["updated_at"] = NOW
    _replace_table(warehouse, customer_profiles, profiles, "customer_id")
    for month in ("2025-01", "2025-02"):
        as_of_date = pd.Timestamp(AS_OF_DATE[month])
        rfm = pd.DataFrame(RFM[month], columns=["customer_id", "recency_days", "frequency", "monetary", "m_score"])
        rfm = rfm.assign(as_of_month=pd.Timestamp(_month(month)), first_purchase_at=pd.Timestamp("2025-01-01", tz=UTC),
                         last_purchase_at=pd.Timestamp("2025-01-02", tz=UTC), avg_order_value=1.0, r_score=3,
                         f_score=3, rfm_score="333", rfm_segment="Needs Attention", fm_score=3,
                         as_of_date=as_of_date, computed_at=NOW, run_id="r1")
        _replace_month(warehouse, customer_rfm, month, rfm)
        clv = pd.DataFrame(CLV[month], columns=["customer_id", "clv_score", "predicted_revenue_24m",
                                                "churn_probability", "segment"])
        # BG/NBD frequency/recency deliberately differ from customer_rfm's: the view must show RFM's.
        clv = clv.assign(as_of_month=pd.Timestamp(_month(month)), expected_purchases_12m=1.0,
                         p_alive=1 - clv["churn_probability"], expected_order_value=10.0, model="bgnbd+gamma_gamma",
                         frequency=0, recency=0.0, T=100.0, as_of_date=as_of_date, computed_at=NOW, run_id="r1")
        _replace_month(warehouse, customer_clv, month, clv)
        segments = pd.DataFrame(SEGMENTS[month], columns=["customer_id", "segment", "rfm_segment",
                                                          "previous_segment", "segment_changed"])
        segments = segments.assign(as_of_month=pd.Timestamp(_month(month)), computed_at=NOW, run_id="r1")
        _replace_month(warehouse, customer_segments, month, segments)
        metrics = pd.DataFrame(METRICS[month], columns=["segment_type", "segment", "country", "customers", "share",
                                                        "avg_clv_score", "total_revenue"])
        metrics = metrics.assign(as_of_month=pd.Timestamp(_month(month)), avg_predicted_revenue=10.0,
                                 avg_recency_days=5.0, avg_frequency=1.0, computed_at=NOW)
        _replace_month(warehouse, segment_metrics, month, metrics)


@pytest.fixture
def loaded(warehouse):
    warehouse.ensure_tables()
    _load(warehouse)
    assert create_views(warehouse) == {name: "created" for name in VIEW_NAMES}
    return warehouse


# -- reading views back the same way on both dialects -------------------------------------------------
def _norm(value):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, datetime):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
        return stamp.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 9)
    if hasattr(value, "item"):  # numpy scalars
        return _norm(value.item())
    return value


def _query(warehouse, sql: str, **params) -> list[tuple]:
    """Rows of `sql`, where `{name}` is a view or table name; timestamps as 'YYYY-MM-DD HH:MM' UTC."""
    names = {name: warehouse.qualified(name) for name in (*VIEW_NAMES, *{t for ts in VIEW_TABLES.values() for t in ts})}
    with warehouse.connect() as connection:
        result = connection.execute(text(sql.format(**names)), params)
        return [tuple(_norm(v) for v in row) for row in result]


def _stamps(rows, *positions):
    """SQLite returns timestamps as text: make those columns 'YYYY-MM-DD HH:MM' too."""
    def fix(row):
        return tuple(_norm(pd.Timestamp(v).to_pydatetime()) if i in positions and v is not None else v
                     for i, v in enumerate(row))
    return [fix(row) for row in rows]


def _columns(warehouse, view: str) -> list[str]:
    with warehouse.connect() as connection:
        return list(connection.execute(text(f"SELECT * FROM {warehouse.qualified(view)} WHERE 1 = 0")).keys())


# -- CLTV --------------------------------------------------------------------------------------------
def test_cltv_summary_is_the_average_over_purchasing_customers(loaded):
    # c1: 10×2 + 5×1 = 25, c2: 100, c3: 1×3 = 3, c5: 7.5×2 = 15; c4 only browsed.
    assert _query(loaded, "SELECT average_cltv, customers, total_revenue FROM {cltv_summary}") == [(35.75, 4, 143.0)]


def test_customer_cltv(loaded):
    rows = _stamps(_query(loaded, "SELECT customer_id, cltv, purchases, first_purchase_at, last_purchase_at "
                                  "FROM {customer_cltv} ORDER BY customer_id"), 3, 4)
    assert rows == [
        ("c1", 25.0, 2, "2025-01-05 10:00", "2025-02-10 12:00"),
        ("c2", 100.0, 1, "2025-01-20 08:00", "2025-01-20 08:00"),
        ("c3", 3.0, 1, "2025-01-03 12:00", "2025-01-03 12:00"),
        ("c5", 15.0, 1, "2025-02-01 09:00", "2025-02-01 09:00"),
    ]


def test_cltv_by_location_puts_missing_profiles_and_locations_under_unknown(loaded):
    rows = _query(loaded, "SELECT location, customers, average_cltv, total_revenue FROM {cltv_by_location} ORDER BY location")
    # New York: c1 25 + c3 3; unknown: c2 (blank location) 100 + c5 (no profile) 15; Paris (c4) never bought.
    assert rows == [("New York", 2, 14.0, 28.0), ("unknown", 2, 57.5, 115.0)]


# -- purchases and activity -----------------------------------------------------------------------------
def test_purchase_history_filters_by_customer_dates_and_category(loaded):
    def ids(where: str, **params) -> list[str]:
        return [r[0] for r in _query(loaded, f"SELECT event_id FROM {{customer_purchase_history}} WHERE {where} "
                                             "ORDER BY event_timestamp", **params)]

    assert ids("1 = 1") == ["e4", "e2", "e6", "e12", "e8"]
    assert ids("customer_id = :c", c="c1") == ["e2", "e8"]
    assert ids("event_date BETWEEN '2025-01-01' AND '2025-01-31'") == ["e4", "e2", "e6"]
    assert ids("event_date >= '2025-02-01' AND event_date < '2025-02-10'") == ["e12"]
    assert ids("category_id = 'A'") == ["e2", "e6"]
    assert ids("customer_id = 'c1' AND category_id = 'A' AND event_date BETWEEN '2025-01-01' AND '2025-01-31'") == ["e2"]
    row = _stamps(_query(loaded, "SELECT customer_id, event_id, event_timestamp, event_date, product_id, category_id, "
                                 "price, quantity, revenue, country, device_type FROM {customer_purchase_history} "
                                 "WHERE event_id = 'e12'"), 2)
    assert row == [("c5", "e12", "2025-02-01 09:00", "2025-02-01", "p4", "B", 7.5, 2, 15.0, "FR", "tablet")]


def test_customer_activity(loaded):
    rows = _query(loaded, "SELECT customer_id, event_type, event_date, events, sessions, revenue FROM {customer_activity} "
                          "ORDER BY customer_id, event_date, event_type")
    assert rows == [
        ("c1", "page_view", "2025-01-05", 1, 1, 0.0),
        ("c1", "purchase", "2025-01-05", 1, 1, 20.0),
        ("c1", "purchase", "2025-02-10", 1, 1, 5.0),
        ("c2", "page_view", "2025-01-20", 1, 1, 0.0),
        ("c2", "purchase", "2025-01-20", 1, 1, 100.0),
        ("c3", "purchase", "2025-01-03", 1, 1, 3.0),
        ("c3", "page_view", "2025-01-05", 1, 1, 0.0),
        ("c3", "page_view", "2025-01-30", 1, 1, 0.0),
        ("c3", "page_view", "2025-02-11", 1, 1, 0.0),
        ("c3", "page_view", "2025-02-12", 2, 1, 0.0),  # two events in one session
        ("c4", "page_view", "2025-02-01", 1, 0, 0.0),  # no session id
        ("c5", "page_view", "2025-01-29", 1, 1, 0.0),
        ("c5", "purchase", "2025-02-01", 1, 1, 15.0),
        ("c5", "page_view", "2025-02-02", 1, 1, 0.0),
    ]


def test_behavioral_analysis(loaded):
    rows = _query(loaded, "SELECT event_date, event_type, country, device_type, events, sessions, customers, purchasers, "
                          "revenue FROM {customer_behavioral_analysis} ORDER BY event_date, event_type, country, device_type")
    assert sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r)) == sorted([
        ("2025-01-03", "purchase", "US", "desktop", 1, 1, 1, 1, 3.0),
        # c1 and c3 viewed on mobile in the US that day; c1 also bought there: 1 purchaser of 2.
        ("2025-01-05", "page_view", "US", "mobile", 2, 2, 2, 1, 0.0),
        ("2025-01-05", "purchase", "US", "mobile", 1, 1, 1, 1, 20.0),
        ("2025-01-20", "page_view", "DE", "desktop", 1, 1, 1, 1, 0.0),
        ("2025-01-20", "purchase", "DE", "desktop", 1, 1, 1, 1, 100.0),
        ("2025-01-29", "page_view", "FR", "tablet", 1, 1, 1, 0, 0.0),
        ("2025-01-30", "page_view", "US", "mobile", 1, 1, 1, 0, 0.0),
        ("2025-02-01", "page_view", None, "mobile", 1, 0, 1, 0, 0.0),
        ("2025-02-01", "purchase", "FR", "tablet", 1, 1, 1, 1, 15.0),
        ("2025-02-02", "page_view", "FR", "tablet", 1, 1, 1, 0, 0.0),  # c5 bought the day before: not a purchaser here
        ("2025-02-10", "purchase", "US", "desktop", 1, 1, 1, 1, 5.0),
        ("2025-02-11", "page_view", "US", "mobile", 1, 1, 1, 0, 0.0),
        ("2025-02-12", "page_view", "US", "mobile", 2, 1, 1, 0, 0.0),
    ], key=lambda r: tuple("" if v is None else str(v) for v in r))


# -- latest-month views ------------------------------------------------------------------------------------
def test_segment_customers_shows_the_latest_month_without_personal_data(loaded):
    columns = _columns(loaded, "segment_customers")
    assert not {"email", "first_name", "last_name"} & set(columns)
    rows = _query(loaded, "SELECT as_of_month, customer_id, segment, rfm_segment, country, city, location, age, "
                          "lifetime_value, clv_score, predicted_revenue_24m, previous_segment FROM {segment_customers} "
                          "ORDER BY customer_id")
    assert rows == [
        ("2025-02-01", "c1", "high", "Champions", "US", "New York", "New York", 30, 25.0, 90, 40.0, "medium"),
        ("2025-02-01", "c2", "at_risk", "Can't Lose Them", "DE", "Berlin", "", 41, 100.0, 60, 20.0, None),
        ("2025-02-01", "c3", "low", "Hibernating", "US", "New York", "New York", 25, 3.0, 5, 1.5, None),
        ("2025-02-01", "c5", "medium", "New Customers", None, None, None, None, 15.0, 40, 12.0, None),
    ]
    assert [bool(r[0]) for r in _query(loaded, "SELECT segment_changed FROM {segment_customers}")] == [True] * 4
    filtered = _query(loaded, "SELECT customer_id FROM {segment_customers} WHERE segment = 'high'")
    assert filtered == [("c1",)]


def test_no_view_exposes_personal_data(loaded):
    for view in VIEW_NAMES:
        assert not {"email", "first_name", "last_name"} & set(_columns(loaded, view)), view
        values = {v for row in _query(loaded, f"SELECT * FROM {{{view}}}") for v in row}
        assert not values & PERSONAL_VALUES, view


def test_segment_metrics_latest(loaded):
    rows = _query(loaded, "SELECT as_of_month, segment_type, segment, country, customers, share, avg_clv_score, "
                          "total_revenue FROM {segment_metrics_latest} ORDER BY segment_type DESC, country")
    expected = [("2025-02-01", *m) for m in METRICS["2025-02"]]
    assert sorted(rows, key=str) == sorted(expected, key=str)


def test_customer_clv_latest_shows_only_the_latest_month_with_rfm_figures(loaded):
    rows = _stamps(_query(loaded, "SELECT as_of_month, customer_id, clv_score, predicted_revenue_24m, churn_probability, "
                                  "recency, frequency, monetary, segment, computed_at FROM {customer_clv_latest} "
                                  "ORDER BY customer_id"), 9)
    assert rows == [
        ("2025-02-01", "c1", 90, 40.0, 0.25, 18, 2, 25.0, "high", "2025-03-01 06:00"),
        ("2025-02-01", "c2", 60, 20.0, 0.75, 95, 1, 100.0, "at_risk", "2025-03-01 06:00"),
        ("2025-02-01", "c3", 5, 1.5, 0.3, 56, 1, 3.0, "low", "2025-03-01 06:00"),
        ("2025-02-01", "c5", 40, 12.0, 0.2, 27, 1, 15.0, "medium", "2025-03-01 06:00"),
        ("2025-02-01", "c6", 70, 55.0, 0.15, 40, 3, 60.0, "high", "2025-03-01 06:00"),
    ]


def test_latest_month_follows_new_data_without_recreating_views(loaded):
    march = pd.DataFrame([("c1", 7, 1, 0.05, "low")], columns=["customer_id", "clv_score", "predicted_revenue_24m",
                                                               "churn_probability", "segment"])
    march = march.assign(as_of_month=pd.Timestamp("2025-03-01"), expected_purchases_12m=1.0, p_alive=0.95,
                         expected_order_value=1.0, model="m", frequency=0, recency=0.0, T=1.0,
                         as_of_date=pd.Timestamp("2025-03-31"), computed_at=NOW, run_id="r2")
    _replace_month(loaded, customer_clv, "2025-03", march)
    # No customer_rfm row for March yet: recency/frequency/monetary are NULL, not last month's.
    assert _query(loaded, "SELECT as_of_month, customer_id, clv_score, recency, monetary FROM {customer_clv_latest}") == [
        ("2025-03-01", "c1", 7, None, None)]


def test_segmentation_suggestions_first_matching_rule_wins(loaded):
    rows = _query(loaded, "SELECT as_of_month, customer_id, suggested_segment, reason, sessions_30d "
                          "FROM {customer_segmentation_suggestions} ORDER BY customer_id")
    assert rows == [
        ("2025-02-01", "c1", "High Value Active", "spend in the top fifth (M score 5), last purchase 18 days ago (<= 30)", 1),  # session s2 on 02-10
        ("2025-02-01", "c2", "Lapsing Big Spender", "high spend (M score 4), but no purchase for 95 days (> 90)", 0),
        # Sessions on 2025-01-30 (the window's first day), 02-11 and 02-12 (two events, one session).
        ("2025-02-01", "c3", "Frequent Browser, Rare Buyer", "3 sessions in the last 30 days (>= 3), 1 purchase ever", 3),
        # 2025-01-29 is outside the 30 days ending 2025-02-28: 2 sessions only.
        ("2025-02-01", "c5", "One-time Buyer", "a single purchase, 27 days ago", 2),
        ("2025-02-01", "c6", "Regular", "3 purchases, last one 40 days ago", 0),
        # One purchase, but top spend 30 days ago: the first rule wins.
        ("2025-02-01", "c8", "High Value Active", "spend in the top fifth (M score 5), last purchase 30 days ago (<= 30)", 0),
        ("2025-02-01", "c9", "Regular", "2 purchases, last one 90 days ago", 0),  # 90 days is not > 90
    ]


# -- creating the views -------------------------------------------------------------------------------------
# Every money column of the views: rounded to cents, a float column still.
MONEY_COLUMNS = {
    "cltv_summary": ("average_cltv", "total_revenue"),
    "customer_cltv": ("cltv",),
    "cltv_by_location": ("average_cltv", "total_revenue"),
    "customer_purchase_history": ("price", "revenue"),
    "customer_activity": ("revenue",),
    "customer_behavioral_analysis": ("revenue",),
    "segment_customers": ("lifetime_value", "predicted_revenue_24m"),
    "segment_metrics_latest": ("avg_predicted_revenue", "total_revenue"),
    "customer_segmentation_suggestions": ("monetary",),
    "customer_clv_latest": ("predicted_revenue_24m", "monetary"),
    "customer_events": ("price", "revenue"),
    "segment_members": ("lifetime_value", "predicted_revenue_24m"),
    "cohort_ltv_latest": ("period_revenue", "cumulative_revenue", "cumulative_revenue_per_customer"),
    "ltv_summary_latest": ("average_ltv_30d", "average_ltv_90d"),
}


def test_money_in_views_is_rounded_to_cents_and_stays_a_float_column(loaded):
    _load_cohorts(loaded)
    # Thirds and stray fractions, as sums and averages of real prices give (375.4065624999982).
    with loaded.begin() as connection:
        for table, columns in {"raw_events": ("price", "revenue"), "customer_rfm": ("monetary",),
                               "customer_clv": ("predicted_revenue_24m",),
                               "segment_metrics": ("avg_predicted_revenue", "total_revenue"),
                               "cohort_ltv": ("period_revenue", "cumulative_revenue", "cumulative_revenue_per_customer"),
                               "ltv_summary": ("average_ltv_30d", "average_ltv_90d")}.items():
            sets = ", ".join(f"{c} = {c} / 3.0 + 0.0012345" for c in columns)
            connection.execute(text(f"UPDATE {loaded.qualified(table)} SET {sets}"))
    checked = 0
    for view, columns in MONEY_COLUMNS.items():
        for column in columns:
            values = [row[0] for row in _query(loaded, f"SELECT {column} FROM {{{view}}}") if row[0] is not None]
            assert values, f"{view}.{column}: no values to check"
            assert all(isinstance(v, float) for v in values), f"{view}.{column} is not a float column: {values[:3]}"
            assert all(v == round(v, 2) for v in values), f"{view}.{column} not rounded to cents: {values[:5]}"
            checked += len(values)
    assert checked > 50
    if loaded.dialect == "postgresql":
        types = dict(_query(loaded, "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                                    "WHERE table_schema = :schema", schema=loaded.schema))
        assert {f"{v}.{c}": types[f"{v}.{c}"] for v, cs in MONEY_COLUMNS.items() for c in cs} == \
            {f"{v}.{c}": "double precision" for v, cs in MONEY_COLUMNS.items() for c in cs}
    else:
        for view, columns in MONEY_COLUMNS.items():
            kinds = _query(loaded, f"SELECT DISTINCT {', '.join(f'typeof({c})' for c in columns)} FROM {{{view}}}")
            assert {k for row in kinds for k in row} <= {"real", "null"}, (view, kinds)
    # Rounded after summing, not summed from rounded figures.
    exact = _query(loaded, "SELECT SUM(revenue) / COUNT(DISTINCT customer_id) FROM {raw_events} WHERE event_type = 'purchase'")
    assert _query(loaded, "SELECT average_cltv FROM {cltv_summary}") == [(round(exact[0][0], 2),)]


def test_create_views_twice_is_fine(loaded):
    assert create_views(loaded) == {name: "created" for name in VIEW_NAMES}
    assert _query(loaded, "SELECT customers FROM {cltv_summary}") == [(4,)]


def test_views_work_on_empty_tables(warehouse):
    assert set(create_views(warehouse).values()) == {"created"}
    assert _query(warehouse, "SELECT average_cltv, customers, total_revenue FROM {cltv_summary}") == [(None, 0, 0)]
    for view in VIEW_NAMES:
        if view != "cltv_summary":
            assert _query(warehouse, f"SELECT COUNT(*) FROM {{{view}}}") == [(0,)], view


def _drop_table(warehouse, name: str) -> None:
    cascade = " CASCADE" if warehouse.dialect == "postgresql" else ""
    with warehouse.begin() as connection:
        connection.execute(text(f"DROP TABLE {warehouse.qualified(name)}{cascade}"))


def test_views_with_a_missing_base_table_are_skipped_with_the_reason(loaded):
    for table in ("segment_metrics", "customer_segments"):
        _drop_table(loaded, table)
    results = create_views(loaded)
    assert results["segment_metrics_latest"] == "skipped: missing table segment_metrics"
    assert results["segment_customers"] == "skipped: missing table customer_segments"
    assert {name for name, status in results.items() if status == "created"} == set(VIEW_NAMES) - {
        "segment_metrics_latest", "segment_customers", "segment_members"}
    schema = loaded.schema if loaded.dialect == "postgresql" else None
    with loaded.connect() as connection:
        views = set(inspect(connection).get_view_names(schema=schema))
    assert views == set(VIEW_NAMES) - {"segment_metrics_latest", "segment_customers", "segment_members"}  # no stale copies left
    _drop_table(loaded, "customer_clv")
    results = create_views(loaded)
    assert results["segment_customers"] == "skipped: missing tables customer_segments, customer_clv"
    assert results["customer_clv_latest"] == "skipped: missing table customer_clv"
    assert _query(loaded, "SELECT customers FROM {cltv_summary}") == [(4,)]


def test_view_sql_refuses_unknown_names(warehouse):
    with pytest.raises(KeyError, match="cltv_summary"):
        view_sql("nope", warehouse)


# -- the asset -------------------------------------------------------------------------------------------------
def test_bi_views_asset_reports_views_and_row_counts(loaded):
    resources = {"warehouse": WarehouseResource(db_url=loaded.url, db_schema=loaded.schema)}
    result = dg.materialize([bi_views], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [materialization] = result.asset_materializations_for_node("bi_views")
    metadata = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
    assert metadata["views_created"] == len(VIEW_NAMES) and metadata["views_skipped"] == 0
    assert metadata["rows_cltv_summary"] == 1
    assert metadata["rows_customer_purchase_history"] == 5
    assert metadata["rows_customer_clv_latest"] == 5
    assert metadata["rows_segment_metrics_latest"] == 3
    assert "customer_segmentation_suggestions" in metadata["views"]
    spec = bi_views.specs_by_key[dg.AssetKey("bi_views")]
    assert {dep.asset_key.to_user_string() for dep in spec.deps} == {
        "raw_events", "customer_profiles", "customer_rfm", "customer_clv", "customer_segments", "segment_metrics"}
    assert spec.group_name == "bi"


def test_customer_events_lists_each_event_of_a_customer(loaded):
    expected = _events_frame(EVENTS).query("customer_id == 'c3'").sort_values("event_timestamp", ascending=False)
    rows = _stamps(_query(loaded, "SELECT event_id, event_type, event_timestamp, session_id, revenue FROM {customer_events} "
                                  "WHERE customer_id = :customer ORDER BY event_timestamp DESC LIMIT 3", customer="c3"), 2)
    assert rows == [(r.event_id, r.event_type, r.event_timestamp.strftime("%Y-%m-%d %H:%M"), r.session_id, r.revenue)
                    for r in expected.head(3).itertuples()]


def _load_cohorts(loaded) -> None:
    """cohort_ltv and ltv_summary rows for January and February (cumulative revenue 10, then 30)."""
    from customer_analytics.resources.tables import cohort_ltv, ltv_summary

    for month, revenue in (("2025-01", 10.0), ("2025-02", 30.0)):
        cohorts = pd.DataFrame([
            {"granularity": granularity, "cohort_start": pd.Timestamp("2025-01-01" if granularity == "month" else "2024-12-30"),
             "period": 0, "period_start": pd.Timestamp("2025-01-01"), "customers": 2, "active_customers": 2,
             "period_revenue": revenue, "cumulative_revenue": revenue, "cumulative_revenue_per_customer": revenue / 2}
            for granularity in ("month", "week")
        ]).assign(as_of_month=pd.Timestamp(_month(month)), as_of_date=pd.Timestamp(AS_OF_DATE[month]), computed_at=NOW)
        _replace_month(loaded, cohort_ltv, month, cohorts)
        summary = pd.DataFrame([{"average_ltv_30d": revenue, "average_ltv_90d": revenue * 2, "customers_30d": 2, "customers_90d": 1}])
        summary = summary.assign(as_of_month=pd.Timestamp(_month(month)), as_of_date=pd.Timestamp(AS_OF_DATE[month]),
                                 as_of=pd.Timestamp(AS_OF_DATE[month], tz=UTC) + pd.Timedelta(days=1), computed_at=NOW)
        _replace_month(loaded, ltv_summary, month, summary)


def test_cohort_and_ltv_summary_latest_read_the_latest_month_and_spell_the_granularity_both_ways(loaded):
    _load_cohorts(loaded)
    assert _query(loaded, "SELECT as_of_month, granularity, period_granularity, cumulative_revenue FROM {cohort_ltv_latest} "
                          "ORDER BY granularity") == [("2025-02-01", "month", "monthly", 30.0), ("2025-02-01", "week", "weekly", 30.0)]
    # The cohort's last day and age, for an API's range: January (to 01-31) and the week of 2024-12-30 (to 01-05).
    as_of = date.fromisoformat(str(AS_OF_DATE["2025-02"])[:10])
    rows = _query(loaded, "SELECT granularity, cohort_end, days_since_cohort_start, days_since_cohort_end FROM {cohort_ltv_latest} "
                          "ORDER BY granularity")
    assert rows == [("month", "2025-01-31", (as_of - date(2025, 1, 1)).days, (as_of - date(2025, 1, 31)).days),
                    ("week", "2025-01-05", (as_of - date(2024, 12, 30)).days, (as_of - date(2025, 1, 5)).days)]
    assert _query(loaded, "SELECT as_of_month, average_ltv_30d, customers_30d FROM {ltv_summary_latest}") == [("2025-02-01", 30.0, 2)]


def test_segment_members_answers_one_segment_name_whatever_its_kind(loaded):
    expected = {}
    for customer, segment, rfm_segment, *_rest in SEGMENTS["2025-02"]:
        expected.setdefault(segment, set()).add(customer)
        if rfm_segment is not None:
            expected.setdefault(rfm_segment, set()).add(customer)
    suggested = _query(loaded, "SELECT customer_id, suggested_segment FROM {customer_segmentation_suggestions}")
    for customer, name in suggested:
        expected.setdefault(name, set()).add(customer)
    rows = _query(loaded, "SELECT segment_name, customer_id FROM {segment_members}")
    found = {}
    for name, customer in rows:
        found.setdefault(name, set()).add(customer)
    assert found == expected and suggested
    # Tinybird's segment_customers filters: a segment name, a country, an age range, a minimum lifetime value.
    high = _query(loaded, "SELECT customer_id FROM {segment_members} WHERE segment_name = 'high' AND lifetime_value >= 50 "
                          "ORDER BY customer_id")
    rfm = {customer: monetary for customer, _r, _f, monetary, _m in RFM["2025-02"]}
    assert high == [(c,) for c in sorted(expected["high"]) if rfm.get(c, 0) >= 50]
