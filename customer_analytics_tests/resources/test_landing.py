"""The landing folder reader: discovery, record numbering, the NDJSON fast and slow paths, CSV, Parquet, gzip."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customer_analytics.resources import landing
from customer_analytics.resources.landing import LandingFile, UnreadableFile, list_files, read_records
from customer_analytics.transforms.events import validate_events


# -- helpers -----------------------------------------------------------------------------
def put(root: Path, relative: str, data: str | bytes) -> Path:
    path = Path(root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def landing_file(root: Path, relative: str) -> LandingFile:
    source = relative.split("/", 1)[0]
    matches = [f for f in list_files(root, source) if f.name == relative]
    assert len(matches) == 1, f"{relative} not discovered"
    return matches[0]


def read(root: Path, relative: str, data: str | bytes, **kwargs) -> list:
    put(root, relative, data)
    return list(read_records(landing_file(root, relative), **kwargs))


def _plain(value):
    if isinstance(value, (list, dict)):
        return value
    return None if pd.isna(value) else value


def records_of(chunks) -> list[tuple[int, dict]]:
    """(record number, {field: value}) for every parsed record, missing values as None."""
    out = []
    for chunk in chunks:
        assert len(chunk.record_numbers) == len(chunk.fields)
        for position, number in enumerate(chunk.record_numbers):
            row = chunk.fields.iloc[position].to_dict()
            out.append((int(number), {k: _plain(v) for k, v in row.items()}))
    return out


def present(row: dict) -> dict:
    return {k: v for k, v in row.items() if v is not None}


def reasons_of(validated: pd.DataFrame) -> list:
    """reject_reason per row, a missing reason (None or NaN) as None."""
    return [None if pd.isna(r) else r for r in validated["reject_reason"]]


def errors_of(chunks) -> list[tuple[int, str]]:
    return [(e.record_number, e.reason) for chunk in chunks for e in chunk.errors]


def event(event_id: str, **extra) -> str:
    return json.dumps({"event_id": event_id, **extra})


# -- discovery ---------------------------------------------------------------------------
def test_list_files_is_recursive_sorted_by_relative_path_and_ignores_dotfiles(tmp_path):
    for name in ["events/b.ndjson", "events/a/z.csv", "events/a.ndjson", "events/2024/01/x.parquet",
                 "events/.in-flight.ndjson", "events/a/.partial.csv.gz", "transactions/t.csv"]:
        put(tmp_path, name, "x")
    (tmp_path / "events" / "empty-dir").mkdir()

    files = list_files(tmp_path, "events")

    assert [f.name for f in files] == [
        "events/2024/01/x.parquet", "events/a.ndjson", "events/a/z.csv", "events/b.ndjson",
    ]
    assert {f.source for f in files} == {"events"}
    assert all(f.size == 1 for f in files)
    assert [f.name for f in list_files(tmp_path, "events")] == [f.name for f in files]  # stable
    assert [f.name for f in list_files(tmp_path, "transactions")] == ["transactions/t.csv"]


def test_a_symlinked_sub_folder_is_read_under_the_link_name(tmp_path):
    landing_root, archive = tmp_path / "landing", tmp_path / "archive"
    put(landing_root, "events/2024/a.ndjson", event("e1"))
    put(archive, "2025/b.ndjson", event("e2"))
    put(archive, "2025/sub/c.ndjson", event("e3"))
    (landing_root / "events" / "2025").symlink_to(archive / "2025", target_is_directory=True)

    files = list_files(landing_root, "events")

    assert [f.name for f in files] == ["events/2024/a.ndjson", "events/2025/b.ndjson", "events/2025/sub/c.ndjson"]
    assert all(f.problem is None and f.size > 0 for f in files)
    assert [number for number, _ in records_of(read_records(files[1]))] == [1]


def test_a_symlink_loop_ends_and_lists_each_file_once(tmp_path):
    put(tmp_path, "events/top.ndjson", event("e1"))
    put(tmp_path, "events/a/x.ndjson", event("e2"))
    (tmp_path / "events" / "a" / "loop").symlink_to("..", target_is_directory=True)  # back up to events/
    (tmp_path / "events" / "again").symlink_to("a", target_is_directory=True)  # a second way into a/

    names = [f.name for f in list_files(tmp_path, "events")]

    assert names == ["events/a/x.ndjson", "events/top.ndjson"]


def test_a_dangling_symlink_is_listed_as_unreadable_not_dropped(tmp_path):
    put(tmp_path, "events/a.ndjson", event("e1"))
    (tmp_path / "events" / "b.ndjson").symlink_to(tmp_path / "gone.ndjson")
    (tmp_path / "events" / ".c.ndjson").symlink_to(tmp_path / "gone.ndjson")  # dot names stay ignored

    files = list_files(tmp_path, "events")

    assert [(f.name, f.problem is None) for f in files] == [("events/a.ndjson", True), ("events/b.ndjson", False)]
    assert "gone.ndjson" in files[1].problem and "does not exist" in files[1].problem
    with pytest.raises(UnreadableFile, match="symbolic link to nothing"):
        list(read_records(files[1]))


def test_a_folder_that_cannot_be_listed_is_listed_as_unreadable(tmp_path, monkeypatch):
    put(tmp_path, "events/a.ndjson", event("e1"))
    put(tmp_path, "events/locked/b.ndjson", event("e2"))
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # as root, a chmod 000 folder is still readable
    files = list_files(tmp_path, "events")

    assert [f.name for f in files] == ["events/a.ndjson", "events/locked"]
    assert "could not be listed: Permission denied" in files[1].problem


def test_list_files_of_a_missing_source_folder_is_empty(tmp_path):
    assert list_files(tmp_path, "profiles") == []
    assert list_files(tmp_path / "nowhere", "events") == []


@pytest.mark.parametrize(
    "name, fmt, compressed",
    [
        ("events/a.ndjson", "ndjson", False),
        ("events/a.JSONL", "ndjson", False),
        ("events/a.csv.gz", "csv", True),
        ("events/2024.06.parquet.GZ", "parquet", True),
        ("events/a.txt", None, False),
        ("events/a.gz", None, True),
        ("events/README", None, False),
    ],
)
def test_format_and_compression_come_from_the_suffixes(tmp_path, name, fmt, compressed):
    put(tmp_path, name, "x")
    file = landing_file(tmp_path, name)
    assert file.format == fmt
    assert file.compressed is compressed


@pytest.mark.parametrize("name", ["events/a.txt", "events/a.json", "events/README", "events/a.gz"])
def test_unknown_extension_is_unreadable(tmp_path, name):
    with pytest.raises(UnreadableFile, match="unsupported file type"):
        read(tmp_path, name, '{"event_id": "e1"}\n')


# -- NDJSON ------------------------------------------------------------------------------
def test_ndjson_clean_block_takes_the_fast_path(tmp_path, monkeypatch):
    def no_slow_path(*args, **kwargs):
        raise AssertionError("a clean block must not be re-parsed line by line")

    monkeypatch.setattr(landing, "_ndjson_slow", no_slow_path)
    text = "\n".join([
        event("e1", customer_id="c1", event_type="view", event_timestamp="2023-06-15 14:30:45"),
        event("e2", customer_id="c2", event_type="purchase", event_timestamp="2023-06-15T14:30:45Z",
              price=10.5, quantity=2),
    ]) + "\n"

    chunks = read(tmp_path, "events/a.ndjson", text)

    records = records_of(chunks)
    assert [n for n, _ in records] == [1, 2]
    assert present(records[0][1]) == {"event_id": "e1", "customer_id": "c1", "event_type": "view",
                                      "event_timestamp": "2023-06-15 14:30:45"}
    assert records[1][1]["price"] == 10.5 and records[1][1]["quantity"] == 2
    # the timestamp stays text (pinned), not a pyarrow-guessed timestamp
    assert records[1][1]["event_timestamp"] == "2023-06-15T14:30:45Z"
    assert errors_of(chunks) == []
    assert sum(c.records for c in chunks) == 2



@pytest.mark.parametrize("parse_threads", [False, True], ids=["one-thread", "pyarrow-threads"])
def test_a_chunk_parsed_in_several_blocks_unifies_types_and_late_fields_on_the_fast_path(tmp_path, monkeypatch, parse_threads):
    def no_slow_path(*args, **kwargs):
        raise AssertionError("blocks that agree on types must not be re-parsed line by line")

    monkeypatch.setattr(landing, "_ndjson_slow", no_slow_path)
    monkeypatch.setattr(landing, "PARSE_BLOCK_BYTES", 4096)
    monkeypatch.setattr(landing, "PARSE_THREADS", parse_threads)  # which one runs depends on the machine's cores
    base = dict(customer_id="c", event_type="purchase", event_timestamp="2023-06-15 14:30:45")
    lines = [event(f"e{i}", price=i, **base) for i in range(1, 400)]  # whole prices: int64 in the first blocks
    lines.append(event("late", price=2.5, quantity=3, page_url="x" * 6000, **base))  # a float, new fields, a line > a block
    chunks = read(tmp_path, "events/a.ndjson", "\n".join(lines) + "\n")

    records = records_of(chunks)
    assert len(chunks) == 1 and [n for n, _ in records] == list(range(1, 401))
    assert [r["price"] for _, r in records] == [*range(1, 400), 2.5]
    assert records[-1][1]["quantity"] == 3 and records[-1][1]["page_url"] == "x" * 6000
    assert all(r["quantity"] is None and r["page_url"] is None for _, r in records[:-1])


def test_numbers_in_unusual_types_are_parsed_again_with_their_types_inferred(tmp_path, monkeypatch):
    def no_slow_path(*args, **kwargs):
        raise AssertionError("a block of well-formed objects must not be re-parsed line by line")

    parses = []
    read_json = landing._read_json
    monkeypatch.setattr(landing, "_read_json", lambda *args: parses.append(args[1]) or read_json(*args))
    monkeypatch.setattr(landing, "_ndjson_slow", no_slow_path)
    base = dict(customer_id="c", event_type="purchase", event_timestamp="2023-06-15 14:30:45")
    usual = read(tmp_path, "events/usual.ndjson", event("e1", price=3, quantity=2, **base) + "\n")
    assert len(parses) == 1 and records_of(usual)[0][1]["quantity"] == 2
    parses.clear()
    text = event("e1", price="3.5", quantity=2.0, **base) + "\n"  # text where a number is usual, a fraction where a whole
    chunks = read(tmp_path, "events/unusual.ndjson", text)
    assert len(parses) == 2 and parses[1].names == list(landing.TEXT_FIELDS["events"])
    (_, row), = records_of(chunks)
    assert (row["price"], row["quantity"]) == ("3.5", 2.0)
    assert validate_events(chunks[0].fields)["revenue"].tolist() == [7.0]


def test_fields_outside_the_contract_are_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(landing, "_ndjson_slow", lambda *args: pytest.fail("must not need the line-by-line reader"))
    base = dict(customer_id="c", event_type="view", event_timestamp="2023-06-15 14:30:45")
    text = "\n".join([event("e1", extra={"nested": [1]}, **base), event("e2", extra="text", **base)]) + "\n"
    chunks = read(tmp_path, "events/a.ndjson", text)
    assert [n for n, _ in records_of(chunks)] == [1, 2] and "extra" not in chunks[0].fields.columns


def test_ndjson_block_with_a_malformed_line_falls_back_and_keeps_the_good_lines(tmp_path, monkeypatch):
    calls = []
    slow = landing._ndjson_slow

    def spy(*args, **kwargs):
        calls.append(1)
        return slow(*args, **kwargs)

    monkeypatch.setattr(landing, "_ndjson_slow", spy)
    text = (
        event("e1", price=1) + "\n"
        + '{"event_id": "e2", "price": \n'  # line 2: cut short
        + "\n"
        + event("e3", price=2.5) + "\n"
        + '{"event_id": "e4",}\n'  # line 5: trailing comma
        + event("e5") + "\n"
    )

    chunks = read(tmp_path, "events/a.ndjson", text)

    assert calls, "the block with a bad line is re-parsed line by line"
    assert [(n, r["event_id"], r["price"]) for n, r in records_of(chunks)] == [(1, "e1", 1), (4, "e3", 2.5), (6, "e5", None)]
    errors = errors_of(chunks)
    assert [n for n, _ in errors] == [2, 5]
    assert all(reason.startswith("malformed JSON: ") for _, reason in errors)
    assert "at character" in errors[0][1]
    raw = [e.raw_record for c in chunks for e in c.errors]
    assert raw == ['{"event_id": "e2", "price": ', '{"event_id": "e4",}']
    assert sum(c.records for c in chunks) == 5  # blank line 3 is not a record


def test_blank_and_whitespace_only_lines_are_skipped_but_counted(tmp_path):
    text = "\n   \n" + event("a") + "\n\t \r\n\n" + event("b") + "\n   \n"
    chunks = read(tmp_path, "events/a.ndjson", text)
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(3, "a"), (6, "b")]
    assert errors_of(chunks) == []
    assert sum(c.records for c in chunks) == 2


def test_blank_lines_around_a_bad_line_keep_numbering_on_the_slow_path(tmp_path):
    text = "\n" + event("a") + "\n  \nnot json\n\n" + event("b") + "\n"
    chunks = read(tmp_path, "events/a.ndjson", text)
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(2, "a"), (6, "b")]
    assert [n for n, _ in errors_of(chunks)] == [4]


def test_crlf_line_endings(tmp_path):
    text = event("a") + "\r\n\r\n" + event("b") + "\r\n"
    chunks = read(tmp_path, "events/a.ndjson", text)
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "a"), (3, "b")]
    assert chunks[0].raw_text(np.array([0, 1])) == [event("a"), event("b")]


@pytest.mark.parametrize("gz", [False, True])
def test_cr_only_line_endings_are_lines(tmp_path, gz):
    text = (event("e1") + "\r\r" + '{"event_id": broken' + "\r" + event("e2") + "\r").encode()
    chunks = read(tmp_path, "events/a.ndjson" + (".gz" if gz else ""), gzip.compress(text) if gz else text)
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "e1"), (4, "e2")]
    assert [(e.record_number, e.raw_record) for c in chunks for e in c.errors] == [(3, '{"event_id": broken')]


def test_cr_only_line_endings_across_chunks_keep_their_numbers(tmp_path):
    lines = [event(f"e{i}", customer_id="c" * (i % 7)) for i in range(40)]
    chunks = read(tmp_path, "events/a.ndjson", "\r".join(lines), chunk_bytes=64)
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(i + 1, f"e{i}") for i in range(40)]


def test_ndjson_keys_in_another_case_are_read_on_the_fast_path(tmp_path, monkeypatch):
    def no_slow_path(*args, **kwargs):
        raise AssertionError("keys spelled one way in a block must not need the exact reader")

    monkeypatch.setattr(landing, "_ndjson_slow", no_slow_path)
    text = "".join(json.dumps({"Event_ID": f"e{i}", "CUSTOMER_ID": "c1", "Price": i}) + "\n" for i in range(3))
    text += json.dumps({"event_id": "e3", "Event_ID": "ignored", "price": 1.5}) + "\n"  # the exact spelling wins
    records = records_of(read(tmp_path, "events/a.ndjson", text))
    assert [(r["event_id"], r["customer_id"], r["price"]) for _, r in records] == [
        ("e0", "c1", 0), ("e1", "c1", 1), ("e2", "c1", 2), ("e3", None, 1.5)]


def test_ndjson_keys_in_another_case_are_read_on_the_exact_path_too(tmp_path):
    text = json.dumps({"EVENT_ID": "e1", "Quantity": 2}) + "\n" + "{broken\n" + json.dumps({"event_ID": "e2"}) + "\n"
    records = records_of(read(tmp_path, "events/a.ndjson", text))
    assert [(n, r["event_id"], r["quantity"]) for n, r in records] == [(1, "e1", 2), (3, "e2", None)]


def test_last_line_without_newline_is_read(tmp_path):
    chunks = read(tmp_path, "events/a.ndjson", event("a") + "\n" + event("b"))
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "a"), (2, "b")]


def test_empty_and_whitespace_only_ndjson_files_hold_no_records(tmp_path):
    for name, text in [("events/empty.ndjson", ""), ("events/blank.ndjson", "\n \n\t\n")]:
        chunks = read(tmp_path, name, text)
        assert records_of(chunks) == []
        assert errors_of(chunks) == []
        assert sum(c.records for c in chunks) == 0


def test_utf8_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    chunks = read(tmp_path, "events/a.ndjson", "\ufeff" + event("a") + "\n" + event("b") + "\n")
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "a"), (2, "b")]
    assert chunks[0].raw_text(np.array([0])) == [event("a")]


def test_utf8_byte_order_mark_before_a_block_that_needs_the_slow_path(tmp_path):
    chunks = read(tmp_path, "events/a.ndjson", "\ufeff" + event("a") + "\n{oops\n")
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "a")]
    assert [n for n, _ in errors_of(chunks)] == [2]


def test_invalid_utf8_line_is_refused_and_its_neighbours_kept(tmp_path):
    # the stray byte sits outside a JSON string: pyarrow refuses the block, the exact reader explains
    data = (event("a") + "\n").encode() + b'{"event_id":"b"}\xff\n' + (event("c") + "\n").encode()
    chunks = read(tmp_path, "events/a.ndjson", data)
    assert errors_of(chunks) == [(2, "not valid UTF-8 text (byte 17 of the line)")]
    assert chunks[0].errors[0].raw_record == '{"event_id":"b"}\\xff'
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "a"), (3, "c")]


def test_invalid_utf8_inside_a_string_value_is_refused_and_its_neighbours_kept(tmp_path):
    data = (event("a") + "\n").encode() + b'{"event_id":"b\xff"}\n' + (event("c") + "\n").encode()
    chunks = read(tmp_path, "events/a.ndjson", data)
    assert errors_of(chunks) == [(2, "not valid UTF-8 text (byte 15 of the line)")]
    assert chunks[0].errors[0].raw_record == '{"event_id":"b\\xff"}'
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "a"), (3, "c")]


@pytest.mark.parametrize(
    "line, kind",
    [("[1, 2]", "array"), ('"just text"', "string"), ("42", "number"), ("true", "boolean")],
)
def test_a_line_that_is_not_a_json_object_is_refused(tmp_path, line, kind):
    chunks = read(tmp_path, "events/a.ndjson", event("a") + "\n" + line + "\n" + event("b") + "\n")
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "a"), (3, "b")]
    assert errors_of(chunks) == [(2, f"the line is a JSON {kind}, not an object with fields")]
    assert chunks[0].errors[0].raw_record == line


def _run_isolated(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run reader code in a child process: a crash in native code must not take pytest down."""
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from customer_analytics.resources.landing import list_files, read_records
        root = Path({str(tmp_path)!r})
    """) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_a_null_line_at_the_start_of_a_file_is_refused_not_a_crash(tmp_path):
    put(tmp_path, "events/a.ndjson", "null\n" + event("b") + "\n")
    result = _run_isolated("""
        chunks = list(read_records(list_files(root, "events")[0]))
        print(json.dumps([[e.record_number, e.reason] for c in chunks for e in c.errors]))
    """, tmp_path)
    assert result.returncode == 0, f"reader died with status {result.returncode}"
    assert json.loads(result.stdout) == [[1, "the line is a JSON null, not an object with fields"]]


def test_a_null_line_after_an_object_is_refused_as_a_json_null(tmp_path):
    put(tmp_path, "events/a.ndjson", event("a") + "\nnull\n")
    result = _run_isolated("""
        chunks = list(read_records(list_files(root, "events")[0]))
        print(json.dumps({"records": [int(n) for c in chunks for n in c.record_numbers],
                          "errors": [[e.record_number, e.reason] for c in chunks for e in c.errors]}))
    """, tmp_path)
    assert result.returncode == 0, f"reader died with status {result.returncode}"
    assert json.loads(result.stdout) == {
        "records": [1], "errors": [[2, "the line is a JSON null, not an object with fields"]],
    }


def test_numbers_delivered_as_strings_are_kept_as_text_and_coerced_by_validation(tmp_path):
    line = event("e1", customer_id="c1", event_type="purchase", event_timestamp="2023-06-15 14:30:45",
                 price="10.5", quantity="2")
    chunks = read(tmp_path, "events/a.ndjson", line + "\n")
    (number, row), = records_of(chunks)
    assert (number, row["price"], row["quantity"]) == (1, "10.5", "2")
    validated = validate_events(chunks[0].fields)
    assert validated["reject_reason"].isna().all()
    assert validated["price"].tolist() == [10.5]
    assert validated["quantity"].tolist() == [2]
    assert validated["revenue"].tolist() == [21.0]


def test_customer_id_delivered_as_a_number_becomes_its_text(tmp_path):
    base = dict(event_type="view", event_timestamp="2023-06-15 14:30:45")
    text = "\n".join([
        event("e1", customer_id=42, **base),
        event("e2", customer_id=43.0, **base),  # an id written as 43.0 means "43"
        event("e3", customer_id="c44", **base),
    ]) + "\n"
    chunks = read(tmp_path, "events/a.ndjson", text)
    validated = pd.concat([validate_events(c.fields) for c in chunks if len(c.fields)], ignore_index=True)
    assert validated["customer_id"].tolist() == ["42", "43", "c44"]
    assert validated["reject_reason"].isna().all()


def test_mixed_int_and_float_prices_in_one_block(tmp_path):
    base = dict(customer_id="c", event_type="purchase", event_timestamp="2023-06-15 14:30:45")
    text = "\n".join([event("e1", price=10, **base), event("e2", price=10.5, **base),
                      event("e3", price=0, quantity=3, **base)]) + "\n"
    chunks = read(tmp_path, "events/a.ndjson", text)
    assert [(n, r["price"]) for n, r in records_of(chunks)] == [(1, 10), (2, 10.5), (3, 0)]
    validated = validate_events(chunks[0].fields)
    assert validated["price"].tolist() == [10.0, 10.5, 0.0]
    assert validated["revenue"].tolist() == [10.0, 10.5, 0.0]
    assert validated["reject_reason"].isna().all()


def test_numbers_and_strings_mixed_in_one_field_parse_identically(tmp_path):
    base = dict(customer_id="c", event_type="purchase", event_timestamp="2023-06-15 14:30:45")
    text = "\n".join([event("e1", price="7.25", **base), event("e2", price=7.25, **base)]) + "\n"
    chunks = read(tmp_path, "events/a.ndjson", text)
    validated = validate_events(chunks[0].fields)
    assert validated["price"].tolist() == [7.25, 7.25]
    assert validated["reject_reason"].isna().all()


def test_a_boolean_or_object_where_a_number_is_expected_is_explained_per_record(tmp_path):
    base = dict(customer_id="c", event_type="purchase", event_timestamp="2023-06-15 14:30:45")
    text = "\n".join([event("e1", price=True, **base), event("e2", price=3, **base),
                      event("e3", customer_id={"id": 1}, event_type="view",
                            event_timestamp="2023-06-15 14:30:45")]) + "\n"
    chunks = read(tmp_path, "events/a.ndjson", text)
    assert [n for n, _ in records_of(chunks)] == [1, 2, 3]
    reasons = reasons_of(validate_events(chunks[0].fields))
    assert reasons[0] == "price True is not a number"
    assert reasons[1] is None
    assert reasons[2] == "customer_id must be text, not a JSON object, array or boolean"


# -- gzip --------------------------------------------------------------------------------
def test_gzip_round_trip_matches_the_plain_file(tmp_path):
    text = "\n".join(event(f"e{i}", price=i) for i in range(1, 40)) + "\n\n{bad\n" + event("last") + "\n"
    plain = read(tmp_path, "events/plain.ndjson", text)
    zipped = read(tmp_path, "events/sub/zipped.jsonl.gz", gzip.compress(text.encode()))
    assert records_of(zipped) == records_of(plain)
    assert errors_of(zipped) == errors_of(plain) == [(41, errors_of(plain)[0][1])]
    assert records_of(plain)[-1][0] == 42


def test_gzipped_csv_round_trip(tmp_path):
    text = "event_id,price\ne1,1.5\n\ne2,2\n"
    chunks = read(tmp_path, "events/a.csv.gz", gzip.compress(text.encode()))
    assert [(n, r) for n, r in records_of(chunks)] == [(2, {"event_id": "e1", "price": "1.5"}),
                                                        (4, {"event_id": "e2", "price": "2"})]


@pytest.mark.parametrize("name", ["events/a.ndjson.gz", "events/a.csv.gz", "events/a.parquet.gz"])
def test_corrupt_gzip_is_unreadable(tmp_path, name):
    with pytest.raises(UnreadableFile):
        read(tmp_path, name, b"this was never gzipped\n")


@pytest.mark.parametrize("cut", [8, 200])
@pytest.mark.parametrize("name", ["events/a.ndjson.gz", "events/a.csv.gz"])
def test_truncated_gzip_is_unreadable(tmp_path, name, cut):
    if name.endswith(".csv.gz"):
        text = "event_id,price\n" + "".join(f"e{i},{i}\n" for i in range(500))
    else:
        text = "".join(event(f"e{i}", price=i) + "\n" for i in range(500))
    data = gzip.compress(text.encode())
    assert len(data) > cut
    with pytest.raises(UnreadableFile, match="gzip"):
        read(tmp_path, name, data[:-cut])


def test_corrupt_gzip_message_says_gzip(tmp_path):
    with pytest.raises(UnreadableFile, match="not a readable gzip file"):
        read(tmp_path, "events/a.ndjson.gz", b"this was never gzipped\n")


# -- a file that changes while it is read --------------------------------------------------
def test_file_growing_while_being_read_is_unreadable(tmp_path):
    path = put(tmp_path, "events/a.ndjson", "".join(event(f"e{i}") + "\n" for i in range(20)))
    chunks = read_records(landing_file(tmp_path, "events/a.ndjson"), chunk_bytes=64)
    next(chunks)
    with open(path, "ab") as stream:
        stream.write((event("late") + "\n").encode())
    with pytest.raises(UnreadableFile, match="changed while it was being read"):
        list(chunks)


def test_file_truncated_while_being_read_is_unreadable(tmp_path):
    path = put(tmp_path, "events/a.ndjson", "".join(event(f"e{i}") + "\n" for i in range(20)))
    chunks = read_records(landing_file(tmp_path, "events/a.ndjson"), chunk_bytes=64)
    next(chunks)
    with open(path, "r+b") as stream:
        stream.truncate(40)
    with pytest.raises(UnreadableFile, match="changed while it was being read"):
        list(chunks)


def test_file_replaced_after_listing_with_same_size_but_new_mtime_is_unreadable(tmp_path):
    path = put(tmp_path, "events/a.ndjson", event("a") + "\n")
    file = landing_file(tmp_path, "events/a.ndjson")
    path.write_bytes((event("b") + "\n").encode())
    os.utime(path, ns=(file.modified_ns + 5_000_000_000, file.modified_ns + 5_000_000_000))
    with pytest.raises(UnreadableFile, match="changed while it was being read"):
        list(read_records(file))


def test_file_that_disappeared_is_unreadable(tmp_path):
    path = put(tmp_path, "events/a.ndjson", event("a") + "\n")
    file = landing_file(tmp_path, "events/a.ndjson")
    path.unlink()
    with pytest.raises(UnreadableFile, match="disappeared"):
        list(read_records(file))


# -- chunking ----------------------------------------------------------------------------
def _read_all(root, relative, **kwargs):
    chunks = list(read_records(landing_file(root, relative), **kwargs))
    numbers = [int(n) for c in chunks for n in c.record_numbers]
    ids = [r["event_id"] for _, r in records_of(chunks)]
    raws = [raw for c in chunks for raw in c.raw_text(np.arange(len(c.fields)))]
    errors = [(e.record_number, e.reason, e.raw_record) for c in chunks for e in c.errors]
    return chunks, numbers, ids, raws, errors


def test_tiny_chunks_give_the_same_records_and_numbers_as_one_chunk(tmp_path):
    lines = [event(f"e{i}", price=i * 1.5, page_url="https://shop.example/" + "p" * i) if i % 7 else ""
             for i in range(1, 60)]
    lines[20] = "{broken"
    put(tmp_path, "events/a.ndjson", "\n".join(lines) + "\n")

    big = _read_all(tmp_path, "events/a.ndjson")
    small = _read_all(tmp_path, "events/a.ndjson", chunk_bytes=64)

    assert len(big[0]) == 1 and len(small[0]) > 10
    assert small[1:] == big[1:]
    expected = [i + 1 for i, line in enumerate(lines) if line and line != "{broken"]
    assert big[1] == expected
    assert [e[0] for e in big[4]] == [21]


GOOD = st.builds(lambda n, p: ("good", json.dumps({"event_id": f"e{n}", "price": p})),
                 st.integers(0, 10**6), st.one_of(st.integers(0, 1000), st.floats(0, 1000, allow_nan=False), st.none()))
PADDED = st.builds(lambda n: ("good", '  {"event_id" : "p%d"}  ' % n), st.integers(0, 99))
BLANK = st.sampled_from([("blank", ""), ("blank", "   "), ("blank", "\t"), ("blank", " \t ")])
BAD = st.sampled_from([("bad", "{bad"), ("bad", '{"event_id": "x",}'), ("bad", "[1, 2]"), ("bad", '"text"'),
                       ("bad", '{"event_id": "a"} {"event_id": "b"}')])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(GOOD, GOOD, PADDED, BLANK, BAD), max_size=40),
       newline=st.sampled_from(["\n", "\r\n"]), trailing=st.booleans(), chunk_bytes=st.sampled_from([16, 64, 200]))
def test_chunking_never_changes_records_or_their_numbers(tmp_path, lines, newline, trailing, chunk_bytes):
    text = newline.join(line for _, line in lines) + (newline if trailing and lines else "")
    put(tmp_path, "events/h.ndjson", text)

    _, numbers, ids, raws, errors = _read_all(tmp_path, "events/h.ndjson")
    small_chunks, *small = _read_all(tmp_path, "events/h.ndjson", chunk_bytes=chunk_bytes)

    assert small == [numbers, ids, raws, errors]
    good = [(i + 1, line) for i, (kind, line) in enumerate(lines) if kind == "good"]
    bad = [(i + 1, line) for i, (kind, line) in enumerate(lines) if kind == "bad"]
    assert numbers == [n for n, _ in good]
    assert raws == [line for _, line in good]  # the original line, minus the line ending
    assert ids == [json.loads(line)["event_id"] for _, line in good]
    assert [(n, raw) for n, _, raw in errors] == bad
    assert all(reason for _, reason, _ in errors)
    assert sum(c.records for c in small_chunks) == len(good) + len(bad)
    assert numbers == sorted(set(numbers))


# -- CSV ---------------------------------------------------------------------------------
def test_csv_quoted_commas_newlines_and_quotes(tmp_path):
    text = ('event_id,customer_id,page_url,price\n'
            'e1,c1,"a,b",1\n'
            'e2,c2,"line1\nline2",2\n'
            '\n'
            'e3,c3,"say ""hi""",3\n')
    chunks = read(tmp_path, "events/a.csv", text)
    assert records_of(chunks) == [
        (2, {"event_id": "e1", "customer_id": "c1", "page_url": "a,b", "price": "1"}),
        (3, {"event_id": "e2", "customer_id": "c2", "page_url": "line1\nline2", "price": "2"}),
        (6, {"event_id": "e3", "customer_id": "c3", "page_url": 'say "hi"', "price": "3"}),
    ]
    assert errors_of(chunks) == []
    assert chunks[0].records == 3


