"""Event and legacy-transaction validation: typed rows, revenue, months, and the reasons a record is refused."""

from __future__ import annotations

import decimal
import hashlib
import io
import math
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_analytics.resources.landing import list_files, read_records
from customer_analytics.transforms.events import EVENT_COLUMNS, validate_events, validate_transactions

EVENT_FIELDS = ("event_id", "customer_id", "event_type", "event_timestamp", "session_id", "page_url", "product_id",
                "category_id", "price", "quantity", "device_type", "country", "referrer", "user_agent")
VIEW = {"event_id": "e1", "customer_id": "c1", "event_type": "view", "event_timestamp": "2023-06-15 14:30:45"}
PURCHASE = {**VIEW, "event_type": "purchase"}


def frame(rows: list[dict], fields=EVENT_FIELDS) -> pd.DataFrame:
    """Delivered fields as the NDJSON reader's exact path hands them over: every contract field, object dtype."""
    return pd.DataFrame.from_records([{name: row.get(name) for name in fields} for row in rows],
                                     columns=list(fields)).astype(object)


def validate(*rows: dict) -> pd.DataFrame:
    return validate_events(frame(list(rows)))


def reasons_of(validated: pd.DataFrame) -> list:
    return [None if pd.isna(r) else r for r in validated["reject_reason"]]


def only_reason(**fields) -> str | None:
    return reasons_of(validate({**VIEW, **fields}))[0]


