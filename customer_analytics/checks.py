"""Database-backed asset checks, one evaluation per monthly partition.

Thin Dagster wiring: the SQL and the arithmetic live in `customer_analytics.quality`. Every check
declares `partitions_def=monthly_partitions` (the same as its asset): without it Dagster cannot
tie a result to a partition and per-partition check rows stay PLANNED in the UI.

Blocking: a blocking check that fails with ERROR severity fails its step, and the assets
downstream of the checked asset in the same run are skipped (they keep their previously
published rows); other runs and partitions are not affected.

* `no_duplicate_event_ids` is blocking: an id stored under two months is counted as a purchase in
  both months' summaries, so every derived table of the month (RFM, CLV, cohorts, segments)
  would be published with inflated figures. Fixing the landing data and rerunning the month
  is cheaper than explaining wrong numbers. The check is symmetric (either month of the pair
  fails), so both months stop refreshing until the duplicate is removed.
* `no_events_beyond_as_of` is an error but not blocking: the summaries only count events before
  the month's as-of, so a future-dated event (a device clock running ahead) cannot leak into the
  derived figures; halting the nightly refresh for one bad clock would do more harm than good.
* `clv_model_quality` only warns and never blocks: a poor back-test says the model should be
  looked at, not that this month's data is wrong.
"""

import dagster as dg
import pandas as pd
from sqlalchemy import func, select

from customer_analytics.assets.metadata import markdown_table
from customer_analytics.config import current_month
from customer_analytics.partitions import monthly_partitions, partition_month
from customer_analytics.quality import (
    CLOCK_SKEW_TOLERANCE,
    clv_model_quality as measure_clv_model_quality,
    OUTLIER_CANDIDATES,
    OUTLIER_FACTOR,
    duplicate_event_ids,
    event_timestamp_bounds,
    revenue_outliers,
)
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import raw_events

_TOLERANCE_TEXT = f"{CLOCK_SKEW_TOLERANCE.total_seconds() / 3600:g} hour"


