"""CLV fit + scoring time at N customers (default 1,000,000): median of several runs after a warm-up.

    python -m benchmarks.clv_fit --customers 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from customer_analytics.transforms.clv_scores import fit_models, score_customers
from customer_analytics.transforms.models import BgNbdParams, GammaGammaParams, simulate_bgnbd_gamma_gamma


def simulated_summary(customers: int, seed: int = 42) -> pd.DataFrame:
    sim = simulate_bgnbd_gamma_gamma(customers, BgNbdParams(0.5, 20.0, 0.8, 2.5), GammaGammaParams(6.0, 4.0, 15.0), seed=seed)
    spend = np.nan_to_num(sim.monetary)
    return pd.DataFrame({
        "customer_id": np.char.add("C", np.arange(customers).astype(str)), "frequency": sim.frequency,
        "recency": sim.recency, "T": sim.T, "spend_frequency": sim.frequency, "spend_monetary": spend,
        "purchase_days": sim.frequency + 1, "day_spend": np.where(spend > 0, spend, 15.0),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    summary = simulated_summary(args.customers)
    timings = []
    for attempt in range(args.repeats + 1):  # the first is a warm-up
        started = time.perf_counter()
        fits = fit_models(summary)
        fitted = time.perf_counter()
        scores = score_customers(summary, fits)
        done = time.perf_counter()
        if attempt:
            timings.append((fitted - started, done - fitted, done - started))
    fit_s, score_s, total_s = (statistics.median(t[i] for t in timings) for i in range(3))
    print(f"customers {args.customers:,}: fit {fit_s:.2f} s, scoring {score_s:.2f} s, total {total_s:.2f} s "
          f"(median of {args.repeats}); model {fits.model}; {len(scores):,} rows")


if __name__ == "__main__":
    main()
