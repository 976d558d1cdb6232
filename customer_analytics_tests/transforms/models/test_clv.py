"""Discounted CLV and the simulator, checked against definitions and an event-level simulation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_analytics.transforms.models import (
    BgNbdParams,
    GammaGammaParams,
    discounted_clv,
    expected_order_value,
    expected_purchases,
    probability_alive,
    simulate_bgnbd_gamma_gamma,
)
from customer_analytics_tests.transforms.models.test_bgnbd import cdnow_calibration_summary

DAYS_PER_MONTH = 30.4375
CDNOW_BG = BgNbdParams(0.243, 4.414 * 7, 0.793, 2.426)
CDNOW_GG = GammaGammaParams(6.25, 3.74, 15.44)
SIM_BG = BgNbdParams(0.5, 20.0, 0.8, 2.5)
SIM_GG = GammaGammaParams(6.0, 4.0, 15.0)


def _cdnow_inputs():
    s = cdnow_calibration_summary()
    return s["frequency"], s["recency"], s["T"], s["monetary"]


def test_rate_zero_is_expected_purchases_times_order_value():
    x, tx, T, m = _cdnow_inputs()
    clv = discounted_clv(CDNOW_BG, CDNOW_GG, x, tx, T, m, monthly_discount_rate=0.0)
    horizon = 24 * DAYS_PER_MONTH
    purchases = expected_purchases(CDNOW_BG, horizon, x, tx, T)
    expected = purchases * expected_order_value(CDNOW_GG, x, m)
    np.testing.assert_allclose(clv, expected, rtol=1e-10)


def test_clv_is_the_month_by_month_discounted_sum():
    x, tx, T, m = _cdnow_inputs()
    months, rate = 12, 0.015
    clv = discounted_clv(CDNOW_BG, CDNOW_GG, x, tx, T, m, months=months, monthly_discount_rate=rate)
    spend = expected_order_value(CDNOW_GG, x, m)
    expected = np.zeros(x.size)
    for k in range(1, months + 1):
        in_month = expected_purchases(CDNOW_BG, k * DAYS_PER_MONTH, x, tx, T) - expected_purchases(
            CDNOW_BG, (k - 1) * DAYS_PER_MONTH, x, tx, T
        )
        expected += in_month * spend / (1 + rate) ** k
    np.testing.assert_allclose(clv, expected, rtol=1e-10)


def test_discounting_and_horizon():
    x, tx, T, m = _cdnow_inputs()
    values = [
        discounted_clv(CDNOW_BG, CDNOW_GG, x, tx, T, m, monthly_discount_rate=d)
        for d in (0.0, 0.01, 0.05)
    ]
    assert np.all(values[0] > values[1]) and np.all(values[1] > values[2]) and np.all(values[2] > 0)
    np.testing.assert_array_equal(discounted_clv(CDNOW_BG, CDNOW_GG, x, tx, T, m, months=0), 0.0)
    assert np.all(discounted_clv(CDNOW_BG, CDNOW_GG, x, tx, T, m, months=36) > values[1])


def test_spend_frequency_drives_the_order_value():
    x, tx, T, m = np.array([3.0]), np.array([100.0]), np.array([200.0]), np.array([50.0])
    default = discounted_clv(CDNOW_BG, CDNOW_GG, x, tx, T, m)
    fewer = discounted_clv(CDNOW_BG, CDNOW_GG, x, tx, T, m, spend_frequency=[1.0])
    ratio = expected_order_value(CDNOW_GG, 1.0, m) / expected_order_value(CDNOW_GG, 3.0, m)
    assert fewer[0] == pytest.approx(default[0] * ratio[0], rel=1e-12)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        discounted_clv(CDNOW_BG, CDNOW_GG, [1], [2], [3], [4], monthly_discount_rate=-1.0)
    with pytest.raises(ValueError):
        discounted_clv(CDNOW_BG, CDNOW_GG, [1, 2], [2, 3], [3, 4], [4, 5, 6])


# --- against an event-level simulation ------------------------------------------------------


@dataclass
class Events:
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray
    alive: np.ndarray
    future_purchases: np.ndarray
    future_revenue: np.ndarray


def simulate_events(
    n: int, bg: BgNbdParams, gg: GammaGammaParams, T: np.ndarray, horizon: float, seed: int
) -> Events:
    """Purchase-by-purchase simulation over (0, T + horizon], independent of the package simulator.

    Arrival times of the Poisson(lambda) process are drawn explicitly; the customer makes
    J ~ Geometric(p) repeat purchases at most and drops out right after the J-th.
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(bg.r, 1 / bg.alpha, n)
    p = rng.beta(bg.a, bg.b, n)
    nu = rng.gamma(gg.q, 1 / gg.gamma, n)
    end = T + horizon
    n_arrivals = rng.poisson(lam * end)
    last_purchase = rng.geometric(p)
    owner = np.repeat(np.arange(n), n_arrivals)
    times = rng.random(owner.size) * end[owner]
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(n_arrivals) - n_arrivals, n_arrivals)
    made = rank < last_purchase[owner]
    owner, times = owner[made], times[made]
    values = rng.gamma(gg.p, 1 / nu[owner])

    calibration = times <= T[owner]
    frequency = np.bincount(owner[calibration], minlength=n).astype(float)
    recency = np.zeros(n)
    np.maximum.at(recency, owner[calibration], times[calibration])
    spend = np.bincount(owner[calibration], weights=values[calibration], minlength=n)
    monetary = np.divide(spend, frequency, out=np.zeros(n), where=frequency > 0)
    future = ~calibration
    return Events(
        frequency,
        recency,
        T,
        monetary,
        alive=frequency < last_purchase,
        future_purchases=np.bincount(owner[future], minlength=n).astype(float),
        future_revenue=np.bincount(owner[future], weights=values[future], minlength=n),
    )


