"""The landing folder: which files are there, and their records, read in bounded chunks.

Layout: `events/`, `transactions/` and `profiles/` (searched recursively), each holding
`.ndjson`, `.jsonl`, `.csv` or `.parquet` files, optionally gzipped (`.gz`). Files and
folders whose name starts with a dot are in-flight uploads by convention and are ignored.
Directory symlinks are followed, each folder once. Field names (CSV headers, NDJSON keys)
match the contract without regard to case.

Record numbers, used in `raw_events.source_record` and `rejected_events.record_number`, are
the 1-based line number where the record starts for NDJSON and CSV (so `sed -n Np` shows
it; a CSV header is line 1), and the 1-based row number for Parquet.

NDJSON is parsed by pyarrow, a block at a time; a block pyarrow refuses (a malformed line,
a field whose JSON type changes) is parsed again line by line with the standard library, so
one bad line costs only its block's speed. CSV is read with the standard library, which
reports exact line numbers and keeps every value as text, as the contract says it arrives.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from customer_analytics.transforms.fields import JsonNonFinite

SOURCES = ("events", "transactions", "profiles")
FORMATS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv", ".parquet": "parquet"}

# Fields that are text in the contract: pinned as strings so pyarrow never guesses a type for
# them (it would turn "2023-06-15T14:30:45+02:00" into a timestamp on its own terms).
TEXT_FIELDS = {
    "events": (
        "event_id", "customer_id", "event_type", "event_timestamp", "session_id", "page_url",
        "product_id", "category_id", "device_type", "country", "referrer", "user_agent",
    ),
    "transactions": ("customer_id", "transaction_date"),
    "profiles": (
        "customer_id", "email", "first_name", "last_name", "gender", "city", "country",
        "signup_date", "last_login", "location", "customer_segment",
    ),
}
NUMBER_FIELDS = {
    "events": ("price", "quantity"),
    "transactions": ("transaction_amount",),
    "profiles": ("age", "lifetime_value"),
}

# Below glibc's 32 MiB ceiling for heap allocations (with the carry of a line): a larger block is
# mapped fresh each time and faults in page by page (measured: 0.5 s of system time per 2,000,000 events).
CHUNK_BYTES = 28 * 1024 * 1024
# pyarrow parses a chunk's NDJSON in blocks of this size (types are unified across blocks).
PARSE_BLOCK_BYTES = 4 * 1024 * 1024
CHUNK_ROWS = 250_000
MAX_RECORD_BYTES = 8 * 1024 * 1024
RAW_TEXT_LIMIT = 10_000  # characters of a rejected record kept in the quarantine


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))  # the CPUs this process may run on (e.g. a container's set)
    return os.cpu_count() or 1


# pyarrow parses on its own threads only where cores are spare. With two or fewer, the read-ahead
# thread's parse already runs beside the loading thread and PostgreSQL, and pyarrow's threads only
# add their cost: on two CPUs, 10,000,000 events loaded in 40.0-40.9 s without them, 41.4-44.2 s with.
PARSE_THREADS = _usable_cpus() > 2


class UnreadableFile(Exception):
    """The file as a whole cannot be read; the message says why in words."""


class FileChangedWhileRead(UnreadableFile):
    """The file disappeared or changed while it was read: a passing state (an upload, a rewrite), not a broken file."""


@dataclass(frozen=True)
class LandingFile:
    path: Path
    name: str  # relative to the landing folder, with forward slashes
    source: str  # events, transactions or profiles
    size: int
    modified_ns: int
    problem: str | None = None  # why it cannot be opened at all (a dangling symlink): read as an unreadable file

    @property
    def compressed(self) -> bool:
        return self.path.suffix.lower() == ".gz"

    @property
    def format(self) -> str | None:
        suffixes = [s.lower() for s in self.path.suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        return FORMATS.get(suffixes[-1]) if suffixes else None


@dataclass
class RecordError:
    record_number: int
    raw_record: str
    reason: str


@dataclass
class RecordChunk:
    """Records of one file, in file order: parsed fields, their record numbers and raw text."""

    fields: pd.DataFrame
    record_numbers: np.ndarray
    raw_text: Callable[[np.ndarray], list[str]]
    errors: list[RecordError] = field(default_factory=list)
    records: int = 0  # records read, including `errors`


def clip_raw(text: str) -> str:
    return text if len(text) <= RAW_TEXT_LIMIT else text[:RAW_TEXT_LIMIT] + f"… [{len(text)} characters in all]"


def list_files(landing_dir: str | Path, source: str) -> list[LandingFile]:
    """Files under `landing_dir/source`, in a stable order (their relative paths).

    Directory symlinks are followed (`events/2025 -> /archive/2025` is read as `events/2025/...`),
    each directory once: a link back up (`events/a/loop -> ..`) or a second link to the same
    folder is not walked again. What cannot be listed or opened — a dangling symlink, a folder
    that cannot be read — is listed with its `problem`, so the load quarantines it instead of
    losing it without a word.
    """
    root = Path(landing_dir)
    folder = root / source
    if not folder.is_dir():
        return []
    found: list[LandingFile] = []
    visited: set[tuple[int, int]] = set()

    def unlistable(error: OSError) -> None:
        path = Path(error.filename) if error.filename else folder
        found.append(_problem_file(root, path, source, f"the folder could not be listed: {error.strerror or error}"))

    for directory, subdirs, names in os.walk(folder, onerror=unlistable, followlinks=True):
        try:
            directory_stat = os.stat(directory)
        except OSError as error:
            unlistable(error)
            subdirs[:] = []
            continue
        if (directory_stat.st_dev, directory_stat.st_ino) in visited:
            subdirs[:] = []  # reached again through a link: its files are already listed
            continue
        visited.add((directory_stat.st_dev, directory_stat.st_ino))
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))  # dot folders: uploads in flight
        for name in names:
            if name.startswith("."):
                continue
            path = Path(directory) / name
            try:
                stat = path.stat()
            except OSError as error:
                problem = ("a symbolic link to nothing (its target " + repr(os.readlink(path)) + " does not exist)"
                           if path.is_symlink() and isinstance(error, FileNotFoundError) else
                           f"the file could not be opened: {error.strerror or error}")
                found.append(_problem_file(root, path, source, problem))
                continue
            if not S_ISREG(stat.st_mode):
                continue  # a pipe or socket holds no delivered file
            found.append(LandingFile(path, _readable_name(path.relative_to(root).as_posix()), source,
                                     stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda f: f.name)


def _problem_file(root: Path, path: Path, source: str, problem: str) -> LandingFile:
    return LandingFile(path, _readable_name(path.relative_to(root).as_posix()), source, 0, 0, problem=problem)


def _readable_name(name: str) -> str:
    """A file name that is not UTF-8 (a Latin-1 upload) with its odd bytes as \\x.. escapes: text every table can hold."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


