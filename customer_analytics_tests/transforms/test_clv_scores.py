"""CLV scoring: BTYD inputs, percentiles, segments and the heuristic fallback."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from customer_analytics.transforms.clv_scores import (
    ClvSettings,
    btyd_summary,
    fit_models,
    percentile_scores,
    score_customers,
    value_segments,
)
from customer_analytics.transforms.models import BgNbdParams, GammaGammaParams, simulate_bgnbd_gamma_gamma


def _history(**columns):
    base = {"customer_id": ["a"], "first_purchase_date": ["2025-01-01"], "last_purchase_date": ["2025-01-21"],
            "purchases": [4], "revenue": [100.0], "purchase_days": [3], "positive_days": [2],
            "positive_day_revenue": [100.0], "first_day_revenue": [40.0]}
    base.update(columns)
    return pd.DataFrame(base)


def test_btyd_summary_follows_the_literature():
    summary = btyd_summary(_history(), date(2025, 1, 31)).iloc[0]
    assert (summary["frequency"], summary["recency"], summary["T"]) == (2, 20.0, 30.0)
    # Repeat dates: 3 purchase dates, first one (40.0) left out; one repeat date had revenue 0.
    assert summary["spend_frequency"] == 1 and summary["spend_monetary"] == 60.0


def test_zero_revenue_first_day_is_not_subtracted_twice():
    summary = btyd_summary(_history(first_day_revenue=[0.0], positive_days=[2], positive_day_revenue=[100.0]), date(2025, 1, 31)).iloc[0]
    assert summary["spend_frequency"] == 2 and summary["spend_monetary"] == 50.0


def test_percentiles_run_from_0_to_100_and_ties_share():
    assert percentile_scores(pd.Series([10.0, 30.0, 20.0])).tolist() == [0, 100, 50]
    assert percentile_scores(pd.Series([5.0, 5.0, 9.0])).tolist() == [25, 25, 100]


def test_segments_use_churn_first_then_the_score_thresholds():
    settings = ClvSettings()
    segments = value_segments(pd.Series([90, 67, 66, 34, 33, 99]), pd.Series([0.1, 0.2, 0.3, 0.4, 0.49, 0.5]), settings)
    assert segments.tolist() == ["high", "high", "medium", "medium", "low", "at_risk"]


def _simulated(n, seed=3):
    sim = simulate_bgnbd_gamma_gamma(n, BgNbdParams(0.5, 20.0, 0.8, 2.5), GammaGammaParams(6.0, 4.0, 15.0), seed=seed)
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "frequency": sim.frequency, "recency": sim.recency,
                         "T": sim.T, "spend_frequency": sim.frequency, "spend_monetary": np.nan_to_num(sim.monetary),
                         "purchase_days": sim.frequency + 1, "day_spend": np.nan_to_num(sim.monetary, nan=15.0) + 1.0})


def test_model_scores_are_complete_and_bounded():
    summary = _simulated(3000)
    fits = fit_models(summary)
    assert fits.converged and fits.model == "bgnbd+gamma_gamma" and fits.fallback_reason == ""
    scores = score_customers(summary, fits)
    assert not scores.isna().any().any()
    assert scores["p_alive"].between(0, 1).all() and np.allclose(scores["churn_probability"], 1 - scores["p_alive"])
    assert scores["clv_score"].between(0, 100).all() and scores["clv_score"].max() == 100
    # More repeat purchases (same T and recency) never lowers predicted value.
    assert scores.loc[summary["frequency"] == 0, "predicted_revenue_24m"].mean() < scores.loc[summary["frequency"] >= 3, "predicted_revenue_24m"].mean()


def test_fallback_is_named_and_never_nan():
    summary = _simulated(5).assign(frequency=0, recency=0.0, spend_frequency=0)  # nobody repeated: no fit possible
    fits = fit_models(summary)
    assert not fits.converged and fits.model == "heuristic"
    # The reason is kept once (clv_model_fits.message, the check's metadata), not in every customer's row.
    assert fits.fallback_reason == f"BG/NBD: {fits.bgnbd.message}" and fits.bgnbd.message
    scores = score_customers(summary, fits)
    assert not scores.isna().any().any() and scores["p_alive"].between(0, 1).all()
    assert (scores["model"] == fits.model).all()


def _heuristic_summary(rows: list[tuple]) -> pd.DataFrame:
    """(frequency, recency, T, purchase_days, day_spend) per customer."""
    frame = pd.DataFrame(rows, columns=["frequency", "recency", "T", "purchase_days", "day_spend"])
    return frame.assign(customer_id=[f"c{i}" for i in range(len(frame))], spend_frequency=0, spend_monetary=0.0)


def test_the_heuristic_leans_on_the_population_as_documented():
    from customer_analytics.transforms.clv_scores import DAYS_PER_MONTH, DROPOUT_AFTER_PURCHASE, PRIOR_DAYS, _heuristic

    # Two customers: 4 repeats over 200 days, spending 50 a date; a one-time buyer of 930 yesterday.
    summary = _heuristic_summary([(4, 180.0, 200.0, 5, 50.0), (0, 0.0, 1.0, 1, 930.0)])
    p_alive, purchases_12m, order_value, revenue = _heuristic(summary, ClvSettings(monthly_discount_rate=0.0))
    population_rate = 4 / 201  # repeat dates per day observed, over everybody
    rates = np.array([(4 + population_rate * PRIOR_DAYS) / (200 + PRIOR_DAYS), (0 + population_rate * PRIOR_DAYS) / (1 + PRIOR_DAYS)])
    odds = DROPOUT_AFTER_PURCHASE / (1 - DROPOUT_AFTER_PURCHASE)
    assert np.allclose(p_alive, 1 / (1 + odds * (np.exp(rates * np.array([20.0, 1.0])) - 1)))
    population_spend = (5 * 50 + 930) / 6
    assert np.allclose(order_value, [(5 * 50 + population_spend) / 6, (930 + population_spend) / 2])
    horizon = 24 * DAYS_PER_MONTH
    expected = p_alive * order_value * (1 - np.exp(-rates * DROPOUT_AFTER_PURCHASE * horizon)) / DROPOUT_AFTER_PURCHASE
    assert np.allclose(revenue, expected)  # undiscounted: the months' purchases add up to the horizon's
    assert np.allclose(purchases_12m, p_alive * (1 - np.exp(-rates * DROPOUT_AFTER_PURCHASE * 12 * DAYS_PER_MONTH))
                       / DROPOUT_AFTER_PURCHASE)


def test_a_one_time_buyer_silent_long_fades_and_nobody_is_predicted_past_the_bounds():
    from customer_analytics.transforms.clv_scores import PREDICTION_CEILING, RECENT_FLOOR

    summary = _heuristic_summary([(0, 0.0, 10.0, 1, 40.0), (0, 0.0, 400.0, 1, 40.0), (30, 29.0, 30.0, 31, 5000.0),
                                  (300, 300.0, 330.0, 301, 20.0)])
    fits = fit_models(summary)
    assert fits.model == "heuristic"
    scores = score_customers(summary, fits)
    assert scores["p_alive"].iloc[1] < scores["p_alive"].iloc[0] < 1.0, "silence lowers a one-time buyer's p_alive"
    delivered = summary["day_spend"] * summary["purchase_days"]
    assert scores["predicted_revenue_24m"].max() <= PREDICTION_CEILING * delivered.max()
    recent = (summary["T"] - summary["recency"]) <= 30
    assert (scores["predicted_revenue_24m"][recent] >= RECENT_FLOOR * scores["expected_order_value"][recent] - 1e-9).all()
    assert scores.attrs["bounded_predictions"] == 1, "the near-daily buyer silent 30 days is held to the floor"
