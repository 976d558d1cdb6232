"""The bad-input corpus as data: every case builds its landing file(s) and says what loading them must give.

A case holds valid records mixed with bad ones. For each valid record it states the
`raw_events` values it must be stored with (derived from the record by the README's rules,
not copied from a run); for each bad record the file, record number (line number for NDJSON
and CSV, a CSV header being line 1; row number for Parquet; 0 for a file that cannot be read
at all), a substring of the quarantine reason and, where it is knowable, the exact raw text;
and how many records are redeliveries (duplicates) or belong to another month. So for every
file: records read = loaded + quarantined + duplicates (+ records of other months).

Every case lives in its own folder (`events/<case>/`, `transactions/<case>/`) and its ids
start with the case name, so the whole corpus loads as one landing folder without two cases
touching each other. Everything is in January 2025, the month the campaign loads, unless a
case is about other months.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from customer_analytics_tests import landing_builder

MONTH = date(2025, 1, 1)  # the month the campaign loads
FIRST_MONTH, LAST_MONTH = date(2025, 1, 1), date(2025, 3, 1)  # the partitions it loads with

EVENT_FIELDS = ("event_id", "customer_id", "event_type", "event_timestamp", "session_id", "page_url", "product_id",
                "category_id", "price", "quantity", "device_type", "country", "referrer", "user_agent")
OPTIONAL_TEXT = ("session_id", "page_url", "product_id", "category_id", "device_type", "country", "referrer", "user_agent")
TXN_FIELDS = ("customer_id", "transaction_date", "transaction_amount")
RAW_LIMIT = 10_000  # characters of a quarantined record's raw text kept (README: the raw text, shortened)
MB = 1024 * 1024

# The classes the campaign must cover, and the landing formats each makes sense for (Parquet
# has no lines, text encoding or byte-order mark; NDJSON has no header).
REQUIRED_CLASSES: dict[str, set[str]] = {
    "malformed_lines": {"ndjson", "csv"},
    "wrong_types": {"ndjson", "csv", "parquet"},
    "missing_fields": {"ndjson", "csv", "parquet"},
    "impossible_dates": {"ndjson", "csv", "parquet"},
    "negative_amounts": {"ndjson", "csv", "parquet"},
    "absurd_values": {"ndjson", "csv", "parquet"},
    "huge_lines": {"ndjson", "csv"},
    "wrong_encodings": {"ndjson", "csv"},
    "empty_files": {"ndjson", "csv", "parquet"},
    "header_only_files": {"csv", "parquet"},
    "boms": {"ndjson", "csv"},
    "duplicate_ids_different_contents": {"ndjson", "csv", "parquet"},
}


# -- expectations ------------------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    """A valid record: the `raw_events` row it must become (columns not named are not checked)."""

    file: str  # as stored in source_file
    record: int
    values: dict


@dataclass(frozen=True)
class Quarantined:
    """A record (or, with record 0, a whole file) that must be in `rejected_events`."""

    file: str
    record: int
    reason: str  # a substring of the reason
    raw: str | None = None  # the exact raw_record, where it is knowable


@dataclass
class Case:
    name: str
    classes: tuple[str, ...]
    note: str
    files: dict[str, Callable[[], bytes]] = field(default_factory=dict)  # path in the landing folder -> contents
    formats: set[str] = field(default_factory=set)
    loaded: list[Loaded] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    duplicates: int = 0
    other_months: int = 0  # records of another in-range month: neither loaded nor rejected by this month's load
    huge: bool = False

    @property
    def stored_files(self) -> list[str]:
        return [stored_name(name) for name in self.files]

    @property
    def unreadable(self) -> dict[str, str]:
        return {q.file: q.reason for q in self.quarantined if q.record == 0}

    @property
    def rejected_records(self) -> int:
        return sum(1 for q in self.quarantined if q.record > 0)

    @property
    def records_read(self) -> int:
        """Records of this case's files that a January load counts as read (README: read = loaded + rejected + duplicates)."""
        return len(self.loaded) + self.rejected_records + self.duplicates

    def summary(self) -> dict:
        return {"case": self.name, "classes": list(self.classes), "formats": sorted(self.formats),
                "files": self.stored_files, "records_read": self.records_read, "loaded": len(self.loaded),
                "quarantined": self.rejected_records, "unreadable_files": len(self.unreadable),
                "duplicates": self.duplicates, "other_months": self.other_months, "note": self.note}


def stored_name(name: str) -> str:
    """A landing path as `source_file` holds it: bytes that are not UTF-8 shown as \\x.. escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_corpus(root: str | Path, cases: list[Case] | None = None) -> list[Case]:
    cases = CASES if cases is None else cases
    for case in cases:
        for name, build in case.files.items():
            path = Path(root) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(build())
    return cases


# -- what a valid record must be stored as (the README's rules) ---------------------------
# README: text is trimmed of whitespace (a no-break space too) and of zero-width characters at its ends.
_TRIMMED = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + "\u200b\u200c\u200d\u2060\ufeff"


def _text(value):
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip(_TRIMMED)
    return text or None


def _number(value):
    return None if value is None or (isinstance(value, str) and not value.strip()) else float(value)


def _utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def txn_content(record: dict) -> str:
    """README: a legacy transaction's content as stored: customer id, UTC instant and amount, joined by U+001F."""
    instant = _utc(record["transaction_date"]).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{_text(record['customer_id'])}\x1f{instant}\x1f{_number(record['transaction_amount'])!r}"


def txn_id(record: dict, occurrence: int) -> str:
    # README: txn-<SHA-1 of its content, 16 hex digits>-<k>, the k-th row of that content in its file.
    return f"txn-{hashlib.sha1(txn_content(record).encode('utf-8')).hexdigest()[:16]}-{occurrence}"


def expected_event(record: dict, file: str, number: int, **overrides) -> dict:
    event_type = _text(record.get("event_type"))
    purchase = event_type == "purchase"
    price = _number(record.get("price"))
    quantity = _number(record.get("quantity"))
    quantity = int(quantity) if quantity is not None else (1 if purchase else None)
    values = {
        "event_id": _text(record.get("event_id")), "customer_id": _text(record.get("customer_id")),
        "event_type": event_type, "event_timestamp": _utc(record["event_timestamp"]),
        "price": price, "quantity": quantity, "revenue": price * quantity if purchase else 0.0,
        "source": "events", "source_file": file, "source_record": number,
    }
    for name in OPTIONAL_TEXT:
        values[name] = _text(record.get(name))
    values.update(overrides)
    return values


def expected_transaction(record: dict, file: str, number: int, occurrence: int = 1, **overrides) -> dict:
    amount = _number(record["transaction_amount"])
    values = {
        "event_id": txn_id(record, occurrence), "customer_id": _text(record["customer_id"]), "event_type": "purchase",
        "event_timestamp": _utc(record["transaction_date"]), "price": amount, "quantity": 1, "revenue": amount,
        "source": "transactions", "source_file": file, "source_record": number,
    }
    values.update(overrides)
    return values


# -- file builders -----------------------------------------------------------------------
class _File:
    def __init__(self, case: Case, name: str, fmt: str, source: str):
        self.case, self.name, self.source = case, name, source
        self.stored = stored_name(name)
        self.copies: dict[str, int] = {}  # legacy contents so far in this file: their ids count them
        case.formats.add(fmt)
        case.files[name] = self.build

    def _copy_number(self, record: dict) -> int:
        """The k of a legacy row: how many rows of its content this file holds up to it."""
        content = txn_content(record)
        self.copies[content] = self.copies.get(content, 0) + 1
        return self.copies[content]

    def _expect_loaded(self, record: dict, number: int, overrides: dict) -> None:
        if self.source == "transactions":
            values = expected_transaction(record, self.stored, number, self._copy_number(record), **overrides)
        else:
            values = expected_event(record, self.stored, number, **overrides)
        self.case.loaded.append(Loaded(self.stored, number, values))

    def _expect_duplicate(self, record: dict) -> None:
        if self.source == "transactions":
            self._copy_number(record)  # a redelivered row still counts among its file's copies
        self.case.duplicates += 1

    def _expect_rejected(self, number: int, reason: str, raw: str | None) -> None:
        self.case.quarantined.append(Quarantined(self.stored, number, reason, raw))

    def build(self) -> bytes:
        raise NotImplementedError


