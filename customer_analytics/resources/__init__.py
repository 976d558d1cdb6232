"""Resources: the warehouse (SQL) and the landing folder (files)."""

from __future__ import annotations

from functools import cache
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from customer_analytics.config import Settings
from customer_analytics.liveness import Heartbeat, start_heartbeat
from customer_analytics.resources.warehouse import Warehouse


@cache
def _warehouse(url: str, schema: str) -> Warehouse:
    return Warehouse(url, schema)


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse. Unset fields are read from `CUSTOMER_ANALYTICS_DB_URL` / `_DB_SCHEMA` when
    the run starts, so the URL (and its password) never appears in the UI or in run config."""

    db_url: Optional[str] = None
    db_schema: Optional[str] = None
    _heartbeat: Optional[Heartbeat] = PrivateAttr(default=None)

    # Every asset, check and op of this code location uses the warehouse, and with the in-process
    # executor (both jobs) the resource is set up once per run, in the process executing it: so this
    # is where a run starts saying it is alive (customer_analytics/liveness.py), until it ends.
    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._heartbeat = start_heartbeat(context)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    def get(self) -> Warehouse:
        settings = Settings.from_env()
        return _warehouse(self.db_url or settings.db_url, self.db_schema or settings.db_schema)


class LandingZone(dg.ConfigurableResource):
    """The landing folder; unset, `CUSTOMER_ANALYTICS_LANDING_DIR` (default data/landing) when the run starts."""

    landing_dir: Optional[str] = None

    @property
    def path(self) -> str:
        return self.landing_dir or Settings.from_env().landing_dir

    @property
    def max_shrink(self) -> float:
        """`CUSTOMER_ANALYTICS_MAX_SHRINK`: the largest share of a month's rows a load may drop unasked."""
        return Settings.from_env().max_shrink


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {"warehouse": WarehouseResource(), "landing": LandingZone()}


__all__ = ["LandingZone", "Warehouse", "WarehouseResource", "default_resources"]
