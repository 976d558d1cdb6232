"""Inputs that once lost or double-counted data while the run exited 0 (issue 35), on SQLite and PostgreSQL.

Each test builds the landing folder a careless operator or a messy source system would leave,
and shows either the right rows or a refusal that replaces nothing.
"""

from __future__ import annotations

import shutil
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import func, select

from customer_analytics.loading import ShrinkRefused, load_events_month, load_profiles, refuses_shrink
from customer_analytics.resources.tables import customer_profiles, raw_events, rejected_events
from customer_analytics_tests.landing_builder import event, write_csv, write_ndjson

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
PROFILE_FIELDS = ["customer_id", "email", "first_name", "last_name", "age", "gender", "city", "country", "signup_date",
                  "last_login"]


def load(warehouse, landing, month, **kwargs):
    return load_events_month(warehouse, str(landing), month, first_month=JAN, last_month=MAR, run_id="test", **kwargs)


def rows_of(warehouse, month) -> int:
    return warehouse.scalar(select(func.count()).select_from(raw_events).where(raw_events.c.event_month == month))


def write_month(root, month: date, count: int, *, name: str | None = None):
    """`count` purchases of `month`, one file."""
    records = [event(f"{month:%Y%m}-{i}", f"c{i % 7}", f"{month:%Y-%m}-{1 + i % 27:02d} 10:00:00", price=1.0 + i)
               for i in range(count)]
    return write_ndjson(root / "events" / (name or f"{month:%Y-%m}.ndjson"), records)


def write_profiles(root, count: int):
    rows = [[f"c{i}", f"c{i}@example.com", "A", "B", "30", "F", "Berlin", "DE", "2024-01-01", "2025-01-01"]
            for i in range(count)]
    return write_csv(root / "profiles" / "profiles.csv", PROFILE_FIELDS, rows)


@pytest.mark.parametrize(("before", "after", "max_shrink", "refused"), [
    (0, 0, 0.5, False),  # nothing to lose
    (10, 0, 1.0, True),  # to zero is refused even when any share may go
    (10, 5, 0.5, False),  # exactly the limit
    (10, 4, 0.5, True),
    (10, 12, 0.0, False),  # growing never is
    (10, 9, 0.0, True),
])
def test_which_shrinks_need_the_runs_permission(before, after, max_shrink, refused):
    assert refuses_shrink(before, after, max_shrink) is refused


def test_an_empty_landing_folder_replaces_no_month_and_no_profiles(warehouse, tmp_path):
    """Case 1: an unmounted share is an existing but empty folder."""
    landing = tmp_path / "landing"
    write_month(landing, JAN, 40)
    write_profiles(landing, 12)
    load(warehouse, landing, JAN)
    load_profiles(warehouse, str(landing))
    shutil.rmtree(landing)
    (landing / "events").mkdir(parents=True)

    with pytest.raises(ShrinkRefused) as refused:
        load(warehouse, landing, JAN)
    message = str(refused.value)
    assert "2025-01" in message and "40 rows to 0" in message and "--allow-shrink" in message
    assert rows_of(warehouse, JAN) == 40, "the month keeps its rows"
    with pytest.raises(ShrinkRefused, match="profiles: this load would shrink 12 rows to 0"):
        load_profiles(warehouse, str(landing))
    assert warehouse.scalar(select(func.count()).select_from(customer_profiles)) == 12

    report = load(warehouse, landing, JAN, allow_shrink=True)
    assert (report.previous_rows, report.published_rows, report.shrink_allowed) == (40, 0, True)
    assert rows_of(warehouse, JAN) == 0
    load_profiles(warehouse, str(landing), allow_shrink=True)
    assert warehouse.scalar(select(func.count()).select_from(customer_profiles)) == 0


