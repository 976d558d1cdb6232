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
from customer_analytics.transforms.rfm import DEFAULT_SEGMENT_MAP, SEGMENT_MAP_COLUMNS, assign_segments

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


# RFM scored where the history lives: the month's customers make no round trip through pandas. The
# definitions are those of `transforms.rfm.rfm_table` (the reference the tests hold this to): a
# customer's rank is 1 + the customers with a lower value (ties share their lowest rank), and the
# score 1 + floor(5 (rank - 1) / n) in integer arithmetic, so it depends on the value alone.
# `{scoring}` makes the r, f and m scores of each row of `h` (`RFM_CUTS_SQL` on PostgreSQL,
# `RFM_VALUE_SCORES_SQL` elsewhere).
RFM_SQL = """
WITH h AS (
    SELECT customer_id, first_purchase_at, last_purchase_at, last_purchase_date, purchases, revenue
    FROM {history}
    WHERE as_of_month = :month
), {scoring}, grid (r_score, fm_score, rfm_segment) AS (
    VALUES {grid}
), scored AS (
    SELECT h.customer_id, h.first_purchase_at, h.last_purchase_at, {recency} AS recency_days,
           h.purchases AS frequency, h.revenue AS monetary, h.revenue / h.purchases AS avg_order_value,
           {r_score} AS r_score, {f_score} AS f_score, {m_score} AS m_score
    FROM h {score_joins}
)
SELECT :month, s.customer_id, s.first_purchase_at, s.last_purchase_at, s.recency_days, s.frequency, s.monetary,
       s.avg_order_value, s.r_score, s.f_score, s.m_score,
       CAST(s.r_score AS TEXT) || CAST(s.f_score AS TEXT) || CAST(s.m_score AS TEXT),
       COALESCE(g.rfm_segment, 'Unclassified'), (s.f_score + s.m_score + 1) / 2, :as_of_date, :computed_at, :run_id
FROM scored s
LEFT JOIN grid g ON g.r_score = s.r_score AND g.fm_score = (s.f_score + s.m_score + 1) / 2
"""
# PostgreSQL: a score is 1 + the number of its four cuts a value is above. A value scores at least
# s + 1 when 5 (rank - 1) >= s n, that is when at least K = ceil(s n / 5) customers are below it:
# when it is above the K-th lowest value (`percentile_disc` at (K - 0.5) / n, which rounds up to
# position K whatever the float error). Four order statistics per column from one sort each,
# then no join: at a million customers with 438,000 distinct amounts, scoring each distinct
# value and joining it back spent about 1 s on the monetary score alone.
RFM_CUTS_SQL = """f AS (
    SELECT ARRAY[{fractions}] AS fractions FROM (SELECT COUNT(*) AS n FROM h) c
), cuts AS (
    SELECT {cuts} FROM h
)"""
RFM_CUT_SQL = "percentile_disc((SELECT fractions FROM f)) WITHIN GROUP (ORDER BY h.{column}) AS {name}_cuts"
RFM_CUT_FRACTION_SQL = "CAST((CEIL(n * {s} / 5.0) - 0.5) / NULLIF(n, 0) AS DOUBLE PRECISION)"
RFM_ABOVE_CUTS_SQL = "1 + " + " + ".join(f"CASE WHEN h.{{column}} > cuts.{{name}}_cuts[{s}] THEN 1 ELSE 0 END" for s in range(1, 5))
# SQLite (no percentile_disc): the score of each distinct value is computed once and joined back.
RFM_VALUE_SCORES_SQL = """{counts}, n AS (
    SELECT CAST(SUM(customers) AS BIGINT) AS n FROM f_counts
), {scores}"""
# The customers of each distinct value of a column of `h`. The customer count n is the sum of one
# of them (a few rows) rather than another pass over h, cast back to an integer (the scores are
# integer arithmetic).
VALUE_COUNTS_SQL = """{name}_counts AS (
    SELECT {column} AS value, COUNT(*) AS customers FROM h GROUP BY {column}
)"""
# The score of each distinct value (higher is better): customers below it, times 5, over n.
VALUE_SCORES_SQL = """{name}_scores AS (
    SELECT v.value, 1 + 5 * (CAST(SUM(v.customers) OVER (ORDER BY v.value) AS BIGINT) - v.customers) / n.n AS score
    FROM {name}_counts v, n
)"""
RFM_VALUES = (("r", "last_purchase_date"), ("f", "purchases"), ("m", "revenue"))
RFM_COLUMNS = ["as_of_month", "customer_id", "first_purchase_at", "last_purchase_at", "recency_days", "frequency",
               "monetary", "avg_order_value", "r_score", "f_score", "m_score", "rfm_score", "rfm_segment", "fm_score",
               "as_of_date", "computed_at", "run_id"]


