"""Landing → raw_events → summaries → as-of RFM and CLV, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from customer_analytics import asof
from customer_analytics.asof import AsOf, compute_clv, compute_rfm, compute_scores, segment_map
from customer_analytics.asof import customer_history as customer_history_frame
from customer_analytics.config import add_months
from customer_analytics.loading import load_events_month
from customer_analytics.resources.tables import (
    clv_model_fits,
    customer_clv,
    customer_history,
    customer_month_summary,
    customer_rfm,
    rfm_segment_map,
)
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.summaries import summarize_month
from customer_analytics.transforms.clv_scores import ClvSettings
from customer_analytics.transforms.rfm import DEFAULT_SEGMENT_MAP, rfm_table
from customer_analytics_tests.landing_builder import event, write_csv, write_ndjson

FIXTURES = Path(__file__).parent / "fixtures"


def stored_rfm(warehouse, month: date) -> pd.DataFrame:
    """The month's customer_rfm rows as written, by customer_id."""
    rows = warehouse.read_frame(select(customer_rfm).where(customer_rfm.c.as_of_month == month).order_by("customer_id"))
    return rows.reset_index(drop=True)


def build(warehouse, landing: Path, first: date, last: date, *, until: date | None = None) -> None:
    month = first
    while month <= (until or last):
        load_events_month(warehouse, str(landing), month, first_month=first, last_month=last)
        summarize_month(warehouse, month, as_of=AsOf.for_month(month).instant)
        month = add_months(month, 1)


@pytest.fixture
def shop(tmp_path):
    root = tmp_path / "landing"
    write_ndjson(root / "events" / "a.ndjson", [
        event("e1", "alice", "2025-01-05 10:00:00", price=10.0, quantity=2),   # 20
        event("e2", "alice", "2025-01-05 18:00:00", price=5.0),                # same day: 5
        event("e3", "alice", "2025-01-31 23:59:59", price=0.0),                # zero revenue, last day of January
        event("e4", "bob", "2025-01-20 09:00:00", price=7.5),
        event("e5", "bob", "2025-01-20 09:05:00", event_type="page_view", price=None, quantity=None),
        event("e6", "alice", "2025-02-10 12:00:00", price=30.0),
        event("e7", "carol", "2025-02-28T23:30:00-01:00", price=4.0),          # March 1st in UTC
    ])
    return root


def test_summaries_hold_what_the_as_of_tables_need(warehouse, shop):
    build(warehouse, shop, date(2025, 1, 1), date(2025, 3, 1))
    summary = warehouse.read_frame(select(customer_month_summary).order_by("summary_month", "customer_id"))
    jan = summary[summary["summary_month"].astype(str) == "2025-01-01"].set_index("customer_id")
    assert jan.loc["alice", ["purchases", "revenue", "purchase_days", "positive_days", "positive_day_revenue", "first_day_revenue"]].tolist() == [3, 25.0, 2, 1, 25.0, 25.0]
    assert jan.loc["bob", ["purchases", "revenue", "purchase_days"]].tolist() == [1, 7.5, 1]
    assert set(summary[summary["summary_month"].astype(str) == "2025-03-01"]["customer_id"]) == {"carol"}


def test_rfm_as_of_the_end_of_each_month(warehouse, shop):
    build(warehouse, shop, date(2025, 1, 1), date(2025, 3, 1))
    result = compute_rfm(warehouse, AsOf.for_month(date(2025, 1, 1)))
    assert (result.rows, result.history_customers, result.scores_in_range) == (2, 2, True)
    assert sum(result.segments.values()) == 2 and list(result.preview["customer_id"]) == ["alice", "bob"]
    jan = stored_rfm(warehouse, date(2025, 1, 1)).set_index("customer_id")
    assert set(jan.index) == {"alice", "bob"}, "February's purchases do not count as of January"
    assert jan.loc["alice", "recency_days"] == 0 and jan.loc["bob", "recency_days"] == 11
    assert (jan.loc["alice", "frequency"], jan.loc["alice", "monetary"]) == (3, 25.0)
    compute_rfm(warehouse, AsOf.for_month(date(2025, 2, 1)))
    feb = stored_rfm(warehouse, date(2025, 2, 1)).set_index("customer_id")
    assert feb.loc["alice", "monetary"] == 55.0 and feb.loc["alice", "recency_days"] == 18
    stored = warehouse.read_frame(select(customer_rfm))
    assert sorted(stored["as_of_month"].astype(str).unique()) == ["2025-01-01", "2025-02-01"]


