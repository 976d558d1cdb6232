"""The synthetic landing folder: deterministic, in the promised layout, and exactly as bad as
its summary says. Records are read back and judged by a validator written here, independently
of the generator's own code."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from customer_analytics.sample_data import EVENT_BAD_KINDS, EVENT_FIELDS, SampleSummary, generate_sample

RANGE_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
RANGE_END = datetime(2026, 1, 1, tzinfo=timezone.utc)
EVENT_TYPES = {"page_view", "product_view", "add_to_cart", "purchase", "search", "login"}
MALFORMED = object()  # a record that could not be read at all


# --- reading the landing folder back ------------------------------------------------------


def read_text_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8").split("\n")[:-1] if data else []


def read_event_file(path: Path) -> list[tuple[str, object]]:
    """(raw text, record) for every record; record is a dict or MALFORMED. Blank lines skipped."""
    if path.suffix == ".parquet":
        return [(json.dumps(r), r) for r in pq.read_table(path).to_pylist()]
    lines = [line for line in read_text_lines(path) if line.strip()]
    if path.suffix == ".csv":
        header, *rows = list(csv.reader(lines))
        assert header == list(EVENT_FIELDS)
        out = []
        for line, row in zip(lines[1:], rows):
            if len(row) != len(header):
                out.append((line, MALFORMED))
            else:
                out.append((line, {k: (v if v != "" else None) for k, v in zip(header, row)}))
        return out
    out = []
    for line in lines:
        try:
            out.append((line, json.loads(line)))
        except json.JSONDecodeError:
            out.append((line, MALFORMED))
    return out


def event_files(root: Path, *, redelivery: bool = False) -> list[Path]:
    return sorted(p for p in (root / "events").iterdir() if p.name.startswith("redelivery_") == redelivery)


def all_events(root: Path) -> list[tuple[Path, str, object]]:
    return [(path, raw, record) for path in event_files(root) for raw, record in read_event_file(path)]


def parse_timestamp(text) -> datetime | None:
    """The three promised shapes; anything else (or an impossible date) is None."""
    if not isinstance(text, str):
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", text):
            return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})", text):
            return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None
    return None


def as_number(value):
    """CSV delivers text: numbers become numbers, anything else stays as it was."""
    if isinstance(value, str):
        if re.fullmatch(r"-?\d+", value):
            return int(value)
        if re.fullmatch(r"-?\d+\.\d+", value):
            return float(value)
    return value


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def problem(record) -> str | None:
    """The contract's rules for one event record: None if valid, else the broken rule
    (named like the generator's bad kinds, which is what lets the counts be compared)."""
    if record is MALFORMED:
        return "malformed"
    if not isinstance(record.get("event_id"), str) or not re.fullmatch(r"E[0-9A-F]{12}", record["event_id"]):
        return "bad_event_id"
    if not record.get("customer_id"):
        return "missing_customer_id"
    if not record.get("event_type"):
        return "missing_event_type"
    if record.get("event_timestamp") in (None, ""):
        return "missing_event_timestamp"
    moment = parse_timestamp(record["event_timestamp"])
    if moment is None:
        return "unparsable_timestamp"
    if not RANGE_START <= moment < RANGE_END:
        return "out_of_range"
    if record["event_type"] not in EVENT_TYPES:
        return "unknown_event_type"
    price, quantity = as_number(record.get("price")), as_number(record.get("quantity"))
    if record["event_type"] == "purchase":
        if price is None:
            return "missing_price"
        if not is_number(price):
            return "non_numeric_price"
        if price <= 0:
            return "negative_price"
        if quantity is not None:
            if not is_number(quantity) or isinstance(quantity, float):
                return "non_integer_quantity"
            if quantity < 1:
                return "negative_quantity"
    else:
        if price is not None and (not is_number(price) or price <= 0):
            return "bad_non_purchase_price"
        if quantity is not None:
            return "quantity_on_non_purchase"
    return None


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, SampleSummary]:
    root = tmp_path_factory.mktemp("clean")
    return root, generate_sample(root, customers=400, seed=11, bad_rate=0.0)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[Path, SampleSummary]:
    root = tmp_path_factory.mktemp("dirty")
    return root, generate_sample(root, customers=400, seed=11, bad_rate=0.05)


@pytest.fixture(scope="module")
def clean_events(clean):
    return all_events(clean[0])


