"""BG/NBD: published CDNOW estimates, independent numerical checks, degenerate inputs."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.special import betaln, gammaln, roots_jacobi

from customer_analytics.transforms.models import (
    BgNbdParams,
    FitResult,
    GammaGammaParams,
    bgnbd_log_likelihood,
    expected_purchases,
    fit_bgnbd,
    probability_alive,
    simulate_bgnbd_gamma_gamma,
)
from customer_analytics.transforms.models.bgnbd import _BgNbdObjective, _packed_unique_rows, _unique_rows

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "CDNOW_sample.txt"
CALIBRATION_END = np.datetime64("1997-09-30")

# Fader, Hardie & Lee (2005) and Hardie's note "Implementing the BG/NBD model": CDNOW
# 1/10th sample, 2357 customers, 39-week calibration period, time unit = week.
PUBLISHED_WEEKLY = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL_WEEKS = -9582.4


@functools.lru_cache(maxsize=1)
def cdnow_calibration_summary() -> dict[str, np.ndarray]:
    """Per-customer RFM summary of CDNOW_sample.txt for purchases on dates <= 1997-09-30.

    Columns of the file: master id, id within sample, YYYYMMDD, number of CDs, dollars.
    A customer's purchases on one date are one purchase day (revenue summed).
    frequency = distinct dates - 1; recency, T in days; spend_frequency / monetary = count
    and mean revenue of repeat dates (first date excluded) with revenue > 0.
    """
    raw = np.loadtxt(FIXTURE, dtype=str)
    customer = raw[:, 0].astype(np.int64)
    ymd = raw[:, 2]
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in ymd], dtype="datetime64[D]")
    revenue = raw[:, 4].astype(float)
    keep = dates <= CALIBRATION_END
    customer, day, revenue = customer[keep], dates[keep].astype(np.int64), revenue[keep]

    pairs, pair_index = np.unique(np.column_stack([customer, day]), axis=0, return_inverse=True)
    day_revenue = np.bincount(pair_index.ravel(), weights=revenue)
    ids, cust_index, n_days = np.unique(pairs[:, 0], return_inverse=True, return_counts=True)
    first = np.full(ids.size, np.iinfo(np.int64).max)
    last = np.full(ids.size, np.iinfo(np.int64).min)
    np.minimum.at(first, cust_index, pairs[:, 1])
    np.maximum.at(last, cust_index, pairs[:, 1])

    repeat_paid = (pairs[:, 1] > first[cust_index]) & (day_revenue > 0)
    spend_frequency = np.bincount(cust_index, weights=repeat_paid, minlength=ids.size)
    paid_revenue = np.where(repeat_paid, day_revenue, 0.0)
    spend_total = np.bincount(cust_index, weights=paid_revenue, minlength=ids.size)
    end = CALIBRATION_END.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(spend_frequency > 0, spend_total / spend_frequency, 0.0)
    return {
        "frequency": (n_days - 1).astype(float),
        "recency": (last - first).astype(float),
        "T": (end - first).astype(float),
        "spend_frequency": spend_frequency,
        "monetary": monetary,
    }


@functools.lru_cache(maxsize=1)
def cdnow_fit() -> FitResult:
    s = cdnow_calibration_summary()
    return fit_bgnbd(s["frequency"], s["recency"], s["T"])


def test_cdnow_summary_matches_published_counts():
    s = cdnow_calibration_summary()
    assert s["frequency"].size == 2357
    assert int((s["frequency"] > 0).sum()) == 946
    assert s["T"].max() == 272  # first purchases from 1997-01-01
    assert s["T"].min() >= 272 - 89  # cohort acquired in Q1 1997


def test_cdnow_fit_reproduces_published_estimates():
    fit = cdnow_fit()
    assert fit.converged, fit.message
    assert fit.n_customers == 2357
    p = fit.params
    weekly = {"r": p.r, "alpha": p.alpha / 7.0, "a": p.a, "b": p.b}
    for name, published in PUBLISHED_WEEKLY.items():
        assert weekly[name] == pytest.approx(published, rel=0.01), name


def test_cdnow_log_likelihood_matches_published_in_weeks():
    s = cdnow_calibration_summary()
    fit = cdnow_fit()
    p = fit.params
    weekly = BgNbdParams(p.r, p.alpha / 7.0, p.a, p.b)
    ll_weeks = bgnbd_log_likelihood(weekly, s["frequency"], s["recency"] / 7.0, s["T"] / 7.0).sum()
    assert ll_weeks == pytest.approx(PUBLISHED_LL_WEEKS, abs=0.1)
    # Changing the time unit by a factor c shifts the LL by -sum(x) ln c, nothing else.
    shift = s["frequency"].sum() * np.log(7.0)
    assert fit.log_likelihood == pytest.approx(ll_weeks - shift, abs=1e-6)
    # And the day-unit fit is the optimum: a fit directly in weeks lands on the same point.
    fit_weeks = fit_bgnbd(s["frequency"], s["recency"] / 7.0, s["T"] / 7.0)
    assert fit_weeks.log_likelihood == pytest.approx(ll_weeks, abs=1e-6)
    assert fit_weeks.params.alpha == pytest.approx(weekly.alpha, rel=1e-5)


def test_log_likelihood_matches_direct_formula():
    params = BgNbdParams(0.7, 12.0, 1.3, 2.2)
    x = np.array([0.0, 1.0, 2.0, 7.0])
    tx = np.array([0.0, 5.0, 40.0, 80.0])
    T = np.array([30.0, 60.0, 90.0, 100.0])
    r, al, a, b = 0.7, 12.0, 1.3, 2.2
    a1 = np.exp(gammaln(r + x) - gammaln(r)) * al**r
    a2 = np.exp(betaln(a, b + x) - betaln(a, b))
    a3 = (al + T) ** -(r + x)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, a / (b + x - 1) * (al + tx) ** -(r + x), 0.0)
    expected = np.log(a1 * a2 * (a3 + a4))
    np.testing.assert_allclose(bgnbd_log_likelihood(params, x, tx, T), expected, rtol=1e-12)


def test_likelihood_is_a_normalised_density():
    """sum_x P(X(T)=x) = 1, where P(X=x) integrates L over the x ordered purchase times.

    Checks every constant in the likelihood: the density of (t_1..t_x) depends on t_x only,
    so the other x-1 times contribute the volume t_x^(x-1)/(x-1)!.
    """
    params = BgNbdParams(0.5, 20.0, 0.8, 2.5)
    T = 100.0
    total = np.exp(bgnbd_log_likelihood(params, 0, 0, T)[0])
    for x in range(1, 150):
        integrand = lambda s, x=x: np.exp(  # noqa: E731
            bgnbd_log_likelihood(params, x, s, T)[0] + (x - 1) * np.log(s) - gammaln(x)
        )
        total += quad(integrand, 0.0, T, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-6)


def test_objective_gradient_matches_finite_differences():
    truth = BgNbdParams(0.5, 20.0, 0.8, 2.5)
    sim = simulate_bgnbd_gamma_gamma(500, truth, GammaGammaParams(6.0, 4.0, 15.0), seed=3)
    x, tx, T = sim.frequency, sim.recency / 100.0, sim.T / 100.0
    w = np.random.default_rng(0).integers(1, 4, x.size).astype(float)
    objective = _BgNbdObjective(x, tx, T, w)
    theta = np.log([0.8, 0.3, 1.4, 3.0])
    value, grad = objective(theta)

    def direct(th: np.ndarray) -> float:
        return -(w @ bgnbd_log_likelihood(BgNbdParams(*np.exp(th)), x, tx, T)) / w.sum()

    assert value == pytest.approx(direct(theta), rel=1e-12)
    h = 1e-6
    numeric = [(direct(theta + h * e) - direct(theta - h * e)) / (2 * h) for e in np.eye(4)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def _lexsorted_unique_rows(columns, weights=None):
    """The reference for `_unique_rows`: a lexsort of the columns, groups where any column changes."""
    order = np.lexsort(columns[::-1])
    ordered = [c[order] for c in columns]
    starts = np.ones(order.size, dtype=bool)
    for c in ordered:
        starts[1:] = starts[1:] & (c[1:] == c[:-1])
    starts = ~starts
    starts[0] = True
    group = np.cumsum(starts) - 1
    inverse = np.empty(order.size, dtype=np.intp)
    inverse[order] = group
    return [c[starts] for c in ordered], inverse, np.bincount(group, weights=None if weights is None else weights[order])


@pytest.mark.parametrize("case", ["days", "weighted", "horizon", "two columns", "one value"])
def test_packed_distinct_rows_equal_the_lexsorted_ones(case):
    """Whole-number columns (and a constant horizon) take the packed path, with the lexsort's rows and order."""
    rng = np.random.default_rng(7)
    x, tx, T = (rng.integers(0, high, 5_000).astype(float) for high in (40, 300, 700))
    columns, weights = {"days": ([x, tx, T], None), "weighted": ([x, tx, T], rng.random(5_000)),
                        "horizon": ([np.full(5_000, 365.25), x, T], None), "two columns": ([x, T], None),
                        "one value": ([np.full(5_000, 3.0)], None)}[case]
    assert _packed_unique_rows(columns, weights) is not None
    unique, inverse, counts = _unique_rows(columns, weights)
    expected_unique, expected_inverse, expected_counts = _lexsorted_unique_rows(columns, weights)
    for got, expected in zip(unique, expected_unique):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(inverse, expected_inverse)
    np.testing.assert_allclose(counts, expected_counts)