def test_csv_values_stay_text(tmp_path):
    chunks = read(tmp_path, "events/a.csv", "customer_id,price,quantity\n007,1.50,2\n")
    assert records_of(chunks) == [(2, {"customer_id": "007", "price": "1.50", "quantity": "2"})]


def test_csv_short_and_long_rows_are_refused_with_the_field_counts(tmp_path):
    chunks = read(tmp_path, "events/a.csv", "a,b,c\n1,2,3\n1,2\n1,2,3,4\n  \n4,5,6\n")
    assert [(n, r) for n, r in records_of(chunks)] == [(2, {"a": "1", "b": "2", "c": "3"}),
                                                        (6, {"a": "4", "b": "5", "c": "6"})]
    assert errors_of(chunks) == [(3, "CSV row has 2 fields, the header has 3"),
                                 (4, "CSV row has 4 fields, the header has 3")]
    assert [e.raw_record for e in chunks[0].errors] == ["1,2", "1,2,3,4"]
    assert chunks[0].records == 4


@pytest.mark.parametrize("text", ["", "event_id,customer_id,price\n", "event_id,customer_id,price"])
def test_csv_empty_or_header_only_holds_no_records(tmp_path, text):
    chunks = read(tmp_path, "events/a.csv", text)
    assert records_of(chunks) == []
    assert errors_of(chunks) == []
    assert sum(c.records for c in chunks) == 0


