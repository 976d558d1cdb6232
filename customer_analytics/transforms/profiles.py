"""Customer profiles and demographic rows: validation, and merging into one row per customer.

Profile rows carry `customer_id, email, first_name, last_name, age, gender, city, country,
signup_date, last_login` and, where the source system has them, its own `customer_segment` and
`lifetime_value` (kept as `source_customer_segment`, `source_lifetime_value`); demographic rows
carry `customer_id, age, location`. Records are
ordered by `last_login` (records without one first), then by landing order, and each field
of a customer takes its value from the latest record that has one — so a demographic row
adds `location` to a profile, and a newer profile replaces an older city.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from customer_analytics.transforms.events import MAX_ID_LENGTH
from customer_analytics.transforms.fields import (
    Reasons,
    field_values,
    holds_nul,
    longer_than,
    number_column,
    shown,
    text_column,
    timestamp_column,
)

PROFILE_TEXT = ("email", "first_name", "last_name", "gender", "city", "country", "location", "customer_segment")
# The source system's own segment and lifetime value are kept as delivered, under these names.
SOURCE_FIELDS = {"customer_segment": "source_customer_segment", "lifetime_value": "source_lifetime_value"}
PROFILE_COLUMNS = ("customer_id", *PROFILE_TEXT[:4], "age", *PROFILE_TEXT[4:7], "signup_date", "last_login",
                   "source_customer_segment", "source_lifetime_value")
MAX_AGE = 130


def validate_profiles(fields: pd.DataFrame) -> pd.DataFrame:
    """Typed profile rows (`PROFILE_COLUMNS`) plus `reject_reason` (None for loadable rows)."""
    reasons = Reasons(fields.index)
    out = pd.DataFrame(index=fields.index)
    customer, wrong = text_column(field_values(fields, "customer_id"))
    reasons.add(wrong, "customer_id must be text, not a JSON object, array or boolean")
    reasons.add(customer.isna() & ~wrong, "missing customer_id")
    # The same limits as events: PostgreSQL stores no NUL and indexes no over-long key.
    reasons.add(longer_than(customer, MAX_ID_LENGTH), f"customer_id is longer than {MAX_ID_LENGTH:,} characters")
    out["customer_id"] = customer
    for name in PROFILE_TEXT:
        text, wrong = text_column(field_values(fields, name))
        reasons.add(wrong, f"{name} must be text, not a JSON object, array or boolean")
        out[name] = text
    for name in ("customer_id", *PROFILE_TEXT):
        reasons.add(holds_nul(out[name]), f"{name} contains a NUL character (\\x00), which the warehouse cannot store")

    raw_age = field_values(fields, "age")
    age, present, invalid = number_column(raw_age)
    reasons.add(invalid, "age " + shown(raw_age) + " is not a number")
    ok = present & ~invalid
    a = age.fillna(0)
    reasons.add(ok & ((a < 0) | (a > MAX_AGE) | (a != np.floor(a))), "age " + shown(raw_age) + f" is not a whole number of years between 0 and {MAX_AGE}")
    out["age"] = age.where(ok & (a >= 0) & (a <= MAX_AGE) & (a == np.floor(a))).round().astype("Int64")

    for name in ("signup_date", "last_login"):
        raw = field_values(fields, name)
        stamps, _present, bad = timestamp_column(raw)
        reasons.add(bad, "unparsable " + name + " " + shown(raw) + " (use e.g. 2023-01-15 or 2023-06-18 09:15:30)")
        out[name] = stamps
    out["signup_date"] = out["signup_date"].dt.tz_localize(None).dt.normalize()

    raw_value = field_values(fields, "lifetime_value")
    value, present, invalid = number_column(raw_value)
    reasons.add(invalid, "lifetime_value " + shown(raw_value) + " is not a number")
    out["source_lifetime_value"] = value.where(present & ~invalid).astype("float64")
    out = out.rename(columns={"customer_segment": SOURCE_FIELDS["customer_segment"]})
    out = out[list(PROFILE_COLUMNS)].copy()
    out["reject_reason"] = reasons.values
    return out


def merge_profiles(records: pd.DataFrame) -> pd.DataFrame:
    """One row per customer from valid records in landing order (`PROFILE_COLUMNS` + `source_file`).

    `records` must be in landing order (file order, then record order).
    """
    if records.empty:
        return records.reindex(columns=[*PROFILE_COLUMNS, "source_file"])
    ordered = records.assign(_landing_order=np.arange(len(records)))
    ordered = ordered.sort_values(["last_login", "_landing_order"], na_position="first", kind="stable")
    merged = ordered.groupby("customer_id", sort=True).last()  # last non-null value per field
    merged = merged.reset_index().drop(columns=["_landing_order"])
    merged["location"] = merged["location"].fillna(merged["city"])
    return merged[[*PROFILE_COLUMNS, "source_file"]]