def test_a_half_copied_month_is_refused_past_the_limit_and_a_small_drop_is_not(warehouse, tmp_path):
    landing = tmp_path / "landing"
    write_month(landing, JAN, 30, name="a.ndjson")
    write_month(landing, FEB, 5, name="b.ndjson")  # another month's file: untouched by January's load
    load(warehouse, landing, JAN)
    write_month(landing, JAN, 12, name="a.ndjson")  # 60 % of January gone
    with pytest.raises(ShrinkRefused, match=r"30 rows to 12 \(by 60%, more than CUSTOMER_ANALYTICS_MAX_SHRINK 0.5\)"):
        load(warehouse, landing, JAN)
    assert rows_of(warehouse, JAN) == 30
    report = load(warehouse, landing, JAN, max_shrink=0.7)
    assert (report.previous_rows, report.published_rows, report.shrink_allowed) == (30, 12, False)
    assert rows_of(warehouse, JAN) == 12


# -- Case 7: the quarantine keyed by record and month, superseded when files change --------------------------------

def quarantine(warehouse) -> set[tuple]:
    frame = warehouse.read_frame(select(rejected_events.c.source_file, rejected_events.c.record_number,
                                        rejected_events.c.event_month, rejected_events.c.reason))
    return {(r.source_file, int(r.record_number), None if pd.isna(r.event_month) else pd.Timestamp(r.event_month).date(),
             r.reason) for r in frame.itertuples()}


def test_a_record_number_reused_by_another_months_bad_record_is_not_lost(warehouse, tmp_path):
    landing = tmp_path / "landing"
    path = landing / "events" / "f.ndjson"
    write_ndjson(path, [event("a", "c1", "2025-01-03 10:00:00"), event("b", "c1", "2025-02-03 10:00:00", price="x")])
    load(warehouse, landing, JAN)
    load(warehouse, landing, FEB)
    assert {(f, r, m) for f, r, m, _ in quarantine(warehouse)} == {("events/f.ndjson", 2, FEB)}
    # Rewritten: line 2 is now a bad January record, and February's is gone.
    write_ndjson(path, [event("a", "c1", "2025-01-03 10:00:00"), event("b", "c1", "2025-01-04 10:00:00", price="y")])
    load(warehouse, landing, JAN)
    assert ("events/f.ndjson", 2, JAN) in {(f, r, m) for f, r, m, _ in quarantine(warehouse)}
    load(warehouse, landing, FEB)
    assert {(f, r, m) for f, r, m, _ in quarantine(warehouse)} == {("events/f.ndjson", 2, JAN)}


def test_rejections_of_renamed_or_deleted_files_are_superseded(warehouse, tmp_path):
    landing = tmp_path / "landing"
    write_ndjson(landing / "events" / "old.ndjson", [event("a", "c1", "2025-01-03 10:00:00"), '{"broken',
                                                    event("z", "c1", "2019-01-03 10:00:00")])
    load(warehouse, landing, JAN)
    assert {f for f, *_ in quarantine(warehouse)} == {"events/old.ndjson"}
    (landing / "events" / "old.ndjson").rename(landing / "events" / "new.ndjson")
    load(warehouse, landing, JAN)
    assert {(f, r, m) for f, r, m, _ in quarantine(warehouse)} == {("events/new.ndjson", 2, None),
                                                                        ("events/new.ndjson", 3, date(2019, 1, 1))}
    (landing / "events" / "new.ndjson").unlink()
    load(warehouse, landing, JAN, allow_shrink=True)
    assert quarantine(warehouse) == set()