# -- the shape of the output -------------------------------------------------------------
def test_output_columns_and_types():
    out = validate(VIEW)
    assert list(out.columns) == [*EVENT_COLUMNS, "reject_reason"]
    assert str(out["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert out["price"].dtype == np.float64 and out["revenue"].dtype == np.float64
    assert str(out["quantity"].dtype) == "Int64"


def test_a_valid_view_event():
    row = validate({**VIEW, "session_id": " s1 ", "page_url": "https://shop.example/p/1", "country": "DE"}).iloc[0]
    assert pd.isna(row["reject_reason"])
    assert (row["event_id"], row["customer_id"], row["event_type"]) == ("e1", "c1", "view")
    assert row["session_id"] == "s1"
    assert row["event_timestamp"] == pd.Timestamp("2023-06-15 14:30:45", tz="UTC")
    assert row["event_month"] == pd.Timestamp("2023-06-01")
    assert row["event_date"] == pd.Timestamp("2023-06-15")
    assert row["revenue"] == 0.0
    assert pd.isna(row["price"]) and pd.isna(row["quantity"])


# -- timestamps, months, dates -----------------------------------------------------------
@pytest.mark.parametrize(
    "stamp, utc, month, day",
    [
        ("2023-06-15 14:30:45", "2023-06-15 14:30:45", "2023-06-01", "2023-06-15"),
        ("2023-06-15T14:30:45Z", "2023-06-15 14:30:45", "2023-06-01", "2023-06-15"),
        ("2023-06-15T14:30:45+02:00", "2023-06-15 12:30:45", "2023-06-01", "2023-06-15"),
        ("2025-01-31T23:30:00-01:00", "2025-02-01 00:30:00", "2025-02-01", "2025-02-01"),
        ("2025-02-01T00:30:00+01:00", "2025-01-31 23:30:00", "2025-01-01", "2025-01-31"),
        ("2024-12-31T22:00:00-03:00", "2025-01-01 01:00:00", "2025-01-01", "2025-01-01"),
    ],
)
def test_timestamps_months_and_dates_are_utc(stamp, utc, month, day):
    row = validate({**VIEW, "event_timestamp": stamp}).iloc[0]
    assert pd.isna(row["reject_reason"])
    assert row["event_timestamp"] == pd.Timestamp(utc, tz="UTC")
    assert row["event_month"] == pd.Timestamp(month)
    assert row["event_date"] == pd.Timestamp(day)


def test_mixed_timestamp_styles_in_one_chunk():
    out = validate({**VIEW, "event_timestamp": "2023-06-30 23:59:59"},
                   {**VIEW, "event_timestamp": "2023-07-01T01:30:00+02:00"},
                   {**VIEW, "event_timestamp": "2023-07-01T00:00:00Z"})
    assert out["event_month"].tolist() == [pd.Timestamp("2023-06-01"), pd.Timestamp("2023-06-01"),
                                           pd.Timestamp("2023-07-01")]
    assert reasons_of(out) == [None, None, None]


# -- revenue -----------------------------------------------------------------------------
def test_purchase_revenue_is_price_times_quantity():
    row = validate({**PURCHASE, "price": 10.5, "quantity": 2}).iloc[0]
    assert pd.isna(row["reject_reason"])
    assert (row["price"], row["quantity"], row["revenue"]) == (10.5, 2, 21.0)


def test_purchase_without_quantity_bought_one_unit():
    row = validate({**PURCHASE, "price": "19.99"}).iloc[0]
    assert pd.isna(row["reject_reason"])
    assert (row["quantity"], row["revenue"]) == (1, 19.99)


def test_numbers_as_text_are_coerced():
    row = validate({**PURCHASE, "price": " 4.5 ", "quantity": "3"}).iloc[0]
    assert (row["price"], row["quantity"], row["revenue"]) == (4.5, 3, 13.5)


def test_whole_float_quantity_and_zero_quantity_or_price_are_fine():
    out = validate({**PURCHASE, "price": 2.5, "quantity": 4.0},
                   {**PURCHASE, "price": 7, "quantity": 0},
                   {**PURCHASE, "price": 0})
    assert reasons_of(out) == [None, None, None]
    assert out["quantity"].tolist() == [4, 0, 1]
    assert out["revenue"].tolist() == [10.0, 0.0, 0.0]


@pytest.mark.parametrize("event_type", ["view", "add_to_cart", "Purchase", "refund"])
def test_non_purchase_revenue_is_zero_even_with_price_and_quantity(event_type):
    row = validate({**VIEW, "event_type": event_type, "price": 10.5, "quantity": 3}).iloc[0]
    assert pd.isna(row["reject_reason"])
    assert row["revenue"] == 0.0
    assert (row["price"], row["quantity"]) == (10.5, 3)


def test_non_purchase_without_quantity_keeps_it_missing():
    row = validate({**VIEW, "price": 5}).iloc[0]
    assert pd.isna(row["quantity"]) and row["revenue"] == 0.0


def test_event_type_is_trimmed_before_deciding_it_is_a_purchase():
    row = validate({**VIEW, "event_type": "  purchase ", "price": 3, "quantity": 2}).iloc[0]
    assert row["event_type"] == "purchase" and row["revenue"] == 6.0


# -- refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["event_id", "customer_id", "event_type", "event_timestamp"])
@pytest.mark.parametrize("missing", [None, "", "   "])
def test_missing_required_field(name, missing):
    assert only_reason(**{name: missing}) == f"missing {name}"


@pytest.mark.parametrize("name", ["customer_id", "event_type", "event_id"])
def test_required_text_that_is_an_object_array_or_boolean(name):
    for value in ({"id": 1}, [1, 2], True):
        assert only_reason(**{name: value}) == f"{name} must be text, not a JSON object, array or boolean"


@pytest.mark.parametrize("stamp", ["15/06/2023", "yesterday", "2023-02-30 10:00:00", "2023-06-15 25:00:00"])
def test_unparsable_timestamp(stamp):
    reason = only_reason(event_timestamp=stamp)
    assert reason.startswith(f"unparsable event_timestamp '{stamp}'")
    assert "2023-06-15 14:30:45" in reason and "ISO 8601" in reason


def test_unparsable_timestamp_has_no_month():
    row = validate({**VIEW, "event_timestamp": "nope"}).iloc[0]
    assert pd.isna(row["event_timestamp"]) and pd.isna(row["event_month"]) and pd.isna(row["event_date"])


@pytest.mark.parametrize("price", [None, "", "  "])
def test_purchase_without_a_price(price):
    assert only_reason(event_type="purchase", price=price) == "purchase without a price"


@pytest.mark.parametrize("price, shown", [("abc", "'abc'"), ("1,50", "'1,50'"), ("€5", "'€5'"), (True, "True"),
                                          ([5], "[5]")])
def test_purchase_with_a_price_that_is_not_a_number(price, shown):
    assert only_reason(event_type="purchase", price=price) == f"price {shown} is not a number"


@pytest.mark.parametrize("price", ["NaN", "nan", "Infinity", "-inf", float("inf"), float("-inf")])
def test_nan_and_infinite_prices_are_refused(price):
    reason = only_reason(event_type="purchase", price=price)
    assert reason is not None and reason.startswith("price ") and reason.endswith(" is not a number")


def test_nan_float_price_on_a_purchase_is_refused():
    # json.loads turns the literal NaN into a float; it is not a usable price
    assert only_reason(event_type="purchase", price=float("nan")) is not None


def test_nan_literal_price_is_refused_as_not_a_number(tmp_path):
    path = tmp_path / "events" / "a.ndjson"
    path.parent.mkdir()
    path.write_text('{"event_id":"e1","customer_id":"c1","event_type":"view",'
                    '"event_timestamp":"2023-06-15 14:30:45","price":NaN}\n')
    chunks = list(read_records(list_files(tmp_path, "events")[0]))
    reason = reasons_of(validate_events(chunks[0].fields))[0]
    assert reason is not None and "not a number" in reason


@pytest.mark.parametrize("price, shown", [(-1, "-1"), ("-0.01", "'-0.01'"), (-2.5, "-2.5")])
def test_negative_price(price, shown):
    assert only_reason(event_type="purchase", price=price) == f"negative price {shown}"


def test_price_given_on_a_non_purchase_is_still_checked():
    assert only_reason(price="abc") == "price 'abc' is not a number"
    assert only_reason(price=-3) == "negative price -3"


def test_absurd_price_is_refused():
    assert "above 10,000,000,000" in only_reason(event_type="purchase", price=2e10)
    assert only_reason(event_type="purchase", price=1e10) is None


@pytest.mark.parametrize("quantity, words", [(-1, "negative quantity -1"), ("-2", "negative quantity '-2'"),
                                             (1.5, "quantity 1.5 is not a whole number"),
                                             ("2.25", "quantity '2.25' is not a whole number"),
                                             ("two", "quantity 'two' is not a number"),
                                             (True, "quantity True is not a number")])
def test_bad_quantity(quantity, words):
    assert only_reason(event_type="purchase", price=5, quantity=quantity) == words


def test_absurd_quantity_is_refused():
    assert "above 1,000,000" in only_reason(event_type="purchase", price=5, quantity=2_000_000)
    assert only_reason(event_type="purchase", price=5, quantity=1_000_000) is None


def test_several_problems_in_one_record_are_joined_in_order():
    reason = only_reason(customer_id=None, event_timestamp="junk", event_type="purchase", price=-2, quantity=-1)
    parts = reason.split("; ")
    assert parts[0] == "missing customer_id"
    assert parts[1].startswith("unparsable event_timestamp 'junk'")
    assert parts[2:] == ["negative price -2", "negative quantity -1"]


def test_all_required_fields_missing():
    assert reasons_of(validate({})) == ["missing event_id; missing customer_id; missing event_type; "
                                        "missing event_timestamp"]


def test_optional_text_that_is_an_object_is_refused():
    assert only_reason(page_url={"href": "x"}) == "page_url must be text, not a JSON object, array or boolean"


def test_good_rows_are_untouched_by_bad_neighbours():
    out = validate({**PURCHASE, "price": 1, "quantity": 2}, {**PURCHASE, "price": "x"}, {**VIEW, "event_id": "e3"})
    assert reasons_of(out) == [None, "price 'x' is not a number", None]
    assert out["revenue"].tolist()[0] == 2.0 and out["revenue"].tolist()[2] == 0.0


def test_frame_without_optional_columns():
    fields = pd.DataFrame({"event_id": ["e1"], "customer_id": ["c1"], "event_type": ["purchase"],
                           "event_timestamp": ["2023-06-15 14:30:45"], "price": ["3"]}, dtype=object)
    out = validate_events(fields)
    assert reasons_of(out) == [None]
    assert out["revenue"].tolist() == [3.0]
    assert out["page_url"].isna().all()


# -- Parquet-typed values ------------------------------------------------------------------
def _parquet_chunk(tmp_path: Path, source: str, table: pa.Table):
    path = tmp_path / source / "typed.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    (chunk,) = list(read_records(list_files(tmp_path, source)[0]))
    return chunk


def test_parquet_decimal_price_is_a_number(tmp_path):
    chunk = _parquet_chunk(tmp_path, "events", pa.table({
        "event_id": ["e1"], "customer_id": ["c1"], "event_type": ["purchase"],
        "event_timestamp": ["2023-06-15 14:30:45"],
        "price": pa.array([decimal.Decimal("10.50")], pa.decimal128(10, 2)), "quantity": pa.array([2], pa.int32()),
    }))
    out = validate_events(chunk.fields)
    assert reasons_of(out) == [None]
    assert out["revenue"].tolist() == [21.0]


def test_parquet_date_column_is_a_valid_transaction_date(tmp_path):
    chunk = _parquet_chunk(tmp_path, "transactions", pa.table({
        "customer_id": ["c1"], "transaction_date": pa.array([date(2023, 6, 15)], pa.date32()),
        "transaction_amount": [5.0],
    }))
    out = validate_transactions(chunk.fields)
    assert reasons_of(out) == [None]
    assert out["event_timestamp"].tolist() == [pd.Timestamp("2023-06-15", tz="UTC")]


def test_parquet_timestamp_column_is_a_valid_transaction_date(tmp_path):
    chunk = _parquet_chunk(tmp_path, "transactions", pa.table({
        "customer_id": ["c1"], "transaction_date": pa.array([datetime(2023, 6, 15, 9, 0)], pa.timestamp("s")),
        "transaction_amount": pa.array([5], pa.int64()),
    }))
    out = validate_transactions(chunk.fields)
    assert reasons_of(out) == [None]
    assert out["event_timestamp"].tolist() == [pd.Timestamp("2023-06-15 09:00", tz="UTC")]
    assert out["revenue"].tolist() == [5.0]


# -- legacy transactions -----------------------------------------------------------------
TXN_FIELDS = ("customer_id", "transaction_date", "transaction_amount")


def transactions(rows: list[dict], copies=None) -> pd.DataFrame:
    return validate_transactions(frame(rows, TXN_FIELDS), copies)


def txn_id(customer_id: str, utc_instant: str, amount: float, k: int) -> str:
    """The README's rule, written out: txn-<SHA-1 of customer, UTC instant and amount, 16 hex digits>-<k>."""
    text = f"{customer_id}\x1f{utc_instant}\x1f{amount!r}"
    return f"txn-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:16]}-{k}"


def test_transaction_is_a_one_unit_purchase_of_the_amount():
    out = transactions([{"customer_id": "c1", "transaction_date": "2023-06-15 14:30:45",
                         "transaction_amount": "42.5"}])
    row = out.iloc[0]
    assert list(out.columns) == [*EVENT_COLUMNS, "reject_reason"]
    assert pd.isna(row["reject_reason"])
    assert (row["event_type"], row["customer_id"]) == ("purchase", "c1")
    assert (row["price"], row["quantity"], row["revenue"]) == (42.5, 1, 42.5)
    assert row["event_timestamp"] == pd.Timestamp("2023-06-15 14:30:45", tz="UTC")
    assert row["event_month"] == pd.Timestamp("2023-06-01")
    assert pd.isna(row["session_id"])


def test_transaction_ids_come_from_the_content_and_count_identical_rows():
    same = {"customer_id": "c1", "transaction_date": "2023-06-15", "transaction_amount": 10}
    other = {"customer_id": "c2", "transaction_date": "2023-06-15T02:00:00+02:00", "transaction_amount": "19.990"}
    first = transactions([same, other, same, same])
    ids = first["event_id"].tolist()
    day = "2023-06-15T00:00:00.000000"  # both dates, in UTC
    assert ids == [txn_id("c1", day, 10.0, 1), txn_id("c2", day, 19.99, 1), txn_id("c1", day, 10.0, 2), txn_id("c1", day, 10.0, 3)]
    assert transactions([same, other, same, same])["event_id"].tolist() == ids  # stable across runs
    assert reasons_of(first) == [None] * 4
    # Written differently, the same content as stored: the same id (a redelivery, not a new purchase).
    respelled = {"customer_id": " c1 ", "transaction_date": "2023-06-15 00:00:00", "transaction_amount": "10.00"}
    assert transactions([respelled])["event_id"].tolist() == ids[:1]
    assert transactions([{**same, "transaction_amount": 11}])["event_id"].iloc[0] != ids[0]


def test_transaction_copies_carry_from_chunk_to_chunk_of_one_file():
    same = {"customer_id": "c1", "transaction_date": "2023-06-15", "transaction_amount": 10}
    copies: dict[str, int] = {}
    first, second = transactions([same, same], copies), transactions([same], copies)
    assert [i.rsplit("-", 1)[1] for i in [*first["event_id"], *second["event_id"]]] == ["1", "2", "3"]
    assert transactions([same])["event_id"].iloc[0] == first["event_id"].iloc[0]  # a new file counts afresh


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"transaction_date": "2023-06-15", "transaction_amount": 5}, "missing customer_id"),
        ({"customer_id": "c", "transaction_amount": 5}, "missing transaction_date"),
        ({"customer_id": "c", "transaction_date": "2023-06-15"}, "missing transaction_amount"),
        ({"customer_id": "c", "transaction_date": "2023-06-15", "transaction_amount": "-5"},
         "negative transaction_amount '-5'"),
        ({"customer_id": "c", "transaction_date": "2023-06-15", "transaction_amount": "ten"},
         "transaction_amount 'ten' is not a number"),
    ],
)
def test_transaction_refusals(row, reason):
    assert reasons_of(transactions([row])) == [reason]


