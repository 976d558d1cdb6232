"""Customer lifetime value per customer as of a month: BG/NBD + Gamma-Gamma, or a heuristic.

Inputs follow the buy-till-you-die literature (`btyd_summary`): per customer, in days,
`frequency` = distinct purchase dates − 1, `recency` = last − first purchase date, `T` =
as-of date − first purchase date; spend = mean revenue of the repeat purchase dates (a date's
purchases summed; dates with revenue ≤ 0 left out of the Gamma-Gamma fit).

Outputs (`score_customers`):
* `p_alive`, `churn_probability` = 1 − p_alive;
* `expected_purchases_12m`: expected purchase dates in the next 365.25 days;
* `expected_order_value`: Gamma-Gamma conditional mean spend per purchase date;
* `predicted_revenue_24m`: expected revenue over the next 24 months (30.4375-day months),
  each month discounted by (1 + rate)^k, rate 1 % a month by default;
* `clv_score`: percentile rank of predicted revenue, 0–100 (ties share the average rank);
* `segment`: `at_risk` when churn_probability ≥ 0.5, else `high` (score ≥ 67), `medium`
  (≥ 34) or `low` — thresholds in `ClvSettings`.

Heuristic fallback, used when a model cannot be fitted (too few repeat buyers, degenerate
data, no convergence) and named in `model`: a customer's typical gap g between purchase
dates is their own mean gap, or the population's median gap (90 days if nobody repeated);
p_alive = exp(−days since last purchase / (2 g)); the purchase rate is purchase dates per
day observed (at least 30 days) times p_alive; spend is the customer's mean revenue per
purchase date. Predicted revenue discounts that rate the same way as the model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from customer_analytics.transforms.models import (
    BgNbdParams,
    FitResult,
    GammaGammaParams,
    discounted_clv,
    expected_order_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    probability_alive,
)

DAYS_PER_MONTH = 30.4375
MODEL_NAME = "bgnbd+gamma_gamma"


@dataclass(frozen=True)
class ClvSettings:
    monthly_discount_rate: float = 0.01
    horizon_months: int = 24
    high_score: int = 67
    medium_score: int = 34
    at_risk_churn: float = 0.5


def btyd_summary(history: pd.DataFrame, as_of_date: date) -> pd.DataFrame:
    """BG/NBD and Gamma-Gamma inputs from per-customer history aggregated over summaries.

    `history` columns: customer_id, first_purchase_date, last_purchase_date, purchases, revenue,
    purchase_days, positive_days, positive_day_revenue, first_day_revenue.
    """
    first = pd.to_datetime(history["first_purchase_date"]).to_numpy("datetime64[D]")
    last = pd.to_datetime(history["last_purchase_date"]).to_numpy("datetime64[D]")
    out = pd.DataFrame({"customer_id": history["customer_id"].array})  # as read: no Python string per id
    out["frequency"] = history["purchase_days"].to_numpy().astype("int64") - 1
    out["recency"] = (last - first).astype("int64").astype("float64")
    out["T"] = (np.datetime64(as_of_date, "D") - first).astype("int64").astype("float64")
    first_positive = history["first_day_revenue"].to_numpy() > 0
    repeat_days = history["positive_days"].to_numpy().astype("int64") - first_positive
    repeat_revenue = history["positive_day_revenue"].to_numpy() - np.where(first_positive, history["first_day_revenue"].to_numpy(), 0.0)
    out["spend_frequency"] = repeat_days
    out["spend_monetary"] = np.where(repeat_days > 0, repeat_revenue / np.maximum(repeat_days, 1), 0.0)
    out["purchase_days"] = history["purchase_days"].to_numpy().astype("int64")
    out["day_spend"] = history["revenue"].to_numpy() / out["purchase_days"].to_numpy()
    return out


@dataclass(frozen=True)
class ClvFits:
    bgnbd: FitResult
    gamma_gamma: FitResult
    n_customers: int
    n_repeat_customers: int

    @property
    def model(self) -> str:
        """The model's name, stored in every customer_clv row: a label, the reason is `fallback_reason`."""
        if self.bgnbd.converged and self.gamma_gamma.converged:
            return MODEL_NAME
        if self.bgnbd.converged:
            return "bgnbd+heuristic_spend"
        return "heuristic"

    @property
    def fallback_reason(self) -> str:
        """Why a fit fell back to the heuristic ('' when both converged); kept once, in clv_model_fits.message."""
        if self.bgnbd.converged and self.gamma_gamma.converged:
            return ""
        if self.bgnbd.converged:
            return f"Gamma-Gamma: {self.gamma_gamma.message}"
        return f"BG/NBD: {self.bgnbd.message}"

    @property
    def converged(self) -> bool:
        return self.bgnbd.converged and self.gamma_gamma.converged


