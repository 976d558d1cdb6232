"""Segment tables as of a month, from customer_clv, customer_rfm and customer_profiles."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from datetime import date, datetime, timezone

import pandas as pd
import pyarrow as pa
from sqlalchemy import select

from customer_analytics.asof import segment_map
from customer_analytics.config import add_months
from customer_analytics.resources.tables import (
    customer_clv,
    customer_profiles,
    customer_rfm,
    customer_segments,
    segment_definitions,
    segment_metrics,
    segment_migration,
)
from customer_analytics.resources.warehouse import GIVE_WAY, Warehouse, arrow_types
from customer_analytics.transforms import segments as transforms
from customer_analytics.transforms.clv_scores import ClvSettings

# Every member of the month with what the segment tables need: value and RFM segment, last month's
# segment, profile country and the figures the metrics sum: one join of the four tables, which the
# membership rows and the per-cell sums each read.
MEMBERS_SQL = """
SELECT clv.customer_id, clv.segment, rfm.rfm_segment, prev.segment AS previous_segment, p.country,
       clv.clv_score, clv.predicted_revenue_24m, rfm.monetary, rfm.recency_days, rfm.frequency
FROM {customer_clv} clv
JOIN {customer_rfm} rfm ON rfm.as_of_month = clv.as_of_month AND rfm.customer_id = clv.customer_id
LEFT JOIN {customer_segments} prev ON prev.as_of_month = :previous AND prev.customer_id = clv.customer_id
LEFT JOIN {customer_profiles} p ON p.customer_id = clv.customer_id
WHERE clv.as_of_month = :month
"""

# The month's membership.
SEGMENTS_SQL = """
SELECT :month, customer_id, segment, rfm_segment, previous_segment,
       (previous_segment IS NULL OR previous_segment <> segment), :computed_at, :run_id
FROM ({members}) members
"""

# The members counted and summed per (segment, RFM segment, country, previous segment): a few
# thousand rows from which `transforms.segments` derives the metrics and the migration. On
# PostgreSQL the float sums are exact NUMERIC sums, so they do not depend on the order rows
# arrive in and a rerun writes the same figures.
CELLS_SQL = """
SELECT segment, rfm_segment, country, previous_segment, COUNT(*) AS customers,
       SUM(clv_score) AS clv_score, SUM({predicted}) AS predicted_revenue_24m,
       SUM({monetary}) AS monetary, SUM(recency_days) AS recency_days, SUM(frequency) AS frequency
FROM ({members}) members
GROUP BY segment, rfm_segment, country, previous_segment
"""


@dataclass
class SegmentTables:
    """What `compute_segments` wrote: membership counts, and the (small) metrics and migration tables."""

    customers: int
    changed: int  # members whose segment differs from the month before (new customers included)
    metrics: pd.DataFrame
    migration: pd.DataFrame


MEMBER_TYPES = {**arrow_types(customer_clv.c.customer_id, customer_clv.c.segment, customer_clv.c.clv_score,
                              customer_clv.c.predicted_revenue_24m, customer_rfm.c.rfm_segment, customer_rfm.c.monetary,
                              customer_rfm.c.recency_days, customer_rfm.c.frequency, customer_profiles.c.country),
                "previous_segment": pa.string()}


def segment_members(warehouse: Warehouse, month: date) -> pd.DataFrame:
    """Every member of the month with the values segment metrics use, by customer (for partial reruns and tests)."""
    return warehouse.read_typed(MEMBERS_SQL.format(**month_tables(warehouse, month)) + "ORDER BY clv.customer_id",
                                {"month": month, "previous": add_months(month, -1)}, MEMBER_TYPES)


def month_tables(warehouse: Warehouse, month: date) -> dict[str, str]:
    """SQL names for the segment queries of `month`: its own customer_clv and customer_rfm partitions,
    the previous month's customer_segments, and customer_profiles (see `Warehouse.partition_of`)."""
    return {"customer_clv": warehouse.partition_of("customer_clv", month),
            "customer_rfm": warehouse.partition_of("customer_rfm", month),
            "customer_segments": warehouse.partition_of("customer_segments", add_months(month, -1)),
            "customer_profiles": warehouse.qualified("customer_profiles")}


