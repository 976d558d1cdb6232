"""A database connection dropped mid-run (pg_terminate_backend): the step is retried and the tables are right."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest
from sqlalchemy import text

from customer_analytics import retries
from customer_analytics.definitions import all_assets
from customer_analytics.resources import LandingZone, WarehouseResource
from customer_analytics.resources.warehouse import Replacement
from customer_analytics_tests.conftest import _drop_schema, _fresh_postgres
from customer_analytics_tests.landing_builder import event, write_ndjson
from customer_analytics_tests.test_fault_campaign import snapshot

pytestmark = pytest.mark.postgres

SELECTION = ["raw_events", "rejected_events", "customer_month_summary", "customer_week_summary", "customer_history",
             "customer_rfm", "customer_clv", "clv_model_fits", "customer_segments", "segment_metrics",
             "segment_migration", "cohort_ltv", "ltv_summary"]


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    write_ndjson(root / "events" / "a.ndjson", [
        event(f"e{i}", f"c{i % 23}", f"2025-01-{1 + i % 28:02d} 1{i % 10}:00:00", price=3.0 + i % 17) for i in range(300)
    ])
    return root


def materialize(warehouse, landing):
    resources = {"warehouse": WarehouseResource(db_url=warehouse.url, db_schema=warehouse.schema),
                 "landing": LandingZone(landing_dir=str(landing))}
    return dg.materialize(all_assets, partition_key="2025-01", resources=resources, selection=SELECTION,
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def terminate_own_backend(connection) -> int:
    """Have the server drop this connection, as an administrator would with pg_terminate_backend."""
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    url = connection.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
    return pid


def retries_of(result) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    monkeypatch.setattr(retries, "SECONDS_TO_WAIT", 0)


def test_a_connection_dropped_while_publishing_is_retried_and_ends_right(pg_warehouse, landing, monkeypatch):
    clean, schema = _fresh_postgres(pg_warehouse.url)
    try:
        assert materialize(clean, landing).success
        expected = snapshot(clean)
    finally:
        _drop_schema(clean, schema)

    dropped = []
    publish = Replacement.publish

    def publish_on_a_dropped_connection(self):
        if len(dropped) < 2:  # the first two publications lose their connection mid-transaction
            dropped.append(terminate_own_backend(self.connection))
        return publish(self)

    monkeypatch.setattr(Replacement, "publish", publish_on_a_dropped_connection)
    result = materialize(pg_warehouse, landing)
    assert len(dropped) == 2
    assert result.success
    assert retries_of(result) == ["ingest_events", "ingest_events"]
    assert snapshot(pg_warehouse) == expected


def test_a_connection_that_keeps_dropping_fails_the_run_with_a_clear_error_and_keeps_the_tables(pg_warehouse, landing,
                                                                                               monkeypatch):
    assert materialize(pg_warehouse, landing).success
    before = snapshot(pg_warehouse)
    publish = Replacement.publish

    def always_dropped(self):
        terminate_own_backend(self.connection)
        return publish(self)

    monkeypatch.setattr(Replacement, "publish", always_dropped)
    result = materialize(pg_warehouse, landing)
    assert not result.success
    assert retries_of(result) == ["ingest_events"] * retries.MAX_RETRIES
    failure = result.failure_data_for_node("ingest_events")
    assert "terminating connection due to administrator command" in failure.error.to_string()
    monkeypatch.setattr(Replacement, "publish", publish)
    assert snapshot(pg_warehouse) == before


def test_other_errors_are_not_retried(pg_warehouse, landing, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("not a database problem")

    monkeypatch.setattr("customer_analytics.asof.compute_rfm", broken)
    result = materialize(pg_warehouse, landing)
    assert not result.success
    assert retries_of(result) == []
    assert "not a database problem" in result.failure_data_for_node("customer_value").error.to_string()
