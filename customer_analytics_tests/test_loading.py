"""Landing folder → warehouse, on SQLite and PostgreSQL: rows, quarantine, duplicates, reruns, manifest."""

from __future__ import annotations

import functools
import gzip
import hashlib
from datetime import date, datetime, timezone

import pandas as pd
import pytest
from sqlalchemy import select

from customer_analytics import loading
from customer_analytics.loading import load_events_month, load_profiles
from customer_analytics.resources.tables import customer_profiles, raw_events, rejected_events
from customer_analytics_tests.landing_builder import event, write_csv, write_ndjson

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)


def load(warehouse, landing, month, **kwargs):
    return load_events_month(warehouse, str(landing), month, first_month=JAN, last_month=MAR, run_id="test", **kwargs)


def events_of(warehouse, month=None) -> pd.DataFrame:
    query = select(raw_events).order_by(raw_events.c.event_id)
    if month:
        query = query.where(raw_events.c.event_month == month)
    return warehouse.read_frame(query)


def rejections(warehouse) -> pd.DataFrame:
    return warehouse.read_frame(select(rejected_events).order_by(rejected_events.c.source_file, rejected_events.c.record_number))


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    write_ndjson(root / "events" / "2025-01.ndjson", [
        event("e1", "c1", "2025-01-10 10:00:00", price=10.5, quantity=2),
        "",
        event("e2", "c2", "2025-01-31T23:30:00-01:00", event_type="page_view", price=None, quantity=None),  # February in UTC
        event("e3", "c1", "2025-01-11 10:00:00", price="abc"),
        '{"event_id": "e4", broken',
        event("e1", "c1", "2025-01-10 10:00:00", price=10.5, quantity=2),  # the same event again
        event("e5", "c1", "2019-06-01 10:00:00", price=3),
    ])
    write_ndjson(root / "events" / "2025-02.jsonl.gz", [
        event("e1", "c1", "2025-01-10 10:00:00", price=99.0, quantity=2),  # same id, other contents
        event("e6", "c3", "2025-02-03T10:00:00Z", price=4.0, quantity=None),
        event("e7", "c3", "2025-02-04 10:00:00", price=1.0, quantity=-1),
    ], gz=True)
    write_csv(root / "transactions" / "legacy.csv", ["customer_id", "transaction_date", "transaction_amount"], [
        ["c1", "2025-01-05", "5.25"], ["c1", "2025-01-05", "5.25"], ["c2", "bad date", "1"], ["c4", "2025-02-07 08:00:00", "-3"],
    ])
    return root


def test_a_month_loads_exactly_its_valid_first_deliveries(warehouse, landing):
    report = load(warehouse, landing, JAN)
    stored = events_of(warehouse)
    legacy_id = "txn-" + _digest("c1\x1f2025-01-05T00:00:00.000000\x1f5.25")
    assert sorted(stored["event_id"]) == sorted(["e1", legacy_id + "-1", legacy_id + "-2"])
    e1 = stored.set_index("event_id").loc["e1"]
    assert (e1["price"], e1["quantity"], e1["revenue"]) == (10.5, 2, 21.0)
    assert e1["source_file"] == "events/2025-01.ndjson" and e1["source_record"] == 1
    legacy = stored[stored["source"] == "transactions"]
    assert legacy["revenue"].tolist() == [5.25, 5.25], "identical legacy rows are two purchases"
    assert report.loaded == 3 and report.duplicates == 1
    assert report.records_read == report.loaded + report.rejected + report.duplicates


