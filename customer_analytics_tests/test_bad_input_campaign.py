"""The bad-input campaign (issue 6): garbage in the landing folder never crashes a load, never loses a record.

* The corpus (`bad_inputs/`): every class of bad input, mixed with valid records, loaded
  through `load_events_month` on SQLite and on the real PostgreSQL. Each bad record must be
  quarantined with its reason, each valid one loaded with exactly its values, and the counts
  must reconcile: records read = loaded + rejected + duplicates.
* Property-based fuzzing (hypothesis): random records, valid and invalid field by field,
  written as NDJSON and CSV, against an oracle written from the README's rules.
* Landing-folder trouble: a file that disappears or is cut short while it is read fails the
  load with a message naming it, and the month keeps its previous contents.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from customer_analytics import loading
from customer_analytics.loading import LandingFileChanged, load_events_month, load_profiles
from customer_analytics.resources.tables import customer_profiles, landing_files, raw_events, rejected_events
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.transforms.fields import ZERO_WIDTH
from customer_analytics_tests.bad_inputs.corpus import (
    CASES,
    FIRST_MONTH,
    LAST_MONTH,
    MONTH,
    REQUIRED_CLASSES,
    Case,
    write_corpus,
)
from customer_analytics_tests.conftest import _drop_schema, _fresh_postgres, _postgres_or_skip
from customer_analytics_tests.landing_builder import event, write_csv, write_ndjson

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def backend(kind: str, folder: Path):
    """A fresh warehouse: an SQLite file, or a schema of its own on the test PostgreSQL (which must answer under CI)."""
    if kind == "sqlite":
        warehouse = Warehouse(f"sqlite:///{folder / 'warehouse.db'}")
        try:
            yield warehouse
        finally:
            warehouse.engine.dispose()
    else:
        warehouse, schema = _fresh_postgres(_postgres_or_skip())
        try:
            yield warehouse
        finally:
            _drop_schema(warehouse, schema)


def load(warehouse: Warehouse, landing: Path, month: date = MONTH) -> loading.LoadReport:
    return load_events_month(warehouse, str(landing), month, first_month=FIRST_MONTH, last_month=LAST_MONTH,
                             run_id="bad-input-campaign")


def matches(actual, expected) -> bool:
    """A stored value equals what the record says (timestamps as UTC instants, numbers exactly)."""
    if expected is None:
        return actual is None or (not isinstance(actual, str) and pd.isna(actual))
    if actual is None or (not isinstance(actual, str) and pd.isna(actual)):
        return False
    if isinstance(expected, pd.Timestamp):
        stamp = pd.Timestamp(actual)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp == expected
    if isinstance(expected, float):
        return float(actual) == expected
    if isinstance(expected, int):
        return int(actual) == expected
    return actual == expected


def mismatches(row: dict, expected: dict) -> dict:
    def short(value):
        return value[:80] + f"… ({len(value)} chars)" if isinstance(value, str) and len(value) > 80 else value

    return {name: (short(row.get(name)), short(value)) for name, value in expected.items() if not matches(row.get(name), value)}


# -- the corpus --------------------------------------------------------------------------
def uncovered(cases: list[Case]) -> dict[str, set[str]]:
    """Required (class, format) pairs no case covers."""
    missing = {}
    for name, formats in REQUIRED_CLASSES.items():
        covered = {fmt for case in cases if name in case.classes for fmt in case.formats}
        if formats - covered:
            missing[name] = formats - covered
    return missing


def test_the_corpus_covers_every_required_class_in_every_format_where_it_makes_sense():
    assert uncovered(CASES) == {}
    # The check has teeth: drop the cases of one class and it names that class.
    without_boms = [case for case in CASES if "boms" not in case.classes]
    assert uncovered(without_boms) == {"boms": {"ndjson", "csv"}}
    classes = {name for case in CASES for name in case.classes}
    assert len(classes) >= len(REQUIRED_CLASSES) + 4, "and more than the required ones"
    assert all(case.loaded for case in CASES), "every case mixes valid records with its bad ones"
    assert sum(case.rejected_records + len(case.unreadable) for case in CASES) >= 150


def test_huge_lines_are_generated_never_committed():
    folder = Path(__file__).parent / "bad_inputs"
    assert all(path.stat().st_size < 200_000 for path in folder.rglob("*") if path.is_file())
    assert {case.name for case in CASES if case.huge} == {"huge_lines_ndjson", "huge_lines_csv"}


@dataclass
class CampaignRun:
    kind: str
    warehouse: Warehouse
    report: loading.LoadReport
    events: pd.DataFrame
    rejections: pd.DataFrame
    manifest: pd.DataFrame


@pytest.fixture(scope="module")
def corpus_landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs") / "landing"
    write_corpus(root)
    return root


@pytest.fixture(scope="module", params=BACKENDS)
def campaign(request, corpus_landing, tmp_path_factory):
    with backend(request.param, tmp_path_factory.mktemp(request.param)) as warehouse:
        report = load(warehouse, corpus_landing)
        yield CampaignRun(
            request.param, warehouse, report,
            warehouse.read_frame(select(raw_events)),
            warehouse.read_frame(select(rejected_events)),
            warehouse.read_frame(select(landing_files)),
        )


def test_the_whole_corpus_loads_and_reconciles(campaign):
    report = campaign.report
    assert report.records_read == report.loaded + report.rejected + report.duplicates
    assert report.loaded == sum(len(case.loaded) for case in CASES) == len(campaign.events)
    assert report.rejected == sum(case.rejected_records for case in CASES)
    assert report.duplicates == sum(case.duplicates for case in CASES)
    assert report.other_months == sum(case.other_months for case in CASES)
    assert report.records_read == sum(case.records_read for case in CASES)
    unreadable = {name: reason for case in CASES for name, reason in case.unreadable.items()}
    assert set(report.unreadable_files) == set(unreadable)
    assert len(campaign.rejections) == report.rejected + len(unreadable)
    # Every quarantined row says why, and (for a record) what it was.
    assert all(reason.strip() for reason in campaign.rejections["reason"])
    records = campaign.rejections[campaign.rejections["record_number"] > 0]
    assert all(raw.strip() for raw in records["raw_record"])
    assert not campaign.rejections.duplicated(["source_file", "record_number"]).any()
    assert campaign.events["event_month"].map(lambda m: pd.Timestamp(m) == pd.Timestamp(MONTH)).all()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_quarantines_its_bad_records_and_loads_its_valid_ones_unchanged(campaign, case):
    files = set(case.stored_files)
    events = campaign.events[campaign.events["source_file"].isin(files)]
    rejections = campaign.rejections[campaign.rejections["source_file"].isin(files)]

    # Valid records: exactly these rows, each with the values its record holds.
    expected = {(l.file, l.record): l.values for l in case.loaded}
    rows = {(r["source_file"], int(r["source_record"])): r for r in events.to_dict("records")}
    assert set(rows) == set(expected), "loaded records"
    wrong = {key: mismatches(rows[key], values) for key, values in expected.items() if mismatches(rows[key], values)}
    assert not wrong, f"valid records changed on the way in: {wrong}"

    # Bad records: exactly these, each with its reason (and its raw text, where knowable).
    quarantined = {(q.file, q.record): q for q in case.quarantined}
    found = {(r["source_file"], int(r["record_number"])): r for r in rejections.to_dict("records")}
    assert set(found) == set(quarantined), "quarantined records"
    for key, want in quarantined.items():
        got = found[key]
        assert want.reason in got["reason"], f"{key}: reason {got['reason'][:300]!r} should say {want.reason!r}"
        if want.record == 0:
            assert got["reason"].startswith("file could not be read: ") and got["raw_record"] == ""
            assert want.reason in campaign.report.unreadable_files[key[0]]
        else:
            assert got["raw_record"].strip(), f"{key}: the raw record is kept"
            if want.raw is not None:
                assert got["raw_record"] == want.raw, key
        assert "\x00" not in got["reason"] + got["raw_record"]

    # Per file, from the manifest of files read: records = loaded + rejected + duplicates (+ other months).
    readable = files - set(case.unreadable)
    manifest = campaign.manifest[campaign.manifest["source_file"].isin(readable)]
    assert set(manifest["source_file"]) == readable, "every readable file is in the manifest"
    assert set(case.unreadable).isdisjoint(campaign.manifest["source_file"]), "an unreadable file is not recorded as read"
    read = int(manifest["records"].sum())
    assert read == len(events) + (len(rejections) - len(case.unreadable)) + case.duplicates + case.other_months


# -- property-based fuzzing --------------------------------------------------------------
class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()  # the field is not written at all
FUZZ_FIELDS = ("event_id", "customer_id", "event_type", "event_timestamp", "price", "quantity", "country", "page_url")
TEXT_FIELDS = ("event_id", "customer_id", "event_type", "country", "page_url")
MAX_ID = 500
UTC = timezone.utc
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?")

# Text without whitespace or control characters at its ends (the loader trims; what counts as
# whitespace at the edges of Unicode is not the contract's business), padded with plain blanks.
_core = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=8)
_padded = st.tuples(st.sampled_from(["", " ", "  ", "\t"]), _core, st.sampled_from(["", " ", "\t "])).map("".join)
TEXT = st.one_of(
    st.just(ABSENT), st.none(), st.sampled_from(["", "   ", "\t"]),  # missing
    st.from_regex(r"[a-z0-9_-]{1,10}", fullmatch=True), _padded,  # text
    st.integers(-10**9, 10**12),  # a number where text belongs is its text
    st.sampled_from(["a\x00b", "\x00", "x" * (MAX_ID + 1), "y" * MAX_ID]),  # NUL; one over and exactly at the id limit
    st.sampled_from([True, False, {"k": 1}, [1, 2], [], {}]),  # wrong JSON types
    st.sampled_from(["c\ud800", "\udfff"]),  # half a UTF-16 pair
)
EVENT_TYPES = st.one_of(st.sampled_from(["purchase", " purchase ", "purchase", "page_view", "add_to_cart", "Purchase"]), TEXT)
_instants = st.datetimes(min_value=datetime(2024, 12, 1), max_value=datetime(2025, 4, 30, 23, 59, 59),
                         timezones=st.sampled_from([UTC, *(timezone(timedelta(hours=h)) for h in (1, -5, 5.5, 14, -12))]))


@st.composite
def _stamp_text(draw):
    moment = draw(_instants)
    style = draw(st.sampled_from(["plain", "z", "offset", "micro", "date"]))
    if style == "plain" or style == "date":  # no zone: UTC
        moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%d") if style == "date" else moment.strftime("%Y-%m-%d %H:%M:%S")
    if style == "z":
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat(timespec="microseconds" if style == "micro" else "seconds")


STAMPS = st.one_of(
    _stamp_text(), _stamp_text(),
    st.sampled_from(["2025-02-30 10:00:00", "2025-13-01 00:00:00", "0000-01-01 00:00:00", "2025-01-10 24:00:01",
                     "2025-01-10T10:00:00+25:00", "2024-12-31T23:59:60Z", "10/01/2025", "not a date", "9999-12-31 23:59:59",
                     "2019-06-01 10:00:00", "2030-01-01T00:00:00Z"]),
    st.just(ABSENT), st.none(), st.just(""), st.integers(0, 2 * 10**9), st.booleans(), st.just({"d": 1}),
)
_amounts = st.floats(min_value=0, max_value=1e10, allow_nan=False)
PRICES = st.one_of(
    st.just(ABSENT), st.none(), st.just(""),
    _amounts, st.integers(0, 10**10), _amounts.map(repr), st.integers(0, 10**6).map(lambda n: f" {n} "),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False), st.floats(min_value=1.0000001e10, allow_infinity=False),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), "abc", "1,5", "NaN", "inf", "-1", True, {"a": 1}, [1]]),
)
QUANTITIES = st.one_of(
    st.just(ABSENT), st.none(), st.integers(0, 10**6), st.integers(0, 10**6).map(float), st.integers(0, 10**6).map(str),
    st.integers(-10**6, -1), st.integers(10**6 + 1, 10**12), st.sampled_from([1.5, 0.25, "2.5", "two", float("nan"), "", False, [3]]),
)
RECORD = st.fixed_dictionaries({
    "event_id": st.one_of(TEXT, st.sampled_from(["dup-1", "dup-2", "dup-3"])),  # a small pool: redeliveries
    "customer_id": TEXT, "event_type": EVENT_TYPES, "event_timestamp": STAMPS,
    "price": PRICES, "quantity": QUANTITIES, "country": TEXT, "page_url": TEXT,
})


@st.composite
def record_lists(draw):
    """Records, some of them exact or altered redeliveries of earlier ones."""
    records = draw(st.lists(RECORD, min_size=1, max_size=14))
    for _ in range(draw(st.integers(0, 3))):
        earlier = dict(draw(st.sampled_from(records)))
        if draw(st.booleans()):
            earlier["price"] = draw(PRICES)
        records.insert(draw(st.integers(0, len(records))), earlier)
    return records


def csv_text(value) -> str:
    """How a value reaches a CSV file: as text."""
    if value is ABSENT or value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def text_verdict(value, *, limit: int | None = None):
    """('ok', text) | ('missing', None) | ('bad', None), by the README's rules for a text field."""
    if value is ABSENT or value is None:
        return "missing", None
    if isinstance(value, (bool, dict, list, float)):
        return "bad", None  # floats here are only NaN/Infinity literals
    text = str(value).strip(" \t" + ZERO_WIDTH)  # README: zero-width characters at the ends are trimmed too
    if not text:
        return "missing", None
    if "\x00" in text or _has_surrogate(text) or (limit is not None and len(text) > limit):
        return "bad", None
    return "ok", text