def test_transaction_unparsable_date():
    (reason,) = reasons_of(transactions([{"customer_id": "c", "transaction_date": "06/15/2023",
                                          "transaction_amount": 1}]))
    assert reason.startswith("unparsable transaction_date '06/15/2023'")


def test_transaction_date_with_offset_is_converted():
    out = transactions([{"customer_id": "c", "transaction_date": "2023-07-01T01:00:00+02:00",
                         "transaction_amount": 1}])
    assert out["event_month"].iloc[0] == pd.Timestamp("2023-06-01")


# -- property: every row is valid and complete, or refused with a reason -------------------
TEXT_VALUES = st.one_of(st.none(), st.sampled_from(["", "  ", "c1", " c2 ", "x" * 70]), st.text(max_size=6),
                        st.integers(-5, 10**20), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                        st.just([1]), st.just({"a": 1}))
STAMPS = st.one_of(st.none(), st.sampled_from([
    "2023-06-15 14:30:45", "2023-06-15T14:30:45Z", "2025-01-31T23:30:00-01:00", "2023-06-15", "",
    "15/06/2023", "2023-02-30 10:00:00", "junk", "2023-06-15T14:30:45.123+05:30",
]), st.integers(0, 2 * 10**9), st.text(max_size=8), st.booleans())
NUMBERS = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**21, 10**21),
                    st.sampled_from(["", " 3 ", "10.5", "-1", "1e3", "abc", "NaN", "inf", "2.5", "0", "1e11"]),
                    st.text(max_size=5), st.booleans(), st.just([2]))