def test_csv_of_blank_lines_only_holds_no_records(tmp_path):
    chunks = read(tmp_path, "events/a.csv", "\n\n")
    assert records_of(chunks) == [] and errors_of(chunks) == []


def test_csv_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    chunks = read(tmp_path, "events/a.csv", "\ufeffevent_id,price\ne1,1\n")
    assert records_of(chunks) == [(2, {"event_id": "e1", "price": "1"})]


def test_csv_header_names_are_trimmed(tmp_path):
    chunks = read(tmp_path, "events/a.csv", " event_id , price \ne1,2\n")
    assert list(chunks[0].fields.columns) == ["event_id", "price"]


def test_csv_header_names_match_without_regard_to_case(tmp_path):
    chunks = read(tmp_path, "events/a.csv", "Event_ID,PRICE,Notes\ne1,2,x\n")
    assert list(chunks[0].fields.columns) == ["event_id", "price", "Notes"]  # a column outside the contract keeps its name


@pytest.mark.parametrize("header, named", [("event_id,price,Event_ID", "'event_id' 2 times ('event_id', 'Event_ID')"),
                                           ("price, Price ,PRICE,event_id", "'price' 3 times")])
def test_csv_header_naming_a_field_twice_is_unreadable(tmp_path, header, named):
    with pytest.raises(UnreadableFile, match=re.escape(named)):
        read(tmp_path, "events/a.csv", header + "\n" + ",".join(["1"] * len(header.split(","))) + "\n")


