"""Cohort arithmetic, pure pandas: who started when, and what each cohort spent period after period.

A cohort is the customers whose first purchase falls in the same calendar month (or ISO week,
Monday start). Period k of a cohort is the k-th month (week) counted from the cohort's own,
0 being the cohort's first. The warehouse aggregates the purchases to one row per cohort and
activity period (`cohort_activity` is the same aggregation in pandas, for small inputs and
tests); `cohort_table` turns those rows into one row per cohort and period, from 0 up to the
period holding the as-of date, with cumulative revenue.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

GRANULARITIES = ("month", "week")

ACTIVITY_COLUMNS = ["cohort_start", "period_start", "active_customers", "revenue"]
COHORT_COLUMNS = [
    "granularity", "cohort_start", "period", "period_start", "customers", "active_customers",
    "period_revenue", "cumulative_revenue", "cumulative_revenue_per_customer",
]


def _check(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")


def period_start(values, granularity: str) -> pd.Series:
    """The first day of each value's calendar month, or the Monday of its ISO week (naive Timestamps).

    Timestamps with a zone are first converted to UTC: months and weeks are UTC ones.
    """
    _check(granularity)
    series = pd.Series(values)
    series = series if pd.api.types.is_datetime64_any_dtype(series) else pd.to_datetime(series, format="ISO8601")
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    days = series.dt.normalize().astype("datetime64[ns]")
    if granularity == "month":
        return days - pd.to_timedelta(days.dt.day - 1, unit="D")
    return days - pd.to_timedelta(days.dt.day_of_week, unit="D")


def period_index(cohort_start: pd.Series, start: pd.Series, granularity: str) -> np.ndarray:
    """How many months (weeks) `start` comes after `cohort_start`; both are period starts."""
    _check(granularity)
    cohort_start, start = pd.to_datetime(pd.Series(cohort_start)), pd.to_datetime(pd.Series(start))
    if granularity == "month":
        months = (start.dt.year - cohort_start.dt.year) * 12 + (start.dt.month - cohort_start.dt.month)
        return months.to_numpy(dtype="int64")
    return ((start.to_numpy() - cohort_start.to_numpy()) // np.timedelta64(7, "D")).astype("int64")


def cohort_activity(customer_periods: pd.DataFrame) -> pd.DataFrame:
    """(customer_id, period_start, revenue) rows, several per customer and period allowed →
    one row per cohort and period with activity: `cohort_start, period_start, active_customers, revenue`.

    A customer's cohort is the earliest period they appear in. This is what `customer_analytics.cohorts`
    computes in SQL; here for small inputs and tests.
    """
    if customer_periods.empty:
        return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in
                             zip(ACTIVITY_COLUMNS, ["datetime64[ns]", "datetime64[ns]", "int64", "float64"])})
    rows = customer_periods[["customer_id", "period_start", "revenue"]].copy()
    rows["period_start"] = pd.to_datetime(rows["period_start"])
    per_customer = rows.groupby(["customer_id", "period_start"], as_index=False)["revenue"].sum()
    per_customer["cohort_start"] = per_customer.groupby("customer_id")["period_start"].transform("min")
    activity = (per_customer.groupby(["cohort_start", "period_start"], as_index=False)
                .agg(active_customers=("customer_id", "size"), revenue=("revenue", "sum")))
    return activity[ACTIVITY_COLUMNS]


def cohort_table(activity: pd.DataFrame, granularity: str, as_of_day: date) -> pd.DataFrame:
    """One row per cohort and period, 0 … the period holding `as_of_day`, from `cohort_activity` rows.

    `customers` is the cohort's size (its active customers in period 0: every member bought then);
    `cumulative_revenue` sums the cohort's revenue in periods 0 … k, so a period without purchases
    repeats the previous figure. No activity gives no rows.
    """
    _check(granularity)
    if activity.empty:
        return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in zip(COHORT_COLUMNS, [
            "object", "datetime64[ns]", "int64", "datetime64[ns]", "int64", "int64", "float64", "float64", "float64"])})
    activity = activity[ACTIVITY_COLUMNS].copy()
    for column in ("cohort_start", "period_start"):
        activity[column] = pd.to_datetime(activity[column]).astype("datetime64[ns]")
    activity["period"] = period_index(activity["cohort_start"], activity["period_start"], granularity)
    if (activity["period"] < 0).any():
        raise ValueError("activity before its cohort's start: cohort_start must be each customer's first period")

    sizes = activity.loc[activity["period"] == 0].set_index("cohort_start")["active_customers"]
    cohorts = pd.Index(sorted(activity["cohort_start"].unique()), name="cohort_start")
    missing = cohorts.difference(sizes.index)
    if len(missing):
        raise ValueError(f"cohorts without a period-0 row: {[str(m.date()) for m in missing]}")

    last_start = period_start(pd.Series([pd.Timestamp(as_of_day)]), granularity).iloc[0]
    last_period = period_index(pd.Series(cohorts), pd.Series([last_start] * len(cohorts)), granularity)
    if (last_period < 0).any() or (activity["period_start"] > last_start).any():
        raise ValueError(f"activity after the as-of date {as_of_day}")

    counts = last_period + 1
    grid = pd.DataFrame({
        "cohort_start": np.repeat(cohorts.to_numpy(), counts),
        "period": np.concatenate([np.arange(n, dtype="int64") for n in counts]),
    })
    grid = grid.merge(activity[["cohort_start", "period", "period_start", "active_customers", "revenue"]],
                      on=["cohort_start", "period"], how="left")
    if granularity == "month":
        offsets = grid["period"].to_numpy()
        grid["period_start"] = [start + pd.DateOffset(months=int(k)) for start, k in zip(grid["cohort_start"], offsets)]
    else:
        grid["period_start"] = grid["cohort_start"] + pd.to_timedelta(grid["period"] * 7, unit="D")
    grid["period_start"] = pd.to_datetime(grid["period_start"]).astype("datetime64[ns]")
    grid["active_customers"] = grid["active_customers"].fillna(0).astype("int64")
    grid["period_revenue"] = grid["revenue"].fillna(0.0).astype("float64")
    grid["customers"] = grid["cohort_start"].map(sizes).astype("int64")
    grid = grid.sort_values(["cohort_start", "period"], kind="stable").reset_index(drop=True)
    grid["cumulative_revenue"] = _running_sums(grid["cohort_start"].to_numpy(), grid["period_revenue"].to_numpy())
    grid["cumulative_revenue_per_customer"] = grid["cumulative_revenue"] / grid["customers"]
    grid["granularity"] = granularity
    return grid[COHORT_COLUMNS]


def _running_sums(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running sums of `values` restarting at each new key (rows sorted by key), added left to right.

    Not pandas' grouped cumsum: it compensates rounding (Kahan), so adding 0.0 can move the
    running figure down by an ulp — and cumulative revenue must never fall.
    """
    out = np.empty(len(values), dtype="float64")
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=int)
    for begin, end in zip(starts, np.r_[starts[1:], len(values)]):
        out[begin:end] = np.cumsum(values[begin:end])
    return out


def cohort_ltv_from_purchases(purchases: pd.DataFrame, as_of_day: date) -> pd.DataFrame:
    """Monthly then weekly cohort rows from raw (customer_id, event_timestamp, revenue) purchases
    before the as-of instant; the reference the SQL path is tested against."""
    tables = []
    for granularity in GRANULARITIES:
        rows = pd.DataFrame({
            "customer_id": purchases["customer_id"].to_numpy(),
            "period_start": period_start(purchases["event_timestamp"].reset_index(drop=True), granularity),
            "revenue": purchases["revenue"].to_numpy(dtype="float64"),
        })
        tables.append(cohort_table(cohort_activity(rows), granularity, as_of_day))
    return pd.concat(tables, ignore_index=True) if any(len(t) for t in tables) else tables[0]


def cumulative_revenue_never_falls(cohorts: pd.DataFrame) -> bool:
    """Within every (granularity, cohort), cumulative revenue is non-decreasing with period."""
    if cohorts.empty:
        return True
    ordered = cohorts.sort_values(["granularity", "cohort_start", "period"], kind="stable")
    steps = ordered.groupby(["granularity", "cohort_start"])["cumulative_revenue"].diff()
    return bool((steps.dropna() >= 0).all())
