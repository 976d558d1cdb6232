"""Cohort assets: how much customers acquired in a month (week) spend over time, and early lifetime value."""

import dagster as dg

from customer_analytics.asof import AsOf
from customer_analytics.assets.metadata import OWNERS, markdown_table, table_spec_metadata
from customer_analytics.charts import cohort_heatmap_png, png_markdown
from customer_analytics.cohorts import cohort_ltv, compute_cohort_ltv, compute_ltv_summary, ltv_summary
from customer_analytics.partitions import monthly_partitions, partition_month
from customer_analytics.resources import WarehouseResource
from customer_analytics.retries import retry_on_lost_connection
from customer_analytics.transforms.cohorts import cumulative_revenue_never_falls

GROUP = "cohorts"
SUMMARIES = ["customer_month_summary", "customer_week_summary", "customer_history"]


@dg.asset(
    name="cohort_ltv", deps=SUMMARIES, partitions_def=monthly_partitions, group_name=GROUP, owners=OWNERS,
    kinds={"pandas", "sql"}, metadata=table_spec_metadata(cohort_ltv),
    check_specs=[dg.AssetCheckSpec("cumulative_revenue_never_falls", asset="cohort_ltv",
                                   description="Within each cohort, cumulative revenue does not decrease from one period to the next.")],
)
@retry_on_lost_connection
def cohort_ltv_asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Customers grouped by the month (and, separately, the week) of their first purchase, followed period by
    period up to the end of the month: how many of them bought again in each period and how much revenue the
    cohort has brought in so far, in total and per customer. Every cohort has a row for every period, even
    one without purchases (its cumulative revenue then stays the same)."""
    as_of = AsOf.for_month(partition_month(context.partition_key))
    rows = compute_cohort_ltv(warehouse.get(), as_of, run_id=context.run.run_id)
    monthly = rows[rows["granularity"] == "month"]
    weekly = rows[rows["granularity"] == "week"]
    context.log.info(f"{context.partition_key}: {monthly['cohort_start'].nunique():,} monthly and "
                     f"{weekly['cohort_start'].nunique():,} weekly cohorts, {len(rows):,} rows")
    preview = monthly.sort_values(["cohort_start", "period"], ascending=[False, True])[
        ["cohort_start", "period", "customers", "active_customers", "cumulative_revenue", "cumulative_revenue_per_customer"]]
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows), "as_of_date": as_of.day.isoformat(),
        "monthly_rows": len(monthly), "weekly_rows": len(weekly),
        "monthly_cohorts": int(monthly["cohort_start"].nunique()), "weekly_cohorts": int(weekly["cohort_start"].nunique()),
        "preview": markdown_table(preview.assign(cohort_start=preview["cohort_start"].dt.date), max_rows=15),
        "cohort_heatmap": dg.MetadataValue.md(png_markdown(cohort_heatmap_png(monthly), "cohort LTV heatmap")),
    })
    yield dg.AssetCheckResult(check_name="cumulative_revenue_never_falls", passed=cumulative_revenue_never_falls(rows),
                              metadata={"rows": len(rows)})


@dg.asset(
    name="ltv_summary", deps=["customer_history"], partitions_def=monthly_partitions, group_name=GROUP,
    owners=OWNERS, kinds={"sql"}, metadata=table_spec_metadata(ltv_summary),
)
@retry_on_lost_connection
def ltv_summary_asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Early customer value as of the end of the month: the average revenue a customer brings in during the 30
    and the 90 days from their first purchase (that purchase included), over the customers whose first 30
    (90) days are complete, with how many customers that is. Empty averages are left blank."""
    as_of = AsOf.for_month(partition_month(context.partition_key))
    row = compute_ltv_summary(warehouse.get(), as_of, run_id=context.run.run_id)
    figures = row.iloc[0]

    def money(value):
        return None if value != value else round(float(value), 2)  # NaN → None

    context.log.info(f"{context.partition_key}: {int(figures['customers_30d']):,} customers with 30 days, "
                     f"{int(figures['customers_90d']):,} with 90 days")
    metadata = {
        "dagster/row_count": len(row), "as_of": as_of.instant.isoformat(),
        "customers_30d": int(figures["customers_30d"]), "customers_90d": int(figures["customers_90d"]),
        "preview": markdown_table(row[["as_of_month", "average_ltv_30d", "customers_30d", "average_ltv_90d", "customers_90d"]]
                                  .assign(as_of_month=row["as_of_month"].dt.date)),
    }
    for name in ("average_ltv_30d", "average_ltv_90d"):
        if money(figures[name]) is not None:
            metadata[name] = money(figures[name])
    yield dg.MaterializeResult(metadata=metadata)
