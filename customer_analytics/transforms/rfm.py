"""RFM: recency, frequency and monetary value per customer, scored 1–5, and named segments.

* `recency_days` = as-of date − date of the last purchase (a purchase on the as-of date is 0);
  `frequency` = purchase events; `monetary` = their revenue.
* Scores are quintiles, 5 best: the most recent, most frequent, highest spending fifth gets 5.
  A customer's score is `1 + floor(5 × (r − 1) / n)`, r being the customer's rank from worst to
  best with ties sharing their lowest rank (`method="min"`). Ties never split: customers with
  equal values always get equal scores, so a value shared by many customers (frequency 1, say)
  can leave a score unused.
* `rfm_score` is the three digits R, F, M (e.g. "545"); segments use R and FM, the rounded-up
  mean of F and M, through a rule table (`DEFAULT_SEGMENT_MAP`, stored in the warehouse as
  `rfm_segment_map` so it can be changed): the first rule, by priority, whose ranges hold
  both scores names the segment.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

SEGMENT_MAP_COLUMNS = ("priority", "rfm_segment", "r_min", "r_max", "fm_min", "fm_max", "description")

# Every cell of the 5 × 5 R × FM grid falls to exactly one segment in this order.
DEFAULT_SEGMENT_MAP = pd.DataFrame(
    [
        (1, "Champions", 4, 5, 4, 5, "Bought recently, buy often and spend the most."),
        (2, "Loyal Customers", 3, 5, 3, 5, "Buy regularly and spend well; responsive to loyalty programmes."),
        (3, "Can't Lose Them", 1, 2, 4, 5, "Used to buy often and spend a lot, but not for a long time."),
        (4, "At Risk", 1, 2, 3, 3, "Spent and bought fairly often, but long ago."),
        (5, "New Customers", 5, 5, 1, 1, "Bought very recently, for the first time or little."),
        (6, "Promising", 4, 4, 1, 1, "Recent shoppers who have not spent much yet."),
        (7, "Potential Loyalist", 4, 5, 2, 2, "Recent customers with average frequency and spend."),
        (8, "Need Attention", 3, 3, 2, 2, "Middling recency, frequency and spend."),
        (9, "About To Sleep", 3, 3, 1, 1, "Below average recency and frequency; will be lost if not reactivated."),
        (10, "Hibernating", 2, 2, 1, 2, "Last purchase long ago, few orders, low spend."),
        (11, "Lost", 1, 1, 1, 2, "Lowest recency, frequency and spend."),
    ],
    columns=list(SEGMENT_MAP_COLUMNS),
)


def quintile_scores(goodness: pd.Series) -> pd.Series:
    """1–5 by quintile of `goodness` (higher is better); ties share the score of their lowest rank."""
    n = len(goodness)
    if n == 0:
        return pd.Series([], index=goodness.index, dtype="int64")
    rank = goodness.rank(method="min", ascending=True).to_numpy()
    return pd.Series((1 + np.floor(5 * (rank - 1) / n)).astype("int64"), index=goodness.index)


def fm_score(f_score: pd.Series, m_score: pd.Series) -> pd.Series:
    """The mean of F and M, rounded half up: (F + M + 1) // 2."""
    return (f_score + m_score + 1) // 2


def assign_segments(r_score: pd.Series, fm: pd.Series, segment_map: pd.DataFrame) -> pd.Series:
    """The first rule (by priority) whose R and FM ranges hold the scores; 'Unclassified' if none does."""
    segments = pd.Series(None, index=r_score.index, dtype=object)
    for rule in segment_map.sort_values("priority").itertuples(index=False):
        hit = segments.isna() & r_score.between(rule.r_min, rule.r_max) & fm.between(rule.fm_min, rule.fm_max)
        segments[hit] = rule.rfm_segment
    return segments.fillna("Unclassified")


def rfm_table(history: pd.DataFrame, as_of_date: date, segment_map: pd.DataFrame = DEFAULT_SEGMENT_MAP) -> pd.DataFrame:
    """One row per customer of `history` (columns customer_id, first_purchase_at, last_purchase_at,
    last_purchase_date, purchases, revenue): the RFM figures, scores and segment."""
    out = pd.DataFrame({"customer_id": history["customer_id"].to_numpy()})
    # .array keeps the time zone: to_numpy() would build a Timestamp object per value.
    out["first_purchase_at"] = history["first_purchase_at"].array
    out["last_purchase_at"] = history["last_purchase_at"].array
    last_date = pd.to_datetime(history["last_purchase_date"]).to_numpy("datetime64[D]")
    out["recency_days"] = (np.datetime64(as_of_date, "D") - last_date).astype("int64")
    out["frequency"] = history["purchases"].to_numpy().astype("int64")
    out["monetary"] = history["revenue"].to_numpy().astype("float64")
    out["avg_order_value"] = out["monetary"] / out["frequency"]
    out["r_score"] = quintile_scores(-out["recency_days"])
    out["f_score"] = quintile_scores(out["frequency"])
    out["m_score"] = quintile_scores(out["monetary"])
    out["rfm_score"] = out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    out["fm_score"] = fm_score(out["f_score"], out["m_score"])
    out["rfm_segment"] = assign_segments(out["r_score"], out["fm_score"], segment_map)
    return out