def _raw_of(text: str) -> str | None:
    """The raw text the quarantine keeps for a line, when the test can know it exactly."""
    if "\x00" in text or len(text) > RAW_LIMIT:
        return None
    return text


class Ndjson(_File):
    """An NDJSON file, line by line; `.gz` names are gzipped."""

    def __init__(self, case: Case, name: str, *, source: str = "events", bom: bool = False, newline: bytes = b"\n",
                 final_newline: bool = True, encoding: str = "utf-8"):
        super().__init__(case, name, "ndjson", source)
        self.lines: list[bytes | Callable[[], bytes]] = []
        self.bom, self.newline, self.final_newline, self.encoding = bom, newline, final_newline, encoding

    def _add(self, line) -> int:
        if isinstance(line, dict):
            line = json.dumps(line, ensure_ascii=False)
        if isinstance(line, str):
            line = line.encode(self.encoding, "surrogatepass")
        self.lines.append(line)
        return len(self.lines)

    def good(self, record: dict, line: str | None = None, **overrides) -> Ndjson:
        number = self._add(line if line is not None else record)
        self._expect_loaded(record, number, overrides)
        return self

    def bad(self, line, reason: str, raw: str | None = "auto") -> Ndjson:
        number = self._add(line)
        if raw == "auto":
            raw = _raw_of(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) \
                if isinstance(line, (str, dict)) else None
        self._expect_rejected(number, reason, raw)
        return self

    def dup(self, record: dict, line: str | None = None) -> Ndjson:
        self._add(line if line is not None else record)
        self._expect_duplicate(record)
        return self

    def other_month(self, record: dict) -> Ndjson:
        self._add(record)
        self.case.other_months += 1
        return self

    def blank(self, text: str = "") -> Ndjson:
        self._add(text)
        return self

    def build(self) -> bytes:
        parts = [line() if callable(line) else line for line in self.lines]
        assert all(b"\n" not in part for part in parts), "one line per record: numbering depends on it"
        data = self.newline.join(parts) + (self.newline if self.final_newline and parts else b"")
        data = (b"\xef\xbb\xbf" if self.bom else b"") + data
        return gzip.compress(data, mtime=0) if self.name.endswith(".gz") else data


class Csv(_File):
    """A CSV file with a header (line 1), written by the csv module; rows may span lines."""

    def __init__(self, case: Case, name: str, header=EVENT_FIELDS, *, source: str = "events", bom: bool = False,
                 newline: str = "\n", encoding: str = "utf-8", header_line: str | None = None):
        super().__init__(case, name, "csv", source)
        self.header, self.newline, self.encoding, self.bom = list(header), newline, encoding, bom
        self.lines: list[bytes | Callable[[], bytes]] = [(header_line if header_line is not None
                                                          else self._row(self.header)).encode(encoding)]
        self.next_line = 2

    def line_of(self, record: dict) -> str:
        """A record as one row of this file (columns in the header's order)."""
        return self._row([record.get(name) for name in self.header])

    def _row(self, values: list) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator=self.newline).writerow(["" if v is None else v for v in values])
        return out.getvalue()[: -len(self.newline)]

    def _add(self, row, lines: int | None = None) -> tuple[int, str | None]:
        if isinstance(row, dict):
            row = [row.get(name) for name in self.header]
        text = self._row(row) if isinstance(row, list) else row
        number = self.next_line
        if callable(text):
            self.lines.append(text)
            self.next_line += lines or 1
            return number, None
        data = text if isinstance(text, bytes) else text.encode(self.encoding, "surrogateescape")
        self.lines.append(data)
        self.next_line += data.count(b"\n") + 1
        return number, text if isinstance(text, str) else None

    def good(self, record: dict, **overrides) -> Csv:
        number, _ = self._add(record)
        self._expect_loaded(record, number, overrides)
        return self

    def bad(self, row, reason: str, raw: str | None = "auto", lines: int | None = None) -> Csv:
        number, text = self._add(row, lines)
        self._expect_rejected(number, reason, _raw_of(text) if raw == "auto" and text is not None else
                              (None if raw == "auto" else raw))
        return self

    def dup(self, record: dict) -> Csv:
        self._add(record)
        self._expect_duplicate(record)
        return self

    def blank(self) -> Csv:
        self._add("")
        return self

    def build(self) -> bytes:
        parts = [line() if callable(line) else line for line in self.lines]
        end = self.newline.encode()
        data = end.join(parts) + end
        data = (b"\xef\xbb\xbf" if self.bom else b"") + data
        return gzip.compress(data, mtime=0) if self.name.endswith(".gz") else data


class Parquet(_File):
    """A Parquet file from rows (dicts) and an optional explicit schema; numbers are its row numbers."""

    def __init__(self, case: Case, name: str, schema: pa.Schema | None = None, *, source: str = "events"):
        super().__init__(case, name, "parquet", source)
        self.schema, self.rows = schema, []

    def good(self, record: dict, **overrides) -> Parquet:
        self.rows.append(record)
        self._expect_loaded(record, len(self.rows), overrides)
        return self

    def bad(self, record: dict, reason: str) -> Parquet:
        self.rows.append(record)
        self._expect_rejected(len(self.rows), reason, None)
        return self

    def dup(self, record: dict) -> Parquet:
        self.rows.append(record)
        self._expect_duplicate(record)
        return self

    def build(self) -> bytes:
        table = pa.Table.from_pylist(self.rows, schema=self.schema) if self.rows else self.schema.empty_table()
        out = io.BytesIO()
        pq.write_table(table, out)
        return gzip.compress(out.getvalue(), mtime=0) if self.name.endswith(".gz") else out.getvalue()


def raw_file(case: Case, name: str, data: bytes | Callable[[], bytes], fmt: str, unreadable: str | None = None) -> None:
    """A file given byte for byte; `unreadable`: the reason substring when it must fail as a whole (record 0)."""
    case.formats.add(fmt)
    case.files[name] = data if callable(data) else (lambda: data)
    if unreadable is not None:
        case.quarantined.append(Quarantined(stored_name(name), 0, unreadable, ""))


# -- records -----------------------------------------------------------------------------
def event(event_id, customer_id="c1", *, event_type="purchase", ts="2025-01-10 10:00:00", price=12.5, quantity=2,
          **optional) -> dict:
    """The shared builder's event, with the corpus's defaults."""
    return landing_builder.event(event_id, customer_id, ts, event_type, price=price, quantity=quantity, **optional)


def txn(customer_id="c1", date_="2025-01-05", amount="19.99") -> dict:
    return {"customer_id": customer_id, "transaction_date": date_, "transaction_amount": amount}


def _as_text(record: dict) -> dict:
    """A record as a CSV delivers it: every value text."""
    return {k: v if v is None or isinstance(v, str) else json.dumps(v) if isinstance(v, bool) else repr(v)
            if isinstance(v, float) else str(v) for k, v in record.items()}


def _noise(length: int, seed: int) -> str:
    """Text that does not compress (a repeated letter would hide an index-size limit behind compression)."""
    return base64.b64encode(random.Random(seed).randbytes(length)).decode()[:length]


STRING_SCHEMA = pa.schema([(name, pa.string()) for name in EVENT_FIELDS if name not in ("price", "quantity")]
                          + [("price", pa.float64()), ("quantity", pa.int64())])


def _schema(**types) -> pa.Schema:
    return pa.schema([(f.name, types.get(f.name, f.type)) for f in STRING_SCHEMA])


# -- the cases ---------------------------------------------------------------------------
CASES: list[Case] = []


def case(name: str, classes: tuple[str, ...], note: str, *, huge: bool = False) -> Case:
    built = Case(name, classes, note, huge=huge)
    CASES.append(built)
    return built


