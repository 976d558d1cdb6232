"""Segment-targeted rescoring: one month's RFM, CLV and segment rows for chosen customers, no refit.

A rerun request names a month and a value segment, or `all` (optionally a list of customers).
The customers rescored (the targets) are
* the customers whose `customer_clv` row for the month is in that segment (every scored
  customer for `all`) — or, when the request lists customers, exactly those customers, the
  segment then ignored — and
* every customer with a purchase before the month's as-of instant but no `customer_clv` row
  for it yet (new customers are always scored), or a `customer_clv` row without its
  `customer_rfm` or `customer_segments` row (left so by an older rerun, or by a run that
  materialized one table alone): a rerun leaves no customer half scored.

Everything the month's views and segment tables read about a target is recomputed from the
month's current `customer_history`, the same rows a full month run reads:
* CLV from the month's model as stored in `clv_model_fits` (the same parameters, or the same
  heuristic); `clv_score` is the percentile among every customer of the month;
* RFM as `compute_rfm` defines it (`transforms.rfm.rfm_table`), the quintile scores ranked
  among every customer of the month's current history — not against the stored rows' score
  boundaries — so a target's `customer_rfm` row is exactly the row a full month run on the
  same history would write for it (same as-of date; see below).
Exactly the targets' rows of `customer_clv`, `customer_rfm` and `customer_segments` are
replaced, and the month's `segment_metrics` and `segment_migration` are recomputed from the
resulting members, all in one transaction; the rows of every other customer are left as they
were. So an untouched customer keeps the scores of its last run: where the targets' changes
move a quintile boundary, a full month run could give that customer another R, F or M score
(and RFM segment), which the next full run writes.

The as-of date is the one the month's scores were computed for (a month still in progress is
not moved forward by a rerun), unless the history now holds a later purchase; the targets'
recency is counted to that date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import func, select

from customer_analytics.asof import RFM_COLUMNS, AsOf, clv_rows, customer_history, segment_map, stamp_as_of
from customer_analytics.config import ConfigError, add_months, month_key
from customer_analytics.reruns import ALL_SEGMENTS
from customer_analytics.resources.tables import (
    clv_model_fits,
    customer_clv,
    customer_profiles,
    customer_rfm,
    customer_segments,
    segment_metrics,
    segment_migration,
)
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.segments import segment_members
from customer_analytics.transforms import segments as segment_transforms
from customer_analytics.transforms.clv_scores import ClvFits, ClvSettings, btyd_summary
from customer_analytics.transforms.models import BgNbdParams, FitResult, GammaGammaParams
from customer_analytics.transforms.rfm import rfm_table

RFM_FIELDS = ["rfm_segment", "monetary", "recency_days", "frequency"]


class RescoreError(ConfigError):
    """The month cannot be rescored (no fitted model, no scores); the message says what to do."""


@dataclass
class RescoreResult:
    month: date
    segment: str
    model: str
    as_of_date: date
    targeted: int  # customers asked for (segment members or the listed ids) plus new customers
    rescored: int  # rows written to customer_clv / customer_rfm / customer_segments
    new_customers: int  # of which had no customer_clv row before
    removed: int  # targeted customers with a row but no purchase before as_of any more
    changed_segment: int  # rescored customers whose value segment differs from their old row's
    completed: int = 0  # of which had a customer_clv row but lacked their customer_rfm or customer_segments row
    unknown_customers: list[str] = field(default_factory=list)  # listed ids without purchases
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    listed: int | None = None  # customers the request listed (its segment then ignored), None for a segment

    @property
    def errors(self) -> int:
        """Listed customers that could not be scored (no purchase before as_of): the request's `errors`."""
        return len(self.unknown_customers)

    @property
    def scope(self) -> str:
        """What was asked for, as the message names it: never a segment the request's customer list overrode."""
        if self.listed is not None:
            return f"{self.listed:,} listed customer{'s' if self.listed != 1 else ''}"
        return "all segments" if self.segment == ALL_SEGMENTS else self.segment

    def summary(self) -> str:
        text = (f"{month_key(self.month)} {self.scope}: rescored {self.rescored:,} customers "
                f"({self.new_customers:,} new, {self.changed_segment:,} changed segment) with the month's "
                f"{self.model} model")
        if self.completed:
            text += f"; {self.completed:,} of them had lacked their customer_rfm or customer_segments row"
        if self.removed:
            text += f"; removed {self.removed:,} rows of customers without purchases before as_of"
        if self.unknown_customers:
            shown = ", ".join(self.unknown_customers[:10]) + (" …" if len(self.unknown_customers) > 10 else "")
            text += f"; {len(self.unknown_customers):,} listed customers have no purchases: {shown}"
        return text