def compute_segments(warehouse: Warehouse, month: date, *, run_id: str = "", computed_at: datetime | None = None) -> SegmentTables:
    """Replace the month's customer_segments, segment_metrics and segment_migration together.

    Membership is an INSERT … SELECT in the warehouse; metrics and migration come from its
    per-cell counts and sums (`CELLS_SQL`) through the same transforms a partial rerun uses.
    Both read the month's members (`MEMBERS_SQL`); on PostgreSQL the sums are taken on another
    connection meanwhile (`Replacement.beside`). At 10M events (month 2, three rounds taking
    turns) the step took a median 5.9 s with the join kept in a temporary table that both read,
    one after the other, and 4.8 s with the sums beside.
    """
    computed_at = computed_at or datetime.now(timezone.utc)
    warehouse.ensure_tables()
    names = month_tables(warehouse, month)
    members = MEMBERS_SQL.format(**names)
    previous = add_months(month, -1)
    params = {"month": month, "previous": previous, "computed_at": computed_at, "run_id": run_id}
    stamp = {"as_of_month": pd.Timestamp(month), "computed_at": computed_at, "run_id": run_id}
    exact = "CAST({} AS NUMERIC)" if warehouse.dialect == "postgresql" else "{}"
    cells_sql = CELLS_SQL.format(members=members, predicted=exact.format("predicted_revenue_24m"),
                                 monetary=exact.format("monetary"))
    # The previous month's lock too: a partial rerun of that month changes its segments row by row,
    # which no table lock of `beside` keeps from the sums.
    locks = (f"customer_segments/{month:%Y-%m}", f"customer_segments/{previous:%Y-%m}")
    with warehouse.replace(lock_name=locks) as replacement:
        for table in (customer_segments, segment_metrics, segment_migration):
            replacement.replace_partition(table, month)
        # On one backend: parallel workers would take the cores the membership insert runs on (at
        # month 12 of the full-size benchmark the step took 3.40 s with the sums serial, 4.03 s on
        # workers: medians of three in turns).
        sums = partial(warehouse.read_frame, cells_sql, warehouse.sql_params(params), lock_timeout=GIVE_WAY,
                       parallel_workers=False)
        with replacement.beside(sums, reads=list(names.values())) as cell_rows:
            customers = replacement.append_select(customer_segments, [c.name for c in customer_segments.columns],
                                                  SEGMENTS_SQL.format(members=members), params)
        cells = cell_rows.result()
        if cells is None:  # SQLite, or the other connection gave way
            cells = replacement.query(cells_sql, params)
        metrics = transforms.segment_metrics(cells) if len(cells) else pd.DataFrame(columns=[c.name for c in segment_metrics.columns])
        migration = transforms.segment_migration(cells)
        replacement.append(segment_metrics, metrics.assign(**stamp))
        replacement.append(segment_migration, migration.assign(**stamp))
    changed = cells.loc[cells["previous_segment"].isna() | (cells["previous_segment"] != cells["segment"]), "customers"]
    return SegmentTables(customers, int(changed.sum()), metrics, migration)


def publish_segment_definitions(warehouse: Warehouse, settings: ClvSettings = ClvSettings(), today: date | None = None) -> pd.DataFrame:
    """Rewrite segment_definitions, keeping each segment's creation date and bumping update_date on change."""
    today = today or datetime.now(timezone.utc).date()
    definitions = transforms.segment_definitions(settings, segment_map(warehouse))
    existing = warehouse.read_frame(select(segment_definitions)).set_index("segment_id") if warehouse.scalar(
        select(segment_definitions.c.segment_id).limit(1)) else pd.DataFrame()
    created, updated = [], []
    for row in definitions.itertuples(index=False):
        if row.segment_id in existing.index:
            old = existing.loc[row.segment_id]
            same = (old["segment_rules"], old["segment_description"]) == (row.segment_rules, row.segment_description)
            created.append(pd.Timestamp(old["creation_date"]))
            updated.append(pd.Timestamp(old["update_date"]) if same else pd.Timestamp(today))
        else:
            created.append(pd.Timestamp(today))
            updated.append(pd.Timestamp(today))
    definitions["creation_date"], definitions["update_date"] = created, updated
    with warehouse.replace(lock_name="segment_definitions") as replacement:
        replacement.delete_where(segment_definitions, segment_definitions.c.segment_id.is_not(None))
        replacement.append(segment_definitions, definitions)
    return definitions