def number_verdict(value):
    """('absent'|'ok'|'bad', float)."""
    if value is ABSENT or value is None:
        return "absent", None
    if isinstance(value, (bool, dict, list)):
        return "bad", None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = value.strip()
        if not text:
            return "absent", None
        if not NUMBER.fullmatch(text):
            return "bad", None
        number = float(text)
    return ("ok", number) if math.isfinite(number) else ("bad", None)


def stamp_verdict(value):
    """('ok', UTC datetime) or ('bad', None)."""
    if not isinstance(value, str) or not STAMP.fullmatch(value.strip()):
        return "bad", None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return "bad", None
    return "ok", moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class Expect:
    kind: str  # load, reject, duplicate, other_month
    values: dict | None = None


def oracle(records: list[dict]) -> list[Expect]:
    """What loading January must do with each record, written from the README, not from the loader."""
    first_deliveries: dict[str, tuple] = {}  # event_id -> content of its first valid delivery in an in-range month
    out = []
    for record in records:
        if any(isinstance(value, str) and _has_surrogate(value) for value in record.values()):
            out.append(Expect("reject"))  # not text at all: refused as it is read, before any month is known
            continue
        verdicts = {name: text_verdict(record[name], limit=MAX_ID if name in ("event_id", "customer_id") else None)
                    for name in TEXT_FIELDS}
        stamp_ok, moment = stamp_verdict(record["event_timestamp"])
        price_ok, price = number_verdict(record["price"])
        quantity_ok, quantity = number_verdict(record["quantity"])
        month = date(moment.year, moment.month, 1) if stamp_ok == "ok" else None
        in_range = month is not None and FIRST_MONTH <= month <= LAST_MONTH
        purchase = verdicts["event_type"] == ("ok", "purchase")
        valid = (
            in_range
            and all(verdicts[name][0] == "ok" for name in ("event_id", "customer_id", "event_type"))
            and all(verdicts[name][0] != "bad" for name in ("country", "page_url"))
            and price_ok != "bad" and (price is None or 0 <= price <= 1e10) and not (purchase and price_ok == "absent")
            and quantity_ok != "bad" and (quantity is None or (0 <= quantity <= 1e6 and quantity == math.floor(quantity)))
        )
        values = content = None
        if valid:
            qty = int(quantity) if quantity is not None else (1 if purchase else None)
            values = {
                "event_id": verdicts["event_id"][1], "customer_id": verdicts["customer_id"][1],
                "event_type": verdicts["event_type"][1], "event_timestamp": pd.Timestamp(moment),
                "price": price, "quantity": qty, "revenue": price * qty if purchase else 0.0,
                "country": verdicts["country"][1], "page_url": verdicts["page_url"][1],
            }
            content = tuple(repr(v) if isinstance(v, float) else v for k, v in values.items() if k not in ("event_id", "revenue"))
        if in_range and month != MONTH:
            out.append(Expect("other_month"))  # valid or not, its own partition's load deals with it
        elif not valid:
            out.append(Expect("reject"))
        elif values["event_id"] not in first_deliveries:
            out.append(Expect("load", values))
        else:
            out.append(Expect("duplicate" if first_deliveries[values["event_id"]] == content else "reject"))
        if valid:
            first_deliveries.setdefault(values["event_id"], content)
    return out