@dg.asset_check(asset="raw_events", partitions_def=monthly_partitions, blocking=True)
def no_duplicate_event_ids(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Fails (blocking) when an event_id of the month is stored twice: twice within the month, or
    also under another month, naming example ids. Loads keep an id in one month only (the first
    delivery in landing order; see raw_events_loads), so this guards that rule: a failure means
    rows written outside the pipeline's loads. Metadata: counts and example ids with the other months holding them."""
    found = duplicate_event_ids(warehouse.get(), partition_month(context.partition_key))
    examples = pd.DataFrame(found.cross_month_examples + found.within_month_examples)
    return dg.AssetCheckResult(
        passed=found.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if found.passed else (
            f"{found.cross_month_ids:,} event id(s) of {context.partition_key} also stored under another month, "
            f"{found.within_month_ids:,} stored twice within it, e.g. {', '.join(map(repr, found.example_ids))}"),
        metadata={
            "within_month_duplicate_ids": found.within_month_ids,
            "cross_month_duplicate_ids": found.cross_month_ids,
            "rows_in_other_months": found.cross_month_rows,
            "example_event_ids": dg.MetadataValue.json(found.example_ids),
            "examples": markdown_table(examples),
        },
    )


@dg.asset_check(asset="raw_events", partitions_def=monthly_partitions, blocking=False)
def no_events_beyond_as_of(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Fails when an event of the month is stamped after the month's as-of plus a tolerance of
    1 hour of clock skew (as-of: the next month's first instant, or the run time for the month
    in progress), or when an event's timestamp lies outside its partition month at all (no
    tolerance: the partition is derived from the timestamp). Not blocking: the summaries count
    only events before the as-of, so a future-dated event never reaches them."""
    bounds = event_timestamp_bounds(warehouse.get(), partition_month(context.partition_key))
    return dg.AssetCheckResult(
        passed=bounds.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if bounds.passed else (
            f"{bounds.beyond_as_of:,} event(s) after {bounds.latest_allowed.isoformat()} (as-of + {_TOLERANCE_TEXT}), "
            f"{bounds.outside_month:,} outside {context.partition_key}"),
        metadata={
            "rows": bounds.rows,
            "as_of": bounds.as_of.isoformat(),
            "tolerance_seconds": int(bounds.tolerance.total_seconds()),
            "latest_allowed": bounds.latest_allowed.isoformat(),
            "events_beyond_as_of": bounds.beyond_as_of,
            "events_outside_month": bounds.outside_month,
            "earliest_event": bounds.earliest.isoformat() if bounds.earliest else "",
            "latest_event": bounds.latest.isoformat() if bounds.latest else "",
            "example_event_ids": dg.MetadataValue.json([e["event_id"] for e in bounds.examples]),
            "examples": markdown_table(pd.DataFrame(bounds.examples)),
        },
    )


# It reads the month's customer_month_summary itself: declared, so a run holding both waits for it.
@dg.asset_check(asset="customer_clv", partitions_def=monthly_partitions, blocking=False,
                additional_deps=["customer_month_summary"])
def clv_model_quality(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Warns when last month's BG/NBD fit mispredicts this month: the purchase dates it expected
    from last month's customers (their frequency, recency and T as scored in customer_clv) over
    this month, against the distinct purchase dates those customers had (customer_month_summary).
    Passes when |actual − expected| / max(expected, 1) ≤ 0.25; skipped (passed, with the reason)
    when last month has no converged BG/NBD fit."""
    quality = measure_clv_model_quality(warehouse.get(), partition_month(context.partition_key))
    metadata = {
        "fit_month": f"{quality.fit_month:%Y-%m}",
        "tolerance": quality.tolerance,
    }
    if quality.skipped:
        metadata["skipped"] = quality.skipped
    if quality.model:
        metadata["model"] = quality.model
    if quality.params is not None:
        metadata.update({name: round(float(value), 6) for name, value in vars(quality.params).items()})
    if quality.skipped is None:
        metadata.update({
            "expected": round(quality.expected, 3),
            "actual": quality.actual,
            "relative_error": round(quality.relative_error, 4),
            "customers": quality.customers,
            "window_days": round(quality.window_days, 4),
        })
    return dg.AssetCheckResult(
        passed=quality.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"Skipped: {quality.skipped}" if quality.skipped else (
            f"{quality.actual:,} purchase dates seen, {quality.expected:,.1f} expected from the "
            f"{quality.fit_month:%Y-%m} fit ({quality.relative_error:.0%} off, tolerance {quality.tolerance:.0%})"),
        metadata=metadata,
    )


@dg.asset_check(asset="raw_events", partitions_def=monthly_partitions, blocking=False)
def no_revenue_outliers(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Warns when a purchase of the month is more than 1,000 times the month's mean purchase (the
    mean without its 10 largest): a till typo such as 9,999,999,999 dominates every average. Not
    capped: the rows stay as delivered; correct the landing file and rerun the month if it is a typo."""
    found = revenue_outliers(warehouse.get(), partition_month(context.partition_key))
    first = found.outliers[0] if found.outliers else None
    return dg.AssetCheckResult(
        passed=found.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"Too few purchases ({found.purchases:,}) to tell outliers" if found.typical is None else None)
        if first is None else (
            f"{len(found.outliers)} purchase(s) above {OUTLIER_FACTOR:,} × the month's mean purchase ({found.typical:,.2f}), "
            f"{found.outlier_share:.1%} of its revenue; the largest {first['revenue']:,.2f} is {first['event_id']!r} of "
            f"customer {first['customer_id']!r} ({first['source_file']}, record {first['source_record']}). Kept as "
            "delivered: if it is a typo, correct the landing file and rerun the month"),
        metadata={
            "purchases": found.purchases,
            "typical_purchase": round(found.typical, 2) if found.typical is not None else None,
            "factor": OUTLIER_FACTOR,
            "candidates_checked": OUTLIER_CANDIDATES,
            "outlier_revenue_share": round(found.outlier_share, 6),
            "outliers": markdown_table(pd.DataFrame(found.outliers)),
        },
    )


@dg.asset_check(asset="raw_events", partitions_def=monthly_partitions, blocking=False)
def closed_month_has_events(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Warns when a closed month (before the month in progress) has no events at all: a shop is
    never silent for a month, so its files are missing from the landing folder (or were never
    delivered) and every figure of the month reads as a dead shop. The month in progress passes
    while empty (its first events may not have arrived). Not blocking: an empty month is still true
    to the landing folder; deliver the files and rerun the month."""
    month = partition_month(context.partition_key)
    rows = warehouse.get().scalar(select(func.count()).select_from(raw_events).where(raw_events.c.event_month == month))
    closed = month < current_month()
    return dg.AssetCheckResult(
        passed=rows > 0 or not closed,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if rows > 0 or not closed else (
            f"no events at all in {context.partition_key}, a closed month: are its landing files missing? "
            "Deliver them and rerun the month"),
        metadata={"rows": rows, "month_closed": closed},
    )


all_asset_checks = [no_duplicate_event_ids, no_events_beyond_as_of, no_revenue_outliers, closed_month_has_events,
                    clv_model_quality]