T = TypeVar("T")


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, produced one ahead on a thread of their own: reading and parsing the next chunk
    overlaps the caller's work on this one (pyarrow and file reads release the GIL).

    The items come in the same order, and an exception raised by `items` is raised here at the
    same place in the sequence. Closing this generator waits for the item in progress, then
    closes `items` (and so the file) before it returns.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as worker:
        try:
            pending = worker.submit(next, items, _NO_MORE)
            while (item := pending.result()) is not _NO_MORE:
                pending = worker.submit(next, items, _NO_MORE)
                yield item
        finally:
            worker.shutdown(wait=True)  # the generator must not be running when it is closed
            close = getattr(items, "close", None)
            if close is not None:
                close()


_NO_MORE = object()


def read_records(file: LandingFile, *, chunk_bytes: int = CHUNK_BYTES, chunk_rows: int = CHUNK_ROWS) -> Iterator[RecordChunk]:
    """Yield the file's records chunk by chunk; raise `UnreadableFile` if the file fails as a whole.

    A file that changes size or disappears while it is read raises `FileChangedWhileRead` (an
    `UnreadableFile`): its records would be a mix of two versions.
    """
    if file.problem is not None:
        raise UnreadableFile(file.problem)
    if file.format is None:
        raise UnreadableFile(
            f"unsupported file type {''.join(file.path.suffixes) or '(none)'!r}: use .ndjson, .jsonl, .csv or "
            ".parquet, optionally gzipped (.gz)"
        )
    try:
        if file.format == "parquet":
            yield from _read_parquet(file, chunk_rows)
        else:
            with _open_binary(file) as stream:
                if file.format == "ndjson":
                    yield from _read_ndjson(stream, file.source, chunk_bytes)
                else:
                    yield from _read_csv(stream, file.source, chunk_rows)
    except UnreadableFile:
        _raise_if_changed(file)  # damage seen because the file was cut or rewritten under the reader
        raise
    except FileNotFoundError:
        raise FileChangedWhileRead("the file disappeared while it was being read") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        _raise_if_changed(file)
        raise UnreadableFile(f"not a readable gzip file ({error}); nothing from it was loaded") from None
    except OSError as error:
        _raise_if_changed(file)
        raise UnreadableFile(f"could not read the file: {error}") from None
    _raise_if_changed(file)