def write_fuzz_file(root: Path, name: str, records: list[dict], fmt: str, ascii_json: bool) -> str:
    path = root / "events" / f"{name}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "ndjson":
        lines = [json.dumps({k: v for k, v in r.items() if v is not ABSENT}, ensure_ascii=ascii_json) for r in records]
        path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass"))
    else:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FUZZ_FIELDS)
        writer.writerows([[r[name] for name in FUZZ_FIELDS] for r in records])
        path.write_bytes(out.getvalue().encode("utf-8"))
    return f"events/{name}.{fmt}"


def check_fuzzed_load(warehouse: Warehouse, root: Path, records: list[dict], fmt: str, ascii_json: bool = True) -> None:
    if fmt == "csv":
        # CSV carries text: what the oracle judges is the text written, and no lone surrogate can be written as UTF-8.
        records = [{k: csv_text(v) for k, v in r.items()} for r in records if not any(
            isinstance(v, str) and _has_surrogate(v) for v in r.values())]
        if not records:
            return
    name = f"fuzz-{next(_counter)}"
    landing = root / name
    source_file = write_fuzz_file(landing, name, records, fmt, ascii_json)
    report = load(warehouse, landing)  # no exception at all: bad input is data, not an error
    expected = oracle(records)
    first_record = 1 if fmt == "ndjson" else 2  # a CSV header is line 1

    assert report.records_read == report.loaded + report.rejected + report.duplicates
    assert report.records_scanned == len(records) and not report.unreadable_files
    counts = {kind: sum(e.kind == kind for e in expected) for kind in ("load", "reject", "duplicate", "other_month")}
    assert (report.loaded, report.rejected, report.duplicates, report.other_months) == (
        counts["load"], counts["reject"], counts["duplicate"], counts["other_month"]), expected

    events = warehouse.read_frame(select(raw_events).where(raw_events.c.source_file == source_file))
    rows = {int(r["source_record"]): r for r in events.to_dict("records")}
    loaded = {first_record + i: e.values for i, e in enumerate(expected) if e.kind == "load"}
    assert set(rows) == set(loaded)
    for number, values in loaded.items():
        assert not mismatches(rows[number], values), (number, mismatches(rows[number], values))
    rejected = warehouse.read_frame(select(rejected_events).where(rejected_events.c.source_file == source_file))
    assert set(rejected["record_number"].astype(int)) == {first_record + i for i, e in enumerate(expected) if e.kind == "reject"}
    assert all(reason.strip() for reason in rejected["reason"]) and all(rejected["raw_record"])