@pytest.fixture(scope="module")
def dirty_events(dirty):
    return all_events(dirty[0])


# --- determinism ----------------------------------------------------------------------------


def test_same_arguments_give_byte_identical_trees(tmp_path):
    first = generate_sample(tmp_path / "a", customers=150, seed=3, bad_rate=0.05)
    second = generate_sample(tmp_path / "b", customers=150, seed=3, bad_rate=0.05)
    hashes = tree_hashes(tmp_path / "a")
    assert hashes == tree_hashes(tmp_path / "b")
    assert first.bad_records == second.bad_records and first.files == second.files
    # Generating again into the same folder is allowed and rewrites the same bytes.
    generate_sample(tmp_path / "a", customers=150, seed=3, bad_rate=0.05)
    assert tree_hashes(tmp_path / "a") == hashes


def test_another_seed_gives_other_data(tmp_path):
    generate_sample(tmp_path / "a", customers=150, seed=3, bad_rate=0.0)
    generate_sample(tmp_path / "b", customers=150, seed=4, bad_rate=0.0)
    a, b = tree_hashes(tmp_path / "a"), tree_hashes(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[path] != b[path] for path in a if path.startswith("events/"))
    ids_a = {r["event_id"] for _, _, r in all_events(tmp_path / "a")}
    ids_b = {r["event_id"] for _, _, r in all_events(tmp_path / "b")}
    assert len(ids_a & ids_b) < 0.01 * len(ids_a)


def test_gzip_header_carries_no_name_or_time(clean):
    root, _ = clean
    gz_files = list((root / "events").glob("*.jsonl.gz"))
    assert gz_files
    for path in gz_files:
        header = path.read_bytes()[:10]
        assert header[:2] == b"\x1f\x8b"
        assert header[3] & 0x08 == 0, "FNAME flag set"
        assert header[4:8] == b"\x00\x00\x00\x00", "mtime is not 0"


# --- layout and formats ---------------------------------------------------------------------


def test_layout_and_formats(clean):
    root, summary = clean
    names = sorted(p.name for p in (root / "events").iterdir())
    assert {n.split(".", 1)[1] for n in names} == {"ndjson", "jsonl.gz", "parquet", "csv"}
    plain = [n for n in names if n.endswith(".ndjson") and not n.startswith("redelivery_")]
    assert len(plain) > len(names) / 3, "events should be mostly NDJSON"
    assert sorted(p.name for p in (root / "transactions").iterdir()) == ["legacy_2025.csv", "legacy_extra.ndjson"]
    assert sorted(p.name for p in (root / "profiles").iterdir()) == ["customers.csv", "demographics.ndjson", "updates.ndjson"]
    assert not list(root.rglob(".*")), "temporary files left behind"
    assert summary.redelivery_file == "events/redelivery_2025-12.ndjson"


def test_every_line_parses_when_nothing_is_corrupted(clean):
    root, _ = clean
    for path in [*event_files(root), *event_files(root, redelivery=True), *root.glob("*/*.ndjson")]:
        if path.suffix in (".ndjson", ".gz"):
            for line in read_text_lines(path):
                if line.strip():
                    assert isinstance(json.loads(line), dict), (path, line)


def test_records_carry_exactly_the_contract_fields(clean_events):
    for path, _, record in clean_events:
        if path.suffix in (".ndjson", ".gz") and record["event_type"] == "purchase" and "quantity" not in record:
            continue  # a purchase without quantity (meaning 1) may leave the key out
        assert set(record) == set(EVENT_FIELDS), (path, record)
    purchases = [r for _, _, r in clean_events if r["event_type"] == "purchase"]
    assert any(r.get("quantity") is None for r in purchases), "no purchase without a quantity"
    views = [r for _, _, r in clean_events if r["event_type"] == "page_view"]
    assert all(r["price"] is None and r["quantity"] is None for r in views)


def test_parquet_reads_back_with_documented_types(clean):
    root, _ = clean
    files = list((root / "events").glob("*.parquet"))
    assert files
    for path in files:
        schema = pq.read_schema(path)
        assert schema.names == list(EVENT_FIELDS)
        for field in schema:
            expected = {"price": pa.float64(), "quantity": pa.int64()}.get(field.name, pa.string())
            assert field.type == expected, field
        table = pq.read_table(path)
        assert table.num_rows > 0 and table.column("quantity").null_count > 0