def test_a_warehouse_keyed_the_old_way_is_migrated_and_keeps_its_rejections(warehouse):
    from sqlalchemy import MetaData, UniqueConstraint, insert

    old = MetaData(schema=warehouse.schema if warehouse.dialect == "postgresql" else None)
    legacy = rejected_events.to_metadata(old)
    legacy.indexes = {index for index in legacy.indexes if index.name != "rejected_events_record_month_key"}
    legacy.append_constraint(UniqueConstraint("source_file", "record_number", name="rejected_events_record_key"))
    with warehouse.begin() as connection:
        if warehouse.dialect == "postgresql":
            connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {warehouse.quote(warehouse.schema)}")
        legacy.create(connection)
        connection.execute(insert(legacy), [{"source": "events", "source_file": "f", "record_number": 1, "raw_record": "x",
                                             "reason": "old", "rejected_at": pd.Timestamp("2025-01-01", tz="UTC"),
                                             "event_month": JAN}])
    warehouse.ensure_tables()
    with warehouse.begin() as connection:
        connection.execute(insert(rejected_events), [{"source": "events", "source_file": "f", "record_number": 1,
                                                      "raw_record": "y", "reason": "new", "rejected_at": pd.Timestamp("2025-01-01", tz="UTC"),
                                                      "event_month": FEB}])
    assert {(m, reason) for _f, _r, m, reason in quarantine(warehouse)} == {(JAN, "old"), (FEB, "new")}
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with warehouse.begin() as connection:
            connection.execute(insert(rejected_events), [{"source": "events", "source_file": "f", "record_number": 1,
                                                          "raw_record": "z", "reason": "again", "rejected_at": pd.Timestamp("2025-01-01", tz="UTC"),
                                                          "event_month": FEB}])


# -- Case 5: an event_id redelivered with its timestamp moved into another month -------------------------------------

def state(warehouse) -> tuple[set, set]:
    stored = warehouse.read_frame(select(raw_events.c.event_id, raw_events.c.event_month, raw_events.c.source_file))
    kept = {(r.event_id, pd.Timestamp(r.event_month).date(), r.source_file) for r in stored.itertuples()}
    return kept, {(f, r, m) for f, r, m, _reason in quarantine(warehouse)}


@pytest.mark.parametrize("order", [(JAN, FEB), (FEB, JAN), (MAR, FEB, JAN), (JAN, FEB, JAN, FEB), (FEB, JAN, FEB, MAR, JAN)],
                         ids=lambda order: "-".join(f"{m:%m}" for m in order))
@pytest.mark.parametrize("first_file", ["a", "b"])
def test_a_redelivery_moved_across_months_is_decided_the_same_whatever_the_order(warehouse, tmp_path, order, first_file):
    """The first delivery in landing order is kept, in its month; the other is quarantined in its month, naming it."""
    landing = tmp_path / "landing"
    jan_name, feb_name = ("a.ndjson", "b.ndjson") if first_file == "a" else ("b.ndjson", "a.ndjson")
    write_ndjson(landing / "events" / jan_name, [event("x1", "c1", "2025-01-05 10:00:00"), event("E", "c1", "2025-01-31 23:00:00")])
    write_ndjson(landing / "events" / feb_name, [event("x2", "c2", "2025-02-05 10:00:00"), event("E", "c1", "2025-02-01 01:00:00")])
    for month in order:
        load(warehouse, landing, month)
    for month in (JAN, FEB):
        if month not in order:
            load(warehouse, landing, month)
    kept, quarantined = state(warehouse)
    first, later = (JAN, FEB) if first_file == "a" else (FEB, JAN)
    first_name, later_name = ("events/" + (jan_name if first == JAN else feb_name)), ("events/" + (feb_name if first == JAN else jan_name))
    assert ("E", first, first_name) in kept and not any(e == "E" and m == later for e, m, _f in kept)
    assert {("x1", JAN, "events/" + jan_name), ("x2", FEB, "events/" + feb_name)} <= kept
    assert quarantined == {(later_name, 2, later)}
    reason = warehouse.scalar(select(rejected_events.c.reason))
    assert "event_id 'E'" in reason and f"({first_name}, record 2" in reason


