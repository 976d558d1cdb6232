"""The benchmark's generated events: deterministic, customers that differ, and a BG/NBD fit that converges on them."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from benchmarks.events import FIRST_MONTH, month_events, population
from customer_analytics.config import add_months
from customer_analytics.transforms.clv_scores import btyd_summary, fit_models


def customer_numbers(frame: pd.DataFrame) -> np.ndarray:
    return frame["customer_id"].str[1:].astype(int).to_numpy()


def test_a_month_is_the_same_every_time_and_the_customers_are_the_same_in_every_month():
    first, again = month_events(FIRST_MONTH, 2_000, 300, seed=1), month_events(FIRST_MONTH, 2_000, 300, seed=1)
    pd.testing.assert_frame_equal(first, again)
    # The customers' traits do not depend on a month's seed (the benchmark seeds each month apart).
    for mine, theirs in zip(population(300), population.__wrapped__(300)):
        np.testing.assert_array_equal(mine, theirs)


def test_only_active_customers_have_events_and_busier_ones_have_more():
    customers = 5_000
    activity, _, first, last = population(customers)
    month = add_months(FIRST_MONTH, 5)
    numbers = customer_numbers(month_events(month, 200_000, customers, seed=6))
    assert ((first[numbers] <= 5) & (5 <= last[numbers])).all()
    inactive = (first > 5) | (last < 5)
    assert inactive.any(), "some customers are not acquired yet or gone"
    events = np.bincount(numbers, minlength=customers)
    active = ~inactive
    busiest = active & (activity >= np.quantile(activity[active], 0.9))
    quietest = active & (activity <= np.quantile(activity[active], 0.1))
    assert events[busiest].mean() > 5 * events[quietest].mean()


def test_the_clv_models_fit_twelve_months_of_purchases():
    """Customers all alike (the generator before) left BG/NBD without an interior maximum: r and alpha ran off."""
    customers, parts = 3_000, []
    for index in range(12):
        month = add_months(FIRST_MONTH, index)
        frame = month_events(month, 30_000, customers, seed=index + 1)
        bought = frame[frame["event_type"] == "purchase"]
        parts.append(pd.DataFrame({
            "customer_id": bought["customer_id"].to_numpy(),
            "day": pd.to_datetime(bought["event_timestamp"]).dt.normalize().to_numpy(),
            "revenue": (bought["price"] * bought["quantity"].astype(float)).to_numpy(),
        }))
    days = pd.concat(parts).groupby(["customer_id", "day"], as_index=False)["revenue"].sum()
    by_customer = days.sort_values(["customer_id", "day"]).groupby("customer_id")
    history = pd.DataFrame({
        "first_purchase_date": by_customer["day"].min(), "last_purchase_date": by_customer["day"].max(),
        "purchase_days": by_customer.size(), "positive_days": by_customer.size(),
        "positive_day_revenue": by_customer["revenue"].sum(), "revenue": by_customer["revenue"].sum(),
        "first_day_revenue": by_customer["revenue"].first(),
    }).reset_index()
    fits = fit_models(btyd_summary(history, date(2024, 12, 31)))
    assert fits.bgnbd.converged, fits.bgnbd.message
    assert fits.gamma_gamma.converged, fits.gamma_gamma.message
    # The activity's Gamma shape is BG/NBD's r: recovered roughly from 3,000 customers.
    assert 1.0 < fits.bgnbd.params.r < 2.5
