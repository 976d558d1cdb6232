"""RFM scoring of a month: the quintile cuts and segment grid that `customer_rfm` (a view) scores the
month's customer_history against.

The customer_rfm asset stores both (`asof.compute_rfm`). The summaries step takes a scored month's
cuts again from each history it builds, in the same transaction (`stage_rfm_cuts`), so the view
never pairs a history with another history's cuts.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from sqlalchemy import func, select

from customer_analytics.resources.tables import (
    RFM_VALUES,
    customer_history,
    customer_history_builds,
    rfm_cuts,
    rfm_rows_sql,
    rfm_segment_grid,
    rfm_segment_map,
)
from customer_analytics.resources.warehouse import Replacement, Warehouse
from customer_analytics.transforms.rfm import DEFAULT_SEGMENT_MAP, SEGMENT_MAP_COLUMNS, assign_segments


def segment_map(warehouse: Warehouse) -> pd.DataFrame:
    """The RFM segment rules: the warehouse's `rfm_segment_map`, seeded with the defaults when empty."""
    warehouse.ensure_tables()
    if not warehouse.scalar(select(func.count()).select_from(rfm_segment_map)):
        with warehouse.replace(lock_name="rfm_segment_map") as replacement:
            replacement.delete_where(rfm_segment_map, rfm_segment_map.c.priority.is_not(None))
            replacement.append(rfm_segment_map, DEFAULT_SEGMENT_MAP)
    return warehouse.read_frame(select(rfm_segment_map).order_by(rfm_segment_map.c.priority))[list(SEGMENT_MAP_COLUMNS)]


# The month's quintile cuts, stored in `rfm_cuts` (customer_rfm scores the history against them): for
# s = 1..4, the K-th lowest value with K = ceil(s n / 5). A value scores at least s + 1 when at least
# K customers are below it (score 1 + floor(5 (rank - 1) / n), rank counting ties at their lowest),
# that is when it is above the K-th lowest value.
RFM_CUTS_INSERT_SQL = """
WITH h AS (
    SELECT last_purchase_date, purchases, revenue FROM {history} WHERE as_of_month = :month
), {cuts}
SELECT :month, :as_of_date, n, {cut_columns},
       (SELECT built_at FROM {builds} WHERE as_of_month = :month), :computed_at, :run_id
FROM {cut_source}{only_scored}
"""
# PostgreSQL: `percentile_disc` at (K - 0.5) / n is the K-th lowest value (it rounds up to position K
# whatever the float error): one sort per column. Scoring each distinct value and joining it back
# spent about 1 s on the monetary score alone at a million customers.
RFM_PERCENTILE_CUTS_SQL = """c AS (
    SELECT COUNT(*) AS n FROM h
), cuts AS (
    SELECT c.n, {percentiles} FROM h, c GROUP BY c.n
)"""
RFM_PERCENTILE_SQL = "percentile_disc(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY h.{column}) AS {name}_cuts"
RFM_FRACTION_SQL = "CAST((CEIL(c.n * {s} / 5.0) - 0.5) / c.n AS DOUBLE PRECISION)"
# SQLite (no percentile_disc): the values at positions K of each column's order.
RFM_RANKED_CUTS_SQL = """c AS (
    SELECT COUNT(*) AS n FROM h
), {ranked}"""
RFM_RANKED_SQL = "{name}_ranked AS (SELECT {column} AS value, ROW_NUMBER() OVER (ORDER BY {column}) AS position FROM h)"
RFM_RANKED_CUT_SQL = "(SELECT value FROM {name}_ranked WHERE position = (c.n * {s} + 4) / 5)"


