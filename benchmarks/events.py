"""Deterministic, vectorized landing data at benchmark scale (millions of events a month).

Unlike `customer_analytics.sample_data` (a realistic little shop), this aims at volume: every
row is valid, timestamps spread uniformly over the month, ~10 % purchases. The customers differ
as a shop's do, so the CLV models have something to fit (`population`): each has an activity
level drawn from a Gamma distribution, which sets their share of the month's events, and is
active from the month they were acquired until a dropout month drawn per customer. Events of
customers all alike (every customer equally likely every month) gave BG/NBD nothing to fit: its
estimates ran off to infinity, and every month was scored by the fallback heuristic instead of
the models the nightly run uses.
"""

from __future__ import annotations

import functools
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from customer_analytics.config import add_months

EVENT_TYPES = np.array(["page_view", "product_view", "add_to_cart", "purchase"])
EVENT_WEIGHTS = np.array([0.55, 0.25, 0.10, 0.10])

# The customers (`population`): the same in every month of a run, whatever the month's seed.
POPULATION_SEED = 20240101
FIRST_MONTH = date(2024, 1, 1)  # the benchmark's first month: 90 % of the customers are active by then
ACQUIRED_SHARE = 0.1  # the others are acquired in one of the 12 months from FIRST_MONTH on
ACQUISITION_MONTHS = 12
ACTIVITY_SHAPE = 1.5  # activity ~ Gamma(1.5, 1 / 1.5): mean 1, some customers several times busier than others
DROPOUT = (1.0, 39.0)  # a customer's chance of leaving each month ~ Beta(1, 39): 2.5 % on average
SPEND_SHAPE = 4.0  # a customer's typical price, relative to the shop's ~ Gamma(4, 1 / 4)


@functools.lru_cache(maxsize=4)
def population(customers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per customer: activity and spend level (both of mean 1), and the first and last month (indexes
    from FIRST_MONTH) they are active."""
    rng = np.random.default_rng([POPULATION_SEED, customers])
    activity = rng.gamma(ACTIVITY_SHAPE, 1 / ACTIVITY_SHAPE, customers)
    acquired = rng.random(customers) < ACQUIRED_SHARE
    first = np.where(acquired, rng.integers(0, ACQUISITION_MONTHS, customers), np.iinfo(np.int64).min // 2)
    # Months active from acquisition, or from FIRST_MONTH for the earlier customers (geometric: memoryless).
    months_active = rng.geometric(rng.beta(*DROPOUT, customers))
    last = np.where(acquired, first, 0) + months_active - 1
    spend = rng.gamma(SPEND_SHAPE, 1 / SPEND_SHAPE, customers)
    return activity, spend, first, last


def month_customers(month: date, customers: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` customer numbers for `month`'s events: active customers, each in proportion to their activity."""
    activity, _, first, last = population(customers)
    index = (month.year - FIRST_MONTH.year) * 12 + month.month - FIRST_MONTH.month
    active = np.flatnonzero((first <= index) & (index <= last))
    if len(active) == 0:  # a month far from the benchmark's: every customer
        active = np.arange(customers)
    weights = np.cumsum(activity[active])
    return active[np.searchsorted(weights, rng.random(size) * weights[-1], side="right").clip(max=len(active) - 1)]


def month_events(month: date, events: int, customers: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng([seed, month.year, month.month])
    start = np.datetime64(month, "s")
    seconds = int((np.datetime64(add_months(month, 1), "s") - start).astype(int))
    stamps = start + rng.integers(0, seconds, events).astype("timedelta64[s]")
    types = EVENT_TYPES[rng.choice(len(EVENT_TYPES), events, p=EVENT_WEIGHTS)]
    purchase = types == "purchase"
    quantity = rng.integers(1, 4, events)
    customer = month_customers(month, customers, events, rng)
    price = np.round(rng.gamma(2.0, 20.0, events) * population(customers)[1][customer], 2)
    frame = pd.DataFrame({
        "event_id": np.char.add(f"E{month:%Y%m}-", np.arange(events).astype(str)),
        "customer_id": np.char.add("C", customer.astype(str)),
        "event_type": types,
        "event_timestamp": pd.Series(stamps).dt.strftime("%Y-%m-%d %H:%M:%S"),
        "session_id": np.char.add("S", (customer * 31 + stamps.astype("datetime64[h]").astype(np.int64) % 97).astype(str)),
        "page_url": np.char.add("https://shop.example/p/", (customer % 5000).astype(str)),
        "product_id": np.char.add("P", (customer % 5000).astype(str)),
        "category_id": np.char.add("K", (customer % 40).astype(str)),
        "price": np.where(types == "page_view", np.nan, price),
        "quantity": pd.array(np.where(purchase, quantity, 0), dtype="Int64"),
        "device_type": np.array(["mobile", "desktop", "tablet"])[customer % 3],
        "country": np.array(["US", "GB", "DE", "FR", "ES"])[customer % 5],
        "referrer": "google.com",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    })
    frame.loc[~purchase, "quantity"] = pd.NA
    return frame


def write_ndjson_files(frame: pd.DataFrame, folder: Path, *, files: int = 4, stem: str = "events") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        path = folder / f"{stem}-{index:02d}.ndjson"
        frame.iloc[part].to_json(path, orient="records", lines=True, date_format="iso")
        paths.append(path)
    return paths