def _raise_if_changed(file: LandingFile) -> None:
    try:
        after = file.path.stat()
    except FileNotFoundError:
        raise FileChangedWhileRead("the file disappeared while it was being read") from None
    if after.st_size != file.size or after.st_mtime_ns != file.modified_ns:
        raise FileChangedWhileRead(
            f"the file changed while it was being read ({file.size} → {after.st_size} bytes); "
            "nothing from it was loaded, the next run reads it again"
        )


def _open_binary(file: LandingFile):
    raw = open(file.path, "rb")
    return gzip.GzipFile(fileobj=raw, mode="rb") if file.compressed else raw


# -- NDJSON ------------------------------------------------------------------------------
def _read_ndjson(stream, source: str, chunk_bytes: int) -> Iterator[RecordChunk]:
    carry = b""
    line_base = 0  # lines before the current block
    first = True
    cr_lines = False
    oversized = False
    while True:
        # The read lands right after the carry in the block's own buffer: no copy of either.
        buffer = bytearray(len(carry) + chunk_bytes)
        buffer[: len(carry)] = carry
        read = stream.readinto(memoryview(buffer)[len(carry):])
        at_end = not read
        del buffer[len(carry) + read:]
        if first and buffer.startswith(b"\xef\xbb\xbf"):
            del buffer[:3]  # a UTF-8 byte-order mark is not part of the first record
        if first:
            # Carriage returns and no line feed: lines end with CR alone (an old Mac export). Read as
            # line feeds, each CR line is a record, numbered as an editor shows it; a CR cannot be
            # part of a record (JSON text holds no raw control character).
            cr_lines = b"\r" in buffer and b"\n" not in buffer
        first = False
        if cr_lines and read:
            buffer[len(carry):] = buffer[len(carry):].translate(_CR_TO_LF)
        if at_end:
            block, carry = carry, b""
        else:
            cut = buffer.rfind(b"\n", len(carry))  # the carry is the tail of a line: it holds none
            if cut == -1:
                if len(buffer) > MAX_RECORD_BYTES:
                    # One enormous line: keep its start for the quarantine, skip to its end.
                    carry = bytes(buffer[:RAW_TEXT_LIMIT])
                    oversized = True
                else:
                    carry = bytes(buffer)
                continue
            carry = bytes(buffer[cut + 1:])
            del buffer[cut + 1:]
            block = buffer
        if oversized:
            head_end = block.find(b"\n")
            if head_end == -1:
                head_end = len(block)
            yield _oversized_record(block[:head_end], line_base + 1)
            block = block[head_end + 1 :]
            line_base += 1
            oversized = False
        if block:
            chunk, lines = _parse_ndjson_block(block, line_base, source)
            yield chunk
            line_base += lines
        if at_end:
            return


_CR_TO_LF = bytes.maketrans(b"\r", b"\n")
_OVERSIZED = f"record longer than {MAX_RECORD_BYTES // (1024 * 1024)} MB: not parsed"


def _oversized_record(head: bytes, line_number: int) -> RecordChunk:
    error = RecordError(line_number, head[:RAW_TEXT_LIMIT].decode("utf-8", "backslashreplace") + "…", _OVERSIZED)
    return RecordChunk(pd.DataFrame(), np.empty(0, np.int64), lambda idx: [], [error], records=1)


