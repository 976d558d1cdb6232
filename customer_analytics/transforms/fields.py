"""Vectorized coercion of delivered field values, and the reasons a record is refused.

Values arrive as text (CSV), as JSON scalars of any type (NDJSON), or typed (Parquet). Each
coercer returns the typed column and masks saying which values were absent and which were
present but unusable, so validation can word a reason per record without a Python loop
over the good ones.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


class JsonNonFinite:
    """A JSON `NaN` / `Infinity` literal: delivered, but neither a number nor text (unlike an absent value)."""

    def __init__(self, token: str):
        self.token = token

    def __repr__(self) -> str:
        return self.token


class Reasons:
    """Per-record refusal reasons; several problems in one record are joined with '; '."""

    def __init__(self, index: pd.Index):
        self.values = pd.Series(None, index=index, dtype=object)

    def add(self, mask: pd.Series | np.ndarray, message) -> None:
        """Record `message` for the rows in `mask`: a string, a Series, or a function of the rows' index.

        A function is called only when some row is flagged, so good chunks never format values.
        """
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        rows = self.values.index[mask]
        if callable(message):
            message = message(rows)
        text = pd.Series(message, index=rows) if isinstance(message, str) else pd.Series(message, index=rows).astype(str)
        current = self.values.loc[rows]
        self.values.loc[rows] = np.where(current.isna(), text, current.astype(str) + "; " + text)

    @property
    def rejected(self) -> pd.Series:
        return self.values.notna()


def field_values(fields: pd.DataFrame, name: str) -> pd.Series:
    """The delivered values of `name`, all absent when no record carried the field."""
    if name in fields.columns:
        return fields[name]
    return pd.Series(None, index=fields.index, dtype=object)


def shown(values: pd.Series):
    """A function of rows giving their values as a person would recognise them: quoted, shortened."""

    def render(rows: pd.Index) -> pd.Series:
        return values.loc[rows].map(lambda v: repr(v if not isinstance(v, str) or len(v) <= 60 else v[:57] + "..."))

    return _Message([render])


class _Message:
    """Text pieces and `shown` values, concatenated with +, formatted only for flagged rows."""

    def __init__(self, parts: list):
        self.parts = parts

    def __add__(self, other):
        return _Message(self.parts + (other.parts if isinstance(other, _Message) else [other]))

    def __radd__(self, other):
        return _Message([other] + self.parts)

    def __call__(self, rows: pd.Index) -> pd.Series:
        out = pd.Series("", index=rows, dtype=object)
        for part in self.parts:
            out = out + (part(rows).astype(str) if callable(part) else part)
        return out


# Zero-width characters an editor or a web form leaves at the ends of a pasted id: invisible, so an id
# carrying one would stay apart from the same id without it. They are trimmed like whitespace.
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
# What is trimmed from the ends of text: Python's whitespace (as `str.strip`: a no-break space too) and those.
TRIMMED = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + ZERO_WIDTH


def _is_text_or_number(value) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, numbers.Number) and not isinstance(value, bool))


def text_column(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(trimmed text with missing/blank as NA, mask of values that are not text or a number)."""
    if values.dtype == object:
        wrong_type = ~values.map(_is_text_or_number).astype(bool)
        cleaned = values.where(~wrong_type, None).map(_as_text, na_action="ignore")
        text = cleaned.astype("string")
    else:
        wrong_type = pd.Series(False, index=values.index)
        if pd.api.types.is_float_dtype(values):
            text = values.map(_as_text, na_action="ignore").astype("string")
        else:
            text = values.astype("string")
    if isinstance(text.array, pd.arrays.ArrowStringArray):  # pandas' "string" with pyarrow: trimmed in Arrow
        return pd.Series(pd.arrays.ArrowStringArray(_trimmed(text.array.__arrow_array__())), index=text.index), wrong_type
    text = text.str.strip(TRIMMED)
    text = text.mask(text == "")
    return text, wrong_type