def test_csv_repeated_names_outside_the_contract_are_harmless(tmp_path):
    chunks = read(tmp_path, "events/a.csv", "event_id,,,note,note\ne1,,,a,b\n")
    assert records_of(chunks)[0][1]["event_id"] == "e1"


def test_csv_invalid_utf8_row_is_refused_and_the_next_kept(tmp_path):
    chunks = read(tmp_path, "events/a.csv", b"event_id,price\ne1,\xff\ne2,3\n")
    assert records_of(chunks) == [(3, {"event_id": "e2", "price": "3"})]
    assert errors_of(chunks) == [(2, "not valid UTF-8 text")]
    assert chunks[0].errors[0].raw_record == "e1,\\xff"


def test_csv_crlf_and_multiline_record_numbers(tmp_path):
    text = 'event_id,note\r\ne1,x\r\n\r\ne2,"two\r\nlines"\r\ne3,z\r\n'
    chunks = read(tmp_path, "events/a.csv", text)
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(2, "e1"), (4, "e2"), (6, "e3")]


def test_csv_chunk_rows_splits_without_changing_numbers(tmp_path):
    text = "event_id,price\n" + "".join(f"e{i},{i}\n" if i != 3 else "e3\n" for i in range(7))
    chunks = read(tmp_path, "events/a.csv", text, chunk_rows=2)
    assert [c.records for c in chunks] == [2, 2, 2, 1]
    assert [list(map(int, c.record_numbers)) for c in chunks] == [[2, 3], [4], [6, 7], [8]]
    assert errors_of(chunks) == [(5, "CSV row has 1 fields, the header has 2")]


