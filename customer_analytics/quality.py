"""Data-quality measurements behind the asset checks in `customer_analytics.checks`.

Plain Python and SQL (no Dagster), so tests and the CLI can call them directly. Every function
reads one month from the warehouse and returns a small result object; the checks only turn it
into an `AssetCheckResult`. Queries are parameterized (dates and timestamps through
`Warehouse.sql_params`, since SQLite compares them as the text it stores) and run unchanged
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from customer_analytics.config import add_months
from customer_analytics.resources.tables import (
    clv_model_fits,
    customer_clv,
    customer_month_summary,
    raw_events,
)
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.summaries import month_as_of
from customer_analytics.transforms.models import BgNbdParams, expected_purchases

# Example ids / rows reported in check metadata: enough to start an investigation, small enough for the UI.
EXAMPLES = 5

# Events of the month in progress may carry timestamps slightly after the run time: the shop's
# servers and ours do not share a clock. One hour absorbs ordinary skew (and a wrong DST setting);
# anything later is a bad clock or bad data.
CLOCK_SKEW_TOLERANCE = timedelta(hours=1)

# Model quality: |actual − expected| / max(expected, 1) above this warns. A month's purchase dates
# are a sum over many customers, so sampling noise is small; 25 % leaves room for seasonality the
# stationary BG/NBD cannot know about, while a broken fit (wrong time unit, stale parameters)
# is off by far more.
MODEL_QUALITY_TOLERANCE = 0.25

SECONDS_PER_DAY = 86_400.0


def _month_start(month: date) -> datetime:
    return datetime(month.year, month.month, month.day, tzinfo=timezone.utc)


def _utc(value) -> datetime | None:
    """A timestamp read back from either backend (SQLite returns text) as an aware UTC datetime."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _count(value) -> int:
    """A COUNT/SUM read back as an int; SUM over no rows is NULL."""
    return 0 if value is None or pd.isna(value) else int(value)


def _date(value) -> date | None:
    """A DATE read back from either backend (SQLite returns 'YYYY-MM-DD' text)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# -- raw_events: duplicate event ids ----------------------------------------------------------

WITHIN_MONTH_DUPLICATES_SQL = """
SELECT event_id, COUNT(*) AS copies, COUNT(*) OVER () AS ids
FROM {raw_events}
WHERE event_month = :month
GROUP BY event_id
HAVING COUNT(*) > 1
ORDER BY event_id
LIMIT :examples
"""

# Driven by the other months' rows, probing this month through the primary key
# (event_month, event_id): one pass over raw_events, no event_id index needed.
CROSS_MONTH_DUPLICATES_SQL = """
SELECT event_id, first_month, last_month, other_rows,
       COUNT(*) OVER () AS ids, SUM(other_rows) OVER () AS rows_elsewhere
FROM (
    SELECT o.event_id, MIN(o.event_month) AS first_month, MAX(o.event_month) AS last_month, COUNT(*) AS other_rows
    FROM {raw_events} o
    WHERE o.event_month <> :month
      AND EXISTS (SELECT 1 FROM {raw_events} m WHERE m.event_month = :month AND m.event_id = o.event_id)
    GROUP BY o.event_id
) d
ORDER BY event_id
LIMIT :examples
"""


@dataclass(frozen=True)
class DuplicateIds:
    """Event ids of a month stored more than once: within the month, or also in other months."""

    month: date
    within_month_ids: int  # ids with more than one row in the month (the primary key should prevent it)
    within_month_examples: list[dict] = field(default_factory=list)
    cross_month_ids: int = 0  # ids of this month that other months hold too
    cross_month_rows: int = 0  # rows in other months carrying those ids
    cross_month_examples: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.within_month_ids == 0 and self.cross_month_ids == 0

    @property
    def example_ids(self) -> list[str]:
        return sorted({e["event_id"] for e in self.within_month_examples + self.cross_month_examples})


def duplicate_event_ids(warehouse: Warehouse, month: date, *, examples: int = EXAMPLES) -> DuplicateIds:
    """Count `month`'s event ids stored twice in the month, or also under another month."""
    warehouse.ensure_tables()
    params = warehouse.sql_params({"month": month, "examples": examples})
    raw = warehouse.qualified(raw_events.name)
    within = warehouse.read_frame(WITHIN_MONTH_DUPLICATES_SQL.format(raw_events=raw), params)
    cross = warehouse.read_frame(CROSS_MONTH_DUPLICATES_SQL.format(raw_events=raw), params)
    return DuplicateIds(
        month=month,
        within_month_ids=int(within["ids"].iloc[0]) if len(within) else 0,
        within_month_examples=[{"event_id": str(row.event_id), "copies": int(row.copies)} for row in within.itertuples()],
        cross_month_ids=int(cross["ids"].iloc[0]) if len(cross) else 0,
        cross_month_rows=int(cross["rows_elsewhere"].iloc[0]) if len(cross) else 0,
        cross_month_examples=[
            {"event_id": str(row.event_id), "other_months": _month_span(_date(row.first_month), _date(row.last_month)),
             "other_rows": int(row.other_rows)}
            for row in cross.itertuples()
        ],
    )