_counter = itertools.count()


@pytest.fixture(scope="module")
def fuzz_sqlite(tmp_path_factory):
    with backend("sqlite", tmp_path_factory.mktemp("fuzz")) as warehouse:
        yield warehouse, tmp_path_factory.mktemp("fuzz_landing")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_lists(), ascii_json=st.booleans())
def test_fuzzed_ndjson_records_are_loaded_intact_or_quarantined_with_a_reason(fuzz_sqlite, records, ascii_json):
    warehouse, root = fuzz_sqlite
    check_fuzzed_load(warehouse, root, records, "ndjson", ascii_json)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_lists())
def test_fuzzed_csv_records_are_loaded_intact_or_quarantined_with_a_reason(fuzz_sqlite, records):
    warehouse, root = fuzz_sqlite
    check_fuzzed_load(warehouse, root, records, "csv")


@pytest.mark.postgres
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=record_lists(), fmt=st.sampled_from(["ndjson", "csv"]))
def test_fuzzed_records_on_postgres(pg_warehouse, tmp_path, records, fmt):
    check_fuzzed_load(pg_warehouse, tmp_path, records, fmt, ascii_json=False)


def test_the_oracle_knows_the_contract():
    """The fuzzing oracle itself, on records whose fate the README states outright."""
    base = {"event_id": "o1", "customer_id": "c1", "event_type": "purchase", "event_timestamp": "2025-01-10 10:00:00",
            "price": 2.5, "quantity": ABSENT, "country": ABSENT, "page_url": ABSENT}
    kinds = [e.kind for e in oracle([
        base, base, {**base, "price": 3.0}, {**base, "event_id": "o2", "price": ABSENT},
        {**base, "event_id": "o3", "event_timestamp": "2025-02-03 00:00:00"}, {**base, "event_id": "o4", "quantity": 1.5},
        {**base, "event_id": "o5", "event_timestamp": "2025-02-30 00:00:00"}, {**base, "event_id": " o6 ", "price": " 7 "},
    ])]
    assert kinds == ["load", "duplicate", "reject", "reject", "other_month", "reject", "reject", "load"]
    assert oracle([base])[0].values["quantity"] == 1 and oracle([base])[0].values["revenue"] == 2.5


