"""Profile and demographic rows: validation, and the merge into one row per customer."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from customer_analytics.resources.landing import list_files, read_records
from customer_analytics.transforms.profiles import PROFILE_COLUMNS, merge_profiles, validate_profiles

PROFILE_FIELDS = ("customer_id", "email", "first_name", "last_name", "age", "gender", "city", "country",
                  "signup_date", "last_login", "location")


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame.from_records([{name: row.get(name) for name in PROFILE_FIELDS} for row in rows],
                                     columns=list(PROFILE_FIELDS)).astype(object)


def reasons_of(validated: pd.DataFrame) -> list:
    return [None if pd.isna(r) else r for r in validated["reject_reason"]]


def landed(*files: tuple[str, list[dict]]) -> pd.DataFrame:
    """Valid records of several files, in landing order, as the loader hands them to merge_profiles."""
    parts = []
    for name, rows in files:
        validated = validate_profiles(frame(rows))
        assert reasons_of(validated) == [None] * len(rows), reasons_of(validated)
        parts.append(validated.drop(columns=["reject_reason"]).assign(source_file=name))
    return pd.concat(parts, ignore_index=True)


def by_customer(merged: pd.DataFrame) -> dict[str, dict]:
    return {row["customer_id"]: {k: (None if not isinstance(v, (list, dict)) and pd.isna(v) else v)
                                 for k, v in row.items()}
            for row in merged.to_dict("records")}


# -- validation --------------------------------------------------------------------------
def test_a_valid_profile_is_typed():
    out = validate_profiles(frame([{
        "customer_id": " C1 ", "email": "a@example.com", "first_name": "Ada", "last_name": "L", "age": "36",
        "gender": "F", "city": "London", "country": "UK", "signup_date": "2023-01-15",
        "last_login": "2023-06-18T09:15:30+02:00",
    }]))
    row = out.iloc[0]
    assert list(out.columns) == [*PROFILE_COLUMNS, "reject_reason"]
    assert pd.isna(row["reject_reason"])
    assert row["customer_id"] == "C1"
    assert row["age"] == 36 and str(out["age"].dtype) == "Int64"
    assert row["signup_date"] == pd.Timestamp("2023-01-15")
    assert row["last_login"] == pd.Timestamp("2023-06-18 07:15:30", tz="UTC")


def test_text_postgresql_cannot_store_or_index_is_refused():
    out = validate_profiles(frame([
        {"customer_id": "C1", "email": "a\x00@example.com"},
        {"customer_id": "C\x002"},
        {"customer_id": "C" * 501},
        {"customer_id": "C" * 500, "city": "Zürich"},
    ]))
    reasons = reasons_of(out)
    assert "email contains a NUL character" in reasons[0]
    assert "customer_id contains a NUL character" in reasons[1]
    assert "customer_id is longer than 500 characters" in reasons[2]
    assert reasons[3] is None


def test_signup_date_with_a_time_is_cut_to_its_date():
    row = validate_profiles(frame([{"customer_id": "C1", "signup_date": "2023-01-15 23:59:59"}])).iloc[0]
    assert row["signup_date"] == pd.Timestamp("2023-01-15")


def test_a_demographic_row_is_valid():
    out = validate_profiles(frame([{"customer_id": 42, "age": 40.0, "location": "Lyon"}]))
    assert reasons_of(out) == [None]
    assert (out["customer_id"].iloc[0], out["age"].iloc[0], out["location"].iloc[0]) == ("42", 40, "Lyon")


@pytest.mark.parametrize("customer_id", [None, "", "   "])
def test_missing_customer_id_is_refused(customer_id):
    assert reasons_of(validate_profiles(frame([{"customer_id": customer_id, "email": "x@y"}]))) == [
        "missing customer_id"]


def test_customer_id_that_is_an_object_is_refused():
    (reason,) = reasons_of(validate_profiles(frame([{"customer_id": {"id": 1}}])))
    assert reason == "customer_id must be text, not a JSON object, array or boolean"


@pytest.mark.parametrize("age, reason", [
    ("abc", "age 'abc' is not a number"),
    (True, "age True is not a number"),
    ("-1", "age '-1' is not a whole number of years between 0 and 130"),
    (131, "age 131 is not a whole number of years between 0 and 130"),
    ("30.5", "age '30.5' is not a whole number of years between 0 and 130"),
])
def test_invalid_age_is_refused(age, reason):
    out = validate_profiles(frame([{"customer_id": "C1", "age": age}]))
    assert reasons_of(out) == [reason]
    assert pd.isna(out["age"].iloc[0])


@pytest.mark.parametrize("age, expected", [("0", 0), (130, 130), ("  25 ", 25), (None, None), ("", None)])
def test_acceptable_ages(age, expected):
    out = validate_profiles(frame([{"customer_id": "C1", "age": age}]))
    assert reasons_of(out) == [None]
    value = out["age"].iloc[0]
    assert (None if pd.isna(value) else value) == expected


@pytest.mark.parametrize("name", ["last_login", "signup_date"])
def test_unparsable_dates_are_refused(name):
    (reason,) = reasons_of(validate_profiles(frame([{"customer_id": "C1", name: "2023-13-01"}])))
    assert reason.startswith(f"unparsable {name} '2023-13-01'")


def test_several_problems_are_joined():
    (reason,) = reasons_of(validate_profiles(frame([{"customer_id": None, "age": "old", "last_login": "never"}])))
    parts = reason.split("; ")
    assert parts[0] == "missing customer_id"
    assert parts[1] == "age 'old' is not a number"
    assert parts[2].startswith("unparsable last_login 'never'")


def test_profiles_from_csv_text(tmp_path):
    path = tmp_path / "profiles" / "p.csv"
    path.parent.mkdir()
    path.write_text("customer_id,email,age,city,last_login\nC1,a@x,31,Paris,2023-06-18 09:15:30\nC2,b@x,x,Rome,\n")
    (chunk,) = list(read_records(list_files(tmp_path, "profiles")[0]))
    out = validate_profiles(chunk.fields)
    assert reasons_of(out) == [None, "age 'x' is not a number"]
    assert out["age"].iloc[0] == 31
    assert list(chunk.record_numbers) == [2, 3]


def test_parquet_date_signup_date_is_valid(tmp_path):
    path = tmp_path / "profiles" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"customer_id": ["C1"], "signup_date": pa.array([date(2023, 1, 15)], pa.date32())}), path)
    (chunk,) = list(read_records(list_files(tmp_path, "profiles")[0]))
    out = validate_profiles(chunk.fields)
    assert reasons_of(out) == [None]
    assert out["signup_date"].iloc[0] == pd.Timestamp("2023-01-15")


# -- merging -----------------------------------------------------------------------------
def test_later_last_login_wins_over_later_landing():
    records = landed(
        ("profiles/a.csv", [{"customer_id": "C1", "email": "new@x", "city": "Berlin", "last_login": "2023-07-01 10:00:00"}]),
        ("profiles/b.csv", [{"customer_id": "C1", "email": "old@x", "city": "Paris", "last_login": "2023-06-01 10:00:00"}]),
    )
    c1 = by_customer(merge_profiles(records))["C1"]
    assert (c1["email"], c1["city"], c1["source_file"]) == ("new@x", "Berlin", "profiles/a.csv")
    assert c1["last_login"] == pd.Timestamp("2023-07-01 10:00:00", tz="UTC")


def test_same_last_login_then_landing_order_wins():
    stamp = "2023-06-01 00:00:00"
    records = landed(
        ("profiles/a.csv", [{"customer_id": "C2", "email": "first@x", "last_login": stamp},
                            {"customer_id": "C2", "email": "second@x", "last_login": stamp}]),
        ("profiles/b.csv", [{"customer_id": "C2", "email": "third@x", "last_login": stamp}]),
    )
    c2 = by_customer(merge_profiles(records))["C2"]
    assert (c2["email"], c2["source_file"]) == ("third@x", "profiles/b.csv")


def test_last_login_is_compared_in_utc():
    records = landed(("profiles/a.csv", [
        {"customer_id": "C1", "city": "Late", "last_login": "2023-06-30 23:30:00"},          # 23:30 UTC
        {"customer_id": "C1", "city": "Early", "last_login": "2023-07-01T01:00:00+02:00"},  # 23:00 UTC
    ]))
    assert by_customer(merge_profiles(records))["C1"]["city"] == "Late"


def test_field_by_field_latest_non_null_value():
    records = landed(("profiles/a.csv", [
        {"customer_id": "C1", "email": "old@x", "first_name": "Ada", "city": "Paris", "age": "30",
         "signup_date": "2023-01-15", "last_login": "2023-06-18 09:15:30"},
        {"customer_id": "C1", "email": "new@x", "last_login": "2023-07-01 10:00:00"},
    ]))
    c1 = by_customer(merge_profiles(records))["C1"]
    assert c1["email"] == "new@x"            # newer value replaces
    assert c1["first_name"] == "Ada"         # newer record has none: older value kept
    assert c1["city"] == "Paris"
    assert c1["age"] == 30
    assert c1["signup_date"] == pd.Timestamp("2023-01-15")
    assert c1["last_login"] == pd.Timestamp("2023-07-01 10:00:00", tz="UTC")


def test_demographic_row_adds_location_to_the_profile():
    records = landed(
        ("profiles/main.csv", [{"customer_id": "C1", "email": "a@x", "city": "Paris", "age": "30",
                                "last_login": "2023-06-18 09:15:30"}]),
        ("profiles/zz-demographics.csv", [{"customer_id": "C1", "age": "31", "location": "Lyon"}]),
    )
    merged = merge_profiles(records)
    assert len(merged) == 1
    c1 = by_customer(merged)["C1"]
    assert c1["location"] == "Lyon"
    assert (c1["email"], c1["city"]) == ("a@x", "Paris")
    # records without a last_login come first, so the profile's own age is the latest one
    assert c1["age"] == 30


def test_demographic_only_customer():
    merged = merge_profiles(landed(("profiles/d.csv", [{"customer_id": "C9", "age": "52", "location": "Oslo"}])))
    c9 = by_customer(merged)["C9"]
    assert (c9["age"], c9["location"], c9["last_login"], c9["email"]) == (52, "Oslo", None, None)


def test_demographic_rows_among_themselves_follow_landing_order():
    merged = merge_profiles(landed(
        ("profiles/d1.csv", [{"customer_id": "C1", "age": "40", "location": "Oslo"}]),
        ("profiles/d2.csv", [{"customer_id": "C1", "age": "41"}]),
    ))
    c1 = by_customer(merged)["C1"]
    assert (c1["age"], c1["location"], c1["source_file"]) == (41, "Oslo", "profiles/d2.csv")


def test_one_row_per_customer_sorted_with_the_contract_columns():
    merged = merge_profiles(landed(("profiles/a.csv", [
        {"customer_id": "C2", "email": "b@x"}, {"customer_id": "C1", "email": "a@x"},
        {"customer_id": "C2", "first_name": "Bo"},
    ])))
    assert list(merged.columns) == [*PROFILE_COLUMNS, "source_file"]
    assert merged["customer_id"].tolist() == ["C1", "C2"]
    assert by_customer(merged)["C2"]["email"] == "b@x" and by_customer(merged)["C2"]["first_name"] == "Bo"


def test_merge_of_nothing_is_empty_with_the_columns():
    merged = merge_profiles(validate_profiles(frame([])).drop(columns=["reject_reason"]).assign(source_file=[]))
    assert merged.empty
    assert list(merged.columns) == [*PROFILE_COLUMNS, "source_file"]