def _month_span(first: date, last: date) -> str:
    return f"{first:%Y-%m}" if first == last else f"{first:%Y-%m} … {last:%Y-%m}"


# -- raw_events: purchases that dwarf the month's others ------------------------------------

# A purchase above this many times the month's mean purchase (without its largest ones) is
# reported: one till typo of 9,999,999,999 would otherwise dominate every average unnoticed.
# Reported, never capped: the figure may be real (a wholesale order), and a silent cap would hide
# the typo's row instead of sending someone to fix it.
OUTLIER_FACTOR = 1000
OUTLIER_CANDIDATES = 10  # the largest purchases looked at, and left out of the mean they are compared with

PURCHASE_TOTALS_SQL = """
SELECT COUNT(*) AS purchases, SUM(revenue) AS revenue
FROM {raw_events} WHERE event_month = :month AND event_type = 'purchase'
"""
LARGEST_PURCHASES_SQL = """
SELECT event_id, customer_id, revenue, source_file, source_record
FROM {raw_events} WHERE event_month = :month AND event_type = 'purchase'
ORDER BY revenue DESC, event_id LIMIT :candidates
"""


@dataclass(frozen=True)
class RevenueOutliers:
    month: date
    purchases: int
    revenue: float
    typical: float | None  # mean purchase without the largest OUTLIER_CANDIDATES; None when too few purchases
    outliers: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.outliers

    @property
    def outlier_share(self) -> float:
        return sum(o["revenue"] for o in self.outliers) / self.revenue if self.revenue else 0.0


def revenue_outliers(warehouse: Warehouse, month: date) -> RevenueOutliers:
    """The month's purchases above `OUTLIER_FACTOR` times its typical purchase."""
    raw = warehouse.qualified(raw_events.name)
    params = warehouse.sql_params({"month": month, "candidates": OUTLIER_CANDIDATES})
    totals = warehouse.read_frame(PURCHASE_TOTALS_SQL.format(raw_events=raw), params).iloc[0]
    purchases, revenue = int(totals["purchases"] or 0), float(totals["revenue"] or 0.0)
    largest = warehouse.read_frame(LARGEST_PURCHASES_SQL.format(raw_events=raw), params)
    return find_revenue_outliers(month, purchases, revenue, largest)


def find_revenue_outliers(month: date, purchases: int, revenue: float, largest: pd.DataFrame) -> RevenueOutliers:
    """Pure: which of the month's `largest` purchases exceed `OUTLIER_FACTOR` × the mean of the others."""
    rest = purchases - len(largest)
    if rest <= 0 or len(largest) < OUTLIER_CANDIDATES:
        return RevenueOutliers(month, purchases, revenue, None)
    typical = (revenue - float(largest["revenue"].sum())) / rest
    limit = OUTLIER_FACTOR * max(typical, 0.0)
    outliers = [
        {"event_id": str(r.event_id), "customer_id": str(r.customer_id), "revenue": float(r.revenue),
         "source_file": str(r.source_file), "source_record": int(r.source_record)}
        for r in largest.itertuples() if typical > 0 and r.revenue > limit
    ]
    return RevenueOutliers(month, purchases, revenue, typical, outliers)


# -- raw_events: timestamps after as_of, or outside the partition month ----------------------

TIMESTAMP_BOUNDS_SQL = """
SELECT COUNT(*) AS rows_in_month,
       SUM(CASE WHEN event_timestamp > :latest_allowed THEN 1 ELSE 0 END) AS beyond_as_of,
       SUM(CASE WHEN event_timestamp < :month_start OR event_timestamp >= :next_month_start THEN 1 ELSE 0 END) AS outside_month,
       MIN(event_timestamp) AS earliest, MAX(event_timestamp) AS latest
FROM {raw_events}
WHERE event_month = :month
"""

