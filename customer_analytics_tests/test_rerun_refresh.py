"""A segment rerun refreshes every table the month's views read for the customers it touches.

Late purchases are added the way a reload adds them (a raw event, then the month's summaries
step), and each expectation is computed independently: from `customer_history` (the rerun's
input) by plain arithmetic, or by a clean full-month RFM and segment run on the same data.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd
import pytest
from sqlalchemy import delete, insert, select, text

from customer_analytics.asof import AsOf, compute_rfm, compute_scores, customer_history
from customer_analytics.jobs import rerun_run_config, segment_rerun_job
from customer_analytics.rescoring import rescore
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import (
    clv_model_fits,
    customer_clv,
    customer_profiles,
    customer_rfm,
    customer_segments,
    raw_events,
    rerun_requests,
    segment_metrics,
)
from customer_analytics.segments import compute_segments
from customer_analytics.summaries import summarize_month
from customer_analytics.views import create_views

MONTH = date(2025, 3, 1)
LATE_FILE = "late-purchases-test"  # source_file of the events these tests add
NEW_CUSTOMER = "CNEW-LATE-1"
STAMPS = ["computed_at", "run_id"]
RFM_VALUES = ["first_purchase_at", "last_purchase_at", "recency_days", "frequency", "monetary", "avg_order_value",
              "r_score", "f_score", "m_score", "rfm_score", "rfm_segment", "fm_score", "as_of_date"]


def _summarize(warehouse) -> None:
    """The month's summaries step, as a reload of the month runs it (scores are not recomputed)."""
    summarize_month(warehouse, MONTH, as_of=AsOf.for_month(MONTH).instant)


def add_purchase(warehouse, customer_id: str, when: datetime, revenue: float, number: int) -> None:
    with warehouse.begin() as connection:
        connection.execute(insert(raw_events), [{
            "event_id": f"late-{customer_id}-{number}", "customer_id": customer_id, "event_type": "purchase",
            "event_timestamp": when, "event_month": MONTH, "event_date": when.date(), "price": revenue, "quantity": 1,
            "revenue": revenue, "source": "events", "source_file": LATE_FILE, "source_record": number,
            "ingested_at": datetime.now(timezone.utc)}])


@pytest.fixture
def month(scored_warehouse):
    """The month as the nightly run leaves it, without the purchases and profile the tests add."""
    wh = scored_warehouse
    with wh.begin() as connection:
        connection.execute(delete(raw_events).where(raw_events.c.source_file == LATE_FILE))
        connection.execute(delete(customer_profiles).where(customer_profiles.c.customer_id == NEW_CUSTOMER))
    _summarize(wh)
    compute_scores(wh, AsOf.for_month(MONTH), run_id="nightly")
    compute_segments(wh, MONTH, run_id="nightly")
    create_views(wh)
    return wh


def rows(warehouse, table) -> pd.DataFrame:
    frame = warehouse.read_frame(select(table).where(table.c.as_of_month == MONTH))
    return frame.sort_values("customer_id", ignore_index=True).set_index("customer_id")


def assert_metrics_match_membership(warehouse) -> None:
    """segment_metrics (value and RFM, all countries) against customer_segments, and revenue against the history."""
    segments = rows(warehouse, customer_segments)
    history = customer_history(warehouse, AsOf.for_month(MONTH)).set_index("customer_id")
    clv = rows(warehouse, customer_clv)
    assert set(segments.index) == set(clv.index) == set(history.index), "every scored customer is a member"
    metrics = warehouse.read_frame(select(segment_metrics).where(segment_metrics.c.as_of_month == MONTH,
                                                                 segment_metrics.c.country.is_(None)))
    for segment_type, column in (("value", "segment"), ("rfm", "rfm_segment")):
        got = metrics[metrics["segment_type"] == segment_type].set_index("segment").sort_index()
        assert got["customers"].sum() == len(segments), segment_type
        members = segments[[column]].join(history["revenue"])
        assert got["customers"].to_dict() == members.groupby(column).size().to_dict(), segment_type
        pd.testing.assert_series_equal(got["total_revenue"], members.groupby(column)["revenue"].sum(),
                                       check_names=False, check_index_type=False, rtol=1e-9)
        assert got["share"].sum() == pytest.approx(1.0)


