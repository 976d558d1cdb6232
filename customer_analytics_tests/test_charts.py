"""PNG charts in materialization metadata: the cohort LTV heatmap and the segment mix with its migration."""

from __future__ import annotations

import base64
import io
import re
from datetime import date

import dagster as dg
import matplotlib.image
import numpy as np
import pandas as pd
from PIL import Image

from customer_analytics import charts
from customer_analytics.asof import AsOf, compute_clv, compute_rfm
from customer_analytics.assets.cohorts import cohort_ltv_asset
from customer_analytics.assets.segments import customer_segment_tables
from customer_analytics.loading import load_profiles
from customer_analytics.resources import WarehouseResource
from customer_analytics.sample_data import generate_sample
from customer_analytics.segments import compute_segments
from customer_analytics.transforms import segments as segment_transforms
from customer_analytics.transforms.cohorts import cohort_table
from customer_analytics_tests.test_asof import build

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PIXELS = (360, 630)  # rows, columns: 7 × 4 in at 90 dpi
DATA_URI = re.compile(r"^!\[(?P<alt>[^\]]*)\]\(data:image/png;base64,(?P<data>[A-Za-z0-9+/=]+)\)$")


def _cohorts(activity: list[tuple[str, str, int, float]], as_of_day: date, granularity: str = "month") -> pd.DataFrame:
    frame = pd.DataFrame(activity, columns=["cohort_start", "period_start", "active_customers", "revenue"])
    return cohort_table(frame, granularity, as_of_day)


def _pixels(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    return matplotlib.image.imread(io.BytesIO(png), format="png")


# January: 4 customers, 40 then 10 more in March; February: 2 customers, 6.
SMALL = [("2025-01-01", "2025-01-01", 4, 40.0), ("2025-01-01", "2025-03-01", 1, 10.0), ("2025-02-01", "2025-02-01", 2, 6.0)]


def test_the_grid_is_cumulative_revenue_per_customer_by_cohort_and_period():
    rows = pd.concat([_cohorts(SMALL, date(2025, 3, 31)), _cohorts(SMALL, date(2025, 3, 31), "week")], ignore_index=True)
    grid = charts.cohort_grid(rows)
    assert [pd.Timestamp(c).strftime("%Y-%m") for c in grid.index] == ["2025-01", "2025-02"], "weekly rows are left out"
    assert list(grid.columns) == [0, 1, 2]
    np.testing.assert_allclose(grid.to_numpy(), [[10.0, 10.0, 12.5], [3.0, 3.0, np.nan]])


def test_the_heatmap_is_a_small_png_of_the_figure_size():
    png = charts.cohort_heatmap_png(_cohorts(SMALL, date(2025, 3, 31)))
    pixels = _pixels(png)
    assert pixels.shape[:2] == PIXELS
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 20, "a picture, not a blank canvas"
    with Image.open(io.BytesIO(png)) as image:
        assert (image.format, image.size) == ("PNG", PIXELS[::-1])
    assert png == charts.cohort_heatmap_png(_cohorts(SMALL, date(2025, 3, 31))), "same rows, same bytes"


def test_many_cohorts_are_capped_and_stay_small():
    months = pd.date_range("2020-01-01", periods=72, freq="MS")
    activity = [(m.date().isoformat(), m.date().isoformat(), 10 + i, 100.0 + 7 * i) for i, m in enumerate(months)]
    activity += [(months[0].date().isoformat(), m.date().isoformat(), 3, 5.0 * i) for i, m in enumerate(months[1:], 1)]
    rows = _cohorts(activity, date(2025, 12, 31))
    assert rows["cohort_start"].nunique() == 72 and rows["period"].max() == 71

    grid = charts.cohort_grid(rows)
    assert grid.shape == (charts.MAX_COHORTS, charts.MAX_PERIODS)
    assert pd.Timestamp(grid.index[0]) == months[-24] and pd.Timestamp(grid.index[-1]) == months[-1], "the latest 24"
    assert grid.iloc[0].notna().all() and grid.iloc[-1].notna().sum() == 1

    png = charts.cohort_heatmap_png(rows)
    assert _pixels(png).shape[:2] == PIXELS
    markdown = charts.png_markdown(png, "cohort LTV heatmap")
    assert len(png) < 60_000 and len(markdown) < 200_000


def test_markdown_carries_the_png_as_a_data_uri():
    png = charts.cohort_heatmap_png(_cohorts(SMALL, date(2025, 3, 31)))
    match = DATA_URI.match(charts.png_markdown(png, "cohort [LTV]"))
    assert match, "one Markdown image with a base64 PNG data URI"
    assert match["alt"] == "cohort (LTV)"
    assert base64.b64decode(match["data"], validate=True) == png


def test_nothing_to_draw_gives_no_picture():
    weekly_only = _cohorts(SMALL, date(2025, 3, 31), "week")
    assert charts.cohort_heatmap_png(weekly_only) is None
    assert charts.cohort_heatmap_png(weekly_only.iloc[0:0]) is None
    empty_metrics = pd.DataFrame(columns=["segment_type", "segment", "country", "customers", "share"])
    empty_migration = pd.DataFrame(columns=["from_segment", "to_segment", "customers"])
    assert charts.segment_mix_png(empty_metrics, empty_migration) is None
    assert charts.png_markdown(None, "anything") == "_no rows_"


def _members(segments: list[str]) -> pd.DataFrame:
    count = len(segments)
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(count)], "segment": segments, "rfm_segment": ["champions"] * count,
        "country": (["US", "DE", None] * count)[:count], "clv_score": np.linspace(5, 95, count),
        "predicted_revenue_24m": np.linspace(1, 50, count), "monetary": np.linspace(10, 500, count),
        "recency_days": np.arange(count) % 30, "frequency": 1 + np.arange(count) % 4,
    })


