"""The database-backed asset checks (customer_analytics.checks / .quality), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest
from scipy.special import hyp2f1
from sqlalchemy import insert, select

from customer_analytics.checks import all_asset_checks, clv_model_quality, no_duplicate_event_ids, no_events_beyond_as_of
from customer_analytics.definitions import all_assets
from customer_analytics.loading import load_events_month
from customer_analytics.quality import (
    CLOCK_SKEW_TOLERANCE,
    MODEL_QUALITY_TOLERANCE,
    clv_model_quality as measure_model_quality,
    duplicate_event_ids,
    event_timestamp_bounds,
)
from customer_analytics.resources import LandingZone, WarehouseResource
from customer_analytics.resources.tables import clv_model_fits, customer_clv, customer_month_summary, raw_events, rejected_events
from customer_analytics_tests.landing_builder import event, write_ndjson

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
UTC = timezone.utc


# -- helpers ------------------------------------------------------------------------------------

@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    write_ndjson(root / "events" / "2025-01.ndjson", [
        event("e1", "c1", "2025-01-05 10:00:00"),
        event("e2", "c2", "2025-01-20 10:00:00", event_type="page_view", price=None, quantity=None),
        event("e3", "c1", "2025-01-31 23:59:59"),
    ])
    write_ndjson(root / "events" / "2025-02.ndjson", [event("e4", "c2", "2025-02-03 09:00:00")])
    write_ndjson(root / "events" / "2025-03.ndjson", [event("e5", "c3", "2025-03-10 09:00:00")])
    return root


def _load(warehouse, landing, month):
    return load_events_month(warehouse, str(landing), month, first_month=JAN, last_month=date(2025, 12, 1))


def _materialize(warehouse, landing, selection, partition_key):
    return dg.materialize(
        [*all_assets, *all_asset_checks], selection=selection, partition_key=partition_key,
        resources={"warehouse": WarehouseResource(db_url=warehouse.url, db_schema=warehouse.schema),
                   "landing": LandingZone(landing_dir=str(landing))},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )


# Re-deriving the summaries leaves raw_events (and rows inserted by hand) alone; selecting them gives
# the run its partitions definition, which a selection of checks alone does not have.
SUMMARIES = dg.AssetSelection.assets("customer_month_summary", "customer_week_summary", "customer_history")


def _evaluations(result):
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def _insert_raw_event(warehouse, event_id, timestamp: datetime, month: date):
    """A row the loader would never write (the timestamp disagrees with the month, or is in the future)."""
    with warehouse.begin() as connection:
        connection.execute(insert(raw_events), [{
            "event_id": event_id, "customer_id": "cx", "event_type": "purchase", "event_timestamp": timestamp,
            "event_month": month, "event_date": timestamp.date(), "price": 1.0, "quantity": 1, "revenue": 1.0,
            "source": "events", "source_file": "manual", "source_record": 1, "ingested_at": datetime.now(UTC),
        }])


# -- raw_events ---------------------------------------------------------------------------------

def test_a_closed_month_without_events_warns_and_the_month_in_progress_does_not(warehouse, landing):
    from customer_analytics.config import current_month, month_key

    result = _materialize(warehouse, landing, ["raw_events", "rejected_events"], "2025-01")
    assert result.success and _evaluations(result)["closed_month_has_events"].passed
    empty = _materialize(warehouse, landing, ["raw_events", "rejected_events"], "2025-04")  # no file for April
    assert empty.success, "a warning, not a failure"
    check = _evaluations(empty)["closed_month_has_events"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "no events at all in 2025-04, a closed month" in check.description
    now = _materialize(warehouse, landing, ["raw_events", "rejected_events"], month_key(current_month()))
    assert _evaluations(now)["closed_month_has_events"].passed, "the month in progress may still be empty"


def test_the_checks_are_partitioned_documented_and_state_their_tolerances():
    specs = {spec.name: spec for check in all_asset_checks for spec in check.check_specs}
    assert set(specs) == {"no_duplicate_event_ids", "no_events_beyond_as_of", "no_revenue_outliers",
                          "closed_month_has_events", "clv_model_quality"}
    assert all(spec.partitions_def is not None for spec in specs.values())
    assert specs["no_duplicate_event_ids"].blocking and not specs["clv_model_quality"].blocking
    # The docstrings (the UI's descriptions) quote the constants: keep them in step.
    assert CLOCK_SKEW_TOLERANCE == timedelta(hours=1) and "1 hour" in specs["no_events_beyond_as_of"].description
    assert MODEL_QUALITY_TOLERANCE == 0.25 and "0.25" in specs["clv_model_quality"].description


def test_a_clean_month_passes_both_raw_events_checks(warehouse, landing):
    result = _materialize(warehouse, landing, ["raw_events", "rejected_events"], "2025-01")
    assert result.success
    checks = _evaluations(result)
    duplicates, bounds = checks["no_duplicate_event_ids"], checks["no_events_beyond_as_of"]
    assert duplicates.passed and bounds.passed
    assert duplicates.metadata["cross_month_duplicate_ids"].value == 0
    assert duplicates.metadata["within_month_duplicate_ids"].value == 0
    assert bounds.metadata["rows"].value == 3 and bounds.metadata["events_beyond_as_of"].value == 0
    assert bounds.metadata["as_of"].value == "2025-02-01T00:00:00+00:00"
    assert bounds.metadata["latest_event"].value == "2025-01-31T23:59:59+00:00"


def test_a_redelivery_in_another_month_is_kept_once_and_the_check_passes(warehouse, landing):
    # A redelivery of e1 stamped in February, in its own file: February's load skips January's file
    # (the manifest says it holds no February record), and still finds e1 in January's id hashes.
    write_ndjson(landing / "events" / "2025-02-redelivery.ndjson", [event("e1", "c1", "2025-02-03 10:00:00")])
    _load(warehouse, landing, JAN)
    result = _materialize(warehouse, landing, ["raw_events", "rejected_events", "customer_month_summary", "customer_history",
                                               "customer_week_summary"], "2025-02")
    assert result.success and _evaluations(result)["no_duplicate_event_ids"].passed
    assert duplicate_event_ids(warehouse, JAN).passed
    reason = warehouse.scalar(select(rejected_events.c.reason).where(rejected_events.c.event_id == "e1"))
    assert reason.startswith("event_id 'e1' was already delivered with different contents")


def test_an_id_stored_under_two_months_fails_names_the_id_and_blocks_the_summaries(warehouse, landing):
    # Only rows written outside the loads can break the rule now: the check guards it.
    _load(warehouse, landing, JAN)
    _load(warehouse, landing, FEB)
    _insert_raw_event(warehouse, "e1", datetime(2025, 2, 3, 10, tzinfo=UTC), FEB)
    result = _materialize(warehouse, landing, SUMMARIES | dg.AssetSelection.checks(no_duplicate_event_ids), "2025-02")
    duplicates = _evaluations(result)["no_duplicate_event_ids"]
    assert not duplicates.passed and duplicates.severity == dg.AssetCheckSeverity.ERROR
    assert duplicates.metadata["cross_month_duplicate_ids"].value == 1
    assert duplicates.metadata["example_event_ids"].value == ["e1"]
    assert "2025-01" in duplicates.metadata["examples"].value
    assert "e.g. 'e1'" in duplicates.description, "the message names the id"
    # Blocking: the run fails and February's summaries are not computed from the doubled purchase.
    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "customer_month_summary" not in materialized
    # The other month of the pair fails too.
    january = duplicate_event_ids(warehouse, JAN)
    assert not january.passed and january.cross_month_examples == [{"event_id": "e1", "other_months": "2025-02", "other_rows": 1}]


def test_timestamps_beyond_the_tolerance_or_outside_the_month_fail(warehouse, landing):
    _load(warehouse, landing, JAN)
    assert event_timestamp_bounds(warehouse, JAN).passed
    # Within the clock-skew tolerance of as_of, but not in January: the partition test is strict.
    _insert_raw_event(warehouse, "bad-edge", datetime(2025, 2, 1, 0, 30, tzinfo=UTC), JAN)
    edge = event_timestamp_bounds(warehouse, JAN)
    assert not edge.passed and (edge.beyond_as_of, edge.outside_month) == (0, 1)
    _insert_raw_event(warehouse, "bad-late", datetime(2025, 2, 1, 3, 0, tzinfo=UTC), JAN)
    result = _materialize(warehouse, landing, SUMMARIES | dg.AssetSelection.checks(no_events_beyond_as_of), "2025-01")
    check = _evaluations(result)["no_events_beyond_as_of"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["events_beyond_as_of"].value == 1 and check.metadata["events_outside_month"].value == 2
    assert check.metadata["example_event_ids"].value == ["bad-late", "bad-edge"]
    assert check.metadata["latest_allowed"].value == "2025-02-01T01:00:00+00:00"


def test_the_month_in_progress_allows_an_hour_of_clock_skew(warehouse, landing):
    _load(warehouse, landing, MAR)
    now = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
    _insert_raw_event(warehouse, "skewed", now + timedelta(minutes=30), MAR)
    assert event_timestamp_bounds(warehouse, MAR, now=now).passed
    _insert_raw_event(warehouse, "future", now + timedelta(hours=2), MAR)
    bounds = event_timestamp_bounds(warehouse, MAR, now=now)
    assert not bounds.passed and (bounds.beyond_as_of, bounds.outside_month) == (1, 0)
    assert bounds.as_of == now and [e["event_id"] for e in bounds.examples] == ["future"]


# -- customer_clv: model quality ----------------------------------------------------------------

R, ALPHA, A, B = 0.5, 10.0, 0.8, 2.5
CUSTOMERS = {"c1": (0, 0.0, 20.0), "c2": (2, 15.0, 25.0), "c3": (5, 28.0, 30.0)}  # x, t_x, T as of 2025-01-31


def _hand_expected(t: float, x: int, tx: float, T: float) -> float:
    """Fader, Hardie & Lee (2005) eq. 10, written out independently of the project's implementation."""
    z = t / (ALPHA + T + t)
    alive = (A + B + x - 1) / (A - 1) * (1 - ((ALPHA + T) / (ALPHA + T + t)) ** (R + x) * hyp2f1(R + x, B + x, A + B + x - 1, z))
    odds_dead = A / (B + x - 1) * ((ALPHA + T) / (ALPHA + tx)) ** (R + x) if x > 0 else 0.0
    return alive / (1 + odds_dead)


