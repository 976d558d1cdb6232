"""Summaries, RFM and CLV through Dagster, with their checks."""

from __future__ import annotations

import dagster as dg
from sqlalchemy import func, select

from customer_analytics.definitions import all_assets, customer_analytics_job, defs
from customer_analytics.resources import LandingZone, WarehouseResource
from customer_analytics.resources.tables import clv_model_fits, customer_clv, customer_rfm
from customer_analytics_tests.landing_builder import event, write_ndjson


def january_purchases(warehouse, tmp_path, *, events: int, customers: int, first_price: float) -> dict:
    """Resources reading a landing zone of `events` January purchases by `customers` customers."""
    landing = tmp_path / "landing"
    write_ndjson(landing / "events" / "a.ndjson", [
        event(f"e{i}", f"c{i % customers}", f"2025-01-{1 + i % 28:02d} 10:00:00", price=first_price + i)
        for i in range(events)
    ])
    return {"warehouse": WarehouseResource(db_url=warehouse.url, db_schema=warehouse.schema),
            "landing": LandingZone(landing_dir=str(landing))}


def test_a_month_materializes_end_to_end_with_checks(warehouse, tmp_path):
    resources = january_purchases(warehouse, tmp_path, events=60, customers=7, first_price=5.0)
    result = dg.materialize(all_assets, partition_key="2025-01", resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            selection=["raw_events", "rejected_events", "customer_month_summary", "customer_week_summary", "customer_history",
                                       "customer_rfm", "customer_clv", "clv_model_fits"])
    assert result.success
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"customer_month_summary", "customer_rfm", "customer_clv", "clv_model_fits"} <= keys
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks[("customer_rfm", "one_row_per_purchasing_customer")] and checks[("customer_rfm", "scores_in_range")]
    assert checks[("customer_clv", "probabilities_in_unit_interval")] and checks[("customer_clv", "no_missing_values")]
    assert ("customer_clv", "fit_converged") in checks  # 7 customers: a fallback warning is expected, not an error
    fit_check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "fit_converged")
    # The reason is shown where the warning is; the rows only name the model.
    assert not fit_check.passed and fit_check.metadata["model"].value == "heuristic"
    assert fit_check.metadata["fallback_reason"].value.startswith("BG/NBD: ")


def test_the_main_job_runs_everything_for_a_month():
    job = defs.resolve_job_def(customer_analytics_job.name)
    assert {"ingest_events", "customer_summaries", "customer_value", "customer_profiles"} <= {n.name for n in job.nodes_in_topological_order}


def test_rfm_and_clv_materialize_apart_and_the_clv_tables_together(warehouse, tmp_path):
    resources = january_purchases(warehouse, tmp_path, events=20, customers=5, first_price=2.0)
    instance = dg.DagsterInstance.ephemeral()

    def run(*selection):
        result = dg.materialize(all_assets, partition_key="2025-01", resources=resources, instance=instance,
                                selection=list(selection))
        assert result.success
        return result

    def rows(table):
        return warehouse.scalar(select(func.count()).select_from(table))

    run("raw_events", "rejected_events", "customer_month_summary", "customer_week_summary", "customer_history")
    rfm_only = run("customer_rfm")
    assert {e.asset_key.to_user_string() for e in rfm_only.get_asset_materialization_events()} == {"customer_rfm"}
    assert {c.asset_key.to_user_string() for c in rfm_only.get_asset_check_evaluations()} == {"customer_rfm"}
    assert (rows(customer_rfm), rows(customer_clv), rows(clv_model_fits)) == (5, 0, 0)
    # The fits alone: customer_clv is written with them, and its materialization is recorded too.
    fits_only = run("clv_model_fits")
    materialized = [e.asset_key.to_user_string() for e in fits_only.get_asset_materialization_events()]
    assert sorted(materialized) == ["clv_model_fits", "customer_clv"]
    assert not fits_only.get_asset_check_evaluations(), "customer_clv's checks were not selected"
    assert (rows(customer_clv), rows(clv_model_fits)) == (5, 1)
    recorded = instance.get_latest_materialization_event(dg.AssetKey("customer_clv")).asset_materialization
    assert recorded.partition == "2025-01" and recorded.metadata["dagster/row_count"].value == 5