@pytest.mark.parametrize("value", [0.5, -1.0, np.nan, 2.0**40])
def test_columns_that_do_not_pack_take_the_lexsort(value):
    x = np.array([1.0, 2.0, value, 2.0])
    assert _packed_unique_rows([x, np.array([3.0, 4.0, 5.0, 4.0])], None) is None
    unique, inverse, _ = _unique_rows([x, np.array([3.0, 4.0, 5.0, 4.0])])
    assert inverse[1] == inverse[3] and len(unique[0]) == 3


def test_weights_equal_repeated_rows():
    s = cdnow_calibration_summary()
    x, tx, T = s["frequency"][:600], s["recency"][:600], s["T"][:600]
    counts = np.arange(600) % 3 + 1
    weighted = fit_bgnbd(x, tx, T, weights=counts)
    repeated = fit_bgnbd(np.repeat(x, counts), np.repeat(tx, counts), np.repeat(T, counts))
    assert weighted.converged and repeated.converged
    assert weighted.n_customers == repeated.n_customers == counts.sum()
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-9)
    for name in ("r", "alpha", "a", "b"):
        expected = getattr(repeated.params, name)
        assert getattr(weighted.params, name) == pytest.approx(expected, rel=1e-5)


def test_initial_values_do_not_change_the_optimum():
    s = cdnow_calibration_summary()
    start = BgNbdParams(2.0, 500.0, 3.0, 0.5)
    other = fit_bgnbd(s["frequency"], s["recency"], s["T"], initial=start)
    assert other.converged
    assert other.log_likelihood == pytest.approx(cdnow_fit().log_likelihood, abs=1e-6)