def test_successive_segment_reruns_keep_a_newly_scored_customer_in_the_metrics(month):
    wh = month
    country = wh.scalar(select(customer_profiles.c.country).where(customer_profiles.c.country.is_not(None)).limit(1))
    with wh.begin() as connection:
        connection.execute(insert(customer_profiles).values(customer_id=NEW_CUSTOMER, country=country,
                                                            updated_at=datetime.now(timezone.utc)))
    add_purchase(wh, NEW_CUSTOMER, datetime(2025, 3, 20, 12, tzinfo=timezone.utc), 5000.0, 1)
    _summarize(wh)
    assert NEW_CUSTOMER not in rows(wh, customer_clv).index

    results = []
    for segment in ("low", "high", "medium", "at_risk"):
        results.append(rescore(wh, MONTH, segment, run_id=f"rerun-{segment}"))
        assert_metrics_match_membership(wh)
        assert NEW_CUSTOMER in rows(wh, customer_rfm).index
    assert results[0].new_customers == 1 and sum(r.new_customers for r in results[1:]) == 0

    latest = wh.read_frame(text(f"SELECT * FROM {wh.qualified('customer_clv_latest')} WHERE customer_id = :c"),
                           {"c": NEW_CUSTOMER}).iloc[0]
    assert (latest["recency"], latest["frequency"], latest["monetary"]) == (11, 1, pytest.approx(5000.0))

    # Every customer has now been rescored once (each in its segment's rerun), against the same
    # history: RFM and the segment tables are those of a clean full run over the same CLV rows.
    rerun_rfm, rerun_segments = rows(wh, customer_rfm), rows(wh, customer_segments)
    rerun_metrics = wh.read_frame(select(segment_metrics).where(segment_metrics.c.as_of_month == MONTH))
    compute_rfm(wh, AsOf.for_month(MONTH), run_id="full")
    compute_segments(wh, MONTH, run_id="full")
    pd.testing.assert_frame_equal(rerun_rfm[RFM_VALUES], rows(wh, customer_rfm)[RFM_VALUES], check_dtype=False)
    pd.testing.assert_frame_equal(rerun_segments.drop(columns=STAMPS), rows(wh, customer_segments).drop(columns=STAMPS),
                                  check_dtype=False)
    key = ["segment_type", "segment", "country"]
    full_metrics = wh.read_frame(select(segment_metrics).where(segment_metrics.c.as_of_month == MONTH))
    pd.testing.assert_frame_equal(
        rerun_metrics.drop(columns=STAMPS).fillna({"country": "(all)"}).sort_values(key, ignore_index=True),
        full_metrics.drop(columns=STAMPS).fillna({"country": "(all)"}).sort_values(key, ignore_index=True),
        check_dtype=False, rtol=1e-9)


def test_a_customer_rerun_after_a_new_purchase_shows_fresh_rfm_beside_fresh_clv(month):
    wh = month
    before = rows(wh, customer_rfm)
    # A long-lapsed repeat buyer, so the new purchase moves recency, frequency and monetary alike.
    customer = before[before["frequency"] > 1].sort_values(["recency_days", "monetary"], ascending=False).index[0]
    old = before.loc[customer]
    add_purchase(wh, customer, datetime(2025, 3, 30, 9, tzinfo=timezone.utc), 100.0, 1)
    _summarize(wh)
    segment = rows(wh, customer_clv).loc[customer, "segment"]

    result = segment_rerun_job.execute_in_process(
        run_config=rerun_run_config(segment, "2025-03", [customer], None),
        resources={"warehouse": WarehouseResource(db_url=wh.url, db_schema=wh.schema)})
    assert result.success

    latest = wh.read_frame(text(f"SELECT * FROM {wh.qualified('customer_clv_latest')} WHERE customer_id = :c"),
                           {"c": customer}).iloc[0]
    # As of 2025-03-31: the purchase on the 30th is a day old; one more purchase, 100 more revenue.
    assert (latest["recency"], latest["frequency"]) == (1, old["frequency"] + 1)
    assert latest["monetary"] == pytest.approx(old["monetary"] + 100.0)
    assert old["recency_days"] > 1
    rerun = rows(wh, customer_rfm)
    assert rerun.loc[customer, "run_id"] == result.run_id
    assert rerun.loc[customer, "r_score"] == 5, "a purchase a day before as_of is among the most recent fifth"
    # The customer's whole RFM row, scores and segment included, is a clean full run's on the same data.
    compute_rfm(wh, AsOf.for_month(MONTH), run_id="full")
    full = rows(wh, customer_rfm)
    pd.testing.assert_series_equal(rerun.loc[customer, RFM_VALUES], full.loc[customer, RFM_VALUES], check_dtype=False)
    assert rows(wh, customer_segments).loc[customer, "rfm_segment"] == full.loc[customer, "rfm_segment"]
    # No other customer's rows were touched.
    others = rerun.drop(index=customer)
    assert (others["run_id"] == "nightly").all()