def _isin(ids: pd.Series, keys) -> np.ndarray:
    """`ids.isin(keys)` for string ids, vectorized in Arrow (pandas converts each key to an Arrow scalar)."""
    value_set = keys if isinstance(keys, pa.Array) else pa.array(list(keys), type=pa.string())
    return pc.is_in(pa.array(ids, type=pa.string()), value_set=value_set).to_numpy(zero_copy_only=False)


def stored_fits(warehouse: Warehouse, month: date) -> tuple[ClvFits, str]:
    """The month's fitted models as `ClvFits` (non-converged parts as NaN), and the stored model name."""
    rows = warehouse.read_frame(select(clv_model_fits).where(clv_model_fits.c.as_of_month == month))
    if rows.empty:
        raise RescoreError(f"month {month_key(month)} has no fitted CLV model: materialize customer_clv for it first")
    row = rows.iloc[0]

    def result(params_type, names):
        values = [row[name] for name in names]
        converged = all(v is not None and not pd.isna(v) for v in values)
        params = params_type(*(float(v) if converged else np.nan for v in values))
        return FitResult(params, np.nan, converged, int(row["n_customers"]), "stored fit" if converged else "not fitted")

    fits = ClvFits(result(BgNbdParams, ("r", "alpha", "a", "b")), result(GammaGammaParams, ("p", "q", "gamma")),
                   int(row["n_customers"]), int(row["n_repeat_customers"]))
    return fits, str(row["model"])


def _as_of(warehouse: Warehouse, month: date, history: pd.DataFrame) -> AsOf:
    stored = warehouse.scalar(select(func.max(customer_clv.c.as_of_date)).where(customer_clv.c.as_of_month == month))
    if stored is None:
        raise RescoreError(f"month {month_key(month)} has no CLV scores: materialize customer_clv for it first")
    day = date.fromisoformat(str(stored)[:10])
    if len(history):
        day = max(day, pd.Timestamp(history["last_purchase_date"].max()).date())
    instant = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    return AsOf(month, min(instant, AsOf.for_month(month).instant), day)


