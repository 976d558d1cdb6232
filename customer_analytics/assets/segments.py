"""Segment assets: membership and movement per month, metrics, migration, and the definitions."""

import dagster as dg

from customer_analytics.assets.customers import ClvConfig
from customer_analytics.assets.metadata import OWNERS, markdown_table, table_spec_metadata
from customer_analytics.charts import png_markdown, segment_mix_png
from customer_analytics.partitions import monthly_partitions, partition_month
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import customer_segments, segment_definitions, segment_metrics, segment_migration
from customer_analytics.retries import retry_on_lost_connection
from customer_analytics.segments import compute_segments, publish_segment_definitions

GROUP = "segments"
INPUTS = ["customer_clv", "customer_rfm", "customer_profiles"]


@dg.multi_asset(
    specs=[
        dg.AssetSpec("customer_segments", deps=INPUTS, group_name=GROUP, owners=OWNERS, kinds={"sql"},
                     metadata=table_spec_metadata(customer_segments),
                     description="Each customer's value segment (high, medium, low, at_risk) and named RFM segment as "
                                 "of the end of the month, with the segment they had the month before."),
        dg.AssetSpec("segment_metrics", deps=INPUTS, group_name=GROUP, owners=OWNERS, kinds={"sql"},
                     metadata=table_spec_metadata(segment_metrics),
                     description="Per value and RFM segment, overall and per profile country: customers, share, "
                                 "average CLV score and predicted revenue, revenue to date, average recency and frequency."),
        dg.AssetSpec("segment_migration", deps=INPUTS, group_name=GROUP, owners=OWNERS, kinds={"sql"},
                     metadata=table_spec_metadata(segment_migration),
                     description="How many customers moved from each value segment to each other since the month "
                                 "before ('new' for customers new this month)."),
    ],
    partitions_def=monthly_partitions,
)
@retry_on_lost_connection
def customer_segment_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Segment membership, metrics and migration for one month."""
    tables = compute_segments(warehouse.get(), partition_month(context.partition_key), run_id=context.run.run_id)
    overall = tables.metrics[(tables.metrics["segment_type"] == "value") & tables.metrics["country"].isna()]
    yield dg.MaterializeResult(asset_key="customer_segments", metadata={
        "dagster/row_count": tables.customers,
        "changed_segment": tables.changed,
        "segment_mix": markdown_table(overall[["segment", "customers", "share", "avg_clv_score", "avg_predicted_revenue"]]),
        "segment_mix_chart": dg.MetadataValue.md(
            png_markdown(segment_mix_png(tables.metrics, tables.migration), "segment mix and migration")),
    })
    yield dg.MaterializeResult(asset_key="segment_metrics", metadata={"dagster/row_count": len(tables.metrics)})
    yield dg.MaterializeResult(asset_key="segment_migration", metadata={
        "dagster/row_count": len(tables.migration), "preview": markdown_table(tables.migration, max_rows=20)})


@dg.asset(name="segment_definitions", group_name=GROUP, owners=OWNERS, kinds={"sql"}, deps=["customer_rfm"],
          metadata=table_spec_metadata(segment_definitions))
@retry_on_lost_connection
def segment_definitions_asset(config: ClvConfig, warehouse: WarehouseResource):
    """Every value segment and named RFM segment with its rule in words, built from the CLV thresholds and the
    editable `rfm_segment_map`; creation and update dates are kept across rebuilds."""
    definitions = publish_segment_definitions(warehouse.get(), config.settings())
    return dg.MaterializeResult(metadata={"dagster/row_count": len(definitions),
                                          "definitions": markdown_table(definitions[["segment_id", "segment_rules"]], max_rows=20)})