def _line_spans(block: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end offsets of each line in `block`, and which lines hold more than whitespace."""
    data = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(data == 10)
    ends = newlines if block.endswith(b"\n") else np.append(newlines, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.empty(0, np.int64)
    nonblank = ends > starts
    # Only a line that starts with whitespace can be blank: check those few one by one.
    first = data[np.minimum(starts, max(len(data) - 1, 0))] if len(data) else np.empty(0, np.uint8)
    suspects = np.flatnonzero(nonblank & ((first == 32) | (first == 9) | (first == 13)))
    for line in suspects:
        nonblank[line] = bool(block[starts[line] : ends[line]].strip())
    return starts, ends, nonblank


def _all_objects(block: bytes, starts: np.ndarray, ends: np.ndarray) -> bool:
    """Whether every line starts with `{` (after whitespace): pyarrow crashes on a bare `null` line."""
    if not len(starts):
        return True
    data = np.frombuffer(block, dtype=np.uint8)
    if (data[starts] == ord("{")).all():
        return True
    return all(block[a:b].lstrip()[:1] == b"{" for a, b in zip(starts, ends))


def _parse_ndjson_block(block: bytes, line_base: int, source: str) -> tuple[RecordChunk, int]:
    """The block's records, and its number of lines (blank ones included)."""
    starts, ends, nonblank = _line_spans(block)
    line_count = len(ends)
    lines = np.flatnonzero(nonblank)
    starts, ends = starts[lines], ends[lines]
    record_numbers = line_base + lines.astype(np.int64) + 1

    def raw_text(rows: np.ndarray) -> list[str]:
        return [clip_raw(block[starts[i] : ends[i]].decode("utf-8", "backslashreplace").rstrip("\r")) for i in rows]

    fields = None
    longest = int((ends - starts).max(initial=0))
    # A line over the record limit is refused wherever it falls, not only when it spans a whole read.
    if longest <= MAX_RECORD_BYTES and _all_objects(block, starts, ends) and _is_utf8(block):
        variants = _key_variants(block[starts[0]:ends[0]], source) if len(starts) else {}
        fields = _ndjson_fast(block, source, len(lines), longest=longest, variants=variants)
    if fields is not None:
        return RecordChunk(fields, record_numbers, raw_text, records=len(lines)), line_count
    return _ndjson_slow(block, starts, ends, record_numbers, source, raw_text), line_count


def _is_utf8(block: bytes) -> bool:
    if block.isascii():  # the usual case, checked eight bytes at a time without decoding
        return True
    try:
        block.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# The types numbers usually arrive in. Pinning them spares pyarrow inferring them (a fifth of the
# parse); a block that delivers one otherwise (as text, a fraction in a whole-number field) is
# parsed again with its numbers' types inferred.
USUAL_NUMBER_TYPES = {"price": pa.float64(), "quantity": pa.int64(), "transaction_amount": pa.float64(), "age": pa.int64(),
                      "lifetime_value": pa.float64()}


def _read_json(block: bytes, schema: pa.Schema, unexpected_fields: str, longest: int) -> pa.Table | None:
    try:
        return pajson.read_json(
            pa.BufferReader(pa.py_buffer(block)),  # the block itself, not a copy (as through io.BytesIO)
            # A block must hold the longest line whole.
            read_options=pajson.ReadOptions(block_size=max(PARSE_BLOCK_BYTES, longest + 2), use_threads=PARSE_THREADS),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected_fields),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError, OverflowError):
        return None


def contract_name(name: str, source: str) -> str | None:
    """The contract field a delivered key or header names, matched without regard to case or padding."""
    folded = name.strip().casefold()
    return folded if folded in TEXT_FIELDS[source] or folded in NUMBER_FIELDS[source] else None


def _key_variants(line: bytes, source: str) -> dict[str, str]:
    """{delivered key: contract field} for the keys of `line` that name a field in another case (`Event_ID`).

    Only a block's first record is looked at (one exporter writes its keys one way), so the fast
    path reads those keys too; a record of the block that spells a key otherwise still lacks the
    field (a required one is then quarantined as missing, with a reason).
    """
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    if not isinstance(record, dict):
        return {}
    return {key: name for key in record if (name := contract_name(key, source)) is not None and name != key}