def rescore(warehouse: Warehouse, month: date, segment: str, customer_ids: tuple[str, ...] | None = None,
            settings: ClvSettings = ClvSettings(), *, run_id: str = "", computed_at: datetime | None = None) -> RescoreResult:
    """Rescore one month's `segment` (or the listed customers) and its new customers; see the module docstring."""
    computed_at = computed_at or datetime.now(timezone.utc)
    warehouse.ensure_tables()
    rules = segment_map(warehouse)  # before the locks: seeding an empty map is a publication of its own
    locks = (f"customer_clv/{month:%Y-%m}", f"customer_rfm/{month:%Y-%m}", f"customer_segments/{month:%Y-%m}")
    # Everything is read while holding the month's CLV, RFM and segment locks: a nightly run cannot
    # replace these tables between this read and the publication below.
    with warehouse.replace(lock_name=locks) as replacement:
        fits, model = stored_fits(warehouse, month)
        history = customer_history(warehouse, AsOf.for_month(month))
        as_of = _as_of(warehouse, month, history)
        old = warehouse.read_frame(select(customer_clv.c.customer_id, customer_clv.c.segment)
                                   .where(customer_clv.c.as_of_month == month))
        with_rfm = warehouse.read_frame(select(customer_rfm.c.customer_id).where(customer_rfm.c.as_of_month == month))
        kept_segments = warehouse.read_frame(
            select(customer_segments.c.customer_id, customer_segments.c.segment, customer_segments.c.previous_segment)
            .where(customer_segments.c.as_of_month == month))
        known = set(history["customer_id"])
        scored_before = set(old["customer_id"])
        if customer_ids is None:
            asked = set(old["customer_id"] if segment == ALL_SEGMENTS else old.loc[old["segment"] == segment, "customer_id"])
            unknown: list[str] = []
        else:
            asked = set(customer_ids)
            unknown = sorted(asked - known)
        new = known - scored_before
        # Scored but missing a row the segment tables join on: the metrics would leave them out.
        incomplete = (known & scored_before) - (set(with_rfm["customer_id"]) & set(kept_segments["customer_id"]))
        targets = asked | new | incomplete
        target_ids = pa.array(sorted(targets), type=pa.string())

        summary = btyd_summary(history, as_of.day)
        scores = clv_rows(summary, fits, settings)
        scores["model"] = model
        scores = stamp_as_of(scores[_isin(scores["customer_id"], target_ids)].reset_index(drop=True), as_of, computed_at, run_id)
        # Ranked among all the month's customers, as a full run ranks them (see the module docstring).
        rfm = rfm_table(history, as_of.day, rules)
        rfm = stamp_as_of(rfm[_isin(rfm["customer_id"], target_ids)].reset_index(drop=True), as_of, computed_at,
                          run_id)[RFM_COLUMNS]

        members = _members(warehouse, month, target_ids, scores, rfm)
        previous = warehouse.read_frame(select(customer_segments.c.customer_id, customer_segments.c.segment)
                                        .where(customer_segments.c.as_of_month == add_months(month, -1)))
        rescored_segments = segment_transforms.customer_segments(members[_isin(members["customer_id"], target_ids)], previous)
        kept_segments = kept_segments[~_isin(kept_segments["customer_id"], target_ids)]
        all_segments = pd.concat([kept_segments, rescored_segments[kept_segments.columns]], ignore_index=True)
        metrics = segment_transforms.segment_metrics(members) if len(members) else pd.DataFrame(columns=[c.name for c in segment_metrics.columns])
        migration = segment_transforms.segment_migration(all_segments)

        stamp = {"as_of_month": pd.Timestamp(month), "computed_at": computed_at, "run_id": run_id}
        target_keys = replacement.stage_keys("customer_id", target_ids.to_pylist())
        replacement.replace_rows(customer_clv, month, target_keys)
        replacement.append(customer_clv, scores)
        replacement.replace_rows(customer_rfm, month, target_keys)
        replacement.append(customer_rfm, rfm)
        replacement.replace_rows(customer_segments, month, target_keys)
        replacement.append(customer_segments, rescored_segments.assign(**stamp))
        for table, frame in ((segment_metrics, metrics), (segment_migration, migration)):
            replacement.replace_partition(table, month)
            replacement.append(table, frame.assign(**stamp))

    before = old.set_index("customer_id")["segment"]
    previous_segment = scores["customer_id"].map(before)
    return RescoreResult(
        month=month, segment=segment, model=model, as_of_date=as_of.day, targeted=len(targets), rescored=len(scores),
        new_customers=len(new), removed=len((asked - known) & set(before.index)), completed=len(incomplete),
        changed_segment=int((previous_segment.notna() & (previous_segment != scores["segment"])).sum()),
        unknown_customers=unknown, scores=scores, listed=None if customer_ids is None else len(set(customer_ids)),
    )


def _members(warehouse: Warehouse, month: date, target_ids: pa.Array, scores: pd.DataFrame,
             rfm: pd.DataFrame) -> pd.DataFrame:
    """Every segment member of the month after the rescore: the stored rows of the others, the new CLV
    and RFM rows of the targets (a target without a purchase before as_of any more is no member)."""
    columns = ["customer_id", "segment", "clv_score", "predicted_revenue_24m", *RFM_FIELDS, "country"]
    stored = segment_members(warehouse, month)  # the nightly segment step's own query
    stored = stored[~_isin(stored["customer_id"], target_ids)]
    countries = warehouse.read_frame(select(customer_profiles.c.customer_id, customer_profiles.c.country)).set_index("customer_id")["country"]
    # Both come from the same history: every scored target has its RFM row.
    rescored = scores[["customer_id", "segment", "clv_score", "predicted_revenue_24m"]].merge(
        rfm[["customer_id", *RFM_FIELDS]], on="customer_id", how="inner", validate="one_to_one")
    rescored["country"] = rescored["customer_id"].map(countries)
    members = pd.concat([stored[columns], rescored[columns]], ignore_index=True)
    return members.sort_values("customer_id", ignore_index=True)
