"""The reference of every table, view and check, generated from the code (`docs/reference.md`).

Table and column text comes from the table definitions' comments (`resources/tables.py`), asset
and check text from their Dagster definitions, view columns from the views themselves (created
on an empty SQLite warehouse). So the reference cannot drift from the code: a test compares the
committed file with a fresh rendering.

    python -m customer_analytics.reference > docs/reference.md
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sqlalchemy import inspect

def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ").strip()


def _tables_section(graph) -> list[str]:
    from customer_analytics.resources.tables import metadata, partition_column

    lines = ["## Tables", ""]
    assets = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        node = assets.get(table.name)
        what = node.description if node is not None else table.comment  # bookkeeping tables describe themselves
        lines += [f"### `{table.name}`", "", _cell(what), ""]
        facts = []
        if node is not None:
            facts.append(f"asset in group `{node.group_name}`" + (", partitioned by month" if node.is_partitioned else ""))
        else:
            facts.append("bookkeeping (no asset of its own)")
        if partition_column(table):
            facts.append(f"one month per `{partition_column(table)}`")
        key = [c.name for c in table.primary_key.columns]
        if key:
            facts.append("key (" + ", ".join(f"`{k}`" for k in key) + ")")
        lines += ["; ".join(facts).capitalize() + ".", "", "| column | type | null | meaning |", "|---|---|---|---|"]
        for column in table.columns:
            lines.append(f"| `{column.name}` | {_type_name(column.type)} | {'yes' if column.nullable else 'no'} | "
                         f"{_cell(column.comment)} |")
        lines.append("")
    return lines


def _type_name(kind) -> str:
    name = type(kind).__name__
    if name == "Variant":  # an id: text compared byte by byte on PostgreSQL
        return "text (id)"
    return {"String": "text", "Text": "text", "BigInteger": "integer", "Integer": "integer", "Float": "float",
            "Date": "date", "DateTime": "timestamp (UTC)", "Boolean": "boolean", "LargeBinary": "bytes"}.get(name, name.lower())


def _views_section() -> list[str]:
    from customer_analytics.resources.warehouse import Warehouse
    from customer_analytics.views import VIEW_DESCRIPTIONS, VIEW_NAMES, VIEW_TABLES, create_views

    lines = ["## BI views", "", "Computed when read; the `_latest` views and the segment views read the latest month.", ""]
    with tempfile.TemporaryDirectory() as folder:
        warehouse = Warehouse(f"sqlite:///{Path(folder) / 'reference.db'}")
        warehouse.ensure_tables()
        create_views(warehouse)
        with warehouse.connect() as connection:
            inspector = inspect(connection)
            columns = {name: [c["name"] for c in inspector.get_columns(name)] for name in VIEW_NAMES}
        warehouse.engine.dispose()
    for name in VIEW_NAMES:
        lines += [f"### `{name}`", "", _cell(VIEW_DESCRIPTIONS[name]), "",
                  "Reads " + ", ".join(f"`{t}`" for t in VIEW_TABLES[name]) + ". Columns: "
                  + ", ".join(f"`{c}`" for c in columns[name]) + ".", ""]
    return lines


def _checks_section(defs) -> list[str]:
    lines = ["## Asset checks", "", "| asset | check | blocking | what it does |", "|---|---|---|---|"]
    specs = []
    for assets_def in defs.resolve_asset_graph().assets_defs:
        specs.extend(assets_def.check_specs)
    for spec in sorted(specs, key=lambda s: (s.asset_key.to_user_string(), s.name)):
        lines.append(f"| `{spec.asset_key.to_user_string()}` | `{spec.name}` | {'yes' if spec.blocking else 'no'} | "
                     f"{_cell(spec.description)} |")
    return lines + [""]


def render() -> str:
    """docs/reference.md, rendered from the code."""
    from customer_analytics.definitions import defs

    graph = defs.resolve_asset_graph()
    lines = ["# Reference: tables, views and checks", "",
             "Generated from the code by `python -m customer_analytics.reference > docs/reference.md`; do not edit. "
             "Tables are a contract: columns are added, never renamed or dropped.", ""]
    lines += _tables_section(graph) + _views_section() + _checks_section(defs)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