def _malformed_lines() -> None:
    c = case("malformed_ndjson", ("malformed_lines",), "broken JSON lines between good ones: each quarantined, the rest load")
    f = Ndjson(c, "events/malformed_ndjson/a.ndjson")
    f.good(event("malformed_ndjson-1"))
    f.bad('{"event_id": "malformed_ndjson-x1", "customer_id": "c1", broken', "malformed JSON")
    f.bad('{"event_id": "malformed_ndjson-x2", "customer_id": "c1",}', "malformed JSON")
    f.bad("{'event_id': 'malformed_ndjson-x3'}", "malformed JSON")
    f.bad('{"event_id": "malformed_ndjson-x4"} {"event_id": "malformed_ndjson-x5"}', "malformed JSON")
    f.bad('{"event_id": "malformed_ndjson-x6", "customer_id": "c1"', "malformed JSON")
    f.bad("}", "malformed JSON")
    f.bad("garbage, not JSON at all", "malformed JSON")
    f.bad('[{"event_id": "malformed_ndjson-x7"}]', "JSON array, not an object")
    f.bad('"just a string"', "JSON string, not an object")
    f.bad("42", "JSON number, not an object")
    f.bad("null", "JSON null, not an object")
    f.bad("true", "JSON boolean, not an object")
    f.bad('{"a": ' * 20_000 + "1" + "}" * 20_000, "malformed JSON")  # nested far too deep
    f.good(event("malformed_ndjson-2", price=3, quantity=1))
    # A raw control character inside a string is not JSON either (RFC 8259 wants \u0000).
    f.bad(b'{"event_id": "malformed_ndjson-x8", "customer_id": "c\x00\x01"}', "malformed JSON")

    c = case("malformed_csv", ("malformed_lines",), "CSV rows with the wrong field count, a broken quote, and an unclosed quote swallowing the rest of the file")
    f = Csv(c, "events/malformed_csv/a.csv")
    f.good(_as_text(event("malformed_csv-1")))
    f.bad("malformed_csv-x1,c1,purchase", "CSV row has 3 fields, the header has 14")
    f.bad(",".join(["malformed_csv-x2", "c1", "purchase", "2025-01-10 10:00:00"] + ["x"] * 12), "CSV row has 16 fields")
    f.bad('"malformed_csv-x3"x,c1,purchase,2025-01-10 10:00:00,,,,,1,1,,,,', "malformed CSV")
    f.good(_as_text(event("malformed_csv-2", page_url="https://shop.example/a,b", user_agent='Mozilla "quoted"')))
    f.good(_as_text(event("malformed_csv-3", referrer="line one\nline two")))  # a quoted newline: one record, two lines
    f.bad(",,,,,,,,,,,,,", "missing event_id; missing customer_id; missing event_type; missing event_timestamp")
    # Last: an unclosed quote runs to the end of the file; the rows after it are inside the broken record.
    f.bad('malformed_csv-x4,"c1,purchase,2025-01-10 10:00:00,,,,,1,1,,,,\nmalformed_csv-x5,c1,purchase,2025-01-10 10:00:00,,,,,1,1,,,,',
          "malformed CSV", raw=None)

    c = case("malformed_transactions_csv", ("malformed_lines",), "legacy till rows with the wrong field count or a broken quote")
    f = Csv(c, "transactions/malformed_transactions_csv/till.csv", TXN_FIELDS, source="transactions")
    f.good(txn("malformed_transactions_csv-c1"))
    f.bad("malformed_transactions_csv-c2,2025-01-05", "CSV row has 2 fields, the header has 3")
    f.bad("malformed_transactions_csv-c3,2025-01-05,1,2", "CSV row has 4 fields, the header has 3")
    f.bad('malformed_transactions_csv-c4,"2025-01-05"x,1', "malformed CSV")
    f.good(txn("malformed_transactions_csv-c5", "2025-01-06 08:00:00", "5"))

    c = case("concatenated_csv", ("malformed_lines",), "two exports glued together: the second header is a data row that cannot load")
    f = Csv(c, "events/concatenated_csv/a.csv")
    f.good(_as_text(event("concatenated_csv-1")))
    f.bad(",".join(EVENT_FIELDS), "unparsable event_timestamp 'event_timestamp'")
    f.good(_as_text(event("concatenated_csv-2")))


def _wrong_types() -> None:
    c = case("wrong_types_ndjson", ("wrong_types",), "JSON values of the wrong type: objects, arrays and booleans where text or numbers belong")
    f = Ndjson(c, "events/wrong_types_ndjson/a.ndjson")
    f.good(event("wrong_types_ndjson-1"))
    f.bad(event("wrong_types_ndjson-x1", {"id": 1}), "customer_id must be text")
    f.bad(event(["wrong_types_ndjson-x2"]), "event_id must be text")
    f.bad(event("wrong_types_ndjson-x3", event_type=True), "event_type must be text")
    f.bad(event("wrong_types_ndjson-x4", price="abc"), "price 'abc' is not a number")
    f.bad(event("wrong_types_ndjson-x5", price=True), "price True is not a number")
    f.bad(event("wrong_types_ndjson-x6", price={"amount": 1}), "is not a number")
    f.bad(event("wrong_types_ndjson-x7", quantity="two"), "quantity 'two' is not a number")
    f.bad(event("wrong_types_ndjson-x8", quantity=1.5), "quantity 1.5 is not a whole number")
    f.bad(event("wrong_types_ndjson-x9", ts=1736503200), "unparsable event_timestamp 1736503200")
    f.bad(event("wrong_types_ndjson-x10", country=["FR"]), "country must be text")
    f.bad(event("wrong_types_ndjson-x11", ts={"date": "2025-01-10"}), "unparsable event_timestamp {'date': '2025-01-10'}")
    # Numbers where text is expected are their text; numbers as text are numbers.
    f.good(event(9_000_001, 42, price="12.50", quantity="3"))
    f.good(event("wrong_types_ndjson-2", 7.0, price=5, quantity=2.0))

    c = case("wrong_types_csv", ("wrong_types",), "CSV text that is not the number or date it should be")
    f = Csv(c, "events/wrong_types_csv/a.csv")
    f.good(_as_text(event("wrong_types_csv-1")))
    f.bad(_as_text(event("wrong_types_csv-x1", price="abc")), "price 'abc' is not a number")
    f.bad(_as_text(event("wrong_types_csv-x2", price="1,5")), "price '1,5' is not a number")
    f.bad(_as_text(event("wrong_types_csv-x3", price="$5")), "price '$5' is not a number")
    f.bad(_as_text(event("wrong_types_csv-x4", quantity="1.5")), "quantity '1.5' is not a whole number")
    f.bad(_as_text(event("wrong_types_csv-x5", quantity="two")), "quantity 'two' is not a number")
    f.bad(_as_text(event("wrong_types_csv-x6", ts="yesterday")), "unparsable event_timestamp 'yesterday'")
    f.bad(_as_text(event("wrong_types_csv-x7", price="True")), "price 'True' is not a number")
    f.good(_as_text(event("wrong_types_csv-2", price=" 7 ", quantity="3.0")))

    c = case("wrong_types_parquet", ("wrong_types",), "Parquet columns of the wrong type: prices as text or booleans, ids as integers")
    f = Parquet(c, "events/wrong_types_parquet/a.parquet", _schema(price=pa.string(), quantity=pa.string()))
    f.good({**_as_text(event("wrong_types_parquet-1")), "price": "12.5", "quantity": "2"})
    f.bad({**_as_text(event("wrong_types_parquet-x1")), "price": "abc"}, "price 'abc' is not a number")
    f.bad({**_as_text(event("wrong_types_parquet-x2")), "quantity": "1.5"}, "quantity '1.5' is not a whole number")
    f.bad({**_as_text(event("wrong_types_parquet-x3")), "event_timestamp": "10/01/2025"}, "unparsable event_timestamp")
    f = Parquet(c, "events/wrong_types_parquet/b.parquet", _schema(customer_id=pa.int64(), price=pa.bool_()))
    f.bad({**event("wrong_types_parquet-x4", 11), "price": True}, "price True is not a number")
    f.good({**event("wrong_types_parquet-2", 12, event_type="page_view", quantity=None), "price": None})


