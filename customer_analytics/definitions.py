"""The customer_analytics code location: the one `Definitions` object Dagster loads."""

from __future__ import annotations

import dagster as dg

from customer_analytics.assets.cohorts import cohort_ltv_asset, ltv_summary_asset
from customer_analytics.assets.customers import customer_summaries, customer_value
from customer_analytics.assets.ingestion import customer_profiles_asset, ingest_events
from customer_analytics.assets.segments import customer_segment_tables, segment_definitions_asset
from customer_analytics.assets.views import bi_views
from customer_analytics.resources import default_resources
from customer_analytics.checks import all_asset_checks
from customer_analytics.jobs import segment_rerun_job
from customer_analytics.liveness import dead_run_sensor
from customer_analytics.schedules import build_nightly_refresh_schedule
from customer_analytics.sensors import rerun_sensors

ingestion_assets = [ingest_events, customer_profiles_asset]
customer_assets = [customer_summaries, customer_value]
segment_assets = [customer_segment_tables, segment_definitions_asset]
cohort_assets = [cohort_ltv_asset, ltv_summary_asset]
all_assets = [*ingestion_assets, *customer_assets, *segment_assets, *cohort_assets, bi_views]

# In-process: a month's steps are few and heavy on the database, and on 2 cores the
# multiprocess executor spends more time starting processes than working. Run liveness relies on it
# too: the run's one process records its pid and heartbeat (customer_analytics/liveness.py).
customer_analytics_job = dg.define_asset_job(
    "customer_analytics_job",
    selection=dg.AssetSelection.all(),
    description="Everything for one month: ingestion, then every derived table (plus the unpartitioned profiles).",
    executor_def=dg.in_process_executor,
    tags={"team": "customer-analytics"},
)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_asset_checks,
    jobs=[customer_analytics_job, segment_rerun_job],
    schedules=[build_nightly_refresh_schedule(customer_analytics_job)],
    sensors=[*rerun_sensors, dead_run_sensor],
    resources=default_resources(),
)
