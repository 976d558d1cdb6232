"""Metadata every asset shares: owners, column schemas, Markdown previews of what was written."""

from __future__ import annotations

import dagster as dg
import pandas as pd
from sqlalchemy import Table

from customer_analytics.resources.tables import column_schema

OWNERS = ["team:customer-analytics"]


def table_spec_metadata(table: Table) -> dict:
    return {"dagster/column_schema": column_schema(table), "dagster/table_name": table.name}


def markdown_table(frame: pd.DataFrame, *, max_rows: int = 10) -> dg.MarkdownMetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    shown = frame.head(max_rows).copy()
    for column in shown.columns:
        if shown[column].dtype == object:
            shown[column] = shown[column].map(lambda v: v if not isinstance(v, str) or len(v) <= 60 else v[:57] + "…")
    return dg.MetadataValue.md(shown.to_markdown(index=False))


def counter_table(counts: dict, key: str, value: str, *, max_rows: int = 15) -> dg.MarkdownMetadataValue:
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:max_rows]
    return markdown_table(pd.DataFrame(items, columns=[key, value]), max_rows=max_rows)