def rfm_scoring(warehouse: Warehouse) -> dict[str, str]:
    """The parts of `RFM_SQL` that score r, f and m on `warehouse`'s database."""
    if warehouse.dialect == "postgresql":
        fractions = ", ".join(RFM_CUT_FRACTION_SQL.format(s=s) for s in range(1, 5))
        cuts = ", ".join(RFM_CUT_SQL.format(column=column, name=name) for name, column in RFM_VALUES)
        return {"scoring": RFM_CUTS_SQL.format(cuts=cuts, fractions=fractions), "score_joins": "CROSS JOIN cuts",
                **{f"{name}_score": RFM_ABOVE_CUTS_SQL.format(column=column, name=name) for name, column in RFM_VALUES}}
    counts = ", ".join(VALUE_COUNTS_SQL.format(name=name, column=column) for name, column in RFM_VALUES)
    scores = ", ".join(VALUE_SCORES_SQL.format(name=name) for name, _ in RFM_VALUES)
    joins = " ".join(f"JOIN {name}_scores {name} ON {name}.value = h.{column}" for name, column in RFM_VALUES)
    return {"scoring": RFM_VALUE_SCORES_SQL.format(counts=counts, scores=scores), "score_joins": joins,
            **{f"{name}_score": f"{name}.score" for name, _ in RFM_VALUES}}


def segment_grid(rules: pd.DataFrame) -> pd.DataFrame:
    """The segment of every (R, FM) cell, 1–5 × 1–5, under the rules (first match by priority)."""
    cells = pd.MultiIndex.from_product([range(1, 6), range(1, 6)], names=["r_score", "fm_score"]).to_frame(index=False)
    cells["rfm_segment"] = assign_segments(cells["r_score"], cells["fm_score"], rules)
    return cells


@dataclass
class RfmResult:
    """What `compute_rfm` wrote: counts and a preview, for the asset's metadata and checks."""

    rows: int
    history_customers: int  # customers in the month's customer_history: one row each is expected
    segments: dict[str, int]
    scores_in_range: bool
    preview: pd.DataFrame  # the top customers by monetary value