def _observed_information_se(params: BgNbdParams, x, tx, T) -> np.ndarray:
    """Standard errors of log-parameters from the numerical Hessian of the total LL."""
    objective = _BgNbdObjective(x, np.where(x > 0, tx, 0.0), T, np.ones(x.size))
    theta = np.log([params.r, params.alpha, params.a, params.b])
    h = 1e-4
    grad = lambda th: objective(th)[1] * objective.total  # noqa: E731
    columns = [(grad(theta + h * e) - grad(theta - h * e)) / (2 * h) for e in np.eye(4)]
    hessian = np.column_stack(columns)
    return np.sqrt(np.diag(np.linalg.inv((hessian + hessian.T) / 2)))


def test_parameter_recovery_on_simulated_customers():
    truth = BgNbdParams(r=0.5, alpha=20.0, a=0.8, b=2.5)
    gg = GammaGammaParams(6.0, 4.0, 15.0)
    sim = simulate_bgnbd_gamma_gamma(20_000, truth, gg, seed=7, whole_days=False)
    fit = fit_bgnbd(sim.frequency, sim.recency, sim.T)
    assert fit.converged, fit.message
    se = _observed_information_se(fit.params, sim.frequency, sim.recency, sim.T)
    # 20k customers pin log-parameters to a few percent (SE ~1-5%); 4 SE bounds the test.
    assert np.all(se < 0.06)
    estimate = np.log([fit.params.r, fit.params.alpha, fit.params.a, fit.params.b])
    true = np.log([truth.r, truth.alpha, truth.a, truth.b])
    np.testing.assert_array_less(np.abs(estimate - true), 4 * se)


