"""Small PNG charts for materialization metadata: frames in, PNG bytes or Markdown out (no Dagster).

* `cohort_heatmap_png`: monthly cohorts × period, colour = cumulative revenue per customer.
* `segment_mix_png`: customers per value segment, beside the month-over-month migration matrix.
* `png_markdown`: a PNG as a Markdown image with a base64 data URI, which the Dagster UI renders
  inline (its Markdown sanitizer allows `data:` image sources).

Charts are drawn with matplotlib's object API (`Figure` + Agg canvas), never pyplot: no global
figure registry to leak figures into, and safe in a run's threads. Sizes are kept small (about
7 × 4 in at 90 dpi, at most `MAX_COHORTS` × `MAX_PERIODS` cells) because every materialization
event stores the image in Dagster's event log.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

from customer_analytics.transforms.segments import NEW_CUSTOMER

MAX_COHORTS = 24
MAX_PERIODS = 24
ANNOTATE_MAX_CELLS = 144  # 12 × 12: beyond that the numbers no longer fit in their cells
SEGMENT_ORDER = ("high", "medium", "low", "at_risk")
FIGSIZE = (7.0, 4.0)
DPI = 90
NO_ROWS = "_no rows_"


def cohort_grid(cohort_rows: pd.DataFrame, *, max_cohorts: int = MAX_COHORTS, max_periods: int = MAX_PERIODS) -> pd.DataFrame:
    """The heatmap's cells: cumulative revenue per customer, one row per monthly cohort (the latest
    `max_cohorts`, oldest first) and one column per period (0 … `max_periods` − 1).

    Takes `cohort_ltv` rows; weekly rows are left out when a `granularity` column is present. A
    period a cohort has not reached yet is NaN. No monthly rows give an empty frame.
    """
    rows = cohort_rows
    if "granularity" in rows.columns:
        rows = rows[rows["granularity"] == "month"]
    rows = rows[rows["period"] < max_periods]
    if rows.empty:
        return pd.DataFrame(dtype="float64")
    grid = rows.pivot_table(index="cohort_start", columns="period", values="cumulative_revenue_per_customer", aggfunc="first")
    grid = grid.sort_index().tail(max_cohorts)
    return grid.reindex(columns=range(int(grid.columns.max()) + 1))


def cohort_heatmap_png(cohort_rows: pd.DataFrame, *, max_cohorts: int = MAX_COHORTS, max_periods: int = MAX_PERIODS,
                       dpi: int = DPI) -> bytes | None:
    """A heatmap of `cohort_grid` as PNG bytes (None without monthly rows), each cohort labelled with its
    size; cells carry their value when there are at most `ANNOTATE_MAX_CELLS` of them."""
    grid = cohort_grid(cohort_rows, max_cohorts=max_cohorts, max_periods=max_periods)
    if grid.empty:
        return None
    monthly = cohort_rows[cohort_rows["granularity"] == "month"] if "granularity" in cohort_rows.columns else cohort_rows
    sizes = monthly.groupby("cohort_start")["customers"].first()
    all_cohorts = monthly["cohort_start"].nunique()
    values = grid.to_numpy(dtype="float64")

    figure = _figure()
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis", interpolation="nearest")
    colorbar = figure.colorbar(image, ax=axes, fraction=0.05, pad=0.02)
    colorbar.set_label("cumulative revenue per customer", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)

    small = 7 if len(grid) <= 12 else 6
    axes.set_yticks(range(len(grid)))
    axes.set_yticklabels([f"{pd.Timestamp(c):%Y-%m} (n={int(sizes.get(c, 0)):,})" for c in grid.index], fontsize=small)
    axes.set_xticks(range(len(grid.columns)))
    axes.set_xticklabels([str(p) for p in grid.columns], fontsize=small)
    axes.set_xlabel("months since first purchase", fontsize=8)
    shown = f"latest {len(grid)} of {all_cohorts} cohorts" if all_cohorts > len(grid) else f"{len(grid)} cohorts"
    axes.set_title(f"Cohort LTV: cumulative revenue per customer ({shown})", fontsize=9)

    if values.size <= ANNOTATE_MAX_CELLS:
        # White text on the dark end of viridis, black on the light end.
        low, high = np.nanmin(values), np.nanmax(values)
        middle = (low + high) / 2
        for (row, column), value in np.ndenumerate(values):
            if not np.isnan(value):
                axes.text(column, row, _short_number(value), ha="center", va="center", fontsize=6,
                          color="white" if value < middle else "black")
    return _png(figure, dpi)


def segment_mix_png(metrics: pd.DataFrame, migration: pd.DataFrame, *, dpi: int = DPI) -> bytes | None:
    """Customers per value segment (bars, with their share) beside the migration matrix (from_segment →
    to_segment customer counts, 'new' for newcomers), as PNG bytes; None when both frames are empty.

    `metrics` are `segment_metrics` rows: only the overall value-segment rows (segment_type 'value',
    no country) are drawn. `migration`: from_segment, to_segment, customers.
    """
    overall = metrics
    if not metrics.empty:
        overall = metrics[(metrics["segment_type"] == "value") & metrics["country"].isna()]
    if overall.empty and migration.empty:
        return None
    found = set(overall["segment"]) if not overall.empty else set()
    if not migration.empty:
        found |= set(migration["to_segment"]) | set(migration["from_segment"])
    # Always the four value segments, in a fixed order, so that months compare at a glance.
    segments = [*SEGMENT_ORDER, *sorted(str(s) for s in found - set(SEGMENT_ORDER) - {NEW_CUSTOMER})]

    figure = _figure()
    bars, matrix = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})

    counts = overall.groupby("segment")["customers"].sum() if not overall.empty else pd.Series(dtype="int64")
    customers = [int(counts.get(s, 0)) for s in segments]
    total = sum(customers)
    positions = np.arange(len(segments))
    bars.barh(positions, customers, color="#4c72b0")
    bars.set_yticks(positions)
    bars.set_yticklabels(segments, fontsize=8)
    bars.invert_yaxis()  # high at the top, like the matrix
    bars.tick_params(axis="x", labelsize=7)
    bars.set_xlabel("customers", fontsize=8)
    bars.set_title(f"Segment mix ({total:,} customers)", fontsize=9)
    bars.set_xlim(0, max(customers + [1]) * 1.35)  # room for the labels right of the bars
    for position, count in zip(positions, customers):
        share = f" ({count / total:.0%})" if total else ""
        bars.text(count, position, f" {count:,}{share}", va="center", fontsize=7)

    sources = [NEW_CUSTOMER, *segments]
    moves = (migration.pivot_table(index="from_segment", columns="to_segment", values="customers", aggfunc="sum")
             .reindex(index=sources, columns=segments).fillna(0).to_numpy(dtype="int64")
             if not migration.empty else np.zeros((len(sources), len(segments)), dtype="int64"))
    matrix.imshow(moves, cmap="Blues", aspect="auto", vmin=0, vmax=max(int(moves.max()), 1))
    matrix.set_xticks(range(len(segments)))
    matrix.set_xticklabels(segments, fontsize=7)
    matrix.set_yticks(range(len(sources)))
    matrix.set_yticklabels(sources, fontsize=7)
    matrix.set_xlabel("to segment (this month)", fontsize=8)
    matrix.set_ylabel("from segment (last month)", fontsize=8)
    matrix.set_title("Migration since last month", fontsize=9)
    middle = moves.max() / 2
    for (row, column), count in np.ndenumerate(moves):
        matrix.text(column, row, f"{count:,}", ha="center", va="center", fontsize=7,
                    color="white" if count > middle else "black")
    return _png(figure, dpi)


def png_markdown(png: bytes | None, alt: str) -> str:
    """`png` as a Markdown image with a base64 `data:` URI (for `MetadataValue.md`); "_no rows_" for None."""
    if png is None:
        return NO_ROWS
    alt = alt.replace("[", "(").replace("]", ")")  # brackets would end the alt text early
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _short_number(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _figure():
    # Imported here so that loading the code location does not pay for matplotlib (~0.3 s).
    from matplotlib.figure import Figure

    return Figure(figsize=FIGSIZE, layout="constrained")


def _png(figure, dpi: int) -> bytes:
    """The figure as an 8-bit palette PNG: flat-coloured charts lose nothing visible with 256 colours,
    and the file is about a third of Agg's RGBA one (every materialization stores it)."""
    from PIL import Image  # Pillow comes with matplotlib

    rendered = io.BytesIO()
    figure.savefig(rendered, format="png", dpi=dpi)  # a Figure made without pyplot renders with Agg
    rendered.seek(0)
    with Image.open(rendered) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()