def _ndjson_fast(block: bytes, source: str, expected_rows: int, *, longest: int,
                 variants: dict[str, str] | None = None) -> pd.DataFrame | None:
    variants = variants or {}
    text = [(name, pa.string()) for name in TEXT_FIELDS[source]]
    text += [(key, pa.string()) for key, name in variants.items() if name in TEXT_FIELDS[source]]
    usual = [(name, USUAL_NUMBER_TYPES[name]) for name in NUMBER_FIELDS[source]]
    usual += [(key, USUAL_NUMBER_TYPES[name]) for key, name in variants.items() if name in NUMBER_FIELDS[source]]
    table = _read_json(block, pa.schema(text + usual), "ignore", longest)  # fields outside the contract are not read
    if table is None:
        table = _read_json(block, pa.schema(text), "infer", longest)
    if table is None:
        return None
    if table.num_rows != expected_rows:
        return None  # e.g. two objects on one line: only the exact reader can number them
    columns = {}
    for name in TEXT_FIELDS[source]:
        columns[name] = _either_spelling(table, name, variants)  # pinned as text: always there, never in conflict
    for name in NUMBER_FIELDS[source]:
        if not _spellings(table, name, variants):
            columns[name] = pa.nulls(table.num_rows, pa.float64())
            continue
        column = _either_spelling(table, name, variants)
        if column is None:
            return None  # spelled two ways with two types: the exact reader takes each record as it is
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                or pa.types.is_string(column.type) or pa.types.is_null(column.type)):
            return None  # booleans, objects, arrays: the exact reader explains them per record
        if pa.types.is_floating(column.type) and pc.any(pc.invert(pc.is_finite(column.fill_null(0.0)))).as_py():
            return None  # NaN / Infinity literals: pandas would take them for absent values
        columns[name] = column
    frame = pa.table(columns).to_pandas()
    return frame


def _spellings(table: pa.Table, name: str, variants: dict[str, str]) -> list[str]:
    return [key for key in (name, *(k for k, n in variants.items() if n == name)) if key in table.column_names]


def _either_spelling(table: pa.Table, name: str, variants: dict[str, str]) -> pa.ChunkedArray | None:
    """The column `name`, its values under another spelling filling its gaps (the exact spelling wins);
    None when the spellings came with different types, which cannot be merged as they are."""
    parts = [table.column(key) for key in _spellings(table, name, variants)]
    if len(parts) == 1:
        return parts[0]
    types = {part.type for part in parts if not pa.types.is_null(part.type)}
    if len(types) > 1:
        return None
    kind = types.pop() if types else parts[0].type
    return pc.coalesce(*(part.cast(kind) for part in parts))


def _ndjson_slow(block, starts, ends, record_numbers, source, raw_text) -> RecordChunk:
    records: list[dict] = []
    kept: list[int] = []
    errors: list[RecordError] = []
    for index in range(len(starts)):
        line = block[starts[index] : ends[index]]
        if len(line) > MAX_RECORD_BYTES:
            errors.append(RecordError(int(record_numbers[index]), raw_text([index])[0], _OVERSIZED))
            continue
        try:
            text_line = line.decode("utf-8")
        except UnicodeDecodeError as error:
            errors.append(RecordError(int(record_numbers[index]), raw_text([index])[0],
                                      f"not valid UTF-8 text (byte {error.start + 1} of the line)"))
            continue
        try:
            value = json.loads(text_line)
        except (json.JSONDecodeError, RecursionError) as error:
            reason = f"malformed JSON: {error.msg} at character {error.pos + 1}" if isinstance(error, json.JSONDecodeError) else "malformed JSON: nested too deeply"
            errors.append(RecordError(int(record_numbers[index]), raw_text([index])[0], reason))
            continue
        if not isinstance(value, dict):
            errors.append(RecordError(int(record_numbers[index]), raw_text([index])[0],
                                      f"the line is a JSON {_json_kind(value)}, not an object with fields"))
            continue
        broken = _unpaired_surrogates(value, line, source)
        if broken:
            errors.append(RecordError(int(record_numbers[index]), raw_text([index])[0],
                                      f"not valid Unicode text: {', '.join(broken)} holds an unpaired surrogate escape (\\ud800–\\udfff)"))
            continue
        records.append(_contract_keys(value, source))
        kept.append(index)
    wanted = TEXT_FIELDS[source] + NUMBER_FIELDS[source]
    # Object columns built directly keep an absent value as None, apart from a JSON NaN literal.
    fields = pd.DataFrame(
        {name: pd.Series([_delivered(record.get(name)) for record in records], dtype=object) for name in wanted}
    )
    kept_array = np.asarray(kept, dtype=np.int64)

    def kept_raw(rows: np.ndarray) -> list[str]:
        return raw_text(kept_array[rows])

    return RecordChunk(fields, record_numbers[kept_array], kept_raw, errors, records=len(starts))