def _missing_fields() -> None:
    c = case("missing_fields_ndjson", ("missing_fields",), "required fields absent, null, empty or blank")
    f = Ndjson(c, "events/missing_fields_ndjson/a.ndjson")
    f.good(event("missing_fields_ndjson-1"))
    for position, name in enumerate(("event_id", "customer_id", "event_type", "event_timestamp")):
        record = event(f"missing_fields_ndjson-x{position}")
        f.bad({k: v for k, v in record.items() if k != name}, f"missing {name}")  # absent
        f.bad({**record, name: None}, f"missing {name}")  # null
        f.bad({**record, name: ""}, f"missing {name}")  # empty
        f.bad({**record, name: " \t "}, f"missing {name}")  # blank
    f.bad({}, "missing event_id; missing customer_id; missing event_type; missing event_timestamp")
    f.bad(event("missing_fields_ndjson-x9", price=None), "purchase without a price")
    f.bad({**event("missing_fields_ndjson-x10"), "price": ""}, "purchase without a price")
    # Optional fields may be absent: a page view needs no price, a purchase without quantity bought one.
    f.good(event("missing_fields_ndjson-2", event_type="page_view", price=None, quantity=None))
    f.good(event("missing_fields_ndjson-3", quantity=None))

    c = case("missing_fields_csv", ("missing_fields",), "a CSV without the event_type column, and empty cells")
    f = Csv(c, "events/missing_fields_csv/no_type.csv", [h for h in EVENT_FIELDS if h != "event_type"])
    f.bad(_as_text(event("missing_fields_csv-x1")), "missing event_type")
    f.bad(_as_text(event("missing_fields_csv-x2")), "missing event_type")
    f = Csv(c, "events/missing_fields_csv/cells.csv")
    f.good(_as_text(event("missing_fields_csv-1")))
    f.bad(_as_text(event("", "c1")), "missing event_id")
    f.bad(_as_text(event("missing_fields_csv-x3", "")), "missing customer_id")
    f.bad(_as_text(event("missing_fields_csv-x4", ts="")), "missing event_timestamp")
    f.bad(_as_text(event("missing_fields_csv-x5", price="")), "purchase without a price")
    f.good(_as_text(event("missing_fields_csv-2", event_type="page_view", price=None, quantity=None)))

    c = case("missing_fields_parquet", ("missing_fields",), "a Parquet file without a customer_id column, and nulls")
    schema = pa.schema([f for f in STRING_SCHEMA if f.name != "customer_id"])
    f = Parquet(c, "events/missing_fields_parquet/no_customer.parquet", schema)
    f.bad({k: v for k, v in event("missing_fields_parquet-x1").items() if k != "customer_id"}, "missing customer_id")
    f = Parquet(c, "events/missing_fields_parquet/nulls.parquet", STRING_SCHEMA)
    f.good(event("missing_fields_parquet-1"))
    f.bad(event(None), "missing event_id")
    f.bad(event("missing_fields_parquet-x2", ts=None), "missing event_timestamp")
    f.bad(event("missing_fields_parquet-x3", price=None), "purchase without a price")
    f.good(event("missing_fields_parquet-2", quantity=None))

    c = case("missing_fields_transactions", ("missing_fields",), "legacy till rows with empty cells")
    f = Csv(c, "transactions/missing_fields_transactions/till.csv", TXN_FIELDS, source="transactions")
    f.good(txn("missing_fields_transactions-c1"))
    f.bad(txn("missing_fields_transactions-c2", amount=""), "missing transaction_amount")
    f.bad(txn("missing_fields_transactions-c3", date_=""), "missing transaction_date")
    f.bad(txn(""), "missing customer_id")


def _impossible_dates() -> None:
    c = case("impossible_dates_ndjson", ("impossible_dates",), "dates that do not exist, year 0, and the far past and future")
    f = Ndjson(c, "events/impossible_dates_ndjson/a.ndjson")
    f.good(event("impossible_dates_ndjson-1"))
    for n, stamp in enumerate(["2025-02-30 10:00:00", "2025-02-29 10:00:00", "2025-13-01 10:00:00", "2025-01-32 10:00:00",
                               "2025-01-10 25:00:00", "2024-12-31T23:59:60Z", "0000-01-01 00:00:00", "-0001-06-01 00:00:00",
                               "10000-01-01 00:00:00", "2025-01-10T10:00:00+25:00", "2025-00-10 10:00:00"]):
        f.bad(event(f"impossible_dates_ndjson-x{n}", ts=stamp), "unparsable event_timestamp")
    f.bad(event("impossible_dates_ndjson-x20", ts="9999-12-31 23:59:59"), "after the month in progress (2025-03)")
    f.bad(event("impossible_dates_ndjson-x21", ts="2262-04-12 00:00:00"), "after the month in progress")
    f.bad(event("impossible_dates_ndjson-x22", ts="0001-01-01 00:00:00"), "before the first month partition 2025-01")
    f.bad(event("impossible_dates_ndjson-x23", ts="1600-02-29 00:00:00"), "before the first month partition")
    # Edges of January that are real: the last microsecond, and an offset that moves February 1st back into January.
    f.good(event("impossible_dates_ndjson-2", ts="2025-01-31T23:59:59.999999Z"))
    f.good(event("impossible_dates_ndjson-3", ts="2025-02-01T00:30:00+01:00"))
    f.good(event("impossible_dates_ndjson-4", ts="2025-01-01T00:00:00+00:00"))
    # A month the load is not for: its own partition loads it; January neither loads nor rejects it.
    f.other_month(event("impossible_dates_ndjson-5", ts="2025-02-14 12:00:00"))

    c = case("impossible_dates_csv", ("impossible_dates",), "impossible event and transaction dates in CSV")
    f = Csv(c, "events/impossible_dates_csv/a.csv")
    f.good(_as_text(event("impossible_dates_csv-1")))
    f.bad(_as_text(event("impossible_dates_csv-x1", ts="2025-02-30")), "unparsable event_timestamp '2025-02-30'")
    f.bad(_as_text(event("impossible_dates_csv-x2", ts="0000-00-00 00:00:00")), "unparsable event_timestamp")
    f.bad(_as_text(event("impossible_dates_csv-x3", ts="0000-01-01")), "unparsable event_timestamp")
    f.bad(_as_text(event("impossible_dates_csv-x4", ts="3000-01-01 00:00:00")), "after the month in progress")
    f = Csv(c, "transactions/impossible_dates_csv/till.csv", TXN_FIELDS, source="transactions")
    f.good(txn("impossible_dates_csv-c1", "2025-01-31"))
    f.bad(txn("impossible_dates_csv-c2", "2025-02-30"), "unparsable transaction_date '2025-02-30'")
    f.bad(txn("impossible_dates_csv-c3", "0000-01-01"), "unparsable transaction_date")
    f.bad(txn("impossible_dates_csv-c4", "9999-12-31"), "after the month in progress")

    c = case("impossible_dates_parquet", ("impossible_dates",), "typed Parquet timestamps at and beyond the ends of the calendar")
    f = Parquet(c, "events/impossible_dates_parquet/typed.parquet", _schema(event_timestamp=pa.timestamp("us")))
    f.good(event("impossible_dates_parquet-1", ts=datetime(2025, 1, 10, 10, 0)))
    f.bad(event("impossible_dates_parquet-x1", ts=datetime(1, 1, 1)), "before the first month partition")
    f.bad(event("impossible_dates_parquet-x2", ts=datetime(9999, 12, 31, 23, 59, 59)), "after the month in progress")
    f = Parquet(c, "events/impossible_dates_parquet/raw_int.parquet", _schema(event_timestamp=pa.timestamp("us")))
    f.bad({**event("impossible_dates_parquet-x3"), "event_timestamp": -70_000_000_000_000_000}, "unparsable event_timestamp")  # year -249
    f.bad({**event("impossible_dates_parquet-x4"), "event_timestamp": 2**62}, "unparsable event_timestamp")  # year 148108
    f.good({**event("impossible_dates_parquet-2"), "event_timestamp": 1_736_503_200_000_000},
           event_timestamp=pd.Timestamp("2025-01-10 10:00:00", tz="UTC"))
    f = Parquet(c, "events/impossible_dates_parquet/text.parquet", STRING_SCHEMA)
    f.bad(event("impossible_dates_parquet-x5", ts="2025-02-30 00:00:00"), "unparsable event_timestamp")
    f.good(event("impossible_dates_parquet-3", ts="2025-01-10T10:00:00-05:00"))