TIMESTAMP_EXAMPLES_SQL = """
SELECT event_id, event_timestamp
FROM {raw_events}
WHERE event_month = :month
  AND (event_timestamp > :latest_allowed OR event_timestamp < :month_start OR event_timestamp >= :next_month_start)
ORDER BY event_timestamp DESC, event_id
LIMIT :examples
"""


@dataclass(frozen=True)
class TimestampBounds:
    """A month's event timestamps against its as-of instant and its own calendar month."""

    month: date
    as_of: datetime
    tolerance: timedelta
    rows: int
    beyond_as_of: int  # event_timestamp > as_of + tolerance
    outside_month: int  # event_timestamp not in [month start, next month start)
    earliest: datetime | None = None
    latest: datetime | None = None
    examples: list[dict] = field(default_factory=list)

    @property
    def latest_allowed(self) -> datetime:
        return self.as_of + self.tolerance

    @property
    def passed(self) -> bool:
        return self.beyond_as_of == 0 and self.outside_month == 0


def event_timestamp_bounds(warehouse: Warehouse, month: date, *, now: datetime | None = None,
                           tolerance: timedelta = CLOCK_SKEW_TOLERANCE, examples: int = EXAMPLES) -> TimestampBounds:
    """Rows of `month` stamped after its as-of (+ `tolerance`) or outside the month itself.

    The as-of is `month_as_of(month, now)`: the next month's first instant for a past month,
    `now` (default: the current time) for the month in progress. The partition test is strict:
    `raw_events.event_month` is derived from the timestamp, so a row outside its month is a
    loading bug, not clock skew.
    """
    warehouse.ensure_tables()
    as_of = month_as_of(month, now)
    bounds = {
        "month": month,
        "latest_allowed": as_of + tolerance,
        "month_start": _month_start(month),
        "next_month_start": _month_start(add_months(month, 1)),
    }
    raw = warehouse.qualified(raw_events.name)
    summary = warehouse.read_frame(TIMESTAMP_BOUNDS_SQL.format(raw_events=raw), warehouse.sql_params(bounds)).iloc[0]
    rows = _count(summary["rows_in_month"])
    found = []
    beyond, outside = _count(summary["beyond_as_of"]), _count(summary["outside_month"])
    if beyond or outside:
        frame = warehouse.read_frame(TIMESTAMP_EXAMPLES_SQL.format(raw_events=raw),
                                     warehouse.sql_params({**bounds, "examples": examples}))
        found = [{"event_id": str(row.event_id), "event_timestamp": _utc(row.event_timestamp).isoformat()}
                 for row in frame.itertuples()]
    return TimestampBounds(
        month=month, as_of=as_of, tolerance=tolerance, rows=rows, beyond_as_of=beyond, outside_month=outside,
        earliest=_utc(summary["earliest"]) if rows else None, latest=_utc(summary["latest"]) if rows else None,
        examples=found,
    )


# -- customer_clv: last month's BG/NBD fit against this month's purchase dates ---------------

FITS_SQL = """
SELECT model, r, alpha, a, b, converged
FROM {fits}
WHERE as_of_month = :month
ORDER BY model
"""

# Last month's customers (their BG/NBD summary as scored) and their purchase dates this month.
BACKTEST_SQL = """
SELECT c.customer_id, c.frequency, c.recency, c.{T} AS age, c.as_of_date,
       COALESCE(s.purchase_days, 0) AS purchase_days
FROM {clv} c
LEFT JOIN {summary} s ON s.customer_id = c.customer_id AND s.summary_month = :month
WHERE c.as_of_month = :previous
ORDER BY c.customer_id
"""

SUMMARY_AS_OF_SQL = "SELECT MAX(as_of) FROM {summary} WHERE summary_month = :month"


@dataclass(frozen=True)
class ModelQuality:
    """Purchase dates BG/NBD (fitted on the month before) expected in a month, against those seen."""

    month: date
    fit_month: date
    tolerance: float
    skipped: str | None = None  # why there is nothing to compare, when so
    model: str | None = None
    params: BgNbdParams | None = None
    window_days: float = 0.0
    customers: int = 0
    expected: float = 0.0
    actual: int = 0

    @property
    def relative_error(self) -> float:
        return relative_error(self.actual, self.expected)

    @property
    def passed(self) -> bool:
        return self.skipped is not None or self.relative_error <= self.tolerance


def relative_error(actual: float, expected: float) -> float:
    """|actual − expected| / max(expected, 1): the floor keeps tiny expectations (a month barely
    begun, a handful of customers) from turning one purchase into a huge relative error."""
    return abs(actual - expected) / max(expected, 1.0)