def test_rejections_say_why_and_where(warehouse, landing):
    load(warehouse, landing, JAN)
    rejected = rejections(warehouse).set_index(["source_file", "record_number"])["reason"]
    assert "not a number" in rejected[("events/2025-01.ndjson", 4)]
    assert "malformed JSON" in rejected[("events/2025-01.ndjson", 5)]
    assert "before the first month partition 2025-01" in rejected[("events/2025-01.ndjson", 7)]
    assert "already delivered with different contents" in rejected[("events/2025-02.jsonl.gz", 1)]
    assert "events/2025-01.ndjson, record 1" in rejected[("events/2025-02.jsonl.gz", 1)]
    assert "unparsable transaction_date" in rejected[("transactions/legacy.csv", 4)]
    raw = rejections(warehouse).set_index("record_number")["raw_record"]
    assert raw.loc[5] == '{"event_id": "e4", broken'


def test_a_record_outside_the_partitions_gets_its_own_reasons_and_the_range_reason(warehouse, tmp_path):
    root = tmp_path / "landing"
    write_ndjson(root / "events" / "mixed.ndjson", [
        event("x1", "c1", "2019-06-01 10:00:00", price="abc"),  # invalid and before the first partition
        event("x2", "c1", "2030-06-01 10:00:00", price=3),  # valid, after the month in progress
        event("x3", "c1", "2025-01-02 10:00:00", price=-1),  # invalid, in January
        event("x4", "c1", "2025-01-03 10:00:00", price=2),  # loaded
    ])
    load(warehouse, root, JAN)
    reasons = rejections(warehouse).set_index("record_number")["reason"]
    assert reasons.loc[1].startswith("price 'abc' is not a number; event_timestamp is before the first month partition 2025-01")
    assert reasons.loc[2] == "event_timestamp is after the month in progress (2025-03)"
    assert "negative price" in reasons.loc[3] and "month" not in reasons.loc[3]
    assert events_of(warehouse)["event_id"].tolist() == ["x4"]


def test_offsets_decide_the_month_in_utc(warehouse, landing):
    load(warehouse, landing, FEB)
    feb = events_of(warehouse, FEB).set_index("event_id")
    assert set(feb.index) == {"e2", "e6"}
    assert pd.Timestamp(feb.loc["e2", "event_timestamp"]).strftime("%Y-%m-%d %H:%M") == "2025-02-01 00:30"
    assert feb.loc["e6", "quantity"] == 1 and feb.loc["e6", "revenue"] == 4.0, "a purchase without quantity bought one"
    reasons = rejections(warehouse).set_index(["source_file", "record_number"])["reason"]
    assert "negative quantity" in reasons[("events/2025-02.jsonl.gz", 3)]
    assert "negative transaction_amount" in reasons[("transactions/legacy.csv", 5)]


def test_rerunning_a_month_gives_identical_rows(warehouse, landing):
    load(warehouse, landing, JAN)
    load(warehouse, landing, FEB)
    first_events, first_rejections = events_of(warehouse), rejections(warehouse)
    load(warehouse, landing, JAN)
    load(warehouse, landing, JAN)
    again_events, again_rejections = events_of(warehouse), rejections(warehouse)
    pd.testing.assert_frame_equal(first_events.drop(columns=["ingested_at"]), again_events.drop(columns=["ingested_at"]))
    keep = ["source_file", "record_number", "reason", "raw_record", "event_month"]
    pd.testing.assert_frame_equal(first_rejections[keep].reset_index(drop=True), again_rejections[keep].reset_index(drop=True))


def test_records_without_a_month_are_quarantined_once_whatever_months_run(warehouse, landing):
    for month in (JAN, FEB, MAR, JAN):
        load(warehouse, landing, month)
    rejected = rejections(warehouse)
    assert not rejected.duplicated(["source_file", "record_number"]).any()
    assert (rejected["record_number"] == 5).sum() == 2  # the malformed line, and the legacy -3 amount


def test_counts_reconcile_with_the_files(warehouse, landing):
    reports = [load(warehouse, landing, month) for month in (JAN, FEB, MAR)]
    # 7 + 3 event records and 4 legacy rows; each month sees every file (no manifest yet for the first).
    for report in reports:
        assert report.records_read == report.loaded + report.rejected + report.duplicates
    stored = len(events_of(warehouse))
    assert stored == sum(r.loaded for r in reports) == 5