def test_csv_raw_text_is_the_record_line(tmp_path):
    text = 'event_id,page_url,price\ne1,"a,b",1\ne2,plain,2\n'
    chunks = read(tmp_path, "events/a.csv", text)
    assert chunks[0].raw_text(np.array([1, 0])) == ["e2,plain,2", 'e1,"a,b",1']


def test_csv_raw_text_of_a_multiline_record_parses_back_to_the_same_fields(tmp_path):
    chunks = read(tmp_path, "events/a.csv", 'event_id,page_url,price\ne1,"line1\nline2",1\n')
    raw = chunks[0].raw_text(np.array([0]))[0]
    assert next(csv.reader(io.StringIO(raw))) == ["e1", "line1\nline2", "1"]


def test_csv_unterminated_quote_is_refused(tmp_path):
    chunks = read(tmp_path, "events/a.csv", 'a,b\n1,"2\n3,4\n5,6\n')
    assert all(r["b"] != "2\n3,4\n5,6\n" for _, r in records_of(chunks))
    assert any("malformed CSV" in reason for _, reason in errors_of(chunks))


# -- Parquet -----------------------------------------------------------------------------
def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def typed_events_table() -> pa.Table:
    return pa.table({
        "event_id": ["e1", "e2", "e3"],
        "customer_id": pa.array([101, 102, 103], pa.int64()),
        "event_type": pa.array(["purchase", "view", "purchase"]).dictionary_encode(),
        "event_timestamp": pa.array([dt.datetime(2023, 6, 15, 14, 30, 45), dt.datetime(2023, 6, 30, 23, 0), None],
                                    pa.timestamp("ms")),
        "price": pa.array([10.5, None, 3.0], pa.float64()),
        "quantity": pa.array([2, None, None], pa.int32()),
    })