def _segment_tables(now: list[str], before: list[str] | None):
    members = _members(now)
    previous = pd.DataFrame({"customer_id": [f"c{i}" for i in range(len(before or []))], "segment": before or []})
    segments = segment_transforms.customer_segments(members, previous)
    return segment_transforms.segment_metrics(members), segment_transforms.segment_migration(segments)


def test_segment_mix_and_migration_picture():
    now = ["high"] * 5 + ["medium"] * 8 + ["low"] * 6 + ["at_risk"] * 3
    metrics, migration = _segment_tables(now, ["medium"] * 10 + ["high"] * 6)
    assert set(migration["from_segment"]) == {"medium", "high", "new"}
    png = charts.segment_mix_png(metrics, migration)
    assert _pixels(png).shape[:2] == PIXELS
    assert png == charts.segment_mix_png(metrics, migration), "same tables, same bytes"

    _, others = _segment_tables(now, ["low"] * 16)
    assert charts.segment_mix_png(metrics, others) != png, "the migration counts are drawn"
    first_month_metrics, everyone_new = _segment_tables(now, None)
    assert set(everyone_new["from_segment"]) == {"new"}
    assert _pixels(charts.segment_mix_png(first_month_metrics, everyone_new)).shape[:2] == PIXELS


def _picture(metadata: dict, key: str, alt: str) -> bytes:
    match = DATA_URI.match(metadata[key].value)
    assert match and match["alt"] == alt, metadata[key].value[:80]
    png = base64.b64decode(match["data"])
    assert _pixels(png).shape[:2] == PIXELS
    assert len(metadata[key].value) < 200_000
    return png


def test_materializations_carry_the_pictures(sqlite_warehouse, tmp_path):
    landing = tmp_path / "landing"
    generate_sample(landing, customers=120, months=3, seed=5, bad_rate=0.0)
    build(sqlite_warehouse, landing, date(2025, 1, 1), date(2025, 3, 1))
    load_profiles(sqlite_warehouse, str(landing))
    for month in (date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)):
        compute_rfm(sqlite_warehouse, AsOf.for_month(month))
        compute_clv(sqlite_warehouse, AsOf.for_month(month))
    compute_segments(sqlite_warehouse, date(2025, 2, 1))  # March's migration starts from February's segments

    resources = {"warehouse": WarehouseResource(db_url=sqlite_warehouse.url, db_schema=sqlite_warehouse.schema)}
    result = dg.materialize([cohort_ltv_asset, customer_segment_tables], partition_key="2025-03", resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    cohorts, segments = metadata["cohort_ltv"], metadata["customer_segments"]
    assert cohorts["monthly_cohorts"].value == 3
    _picture(cohorts, "cohort_heatmap", "cohort LTV heatmap")
    assert "cohort_start" in cohorts["preview"].value, "the table preview stays"
    _picture(segments, "segment_mix_chart", "segment mix and migration")
    assert "segment" in segments["segment_mix"].value
    assert "segment_mix_chart" not in metadata["segment_migration"]