def test_the_manifest_skips_files_without_the_month_and_rereads_changed_ones(warehouse, landing):
    load(warehouse, landing, JAN)
    again = load(warehouse, landing, MAR)
    assert again.files_skipped == 3 and again.files_read == []  # nothing in the landing folder holds March
    path = landing / "events" / "2025-01.ndjson"
    with path.open("a") as handle:
        handle.write('{"event_id": "e9", "customer_id": "c9", "event_type": "purchase", "event_timestamp": "2025-03-02 00:00:00", "price": 2}\n')
    later = load(warehouse, landing, MAR)
    assert later.files_read == ["events/2025-01.ndjson"] and later.loaded == 1


def test_an_unreadable_file_is_reported_and_the_others_still_load(warehouse, landing):
    (landing / "events" / "broken.ndjson.gz").write_bytes(b"definitely not gzip")
    (landing / "events" / "notes.xlsx").write_bytes(b"x")
    report = load(warehouse, landing, JAN)
    assert set(report.unreadable_files) == {"events/broken.ndjson.gz", "events/notes.xlsx"}
    assert report.loaded == 3
    files = rejections(warehouse).query("record_number == 0")
    assert set(files["source_file"]) == {"events/broken.ndjson.gz", "events/notes.xlsx"}
    assert files["reason"].str.contains("could not be read").all()


def test_a_symlinked_month_folder_loads_and_a_link_loop_reads_each_file_once(warehouse, tmp_path):
    root, archive = tmp_path / "landing", tmp_path / "archive"
    write_ndjson(root / "events" / "2024" / "a.ndjson", [event("s1", "c1", "2025-01-10 10:00:00", price=1.0)])
    write_ndjson(archive / "2025" / "b.ndjson", [event("s2", "c1", "2025-01-11 10:00:00", price=2.0),
                                                 event("s3", "c2", "2025-01-12 10:00:00", price=3.0)])
    (root / "events" / "2025").symlink_to(archive / "2025", target_is_directory=True)
    (root / "events" / "2025-again").symlink_to(archive / "2025", target_is_directory=True)  # the same folder twice
    (archive / "2025" / "loop").symlink_to("..", target_is_directory=True)  # archive/ -> 2025 -> loop -> archive/ ...
    (root / "events" / "gone.ndjson").symlink_to(tmp_path / "nowhere.ndjson")

    report = load(warehouse, root, JAN)

    stored = events_of(warehouse)
    assert dict(zip(stored["event_id"], stored["source_file"])) == {
        "s1": "events/2024/a.ndjson", "s2": "events/2025/b.ndjson", "s3": "events/2025/b.ndjson"}
    assert report.duplicates == 0 and report.loaded == 3
    assert list(report.unreadable_files) == ["events/gone.ndjson"]
    (dangling,) = rejections(warehouse).query("record_number == 0")["reason"]
    assert "symbolic link to nothing" in dangling and "nowhere.ndjson" in dangling


def test_a_file_that_breaks_part_way_loads_nothing_from_it(warehouse, landing, monkeypatch):
    lines = b"".join(
        f'{{"event_id": "t{i}", "customer_id": "c1", "event_type": "purchase", "event_timestamp": "2025-01-12 10:00:00", "price": 1}}\n'.encode()
        for i in range(5000)
    )
    payload = gzip.compress(lines, mtime=0)
    (landing / "events" / "truncated.ndjson.gz").write_bytes(payload[: len(payload) - 40])
    # Small chunks: the first ones are staged before the damage is found, so the load must restart.
    monkeypatch.setattr(loading, "read_records", functools.partial(loading.read_records, chunk_bytes=4096))
    report = load(warehouse, landing, JAN)
    assert "events/truncated.ndjson.gz" in report.unreadable_files
    assert not events_of(warehouse)["event_id"].str.match(r"t\d+$").any()
    assert report.loaded == 3 and report.records_read == report.loaded + report.rejected + report.duplicates