def test_rerunning_a_month_gives_identical_rows(warehouse, shop):
    build(warehouse, shop, date(2025, 1, 1), date(2025, 3, 1))
    as_of = AsOf.for_month(date(2025, 2, 1))
    snapshots = []
    for _ in range(2):
        compute_rfm(warehouse, as_of, run_id="x")
        compute_clv(warehouse, as_of, run_id="y")
        rfm = warehouse.read_frame(select(customer_rfm).order_by("customer_id")).drop(columns=["computed_at", "run_id"])
        clv = warehouse.read_frame(select(customer_clv).order_by("customer_id")).drop(columns=["computed_at", "run_id"])
        snapshots.append((rfm, clv))
    pd.testing.assert_frame_equal(snapshots[0][0], snapshots[1][0])
    pd.testing.assert_frame_equal(snapshots[0][1], snapshots[1][1])
    assert len(snapshots[0][1]) == 2 and snapshots[0][1]["model"].str.startswith("heuristic").all(), "too few customers to fit"


def test_rfm_and_clv_scored_side_by_side_equal_them_scored_one_by_one(warehouse, shop):
    build(warehouse, shop, date(2025, 1, 1), date(2025, 3, 1))
    as_of = AsOf.for_month(date(2025, 2, 1))

    def stored():
        return [warehouse.read_frame(select(table).order_by("customer_id")).drop(columns=["computed_at", "run_id"])
                for table in (customer_rfm, customer_clv)]

    result = compute_scores(warehouse, as_of, run_id="together")
    assert (result.rfm.rows, len(result.clv.scores)) == (2, 2)
    together = stored()
    compute_rfm(warehouse, as_of, run_id="apart")
    compute_clv(warehouse, as_of, run_id="apart")
    for side_by_side, one_by_one in zip(together, stored()):
        pd.testing.assert_frame_equal(side_by_side, one_by_one)
    assert compute_scores(warehouse, as_of, rfm=False).rfm is None
    assert compute_scores(warehouse, as_of, clv=False).clv is None


@pytest.mark.postgres
def test_on_postgres_rfm_is_scored_while_clv_is(pg_warehouse, monkeypatch):
    clv_started, rfm_threads, rfm_options = threading.Event(), [], []

    def rfm(*args, **kwargs):
        rfm_threads.append(threading.current_thread().name)
        rfm_options.append(kwargs.get("parallel_workers", True))
        assert clv_started.wait(timeout=30), "RFM was scored before CLV started, not beside it"
        return "rfm"

    def clv(*args, **kwargs):
        clv_started.set()
        return "clv"

    monkeypatch.setattr(asof, "compute_rfm", rfm)
    monkeypatch.setattr(asof, "compute_clv", clv)
    result = compute_scores(pg_warehouse, AsOf.for_month(date(2025, 1, 1)))
    assert (result.rfm, result.clv) == ("rfm", "clv")
    assert rfm_threads and rfm_threads[0] != threading.current_thread().name
    assert rfm_options == [False], "beside CLV, RFM's queries leave CLV its core (no parallel workers)"


@pytest.mark.postgres
def test_on_postgres_a_failed_clv_is_raised_once_rfm_has_ended(pg_warehouse, monkeypatch):
    rfm_ended = []

    def rfm(*args, **kwargs):
        time.sleep(0.3)
        rfm_ended.append(True)

    def clv(*args, **kwargs):
        raise ValueError("the fit failed")

    monkeypatch.setattr(asof, "compute_rfm", rfm)
    monkeypatch.setattr(asof, "compute_clv", clv)
    with pytest.raises(ValueError, match="the fit failed"):
        compute_scores(pg_warehouse, AsOf.for_month(date(2025, 1, 1)))
    assert rfm_ended == [True], "RFM's statement must not outlive the call"

    def failing_rfm(*args, **kwargs):
        raise RuntimeError("the RFM insert failed")

    monkeypatch.setattr(asof, "compute_rfm", failing_rfm)
    monkeypatch.setattr(asof, "compute_clv", lambda *args, **kwargs: "clv")
    with pytest.raises(RuntimeError, match="the RFM insert failed"):
        compute_scores(pg_warehouse, AsOf.for_month(date(2025, 1, 1)))


def _cdnow_landing(tmp_path: Path) -> Path:
    rows = []
    for line in (FIXTURES / "CDNOW_sample.txt").read_text().split("\n"):
        if line.strip():
            customer, _sample_id, day, _cds, dollars = line.split()
            rows.append([customer, f"{day[:4]}-{day[4:6]}-{day[6:]}", dollars])
    root = tmp_path / "cdnow"
    write_csv(root / "transactions" / "cdnow_sample.csv", ["customer_id", "transaction_date", "transaction_amount"], rows)
    return root


