"""The monthly partitions every time-based asset shares."""

from __future__ import annotations

from datetime import date

import dagster as dg

from customer_analytics.config import Settings, month_key, parse_month

# `end_offset=1` includes the month in progress, so the nightly refresh can recompute it.
monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=month_key(Settings.from_env().start_month),
    end_offset=1,
    timezone="UTC",
    fmt="%Y-%m",
)


def partition_month(partition_key: str) -> date:
    """The first day of the month a partition key (`YYYY-MM`) names."""
    return parse_month(partition_key, what="partition key")