def _negative_amounts() -> None:
    c = case("negative_amounts_ndjson", ("negative_amounts",), "negative prices and quantities; zero is fine")
    f = Ndjson(c, "events/negative_amounts_ndjson/a.ndjson")
    f.good(event("negative_amounts_ndjson-1"))
    f.bad(event("negative_amounts_ndjson-x1", price=-1), "negative price -1")
    f.bad(event("negative_amounts_ndjson-x2", price="-0.01"), "negative price '-0.01'")
    f.bad(event("negative_amounts_ndjson-x3", quantity=-1), "negative quantity -1")
    f.bad(event("negative_amounts_ndjson-x4", event_type="refund", price=-5, quantity=None), "negative price -5")
    f.good(event("negative_amounts_ndjson-2", price=0, quantity=3))
    f.good(event("negative_amounts_ndjson-3", price=4.25, quantity=0))
    f.good(event("negative_amounts_ndjson-4", price=-0.0, quantity=1))  # minus zero is zero, not negative

    c = case("negative_amounts_transactions", ("negative_amounts",), "negative legacy amounts, in CSV and NDJSON")
    f = Csv(c, "transactions/negative_amounts_transactions/till.csv", TXN_FIELDS, source="transactions")
    f.good(txn("negative_amounts_transactions-c1"))
    f.bad(txn("negative_amounts_transactions-c2", amount="-3"), "negative transaction_amount '-3'")
    f.bad(txn("negative_amounts_transactions-c3", amount="-0.01"), "negative transaction_amount")
    f.good(txn("negative_amounts_transactions-c4", amount="0"))
    f = Ndjson(c, "transactions/negative_amounts_transactions/till.ndjson", source="transactions")
    f.bad(txn("negative_amounts_transactions-c5", amount=-5), "negative transaction_amount -5")
    f.good(txn("negative_amounts_transactions-c6", amount=7.5))

    c = case("negative_amounts_parquet", ("negative_amounts",), "negative typed prices and quantities in Parquet")
    f = Parquet(c, "events/negative_amounts_parquet/a.parquet", STRING_SCHEMA)
    f.good(event("negative_amounts_parquet-1"))
    f.bad(event("negative_amounts_parquet-x1", price=-12.5), "negative price -12.5")
    f.bad(event("negative_amounts_parquet-x2", quantity=-2), "negative quantity -2")
    f = Parquet(c, "transactions/negative_amounts_parquet/till.parquet",
                pa.schema([("customer_id", pa.string()), ("transaction_date", pa.date32()), ("transaction_amount", pa.float64())]),
                source="transactions")
    f.good(txn("negative_amounts_parquet-c1", date(2025, 1, 7), 30.0))
    f.bad(txn("negative_amounts_parquet-c2", date(2025, 1, 7), -30.0), "negative transaction_amount")


def _absurd_values() -> None:
    c = case("absurd_values_ndjson", ("absurd_values",), "prices and quantities beyond belief, NaN and Infinity literals")
    f = Ndjson(c, "events/absurd_values_ndjson/a.ndjson")
    f.good(event("absurd_values_ndjson-1"))
    f.bad(event("absurd_values_ndjson-x1", price=10_000_000_001), "is above 10,000,000,000")
    f.bad(event("absurd_values_ndjson-x2", price=1e300), "is above 10,000,000,000")
    f.bad(event("absurd_values_ndjson-x3", quantity=1_000_001), "quantity 1000001 is above 1,000,000")
    f.bad(event("absurd_values_ndjson-x4", quantity=10**30), "is above 1,000,000")
    f.bad('{"event_id": "absurd_values_ndjson-x5", "customer_id": "c1", "event_type": "purchase", '
          '"event_timestamp": "2025-01-10 10:00:00", "price": NaN}', "price NaN is not a number")
    f.bad('{"event_id": "absurd_values_ndjson-x6", "customer_id": "c1", "event_type": "purchase", '
          '"event_timestamp": "2025-01-10 10:00:00", "price": Infinity}', "price Infinity is not a number")
    f.bad('{"event_id": "absurd_values_ndjson-x7", "customer_id": "c1", "event_type": "purchase", '
          '"event_timestamp": "2025-01-10 10:00:00", "price": 1, "quantity": -Infinity}', "quantity -Infinity is not a number")
    f.bad('{"event_id": "absurd_values_ndjson-x8", "customer_id": "c1", "event_type": "purchase", '
          '"event_timestamp": "2025-01-10 10:00:00", "price": 1e400}', "is not a number")
    f.bad('{"event_id": "absurd_values_ndjson-x9", "customer_id": "c1", "event_type": "purchase", '
          '"event_timestamp": "2025-01-10 10:00:00", "price": 1' + "0" * 400 + "}", "price 1000")  # 401 digits
    f.bad(event("absurd_values_ndjson-x10", price="NaN"), "price 'NaN' is not a number")
    f.bad(event("absurd_values_ndjson-x11", price="inf"), "price 'inf' is not a number")
    f.bad(event("absurd_values_ndjson-x12", event_type="page_view", price="NaN", quantity=None), "price 'NaN' is not a number")
    # The largest values that are still believable load, and their revenue is exact.
    f.good(event("absurd_values_ndjson-2", price=10_000_000_000, quantity=1_000_000))
    f.good(event("absurd_values_ndjson-3", price=0.30000000000000004, quantity=3))

    c = case("absurd_values_csv", ("absurd_values",), "absurd numbers written as CSV text")
    f = Csv(c, "events/absurd_values_csv/a.csv")
    f.good(_as_text(event("absurd_values_csv-1")))
    for n, (name, value, reason) in enumerate([
        ("price", "NaN", "price 'NaN' is not a number"), ("price", "Infinity", "price 'Infinity' is not a number"),
        ("price", "-inf", "price '-inf' is not a number"), ("price", "1e400", "price '1e400' is not a number"),
        ("price", "99999999999", "is above 10,000,000,000"), ("quantity", "1000001", "is above 1,000,000"),
        ("quantity", "nan", "quantity 'nan' is not a number"), ("quantity", "1e7", "is above 1,000,000"),
    ]):
        f.bad(_as_text({**event(f"absurd_values_csv-x{n}"), name: value}), reason)
    f.good(_as_text(event("absurd_values_csv-2", price="1e10", quantity="1000000")))

    c = case("absurd_values_parquet", ("absurd_values",), "NaN, Infinity and huge values in typed Parquet columns")
    f = Parquet(c, "events/absurd_values_parquet/a.parquet", _schema(quantity=pa.float64()))
    f.good(event("absurd_values_parquet-1", quantity=2.0))
    f.bad(event("absurd_values_parquet-x1", price=float("nan")), "price NaN is not a number")
    f.bad(event("absurd_values_parquet-x2", event_type="page_view", price=float("nan"), quantity=None), "price NaN is not a number")
    f.bad(event("absurd_values_parquet-x3", quantity=float("nan")), "quantity NaN is not a number")
    f.bad(event("absurd_values_parquet-x4", price=float("inf")), "price inf is not a number")
    f.bad(event("absurd_values_parquet-x5", price=1e11), "is above 10,000,000,000")
    f.bad(event("absurd_values_parquet-x6", quantity=2e6), "is above 1,000,000")
    f.good(event("absurd_values_parquet-2", quantity=None))  # a null is an absent quantity, unlike NaN

    c = case("absurd_values_transactions", ("absurd_values",), "absurd legacy amounts")
    f = Csv(c, "transactions/absurd_values_transactions/till.csv", TXN_FIELDS, source="transactions")
    f.good(txn("absurd_values_transactions-c1"))
    f.bad(txn("absurd_values_transactions-c2", amount="1e11"), "is above 10,000,000,000")
    f.bad(txn("absurd_values_transactions-c3", amount="NaN"), "transaction_amount 'NaN' is not a number")
    f.bad(txn("absurd_values_transactions-c4", amount="12,50"), "is not a number")


def _huge_lines() -> None:
    c = case("huge_lines_ndjson", ("huge_lines",), "5 MB and 9 MB lines (generated, never committed): the big ones never stop the others",
             huge=True)
    f = Ndjson(c, "events/huge_lines_ndjson/a.ndjson")
    f.good(event("huge_lines_ndjson-1"))
    f.bad(lambda: b'{"event_id": "huge_lines_ndjson-x1", "junk": "' + b"x" * (5 * MB), "malformed JSON")  # unterminated
    f.bad(lambda: json.dumps(event("huge_lines_ndjson-x2" + _noise(5 * MB, 1))).encode(), "event_id is longer than 500 characters")
    f.bad(lambda: json.dumps(event("huge_lines_ndjson-x3", user_agent="y" * (9 * MB))).encode(), "record longer than 8 MB")
    big = "Mozilla/5.0 " + _noise(5 * MB, 2)
    f.good(event("huge_lines_ndjson-2", user_agent=big), line=None)
    f.good(event("huge_lines_ndjson-3"))

    c = case("huge_lines_csv", ("huge_lines",), "5 MB and 9 MB CSV fields (generated)", huge=True)
    f = Csv(c, "events/huge_lines_csv/a.csv")
    f.good(_as_text(event("huge_lines_csv-1")))
    f.bad(lambda: f.line_of(_as_text(event("huge_lines_csv-x1" + _noise(5 * MB, 3)))).encode(),
          "event_id is longer than 500 characters")
    f.bad(lambda: f.line_of(_as_text(event("huge_lines_csv-x2", user_agent="z" * (9 * MB)))).encode(),
          "malformed CSV: field larger than field limit")
    f.good(_as_text(event("huge_lines_csv-2", user_agent="Mozilla/5.0 " + _noise(5 * MB, 4))))
    f.good(_as_text(event("huge_lines_csv-3")))