def test_one_file_holds_two_months(clean, clean_events):
    _, summary = clean
    spanning = [f for f in summary.files if len(f.months) == 2]
    assert [f.path for f in spanning] == ["events/2025-05_2025-06.ndjson"]
    months = {parse_timestamp(r["event_timestamp"]).strftime("%Y-%m") for p, _, r in clean_events if p.name == "2025-05_2025-06.ndjson"}
    assert months == {"2025-05", "2025-06"}


# --- the summary matches the disk -----------------------------------------------------------


def count_records(path: Path) -> int:
    if path.suffix == ".parquet":
        return pq.read_metadata(path).num_rows
    lines = [line for line in read_text_lines(path) if line.strip()]
    return len(lines) - 1 if path.suffix == ".csv" else len(lines)


@pytest.mark.parametrize("sample", ["clean", "dirty"])
def test_summary_counts_match_the_files(sample, request):
    root, summary = request.getfixturevalue(sample)
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert [f.path for f in summary.files] == on_disk
    for f in summary.files:
        assert count_records(root / f.path) == f.records, f.path
    events = [f for f in summary.files if f.path.startswith("events/") and f.path != summary.redelivery_file]
    assert summary.events == sum(f.records for f in events)
    assert summary.duplicate_deliveries == summary.file(summary.redelivery_file).records > 0
    assert summary.transactions == sum(f.records for f in summary.files if f.path.startswith("transactions/"))
    assert summary.profiles == summary.file("profiles/customers.csv").records
    assert summary.profile_updates == summary.file("profiles/updates.ndjson").records
    assert summary.demographics == summary.file("profiles/demographics.ndjson").records
    assert sum(f.bad_records for f in summary.files) == summary.bad_total
    text = summary.to_text()
    assert "events/2025-04.csv" in text and f"{summary.events:,}" in text


def test_purchases_and_orders_match_the_clean_files(clean, clean_events):
    _, summary = clean
    purchases = [r for _, _, r in clean_events if r["event_type"] == "purchase"]
    assert summary.purchases == len(purchases) > 0
    assert summary.orders == len({r["session_id"] for r in purchases})
    assert summary.profiles == summary.customers  # no id-less profile row without bad records


def test_blank_lines_are_not_records(clean):
    root, summary = clean
    with_blanks = [p for p in event_files(root) if p.suffix == ".ndjson" and "" in read_text_lines(p)]
    assert [p.name for p in with_blanks] == ["2025-01.ndjson"]
    lines = read_text_lines(with_blanks[0])
    assert lines.count("") >= 1
    assert summary.file("events/2025-01.ndjson").records == len(lines) - lines.count("")


# --- validity and bad records ---------------------------------------------------------------


def test_clean_sample_has_no_bad_records(clean, clean_events):
    _, summary = clean
    assert summary.bad_total == 0
    problems = Counter(problem(r) for _, _, r in clean_events)
    assert problems == Counter({None: len(clean_events)})
    ids = [r["event_id"] for _, _, r in clean_events]
    assert len(ids) == len(set(ids)) == summary.events


def test_bad_records_found_match_the_summary_kind_by_kind(dirty, dirty_events):
    _, summary = dirty
    found = Counter(problem(r) for _, _, r in dirty_events)
    del found[None]
    expected = Counter({kind: summary.bad_count("events", kind) for kind in EVENT_BAD_KINDS})
    assert +found == +expected
    assert sum(found.values()) == summary.bad_count("events") > 0.03 * summary.events
    assert all(expected[kind] > 0 for kind in EVENT_BAD_KINDS), expected


def test_bad_rate_does_not_change_the_world(clean_events, dirty_events):
    clean_by_id = {r["event_id"]: raw for _, raw, r in clean_events}
    intact = [(r["event_id"], raw) for _, raw, r in dirty_events if problem(r) is None]
    assert len(clean_by_id) == len(dirty_events) and len(intact) > 0.9 * len(clean_by_id)
    assert all(clean_by_id[event_id] == raw for event_id, raw in intact)


def test_corrupted_records_keep_their_event_id(dirty_events):
    broken = [(raw, r) for _, raw, r in dirty_events if problem(r) is not None]
    assert broken
    for raw, record in broken:
        event_id = record["event_id"] if record is not MALFORMED else re.match(r'(?:\{"event_id":")?(E[0-9A-F]{12})', raw).group(1)
        assert re.fullmatch(r"E[0-9A-F]{12}", event_id)