def test_profiles_merge_latest_values_and_quarantine_bad_rows(warehouse, tmp_path):
    root = tmp_path / "landing"
    header = ["customer_id", "email", "first_name", "last_name", "age", "gender", "city", "country", "signup_date", "last_login"]
    write_csv(root / "profiles" / "a.csv", header, [
        ["c1", "old@x.io", "Ann", "Lee", "30", "f", "Paris", "FR", "2024-01-01", "2025-01-01 10:00:00"],
        ["c1", "new@x.io", "Ann", "Lee", "31", "f", "Lyon", "FR", "2024-01-01", "2025-02-01 10:00:00"],
        ["", "x@y.io", "", "", "", "", "", "", "", ""],
        ["c2", "b@x.io", "Bo", "Ng", "abc", "m", "Rome", "IT", "2024-02-01", ""],
        ["c3", "c@x.io", "Cy", "Di", "44", "m", "Oslo", "NO", "2024-03-01", "2024-12-01 09:00:00"],
    ])
    write_ndjson(root / "profiles" / "b_demographics.ndjson", [{"customer_id": "c3", "age": 45, "location": "Oslo area"},
                                                              {"customer_id": "c4", "age": 22, "location": "Bergen"}])
    report = load_profiles(warehouse, str(root))
    profiles = warehouse.read_frame(select(customer_profiles).order_by(customer_profiles.c.customer_id)).set_index("customer_id")
    assert list(profiles.index) == ["c1", "c3", "c4"]
    assert profiles.loc["c1", "email"] == "new@x.io" and profiles.loc["c1", "city"] == "Lyon"
    assert profiles.loc["c3", "location"] == "Oslo area" and profiles.loc["c3", "age"] == 44  # the profile has a later login
    assert profiles.loc["c4", "age"] == 22
    assert report.rejected == 2 and report.loaded == 5
    reasons = rejections(warehouse).set_index(["source_file", "record_number"])["reason"]
    assert "missing customer_id" in reasons[("profiles/a.csv", 4)] and "age 'abc' is not a number" in reasons[("profiles/a.csv", 5)]


def _digest(content: str) -> str:
    """README: a legacy transaction's id holds the SHA-1 of its content (customer, UTC instant, amount), 16 hex digits."""
    return hashlib.sha1(content.encode("utf-8")).hexdigest()[:16]


def test_the_source_systems_segment_and_lifetime_value_are_kept_beside_ours(warehouse, tmp_path):
    """Tinybird's profile schema carries customer_segment and lifetime_value: stored as delivered, not dropped."""
    root = tmp_path / "landing"
    write_ndjson(root / "profiles" / "a.ndjson", [
        {"customer_id": "p1", "email": "p1@x", "customer_segment": "High Value", "lifetime_value": 1250.75,
         "last_login": "2025-01-02 10:00:00"},
        {"customer_id": "p2", "email": "p2@x", "lifetime_value": "abc"},
    ])
    write_csv(root / "profiles" / "b.csv", ["customer_id", "Customer_Segment", "lifetime_value", "last_login"],
              [["p3", "Occasional", "12.5", "2025-01-03 10:00:00"], ["p1", "", "", "2025-01-04 10:00:00"]])
    report = load_profiles(warehouse, str(root))
    stored = warehouse.read_frame(select(customer_profiles.c.customer_id, customer_profiles.c.source_customer_segment,
                                         customer_profiles.c.source_lifetime_value).order_by(customer_profiles.c.customer_id))
    # p1's later record has neither: each field keeps the latest value delivered.
    assert stored.to_dict("records") == [
        {"customer_id": "p1", "source_customer_segment": "High Value", "source_lifetime_value": 1250.75},
        {"customer_id": "p3", "source_customer_segment": "Occasional", "source_lifetime_value": 12.5}]
    assert report.rejected == 1
    assert "lifetime_value 'abc' is not a number" in rejections(warehouse)["reason"].iloc[0]
