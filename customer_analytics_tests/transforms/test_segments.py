"""Segment membership, metrics, migration and definitions on hand-computed cases."""

from __future__ import annotations

import pandas as pd
import pytest

from customer_analytics.transforms.clv_scores import ClvSettings
from customer_analytics.transforms.rfm import DEFAULT_SEGMENT_MAP
from customer_analytics.transforms.segments import customer_segments, segment_definitions, segment_metrics, segment_migration

MEMBERS = pd.DataFrame({
    "customer_id": ["a", "b", "c", "d"],
    "segment": ["high", "high", "low", "at_risk"],
    "rfm_segment": ["Champions", "Loyal Customers", "Lost", "Lost"],
    "country": ["FR", "DE", "FR", None],
    "clv_score": [100, 67, 0, 33],
    "predicted_revenue_24m": [90.0, 30.0, 0.0, 6.0],
    "monetary": [200.0, 100.0, 10.0, 20.0],
    "recency_days": [1, 10, 300, 200],
    "frequency": [8, 4, 1, 2],
})


def test_previous_segment_and_change_flag():
    previous = pd.DataFrame({"customer_id": ["a", "b", "d"], "segment": ["high", "medium", "at_risk"]})
    segments = customer_segments(MEMBERS, previous).set_index("customer_id")
    assert segments["previous_segment"].tolist() == ["high", "medium", None, "at_risk"]
    assert segments["segment_changed"].tolist() == [False, True, True, False]


def test_metrics_overall_and_by_country():
    metrics = segment_metrics(MEMBERS)
    high = metrics.query("segment_type == 'value' and segment == 'high' and country.isna()", engine="python").iloc[0]
    assert (high["customers"], high["share"], high["avg_clv_score"], high["total_revenue"]) == (2, 0.5, 83.5, 300.0)
    assert high["avg_recency_days"] == 5.5 and high["avg_frequency"] == 6.0
    fr = metrics.query("segment_type == 'value' and country == 'FR'").set_index("segment")
    assert fr["customers"].to_dict() == {"high": 1, "low": 1} and fr["share"].to_dict() == {"high": 0.5, "low": 0.5}
    lost = metrics.query("segment_type == 'rfm' and segment == 'Lost' and country.isna()", engine="python").iloc[0]
    assert lost["customers"] == 2 and lost["share"] == 0.5
    # Every customer appears once per segment type in the overall rows.
    overall = metrics[metrics["country"].isna()]
    assert overall.groupby("segment_type")["customers"].sum().to_dict() == {"rfm": 4, "value": 4}


def test_migration_counts_moves_and_newcomers():
    previous = pd.DataFrame({"customer_id": ["a", "b"], "segment": ["high", "medium"]})
    migration = segment_migration(customer_segments(MEMBERS, previous))
    moves = {(r.from_segment, r.to_segment): r.customers for r in migration.itertuples()}
    assert moves == {("high", "high"): 1, ("medium", "high"): 1, ("new", "low"): 1, ("new", "at_risk"): 1}


def test_definitions_cover_every_segment_with_its_thresholds():
    definitions = segment_definitions(ClvSettings(high_score=70), DEFAULT_SEGMENT_MAP).set_index("segment_id")
    assert len(definitions) == 4 + len(DEFAULT_SEGMENT_MAP) + 5
    assert "clv_score >= 70" in definitions.loc["value:high", "segment_rules"]
    # The behavioural segments the suggestions view assigns are defined too, with their thresholds.
    assert definitions.loc["behavioral:High Value Active", "segment_rules"].startswith("m_score = 5 and recency_days <= 30")
    assert (definitions["segment_type"] == "behavioral").sum() == 5
    assert definitions.loc["rfm:Champions", "segment_type"] == "rfm"
    assert "r_score between 4 and 5" in definitions.loc["rfm:Champions", "segment_rules"]


@pytest.mark.parametrize("column", ["customers", "share"])
def test_metrics_are_never_negative(column):
    assert (segment_metrics(MEMBERS)[column] >= 0).all()