def test_cdnow_reproduces_the_published_estimates(warehouse, tmp_path):
    """Fader, Hardie & Lee (2005): 39-week calibration ending 1997-09-30, 2,357 customers."""
    landing = _cdnow_landing(tmp_path)
    build(warehouse, landing, date(1997, 1, 1), date(1998, 6, 1), until=date(1997, 9, 1))
    result = compute_clv(warehouse, AsOf.for_month(date(1997, 9, 1)))
    fits = result.fits
    assert fits.converged and fits.n_customers == 2357 and fits.n_repeat_customers == 946
    bg, gg = fits.bgnbd.params, fits.gamma_gamma.params
    published = {"r": 0.243, "alpha": 4.414 * 7, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "gamma": 15.44}
    fitted = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "p": gg.p, "q": gg.q, "gamma": gg.gamma}
    for name, value in published.items():
        assert fitted[name] == pytest.approx(value, rel=0.01), name
    row = warehouse.read_frame(select(clv_model_fits)).iloc[0]
    assert row["r"] == pytest.approx(bg.r) and bool(row["converged"])
    scores = warehouse.read_frame(select(customer_clv))
    assert len(scores) == 2357 and scores["clv_score"].between(0, 100).all()
    assert set(scores["segment"]) <= {"high", "medium", "low", "at_risk"}


def test_segments_follow_customers_from_month_to_month(warehouse, shop):
    from customer_analytics.resources.tables import customer_segments, segment_definitions
    from customer_analytics.segments import compute_segments, publish_segment_definitions

    build(warehouse, shop, date(2025, 1, 1), date(2025, 3, 1))
    for month in (date(2025, 1, 1), date(2025, 2, 1)):
        compute_rfm(warehouse, AsOf.for_month(month))
        compute_clv(warehouse, AsOf.for_month(month))
        tables = compute_segments(warehouse, month)
    stored = warehouse.read_frame(select(customer_segments).where(customer_segments.c.as_of_month == date(2025, 2, 1)))
    feb = stored.set_index("customer_id")
    assert tables.customers == 2 and tables.changed == int(feb["segment_changed"].astype(bool).sum())
    assert set(stored["customer_id"]) == {"alice", "bob"} and len(stored) == 2
    assert feb.loc["alice", "previous_segment"] is not None, "alice was segmented in January"
    assert tables.migration["customers"].sum() == 2
    first = publish_segment_definitions(warehouse, today=date(2025, 1, 1))
    again = publish_segment_definitions(warehouse, today=date(2025, 6, 1))
    assert (again["creation_date"] == pd.Timestamp("2025-01-01")).all() and (again["update_date"] == pd.Timestamp("2025-01-01")).all()
    changed = publish_segment_definitions(warehouse, ClvSettings(high_score=80), today=date(2025, 7, 1)).set_index("segment_id")
    assert changed.loc["value:high", "update_date"] == pd.Timestamp("2025-07-01")
    assert changed.loc["value:low", "update_date"] == pd.Timestamp("2025-01-01")
    assert len(warehouse.read_frame(select(segment_definitions))) == len(first)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 58), st.integers(0, 86399), st.integers(0, 5000)),
                min_size=1, max_size=40))
