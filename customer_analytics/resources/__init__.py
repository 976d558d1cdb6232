"""Resources: the warehouse (SQL) and the landing folder (files)."""

from __future__ import annotations

import os
from functools import cache

import dagster as dg

from customer_analytics.config import DEFAULT_DB_SCHEMA, DEFAULT_DB_URL, DEFAULT_LANDING_DIR
from customer_analytics.resources.landing import LandingZone
from customer_analytics.resources.warehouse import Warehouse


@cache
def _warehouse(url: str, schema: str) -> Warehouse:
    return Warehouse(url, schema)


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse (`CUSTOMER_ANALYTICS_DB_URL`, schema `CUSTOMER_ANALYTICS_DB_SCHEMA`)."""

    db_url: str
    db_schema: str = DEFAULT_DB_SCHEMA

    def get(self) -> Warehouse:
        return _warehouse(self.db_url, self.db_schema)


def _from_env(name: str, default: str):
    # An EnvVar keeps the value (a password, say) out of the UI, which shows only the name.
    return dg.EnvVar(name) if os.environ.get(name) else default


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(
            db_url=_from_env("CUSTOMER_ANALYTICS_DB_URL", DEFAULT_DB_URL),
            db_schema=_from_env("CUSTOMER_ANALYTICS_DB_SCHEMA", DEFAULT_DB_SCHEMA),
        ),
        "landing": LandingZone(landing_dir=_from_env("CUSTOMER_ANALYTICS_LANDING_DIR", DEFAULT_LANDING_DIR)),
    }


__all__ = ["LandingZone", "Warehouse", "WarehouseResource", "default_resources"]