# -- landing-folder trouble --------------------------------------------------------------
@pytest.fixture
def month_landing(tmp_path):
    root = tmp_path / "landing"
    write_ndjson(root / "events" / "a.ndjson", [event(f"a{i}", "c1", "2025-01-10 10:00:00", price=1.0 + i) for i in range(40)])
    write_ndjson(root / "events" / "b.ndjson", [event("b1", "c2", "2025-01-11 10:00:00", price=5.0), '{"broken'])
    write_csv(root / "transactions" / "till.csv", ["customer_id", "transaction_date", "transaction_amount"],
              [["c3", "2025-01-12", "9.5"]])
    return root


def snapshot(warehouse: Warehouse) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    events = warehouse.read_frame(select(raw_events).order_by(raw_events.c.event_id))
    rejected = warehouse.read_frame(select(rejected_events).order_by(rejected_events.c.source_file, rejected_events.c.record_number))
    manifest = warehouse.read_frame(select(landing_files).order_by(landing_files.c.source_file))
    return events, rejected, manifest


def assert_unchanged(before, after) -> None:
    for old, new in zip(before, after):
        pd.testing.assert_frame_equal(old, new)


def troubled_reader(target: str, trouble, *, after_chunks: int = 1, **options):
    """`read_records`, but `trouble(path)` strikes `target` after it has yielded `after_chunks` chunks."""
    real = loading.read_records

    def read(file, **kwargs):
        chunks = real(file, **{**kwargs, **options})
        if file.name != target:
            yield from chunks
            return
        if after_chunks == 0:
            trouble(file.path)
        for count, chunk in enumerate(chunks, start=1):
            yield chunk
            if count == after_chunks:
                trouble(file.path)

    return read


