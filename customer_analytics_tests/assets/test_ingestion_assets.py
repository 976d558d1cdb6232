"""The ingestion assets through Dagster: materializations, metadata and check results."""

from __future__ import annotations

import dagster as dg
import pytest
from sqlalchemy import func, select

from customer_analytics.definitions import all_assets, defs
from customer_analytics.resources import LandingZone, WarehouseResource
from customer_analytics.resources.tables import raw_events
from customer_analytics_tests.landing_builder import event, write_csv, write_ndjson


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    write_ndjson(root / "events" / "jan.ndjson", [
        event("e1", "c1", "2025-01-10 10:00:00", price=10.0, quantity=3),
        event("e2", "c2", "2025-01-12 10:00:00", event_type="page_view", price=None, quantity=None),
        event("e1", "c1", "2025-01-10 10:00:00", price=10.0, quantity=3),
        '{"oops": ',
    ])
    write_csv(root / "profiles" / "p.csv", ["customer_id", "email", "age", "city", "country", "last_login"],
              [["c1", "a@x.io", "40", "Paris", "FR", "2025-01-01 00:00:00"]])
    return root


def _resources(warehouse, landing):
    return {
        "warehouse": WarehouseResource(db_url=warehouse.url, db_schema=warehouse.schema),
        "landing": LandingZone(landing_dir=str(landing)),
    }


def _materialize(warehouse, landing, selection, partition_key="2025-01"):
    return dg.materialize(all_assets, selection=selection, partition_key=partition_key,
                          resources=_resources(warehouse, landing), instance=dg.DagsterInstance.ephemeral(),
                          raise_on_error=False)


def test_definitions_load_and_every_asset_is_documented():
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.description and len(node.description) > 40, key
        assert node.owners, key
        assert node.group_name, key
        if key.to_user_string() != "bi_views":  # views, not a table: it lists them instead
            assert "dagster/column_schema" in node.metadata, key
        assert node.kinds, key


def test_raw_events_materialization_reports_its_counts(warehouse, landing):
    result = _materialize(warehouse, landing, ["raw_events", "rejected_events"])
    assert result.success
    metadata = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("ingest_events")}
    raw = metadata["raw_events"]
    assert raw["rows_loaded"].value == 2 and raw["rows_rejected"].value == 1 and raw["duplicates"].value == 1
    assert raw["records_read"].value == 4
    assert "e1" in raw["preview"].value
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    # The only rejected record (a malformed line) has no month: it is not January's share.
    assert checks == {"landing_files_readable": True, "rejected_share_below_threshold": True, "records_reconcile": True,
                      "no_accidental_shrink": True}
    assert raw["rejected_without_month"].value == 1
    assert warehouse.scalar(select(func.count()).select_from(raw_events)) == 2


def test_a_month_with_many_bad_records_warns(warehouse, landing):
    write_ndjson(landing / "events" / "jan-bad.ndjson", [event(f"b{i}", "c1", "2025-01-20 10:00:00", price=-1) for i in range(3)])
    result = _materialize(warehouse, landing, ["raw_events", "rejected_events"])
    share = [c for c in result.get_asset_check_evaluations() if c.check_name == "rejected_share_below_threshold"][0]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN
    assert share.metadata["rejected_share"].value == 0.5  # 3 of January's 6 records: e1, e2, e1 again, 3 bad


def test_an_unreadable_landing_file_fails_its_check_loudly(warehouse, landing):
    (landing / "events" / "bad.ndjson.gz").write_bytes(b"not gzip at all")
    result = _materialize(warehouse, landing, ["raw_events", "rejected_events"])
    assert result.success, "other files still load"
    failed = [c for c in result.get_asset_check_evaluations() if c.check_name == "landing_files_readable"]
    assert len(failed) == 1 and not failed[0].passed and failed[0].severity == dg.AssetCheckSeverity.ERROR
    assert warehouse.scalar(select(func.count()).select_from(raw_events)) == 2


def test_profiles_asset(warehouse, landing):
    result = dg.materialize(all_assets, selection=["customer_profiles"], resources=_resources(warehouse, landing),
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    materialization = result.asset_materializations_for_node("customer_profiles")[0]
    assert materialization.metadata["customers"].value == 1