def test_redelivery_repeats_valid_lines_byte_for_byte(dirty):
    root, summary = dirty
    repeated = read_text_lines(root / summary.redelivery_file)
    original = set(read_text_lines(root / "events/2025-12.ndjson"))
    assert repeated and all(line in original for line in repeated)
    assert all(problem(json.loads(line)) is None for line in repeated)
    december = summary.file("events/2025-12.ndjson").records
    assert 0.01 * december <= len(repeated) <= 0.03 * december


def test_timestamps_with_offsets_are_true_instants_in_range(clean_events):
    shapes = Counter()
    for path, _, record in clean_events:
        text = record["event_timestamp"]
        shapes["Z" if text.endswith("Z") else "offset" if re.search(r"[+-]\d{2}:\d{2}$", text) else "plain"] += 1
        assert RANGE_START <= parse_timestamp(text) < RANGE_END
    assert shapes["Z"] > 0 and shapes["offset"] > 0 and shapes["plain"] > 0.8 * sum(shapes.values())
    # Files are written in event order, so converted instants never go backwards in a file;
    # a wrongly converted offset would show up as a step back in time.
    by_file: dict[Path, list[datetime]] = {}
    for path, _, record in clean_events:
        by_file.setdefault(path, []).append(parse_timestamp(record["event_timestamp"]))
    for path, moments in by_file.items():
        assert moments == sorted(moments), path
    local_dates_outside = [
        r for _, _, r in clean_events
        if re.search(r"[+-]\d{2}:\d{2}$", r["event_timestamp"]) and not r["event_timestamp"].startswith("2025")
    ]
    assert all(parse_timestamp(r["event_timestamp"]) >= RANGE_START for r in local_dates_outside)


def test_valid_purchases_have_positive_value_in_cents(dirty_events):
    purchases = [r for _, _, r in dirty_events if problem(r) is None and r["event_type"] == "purchase"]
    assert purchases
    for record in purchases:
        price = as_number(record["price"])
        quantity = as_number(record.get("quantity")) or 1
        assert price * quantity > 0
        assert abs(price * 100 - round(price * 100)) < 1e-6, price


def test_seasonality_peaks_in_november_and_december(clean_events, clean):
    _, summary = clean
    per_month = Counter(parse_timestamp(r["event_timestamp"]).month for _, _, r in clean_events if r["event_type"] == "purchase")
    assert per_month[12] > per_month[10] and per_month[11] > per_month[9]
    customers = Counter(r["customer_id"] for _, _, r in clean_events if r["event_type"] == "purchase")
    assert len(customers) < summary.customers, "somebody should only browse"
    assert max(customers.values()) > 3 * min(customers.values()), "purchase counts should vary"


# --- transactions and profiles --------------------------------------------------------------


def read_transactions(root: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO((root / "transactions/legacy_2025.csv").read_text())))
    rows += [json.loads(line) for line in read_text_lines(root / "transactions/legacy_extra.ndjson")]
    return rows


@pytest.mark.parametrize("sample", ["clean", "dirty"])
def test_transactions(sample, request):
    root, summary = request.getfixturevalue(sample)
    rows = read_transactions(root)
    assert len(rows) == summary.transactions > 0
    negative = [r for r in rows if float(r["transaction_amount"]) <= 0]
    unparsable = [r for r in rows if parse_timestamp(r["transaction_date"]) is None]
    assert len(negative) == summary.bad_count("transactions", "negative_amount") == (sample == "dirty")
    assert len(unparsable) == summary.bad_count("transactions", "unparsable_date") == (sample == "dirty")
    good = [r for r in rows if r not in negative and r not in unparsable]
    assert all(RANGE_START <= parse_timestamp(r["transaction_date"]) < RANGE_END for r in good)
    assert all(re.fullmatch(r"-?\d+\.\d{2}", str(r["transaction_amount"])) or isinstance(r["transaction_amount"], float) for r in rows)
    twice = [key for key, n in Counter((r["customer_id"], r["transaction_date"], str(r["transaction_amount"])) for r in rows).items() if n == 2]
    assert len(twice) >= 2, "the legacy files should hold identical rows that are two purchases"


