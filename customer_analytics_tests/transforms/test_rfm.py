"""RFM scoring and segments on hand-computed cases."""

from __future__ import annotations

from datetime import date

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from customer_analytics.transforms.rfm import DEFAULT_SEGMENT_MAP, assign_segments, fm_score, quintile_scores, rfm_table


def test_quintiles_of_ten_distinct_values():
    scores = quintile_scores(pd.Series(range(10)))
    assert scores.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_ties_share_the_score_of_their_lowest_rank():
    # Six customers bought once, four more often: the single buyers all get 1, never split.
    scores = quintile_scores(pd.Series([1, 1, 1, 1, 1, 1, 2, 2, 3, 7]))
    assert scores.tolist() == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]


def test_fm_is_the_mean_rounded_half_up():
    assert fm_score(pd.Series([1, 2, 4, 5]), pd.Series([2, 2, 5, 5])).tolist() == [2, 2, 5, 5]


def test_the_default_map_gives_every_cell_exactly_one_segment_and_every_segment_a_cell():
    cells = pd.DataFrame([(r, fm) for r in range(1, 6) for fm in range(1, 6)], columns=["r", "fm"])
    named = assign_segments(cells["r"], cells["fm"], DEFAULT_SEGMENT_MAP)
    assert "Unclassified" not in set(named)
    assert set(named) == set(DEFAULT_SEGMENT_MAP["rfm_segment"])
    grid = dict(zip(zip(cells["r"], cells["fm"]), named))
    assert grid[(5, 5)] == "Champions" and grid[(1, 1)] == "Lost" and grid[(1, 5)] == "Can't Lose Them"
    assert grid[(5, 1)] == "New Customers" and grid[(2, 1)] == "Hibernating" and grid[(3, 2)] == "Need Attention"


def test_first_matching_rule_wins():
    rules = pd.DataFrame([(1, "A", 1, 5, 1, 5, ""), (2, "B", 1, 5, 1, 5, "")], columns=DEFAULT_SEGMENT_MAP.columns)
    assert assign_segments(pd.Series([3]), pd.Series([3]), rules).tolist() == ["A"]


def test_rfm_table_figures():
    # Five customers with distinct values: each quintile holds one; "a" is best on all three.
    history = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d", "e"],
        "first_purchase_at": pd.to_datetime(["2025-01-03 10:00"] * 5, utc=True),
        "last_purchase_at": pd.to_datetime(["2025-01-31 23:59", "2025-01-30 09:00", "2025-01-20 00:00", "2025-01-10 00:00", "2025-01-05 00:00"], utc=True),
        "last_purchase_date": pd.to_datetime(["2025-01-31", "2025-01-30", "2025-01-20", "2025-01-10", "2025-01-05"]),
        "purchases": [9, 1, 2, 3, 4], "revenue": [90.0, 5.5, 20.0, 1.0, 7.0],
    })
    rfm = rfm_table(history, date(2025, 1, 31)).set_index("customer_id")
    assert rfm.loc["a", "recency_days"] == 0, "a purchase on the as-of date has recency 0"
    assert rfm["recency_days"].tolist() == [0, 1, 11, 21, 26]
    assert rfm.loc["a", "avg_order_value"] == 10.0
    assert rfm["r_score"].tolist() == [5, 4, 3, 2, 1]
    assert rfm["f_score"].tolist() == [5, 1, 2, 3, 4]
    assert rfm["m_score"].tolist() == [5, 2, 4, 1, 3]
    assert rfm.loc["a", "rfm_score"] == "555" and rfm.loc["a", "rfm_segment"] == "Champions"
    assert rfm.loc["e", "rfm_score"] == "143" and rfm.loc["e", "fm_score"] == 4 and rfm.loc["e", "rfm_segment"] == "Can't Lose Them"
    assert rfm.loc["b", "rfm_segment"] == "Potential Loyalist"  # R4, FM (1 + 2 + 1) // 2 = 2


@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=200))
def test_scores_are_in_range_and_monotone(values):
    series = pd.Series(values)
    scores = quintile_scores(series)
    assert scores.between(1, 5).all()
    ordered = scores[series.sort_values(kind="stable").index]
    assert ordered.is_monotonic_increasing