def test_a_rerun_completes_a_customer_left_without_rfm_or_segment_rows(month):
    """A month left half scored (by an older rerun, or one table materialized alone) is mended by any rerun."""
    wh = month
    clv, rfm_before = rows(wh, customer_clv), rows(wh, customer_rfm)
    lacking_rfm, lacking_segment = clv[clv["segment"] == "high"].index[:2]
    with wh.begin() as connection:
        connection.execute(delete(customer_rfm).where(customer_rfm.c.as_of_month == MONTH,
                                                      customer_rfm.c.customer_id == lacking_rfm))
        connection.execute(delete(customer_segments).where(customer_segments.c.as_of_month == MONTH,
                                                           customer_segments.c.customer_id == lacking_segment))
    result = rescore(wh, MONTH, "low", run_id="mend")
    assert (result.completed, result.new_customers) == (2, 0)
    assert result.rescored == (clv["segment"] == "low").sum() + 2
    assert_metrics_match_membership(wh)
    rfm_after = rows(wh, customer_rfm)
    assert rfm_after.loc[lacking_rfm, "run_id"] == "mend"
    pd.testing.assert_frame_equal(rfm_after[RFM_VALUES], rfm_before[RFM_VALUES], check_dtype=False)


def test_a_targeted_customer_without_purchases_any_more_leaves_every_table(month):
    wh = month
    history = customer_history(wh, AsOf.for_month(MONTH)).set_index("customer_id")
    clv = rows(wh, customer_clv)
    # A customer whose purchases are all in the month: a corrected file removes them.
    newcomers = history.index[pd.to_datetime(history["first_month"]).dt.date == MONTH]
    customer = newcomers[0]
    condition = ((raw_events.c.customer_id == customer) & (raw_events.c.event_month == MONTH)
                 & (raw_events.c.event_type == "purchase"))
    saved = wh.read_frame(select(raw_events).where(condition))
    saved = saved.astype(object).where(saved.notna(), None)
    assert len(saved)
    with wh.begin() as connection:
        connection.execute(delete(raw_events).where(condition))
    try:
        _summarize(wh)
        result = rescore(wh, MONTH, clv.loc[customer, "segment"], run_id="removed")
        assert result.removed == 1
        for table in (customer_clv, customer_rfm, customer_segments):
            assert customer not in rows(wh, table).index, table.name
        assert_metrics_match_membership(wh)
    finally:
        with wh.begin() as connection:
            connection.execute(insert(raw_events), saved.to_dict("records"))


def test_all_segments_rescores_every_customer_with_the_stored_model(month):
    wh = month
    fits_before = wh.read_frame(select(clv_model_fits).where(clv_model_fits.c.as_of_month == MONTH))
    add_purchase(wh, NEW_CUSTOMER, datetime(2025, 3, 20, 12, tzinfo=timezone.utc), 80.0, 1)
    _summarize(wh)
    result = rescore(wh, MONTH, "all", run_id="everyone")
    history = customer_history(wh, AsOf.for_month(MONTH))
    assert result.rescored == len(history) and result.new_customers == 1
    assert result.summary().startswith("2025-03 all segments: rescored")
    for table in (customer_clv, customer_rfm, customer_segments):
        assert (rows(wh, table)["run_id"] == "everyone").all(), table.name
    pd.testing.assert_frame_equal(wh.read_frame(select(clv_model_fits).where(clv_model_fits.c.as_of_month == MONTH)),
                                  fits_before, obj="clv_model_fits: no refit")
    assert_metrics_match_membership(wh)
    rerun_rfm = rows(wh, customer_rfm)
    compute_rfm(wh, AsOf.for_month(MONTH), run_id="full")
    pd.testing.assert_frame_equal(rerun_rfm[RFM_VALUES], rows(wh, customer_rfm)[RFM_VALUES], check_dtype=False)


def test_a_customer_request_records_its_counts_and_names_no_ignored_segment(month):
    wh = month
    clv = rows(wh, customer_clv)
    customer = clv[clv["segment"] != "high"].index[0]
    with wh.begin() as connection:
        request_id = connection.execute(rerun_requests.insert().values(
            segment="high", customer_ids=f'["{customer}", "NO-SUCH"]', as_of_month=MONTH,
            requested_at=datetime.now(timezone.utc), status="pending")).inserted_primary_key[0]
    # Run by hand with an id the request check would refuse: the run still names it and counts it.
    result = segment_rerun_job.execute_in_process(
        run_config=rerun_run_config("high", "2025-03", [customer, "NO-SUCH"], request_id),
        resources={"warehouse": WarehouseResource(db_url=wh.url, db_schema=wh.schema)})
    assert result.success
    request = wh.read_frame(select(rerun_requests).where(rerun_requests.c.request_id == request_id)).iloc[0]
    assert (request["computed"], request["errors"]) == (1, 1)
    assert request["message"].startswith("2025-03 2 listed customers: rescored 1 customers")
    assert "high" not in request["message"].split(":")[0] and "NO-SUCH" in request["message"]
    with wh.begin() as connection:
        connection.execute(delete(rerun_requests))