@pytest.fixture(scope="module")
def events() -> Events:
    n = 40_000
    T = np.random.default_rng(99).uniform(30, 730, n)
    return simulate_events(n, SIM_BG, SIM_GG, T, horizon=6 * DAYS_PER_MONTH, seed=1)


def _assert_mean_close(predicted: np.ndarray, actual: np.ndarray, n_se: float = 4.0) -> None:
    """mean(actual - predicted) is 0 under the model; allow n_se standard errors."""
    diff = actual - predicted
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert abs(diff.mean()) <= n_se * se, (actual.mean(), predicted.mean(), se)
    assert se < 0.05 * max(abs(actual.mean()), 1e-12)  # the check has power


@pytest.mark.parametrize("segment", ["all", "x=0", "x=1..3", "x>=4", "long silent"])
def test_conditional_predictions_match_simulated_future(events, segment):
    e = events
    masks = {
        "all": np.ones(e.frequency.size, bool),
        "x=0": e.frequency == 0,
        "x=1..3": (e.frequency >= 1) & (e.frequency <= 3),
        "x>=4": e.frequency >= 4,
        "long silent": (e.frequency >= 2) & (e.T - e.recency > 120),
    }
    s = masks[segment]
    x, tx, T, m = e.frequency[s], e.recency[s], e.T[s], e.monetary[s]
    _assert_mean_close(probability_alive(SIM_BG, x, tx, T), e.alive[s].astype(float))
    predicted = expected_purchases(SIM_BG, 6 * DAYS_PER_MONTH, x, tx, T)
    _assert_mean_close(predicted, e.future_purchases[s])
    clv = discounted_clv(SIM_BG, SIM_GG, x, tx, T, m, months=6, monthly_discount_rate=0.0)
    _assert_mean_close(clv, e.future_revenue[s])


# --- the package simulator -----------------------------------------------------------------


def test_simulator_is_deterministic_and_well_formed():
    a = simulate_bgnbd_gamma_gamma(5000, SIM_BG, SIM_GG, seed=3)
    b = simulate_bgnbd_gamma_gamma(5000, SIM_BG, SIM_GG, seed=3)
    c = simulate_bgnbd_gamma_gamma(5000, SIM_BG, SIM_GG, seed=4)
    for name in ("frequency", "recency", "T", "monetary"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.frequency, c.frequency)
    x, tx, T, m = a.frequency, a.recency, a.T, a.monetary
    assert np.all((T >= 1) & (T <= 730) & (T == np.round(T)))
    assert np.all((tx >= 0) & (tx <= T) & (tx == np.round(tx)))
    assert np.all((tx > 0) == (x > 0))
    assert np.all((m > 0) == (x > 0))
    assert np.all(x == np.round(x))


def test_simulator_matches_event_simulation():
    """Order-statistic shortcut vs explicit purchase times: same summary distributions."""
    n, T = 40_000, 365.0
    fast = simulate_bgnbd_gamma_gamma(n, SIM_BG, SIM_GG, T=T, whole_days=False, seed=5)
    slow = simulate_events(n, SIM_BG, SIM_GG, np.full(n, T), horizon=0.0, seed=6)
    for stat in (
        lambda s: s.frequency,
        lambda s: (s.frequency == 0).astype(float),
        lambda s: s.recency,
        lambda s: np.where(s.frequency > 0, s.monetary, 0.0),
    ):
        a, b = stat(fast), stat(slow)
        se = np.sqrt(a.var() / n + b.var() / n)
        assert abs(a.mean() - b.mean()) < 4 * se


def test_simulated_frequency_matches_unconditional_expectation():
    # A customer observed for T = 0 has E[Y(t)] = E[X(t)], the unconditional expectation.
    sim = simulate_bgnbd_gamma_gamma(100_000, SIM_BG, SIM_GG, T=365.0, whole_days=False, seed=8)
    predicted = expected_purchases(SIM_BG, 365.0, 0, 0, 0)[0]
    se = sim.frequency.std() / np.sqrt(sim.frequency.size)
    assert abs(sim.frequency.mean() - predicted) < 4 * se


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    r=st.floats(0.05, 5),
    alpha=st.floats(1, 500),
    a=st.floats(0.05, 5),
    b=st.floats(0.05, 20),
    x=st.integers(0, 100),
    T=st.floats(1, 3000),
    recency_share=st.floats(0.001, 1),
    monetary=st.floats(0.5, 1000),
    rate=st.floats(0.0, 0.2),
)
def test_clv_is_finite_nonnegative_and_at_most_undiscounted(
    r, alpha, a, b, x, T, recency_share, monetary, rate
):
    bg, gg = BgNbdParams(r, alpha, a, b), GammaGammaParams(6.0, 4.0, 15.0)
    tx = 0.0 if x == 0 else T * recency_share
    value = discounted_clv(bg, gg, x, tx, T, monetary, monthly_discount_rate=rate)[0]
    undiscounted = discounted_clv(bg, gg, x, tx, T, monetary, monthly_discount_rate=0.0)[0]
    assert np.isfinite(value) and value >= 0
    assert value <= undiscounted * (1 + 1e-12) + 1e-300