def text_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """(int64 offsets of the values in the bytes, from 0; the bytes from the first value's start to the
    last's end, read in place, or None when there are none) of an Arrow text or binary array.

    A sliced array's offsets start where its first value does; they are shifted to index the bytes
    returned. Other types are cast to binary first.
    """
    if not (pa.types.is_string(values.type) or pa.types.is_binary(values.type)
            or pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)):
        values = values.cast(pa.large_binary())
    offset_type = np.int64 if pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type) else np.int32
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type, count=len(values) + 1,
                            offset=values.offset * np.dtype(offset_type).itemsize)
    first = int(offsets[0])
    offsets = offsets.astype(np.int64) - first  # a new array: the buffer is read-only
    size = int(offsets[-1])
    data = np.frombuffer(data_buffer, dtype=np.uint8, count=size, offset=first) if size else None
    return offsets, data


def _may_be_space(edge_bytes: np.ndarray) -> bool:
    """Whether any of these first or last bytes of values could belong to whitespace.

    Those are ASCII controls and space (up to 0x20), DEL, and every byte of a multi-byte UTF-8
    character (from 0x7F; e.g. a no-break space); other bytes never are. A minimum and a maximum
    are far cheaper than a lookup per byte.
    """
    return bool(len(edge_bytes)) and (int(edge_bytes.min()) <= 0x20 or int(edge_bytes.max()) >= 0x7F)


def _trimmed(strings: pa.ChunkedArray) -> pa.ChunkedArray:
    """`strings` with surrounding whitespace and zero-width characters trimmed (`TRIMMED`) and blank values null.

    Looking at each value's first and last byte is far cheaper than trimming: a clean column (the
    usual case) is not rewritten.
    """
    chunks = []
    for chunk in strings.chunks:
        if not pa.types.is_large_string(chunk.type):
            chunk = chunk.cast(pa.large_string())
        if len(chunk) == 0:
            chunks.append(chunk)
            continue
        offsets, text = text_buffers(chunk)
        if text is not None:
            starts, ends = offsets[:-1], offsets[1:]
            # An empty value's "first byte" is its neighbour's (or clipped): at worst a needless trim, never a missed one.
            if _may_be_space(np.take(text, starts, mode="clip")) or _may_be_space(np.take(text, ends - 1, mode="clip")):
                chunk = pc.utf8_trim(chunk, characters=TRIMMED)
                offsets, _ = text_buffers(chunk)
        blank = offsets[1:] == offsets[:-1]
        if chunk.null_count:
            blank &= chunk.is_valid().to_numpy(zero_copy_only=False)
        if blank.any():
            chunk = pc.if_else(pa.array(blank), pa.scalar(None, chunk.type), chunk)
        chunks.append(chunk)
    return pa.chunked_array(chunks, type=pa.large_string())


def _as_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an id delivered as 123.0 means "123"
    return str(value)


