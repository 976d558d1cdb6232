"""As-of-month tables from the customer-month summaries: RFM and CLV.

A month's figures are as of the END of that month: every purchase before `as_of` (the first
instant of the next month in UTC, or the run time for the month in progress) counts, and
`as_of_date` is the last calendar day covered. Re-running a month gives identical rows apart
from `computed_at` / `run_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import partial

import pandas as pd
import pyarrow as pa

from customer_analytics.resources.tables import (
    clv_model_fits,
    customer_clv,
    customer_history_builds,
    customer_rfm,
    rfm_cuts,
    rfm_segment_grid,
)
from customer_analytics.resources.tables import customer_history as customer_history_table
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.rfm import rfm_month_sql, stage_rfm_cuts, stage_rfm_grid
from customer_analytics.summaries import month_as_of
from customer_analytics.transforms.clv_scores import ClvFits, ClvSettings, btyd_summary, fit_models, score_customers

# One partition of customer_history: the running totals the summaries step keeps per customer.
HISTORY_SQL = """
SELECT {columns}
FROM {history}
WHERE as_of_month = :month
ORDER BY customer_id
"""

# What the CLV models need of the history (btyd_summary): timestamps, the costliest to parse, are not.
CLV_HISTORY_COLUMNS = ("customer_id", "revenue", "purchase_days", "positive_days", "positive_day_revenue",
                       "first_purchase_date", "last_purchase_date", "first_day_revenue")


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


def customer_history(warehouse: Warehouse, as_of: AsOf, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per customer with a purchase before `as_of`: the month's `customer_history` (all or `columns`)."""
    types = {name: kind for name, kind in HISTORY_TYPES.items() if columns is None or name in columns}
    frame = warehouse.read_typed(HISTORY_SQL.format(columns=", ".join(types), history=warehouse.qualified(customer_history_table.name)),
                                 {"month": as_of.month}, types)
    for column in ("first_purchase_at", "last_purchase_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in ("first_purchase_date", "last_purchase_date"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.normalize()
    return frame


def stamp_as_of(frame: pd.DataFrame, as_of: AsOf, computed_at: datetime, run_id: str) -> pd.DataFrame:
    """Add as_of_month (first column), as_of_date, computed_at and run_id to a month's rows."""
    frame.insert(0, "as_of_month", pd.Timestamp(as_of.month))
    frame["as_of_date"] = pd.Timestamp(as_of.day)
    frame["computed_at"] = pd.Timestamp(computed_at)
    frame["run_id"] = run_id
    return frame


@dataclass
class RfmResult:
    """What `compute_rfm` wrote: counts and a preview, for the asset's metadata and checks."""

    rows: int
    history_customers: int  # customers in the month's customer_history: one row each is expected
    segments: dict[str, int]
    scores_in_range: bool
    preview: pd.DataFrame  # the top customers by monetary value


# The month's cuts when they were taken from the month's current history build (by its summaries step):
# scoring that history again would give the same cuts, so they are kept, with this run's stamps.
CURRENT_CUTS_SQL = """
SELECT c.as_of_month, c.as_of_date, c.customers, {cut_columns}, c.history_built_at, :computed_at, :run_id
FROM {cuts} c JOIN {builds} b ON b.as_of_month = c.as_of_month AND b.built_at = c.history_built_at
WHERE c.as_of_month = :month AND c.as_of_date = :as_of_date
"""


def compute_rfm(warehouse: Warehouse, as_of: AsOf, *, run_id: str = "", computed_at: datetime | None = None,
                parallel_workers: bool = True) -> RfmResult:
    """Score the month's customer_history for `customer_rfm` (a view): replace the month's quintile cuts
    (`rfm_cuts`) and its segment grid under the current `rfm_segment_map` (`rfm_segment_grid`).

    The summaries step stores both with each history it builds; cuts taken from the current build are
    kept (with this run's stamps) rather than taken again. `parallel_workers=False` keeps the queries
    on one backend, for when other work has the cores.
    """
    computed_at = computed_at or datetime.now(timezone.utc)
    month = as_of.month
    params = {"month": month, "as_of_date": as_of.day, "computed_at": computed_at, "run_id": run_id}
    with warehouse.replace(lock_name=f"{customer_rfm.name}/{month:%Y-%m}",
                           parallel_workers=parallel_workers) as replacement:
        cut_columns = ", ".join(f"c.{c.name}" for c in rfm_cuts.columns if "_cut_" in c.name)
        replacement.delete_where(rfm_cuts, rfm_cuts.c.as_of_month == month)
        kept = replacement.append_select(rfm_cuts, [c.name for c in rfm_cuts.columns], CURRENT_CUTS_SQL.format(
            cut_columns=cut_columns, cuts=warehouse.qualified(rfm_cuts.name),
            builds=warehouse.qualified(customer_history_builds.name)), params)
        if not kept:
            stage_rfm_cuts(warehouse, replacement, month, as_of_date=as_of.day, computed_at=computed_at, run_id=run_id,
                           history=warehouse.partition_of(customer_history_table.name, month),
                           builds=warehouse.qualified(customer_history_builds.name))
        stage_rfm_grid(warehouse, replacement, month)
        rows = rfm_month_sql(warehouse, month, cuts=replacement.staged(rfm_cuts), grid=replacement.staged(rfm_segment_grid))
        # One pass over the month's rows for the segment counts and the range check (scored as the view scores).
        segments = replacement.query(
            f"SELECT rfm_segment, COUNT(*) AS customers, SUM(CASE WHEN r_score NOT BETWEEN 1 AND 5 "
            f"OR f_score NOT BETWEEN 1 AND 5 OR m_score NOT BETWEEN 1 AND 5 THEN 1 ELSE 0 END) AS out_of_range "
            f"FROM {rows} r GROUP BY rfm_segment", {"month": month})
        preview = replacement.query(
            f"SELECT customer_id, recency_days, frequency, monetary, rfm_score, rfm_segment FROM {rows} r "
            "ORDER BY monetary DESC, customer_id LIMIT 10", {"month": month})
        customers = replacement.query(f"SELECT customers AS n FROM {replacement.staged(rfm_cuts)}", {})
    return RfmResult(rows=int(segments["customers"].sum()), history_customers=int(customers["n"].iloc[0]),
                     segments={str(k): int(v) for k, v in zip(segments["rfm_segment"], segments["customers"])},
                     scores_in_range=int(segments["out_of_range"].sum()) == 0, preview=preview)


@dataclass
class ClvResult:
    scores: pd.DataFrame
    fits: ClvFits


def compute_clv(warehouse: Warehouse, as_of: AsOf, settings: ClvSettings = ClvSettings(), *, run_id: str = "",
                computed_at: datetime | None = None) -> ClvResult:
    """Fit BG/NBD + Gamma-Gamma on the month's as-of summary; replace `customer_clv` and `clv_model_fits`."""
    computed_at = computed_at or datetime.now(timezone.utc)
    summary = btyd_summary(customer_history(warehouse, as_of, CLV_HISTORY_COLUMNS), as_of.day)
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
        replacement.append(customer_clv, scores, constants={
            "as_of_month": as_of.month, "as_of_date": as_of.day, "computed_at": computed_at, "run_id": run_id,
            "model": fits.model})
        replacement.append(clv_model_fits, fit_row)
    return ClvResult(scores, fits)


@dataclass
class ScoresResult:
    """What `compute_scores` wrote: RFM's and CLV's results, None for the one not asked for."""

    rfm: RfmResult | None
    clv: ClvResult | None


def compute_scores(warehouse: Warehouse, as_of: AsOf, settings: ClvSettings = ClvSettings(), *, rfm: bool = True,
                   clv: bool = True, run_id: str = "", computed_at: datetime | None = None) -> ScoresResult:
    """Replace the month's `customer_rfm` (with `rfm`) and its `customer_clv` and `clv_model_fits` (with `clv`).

    Both read the month's customer_history alone, and each publishes in its own transaction. So on
    PostgreSQL they run side by side: RFM's cuts and counts are queries in a server backend, while
    CLV reads, fits and scores in this process (`Warehouse.beside`). SQLite takes one writer at a
    time, so there RFM runs first. When both fail, CLV's error is raised; RFM's thread has ended by then.
    """
    computed_at = computed_at or datetime.now(timezone.utc)
    score_rfm = partial(compute_rfm, warehouse, as_of, run_id=run_id, computed_at=computed_at)
    score_clv = partial(compute_clv, warehouse, as_of, settings, run_id=run_id, computed_at=computed_at)
    if not (rfm and clv):
        return ScoresResult(score_rfm() if rfm else None, score_clv() if clv else None)
    # RFM's queries on one backend: parallel workers would take the cores CLV runs on.
    with warehouse.beside(score_rfm, parallel_workers=False) as rfm_scores:
        clv_result = score_clv()
    return ScoresResult(rfm_scores.result(), clv_result)


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