def expected_purchase_dates(params: BgNbdParams, window_days: float, frequency, recency, T) -> float:
    """Sum over customers of E[repeat purchase dates in (T, T + window_days]] under BG/NBD."""
    if len(frequency) == 0:
        return 0.0
    return float(np.sum(expected_purchases(params, window_days, frequency, recency, T)))


def _bgnbd_params(fits: pd.DataFrame) -> tuple[str, BgNbdParams] | None:
    """The month's BG/NBD parameters, if the BG/NBD fit converged.

    `clv_model_fits` stores r, alpha, a, b only when BG/NBD converged (its `converged` column
    also needs Gamma-Gamma, which a purchase-count check does not use), so non-null, positive
    parameters are what "a converged BG/NBD fit" means here.
    """
    for row in fits.itertuples():
        values = [row.r, row.alpha, row.a, row.b]
        if all(v is not None and np.isfinite(float(v)) and float(v) > 0 for v in values):
            return str(row.model), BgNbdParams(*(float(v) for v in values))
    return None


def clv_model_quality(warehouse: Warehouse, month: date, *, now: datetime | None = None,
                      tolerance: float = MODEL_QUALITY_TOLERANCE) -> ModelQuality:
    """Back-test month m−1's BG/NBD fit on month m = `month`.

    Each customer scored in m−1 (frequency, recency, T in days, as of the end of m−1) is expected
    `expected_purchases(params, t, x, t_x, T)` repeat purchase dates in the next t days, t being
    the time from as_of(m−1) (= m's first instant) to as_of(m) (m's end, or the summary's run
    time for the month in progress). BG/NBD counts purchase DATES (frequency = distinct purchase
    dates − 1), and every date of m comes after all of the customer's m−1 dates, so each of m's
    distinct purchase dates is one repeat event: the observed count is `purchase_days` of
    `customer_month_summary` for m, summed over the same customers (new customers of m are not
    in the m−1 summary and are left out, as the model says nothing about them).
    """
    previous = add_months(month, -1)
    result = ModelQuality(month=month, fit_month=previous, tolerance=tolerance)
    warehouse.ensure_tables()
    fits = warehouse.read_frame(FITS_SQL.format(fits=warehouse.qualified(clv_model_fits.name)),
                                warehouse.sql_params({"month": previous}))
    if fits.empty:
        return _skip(result, f"no clv_model_fits row for {previous:%Y-%m}: nothing fitted the month before")
    found = _bgnbd_params(fits)
    if found is None:
        return _skip(result, f"the BG/NBD fit of {previous:%Y-%m} did not converge ({fits['model'].iloc[0]}): "
                             "no parameters to test", model=str(fits["model"].iloc[0]))
    model, params = found
    summary = warehouse.qualified(customer_month_summary.name)
    frame = warehouse.read_frame(
        BACKTEST_SQL.format(clv=warehouse.qualified(customer_clv.name), summary=summary, T=warehouse.quote("T")),
        warehouse.sql_params({"month": month, "previous": previous}),
    )
    if frame.empty:
        return _skip(result, f"no customer_clv rows for {previous:%Y-%m}", model=model, params=params)
    previous_end = month - timedelta(days=1)
    stale = sorted({d for d in map(_date, frame["as_of_date"].unique()) if d != previous_end})
    if stale:
        # Scored before m−1 ended: T stops early and the purchases in between are in no summary of m.
        return _skip(result, f"customer_clv of {previous:%Y-%m} is as of {stale[0]}, not the month's end "
                             f"({previous_end}); rerun {previous:%Y-%m}", model=model, params=params)
    start = _month_start(month)
    as_of = _utc(warehouse.scalar(SUMMARY_AS_OF_SQL.format(summary=summary), warehouse.sql_params({"month": month})))
    as_of = as_of or month_as_of(month, now)  # no purchase at all in m yet: the window still ran
    window_days = max((as_of - start).total_seconds(), 0.0) / SECONDS_PER_DAY
    expected = expected_purchase_dates(params, window_days, frame["frequency"].to_numpy(float),
                                       frame["recency"].to_numpy(float), frame["age"].to_numpy(float))
    return ModelQuality(month=month, fit_month=previous, tolerance=tolerance, model=model, params=params,
                        window_days=window_days, customers=len(frame), expected=expected,
                        actual=int(frame["purchase_days"].astype("int64").sum()))


def _skip(result: ModelQuality, reason: str, **fields) -> ModelQuality:
    return ModelQuality(month=result.month, fit_month=result.fit_month, tolerance=result.tolerance,
                        skipped=reason, **fields)