def test_the_month_that_lost_a_redelivery_to_a_later_load_is_reported_changed_and_stale(warehouse, tmp_path):
    from customer_analytics.month_loads import stale_months
    from customer_analytics.summaries import summarize_month

    landing = tmp_path / "landing"
    write_ndjson(landing / "events" / "b.ndjson", [event("x2", "c2", "2025-02-05 10:00:00"), event("E", "c1", "2025-02-01 01:00:00")])
    load(warehouse, landing, FEB)
    summarize_month(warehouse, FEB, as_of=pd.Timestamp("2025-03-01", tz="UTC").to_pydatetime())
    assert stale_months(warehouse, first=JAN, last=MAR) == []
    write_ndjson(landing / "events" / "a.ndjson", [event("E", "c1", "2025-01-31 23:00:00")])  # an earlier delivery, found later
    report = load(warehouse, landing, JAN)
    assert report.redeliveries_across_months == [{"event_id": "E", "kept_in": "2025-01", "quarantined_in": "2025-02"}]
    assert rows_of(warehouse, FEB) == 1
    stale = stale_months(warehouse, first=JAN, last=MAR)
    assert [(s.month, s.reason) for s in stale] == [(FEB, "raw_events of 2025-01 changed after this month's history was built")]


# -- Case 9: an older month rerun after later months were built ---------------------------------------------------------

def build(warehouse, landing, month):
    from customer_analytics.asof import AsOf
    from customer_analytics.summaries import summarize_month

    load(warehouse, landing, month)
    summarize_month(warehouse, month, as_of=AsOf.for_month(month).instant)


def history_of(warehouse, month) -> pd.DataFrame:
    from customer_analytics.resources.tables import customer_history

    frame = warehouse.read_frame(select(customer_history.c.customer_id, customer_history.c.purchases, customer_history.c.revenue)
                                 .where(customer_history.c.as_of_month == month).order_by(customer_history.c.customer_id))
    return frame.reset_index(drop=True)


def test_a_late_purchase_in_an_earlier_month_marks_later_months_stale_until_rebuilt(warehouse, tmp_path, sqlite_warehouse):
    from customer_analytics.month_loads import stale_months

    landing = tmp_path / "landing"
    for month in (JAN, FEB, MAR):
        write_month(landing, month, 20)
        build(warehouse, landing, month)
    assert stale_months(warehouse, first=JAN, last=MAR) == []
    write_ndjson(landing / "events" / "late.ndjson", [event("late-1", "c-new", "2025-02-20 10:00:00", price=50.0)])
    build(warehouse, landing, FEB)
    stale = stale_months(warehouse, first=JAN, last=MAR)
    assert [(s.month, s.reason) for s in stale] == [(MAR, "raw_events of 2025-02 changed after this month's history was built")]
    assert "c-new" not in set(history_of(warehouse, MAR)["customer_id"]), "March, not rebuilt, misses the late purchase"
    build(warehouse, landing, MAR)
    assert stale_months(warehouse, first=JAN, last=MAR) == []
    clean = sqlite_warehouse  # a clean build of the same landing folder
    for month in (JAN, FEB, MAR):
        build(clean, landing, month)
    pd.testing.assert_frame_equal(history_of(warehouse, MAR), history_of(clean, MAR))


def test_a_landing_file_changed_for_a_month_not_loaded_since_marks_it_stale(warehouse, tmp_path):
    from customer_analytics.month_loads import stale_months

    landing = tmp_path / "landing"
    both = landing / "events" / "both.ndjson"
    write_ndjson(both, [event("j", "c1", "2025-01-05 10:00:00"), event("f", "c1", "2025-02-05 10:00:00")])
    build(warehouse, landing, JAN)
    build(warehouse, landing, FEB)
    write_ndjson(both, [event("j", "c1", "2025-01-05 10:00:00"), event("f", "c1", "2025-02-06 10:00:00", price=3.0)])
    load(warehouse, landing, JAN)  # reads the changed file: February's copy of it is now out of date
    # January's rows are the same as before (same digest): only February is stale.
    assert [(s.month, s.reason) for s in stale_months(warehouse, first=JAN, last=MAR)] == [
        (FEB, "a landing file of 2025-02 changed or disappeared after that month was loaded")]
    build(warehouse, landing, FEB)
    assert stale_months(warehouse, first=JAN, last=MAR) == []
    assert warehouse.scalar(select(raw_events.c.price).where(raw_events.c.event_id == "f")) == 3.0