def number_column(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(float64 values, mask present, mask present but not a finite number)."""
    if pd.api.types.is_bool_dtype(values):
        present = pd.Series(True, index=values.index)
        return pd.Series(np.nan, index=values.index), present, present.copy()
    if pd.api.types.is_numeric_dtype(values):
        numbers_ = values.astype("float64")
        present = numbers_.notna()
        return numbers_, present, present & ~np.isfinite(numbers_.fillna(0.0))
    if values.dtype == object:
        wrong_type = values.map(lambda v: isinstance(v, (bool, dict, list, JsonNonFinite))).astype(bool)
        values = values.where(~wrong_type, None)
        text = values.map(lambda v: v if isinstance(v, str) else (None if v is None else repr(v)), na_action="ignore")
        text = text.astype("string").str.strip()
    else:
        wrong_type = pd.Series(False, index=values.index)
        text = values.astype("string").str.strip()
    text = text.mask(text == "")
    present = text.notna() | wrong_type
    numbers_ = pd.to_numeric(text, errors="coerce").astype("float64")
    invalid = wrong_type | (text.notna() & ~np.isfinite(numbers_.fillna(np.inf)))
    return numbers_.where(~invalid), present, invalid


def timestamp_column(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(UTC timestamps, mask present, mask present but unparsable).

    `2023-06-15 14:30:45` (no zone) is UTC; ISO 8601 with `Z` or an offset is converted to UTC.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        present = stamps.notna()
        stamps, outside = _calendar_years(stamps.astype("datetime64[us, UTC]"))
        return stamps, present, outside
    text, wrong_type = text_column(values)
    stamps = _arrow_iso_stamps(text)
    if stamps is None:
        stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    present = text.notna() | wrong_type
    stamps, _outside = _calendar_years(stamps.astype("datetime64[us, UTC]"))
    invalid = present & stamps.isna()
    return stamps, present, invalid


def _arrow_iso_stamps(text: pd.Series) -> pd.Series | None:
    """UTC timestamps parsed by Arrow, when it parses every value of the column; None otherwise.

    Arrow's ISO 8601 cast is several times faster than pandas' and stricter: where it parses a
    value it agrees with pandas, and a column holding anything else (a value it refuses, or zoned
    and unzoned values together) is left to pandas whole, which words the reasons.
    """
    if not isinstance(text.array, pd.arrays.ArrowStringArray):
        return None
    strings = text.array.__arrow_array__()
    # Unzoned values are UTC; a zoned column (Z or an offset) is converted.
    for target in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:
            stamps = strings.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            continue
        instants = stamps.cast(pa.timestamp("us")).to_numpy()
        return pd.Series(instants, index=text.index, dtype="datetime64[us]").dt.tz_localize("UTC")
    return None


_FIRST_INSTANT = np.datetime64("0001-01-01T00:00:00", "us")
_LAST_INSTANT = np.datetime64("9999-12-31T23:59:59.999999", "us")


def _calendar_years(stamps: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Timestamps outside the years 1–9999 (e.g. year 0, which ISO 8601 parsing accepts) as NaT, and where they were.

    Neither Python's datetime nor the warehouse's date types hold them: formatting the month of
    year 0 raised, and PostgreSQL refuses it.
    """
    instants = stamps.to_numpy(dtype="datetime64[us]")
    outside = ~np.isnat(instants) & ((instants < _FIRST_INSTANT) | (instants > _LAST_INSTANT))
    if not outside.any():
        return stamps, pd.Series(False, index=stamps.index)
    return stamps.mask(outside), pd.Series(outside, index=stamps.index)


def holds_nul(text: pd.Series) -> pd.Series:
    """Mask of the values holding a NUL character (which PostgreSQL text cannot store).

    The column's bytes are scanned first, in place (a byte minimum in NumPy): a clean column, the
    usual case, costs next to nothing.
    """
    array = text.array
    if hasattr(array, "__arrow_array__"):
        arrow = pa.array(array)
        chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
        if all(pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type) for chunk in chunks) and all(
                data is None or data.min() > 0 for _, data in map(text_buffers, chunks)):
            return pd.Series(False, index=text.index)
    return text.str.contains("\x00", regex=False).fillna(False).astype(bool)


def longer_than(text: pd.Series, limit: int) -> np.ndarray:
    """Mask of the values with more than `limit` characters (missing values are not).

    A UTF-8 character is at least one byte, so only values of more than `limit` bytes (read from
    the offsets, without a pass over the text) have their characters counted.
    """
    array = text.array
    if isinstance(array, pd.arrays.ArrowStringArray):
        byte_lengths = pc.binary_length(array.__arrow_array__()).fill_null(0).to_numpy()
        candidates = np.flatnonzero(byte_lengths > limit)
        longer = np.zeros(len(text), dtype=bool)
        if len(candidates):
            longer[candidates] = (text.iloc[candidates].str.len() > limit).to_numpy(dtype=bool, na_value=False)
        return longer
    return (text.str.len() > limit).fillna(False).to_numpy(dtype=bool)


def month_of(stamps: pd.Series) -> pd.Series:
    """First day of each timestamp's UTC month (naive datetime64, midnight; NaT stays NaT)."""
    days = _utc_days(stamps)
    return pd.Series(days.astype("datetime64[M]").astype("datetime64[us]"), index=stamps.index)


def date_of(stamps: pd.Series) -> pd.Series:
    """UTC calendar date of each timestamp (naive datetime64, midnight; NaT stays NaT)."""
    return pd.Series(_utc_days(stamps).astype("datetime64[us]"), index=stamps.index)


def _utc_days(stamps: pd.Series) -> np.ndarray:
    # A zoned column's datetime64 values are its UTC instants.
    return stamps.to_numpy(dtype="datetime64[us]").astype("datetime64[D]")
