"""Recognising redelivered events among millions without holding their ids in memory.

Each delivery is reduced to a 64-bit hash of its `event_id` and one of its content; the
first delivery of an id (in landing order) is the one loaded. A later delivery with the same
content is a duplicate; one with different content is a conflict and is quarantined, never
dropped silently — so even a 64-bit collision between two different ids cannot lose data.

Seen hashes live in sorted runs merged like a binary counter (a tiny log-structured merge
tree): a million-row chunk is checked with a few `searchsorted` calls and memory stays at
24 bytes per event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from customer_analytics.transforms.fields import text_buffers

CONTENT_COLUMNS = (
    "customer_id", "event_type", "event_timestamp", "session_id", "page_url", "product_id",
    "category_id", "price", "quantity", "device_type", "country", "referrer", "user_agent",
)


# 64-bit mixing (MurmurHash3's finalizer) and the constants that keep the parts of a hash apart.
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = 0x9E3779B97F4A7C15
_NULL = np.uint64(0x6A09E667F3BCC909)  # the hash of a missing value: not the hash of any text
_SEED = np.uint64(0xBB67AE8584CAA73B)
_MASK64 = 2**64 - 1
_BYTE_MASKS = np.array([0] + [(1 << (8 * k)) - 1 for k in range(1, 8)] + [_MASK64], dtype=np.uint64)


def _fmix(x: np.ndarray) -> np.ndarray:
    """Mix every bit of each uint64 into every other (in place; returns `x`)."""
    x ^= x >> np.uint64(33)
    x *= _M1
    x ^= x >> np.uint64(33)
    x *= _M2
    x ^= x >> np.uint64(33)
    return x


def string_hashes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash per value of an Arrow text or binary array, computed on its buffers (no Python object per value).

    Each value is read as little-endian 64-bit words (the last one masked to the value's bytes);
    word k is salted with k, mixed, and the words are summed with the length, then mixed again.
    Rows are visited word by word, only those still that long, so the work is one pass per
    word of the longest values and proportional to the bytes. Null hashes as `_NULL`.
    A chunked array's chunks are laid side by side first, so the word loop runs once for all.
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    chunks = [chunk for chunk in chunks if len(chunk)]
    count = sum(len(chunk) for chunk in chunks)
    if count == 0:
        return np.empty(0, np.uint64)
    parts = [text_buffers(chunk) for chunk in chunks]
    size = sum(int(offsets[-1]) for offsets, _ in parts)
    padded = np.zeros(size + 16, dtype=np.uint8)  # zero bytes past the end: the last word reads past its value
    starts = np.empty(count, dtype=np.int64)
    lengths = np.empty(count, dtype=np.int64)
    row = byte = 0
    for offsets, data in parts:
        rows = len(offsets) - 1
        starts[row:row + rows] = offsets[:-1] + byte
        np.subtract(offsets[1:], offsets[:-1], out=lengths[row:row + rows])
        if data is not None:
            padded[byte:byte + len(data)] = data
            byte += len(data)
        row += rows
    # The 64-bit word starting at every byte (unaligned reads).
    words = np.ndarray(shape=(size + 1,), dtype="<u8", buffer=padded, strides=(1,))
    hashes = lengths.astype(np.uint64) * _M2 + _SEED
    rows = None  # every row, while all are still this long: no gathers by row
    k = 0
    while rows is None or len(rows):
        left = (lengths if rows is None else lengths[rows]) - 8 * k
        word = words[(starts if rows is None else starts[rows]) + 8 * k]
        if (left < 8).any():
            word &= _BYTE_MASKS[np.clip(left, 0, 8)]
        word ^= np.uint64((k * _GOLDEN) & _MASK64)
        if rows is None:
            hashes += _fmix(word)
            longer = left > 8
            if not longer.all():
                rows = np.flatnonzero(longer)
        else:
            hashes[rows] += _fmix(word)
            rows = rows[left > 8]
        k += 1
    _fmix(hashes)
    if any(chunk.null_count for chunk in chunks):
        valid = np.concatenate([chunk.is_valid().to_numpy(zero_copy_only=False) for chunk in chunks])
        hashes[~valid] = _NULL
    return hashes


def _column_hashes(column: pd.Series) -> np.ndarray:
    """A 64-bit hash per value: numbers and timestamps by their bits, anything else by its text."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        values = column.to_numpy("datetime64[us]")
        missing = np.isnat(values)
        bits = values.view(np.int64).view(np.uint64)
    elif pd.api.types.is_float_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # + 0.0: -0.0 is 0.0
        missing = np.isnan(values)
        bits = values.view(np.uint64)
    elif pd.api.types.is_integer_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        missing = column.isna().to_numpy()
        bits = column.to_numpy(dtype=np.int64, na_value=0).view(np.uint64)
    else:
        text = pa.array(column, from_pandas=True)
        if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
            text = pc.cast(text, pa.string())
        return string_hashes(text)
    hashes = _fmix(bits ^ _SEED)
    hashes[missing] = _NULL
    return hashes