# -- Case 10: one till typo that would dominate every average --------------------------------------------------------

def test_a_typo_sized_purchase_is_reported_with_its_row_and_kept(warehouse, tmp_path):
    from customer_analytics.quality import OUTLIER_FACTOR, revenue_outliers

    landing = tmp_path / "landing"
    write_month(landing, JAN, 40)  # prices 1 … 40
    write_csv(landing / "transactions" / "till.csv", ["customer_id", "transaction_date", "transaction_amount"],
              [["c9", "2025-01-20", "9999999999"], ["c9", "2025-01-21", "30"]])
    load(warehouse, landing, JAN)
    found = revenue_outliers(warehouse, JAN)
    stored = warehouse.read_frame(select(raw_events.c.revenue).where(raw_events.c.event_type == "purchase"))["revenue"]
    typical = (stored.sum() - stored.nlargest(10).sum()) / (len(stored) - 10)
    assert found.typical == pytest.approx(typical)
    assert [(o["customer_id"], o["revenue"], o["source_file"], o["source_record"]) for o in found.outliers] == [
        ("c9", 9999999999.0, "transactions/till.csv", 2)]
    assert 9999999999.0 > OUTLIER_FACTOR * typical and not found.passed
    assert found.outlier_share == pytest.approx(9999999999.0 / stored.sum())
    assert stored.max() == 9999999999.0, "reported, not capped"


def test_months_without_outliers_or_with_too_few_purchases_pass():
    from customer_analytics.quality import find_revenue_outliers

    largest = pd.DataFrame({"event_id": [f"e{i}" for i in range(10)], "customer_id": "c", "revenue": [500.0] * 10,
                            "source_file": "f", "source_record": range(10)})
    assert find_revenue_outliers(JAN, 100, 500.0 * 10 + 90 * 1.0, largest).passed  # 500 < 1000 × 1.0
    assert not find_revenue_outliers(JAN, 100, 500.0 * 10 + 90 * 0.1, largest).passed  # 500 > 1000 × 0.1
    few = find_revenue_outliers(JAN, 10, 5000.0, largest)
    assert few.passed and few.typical is None


def test_a_file_rewritten_to_move_an_event_into_another_month_moves_it(warehouse, tmp_path):
    """The stored copy came from a record the file no longer holds: the load that read the file now decides."""
    from customer_analytics.month_loads import stale_months

    landing = tmp_path / "landing"
    path = landing / "events" / "p.ndjson"
    write_ndjson(path, [event("e0", "c1", "2025-02-03 10:00:00"), event("e1", "c1", "2025-01-03 10:00:00")])
    load(warehouse, landing, FEB)
    write_ndjson(path, [event("e0", "c1", "2025-01-04 10:00:00"), event("e1", "c1", "2025-01-03 10:00:00")])
    load(warehouse, landing, JAN)
    assert {(e, m) for e, m, _f in state(warehouse)[0]} == {("e0", JAN), ("e1", JAN)}
    assert [s.month for s in stale_months(warehouse, first=JAN, last=MAR)] == [FEB], "its file changed since"
    report = load(warehouse, landing, FEB)  # February's only row went with January's load
    assert (report.previous_rows, report.published_rows) == (0, 0)
    assert stale_months(warehouse, first=JAN, last=MAR) == []
    assert state(warehouse) == ({("e0", JAN, "events/p.ndjson"), ("e1", JAN, "events/p.ndjson")}, set())


