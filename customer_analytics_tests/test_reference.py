"""docs/reference.md is generated from the code: the committed file must be what the code renders now."""

from pathlib import Path

from customer_analytics.reference import render
from customer_analytics.resources.tables import metadata
from customer_analytics.views import VIEW_NAMES

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def test_the_committed_reference_is_the_rendered_one():
    rendered = render()
    assert REFERENCE.read_text() == rendered, (
        "docs/reference.md is out of date: run `python -m customer_analytics.reference > docs/reference.md`")


def test_every_table_column_and_view_is_documented():
    rendered = render()
    from customer_analytics.definitions import defs

    assets = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    for table in metadata.tables.values():
        assert f"### `{table.name}`" in rendered
        assert table.name in assets or table.comment, f"{table.name} is no asset and says nothing of itself (Table comment)"
        for column in table.columns:
            assert column.comment, f"{table.name}.{column.name} has no comment"
            assert f"| `{column.name}` |" in rendered
    for name in VIEW_NAMES:
        assert f"### `{name}`" in rendered