# Stored with each month's id hashes (`raw_events_loads`): hashes of another version are rebuilt, never compared.
ID_HASH_VERSION = 1


def id_hashes(ids: pd.Series) -> np.ndarray:
    return _column_hashes(ids)


def row_digests(ids: np.ndarray, contents: np.ndarray) -> np.ndarray:
    """One hash per event of its id and contents: their sum (mod 2**64) is a month's digest, whatever the row order."""
    return _fmix(ids * _M1 + contents)


def month_digest(digests: np.ndarray) -> str:
    """A month's digest as text: equal digests (and counts) mean, but for a 64-bit collision, the same rows."""
    return f"{int(digests.sum(dtype=np.uint64)) if len(digests) else 0:016x}"


def hashes_to_bytes(hashes: np.ndarray) -> bytes:
    return np.ascontiguousarray(hashes, dtype="<u8").tobytes()


def hashes_from_bytes(blob: bytes | None) -> np.ndarray:
    return np.frombuffer(blob or b"", dtype="<u8").astype(np.uint64, copy=False)  # a view on little-endian hosts


def present_in(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Which of `hashes` occur in the sorted array `sorted_hashes`."""
    if len(sorted_hashes) == 0 or len(hashes) == 0:
        return np.zeros(len(hashes), dtype=bool)
    found = np.searchsorted(sorted_hashes, hashes)
    found[found == len(sorted_hashes)] = 0
    return sorted_hashes[found] == hashes


def content_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One hash per row of the fields that make an event what it is: the columns' hashes, combined in order.

    Stored only inside a month's digest (`month_digest`): a change of this function marks every month
    changed once, nothing worse.
    """
    hashes = np.zeros(len(frame), dtype=np.uint64)
    for name in CONTENT_COLUMNS:
        if name in frame.columns:
            hashes = _fmix(hashes * _M1 + _column_hashes(frame[name]))
    return hashes


@dataclass
class _Run:
    ids: np.ndarray  # sorted
    contents: np.ndarray
    origins: np.ndarray  # int64: (file index << 32) | record number


class FirstDeliveries:
    """Hashes of the deliveries loaded so far, in landing order."""

    def __init__(self) -> None:
        self._runs: list[_Run] = []

    def __len__(self) -> int:
        return sum(len(run.ids) for run in self._runs)

    def classify(self, ids: np.ndarray, contents: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For a chunk in landing order: (status, first origin) per row, and remember the new firsts.

        status is 0 for a first delivery, 1 for a duplicate (same content), 2 for a conflict
        (same id, other content); first origin is the earlier delivery's origin, or -1.
        """
        count = len(ids)
        status = np.zeros(count, dtype=np.int8)
        first_origin = np.full(count, -1, dtype=np.int64)
        earlier_content = np.zeros(count, dtype=np.uint64)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        for run in self._runs:
            # Sorted keys: each search starts from the previous one's place, and memory is read in order.
            found = np.searchsorted(run.ids, sorted_ids)
            found[found == len(run.ids)] = 0
            pos = np.empty_like(found)
            pos[order] = found
            hit = (run.ids[pos] == ids) if len(run.ids) else np.zeros(count, dtype=bool)
            hit &= first_origin < 0
            first_origin[hit] = run.origins[pos[hit]]
            earlier_content[hit] = run.contents[pos[hit]]
        # Repeats inside the chunk refer to the chunk's own first delivery.
        repeat = np.zeros(count, dtype=bool)
        repeat[1:] = sorted_ids[1:] == sorted_ids[:-1]
        if repeat.any():
            group_start = np.maximum.accumulate(np.where(~repeat, np.arange(count), 0))
            first_in_chunk = order[group_start]
            repeated_rows = order[repeat]
            leaders = first_in_chunk[repeat]
            fresh = first_origin[repeated_rows] < 0
            first_origin[repeated_rows[fresh]] = origins[leaders[fresh]]
            earlier_content[repeated_rows[fresh]] = contents[leaders[fresh]]
        seen = first_origin >= 0
        status[seen] = np.where(earlier_content[seen] == contents[seen], 1, 2)
        new = ~seen
        self._add(_Run(ids[new], contents[new], origins[new]))
        return status, first_origin

    def _add(self, run: _Run) -> None:
        order = np.argsort(run.ids, kind="stable")
        run = _Run(run.ids[order], run.contents[order], run.origins[order])
        while self._runs and len(self._runs[-1].ids) <= len(run.ids):
            last = self._runs.pop()
            ids = np.concatenate([last.ids, run.ids])
            order = np.argsort(ids, kind="stable")
            run = _Run(ids[order], np.concatenate([last.contents, run.contents])[order],
                       np.concatenate([last.origins, run.origins])[order])
        if len(run.ids):
            self._runs.append(run)


def origin(file_index: int, record_numbers: np.ndarray) -> np.ndarray:
    return (np.int64(file_index) << np.int64(32)) | record_numbers.astype(np.int64)


def split_origin(value: int) -> tuple[int, int]:
    return int(value) >> 32, int(value) & 0xFFFFFFFF