def _write_fit(warehouse, *, converged=True, as_of_date=date(2025, 1, 31)):
    now = pd.Timestamp(datetime.now(UTC))
    warehouse.replace_month(clv_model_fits, JAN, pd.DataFrame([{
        "as_of_month": pd.Timestamp(JAN), "model": "bgnbd+gamma_gamma" if converged else "heuristic",
        "r": R if converged else None, "alpha": ALPHA if converged else None,
        "a": A if converged else None, "b": B if converged else None,
        "n_customers": len(CUSTOMERS), "n_repeat_customers": 2, "converged": converged, "fitted_at": now, "run_id": "",
    }]))
    warehouse.replace_month(customer_clv, JAN, pd.DataFrame([{
        "as_of_month": pd.Timestamp(JAN), "customer_id": customer, "clv_score": 50, "predicted_revenue_24m": 1.0,
        "expected_purchases_12m": 1.0, "p_alive": 0.5, "churn_probability": 0.5, "expected_order_value": 1.0,
        "segment": "medium", "model": "bgnbd+gamma_gamma", "frequency": x, "recency": tx, "T": T,
        "as_of_date": pd.Timestamp(as_of_date), "computed_at": now, "run_id": "",
    } for customer, (x, tx, T) in CUSTOMERS.items()]))