def test_profiles_updates_and_demographics(dirty):
    root, summary = dirty
    profiles = list(csv.DictReader(io.StringIO((root / "profiles/customers.csv").read_text())))
    assert sum(1 for p in profiles if not p["customer_id"]) == summary.bad_count("profiles", "missing_customer_id") == 1
    by_id = {p["customer_id"]: p for p in profiles if p["customer_id"]}
    assert len(by_id) == summary.customers
    for profile in by_id.values():
        signup = datetime.strptime(profile["signup_date"], "%Y-%m-%d").replace(tzinfo=timezone.utc)
        assert RANGE_START <= signup < RANGE_END
        assert signup.date() <= parse_timestamp(profile["last_login"]).date()
    updates = [json.loads(line) for line in read_text_lines(root / "profiles/updates.ndjson")]
    assert updates
    for update in updates:
        before = by_id[update["customer_id"]]
        assert parse_timestamp(update["last_login"]) > parse_timestamp(before["last_login"])
        assert update["city"] != before["city"] and update["country"] == before["country"]
        assert parse_timestamp(update["last_login"]) < RANGE_END
    demographics = [json.loads(line) for line in read_text_lines(root / "profiles/demographics.ndjson")]
    assert demographics and all(set(d) == {"customer_id", "age", "location"} for d in demographics)
    assert all(d["customer_id"] in by_id and isinstance(d["age"], int) for d in demographics)


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"customers": 0}, r"customers must be a whole number >= 1"),
        ({"customers": 2.5}, r"customers must be a whole number >= 1"),
        ({"months": 0}, r"months must be a whole number from 1 to 120"),
        ({"months": 121}, r"months must be a whole number from 1 to 120"),
        ({"start": "2025-13"}, r"start '2025-13' is not a month: use YYYY-MM"),
        ({"start": "2025-1"}, r"use YYYY-MM, e\.g\. 2025-01"),
        ({"start": "January"}, r"use YYYY-MM"),
        ({"bad_rate": -0.1}, r"bad_rate must be a number from 0 to 0\.5"),
        ({"bad_rate": 0.51}, r"bad_rate must be a number from 0 to 0\.5"),
        ({"bad_rate": float("nan")}, r"bad_rate must be a number from 0 to 0\.5"),
        ({"seed": -1}, r"seed must be a whole number >= 0"),
    ],
)
def test_bad_arguments_are_refused_with_what_is_valid(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_sample(tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()


def test_refuses_to_mix_with_foreign_landing_files(tmp_path):
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "2019-01.ndjson").write_text("{}\n")
    with pytest.raises(ValueError, match=r"already holds landing files.*events/2019-01\.ndjson"):
        generate_sample(tmp_path, customers=10)


@pytest.mark.parametrize("months", [1, 2, 3])
def test_short_ranges_and_tiny_samples(tmp_path, months):
    summary = generate_sample(tmp_path, customers=3, start="2024-11", months=months, seed=1, bad_rate=0.0)
    assert summary.events > 0 and summary.bad_total == 0
    end = datetime(2024 + (10 + months) // 12, (10 + months) % 12 + 1, 1, tzinfo=timezone.utc)
    for _, _, record in all_events(tmp_path):
        assert datetime(2024, 11, 1, tzinfo=timezone.utc) <= parse_timestamp(record["event_timestamp"]) < end
        assert problem({**record, "event_timestamp": "2025-06-01 00:00:00"}) is None
    assert (tmp_path / summary.redelivery_file).exists()


def test_a_sample_until_a_moment_has_nothing_after_it_and_its_last_month_at_the_usual_pace(tmp_path):
    import pandas as pd

    until = datetime(2025, 3, 10, 12, tzinfo=timezone.utc)
    generate_sample(tmp_path / "cut", customers=300, start="2025-01", months=3, seed=3, bad_rate=0.0, until=until)
    generate_sample(tmp_path / "whole", customers=300, start="2025-01", months=3, seed=3, bad_rate=0.0)
    cut, whole = (pd.read_parquet(tmp_path / name / "events" / "2025-03.parquet") for name in ("cut", "whole"))
    stamps = pd.to_datetime(cut["event_timestamp"], utc=True, format="mixed")  # offsets and plain UTC, as shops send
    assert stamps.max() < pd.Timestamp(until), "no event after `until`"
    assert stamps.min() < pd.Timestamp("2025-03-02", tz="UTC"), "the month starts as usual"
    # 9.5 of 31 days: roughly that share of a whole March's events, not a whole month squeezed in.
    assert 0.15 < len(cut) / len(whole) < 0.5, (len(cut), len(whole))