# -- Case 7 at random: edits, renames, deletions and month reruns against a clean reference -----------------------------

def _keys(warehouse, month=None) -> tuple[set, set]:
    """(raw_events keys, rejected_events keys) of `month`, or of everything; rejections without a month under None."""
    raw = warehouse.read_frame(select(raw_events.c.event_id, raw_events.c.event_month, raw_events.c.source_file,
                                      raw_events.c.source_record))
    rows = {(r.event_id, pd.Timestamp(r.event_month).date(), r.source_file, int(r.source_record)) for r in raw.itertuples()}
    rejected = quarantine(warehouse)
    if month is not None:
        rows = {r for r in rows if r[1] == month}
        rejected = {r for r in rejected if r[2] == month}
    return rows, rejected


def _file_scoped(warehouse) -> set:
    return {r for r in quarantine(warehouse) if r[2] is None or not JAN <= r[2] <= MAR}


def _random_file(rng, ids) -> list:
    """A few records: valid ones of the three months, a bad price, a malformed line, a timestamp outside the partitions."""
    records = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        month = rng.choice((1, 2, 3))
        stamp = f"2025-{month:02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:00:00"
        event_id = f"id{next(ids)}"
        if kind < 0.6:
            records.append(event(event_id, f"c{rng.randint(1, 4)}", stamp, price=rng.randint(1, 9)))
            if rng.random() < 0.2:
                records.append(records[-1])  # delivered twice in the file: a duplicate
        elif kind < 0.75:
            records.append(event(event_id, "c1", stamp, price="cheap"))
        elif kind < 0.9:
            records.append('{"event_id": "broken", ')
        else:
            records.append(event(event_id, "c1", f"2019-0{month}-05 10:00:00"))
    return records


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edits_renames_and_reruns_lose_no_record(warehouse, tmp_path, seed):
    """After every rerun the month (and every rejection without a month) equals a clean load of the folder as it is."""
    import itertools
    import random

    from customer_analytics.resources.warehouse import Warehouse

    rng, ids = random.Random(seed), itertools.count()
    landing = tmp_path / "landing"
    names = [f"f{i}.ndjson" for i in range(4)]
    for name in names:
        write_ndjson(landing / "events" / name, _random_file(rng, ids))
    for step in range(24):
        action = rng.choice(("edit", "edit", "rename", "delete", "add", "rerun", "rerun", "rerun"))
        present = sorted(p.name for p in (landing / "events").iterdir())
        if action == "edit" and present:
            write_ndjson(landing / "events" / rng.choice(present), _random_file(rng, ids))
        elif action == "rename" and present:
            (landing / "events" / rng.choice(present)).rename(landing / "events" / f"r{step}.ndjson")
        elif action == "delete" and len(present) > 1:
            (landing / "events" / rng.choice(present)).unlink()
        elif action == "add":
            write_ndjson(landing / "events" / f"n{step}.ndjson", _random_file(rng, ids))
        else:
            month = rng.choice((JAN, FEB, MAR))
            report = load(warehouse, landing, month, allow_shrink=True)
            assert report.records_read == report.loaded + report.rejected + report.duplicates
            reference = Warehouse(f"sqlite:///{tmp_path / f'reference{step}.db'}")
            load(reference, landing, month, allow_shrink=True)
            assert _keys(warehouse, month) == _keys(reference, month), f"step {step}: {month:%Y-%m} differs from a clean load"
            assert _file_scoped(warehouse) == _file_scoped(reference), f"step {step}: rejections without a month differ"
            reference.engine.dispose()
    for month in (JAN, FEB, MAR):
        load(warehouse, landing, month, allow_shrink=True)
    reference = Warehouse(f"sqlite:///{tmp_path / 'reference.db'}")
    for month in (JAN, FEB, MAR):
        load(reference, landing, month)
    assert _keys(warehouse) == _keys(reference)
    reference.engine.dispose()