def _wrong_encodings() -> None:
    c = case("wrong_encoding_ndjson", ("wrong_encodings",), "Latin-1, Windows-1252 and broken UTF-8 lines; real UTF-8 loads intact")
    f = Ndjson(c, "events/wrong_encoding_ndjson/a.ndjson")
    f.good(event("wrong_encoding_ndjson-1", country="Côte d’Ivoire", page_url="https://shop.example/中文/😀"))
    f.bad(json.dumps(event("wrong_encoding_ndjson-x1", country="Curaçao"), ensure_ascii=False).encode("latin-1"), "not valid UTF-8")
    f.bad(json.dumps(event("wrong_encoding_ndjson-x2", referrer="“quoted”"), ensure_ascii=False).encode("cp1252"), "not valid UTF-8")
    f.bad(json.dumps(event("wrong_encoding_ndjson-x3")).encode()[:-2] + b'\xe2\x82"}', "not valid UTF-8")  # a cut 3-byte sequence
    f.bad(json.dumps(event("wrong_encoding_ndjson-x4")).encode().replace(b"c1", b"c\xff\xfe"), "not valid UTF-8")
    f.bad(b'{"event_id": "wrong_encoding_ndjson-x5", "customer_id": "\xed\xa0\x80"}', "not valid UTF-8")  # an encoded surrogate
    # A Latin-1 file is mostly ASCII: those lines are valid UTF-8 and load.
    f = Ndjson(c, "events/wrong_encoding_ndjson/latin1.ndjson", encoding="latin-1")
    f.good(event("wrong_encoding_ndjson-2", country="France"))
    f.bad(json.dumps(event("wrong_encoding_ndjson-x6", country="España"), ensure_ascii=False), "not valid UTF-8", raw=None)

    c = case("utf16_ndjson", ("wrong_encodings",), "a UTF-16 NDJSON file: no line is UTF-8 JSON, each is quarantined")
    # UTF-16-LE with its BOM: line 1 holds the BOM (not UTF-8), the next lines start with the NUL
    # half of the previous newline (not JSON), and the last newline's NUL half is a line of its own.
    data = (json.dumps(event("utf16_ndjson-x1")) + "\n" + json.dumps(event("utf16_ndjson-x2")) + "\n").encode("utf-16")
    raw_file(c, "events/utf16_ndjson/a.ndjson", data, "ndjson")
    c.quarantined += [Quarantined("events/utf16_ndjson/a.ndjson", 1, "not valid UTF-8"),
                      Quarantined("events/utf16_ndjson/a.ndjson", 2, "malformed JSON"),
                      Quarantined("events/utf16_ndjson/a.ndjson", 3, "malformed JSON")]
    Ndjson(c, "events/utf16_ndjson/b.ndjson").good(event("utf16_ndjson-1"))  # the UTF-8 file beside it loads

    c = case("wrong_encoding_csv", ("wrong_encodings",), "Latin-1 rows in a UTF-8 CSV, and a UTF-16 CSV whose header cannot be read")
    f = Csv(c, "events/wrong_encoding_csv/a.csv")
    f.good(_as_text(event("wrong_encoding_csv-1", country="Österreich")))
    f.bad(f.line_of(_as_text(event("wrong_encoding_csv-x1", country="Curaçao"))).encode("latin-1"), "not valid UTF-8")
    f.bad(f.line_of(_as_text(event("wrong_encoding_csv-x2", "c\x96dash"))).encode("latin-1"), "not valid UTF-8")
    f.good(_as_text(event("wrong_encoding_csv-2", country="日本")))
    header = ",".join(EVENT_FIELDS) + "\n"
    raw_file(c, "events/wrong_encoding_csv/utf16.csv", (header + f.line_of(_as_text(event("wrong_encoding_csv-x3"))) + "\n").encode("utf-16"),
             "csv", unreadable="the CSV header is not UTF-8 text")
    f = Csv(c, "transactions/wrong_encoding_csv/till.csv", TXN_FIELDS, source="transactions")
    f.bad("Müller,2025-01-05,3".encode("latin-1"), "not valid UTF-8")
    f.good(txn("wrong_encoding_csv-Müller"))


def _empty_and_header_only() -> None:
    c = case("empty_files", ("empty_files",), "files with nothing in them: no records, no rejections — except Parquet, "
             "where an empty file is not a Parquet file")
    raw_file(c, "events/empty_files/empty.ndjson", b"", "ndjson")
    raw_file(c, "events/empty_files/empty.jsonl", b"\n\n  \n\t\n", "ndjson")  # blank lines only
    raw_file(c, "events/empty_files/empty.csv", b"", "csv")
    raw_file(c, "events/empty_files/blank.csv", b"\n\n\n", "csv")
    raw_file(c, "events/empty_files/empty.ndjson.gz", b"", "ndjson")  # zero bytes: not even a gzip header
    raw_file(c, "events/empty_files/nothing.ndjson.gz", gzip.compress(b"", mtime=0), "ndjson")
    raw_file(c, "transactions/empty_files/empty.csv", b"", "csv")
    raw_file(c, "events/empty_files/empty.parquet", b"", "parquet", unreadable="Parquet file size is 0 bytes")
    f = Ndjson(c, "events/empty_files/z_after.ndjson")  # the next file still loads
    f.good(event("empty_files-1"))

    c = case("header_only_files", ("header_only_files",), "a header and no records: nothing to load, nothing wrong")
    raw_file(c, "events/header_only_files/a.csv", (",".join(EVENT_FIELDS) + "\n").encode(), "csv")
    raw_file(c, "events/header_only_files/no_newline.csv", ",".join(EVENT_FIELDS).encode(), "csv")
    raw_file(c, "events/header_only_files/blank_lines.csv", (",".join(EVENT_FIELDS) + "\r\n\r\n\r\n").encode(), "csv")
    raw_file(c, "events/header_only_files/bom.csv", b"\xef\xbb\xbf" + (",".join(EVENT_FIELDS) + "\n").encode(), "csv")
    raw_file(c, "events/header_only_files/a.csv.gz", gzip.compress((",".join(EVENT_FIELDS) + "\n").encode(), mtime=0), "csv")
    raw_file(c, "transactions/header_only_files/till.csv", (",".join(TXN_FIELDS) + "\n").encode(), "csv")
    Parquet(c, "events/header_only_files/zero_rows.parquet", STRING_SCHEMA)
    f = Csv(c, "events/header_only_files/z_after.csv")
    f.good(_as_text(event("header_only_files-1")))


def _boms() -> None:
    c = case("boms", ("boms",), "UTF-8 byte-order marks at the start of NDJSON, gzipped NDJSON and CSV files")
    f = Ndjson(c, "events/boms/a.ndjson", bom=True)
    f.good(event("boms-1"))
    f.good(event("boms-2"))
    f = Ndjson(c, "events/boms/b.ndjson.gz", bom=True)
    f.good(event("boms-3"))
    f.bad("\ufeff" + json.dumps(event("boms-x1")), "malformed JSON")  # a BOM inside the file (two files glued together)
    f = Ndjson(c, "events/boms/c.ndjson", bom=True)
    f.bad('{"event_id": "boms-x2", broken', "malformed JSON")  # the first line is bad: its number is still 1
    f.good(event("boms-4"))
    f = Csv(c, "events/boms/d.csv", bom=True)  # the BOM must not become part of the first column's name
    f.good(_as_text(event("boms-5")))
    f = Csv(c, "events/boms/e.csv", bom=True, newline="\r\n")
    f.good(_as_text(event("boms-6")))
    f = Csv(c, "transactions/boms/till.csv", TXN_FIELDS, source="transactions", bom=True)
    f.good(txn("boms-c1"))
    raw_file(c, "events/boms/only_bom.ndjson", b"\xef\xbb\xbf", "ndjson")
    raw_file(c, "events/boms/only_bom.csv", b"\xef\xbb\xbf", "csv")