def _write_february_summary(warehouse, purchase_days: dict[str, int], as_of: datetime):
    rows = []
    for customer, days in purchase_days.items():
        first, last = pd.Timestamp("2025-02-02 10:00", tz="UTC"), pd.Timestamp("2025-02-02 10:00", tz="UTC") + pd.Timedelta(days=days - 1)
        rows.append({"summary_month": pd.Timestamp(FEB), "customer_id": customer, "purchases": days, "revenue": 10.0 * days,
                     "purchase_days": days, "positive_days": days, "positive_day_revenue": 10.0 * days,
                     "first_purchase_at": first, "last_purchase_at": last, "first_purchase_date": first.normalize().tz_localize(None),
                     "last_purchase_date": last.normalize().tz_localize(None), "first_day_revenue": 10.0,
                     "as_of": pd.Timestamp(as_of), "computed_at": pd.Timestamp(as_of)})
    warehouse.replace_month(customer_month_summary, FEB, pd.DataFrame(rows))


def test_model_quality_compares_the_fitted_expectation_with_purchase_dates(warehouse, landing):
    _write_fit(warehouse)
    # February's purchase dates: c2 on 3 dates (two purchases on the 5th), c3 on 1, c1 on none;
    # c9 is new in February: BG/NBD fitted on January knows nothing of it, so it does not count.
    write_ndjson(landing / "events" / "2025-02.ndjson", [
        event("f1", "c2", "2025-02-02 10:00:00"), event("f2", "c2", "2025-02-05 10:00:00"),
        event("f3", "c2", "2025-02-05 18:00:00"), event("f4", "c2", "2025-02-27 23:00:00"),
        event("f5", "c3", "2025-02-14 08:00:00"), event("f6", "c1", "2025-02-14 08:00:00", event_type="page_view"),
        *(event(f"n{day}", "c9", f"2025-02-{day:02d} 12:00:00") for day in (1, 2, 3, 4)),
    ])
    _load(warehouse, landing, FEB)
    expected = sum(_hand_expected(28.0, *values) for values in CUSTOMERS.values())
    assert expected == pytest.approx(4.2648, abs=1e-4)

    result = _materialize(warehouse, landing, SUMMARIES | dg.AssetSelection.checks(clv_model_quality), "2025-02")
    assert result.success
    check = _evaluations(result)["clv_model_quality"]
    assert check.severity == dg.AssetCheckSeverity.WARN
    metadata = {key: value.value for key, value in check.metadata.items()}
    assert metadata["expected"] == pytest.approx(expected, abs=1e-3)
    assert metadata["actual"] == 4 and metadata["customers"] == 3 and metadata["window_days"] == 28
    assert metadata["relative_error"] == pytest.approx(abs(4 - expected) / expected, abs=1e-4)
    assert metadata["tolerance"] == 0.25 and metadata["fit_month"] == "2025-01" and metadata["r"] == R
    assert check.passed and "skipped" not in metadata

    # Twice the purchase dates the model expects: it warns.
    _write_february_summary(warehouse, {"c2": 6, "c3": 3, "c9": 4}, datetime(2025, 3, 1, tzinfo=UTC))
    quality = measure_model_quality(warehouse, FEB)
    assert quality.actual == 9 and quality.relative_error == pytest.approx((9 - expected) / expected)
    assert not quality.passed and quality.skipped is None

    # The month in progress: the window ends at the summary's as_of (here 14 days in).
    _write_february_summary(warehouse, {"c2": 1, "c3": 1}, datetime(2025, 2, 15, tzinfo=UTC))
    quality = measure_model_quality(warehouse, FEB)
    assert quality.window_days == 14 and quality.actual == 2
    assert quality.expected == pytest.approx(sum(_hand_expected(14.0, *values) for values in CUSTOMERS.values()), rel=1e-9)
    assert quality.passed == (abs(2 - quality.expected) / max(quality.expected, 1) <= 0.25)


def test_model_quality_skips_without_a_converged_fit_the_month_before(warehouse, landing):
    result = _materialize(warehouse, landing, SUMMARIES | dg.AssetSelection.checks(clv_model_quality), "2025-02")
    check = _evaluations(result)["clv_model_quality"]
    assert check.passed and "no clv_model_fits row for 2025-01" in check.metadata["skipped"].value
    assert "expected" not in check.metadata

    _write_fit(warehouse, converged=False)
    quality = measure_model_quality(warehouse, FEB)
    assert quality.passed and "did not converge" in quality.skipped

    # Scored mid-January and never refreshed: T stops early, so there is nothing fair to compare.
    _write_fit(warehouse, as_of_date=date(2025, 1, 20))
    quality = measure_model_quality(warehouse, FEB)
    assert quality.passed and "2025-01-20" in quality.skipped
