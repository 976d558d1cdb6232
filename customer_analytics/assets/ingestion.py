"""Ingestion assets: landing files into `raw_events` (monthly), the quarantine, and `customer_profiles`."""


from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from pydantic import Field
from sqlalchemy import func, select

from customer_analytics.assets.metadata import OWNERS, counter_table, markdown_table, table_spec_metadata
from customer_analytics.loading import LoadReport, ShrinkRefused, load_events_month, load_profiles
from customer_analytics.partitions import monthly_partitions, partition_month
from customer_analytics.resources import LandingZone, WarehouseResource
from customer_analytics.resources.tables import customer_profiles, raw_events, rejected_events
from customer_analytics.retries import retry_on_lost_connection

GROUP = "ingestion"
# Above this share of a month's records rejected, the check warns: usually a broken export.
MAX_REJECTED_SHARE = 0.05

RAW_EVENTS_DOC = """Every customer event and legacy transaction, one row per event, partitioned by the UTC month of its timestamp.

Read from the landing folder's `events/` and `transactions/` files (NDJSON, CSV, Parquet, optionally gzipped).
A month is replaced atomically: rerunning it gives the same rows. The same `event_id` delivered twice is stored
once (the first delivery in landing order); records that cannot be loaded go to `rejected_events` with a reason.
Purchases are `event_type = 'purchase'`; their `revenue` is price × quantity (the amount for transactions)."""

REJECTED_EVENTS_DOC = """The quarantine: every landing record that could not be loaded, with its file, record number, raw text and reason.

A whole file that cannot be read (corrupt gzip, unknown extension, damaged Parquet) is one row with
record_number 0 (a file that changes while being read fails the run instead). Rows for a month are replaced with that month's `raw_events`; records with no usable month are
kept per file. Profile records rejected by `customer_profiles` are here too (source = 'profiles')."""

PROFILES_DOC = """One row per customer from the `profiles/` files: profile fields plus `location` from demographic rows.

Records are merged in order of `last_login` (records without one first), then landing order; each field takes the
latest value delivered. Holds personal data (email, names): BI views never expose it."""


class IngestConfig(dg.Config):
    """Run config of the loads (Launchpad: `ops: {ingest_events: {config: {allow_shrink: true}}}`)."""

    allow_shrink: bool = Field(
        default=False,
        description="Allow this load to drop most of what the month (or the profiles) holds: to zero rows, or by more "
                    "than CUSTOMER_ANALYTICS_MAX_SHRINK. Without it such a load fails and replaces nothing.")


def _refused(error: ShrinkRefused) -> dg.Failure:
    return dg.Failure(description=str(error), allow_retries=False, metadata={
        "rows_before": error.before, "rows_after": error.after, "max_shrink": error.max_shrink})


def _shrink_check(asset: str, report: LoadReport) -> dg.AssetCheckResult:
    change = report.published_rows - report.previous_rows
    return dg.AssetCheckResult(
        asset_key=asset, check_name="no_accidental_shrink", passed=True,
        description=(f"Shrank {report.previous_rows:,} rows to {report.published_rows:,}, as the run allowed (allow_shrink)."
                     if report.shrink_allowed else f"{report.previous_rows:,} rows before, {report.published_rows:,} after."),
        metadata={"rows_before": report.previous_rows, "rows_after": report.published_rows, "change": change,
                  "shrink_allowed": report.shrink_allowed},
    )


SHRINK_CHECK_DOC = ("Records each load's rows before and after. A load that would shrink them to zero, or by more than "
                    "CUSTOMER_ANALYTICS_MAX_SHRINK (default 0.5), fails before replacing anything unless the run sets "
                    "allow_shrink (an unmounted or half-copied landing folder looks like that).")


def _load_metadata(report: LoadReport) -> dict:
    return {
        "records_read": report.records_read,
        "rows_loaded": report.loaded,
        "rows_rejected": report.rejected,
        "rejected_without_month": report.rejected_without_month,
        "duplicates": report.duplicates,
        "records_in_other_months": report.other_months,
        "rejected_share": round(report.rejected_share, 6),
        "files_read": len(report.files_read),
        "files_skipped_by_manifest": report.files_skipped,
        "unreadable_files": len(report.unreadable_files),
        "rejection_reasons": counter_table(report.reasons, "reason", "records"),
        # Ids this load found in another month too: which month keeps each (the first delivery in landing order).
        "redeliveries_across_months": markdown_table(pd.DataFrame(report.redeliveries_across_months,
                                                                  columns=["event_id", "kept_in", "quarantined_in"])),
    }


