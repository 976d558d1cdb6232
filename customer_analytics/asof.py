"""As-of-month tables from the customer-month summaries: RFM and CLV.

A month's figures are as of the END of that month: every purchase before `as_of` (the first
instant of the next month in UTC, or the run time for the month in progress) counts, and
`as_of_date` is the last calendar day covered. Re-running a month gives identical rows apart
from `computed_at` / `run_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
from sqlalchemy import func, select

from customer_analytics.resources.tables import (
    clv_model_fits,
    customer_clv,
    customer_rfm,
    rfm_segment_map,
)
from customer_analytics.resources.tables import customer_history as customer_history_table
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.summaries import month_as_of
from customer_analytics.transforms.clv_scores import ClvFits, ClvSettings, btyd_summary, fit_models, score_customers
from customer_analytics.transforms.rfm import DEFAULT_SEGMENT_MAP, SEGMENT_MAP_COLUMNS, rfm_table

# One partition of customer_history: the running totals the summaries step keeps per customer.
HISTORY_SQL = """
SELECT customer_id, purchases, revenue, purchase_days, positive_days, positive_day_revenue,
       first_purchase_at, last_purchase_at, first_purchase_date, last_purchase_date, first_month, first_day_revenue
FROM {history}
WHERE as_of_month = :month
ORDER BY customer_id
"""


HISTORY_TYPES = {
    "customer_id": pa.string(), "purchases": pa.int64(), "revenue": pa.float64(), "purchase_days": pa.int64(),
    "positive_days": pa.int64(), "positive_day_revenue": pa.float64(),
    "first_purchase_at": pa.timestamp("us", tz="UTC"), "last_purchase_at": pa.timestamp("us", tz="UTC"),
    "first_purchase_date": pa.date32(), "last_purchase_date": pa.date32(), "first_month": pa.date32(),
    "first_day_revenue": pa.float64(),
}


@dataclass(frozen=True)
class AsOf:
    month: date
    instant: datetime  # purchases strictly before it count
    day: date  # as_of_date: the last calendar day covered

    @classmethod
    def for_month(cls, month: date, now: datetime | None = None) -> "AsOf":
        instant = month_as_of(month, now)
        return cls(month, instant, (instant - timedelta(microseconds=1)).date())


def customer_history(warehouse: Warehouse, as_of: AsOf) -> pd.DataFrame:
    """One row per customer with a purchase before `as_of`: the month's `customer_history`."""
    frame = warehouse.read_typed(HISTORY_SQL.format(history=warehouse.qualified(customer_history_table.name)),
                                 {"month": as_of.month}, HISTORY_TYPES)
    for column in ("first_purchase_at", "last_purchase_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in ("first_purchase_date", "last_purchase_date"):
        frame[column] = pd.to_datetime(frame[column]).dt.normalize()
    return frame


def segment_map(warehouse: Warehouse) -> pd.DataFrame:
    """The RFM segment rules: the warehouse's `rfm_segment_map`, seeded with the defaults when empty."""
    warehouse.ensure_tables()
    if not warehouse.scalar(select(func.count()).select_from(rfm_segment_map)):
        with warehouse.replace(lock_name="rfm_segment_map") as replacement:
            replacement.delete_where(rfm_segment_map, rfm_segment_map.c.priority.is_not(None))
            replacement.append(rfm_segment_map, DEFAULT_SEGMENT_MAP)
    return warehouse.read_frame(select(rfm_segment_map).order_by(rfm_segment_map.c.priority))[list(SEGMENT_MAP_COLUMNS)]


def stamp_as_of(frame: pd.DataFrame, as_of: AsOf, computed_at: datetime, run_id: str) -> pd.DataFrame:
    """Add as_of_month (first column), as_of_date, computed_at and run_id to a month's rows."""
    frame.insert(0, "as_of_month", pd.Timestamp(as_of.month))
    frame["as_of_date"] = pd.Timestamp(as_of.day)
    frame["computed_at"] = pd.Timestamp(computed_at)
    frame["run_id"] = run_id
    return frame


def compute_rfm(warehouse: Warehouse, as_of: AsOf, *, run_id: str = "", computed_at: datetime | None = None) -> pd.DataFrame:
    """Replace `customer_rfm` for the month; returns the rows written."""
    computed_at = computed_at or datetime.now(timezone.utc)
    rules = segment_map(warehouse)
    rfm = stamp_as_of(rfm_table(customer_history(warehouse, as_of), as_of.day, rules), as_of, computed_at, run_id)
    warehouse.replace_month(customer_rfm, as_of.month, rfm)
    return rfm


@dataclass
class ClvResult:
    scores: pd.DataFrame
    fits: ClvFits


def compute_clv(warehouse: Warehouse, as_of: AsOf, settings: ClvSettings = ClvSettings(), *, run_id: str = "",
                computed_at: datetime | None = None) -> ClvResult:
    """Fit BG/NBD + Gamma-Gamma on the month's as-of summary; replace `customer_clv` and `clv_model_fits`."""
    computed_at = computed_at or datetime.now(timezone.utc)
    summary = btyd_summary(customer_history(warehouse, as_of), as_of.day)
    fits = fit_models(summary)
    scores = score_customers(summary, fits, settings)
    scores["frequency"] = summary["frequency"].to_numpy()
    scores["recency"] = summary["recency"].to_numpy()
    scores["T"] = summary["T"].to_numpy()
    scores = stamp_as_of(scores, as_of, computed_at, run_id)
    fit_row = _fit_row(fits, as_of, computed_at, run_id)
    with warehouse.replace(lock_name=f"customer_clv/{as_of.month:%Y-%m}") as replacement:
        replacement.replace_partition(customer_clv, as_of.month)
        replacement.replace_partition(clv_model_fits, as_of.month)
        replacement.append(customer_clv, scores)
        replacement.append(clv_model_fits, fit_row)
    return ClvResult(scores, fits)


def _fit_row(fits: ClvFits, as_of: AsOf, fitted_at: datetime, run_id: str) -> pd.DataFrame:
    bg, gg = fits.bgnbd, fits.gamma_gamma

    def value(result, name):
        number = getattr(result.params, name, None) if result.converged else None
        return float(number) if number is not None else None

    return pd.DataFrame([{
        "as_of_month": pd.Timestamp(as_of.month), "model": fits.model,
        "r": value(bg, "r"), "alpha": value(bg, "alpha"), "a": value(bg, "a"), "b": value(bg, "b"),
        "p": value(gg, "p"), "q": value(gg, "q"), "gamma": value(gg, "gamma"),
        "log_likelihood": float(bg.log_likelihood) if bg.converged else None,
        "gamma_gamma_log_likelihood": float(gg.log_likelihood) if gg.converged else None,
        "n_customers": fits.n_customers, "n_repeat_customers": fits.n_repeat_customers,
        "converged": fits.converged, "message": f"BG/NBD: {bg.message}; Gamma-Gamma: {gg.message}",
        "fitted_at": fitted_at, "run_id": run_id,
    }])