def fit_models(summary: pd.DataFrame) -> ClvFits:
    bgnbd = fit_bgnbd(summary["frequency"].to_numpy(), summary["recency"].to_numpy(), summary["T"].to_numpy())
    spenders = summary["spend_frequency"].to_numpy() > 0
    gamma_gamma = fit_gamma_gamma(summary["spend_frequency"].to_numpy()[spenders], summary["spend_monetary"].to_numpy()[spenders])
    return ClvFits(bgnbd, gamma_gamma, len(summary), int((summary["frequency"] > 0).sum()))


def _discount_factors(settings: ClvSettings) -> np.ndarray:
    return 1.0 / (1.0 + settings.monthly_discount_rate) ** np.arange(1, settings.horizon_months + 1)


def _heuristic(summary: pd.DataFrame, settings: ClvSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = summary["frequency"].to_numpy().astype(float)
    recency = summary["recency"].to_numpy()
    T = summary["T"].to_numpy()
    own_gap = np.where(x > 0, recency / np.maximum(x, 1), np.nan)
    population_gap = np.nanmedian(own_gap) if np.isfinite(own_gap).any() else 90.0
    gap = np.where(np.isfinite(own_gap) & (own_gap > 0), own_gap, population_gap)
    p_alive = np.exp(-(T - recency) / (2.0 * gap))
    daily_rate = (x + 1) / np.maximum(T, 30.0) * p_alive
    purchases_12m = daily_rate * 12 * DAYS_PER_MONTH
    order_value = summary["day_spend"].to_numpy()
    revenue = daily_rate * DAYS_PER_MONTH * order_value * _discount_factors(settings).sum()
    return p_alive, purchases_12m, order_value, revenue


def score_customers(summary: pd.DataFrame, fits: ClvFits, settings: ClvSettings = ClvSettings()) -> pd.DataFrame:
    """Per-customer CLV figures (see the module docstring), never NaN."""
    x, t_x, T = (summary[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
    spend_x = summary["spend_frequency"].to_numpy().astype(float)
    spend_m = summary["spend_monetary"].to_numpy().astype(float)
    if fits.bgnbd.converged:
        bg: BgNbdParams = fits.bgnbd.params
        p_alive = probability_alive(bg, x, t_x, T)
        purchases_12m = expected_purchases(bg, 12 * DAYS_PER_MONTH, x, t_x, T)
        if fits.gamma_gamma.converged:
            gg: GammaGammaParams = fits.gamma_gamma.params
            order_value = expected_order_value(gg, spend_x, spend_m)
            revenue = discounted_clv(bg, gg, x, t_x, T, spend_m, months=settings.horizon_months,
                                     monthly_discount_rate=settings.monthly_discount_rate, spend_frequency=spend_x)
        else:
            order_value = summary["day_spend"].to_numpy()
            monthly = np.diff(np.concatenate([[np.zeros_like(x)], [expected_purchases(bg, k * DAYS_PER_MONTH, x, t_x, T)
                                                                     for k in range(1, settings.horizon_months + 1)]]), axis=0)
            revenue = (monthly * _discount_factors(settings)[:, None]).sum(axis=0) * order_value
    else:
        p_alive, purchases_12m, order_value, revenue = _heuristic(summary, settings)
    out = pd.DataFrame({"customer_id": summary["customer_id"].array})
    out["p_alive"] = np.clip(np.nan_to_num(p_alive, nan=0.0), 0.0, 1.0)
    out["churn_probability"] = 1.0 - out["p_alive"]
    out["expected_purchases_12m"] = np.maximum(np.nan_to_num(purchases_12m, nan=0.0), 0.0)
    out["expected_order_value"] = np.nan_to_num(order_value, nan=0.0, posinf=0.0)
    out["predicted_revenue_24m"] = np.maximum(np.nan_to_num(revenue, nan=0.0, posinf=0.0), 0.0)
    out["clv_score"] = percentile_scores(out["predicted_revenue_24m"])
    out["segment"] = value_segments(out["clv_score"], out["churn_probability"], settings)
    out["model"] = fits.model
    return out


def percentile_scores(values: pd.Series) -> pd.Series:
    """0 for the lowest value, 100 for the highest, ties sharing their average rank."""
    n = len(values)
    if n <= 1:
        return pd.Series(np.full(n, 100, dtype="int64"), index=values.index)
    rank = values.rank(method="average").to_numpy()
    return pd.Series(np.rint(100 * (rank - 1) / (n - 1)).astype("int64"), index=values.index)


VALUE_SEGMENT_NAMES = pa.array(["high", "medium", "low", "at_risk"])


def value_segments(clv_score: pd.Series, churn: pd.Series, settings: ClvSettings) -> pd.Series:
    # Chosen as codes and named in Arrow: NumPy's strings made into a frame's text column cost
    # 10 times more (0.12-0.24 s against 0.02 s for a million customers).
    code = np.where(clv_score >= settings.high_score, 0, np.where(clv_score >= settings.medium_score, 1, 2))
    code = np.where(churn >= settings.at_risk_churn, 3, code)
    return pd.Series(VALUE_SEGMENT_NAMES.take(code), index=clv_score.index, dtype="str")
