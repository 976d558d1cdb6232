"""Segments: membership with month-over-month movement, per-segment metrics, migration, definitions.

* A customer's `segment` is the value segment of `customer_clv` (high, medium, low, at_risk);
  `rfm_segment` the named RFM segment of `customer_rfm`; `previous_segment` the segment the
  customer had in the previous month's `customer_segments` (None for a customer who was not
  there), and `segment_changed` says whether the two differ (a new customer counts as changed).
* `segment_metrics` has a row per segment for all countries (`country` None) and one per
  segment and profile country; value segments and RFM segments both, told apart by
  `segment_type`. `share` is the segment's share of the customers in the same country scope.
* `segment_migration` counts customers per (from, to) pair; customers new this month come
  from `NEW_CUSTOMER`.
"""

from __future__ import annotations

import pandas as pd

from customer_analytics.transforms.clv_scores import ClvSettings

NEW_CUSTOMER = "new"
METRIC_COLUMNS = ("customers", "share", "avg_clv_score", "avg_predicted_revenue", "total_revenue", "avg_recency_days", "avg_frequency")


def customer_segments(members: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """`members`: customer_id, segment, rfm_segment; `previous`: customer_id, segment (last month)."""
    prior = previous.set_index("customer_id")["segment"] if len(previous) else pd.Series(dtype=object)
    out = members[["customer_id", "segment", "rfm_segment"]].copy()
    out["previous_segment"] = out["customer_id"].map(prior)
    out["previous_segment"] = out["previous_segment"].astype(object).where(out["previous_segment"].notna(), None)
    out["segment_changed"] = out["previous_segment"].isna() | (out["previous_segment"] != out["segment"])
    return out


# The figures summed per segment: each a member's value, or (see `segment_metrics`) a sum over customers.
SUMMED = ("clv_score", "predicted_revenue_24m", "monetary", "recency_days", "frequency")


def segment_metrics(customers: pd.DataFrame) -> pd.DataFrame:
    """Metrics per segment (value and RFM), overall and per country.

    `customers`: segment, rfm_segment, country, clv_score, predicted_revenue_24m, monetary,
    recency_days, frequency — one row per customer; or, with a `customers` column, one row per
    group of that many customers holding the sums of their values (what the warehouse
    aggregates, so a month's million members need not come into pandas).
    """
    if "customers" not in customers.columns:
        customers = customers.assign(customers=1)
    frames = []
    for segment_type, column in (("value", "segment"), ("rfm", "rfm_segment")):
        for by_country in (False, True):
            scope = customers.dropna(subset=["country"]) if by_country else customers
            keys = [column, "country"] if by_country else [column]
            sums = scope.groupby(keys, dropna=False)[["customers", *SUMMED]].sum().reset_index()
            frame = pd.DataFrame({"segment": sums[column], "country": sums["country"] if by_country else None,
                                  "customers": sums["customers"].astype("int64")})
            count = frame["customers"].astype("float64")
            frame["avg_clv_score"] = sums["clv_score"].astype("float64") / count
            frame["avg_predicted_revenue"] = sums["predicted_revenue_24m"].astype("float64") / count
            frame["total_revenue"] = sums["monetary"].astype("float64")
            frame["avg_recency_days"] = sums["recency_days"].astype("float64") / count
            frame["avg_frequency"] = sums["frequency"].astype("float64") / count
            if by_country:
                # float64 even when no customer has a country (the map of an empty string column stays a string).
                frame["share"] = count / frame["country"].map(scope.groupby("country")["customers"].sum()).astype("float64")
            else:
                frame["share"] = count / scope["customers"].sum()
            frame["segment_type"] = segment_type
            frames.append(frame)
    metrics = pd.concat(frames, ignore_index=True)
    return metrics[["segment_type", "segment", "country", *METRIC_COLUMNS]]


def segment_migration(segments: pd.DataFrame) -> pd.DataFrame:
    """Customers per (from_segment, to_segment); `from_segment` is `NEW_CUSTOMER` for newcomers.

    `segments`: segment and previous_segment per customer, or per group with a `customers` count.
    """
    if "customers" not in segments.columns:
        segments = segments.assign(customers=1)
    moves = segments.assign(from_segment=segments["previous_segment"].fillna(NEW_CUSTOMER))
    counted = moves.groupby(["from_segment", "segment"])["customers"].sum().astype("int64").reset_index()
    return counted.rename(columns={"segment": "to_segment"})


# Thresholds of the behavioural segments suggested per customer (the view customer_segmentation_suggestions).
ACTIVE_DAYS = 30  # High Value Active: last purchase at most this many days before the as-of date
LAPSING_DAYS = 90  # Lapsing Big Spender: last purchase more than this many days before
BROWSING_WINDOW_DAYS = 30  # sessions are counted over the as-of date and the 29 days before it
FREQUENT_BROWSER_SESSIONS = 3  # Frequent Browser, Rare Buyer: at least this many sessions in the window

# The suggested segments in the order their rules are tried (the first that holds wins).
BEHAVIORAL_SEGMENTS = (
    ("High Value Active", "Top spenders who bought recently.",
     f"m_score = 5 and recency_days <= {ACTIVE_DAYS}"),
    ("Lapsing Big Spender", "High spenders who have not bought for a while.",
     f"m_score >= 4 and recency_days > {LAPSING_DAYS}"),
    ("Frequent Browser, Rare Buyer", "Many sessions lately, at most one purchase ever.",
     f"sessions in the last {BROWSING_WINDOW_DAYS} days >= {FREQUENT_BROWSER_SESSIONS} and frequency <= 1"),
    ("One-time Buyer", "A single purchase so far.", "frequency = 1"),
    ("Regular", "Every other purchasing customer.", "none of the rules above"),
)


def segment_definitions(settings: ClvSettings, rfm_map: pd.DataFrame) -> pd.DataFrame:
    """Every value, RFM and behavioural segment with its rule in words (segment_id, name, description, rules, type)."""
    value = [
        ("value:at_risk", "at_risk", "Customers likely to have stopped buying.",
         f"churn_probability >= {settings.at_risk_churn}"),
        ("value:high", "high", "The most valuable customers over the next two years.",
         f"churn_probability < {settings.at_risk_churn} and clv_score >= {settings.high_score}"),
        ("value:medium", "medium", "Customers of middling predicted value.",
         f"churn_probability < {settings.at_risk_churn} and {settings.medium_score} <= clv_score < {settings.high_score}"),
        ("value:low", "low", "Customers of low predicted value.",
         f"churn_probability < {settings.at_risk_churn} and clv_score < {settings.medium_score}"),
    ]
    rows = [dict(zip(("segment_id", "segment_name", "segment_description", "segment_rules"), v), segment_type="value-based")
            for v in value]
    for rule in rfm_map.sort_values("priority").itertuples(index=False):
        rows.append({
            "segment_id": f"rfm:{rule.rfm_segment}", "segment_name": rule.rfm_segment,
            "segment_description": rule.description,
            "segment_rules": f"r_score between {rule.r_min} and {rule.r_max} and fm_score between {rule.fm_min} and "
                             f"{rule.fm_max} (rule {rule.priority}; the first matching rule wins)",
            "segment_type": "rfm",
        })
    for priority, (name, description, rule) in enumerate(BEHAVIORAL_SEGMENTS, start=1):
        rows.append({"segment_id": f"behavioral:{name}", "segment_name": name, "segment_description": description,
                     "segment_rules": f"{rule} (rule {priority}; the first matching rule wins)", "segment_type": "behavioral"})
    return pd.DataFrame(rows)