def _contract_keys(record: dict, source: str) -> dict:
    """`record` with a key that names a contract field in another case (`Event_ID`) also under the
    field's own name, unless the record has that name too (the exact spelling wins)."""
    extra = {}
    for key, value in record.items():
        name = contract_name(key, source) if isinstance(key, str) else None
        if name is not None and name != key and name not in record and name not in extra:
            extra[name] = value
    return {**record, **extra} if extra else record


def _unpaired_surrogates(value: dict, line: bytes, source: str) -> list[str]:
    """Fields whose text holds a lone UTF-16 surrogate (a JSON escape such as \\ud800): no UTF-8 text can hold it."""
    if b"\\ud" not in line.lower():
        return []
    return [name for name in TEXT_FIELDS[source] + NUMBER_FIELDS[source]
            if isinstance(value.get(name), str) and _has_surrogates(value[name])]


def _delivered(value):
    if isinstance(value, float) and not math.isfinite(value):
        return JsonNonFinite("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
    return value


def _json_kind(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


# -- CSV ---------------------------------------------------------------------------------
class _LineTap:
    """Iterates a text stream's lines for `csv.reader`, keeping those of the record being read."""

    def __init__(self, stream):
        self.stream = stream
        self.lines: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.stream)
        self.lines.append(line)
        return line

    def take(self) -> str:
        text = "".join(self.lines)
        self.lines = []
        return text.rstrip("\r\n")


def _read_csv(stream, source: str, chunk_rows: int) -> Iterator[RecordChunk]:
    csv.field_size_limit(MAX_RECORD_BYTES)
    text_stream = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    tap = _LineTap(text_stream)
    # strict: a stray or unclosed quote is an error, not a field swallowing the lines after it.
    reader = csv.reader(tap, strict=True)
    header = None
    while header is None:
        try:
            row = next(reader)
        except StopIteration:
            return  # empty, or blank lines only: no records
        except csv.Error as error:
            raise UnreadableFile(f"the CSV header cannot be read: {error}") from None
        tap.take()
        if row and any(value.strip() for value in row):
            header = [name.strip() for name in row]
            if any(_has_surrogates(name) or "\x00" in name for name in header):
                raise UnreadableFile("the CSV header is not UTF-8 text (a UTF-16 or Latin-1 export?): "
                                     "its columns cannot be recognised; nothing from the file was loaded")
            header = _contract_header(header, source)
    rows: list[list[str]] = []
    numbers: list[int] = []
    raws: list[str] = []
    errors: list[RecordError] = []
    records = 0
    line = reader.line_num
    while True:
        start_line = line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            line = reader.line_num
            records += 1
            errors.append(RecordError(start_line, clip_raw(_decoded(tap.take())), f"malformed CSV: {error} (an unclosed or stray quote?)"))
            continue
        line = reader.line_num
        raw = clip_raw(tap.take())
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        records += 1
        if any(_has_surrogates(value) for value in row):
            errors.append(RecordError(start_line, _decoded(raw), "not valid UTF-8 text"))
        elif len(row) != len(header):
            errors.append(RecordError(start_line, raw, f"CSV row has {len(row)} fields, the header has {len(header)}"))
        else:
            rows.append(row)
            numbers.append(start_line)
            raws.append(raw)
        if records >= chunk_rows:
            yield _csv_chunk(header, rows, numbers, raws, errors, records)
            rows, numbers, raws, errors, records = [], [], [], [], 0
    if records or errors:
        yield _csv_chunk(header, rows, numbers, raws, errors, records)


def _contract_header(header: list[str], source: str) -> list[str]:
    """Header names with those naming a contract field in another case (`Event_ID`) as the field's name.

    A field named twice leaves it unknown which column holds it, so the file is refused whole rather
    than read from either. Other repeated names (two blank headers after trailing commas) are not
    read, so they do no harm.
    """
    names = [contract_name(name, source) or name for name in header]
    for name in dict.fromkeys(names):
        spellings = [header[i] for i, n in enumerate(names) if n == name]
        if len(spellings) > 1 and contract_name(name, source) is not None:
            raise UnreadableFile(
                f"the CSV header names the column {name!r} {len(spellings)} times ({', '.join(map(repr, spellings))}): "
                "which one holds it is unknown; nothing from the file was loaded")
    return names


def _decoded(text: str) -> str:
    """Text read with surrogateescape, with undecodable bytes shown as \\x.. escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _csv_chunk(header, rows, numbers, raws, errors, records) -> RecordChunk:
    fields = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    fields = fields.loc[:, ~fields.columns.duplicated()]
    raw_array = np.asarray(raws, dtype=object)

    def raw_text(rows_idx: np.ndarray) -> list[str]:
        return list(raw_array[rows_idx])

    return RecordChunk(fields, np.asarray(numbers, dtype=np.int64), raw_text, errors, records=records)


# -- Parquet -----------------------------------------------------------------------------
def _read_parquet(file: LandingFile, chunk_rows: int) -> Iterator[RecordChunk]:
    try:
        if file.compressed:
            with gzip.open(file.path, "rb") as stream:
                source = pa.BufferReader(stream.read())
        else:
            # Read, not memory-mapped: a mapped file cut short by another process kills this one (SIGBUS).
            source = pa.OSFile(str(file.path), "r")
        parquet = pq.ParquetFile(source)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise UnreadableFile(f"not a readable Parquet file: {error}") from None
    offset = 0
    try:
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            frame = _parquet_frame(batch, file.source)
            numbers = np.arange(offset + 1, offset + batch.num_rows + 1, dtype=np.int64)
            offset += batch.num_rows

            def raw_text(rows: np.ndarray, frame=frame) -> list[str]:
                return [clip_raw(_row_json(frame.iloc[int(i)].to_dict())) for i in rows]

            yield RecordChunk(frame, numbers, raw_text, records=batch.num_rows)
    except (pa.ArrowInvalid, pa.ArrowIOError) as error:
        raise UnreadableFile(f"the Parquet file is damaged after row {offset}: {error}; nothing from it was loaded") from None
    finally:
        source.close()


def _parquet_frame(batch: pa.RecordBatch, source: str) -> pd.DataFrame:
    """Columns as the validators expect them: decimals as floats, dates as ISO text; nested types dropped.

    Integers never pass through float64, which holds whole numbers exactly only up to 2**53 (pandas
    turns a nullable int64 column into float64): an id column of integers becomes their exact
    decimal text in Arrow, and other integer columns become pandas' nullable integers.
    """
    columns = {}
    for name, column in zip(batch.schema.names, batch.columns):
        kind = column.type
        if pa.types.is_nested(kind):
            continue
        if pa.types.is_decimal(kind):
            column = column.cast(pa.float64())
        elif pa.types.is_date(kind) or (pa.types.is_integer(kind) and name in TEXT_FIELDS[source]):
            column = column.cast(pa.string())
        columns[name] = column
    if not columns:
        return pd.DataFrame(index=range(batch.num_rows))
    frame = pa.table(columns).to_pandas(types_mapper=_NULLABLE_INTEGERS.get)
    for name, column in columns.items():
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            # pandas would take a delivered NaN for an absent value (a null): keep them apart, as for NDJSON.
            nan = pc.fill_null(pc.is_nan(column), False).to_numpy(zero_copy_only=False)
            values = frame[name].astype(object).where(frame[name].notna(), None)
            values[nan] = JsonNonFinite("NaN")
            frame[name] = values
    return frame


_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(), pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
}


def _row_json(row: dict) -> str:
    """A Parquet row as JSON text for the quarantine, its nulls (None, NaN, pandas' NA) as `null`."""
    absent = {name: value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) for name, value in row.items()}
    return json.dumps({name: None if absent[name] else value for name, value in row.items()}, default=str, ensure_ascii=False)
