"""Deterministic, vectorized landing data at benchmark scale (millions of events a month).

Unlike `customer_analytics.sample_data` (a realistic little shop), this aims at volume: every
row is valid, timestamps spread uniformly over the month, ~10 % purchases.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from customer_analytics.config import add_months

EVENT_TYPES = np.array(["page_view", "product_view", "add_to_cart", "purchase"])
EVENT_WEIGHTS = np.array([0.55, 0.25, 0.10, 0.10])


def month_events(month: date, events: int, customers: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng([seed, month.year, month.month])
    start = np.datetime64(month, "s")
    seconds = int((np.datetime64(add_months(month, 1), "s") - start).astype(int))
    stamps = start + rng.integers(0, seconds, events).astype("timedelta64[s]")
    types = EVENT_TYPES[rng.choice(len(EVENT_TYPES), events, p=EVENT_WEIGHTS)]
    purchase = types == "purchase"
    price = np.round(rng.gamma(2.0, 20.0, events), 2)
    quantity = rng.integers(1, 4, events)
    customer = rng.integers(0, customers, events)
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
