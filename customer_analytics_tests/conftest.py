"""Shared fixtures: warehouses on SQLite and on a real PostgreSQL, and small landing folders.

PostgreSQL tests use CUSTOMER_ANALYTICS_TEST_PG_URL (the README's test command sets it to the
local server). Without it they skip with that reason, except under CI=true, where a missing
or unreachable server fails them.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import text

from customer_analytics.resources.warehouse import Warehouse, WarehouseUnavailable

PG_URL = os.environ.get("CUSTOMER_ANALYTICS_TEST_PG_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_or_skip() -> str:
    if not PG_URL:
        message = "CUSTOMER_ANALYTICS_TEST_PG_URL is not set: PostgreSQL tests need a server"
        if IN_CI:
            pytest.fail(message + " (CI=true: this is a failure, not a skip)")
        pytest.skip(message)
    return PG_URL


@pytest.fixture
def pg_url() -> str:
    return _postgres_or_skip()


def reachable_or_skip(warehouse: Warehouse) -> None:
    """Skip when the server does not answer, except under CI=true, where that fails the test."""
    try:
        warehouse.check_connection()
    except WarehouseUnavailable as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable under CI=true: {error}")
        pytest.skip(f"PostgreSQL unreachable: {error}")


def _fresh_postgres(url: str):
    schema = f"ca_test_{uuid.uuid4().hex[:10]}"
    warehouse = Warehouse(url, schema)
    reachable_or_skip(warehouse)
    return warehouse, schema


def _drop_schema(warehouse: Warehouse, schema: str) -> None:
    with warehouse.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    warehouse.engine.dispose()


@pytest.fixture
def pg_warehouse():
    warehouse, schema = _fresh_postgres(_postgres_or_skip())
    yield warehouse
    _drop_schema(warehouse, schema)


@pytest.fixture
def sqlite_warehouse(tmp_path):
    warehouse = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")
    yield warehouse
    warehouse.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path):
    """The same test on the embedded SQLite warehouse and on PostgreSQL."""
    if request.param == "sqlite":
        warehouse = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")
        yield warehouse
        warehouse.engine.dispose()
    else:
        warehouse, schema = _fresh_postgres(_postgres_or_skip())
        yield warehouse
        _drop_schema(warehouse, schema)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def scored_warehouse(request, tmp_path_factory):
    """Sample data for 2025-01..2025-03 run through the whole pipeline once per test module, per backend.

    Tests that change the tables reset the month they touch (see `reset_month`).
    """
    from customer_analytics.cli import main

    root = tmp_path_factory.mktemp("scored")
    if request.param == "sqlite":
        warehouse, schema = Warehouse(f"sqlite:///{root / 'warehouse.db'}"), None
    else:
        warehouse, schema = _fresh_postgres(_postgres_or_skip())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUSTOMER_ANALYTICS_DB_URL", warehouse.url)
        patch.setenv("CUSTOMER_ANALYTICS_DB_SCHEMA", warehouse.schema)
        patch.setenv("CUSTOMER_ANALYTICS_LANDING_DIR", str(root / "landing"))
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        assert main(["generate-sample", "--out", str(root / "landing"), "--customers", "400", "--start", "2025-01",
                     "--months", "3", "--seed", "5"]) == 0
        assert main(["materialize", "--from", "2025-01", "--to", "2025-03"]) == 0
    yield warehouse
    if schema is not None:
        _drop_schema(warehouse, schema)
    else:
        warehouse.engine.dispose()