def test_property_reruns_are_identical(tmp_path_factory, purchases):
    """Whatever the purchases, recomputing a month's RFM and CLV gives the same rows (apart from stamps)."""
    # A warehouse of its own per example: one shared across examples would see each landing folder
    # replace the last one's (a shrink the loads refuse).
    sqlite_warehouse = Warehouse(f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.db'}")
    landing = tmp_path_factory.mktemp("landing")
    records = [event(f"e{i}", f"c{customer}", (datetime(2025, 1, 1, tzinfo=timezone.utc) + pd.Timedelta(days=day, seconds=second))
                     .strftime("%Y-%m-%d %H:%M:%S"), price=cents / 100) for i, (customer, day, second, cents) in enumerate(purchases)]
    write_ndjson(landing / "events" / "p.ndjson", records)
    build(sqlite_warehouse, landing, date(2025, 1, 1), date(2025, 3, 1), until=date(2025, 2, 1))
    as_of = AsOf.for_month(date(2025, 2, 1))
    runs = []
    for _ in range(2):
        compute_rfm(sqlite_warehouse, as_of)
        runs.append((stored_rfm(sqlite_warehouse, as_of.month).drop(columns=["computed_at"]),
                     compute_clv(sqlite_warehouse, as_of).scores.drop(columns=["computed_at"])))
    first, again = runs
    pd.testing.assert_frame_equal(first[0], again[0])
    pd.testing.assert_frame_equal(first[1], again[1])
    assert first[0]["monetary"].sum() == pytest.approx(sum(c for *_, c in purchases) / 100)


def _random_history(month: date, n: int, seed: int) -> pd.DataFrame:
    """A month's customer_history with many ties (few distinct dates, counts and cent amounts)."""
    rng = np.random.default_rng(seed)
    as_of = AsOf.for_month(month)
    last_day = pd.Timestamp(as_of.day) - pd.to_timedelta(rng.integers(0, 12, n) * 5, unit="D")
    first_day = last_day - pd.to_timedelta(rng.integers(0, 400, n), unit="D")
    purchases = rng.integers(1, 6, n)
    revenue = np.round(rng.choice([0.0, 9.99, 25.0, 100.0], n) * purchases + rng.integers(0, 3, n) * 0.01, 2)
    return pd.DataFrame({
        "as_of_month": pd.Timestamp(month), "customer_id": [f"c{seed}-{i:05d}" for i in range(n)],
        "purchases": purchases, "revenue": revenue, "purchase_days": purchases, "positive_days": purchases,
        "positive_day_revenue": revenue,
        "first_purchase_at": (first_day + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")).tz_localize("UTC"),
        "last_purchase_at": (last_day + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")).tz_localize("UTC"),
        "first_purchase_date": first_day, "last_purchase_date": last_day,
        "first_month": first_day.to_period("M").to_timestamp(), "first_day_revenue": revenue / purchases,
        "revenue_30d": 0.0, "revenue_90d": 0.0, "as_of": pd.Timestamp(as_of.instant),
        "computed_at": pd.Timestamp(as_of.instant),
    })


def test_rfm_of_a_month_without_customers_is_empty(warehouse):
    """No history rows: no scores, and no division by a customer count of zero."""
    as_of = AsOf.for_month(date(2025, 3, 1))
    warehouse.ensure_tables()
    result = compute_rfm(warehouse, as_of)
    assert (result.rows, result.history_customers, result.segments) == (0, 0, {})
    assert stored_rfm(warehouse, as_of.month).empty


@pytest.mark.parametrize("seed, customers", [(0, 700), (1, 700), (2, 700), (3, 703), (4, 1), (5, 2), (6, 9)])
def test_rfm_computed_in_the_warehouse_equals_the_pandas_reference(warehouse, seed, customers):
    """customer_rfm is scored in SQL; `rfm_table` states the definitions. Ties, (seed 2) a rule map
    with gaps, leaving some cells Unclassified, and customer counts that five does not divide (the
    score cuts round up) must come out the same."""
    month = date(2025, 3, 1)
    as_of = AsOf.for_month(month)
    history = _random_history(month, customers, seed)
    warehouse.replace_month(customer_history, month, history)
    if seed == 2:
        rules = DEFAULT_SEGMENT_MAP[DEFAULT_SEGMENT_MAP["rfm_segment"].isin(["Champions", "Lost", "At Risk"])]
        with warehouse.replace(lock_name="rfm_segment_map") as replacement:
            replacement.delete_where(rfm_segment_map, rfm_segment_map.c.priority.is_not(None))
            replacement.append(rfm_segment_map, rules)
    result = compute_rfm(warehouse, as_of, run_id="sql")
    stored = stored_rfm(warehouse, month).set_index("customer_id")
    expected = rfm_table(customer_history_frame(warehouse, as_of), as_of.day, segment_map(warehouse)).set_index("customer_id")
    assert result.rows == len(stored) == len(history) == result.history_customers
    assert result.scores_in_range
    assert stored.index.equals(expected.index)
    for column in ("recency_days", "frequency", "r_score", "f_score", "m_score", "fm_score", "rfm_score", "rfm_segment"):
        assert stored[column].astype(str).tolist() == expected[column].astype(str).tolist(), column
    for column in ("monetary", "avg_order_value"):
        np.testing.assert_array_equal(stored[column].to_numpy(float), expected[column].to_numpy(float))
    for column in ("first_purchase_at", "last_purchase_at"):
        assert (pd.to_datetime(stored[column], utc=True, format="ISO8601") == expected[column]).all(), column
    assert result.segments == expected["rfm_segment"].value_counts().to_dict()
    assert (seed == 2) == ("Unclassified" in result.segments)
    assert set(stored["r_score"]) <= set(range(1, 6)) and (customers < 100 or len(set(stored["r_score"])) > 1)