EVENT_ROW = st.fixed_dictionaries({
    "event_id": TEXT_VALUES, "customer_id": TEXT_VALUES,
    "event_type": st.one_of(st.sampled_from(["purchase", "purchase", "view", " purchase", "Purchase", "", None]),
                            TEXT_VALUES),
    "event_timestamp": STAMPS, "price": NUMBERS, "quantity": NUMBERS, "page_url": TEXT_VALUES,
})


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(EVENT_ROW, min_size=1, max_size=12))
def test_every_event_is_loadable_or_refused_with_a_reason(rows):
    out = validate(*rows)
    assert len(out) == len(rows)
    for position, row in enumerate(out.itertuples(index=False)):
        reason = row.reject_reason
        if not pd.isna(reason):
            assert isinstance(reason, str) and reason.strip()
            assert not reason.startswith("; ") and "; ; " not in reason
            continue
        assert not pd.isna(row.event_id) and not pd.isna(row.customer_id) and not pd.isna(row.event_type)
        assert row.event_id.strip() == row.event_id and row.customer_id.strip() == row.customer_id
        assert not pd.isna(row.event_timestamp)
        assert row.event_month == row.event_timestamp.tz_convert(None).to_period("M").to_timestamp()
        assert row.event_date == row.event_timestamp.tz_convert(None).normalize()
        assert math.isfinite(row.revenue) and row.revenue >= 0
        if row.event_type == "purchase":
            assert not pd.isna(row.price) and row.price >= 0 and math.isfinite(row.price)
            assert not pd.isna(row.quantity) and row.quantity >= 0
            assert row.revenue == row.price * row.quantity
            if rows[position]["quantity"] is None:
                assert row.quantity == 1
        else:
            assert row.revenue == 0.0
