"""Arrow columns as PostgreSQL's binary COPY format, encoded column by column in Arrow and NumPy.

PostgreSQL parses binary COPY about twice as fast as CSV (measured on a million customer_clv
rows: 0.99 s against 2.3 s): numbers and timestamps arrive in their stored form instead of as
text to parse. psycopg writes that format one row at a time in Python, so the rows are built
here without a per-row Python step: each column becomes Arrow binary arrays of its length
words and value bytes (one array of both for a fixed-width type; the words and the text as
delivered for text, so text is copied once), and one element-wise join of those arrays lays the
rows out back to back, as the format wants them.

The format (PostgreSQL docs, "COPY — Binary Format"): a signature and two zero words; per row a
16-bit field count, then per field a 32-bit length (-1 for NULL) and that many bytes, in
network byte order; dates are days and timestamps microseconds since 2000-01-01; a 16-bit -1
ends the data.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Integer

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_MICROSECONDS = _PG_EPOCH_DAYS * 86_400 * 1_000_000


def _binary(records: np.ndarray) -> pa.Array:
    """A binary array holding each element of `records` (a NumPy array of fixed-size items) as its raw bytes."""
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(records.dtype.itemsize), len(records),
                                                  [None, pa.py_buffer(np.ascontiguousarray(records).view(np.uint8))])
    return fixed.cast(pa.binary())


def _fixed(values: np.ndarray, dtype: str, valid: np.ndarray | None) -> pa.Array:
    """Rows of a fixed-width type: the length word and the big-endian value (the length word alone when NULL)."""
    width = np.dtype(dtype).itemsize
    records = np.empty(len(values), dtype=[("length", ">i4"), ("value", dtype)])
    records["length"] = width
    records["value"] = values
    encoded = _binary(records)
    if valid is None:
        return encoded
    return pc.if_else(pa.array(valid), encoded, pa.scalar(NULL, pa.binary()))


def _field(array: pa.Array, kind) -> list[pa.Array]:
    """One column's rows in the binary format, for a column of SQLAlchemy type `kind`: arrays to join in order."""
    valid = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
    if isinstance(kind, DateTime):
        micros = pc.cast(array.cast(pa.timestamp("us", tz="UTC")), pa.int64()).fill_null(0)
        return [_fixed(micros.to_numpy() - _PG_EPOCH_MICROSECONDS, ">i8", valid)]
    if isinstance(kind, Date):
        days = pc.cast(array.cast(pa.date32()), pa.int32()).fill_null(0)
        return [_fixed(days.to_numpy() - _PG_EPOCH_DAYS, ">i4", valid)]
    if isinstance(kind, Boolean):
        return [_fixed(array.cast(pa.bool_()).fill_null(False).to_numpy(zero_copy_only=False), ">u1", valid)]
    if isinstance(kind, BigInteger):  # before Integer: BigInteger is one
        return [_fixed(array.cast(pa.int64()).fill_null(0).to_numpy(), ">i8", valid)]
    if isinstance(kind, Integer):
        return [_fixed(array.cast(pa.int32()).fill_null(0).to_numpy(), ">i4", valid)]  # the cast refuses overflow
    if isinstance(kind, Float):
        return [_fixed(array.cast(pa.float64()).fill_null(0.0).to_numpy(), ">f8", valid)]
    # Text: its UTF-8 bytes (the connection's client encoding is UTF8).
    data = array.cast(pa.string()).fill_null("").cast(pa.binary())
    lengths = pc.binary_length(data).to_numpy(zero_copy_only=False).astype(np.int32)
    if valid is not None:
        lengths[~valid] = -1
    return [_binary(lengths.astype(">i4")), data]  # a NULL's data is empty: its -1 word alone


# Rows encoded at a time: bounds the copies held in memory, and keeps a batch's bytes far below the 2 GiB
# that an Arrow binary array's 32-bit offsets can address.
BATCH_ROWS = 100_000


def encode_rows(arrow: pa.Table, kinds: list) -> memoryview:
    """The rows of `arrow` (columns of SQLAlchemy types `kinds`, in order), without header or trailer.

    Use for at most about `BATCH_ROWS` rows at a time (see `encode_batches`).
    """
    if arrow.num_rows == 0:
        return memoryview(b"")
    count = _binary(np.full(arrow.num_rows, len(kinds), dtype=">i2"))  # a row starts with its field count
    parts = [part for index, kind in enumerate(kinds) for part in _field(arrow.column(index).combine_chunks(), kind)]
    rows = pc.binary_join_element_wise(count, *parts, b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=len(rows) + 1, offset=rows.offset * 4)
    return memoryview(rows.buffers()[2])[offsets[0]:offsets[-1]]


def encode_batches(arrow: pa.Table, kinds: list):
    """The whole COPY data of `arrow`: the header, its rows `BATCH_ROWS` at a time, the trailer."""
    yield HEADER
    for start in range(0, arrow.num_rows, BATCH_ROWS):
        yield encode_rows(arrow.slice(start, BATCH_ROWS), kinds)
    yield TRAILER