def _readable_check(asset: str, report: LoadReport) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="landing_files_readable",
        passed=not report.unreadable_files,
        severity=dg.AssetCheckSeverity.ERROR,
        description="Every landing file could be read." if not report.unreadable_files else
        f"{len(report.unreadable_files)} landing file(s) could not be read; their records are NOT loaded.",
        metadata={"unreadable_files": counter_table({f"{k}: {v}": 1 for k, v in report.unreadable_files.items()}, "file: reason", "files")},
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec("raw_events", description=RAW_EVENTS_DOC, group_name=GROUP, owners=OWNERS,
                     kinds={"python", "pandas", "sql"}, metadata=table_spec_metadata(raw_events)),
        dg.AssetSpec("rejected_events", description=REJECTED_EVENTS_DOC, group_name=GROUP, owners=OWNERS,
                     kinds={"python", "sql"}, metadata=table_spec_metadata(rejected_events)),
    ],
    partitions_def=monthly_partitions,
    check_specs=[
        dg.AssetCheckSpec("landing_files_readable", asset="raw_events",
                          description="Fails when a landing file cannot be read at all (its records are missing)."),
        dg.AssetCheckSpec("rejected_share_below_threshold", asset="raw_events",
                          description=f"Warns when more than {MAX_REJECTED_SHARE:.0%} of a month's own records are rejected "
                          "(records without a readable month are reported apart, as rejected_without_month)."),
        dg.AssetCheckSpec("records_reconcile", asset="raw_events",
                          description="records read = loaded + rejected + duplicates."),
        dg.AssetCheckSpec("no_accidental_shrink", asset="raw_events", blocking=True, description=SHRINK_CHECK_DOC),
    ],
)
@retry_on_lost_connection
def ingest_events(context: dg.AssetExecutionContext, config: IngestConfig, warehouse: WarehouseResource, landing: LandingZone):
    """Load one month of events and legacy transactions from the landing folder."""
    month = partition_month(context.partition_key)
    wh = warehouse.get()
    started_at = datetime.now(timezone.utc)
    try:
        report = load_events_month(
            wh, landing.path, month,
            first_month=partition_month(monthly_partitions.get_first_partition_key()),
            last_month=partition_month(monthly_partitions.get_last_partition_key()),
            run_id=context.run.run_id, started_at=started_at, progress=context.log.info,
            allow_shrink=config.allow_shrink, max_shrink=landing.max_shrink,
        )
    except ShrinkRefused as error:
        raise _refused(error) from None
    context.log.info(
        f"{context.partition_key}: {report.records_read:,} records read, {report.loaded:,} loaded, "
        f"{report.rejected:,} rejected, {report.duplicates:,} duplicates ({len(report.files_read)} files read, "
        f"{report.files_skipped} skipped by the manifest)"
    )
    for name, reason in report.unreadable_files.items():
        context.log.error(f"landing file {name} could not be read: {reason}")
    preview = wh.read_frame(
        select(raw_events).where(raw_events.c.event_month == month).order_by(raw_events.c.event_timestamp, raw_events.c.event_id).limit(10)
    )
    rejected_preview = wh.read_frame(
        select(rejected_events.c.source_file, rejected_events.c.record_number, rejected_events.c.reason, rejected_events.c.raw_record)
        .where(rejected_events.c.event_month == month).order_by(rejected_events.c.source_file, rejected_events.c.record_number).limit(10)
    )
    common = _load_metadata(report)
    yield dg.MaterializeResult(asset_key="raw_events", metadata={**common, "dagster/row_count": report.loaded, "preview": markdown_table(preview)})
    yield dg.MaterializeResult(asset_key="rejected_events", metadata={**common, "preview": markdown_table(rejected_preview)})
    yield _readable_check("raw_events", report)
    yield dg.AssetCheckResult(
        asset_key="raw_events", check_name="rejected_share_below_threshold",
        passed=report.rejected_share <= MAX_REJECTED_SHARE, severity=dg.AssetCheckSeverity.WARN,
        metadata={"rejected_share": round(report.rejected_share, 6), "threshold": MAX_REJECTED_SHARE},
    )
    yield dg.AssetCheckResult(
        asset_key="raw_events", check_name="records_reconcile",
        passed=report.records_read == report.loaded + report.rejected + report.duplicates,
        metadata={"records_read": report.records_read, "loaded": report.loaded, "rejected": report.rejected, "duplicates": report.duplicates},
    )
    yield _shrink_check("raw_events", report)


@dg.asset(
    name="customer_profiles",
    description=PROFILES_DOC, group_name=GROUP, owners=OWNERS, kinds={"python", "pandas", "sql"},
    metadata=table_spec_metadata(customer_profiles),
    check_specs=[dg.AssetCheckSpec("landing_files_readable", asset="customer_profiles",
                                   description="Fails when a profile file cannot be read at all."),
                 dg.AssetCheckSpec("no_accidental_shrink", asset="customer_profiles", blocking=True,
                                   description=SHRINK_CHECK_DOC)],
)
@retry_on_lost_connection
def customer_profiles_asset(context: dg.AssetExecutionContext, config: IngestConfig, warehouse: WarehouseResource,
                            landing: LandingZone):
    """Merge every profile and demographic record into one row per customer."""
    wh = warehouse.get()
    try:
        report = load_profiles(wh, landing.path, run_id=context.run.run_id, allow_shrink=config.allow_shrink,
                               max_shrink=landing.max_shrink)
    except ShrinkRefused as error:
        raise _refused(error) from None
    customers = wh.scalar(select(func.count()).select_from(customer_profiles))
    context.log.info(f"profiles: {report.loaded:,} records merged into {customers:,} customers, {report.rejected:,} rejected")
    preview = wh.read_frame(
        select(customer_profiles.c.customer_id, customer_profiles.c.age, customer_profiles.c.gender, customer_profiles.c.city,
               customer_profiles.c.country, customer_profiles.c.location, customer_profiles.c.signup_date)
        .order_by(customer_profiles.c.customer_id).limit(10)
    )
    yield dg.MaterializeResult(
        asset_key="customer_profiles",
        metadata={**_load_metadata(report), "customers": customers, "dagster/row_count": customers, "preview": markdown_table(preview)},
    )
    yield _readable_check("customer_profiles", report)
    yield _shrink_check("customer_profiles", report)