def test_parquet_typed_columns_and_row_numbers(tmp_path):
    chunks = read(tmp_path, "events/a.parquet", _parquet_bytes(typed_events_table()))
    assert [list(map(int, c.record_numbers)) for c in chunks] == [[1, 2, 3]]
    assert errors_of(chunks) == []
    validated = validate_events(chunks[0].fields)
    assert validated["customer_id"].tolist() == ["101", "102", "103"]
    assert validated["event_type"].tolist() == ["purchase", "view", "purchase"]
    assert validated["event_timestamp"].iloc[0] == pd.Timestamp("2023-06-15 14:30:45", tz="UTC")
    assert validated["revenue"].tolist() == [21.0, 0.0, 3.0]
    assert reasons_of(validated) == [None, None, "missing event_timestamp"]


def test_parquet_integer_ids_with_a_null_stay_exact_above_two_to_the_53(tmp_path):
    big = 2**53  # float64 holds 2**53 + 1 as 2**53: through a float, these ids would merge
    table = pa.table({
        "event_id": pa.array([big + 1, big + 2, None], pa.int64()),
        "customer_id": pa.array([big + 1, None, 2**64 - 1], pa.uint64()),
        "event_type": ["view", "view", "view"], "event_timestamp": ["2025-01-10 10:00:00"] * 3,
        "quantity": pa.array([big + 1, None, 3], pa.int64()),
    })
    chunks = read(tmp_path, "events/a.parquet", _parquet_bytes(table))
    fields = chunks[0].fields
    assert fields["event_id"].tolist()[:2] == [str(big + 1), str(big + 2)] and pd.isna(fields["event_id"].iloc[2])
    assert fields["customer_id"].iloc[0] == str(big + 1) and fields["customer_id"].iloc[2] == str(2**64 - 1)
    assert str(fields["quantity"].dtype) == "Int64" and fields["quantity"].iloc[0] == big + 1  # never float64
    validated = validate_events(fields)
    assert validated["event_id"].tolist()[:2] == ["9007199254740993", "9007199254740994"]
    assert reasons_of(validated)[1:] == ["missing customer_id", "missing event_id"]
    assert "quantity 9007199254740993 is above" in reasons_of(validated)[0]  # the value as delivered
    raw = json.loads(chunks[0].raw_text(np.array([1]))[0])
    assert raw["event_id"] == str(big + 2) and raw["customer_id"] is None and raw["quantity"] is None