def compute_rfm(warehouse: Warehouse, as_of: AsOf, *, run_id: str = "", computed_at: datetime | None = None,
                parallel_workers: bool = True) -> RfmResult:
    """Replace `customer_rfm` for the month, computed in the warehouse from the month's customer_history.

    `parallel_workers=False` keeps its queries on one backend, for when other work has the cores.
    """
    computed_at = computed_at or datetime.now(timezone.utc)
    grid = segment_grid(segment_map(warehouse))
    history = warehouse.qualified(customer_history_table.name)
    if warehouse.dialect == "postgresql":
        recency = "CAST(:as_of_date AS DATE) - h.last_purchase_date"
    else:
        recency = "CAST(julianday(:as_of_date) - julianday(h.last_purchase_date) AS INTEGER)"
    # Scores come from integers 1-5 built here; only the segment names (editable rows) are bound.
    cells = ", ".join(f"({int(cell.r_score)}, {int(cell.fm_score)}, CAST(:segment_{index} AS VARCHAR))"
                      for index, cell in enumerate(grid.itertuples(index=False)))
    params = {"month": as_of.month, "as_of_date": as_of.day, "computed_at": computed_at, "run_id": run_id,
              **{f"segment_{index}": name for index, name in enumerate(grid["rfm_segment"])}}
    sql = RFM_SQL.format(recency=recency, history=history, grid=cells, **rfm_scoring(warehouse))
    with warehouse.replace(lock_name=f"{customer_rfm.name}/{as_of.month:%Y-%m}",
                           parallel_workers=parallel_workers) as replacement:
        replacement.replace_partition(customer_rfm, as_of.month)
        rows = replacement.append_select(customer_rfm, RFM_COLUMNS, sql, params)
        staged = replacement.staged(customer_rfm)
        # One scan of the staged rows for both the segment counts and the range check.
        segments = replacement.query(
            f"SELECT rfm_segment, COUNT(*) AS customers, SUM(CASE WHEN r_score NOT BETWEEN 1 AND 5 "
            f"OR f_score NOT BETWEEN 1 AND 5 OR m_score NOT BETWEEN 1 AND 5 THEN 1 ELSE 0 END) AS out_of_range "
            f"FROM {staged} GROUP BY rfm_segment", {})
        preview = replacement.query(
            f"SELECT customer_id, recency_days, frequency, monetary, rfm_score, rfm_segment FROM {staged} "
            "ORDER BY monetary DESC, customer_id LIMIT 10", {})
        customers = replacement.query(f"SELECT COUNT(*) AS n FROM {history} WHERE as_of_month = :month",
                                      {"month": as_of.month})
    return RfmResult(rows=rows, history_customers=int(customers["n"].iloc[0]),
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
    scores = stamp_as_of(clv_rows(summary, fits, settings), as_of, computed_at, run_id)
    write_clv(warehouse, as_of, scores, fits, computed_at=computed_at, run_id=run_id)
    return ClvResult(scores, fits)


def clv_rows(summary: pd.DataFrame, fits: ClvFits, settings: ClvSettings = ClvSettings()) -> pd.DataFrame:
    """`customer_clv`'s rows without the stamps: each customer's scores and the BG/NBD inputs they came from."""
    scores = score_customers(summary, fits, settings)
    for column in ("frequency", "recency", "T"):
        scores[column] = summary[column].to_numpy()
    return scores


def write_clv(warehouse: Warehouse, as_of: AsOf, scores: pd.DataFrame, fits: ClvFits, *, computed_at: datetime,
              run_id: str) -> None:
    """Replace the month's `customer_clv` with `scores` and its `clv_model_fits` with `fits`, in one transaction."""
    with warehouse.replace(lock_name=f"customer_clv/{as_of.month:%Y-%m}") as replacement:
        replacement.replace_partition(customer_clv, as_of.month)
        replacement.replace_partition(clv_model_fits, as_of.month)
        replacement.append(customer_clv, scores, constants={
            "as_of_month": as_of.month, "as_of_date": as_of.day, "computed_at": computed_at, "run_id": run_id,
            "model": fits.model})
        replacement.append(clv_model_fits, _fit_row(fits, as_of, computed_at, run_id))


@dataclass
class ScoresResult:
    """What `compute_scores` wrote: RFM's and CLV's results, None for the one not asked for."""

    rfm: RfmResult | None
    clv: ClvResult | None


def compute_scores(warehouse: Warehouse, as_of: AsOf, settings: ClvSettings = ClvSettings(), *, rfm: bool = True,
                   clv: bool = True, run_id: str = "", computed_at: datetime | None = None) -> ScoresResult:
    """Replace the month's `customer_rfm` (with `rfm`) and its `customer_clv` and `clv_model_fits` (with `clv`).

    Both read the month's customer_history alone, and each publishes its own partitions in its
    own transaction. So on PostgreSQL they run side by side: RFM is one INSERT … SELECT in a
    server backend, while CLV reads, fits and scores in this process and keeps the other core
    busy (`Warehouse.beside`). At 10,000,000 events and a million customers, 12.0 s one after the
    other, 8.2 s together. SQLite takes one writer at a time, so there RFM runs first. When both
    fail, CLV's error is raised; RFM's thread has ended by then.
    """
    computed_at = computed_at or datetime.now(timezone.utc)
    score_rfm = partial(compute_rfm, warehouse, as_of, run_id=run_id, computed_at=computed_at)
    score_clv = partial(compute_clv, warehouse, as_of, settings, run_id=run_id, computed_at=computed_at)
    if not (rfm and clv):
        return ScoresResult(score_rfm() if rfm else None, score_clv() if clv else None)
    # RFM's queries on one backend: parallel workers would take the cores CLV runs on (at month 12 of
    # the full-size benchmark the step took 5.70 s with them, 5.48 s without: medians of three in turns).
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