def _truncate(path: Path) -> None:
    with open(path, "r+b") as stream:
        stream.truncate(max(path.stat().st_size // 3, 1))


def _grow(path: Path) -> None:
    with open(path, "ab") as stream:
        stream.write(b'{"event_id": "late", "customer_id": "c9", "event_type": "view", "event_timestamp": "2025-01-20 00:00:00"}\n')


TROUBLES = {
    "deleted before it is opened": ("events/b.ndjson", Path.unlink, 0, {}, "disappeared"),
    "deleted while it is read": ("events/a.ndjson", Path.unlink, 1, {"chunk_bytes": 2048}, "disappeared"),
    "cut short while it is read": ("events/a.ndjson", _truncate, 1, {"chunk_bytes": 2048}, "changed while it was being read"),
    "growing while it is read": ("events/a.ndjson", _grow, 1, {"chunk_bytes": 2048}, "changed while it was being read"),
    "legacy CSV deleted while read": ("transactions/till.csv", Path.unlink, 1, {}, "disappeared"),
}


@pytest.mark.parametrize("trouble", list(TROUBLES), ids=list(TROUBLES))
def test_a_landing_file_in_trouble_fails_the_load_naming_it_and_the_month_keeps_its_rows(warehouse, month_landing, monkeypatch, trouble):
    target, strike, after, options, words = TROUBLES[trouble]
    first = load(warehouse, month_landing)
    assert first.loaded == 42 and first.rejected == 1
    before = snapshot(warehouse)
    # New deliveries since: a load that went through would change the month.
    write_ndjson(month_landing / "events" / "c.ndjson", [event("c1", "c4", "2025-01-13 10:00:00")])
    monkeypatch.setattr(loading, "read_records", troubled_reader(target, strike, after_chunks=after, **options))
    with pytest.raises(LandingFileChanged) as failure:
        load(warehouse, month_landing)
    message = str(failure.value)
    assert target in message and words in message and "2025-01" in message
    assert_unchanged(before, snapshot(warehouse))


def test_a_gzip_file_cut_while_read_is_a_change_not_a_corrupt_file(warehouse, tmp_path, monkeypatch):
    root = tmp_path / "landing"
    lines = [event(f"g{i}", "c1", "2025-01-10 10:00:00", price=float(i), session_id=uuid.uuid4().hex) for i in range(400)]
    write_ndjson(root / "events" / "g.ndjson.gz", lines, gz=True)
    load(warehouse, root)
    before = snapshot(warehouse)
    monkeypatch.setattr(loading, "read_records", troubled_reader("events/g.ndjson.gz", _truncate, chunk_bytes=16384))
    with pytest.raises(LandingFileChanged, match=r"events/g\.ndjson\.gz.*changed while it was being read"):
        load(warehouse, root)
    assert_unchanged(before, snapshot(warehouse))


def test_a_parquet_file_cut_while_read_fails_cleanly(warehouse, tmp_path, monkeypatch):
    """Read, not memory-mapped: a mapped file cut short would kill the process with SIGBUS instead."""
    root = tmp_path / "landing"
    (root / "events").mkdir(parents=True)
    table = pa.Table.from_pylist([event(f"p{i}", "c1", "2025-01-10 10:00:00", price=float(i), session_id=uuid.uuid4().hex)
                                  for i in range(1_500)])
    pq.write_table(table, root / "events" / "p.parquet", row_group_size=500)
    load(warehouse, root)
    before = snapshot(warehouse)
    monkeypatch.setattr(loading, "read_records", troubled_reader("events/p.parquet", _truncate, chunk_rows=500))
    with pytest.raises(LandingFileChanged, match=r"events/p\.parquet"):
        load(warehouse, root)
    assert_unchanged(before, snapshot(warehouse))


def test_a_profile_file_in_trouble_fails_the_profile_load_and_keeps_the_profiles(warehouse, tmp_path, monkeypatch):
    root = tmp_path / "landing"
    header = ["customer_id", "email", "age", "city", "country", "last_login"]
    write_csv(root / "profiles" / "p.csv", header, [["c1", "a@x.io", "40", "Paris", "FR", "2025-01-01 00:00:00"]])
    write_csv(root / "profiles" / "q.csv", header, [["c2", "b@x.io", "30", "Rome", "IT", "2025-01-02 00:00:00"]])
    load_profiles(warehouse, str(root))
    profiles = warehouse.read_frame(select(customer_profiles).order_by(customer_profiles.c.customer_id))
    monkeypatch.setattr(loading, "read_records", troubled_reader("profiles/q.csv", Path.unlink, after_chunks=0))
    with pytest.raises(LandingFileChanged, match=r"profiles/q\.csv.*disappeared"):
        load_profiles(warehouse, str(root))
    after = warehouse.read_frame(select(customer_profiles).order_by(customer_profiles.c.customer_id))
    pd.testing.assert_frame_equal(profiles, after)
    assert list(after["customer_id"]) == ["c1", "c2"]


def test_through_dagster_the_run_fails_with_the_file_named_and_the_partition_kept(sqlite_warehouse, month_landing, monkeypatch):
    from customer_analytics.definitions import all_assets
    from customer_analytics.resources import LandingZone, WarehouseResource

    def materialize():
        return dg.materialize(all_assets, selection=["raw_events", "rejected_events"], partition_key="2025-01",
                              resources={"warehouse": WarehouseResource(db_url=sqlite_warehouse.url, db_schema=sqlite_warehouse.schema),
                                         "landing": LandingZone(landing_dir=str(month_landing))},
                              instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)

    assert materialize().success
    before = snapshot(sqlite_warehouse)
    write_ndjson(month_landing / "events" / "c.ndjson", [event("c1", "c4", "2025-01-13 10:00:00")])
    monkeypatch.setattr(loading, "read_records", troubled_reader("events/a.ndjson", _truncate, chunk_bytes=2048))
    result = materialize()
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert len(failures) == 1
    error, messages = failures[0].step_failure_data.error, []
    while error is not None:  # Dagster's wrapper, then the loader's own error as its cause
        messages.append(error.message)
        error = error.cause
    assert any(m.startswith("customer_analytics.loading.LandingFileChanged: 2025-01: landing file events/a.ndjson ")
               and "changed while it was being read" in m for m in messages), messages
    assert_unchanged(before, snapshot(sqlite_warehouse))


def test_a_broken_file_is_still_quarantined_and_does_not_stop_the_month(warehouse, month_landing):
    """The contrast: a file that is broken for good (not in passing) is recorded as unreadable; the others load."""
    (month_landing / "events" / "broken.ndjson.gz").write_bytes(gzip.compress(b'{"event_id": "z"}\n' * 100, mtime=0)[:-30])
    report = load(warehouse, month_landing)
    assert set(report.unreadable_files) == {"events/broken.ndjson.gz"} and report.loaded == 42
    rows = warehouse.read_frame(select(rejected_events).where(rejected_events.c.record_number == 0))
    assert list(rows["source_file"]) == ["events/broken.ndjson.gz"] and "gzip" in rows["reason"].iat[0]