def _duplicates() -> None:
    c = case("duplicate_ids_ndjson", ("duplicate_ids_different_contents", "duplicates"),
             "the same event_id again: same contents is a duplicate, other contents a quarantined conflict")
    first = event("duplicate_ids_ndjson-1", price=12.5, quantity=2)
    f = Ndjson(c, "events/duplicate_ids_ndjson/a.ndjson")
    f.good(first)
    f.dup(first)
    f.dup({**first, "price": "12.50", "event_timestamp": "2025-01-10T11:00:00+01:00"})  # the same event, written differently
    f.bad({**first, "price": 99.0}, "already delivered with different contents (events/duplicate_ids_ndjson/a.ndjson, record 1)")
    f.bad({**first, "customer_id": "c2"}, "already delivered with different contents")
    f.bad({**first, "event_type": "page_view", "price": None, "quantity": None}, "already delivered with different contents")
    # An invalid delivery does not count as the first: the valid one after it loads.
    f.bad(event("duplicate_ids_ndjson-2", price="abc"), "price 'abc' is not a number")
    f.good(event("duplicate_ids_ndjson-2", price=3.0))
    f = Ndjson(c, "events/duplicate_ids_ndjson/b.ndjson")  # a later file: landing order is by path
    f.dup(first)
    f.bad({**first, "quantity": 3}, "(events/duplicate_ids_ndjson/a.ndjson, record 1)")

    c = case("duplicate_ids_csv", ("duplicate_ids_different_contents", "duplicates"), "redelivered rows inside one CSV")
    row = event("duplicate_ids_csv-1", price=5, quantity=1, country="FR")
    f = Csv(c, "events/duplicate_ids_csv/a.csv")
    f.good(_as_text(row))
    f.dup(_as_text({**row, "price": "5.00", "quantity": "1.0"}))
    f.bad(_as_text({**row, "country": "DE"}), "already delivered with different contents (events/duplicate_ids_csv/a.csv, record 2)")
    f.good(_as_text(event("duplicate_ids_csv-2")))

    c = case("duplicate_ids_parquet", ("duplicate_ids_different_contents", "duplicates"), "redelivered rows inside one Parquet file")
    row = event("duplicate_ids_parquet-1")
    f = Parquet(c, "events/duplicate_ids_parquet/a.parquet", STRING_SCHEMA)
    f.good(row)
    f.dup(row)
    f.bad({**row, "price": 13.5}, "already delivered with different contents (events/duplicate_ids_parquet/a.parquet, record 1)")

    c = case("duplicate_ids_cross_format", ("duplicate_ids_different_contents", "duplicates"),
             "the same event in NDJSON, CSV and Parquet: content is compared after parsing, whatever the format")
    row = event("duplicate_ids_cross_format-1", price=10.5, quantity=2, country="FR")
    Ndjson(c, "events/duplicate_ids_cross_format/1.ndjson").good(row)
    Csv(c, "events/duplicate_ids_cross_format/2.csv").dup(_as_text({**row, "event_timestamp": "2025-01-10T10:00:00Z"}))
    Parquet(c, "events/duplicate_ids_cross_format/3.parquet", STRING_SCHEMA).bad(
        {**row, "country": "BE"}, "already delivered with different contents (events/duplicate_ids_cross_format/1.ndjson, record 1)")

    c = case("identical_legacy_rows", ("duplicates",), "two identical till rows are two purchases, not a redelivery")
    f = Csv(c, "transactions/identical_legacy_rows/till.csv", TXN_FIELDS, source="transactions")
    f.good(txn("identical_legacy_rows-c1", "2025-01-05", "5.25"))
    f.good(txn("identical_legacy_rows-c1", "2025-01-05", "5.25"))

    c = case("legacy_redelivered_under_another_name", ("duplicates", "legacy_redeliveries"),
             "a till file delivered again as 'till (1).csv': its rows are recognised by content and counted as duplicates, "
             "a row only the second copy holds (or one more identical row than the first had) loads")
    rows = [txn("legacy_redelivered-c1", "2025-01-05", "5.25"), txn("legacy_redelivered-c1", "2025-01-05", "5.25"),
            txn("legacy_redelivered-c2", "2025-01-06 09:30:00", "12")]
    # Landing order is by path, and ' ' sorts before '.': the copy named "(1)" is the first delivery.
    f = Csv(c, "transactions/legacy_redelivered_under_another_name/till_2025-01 (1).csv", TXN_FIELDS, source="transactions")
    for row in rows:
        f.good(row)
    f = Csv(c, "transactions/legacy_redelivered_under_another_name/till_2025-01.csv", TXN_FIELDS, source="transactions")
    f.dup(rows[0])
    f.dup(rows[1])
    f.dup({**rows[2], "transaction_date": "2025-01-06T10:30:00+01:00", "transaction_amount": "12.00"})  # the same, respelled
    f.good(rows[0])  # a third identical row: the first copy had two


def _unstorable_text() -> None:
    c = case("nul_characters", ("nul_characters",), "NUL characters, which PostgreSQL text cannot hold: refused on every warehouse")
    f = Ndjson(c, "events/nul_characters/a.ndjson")
    f.good(event("nul_characters-1"))
    f.bad(json.dumps(event("nul_characters-x1", "c\u00001")), "customer_id contains a NUL character")
    f.bad(json.dumps(event("nul_characters-x2", page_url="https://x.example/\u0000")), "page_url contains a NUL character")
    f.bad(json.dumps(event("nul_characters-x3\u0000")), "event_id contains a NUL character")
    f = Csv(c, "events/nul_characters/b.csv")
    f.bad(_as_text(event("nul_characters-x4", "c\x00")), "customer_id contains a NUL character", raw=None)
    f.good(_as_text(event("nul_characters-2")))
    f = Parquet(c, "events/nul_characters/c.parquet", STRING_SCHEMA)
    f.bad(event("nul_characters-x5", country="F\x00R"), "country contains a NUL character")
    f.good(event("nul_characters-3"))
    f = Csv(c, "transactions/nul_characters/till.csv", TXN_FIELDS, source="transactions")
    f.bad(txn("nul\x00customer"), "customer_id contains a NUL character", raw=None)

    c = case("lone_surrogates", ("wrong_encodings", "lone_surrogates"),
             "JSON escapes of half a UTF-16 pair (\\ud800): no UTF-8 text holds them; a whole pair is an emoji")
    f = Ndjson(c, "events/lone_surrogates/a.ndjson")
    f.good(event("lone_surrogates-1"))
    f.bad('{"event_id": "lone_surrogates-x1", "customer_id": "c\\ud800", "event_type": "purchase", '
          '"event_timestamp": "2025-01-10 10:00:00", "price": 1}', "customer_id holds an unpaired surrogate")
    f.bad('{"event_id": "lone_surrogates-x2", "customer_id": "c1", "event_type": "page_view", '
          '"event_timestamp": "2025-01-10 10:00:00", "country": "\\uDFFF"}', "country holds an unpaired surrogate")
    f.good(event("lone_surrogates-2", country="\U0001F600"), line=json.dumps(event("lone_surrogates-2", country="\U0001F600")))

    c = case("overlong_ids", ("absurd_values", "overlong_ids"), "ids too long to index (PostgreSQL refuses B-tree entries over 2,704 bytes)")
    f = Ndjson(c, "events/overlong_ids/a.ndjson")
    f.good(event("overlong_ids-1"))
    f.good(event("overlong_ids-" + "9" * (500 - len("overlong_ids-"))))  # exactly 500 characters: fine
    f.bad(event("overlong_ids-" + "9" * (501 - len("overlong_ids-"))), "event_id is longer than 500 characters")
    f.bad(event("overlong_ids-x1", "c" + _noise(3000, 5)), "customer_id is longer than 500 characters")
    f.bad(event("overlong_ids-x2", "😀" * 600), "customer_id is longer than 500 characters")
    f = Csv(c, "transactions/overlong_ids/till.csv", TXN_FIELDS, source="transactions")
    f.bad(txn("c" + _noise(600, 6)), "customer_id is longer than 500 characters")
    f.good(txn("overlong_ids-c1"))