def test_parameter_recovery_with_whole_day_data():
    truth = BgNbdParams(r=0.5, alpha=20.0, a=0.8, b=2.5)
    sim = simulate_bgnbd_gamma_gamma(20_000, truth, GammaGammaParams(6.0, 4.0, 15.0), seed=11)
    assert np.all(sim.recency == np.round(sim.recency)) and np.all(sim.T == np.round(sim.T))
    fit = fit_bgnbd(sim.frequency, sim.recency, sim.T)
    assert fit.converged, fit.message
    for name, rel in (("r", 0.1), ("alpha", 0.1), ("a", 0.15), ("b", 0.2)):
        assert getattr(fit.params, name) == pytest.approx(getattr(truth, name), rel=rel), name


# --- scoring ---------------------------------------------------------------------------

CDNOW_DAYS = BgNbdParams(0.243, 4.414 * 7, 0.793, 2.426)


def _expected_purchases_by_quadrature(params: BgNbdParams, t, x, tx, T) -> float:
    """E[Y(t) | x, t_x, T] = P(alive) * E_p[(1 - ((alpha+T)/(alpha+T+p t))^(r+x)) / p].

    p ~ Beta(a, b+x), its posterior given alive.

    Integrating lambda out of E[Y(t) | lambda, p, alive] = (1 - exp(-lambda p t)) / p
    against its posterior gives the bracket; the p-integral is done by Gauss-Jacobi
    quadrature, with no hypergeometric function involved.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(invalid="ignore", divide="ignore"):  # a + b = 1: unused 0/0 branch
        s, w = roots_jacobi(200, b + x - 1, a - 1)
    p = (1 + s) / 2
    g = -np.expm1(-(r + x) * np.log1p(p * t / (alpha + T))) / p
    return float(w @ g / w.sum()) * float(probability_alive(params, x, tx, T)[0])


@pytest.mark.parametrize(
    "params", [CDNOW_DAYS, BgNbdParams(1.5, 60.0, 2.5, 4.0), BgNbdParams(0.3, 10.0, 0.4, 0.3)]
)
@pytest.mark.parametrize(
    ("x", "tx", "T", "t"),
    [
        (0, 0, 30, 730),
        (1, 10, 30, 30),
        (3, 200, 250, 365),
        (50, 2000, 3000, 730),
        (200, 2990, 3000, 3000),
        (200, 2500, 3000, 730),
        (120, 200, 210, 5000),
        (5, 100, 300, 1e4),
        # z = t / (alpha + T + t) < 0.1: the series branch
        (2, 100, 300, 7),
        (0, 0, 3000, 1),
        (200, 2990, 3000, 30),
        (10, 50, 60, 1e-6),
    ],
)
def test_expected_purchases_matches_quadrature(params, x, tx, T, t):
    got = expected_purchases(params, t, x, tx, T)[0]
    assert np.isfinite(got)
    reference = _expected_purchases_by_quadrature(params, t, x, tx, T)
    assert got == pytest.approx(reference, rel=1e-8, abs=1e-300)


def test_expected_purchases_near_and_at_a_equal_one():
    for a in (1.0, 1.0 + 3e-6, 1.0 - 7e-6, 1.0 + 2e-4):
        params = BgNbdParams(0.5, 20.0, a, 2.5)
        cases = ((0, 0, 100, 730), (4, 80, 120, 365), (150, 2900, 3000, 730), (4, 80, 120, 5))
        for x, tx, T, t in cases:
            reference = _expected_purchases_by_quadrature(params, t, x, tx, T)
            assert expected_purchases(params, t, x, tx, T)[0] == pytest.approx(reference, rel=1e-7)


def test_expected_purchases_when_a_plus_b_is_one():
    # x = 0, a + b = 1 puts the hypergeometric c parameter exactly at 0 (handled as a limit).
    params = BgNbdParams(0.5, 20.0, 0.25, 0.75)
    reference = _expected_purchases_by_quadrature(params, 100.0, 0, 0, 50.0)
    assert expected_purchases(params, 100.0, 0, 0, 50.0)[0] == pytest.approx(reference, rel=1e-9)


def test_expected_purchases_for_a_new_customer_is_the_unconditional_mean():
    # x = 0, T = 0: nothing observed yet, so E[Y(t)] = E[(1 - exp(-lambda p t)) / p] over
    # the priors lambda ~ Gamma(r, alpha), p ~ Beta(a, b). Monte Carlo with 400k draws.
    params = BgNbdParams(0.9, 15.0, 2.0, 3.0)
    rng = np.random.default_rng(5)
    lam = rng.gamma(params.r, 1 / params.alpha, 400_000)
    p = rng.beta(params.a, params.b, 400_000)
    monte_carlo = np.mean(-np.expm1(-lam * p * 60.0) / p)
    assert expected_purchases(params, 60.0, 0, 0, 0)[0] == pytest.approx(monte_carlo, rel=0.01)


def test_probability_alive_hand_cases():
    params = CDNOW_DAYS
    np.testing.assert_array_equal(probability_alive(params, [0, 0], [0, 0], [10, 300]), [1.0, 1.0])
    # x > 0 and t_x == T: 1 / (1 + a / (b + x - 1)).
    x = 3.0
    expected = 1 / (1 + params.a / (params.b + x - 1))
    assert probability_alive(params, x, 100, 100)[0] == pytest.approx(expected)
    # Long silence after many purchases: essentially dead, without under/overflow.
    assert 0.0 <= probability_alive(params, 200, 10, 3000)[0] < 1e-100
    # More silence -> lower P(alive).
    p = probability_alive(params, 4, [250, 200, 100, 20], 260)
    assert np.all(np.diff(p) < 0)


def test_expected_purchases_increase_with_t():
    t = np.linspace(0, 3000, 61)
    for x, tx, T in ((0, 0, 40), (2, 30, 200), (30, 700, 720), (150, 2800, 3000)):
        e = expected_purchases(CDNOW_DAYS, t, x, tx, T)
        assert e[0] == 0.0
        assert np.all(np.diff(e) > 0)


def test_scoring_vectorizes_and_propagates_nan():
    x = np.array([0, 2, np.nan, 5])
    tx = np.array([0, 30, 10, 50])
    T = np.array([100, 100, 100, 60])
    e = expected_purchases(CDNOW_DAYS, 30.0, x, tx, T)
    p = probability_alive(CDNOW_DAYS, x, tx, T)
    assert e.shape == p.shape == (4,)
    assert np.isnan(e[2]) and np.isnan(p[2])
    for i in (0, 1, 3):
        alone = expected_purchases(CDNOW_DAYS, 30.0, x[i], tx[i], T[i])[0]
        assert e[i] == pytest.approx(alone, rel=1e-14)
    with pytest.raises(ValueError):
        probability_alive(CDNOW_DAYS, [1], [20], [10])  # recency > T
    with pytest.raises(ValueError):
        expected_purchases(BgNbdParams(-1, 1, 1, 1), 10, [1], [2], [3])


# --- degenerate fits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "fragment"),
    [
        ([], [], [], "too few"),
        ([1, 0, 2], [3, 0, 5], [10, 10, 10], "too few"),
        (np.zeros(50), np.zeros(50), np.full(50, 100.0), "no repeat buyers"),
        ([1.0, np.nan] + [0.0] * 20, [5.0, 3.0] + [0.0] * 20, [10.0] * 22, "finite"),
        ([1.0] * 20, [5.0] * 19 + [np.inf], [10.0] * 20, "finite"),
        (np.full(50, 2.0), np.full(50, 30.0), np.full(50, 100.0), "identical"),
        ([1] * 20, [20] * 20, [10] * 20, "invalid"),
        ([-1] * 10 + [2] * 10, [0] * 10 + [5] * 10, [10] * 20, "invalid"),
        # Two distinct rows for four parameters: the optimum runs off to the boundary.
        ([1] * 20 + [0] * 20, [5] * 20 + [0] * 20, [10] * 40, "ran off"),
    ],
)
def test_degenerate_inputs_do_not_raise(frequency, recency, T, fragment):
    fit = fit_bgnbd(frequency, recency, T)
    assert not fit.converged
    assert fragment in fit.message
    assert np.isnan(fit.log_likelihood)
    assert all(np.isnan(v) for v in (fit.params.r, fit.params.alpha, fit.params.a, fit.params.b))


def test_no_dropout_data_is_flagged_not_converged():
    # Pure NBD data (nobody ever drops out): the MLE is a -> 0, on the boundary.
    rng = np.random.default_rng(0)
    T = rng.uniform(50, 500, 5000)
    x = rng.poisson(rng.gamma(0.5, 1 / 20, T.size) * T).astype(float)
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1), 0.0)
    fit = fit_bgnbd(x, tx, T)
    assert not fit.converged and "ran off" in fit.message


def test_bad_weights_do_not_raise():
    fit = fit_bgnbd([1, 2] * 10, [3, 4] * 10, [10, 10] * 10, weights=[1, np.nan] * 10)
    assert not fit.converged and "weights" in fit.message


# --- properties ------------------------------------------------------------------------

params_strategy = st.builds(
    BgNbdParams,
    r=st.floats(0.02, 20),
    alpha=st.floats(0.1, 2000),
    a=st.floats(0.02, 20),
    b=st.floats(0.02, 50),
)


@st.composite
def customers(draw):
    T = draw(st.floats(0.5, 5000))
    x = draw(st.integers(0, 300))
    tx = 0.0 if x == 0 else draw(st.floats(min(1e-3, T), T))
    t = draw(st.floats(0, 5000))
    return float(x), tx, T, t


@settings(max_examples=300, deadline=None)
@given(params_strategy, customers())
def test_scores_are_valid_for_any_valid_input(params, customer):
    x, tx, T, t = customer
    p = probability_alive(params, x, tx, T)[0]
    assert 0.0 <= p <= 1.0
    e = expected_purchases(params, [t, t + 1.0, t + 100.0], x, tx, T)
    assert np.all(np.isfinite(e))
    assert np.all(e >= 0)
    assert np.all(np.diff(e) >= -1e-9 * max(1.0, e[-1]))
    # E[Y(t)] <= P(alive) * E[Y(t) | alive] and the alive-customer mean is at most the
    # Poisson mean under the posterior of lambda: (r + x) t / (alpha + T).
    assert e[0] <= p * (params.r + x) * t / (params.alpha + T) * (1 + 1e-9) + 1e-300
