"""The BI views asset: (re)creates the views dashboards read (see customer_analytics.views)."""

import dagster as dg
import pandas as pd

from customer_analytics.assets.metadata import OWNERS, markdown_table
from customer_analytics.resources import WarehouseResource
from customer_analytics.retries import retry_on_lost_connection
from customer_analytics.views import VIEW_DESCRIPTIONS, VIEW_NAMES, create_views, view_row_counts

GROUP = "bi"
INPUTS = ["raw_events", "customer_profiles", "customer_rfm", "customer_clv", "customer_segments", "segment_metrics"]

_DESCRIPTION = (
    "SQL views for BI dashboards, computed when read (the latest-month views find the month themselves), "
    "without personal data; documented with example SQL in the README, section BI views. A view whose base table does "
    "not exist yet is skipped and named in the metadata.\n\n"
    + "\n".join(f"* `{name}`: {VIEW_DESCRIPTIONS[name]}" for name in VIEW_NAMES)
)


@dg.asset(name="bi_views", deps=INPUTS, group_name=GROUP, owners=OWNERS, kinds={"sql"}, description=_DESCRIPTION)
@retry_on_lost_connection
def bi_views(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    wh = warehouse.get()
    results = create_views(wh)
    created = [name for name, status in results.items() if status == "created"]
    skipped = {name: status for name, status in results.items() if status != "created"}
    for name, status in skipped.items():
        context.log.warning(f"view {name} {status}")
    counts = view_row_counts(wh, created)
    context.log.info(f"{len(created)} views created, {len(skipped)} skipped")
    summary = pd.DataFrame(
        [(name, results[name], counts.get(name, "—")) for name in VIEW_NAMES], columns=["view", "status", "rows"]
    )
    return dg.MaterializeResult(metadata={
        "views_created": len(created),
        "views_skipped": len(skipped),
        "views": markdown_table(summary, max_rows=len(VIEW_NAMES)),
        **{f"rows_{name}": count for name, count in counts.items()},
    })