def _unreadable_files() -> None:
    c = case("unreadable_files", ("unreadable_files",), "files that cannot be read at all: one record-0 row each; the others still load")
    lines = "".join(json.dumps(event(f"unreadable_files-x{i}")) + "\n" for i in range(200)).encode()
    raw_file(c, "events/unreadable_files/corrupt.ndjson.gz", b"this was never gzipped\n", "ndjson", unreadable="gzip")
    raw_file(c, "events/unreadable_files/truncated.ndjson.gz", gzip.compress(lines, mtime=0)[:-40], "ndjson", unreadable="gzip")
    raw_file(c, "events/unreadable_files/export.xlsx", b"PK\x03\x04 a spreadsheet", "other", unreadable="unsupported file type '.xlsx'")
    raw_file(c, "events/unreadable_files/README", b"no extension", "other", unreadable="unsupported file type '(none)'")
    raw_file(c, "events/unreadable_files/damaged.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1", "parquet", unreadable="Parquet")
    raw_file(c, "events/unreadable_files/bad_header.csv", b'"event_id,customer_id\n', "csv", unreadable="the CSV header cannot be read")
    f = Ndjson(c, "events/unreadable_files/z_fine.ndjson")
    f.good(event("unreadable_files-1"))


def _valid_edge_cases() -> None:
    c = case("valid_edge_cases", ("valid_edge_cases",), "unusual but valid: unicode, padding, CRLF, blank lines, extra fields, "
             "duplicate JSON keys, quoted newlines, reordered CSV columns, a non-UTF-8 file name")
    f = Ndjson(c, "events/valid_edge_cases/crlf.ndjson", newline=b"\r\n", final_newline=False)
    f.good(event("valid_edge_cases-1", "клиент-1", country="ישראל", page_url="https://shop.example/e\u0301té"))
    f.blank()
    f.blank("   \t")
    f.good(event("  valid_edge_cases-2  ", " c2 ", event_type=" purchase "))  # padding is trimmed
    f.good(event("valid_edge_cases-3", extra_field={"nested": [1, 2]}, another=None))  # unknown fields are ignored
    f.good({"event_id": "valid_edge_cases-4", "customer_id": "c1", "event_type": "purchase", "event_timestamp": "2025-01-10 10:00:00",
            "price": 2.0}, line='{"event_id": "valid_edge_cases-4", "customer_id": "c1", "event_type": "purchase", '
                              '"event_timestamp": "2025-01-10 10:00:00", "price": 1, "price": 2.0}')  # the last of duplicate keys counts, as in JSON parsers
    f.good(event("valid_edge_cases-5", price=1 / 3, quantity=3))
    f = Csv(c, "events/valid_edge_cases/reordered.csv", list(reversed(EVENT_FIELDS)) + ["unknown_column"], newline="\r\n")
    f.good({**_as_text(event("valid_edge_cases-6", referrer="a, b\r\nc \"d\"")), "unknown_column": "ignored"})
    f.blank()
    f.good(_as_text(event("valid_edge_cases-7")))
    name = "events/valid_edge_cases/caf\udce9.ndjson"  # the byte 0xE9: a Latin-1 file name
    Ndjson(c, name).good(event("valid_edge_cases-8"))


def _landing_formats() -> None:
    """Issue 35.10: line endings, header and key spelling, invisible padding, integers beyond float64."""
    c = case("cr_line_endings", ("line_endings",), "NDJSON and CSV whose lines end with CR alone (an old Mac export): "
             "read line by line, numbered as an editor shows them")
    f = Ndjson(c, "events/cr_line_endings/a.ndjson", newline=b"\r")
    f.good(event("cr_line_endings-1"))
    f.bad('{"event_id": "cr_line_endings-x1", broken', "malformed JSON")
    f.blank()
    f.good(event("cr_line_endings-2", price=3.0, quantity=1))
    f = Ndjson(c, "events/cr_line_endings/b.ndjson.gz", newline=b"\r", final_newline=False)
    f.good(event("cr_line_endings-3"))
    f.good(event("cr_line_endings-4", event_type="page_view", price=None, quantity=None))
    f = Csv(c, "events/cr_line_endings/c.csv", newline="\r")
    f.good(_as_text(event("cr_line_endings-5")))
    f.bad("cr_line_endings-x2,c1,purchase", "CSV row has 3 fields, the header has 14")
    f.good(_as_text(event("cr_line_endings-6")))

    c = case("header_spelling", ("headers", "key_case"), "CSV headers and NDJSON keys in another case (`Event_ID`) name "
             "their fields; a CSV header naming a field twice refuses the file rather than read either column")
    f = Csv(c, "events/header_spelling/upper.csv", header_line=",".join(name.upper() for name in EVENT_FIELDS))
    f.good(_as_text(event("header_spelling-1", country="FR")))
    f = Csv(c, "transactions/header_spelling/till.csv", TXN_FIELDS, source="transactions",
            header_line=" Customer_ID ,Transaction_Date,TRANSACTION_AMOUNT")
    f.good(txn("header_spelling-c1"))
    header = ",".join(EVENT_FIELDS) + ",Event_ID\n"
    raw_file(c, "events/header_spelling/twice.csv", (header + f"header_spelling-x1,c1,purchase,2025-01-10 10:00:00,,,,,1,1,,,,,"
                                                     "header_spelling-x2\n").encode(),
             "csv", unreadable="names the column 'event_id' 2 times ('event_id', 'Event_ID')")
    f = Ndjson(c, "events/header_spelling/keys.ndjson")
    for number in (2, 3):  # the whole block spells its keys one way: the fast path reads them
        record = event(f"header_spelling-{number}", country="DE")
        f.good(record, line=json.dumps({key.title(): value for key, value in record.items()}))
    f = Ndjson(c, "events/header_spelling/mixed.ndjson")
    record = event("header_spelling-4", page_url="https://shop.example/p")
    f.good(record, line=json.dumps({**{key.upper(): value for key, value in record.items()}, "event_id": "header_spelling-4"}))
    # The exact spelling wins over another (as the last of repeated JSON keys does among equals).
    f.good(event("header_spelling-5"), line=json.dumps({**event("header_spelling-5"), "PRICE": 99.0}))
    f.bad('{"Event_ID": "header_spelling-x3", broken', "malformed JSON")  # a bad line: the exact reader, keys matched the same

    c = case("zero_width", ("zero_width",), "zero-width characters (U+200B, U+200C, U+200D, U+2060, U+FEFF) at the ends "
             "of ids and text are trimmed like whitespace: the id without them is the same event")
    f = Ndjson(c, "events/zero_width/a.ndjson")
    f.good(event("zero_width-1\u200b", "\ufeffc1\u2060", country="\u200cFR\u200d"))
    f.dup(event("zero_width-1", "c1", country="FR"))
    f.good(event("\u00a0\u200bzero_width-2 \u200b", "c2"))
    f.bad(event("\u200b\u200c", "c3"), "missing event_id")
    f = Csv(c, "events/zero_width/b.csv")
    f.good(_as_text(event("zero_width-3\u200b", "c\u200b3")))
    f = Csv(c, "transactions/zero_width/till.csv", TXN_FIELDS, source="transactions")
    f.good(txn("\u2060zero_width-c1"))

    c = case("exact_integers", ("exact_integers", "wrong_types"), "Parquet integer ids above 2**53 with a null in the "
             "column: exact, never through float64 (which would merge 2**53+1 and 2**53+2)")
    big = 2**53
    f = Parquet(c, "events/exact_integers/a.parquet", _schema(event_id=pa.int64(), customer_id=pa.int64(), quantity=pa.int64()))
    f.good(event(big + 1, big + 1))
    f.good(event(big + 2, big + 2, quantity=None))
    f.bad(event(None, big + 3), "missing event_id")
    f.bad(event(big + 4, None), "missing customer_id")
    f = Parquet(c, "transactions/exact_integers/till.parquet", pa.schema(
        [("customer_id", pa.uint64()), ("transaction_date", pa.string()), ("transaction_amount", pa.float64())]),
        source="transactions")
    f.good(txn(big + 1, amount=5.0))
    f.good(txn(big + 2, amount=5.0))
    f.bad(txn(None, amount=5.0), "missing customer_id")


_landing_formats()
_malformed_lines()
_wrong_types()
_missing_fields()
_impossible_dates()
_negative_amounts()
_absurd_values()
_huge_lines()
_wrong_encodings()
_empty_and_header_only()
_boms()
_duplicates()
_unstorable_text()
_unreadable_files()
_valid_edge_cases()

assert len({c.name for c in CASES}) == len(CASES), "case names are unique"
