"""Vectorized coercion of delivered values (text, numbers, timestamps, months) and per-record reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_analytics.transforms.fields import (
    Reasons,
    date_of,
    longer_than,
    month_of,
    number_column,
    text_column,
    timestamp_column,
)


def values(series: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in series]


# -- text --------------------------------------------------------------------------------
def test_text_column_trims_and_treats_blank_as_missing():
    text, wrong = text_column(pd.Series(["  a ", "", "   ", None, "b"], dtype=object))
    assert values(text) == ["a", None, None, None, "b"]
    assert wrong.tolist() == [False] * 5


def test_text_column_numbers_become_their_text_and_whole_floats_lose_the_point():
    text, wrong = text_column(pd.Series([5, 5.0, 5.5, 12345678901234567890], dtype=object))
    assert values(text) == ["5", "5", "5.5", "12345678901234567890"]
    assert not wrong.any()


def test_text_column_typed_float_and_int_columns():
    assert values(text_column(pd.Series([1.0, 2.5, np.nan]))[0]) == ["1", "2.5", None]
    assert values(text_column(pd.Series([7, 8], dtype="int64"))[0]) == ["7", "8"]


def test_text_column_flags_booleans_objects_and_arrays():
    text, wrong = text_column(pd.Series([True, [1], {"a": 1}, "ok"], dtype=object))
    assert wrong.tolist() == [True, True, True, False]
    assert values(text) == [None, None, None, "ok"]


def arrow_text(items: list) -> pd.Series:
    """Text as parsed NDJSON and Parquet deliver it: Arrow-backed."""
    return pa.table({"v": pa.array(items, pa.string())}).to_pandas()["v"]


def test_text_column_trims_arrow_backed_text_and_treats_blank_as_missing():
    text, wrong = text_column(arrow_text(["  a ", "", "   ", None, "b", "\u00a0c\u3000", "d\t"]))
    assert values(text) == ["a", None, None, None, "b", "c", "d"]
    assert str(text.dtype) == "string" and not wrong.any()


def test_text_column_leaves_clean_arrow_text_as_it_is_apart_from_blanks():
    text, _ = text_column(arrow_text(["a b", "é", "", None, "x"]))
    assert values(text) == ["a b", "é", None, None, "x"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=" \t\n\x0b\x1c\x85\u00a0\u2003\u3000ab\u00e9\u4e2d", max_size=6)), max_size=12))
def test_text_column_arrow_path_matches_pandas_strip(items):
    expected = arrow_text(items).astype("string").str.strip()
    expected = expected.mask(expected == "")
    text, _ = text_column(arrow_text(items))
    assert values(text) == values(expected)
    assert text.dtype == expected.dtype


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=" \t\u00a0ab\u00e9", max_size=4)), max_size=12), st.integers(0, 12))
def test_text_column_arrow_path_matches_pandas_strip_over_sliced_chunks(items, cut):
    """Chunks that are slices of larger buffers, as parsed NDJSON blocks are: offsets not starting at 0."""
    cut = min(cut, len(items))
    chunks = pa.chunked_array([pa.array([" pad "] + items[:cut], pa.large_string()).slice(1),
                               pa.array(items[cut:] + [" tail "], pa.large_string()).slice(0, len(items) - cut)])
    series = pd.Series(pd.arrays.ArrowStringArray(chunks))
    expected = pd.Series(items, dtype="string").str.strip()
    expected = expected.mask(expected == "")
    text, _ = text_column(series)
    assert values(text) == values(expected)


ZW = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


@pytest.mark.parametrize("as_arrow", [True, False], ids=["arrow", "object"])
def test_zero_width_characters_at_the_ends_are_trimmed_like_whitespace(as_arrow):
    items = [f"{z}id-1" for z in ZW] + [f"id-1{z}" for z in ZW] + ["\u00a0\u200b id-1 \ufeff\u00a0", "\u200b\u2060", "id\u200b-1"]
    series = arrow_text(items) if as_arrow else pd.Series(items, dtype=object)
    text, _ = text_column(series)
    assert values(text) == ["id-1"] * 11 + [None, "id\u200b-1"]  # inside the text it is kept: not at an end


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=" \t\u00a0\u200b\ufeff\u2060ab\u00e9", max_size=6)), max_size=12))
def test_text_column_arrow_and_object_paths_trim_alike(items):
    arrow, _ = text_column(arrow_text(items))
    plain, _ = text_column(pd.Series(items, dtype=object))
    assert values(arrow) == values(plain)


def test_longer_than_counts_characters_not_bytes():
    items = ["a" * 5, "a" * 6, "é" * 5, "é" * 6, "😀" * 5, None, ""]
    expected = [False, True, False, True, False, False, False]
    assert longer_than(arrow_text(items), 5).tolist() == expected
    assert longer_than(pd.Series(items, dtype=object).astype("string[python]"), 5).tolist() == expected


# -- numbers -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, number, is_present, is_invalid",
    [
        ("10.5", 10.5, True, False),
        (" 3 ", 3.0, True, False),
        ("1e3", 1000.0, True, False),
        ("-1", -1.0, True, False),  # negative is a number; the caller refuses it
        (7, 7.0, True, False),
        (2.5, 2.5, True, False),
        ("", None, False, False),
        ("   ", None, False, False),
        (None, None, False, False),
        ("abc", None, True, True),
        ("1,5", None, True, True),
        ("NaN", None, True, True),
        ("inf", None, True, True),
        ("-Infinity", None, True, True),
        (float("inf"), None, True, True),
        (True, None, True, True),
        ([1], None, True, True),
        ({"v": 1}, None, True, True),
    ],
)
def test_number_column_from_delivered_values(raw, number, is_present, is_invalid):
    column = pd.Series([raw, "1"], dtype=object)
    numbers, present, invalid = number_column(column)
    assert values(numbers)[0] == number
    assert bool(present.iloc[0]) is is_present
    assert bool(invalid.iloc[0]) is is_invalid
    assert (values(numbers)[1], bool(present.iloc[1]), bool(invalid.iloc[1])) == (1.0, True, False)


def test_number_column_typed_float_column_refuses_infinity():
    numbers, present, invalid = number_column(pd.Series([1.5, np.nan, np.inf, -np.inf]))
    assert values(numbers)[:2] == [1.5, None]
    assert present.tolist() == [True, False, True, True]
    assert invalid.tolist() == [False, False, True, True]


def test_number_column_boolean_column_is_all_invalid():
    numbers, present, invalid = number_column(pd.Series([True, False]))
    assert present.all() and invalid.all()
    assert numbers.isna().all()


def test_number_column_text_dtype():
    numbers, present, invalid = number_column(pd.Series(["4.25", None, "x"], dtype="string"))
    assert values(numbers) == [4.25, None, None]
    assert present.tolist() == [True, False, True]
    assert invalid.tolist() == [False, False, True]


# -- timestamps --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, utc",
    [
        ("2023-06-15 14:30:45", "2023-06-15 14:30:45"),  # no zone: UTC
        ("2023-06-15T14:30:45Z", "2023-06-15 14:30:45"),
        ("2023-06-15T14:30:45+02:00", "2023-06-15 12:30:45"),
        ("2023-06-15T14:30:45.5+05:30", "2023-06-15 09:00:45.5"),
        ("2025-01-31T23:30:00-01:00", "2025-02-01 00:30:00"),
        ("  2023-06-15 14:30:45  ", "2023-06-15 14:30:45"),
        ("2023-06-15", "2023-06-15 00:00:00"),
    ],
)
def test_timestamp_column_parses_to_utc(raw, utc):
    stamps, present, invalid = timestamp_column(pd.Series([raw], dtype=object))
    assert stamps.iloc[0] == pd.Timestamp(utc, tz="UTC")
    assert str(stamps.dtype) == "datetime64[us, UTC]"
    assert present.tolist() == [True] and invalid.tolist() == [False]


def test_timestamp_column_mixed_zones_in_one_column():
    stamps, _, invalid = timestamp_column(pd.Series(
        ["2023-06-15 14:30:45", "2023-06-15T14:30:45+02:00", "2023-06-15T14:30:45Z"], dtype=object))
    assert stamps.tolist() == [pd.Timestamp("2023-06-15 14:30:45", tz="UTC"),
                               pd.Timestamp("2023-06-15 12:30:45", tz="UTC"),
                               pd.Timestamp("2023-06-15 14:30:45", tz="UTC")]
    assert not invalid.any()


@pytest.mark.parametrize("raw", ["15/06/2023", "yesterday", "2023-02-30 10:00:00", "2023-13-01", 1686839445, True])
def test_timestamp_column_unparsable_is_present_and_invalid(raw):
    stamps, present, invalid = timestamp_column(pd.Series([raw], dtype=object))
    assert stamps.isna().all()
    assert present.tolist() == [True] and invalid.tolist() == [True]


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_timestamp_column_missing_is_not_present(raw):
    stamps, present, invalid = timestamp_column(pd.Series([raw], dtype=object))
    assert stamps.isna().all()
    assert present.tolist() == [False] and invalid.tolist() == [False]


def test_timestamp_column_typed_naive_is_utc_and_aware_is_converted():
    naive = pd.Series(pd.to_datetime(["2023-06-15 14:30:45"]))
    aware = pd.Series(pd.to_datetime(["2023-06-15 14:30:45"]).tz_localize("Europe/Paris"))
    assert timestamp_column(naive)[0].iloc[0] == pd.Timestamp("2023-06-15 14:30:45", tz="UTC")
    assert timestamp_column(aware)[0].iloc[0] == pd.Timestamp("2023-06-15 12:30:45", tz="UTC")


def test_timestamp_column_parses_arrow_backed_text_like_pandas():
    raw = ["2023-06-15 14:30:45", "2023-06-15T14:30:45", "2023-06-15", None, "2023-06-15 14:30:45.25"]
    stamps, present, invalid = timestamp_column(arrow_text(raw))
    assert values(stamps) == [pd.Timestamp("2023-06-15 14:30:45", tz="UTC")] * 2 + [
        pd.Timestamp("2023-06-15", tz="UTC"), None, pd.Timestamp("2023-06-15 14:30:45.25", tz="UTC")]
    assert str(stamps.dtype) == "datetime64[us, UTC]"
    assert present.tolist() == [True, True, True, False, True] and not invalid.any()
    zoned, _, _ = timestamp_column(arrow_text(["2023-06-15T14:30:45Z", "2025-01-31T23:30:00-01:00"]))
    assert zoned.tolist() == [pd.Timestamp("2023-06-15 14:30:45", tz="UTC"), pd.Timestamp("2025-02-01 00:30:00", tz="UTC")]
    mixed, _, invalid = timestamp_column(arrow_text(["2023-06-15 14:30:45", "2023-06-15T14:30:45+02:00", "2023-02-30"]))
    assert values(mixed) == [pd.Timestamp("2023-06-15 14:30:45", tz="UTC"), pd.Timestamp("2023-06-15 12:30:45", tz="UTC"), None]
    assert invalid.tolist() == [False, False, True]


_digits = lambda size: st.integers(0, 10**size - 1).map(lambda n: f"{n:0{size}d}")  # noqa: E731
_iso_like = st.builds(
    lambda date, sep, clock, fraction, zone: date + (sep + clock + fraction if clock else "") + zone,
    st.builds(lambda y, m, d: f"{y}-{m}-{d}", _digits(4), st.sampled_from(["00", "01", "02", "06", "12", "13"]),
              st.sampled_from(["00", "01", "15", "28", "29", "30", "31", "32"])),
    st.sampled_from(["T", " ", "t"]),
    st.one_of(st.just(""), st.builds(lambda h, m, sec: f"{h}:{m}{sec}", st.sampled_from(["00", "09", "23", "24"]),
                                     st.sampled_from(["00", "30", "59", "60"]), st.sampled_from(["", ":00", ":59", ":60"]))),
    st.sampled_from(["", ".5", ".123456", ".1234567"]),
    st.sampled_from(["", "Z", "+02:00", "-0530", "+14:00", "+24:00"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_iso_like, min_size=1, max_size=6))
def test_timestamp_column_arrow_path_agrees_with_pandas(items):
    expected = pd.to_datetime(pd.Series(items, dtype=object), format="ISO8601", utc=True, errors="coerce")
    expected = expected.astype("datetime64[us, UTC]")
    expected = expected.mask(expected.dt.year < 1)  # year 0 is refused (see timestamp_column)
    stamps, _, _ = timestamp_column(arrow_text(items))
    assert values(stamps) == values(expected)


def test_month_and_date_are_utc_boundaries():
    stamps, _, _ = timestamp_column(pd.Series([
        "2025-01-31T23:30:00-01:00",  # 2025-02-01 00:30 UTC
        "2025-02-01T00:30:00+01:00",  # 2025-01-31 23:30 UTC
        "2024-12-31T23:59:59.999999Z",
        "2024-02-29 12:00:00",
        "not a time",
    ], dtype=object))
    assert month_of(stamps).tolist() == [pd.Timestamp("2025-02-01"), pd.Timestamp("2025-01-01"),
                                         pd.Timestamp("2024-12-01"), pd.Timestamp("2024-02-01"), pd.NaT]
    assert date_of(stamps).tolist() == [pd.Timestamp("2025-02-01"), pd.Timestamp("2025-01-31"),
                                        pd.Timestamp("2024-12-31"), pd.Timestamp("2024-02-29"), pd.NaT]
    assert month_of(stamps).dt.tz is None and date_of(stamps).dt.tz is None


# -- reasons -----------------------------------------------------------------------------
def test_reasons_join_several_problems_with_semicolons():
    reasons = Reasons(pd.RangeIndex(3))
    reasons.add([True, False, True], "missing customer_id")
    reasons.add(np.array([True, True, False]), "missing event_type")
    reasons.add(pd.Series([False, False, False]), "never")
    assert values(reasons.values) == ["missing customer_id; missing event_type", "missing event_type",
                                      "missing customer_id"]
    assert reasons.rejected.tolist() == [True, True, True]


def test_reasons_with_per_row_messages_and_untouched_rows():
    index = pd.Index([10, 11, 12])
    reasons = Reasons(index)
    reasons.add([False, True, True], pd.Series(["price 'a' is not a number", "price 'b' is not a number",
                                                "price 'c' is not a number"], index=index))
    assert values(reasons.values) == [None, "price 'b' is not a number", "price 'c' is not a number"]
    assert reasons.rejected.tolist() == [False, True, True]