def test_parquet_timestamp_with_a_zone_is_converted_to_utc(tmp_path):
    table = pa.table({
        "event_id": ["e1"], "customer_id": ["c"], "event_type": ["view"],
        "event_timestamp": pa.array([dt.datetime(2025, 2, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))],
                                    pa.timestamp("us", tz="+01:00")),
    })
    chunks = read(tmp_path, "events/a.parquet", _parquet_bytes(table))
    validated = validate_events(chunks[0].fields)
    assert validated["event_timestamp"].iloc[0] == pd.Timestamp("2025-01-31 23:30", tz="UTC")
    assert validated["event_month"].iloc[0] == pd.Timestamp("2025-01-01")


def test_parquet_chunk_rows_numbers_continue_across_batches(tmp_path):
    table = pa.table({"event_id": [f"e{i}" for i in range(5)]})
    chunks = read(tmp_path, "events/a.parquet", _parquet_bytes(table), chunk_rows=2)
    assert [list(map(int, c.record_numbers)) for c in chunks] == [[1, 2], [3, 4], [5]]
    assert [c.records for c in chunks] == [2, 2, 1]


def test_gzipped_parquet_round_trip(tmp_path):
    chunks = read(tmp_path, "events/a.parquet.gz", gzip.compress(_parquet_bytes(typed_events_table())))
    assert [r["event_id"] for _, r in records_of(chunks)] == ["e1", "e2", "e3"]


