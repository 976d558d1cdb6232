"""Binary COPY encoding: every column type the warehouse uses, NULLs and edge values, read back from PostgreSQL."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Float, Integer, MetaData, String, Table, Text, text

from customer_analytics.resources import pgbinary
from customer_analytics.resources.warehouse import frame_to_arrow

UTC = timezone.utc
ROWS = {
    "name": ["plain", "", None, 'comma, "quotes"\nand\tback\\slash', "ünïcødé ✓ 𝄞", "x" * 5000],
    "note": [None, "text", "", "NULL", "\\N", "é"],
    "count": [0, -1, 2_147_483_647, -2_147_483_648, None, 42],
    "total": [0, -(2**63), 2**63 - 1, None, 1, -42],
    "amount": [0.1, -0.0, float("-inf"), float("inf"), None, 5e-324],  # pandas' NaN is a missing value: NULL
    "flag": [True, False, None, True, False, True],
    "day": [date(2000, 1, 1), date(1999, 12, 31), date(1970, 1, 1), None, date(2262, 4, 11), date(2024, 2, 29)],
    "at": [datetime(2000, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
           datetime(2025, 1, 31, 23, 59, 59, 123_456, tzinfo=UTC), None, datetime(1970, 1, 1, tzinfo=UTC),
           datetime(2100, 6, 1, 12, 0, 0, 1, tzinfo=UTC)],
}


def _table(schema: str) -> Table:
    return Table("binary_copy_probe", MetaData(schema=schema),
                 Column("row", Integer), Column("name", String), Column("note", Text), Column("count", Integer),
                 Column("total", BigInteger), Column("amount", Float), Column("flag", Boolean), Column("day", Date),
                 Column("at", DateTime(timezone=True)))


def _copy(warehouse, table: Table, frame: pd.DataFrame) -> list[tuple]:
    columns = [c.name for c in table.columns]
    warehouse.ensure_tables()  # the schema
    with warehouse.begin() as connection:
        table.create(connection)
        warehouse.insert_frame(connection, warehouse.qualified(table.name), table, frame)
        rows = connection.execute(text(f"SELECT {', '.join(columns)} FROM {warehouse.qualified(table.name)} ORDER BY row"))
        return [tuple(row) for row in rows]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


@pytest.mark.postgres
def test_every_type_and_null_reads_back_exactly(pg_warehouse, monkeypatch):
    monkeypatch.setattr(pgbinary, "BATCH_ROWS", 4)  # several batches, one of them partial
    repeats = 3
    frame = pd.DataFrame({name: pd.Series(values * repeats, dtype=object) for name, values in ROWS.items()})
    frame.insert(0, "row", range(len(frame)))
    stored = _copy(pg_warehouse, _table(pg_warehouse.schema), frame)
    expected = [(index, *(ROWS[name][index % 6] for name in ROWS)) for index in range(len(frame))]
    assert len(stored) == len(expected) == 18
    for got, want in zip(stored, expected):
        assert all(_same(g, w) for g, w in zip(got, want)), (got, want)


@pytest.mark.postgres
def test_a_value_too_large_for_its_column_is_refused_before_the_copy(pg_warehouse):
    table = _table(pg_warehouse.schema)
    frame = pd.DataFrame({"row": [1], "count": [2**31]})
    with pytest.raises(pa.ArrowInvalid, match="out of bounds|overflow|not in range"):
        _copy(pg_warehouse, table, frame)


def test_rows_are_laid_out_as_postgres_documents_them():
    # One row of (int4 7, text 'ab', NULL float8): field count 3, then length words and big-endian values.
    table = pa.table({"a": [7], "b": ["ab"], "c": pa.array([None], pa.float64())})
    encoded = bytes(pgbinary.encode_rows(table, [Integer(), String(), Float()]))
    assert encoded == b"\x00\x03" + b"\x00\x00\x00\x04\x00\x00\x00\x07" + b"\x00\x00\x00\x02ab" + b"\xff\xff\xff\xff"
    assert b"".join(bytes(part) for part in pgbinary.encode_batches(table.slice(0, 0), [])) == pgbinary.HEADER + pgbinary.TRAILER


def test_dates_and_timestamps_count_from_2000():
    table = frame_to_arrow(pd.DataFrame({"d": [pd.Timestamp("2000-01-02")],
                                         "t": [pd.Timestamp("2000-01-01", tz="UTC") + timedelta(microseconds=3)]}),
                           Table("t", MetaData(), Column("d", Date), Column("t", DateTime(timezone=True))), ["d", "t"])
    encoded = bytes(pgbinary.encode_rows(table, [Date(), DateTime(timezone=True)]))
    assert encoded == b"\x00\x02" + b"\x00\x00\x00\x04\x00\x00\x00\x01" + b"\x00\x00\x00\x08" + (3).to_bytes(8, "big")