def rfm_cuts_insert_sql(warehouse: Warehouse, history: str, builds: str, *, only_scored: bool = False) -> str:
    """`RFM_CUTS_INSERT_SQL` for the warehouse's database: the month's `rfm_cuts` row from `history`, the
    build it records from `builds` (SQL names: a staged history is scored with its staged build).
    With `only_scored`, no row unless the month has cuts already."""
    only = (f"\nWHERE EXISTS (SELECT 1 FROM {warehouse.qualified(rfm_cuts.name)} WHERE as_of_month = :month)"
            if only_scored else "")
    if warehouse.dialect == "postgresql":
        fractions = ", ".join(RFM_FRACTION_SQL.format(s=s) for s in range(1, 5))
        percentiles = ", ".join(RFM_PERCENTILE_SQL.format(fractions=fractions, column=column, name=name)
                                for name, column in RFM_VALUES)
        # An empty month has no group: its row comes from `c` alone, with NULL cuts.
        cuts = RFM_PERCENTILE_CUTS_SQL.format(percentiles=percentiles)
        cut_columns = ", ".join(f"cuts.{name}_cuts[{s}]" for name, _ in RFM_VALUES for s in range(1, 5))
        return RFM_CUTS_INSERT_SQL.format(history=history, builds=builds, cuts=cuts, cut_columns=cut_columns,
                                          cut_source="c LEFT JOIN cuts USING (n)", only_scored=only)
    ranked = ", ".join(RFM_RANKED_SQL.format(name=name, column=column) for name, column in RFM_VALUES)
    cut_columns = ", ".join(RFM_RANKED_CUT_SQL.format(name=name, s=s) for name, _ in RFM_VALUES for s in range(1, 5))
    return RFM_CUTS_INSERT_SQL.format(history=history, builds=builds, cuts=RFM_RANKED_CUTS_SQL.format(ranked=ranked),
                                      cut_columns=cut_columns, cut_source="c", only_scored=only)


def rfm_month_sql(warehouse: Warehouse, month: date, *, cuts: str | None = None, grid: str | None = None) -> str:
    """A subquery of one month's customer_rfm rows (the view's, see `tables.rfm_rows_sql`), read from the
    month's history partition (`Warehouse.partition_of`); `cuts` and `grid` may name staged tables.
    Its parameter is `:month`."""
    sql = rfm_rows_sql(warehouse.dialect, history=warehouse.partition_of(customer_history.name, month),
                       cuts=cuts or warehouse.qualified(rfm_cuts.name),
                       builds=warehouse.qualified(customer_history_builds.name),
                       grid=grid or warehouse.qualified(rfm_segment_grid.name), where="h.as_of_month = :month")
    return f"({sql})"


def segment_grid(rules: pd.DataFrame) -> pd.DataFrame:
    """The segment of every (R, FM) cell, 1–5 × 1–5, under the rules (first match by priority)."""
    cells = pd.MultiIndex.from_product([range(1, 6), range(1, 6)], names=["r_score", "fm_score"]).to_frame(index=False)
    cells["rfm_segment"] = assign_segments(cells["r_score"], cells["fm_score"], rules)
    return cells


def stage_rfm_cuts(warehouse: Warehouse, replacement: Replacement, month: date, *, as_of_date: date, history: str,
                   builds: str, computed_at: datetime, run_id: str, only_scored: bool = False) -> int:
    """Stage `month`'s rfm_cuts row from `history`, replacing the month's (`history` and `builds` are SQL
    names, staged or published). With `only_scored`, only a month scored before gets one (its grid is
    kept): so a history rebuilt by the summaries step is published with its cuts, while a new month
    waits for the customer_rfm asset. Returns the rows staged (0 or 1)."""
    replacement.delete_where(rfm_cuts, rfm_cuts.c.as_of_month == month)
    return replacement.append_select(
        rfm_cuts, [c.name for c in rfm_cuts.columns], rfm_cuts_insert_sql(warehouse, history, builds, only_scored=only_scored),
        {"month": month, "as_of_date": as_of_date, "computed_at": computed_at, "run_id": run_id})


def stage_rfm_grid(warehouse: Warehouse, replacement: Replacement, month: date) -> None:
    """Stage `month`'s rfm_segment_grid under the current rfm_segment_map, replacing the month's."""
    replacement.delete_where(rfm_segment_grid, rfm_segment_grid.c.as_of_month == month)
    replacement.append(rfm_segment_grid, segment_grid(segment_map(warehouse)).assign(as_of_month=pd.Timestamp(month)))