def test_parquet_raw_text_is_the_row_as_json(tmp_path):
    chunks = read(tmp_path, "events/a.parquet", _parquet_bytes(typed_events_table()))
    first = json.loads(chunks[0].raw_text(np.array([0]))[0])
    assert first["event_id"] == "e1" and first["customer_id"] == "101" and first["price"] == 10.5  # an id as its text
    assert first["event_timestamp"].startswith("2023-06-15 14:30:45")


def test_damaged_parquet_is_unreadable(tmp_path):
    with pytest.raises(UnreadableFile, match="Parquet"):
        read(tmp_path, "events/a.parquet", b"PAR1 not really")


# -- raw text ----------------------------------------------------------------------------
def test_ndjson_raw_text_is_the_original_line_on_both_paths(tmp_path):
    lines = ['{ "event_id" : "a",   "price": 1 }', '{"event_id":"b","page_url":"https://x/ü"}']
    fast = read(tmp_path, "events/fast.ndjson", "\n".join(lines) + "\n")
    slow = read(tmp_path, "events/slow.ndjson", "\n".join([lines[0], "{nope", lines[1]]) + "\n")
    assert fast[0].raw_text(np.array([0, 1])) == lines
    assert slow[0].raw_text(np.array([0, 1])) == lines
    assert list(map(int, slow[0].record_numbers)) == [1, 3]


def test_oversized_line_is_refused_and_numbering_continues(tmp_path, monkeypatch):
    monkeypatch.setattr(landing, "MAX_RECORD_BYTES", 200)
    monkeypatch.setattr(landing, "RAW_TEXT_LIMIT", 50)
    long = json.dumps({"event_id": "big", "page_url": "x" * 1000})
    text = event("a") + "\n" + long + "\n\n" + event("b") + "\n" + long + "\n" + event("c") + "\n" + long
    chunks = read(tmp_path, "events/a.ndjson", text, chunk_bytes=64)
    assert [(n, r["event_id"]) for n, r in records_of(chunks)] == [(1, "a"), (4, "b"), (6, "c")]
    errors = [e for c in chunks for e in c.errors]
    assert [e.record_number for e in errors] == [2, 5, 7]
    assert all(e.reason.startswith("record longer than") for e in errors)
    assert all(e.raw_record.startswith('{"event_id": "big"') and len(e.raw_record) <= 51 for e in errors)
    assert sum(c.records for c in chunks) == 6


def test_read_ahead_keeps_the_order_and_raises_where_the_items_failed():
    def items():
        yield from range(5)
        raise UnreadableFile("broken after five")

    seen = []
    with pytest.raises(UnreadableFile, match="broken after five"):
        for item in landing.read_ahead(items()):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    assert list(landing.read_ahead(iter(range(1000)))) == list(range(1000))
    assert list(landing.read_ahead(iter([]))) == []


def test_read_ahead_left_early_stops_its_thread_and_closes_the_items():
    closed = threading.Event()

    def items():
        try:
            for number in range(1_000_000):
                yield number
        finally:
            closed.set()

    ahead = landing.read_ahead(items())
    assert [next(ahead), next(ahead)] == [0, 1]
    ahead.close()  # as when the loop over chunks raises
    assert closed.is_set()  # closed before close() returned: the file is no longer open
    assert not any(thread.name.startswith("read-ahead") for thread in threading.enumerate())
