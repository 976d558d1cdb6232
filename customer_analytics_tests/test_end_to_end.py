"""Sample data → `customer-analytics materialize` → every table and view filled, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from customer_analytics.cli import main
from customer_analytics.resources.tables import metadata
from customer_analytics.views import VIEW_NAMES


@pytest.fixture
def configured(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", warehouse.url)
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_SCHEMA", warehouse.schema)
    monkeypatch.setenv("CUSTOMER_ANALYTICS_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return warehouse


def test_sample_data_fills_every_table_and_view(configured, tmp_path, capsys):
    assert main(["generate-sample", "--out", str(tmp_path / "landing"), "--customers", "300", "--start", "2025-01",
                 "--months", "4", "--seed", "11"]) == 0
    assert main(["materialize", "--from", "2025-01", "--to", "2025-04"]) == 0, capsys.readouterr().out
    assert main(["request-rerun", "--segment", "at_risk", "--by", "e2e"]) == 0  # the control table
    warehouse = configured
    empty = [t.name for t in metadata.sorted_tables if not warehouse.scalar(select(func.count()).select_from(t))]
    assert empty == [], f"tables left empty: {empty}"
    with warehouse.connect() as connection:
        for view in VIEW_NAMES:
            rows = connection.execute(text(f"SELECT COUNT(*) FROM {warehouse.qualified(view)}")).scalar()
            assert rows > 0, view
    # A rerun of a month leaves the same rows.
    before = warehouse.read_frame(text(f"SELECT event_id, revenue FROM {warehouse.qualified('raw_events')} ORDER BY event_id"))
    assert main(["materialize", "--from", "2025-02", "--to", "2025-02", "--select", "raw_events"]) == 0
    after = warehouse.read_frame(text(f"SELECT event_id, revenue FROM {warehouse.qualified('raw_events')} ORDER BY event_id"))
    assert before.equals(after)
