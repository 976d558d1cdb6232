"""Segment-targeted rescoring: exactly the targeted rows change, with the month's stored model, atomically."""

from __future__ import annotations

from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete, select, update

from customer_analytics.asof import AsOf, compute_scores, customer_history
from customer_analytics.jobs import rerun_run_config, segment_rerun_job
from customer_analytics.rescoring import RescoreError, rescore
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import (
    clv_model_fits,
    customer_clv,
    customer_rfm,
    customer_segments,
    rerun_requests,
    segment_metrics,
    segment_migration,
)
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.segments import compute_segments, segment_members
from customer_analytics.transforms import segments as segment_transforms
from customer_analytics.transforms.clv_scores import ClvFits, btyd_summary, score_customers
from customer_analytics.transforms.models import BgNbdParams, FitResult, GammaGammaParams

MONTH = date(2025, 3, 1)
STAMPS = ["computed_at", "run_id"]


def reset_month(warehouse: Warehouse) -> None:
    """Recompute the month's RFM, CLV and segments as the nightly run would (the fit is deterministic)."""
    compute_scores(warehouse, AsOf.for_month(MONTH), run_id="nightly")
    compute_segments(warehouse, MONTH, run_id="nightly")


def rows(warehouse: Warehouse, table) -> pd.DataFrame:
    frame = warehouse.read_frame(select(table).where(table.c.as_of_month == MONTH))
    return frame.sort_values("customer_id", ignore_index=True)


@pytest.fixture
def scored(scored_warehouse):
    reset_month(scored_warehouse)
    yield scored_warehouse
    with scored_warehouse.begin() as connection:
        connection.execute(delete(rerun_requests))


def values(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=STAMPS).set_index("customer_id").sort_index()


def test_a_segment_rerun_replaces_exactly_that_segment_and_new_customers(scored):
    clv_before, segments_before = rows(scored, customer_clv), rows(scored, customer_segments)
    rfm_before = rows(scored, customer_rfm)
    counts = clv_before["segment"].value_counts()
    segment, other = counts.index[0], counts.index[1]
    member = clv_before.loc[clv_before["segment"] == segment, "customer_id"].iloc[0]
    outsider, newcomer = clv_before.loc[clv_before["segment"] == other, "customer_id"].iloc[:2]
    with scored.begin() as connection:
        for customer in (member, outsider):
            connection.execute(update(customer_clv).where(customer_clv.c.as_of_month == MONTH, customer_clv.c.customer_id == customer)
                               .values(predicted_revenue_24m=-1.0))
        connection.execute(delete(customer_clv).where(customer_clv.c.as_of_month == MONTH, customer_clv.c.customer_id == newcomer))

    result = rescore(scored, MONTH, segment, run_id="rerun")

    targets = set(clv_before.loc[clv_before["segment"] == segment, "customer_id"]) | {newcomer}
    assert (result.rescored, result.new_customers, result.changed_segment) == (len(targets), 1, 0)
    clv_after = rows(scored, customer_clv)
    assert set(clv_after.loc[clv_after["run_id"] == "rerun", "customer_id"]) == targets
    # Same data and model: the rescored rows are the nightly rows again, including the customer tampered with.
    pd.testing.assert_frame_equal(values(clv_after[clv_after["customer_id"].isin(targets)]),
                                  values(clv_before[clv_before["customer_id"].isin(targets)]), check_exact=False, rtol=1e-9)
    untouched = clv_after[~clv_after["customer_id"].isin(targets)]
    assert (untouched["run_id"] == "nightly").all()
    assert untouched.set_index("customer_id").loc[outsider, "predicted_revenue_24m"] == -1.0, "outside the segment: left alone"

    segments_after = rows(scored, customer_segments)
    assert set(segments_after.loc[segments_after["run_id"] == "rerun", "customer_id"]) == targets
    pd.testing.assert_frame_equal(values(segments_after), values(segments_before))
    # RFM too, from the same history: the same rows as the nightly's for the same data.
    rfm_after = rows(scored, customer_rfm)
    assert set(rfm_after.loc[rfm_after["run_id"] == "rerun", "customer_id"]) == targets
    pd.testing.assert_frame_equal(values(rfm_after), values(rfm_before), check_dtype=False)

    # Metrics and migration describe the tables as they now are.
    expected = segment_transforms.segment_metrics(segment_members(scored, MONTH))
    metrics = scored.read_frame(select(segment_metrics).where(segment_metrics.c.as_of_month == MONTH))
    key = ["segment_type", "segment", "country"]
    got = metrics.drop(columns=[*STAMPS, "as_of_month"]).fillna({"country": "(all)"}).sort_values(key, ignore_index=True)
    expected = expected.fillna({"country": "(all)"}).sort_values(key, ignore_index=True)[got.columns]
    pd.testing.assert_frame_equal(got.astype({"country": object}), expected.astype({"country": object}), check_dtype=False)
    assert metrics.loc[(metrics["segment_type"] == "value") & metrics["country"].isna() & (metrics["segment"] == other),
                       "avg_predicted_revenue"].iloc[0] == pytest.approx(
        clv_after.loc[clv_after["segment"] == other, "predicted_revenue_24m"].mean()), "the outsider's stored row counts"
    migration = scored.read_frame(select(segment_migration).where(segment_migration.c.as_of_month == MONTH))
    assert migration["customers"].sum() == len(segments_after)
    assert (migration["run_id"] == "rerun").all()


def test_listed_customers_are_rescored_whatever_their_segment(scored):
    clv_before = rows(scored, customer_clv)
    chosen = clv_before.loc[clv_before["segment"] != "high", "customer_id"].iloc[0]
    result = rescore(scored, MONTH, "high", (chosen, "NO-SUCH-CUSTOMER"), run_id="forced")
    assert (result.rescored, result.new_customers, result.unknown_customers) == (1, 0, ["NO-SUCH-CUSTOMER"])
    assert "NO-SUCH-CUSTOMER" in result.summary()
    clv_after = rows(scored, customer_clv)
    assert clv_after.loc[clv_after["run_id"] == "forced", "customer_id"].tolist() == [chosen]
    assert len(clv_after) == len(clv_before)


def test_the_months_stored_model_is_used_not_refitted(scored):
    bg, gg = BgNbdParams(r=0.25, alpha=30.0, a=0.8, b=2.4), GammaGammaParams(p=6.0, q=3.8, gamma=15.0)
    with scored.begin() as connection:
        connection.execute(update(clv_model_fits).where(clv_model_fits.c.as_of_month == MONTH).values(
            model="bgnbd+gamma_gamma", converged=True, **vars(bg), **vars(gg)))
    segment = rows(scored, customer_clv)["segment"].value_counts().index[0]
    members = set(rows(scored, customer_clv).query("segment == @segment")["customer_id"])

    rescore(scored, MONTH, segment, run_id="stored-model")

    as_of = AsOf.for_month(MONTH)
    summary = btyd_summary(customer_history(scored, as_of), as_of.day)
    fits = ClvFits(FitResult(bg, np.nan, True, len(summary), ""), FitResult(gg, np.nan, True, len(summary), ""), len(summary), 0)
    expected = score_customers(summary, fits).set_index("customer_id").loc[sorted(members)]
    got = rows(scored, customer_clv).set_index("customer_id").loc[sorted(members)]
    assert (got["model"] == "bgnbd+gamma_gamma").all()
    for column in ("p_alive", "expected_purchases_12m", "expected_order_value", "predicted_revenue_24m", "clv_score"):
        np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-9, err_msg=column)
    assert got["segment"].tolist() == expected["segment"].tolist()


def test_a_month_without_a_fitted_model_is_refused(scored):
    with pytest.raises(RescoreError, match="2024-06 has no fitted CLV model: materialize customer_clv"):
        rescore(scored, date(2024, 6, 1), "high")


def test_a_failure_while_publishing_changes_nothing(scored, monkeypatch):
    tables = (customer_clv, customer_rfm, customer_segments)
    before = {t.name: rows(scored, t) for t in tables}
    original = Warehouse.insert_frame

    def failing(self, connection, target, table, frame, **options):
        if table.name == "segment_migration":
            raise OSError("disk full")
        return original(self, connection, target, table, frame, **options)

    monkeypatch.setattr(Warehouse, "insert_frame", failing)
    with pytest.raises(OSError, match="disk full"):
        rescore(scored, MONTH, "low", run_id="doomed")
    for table in tables:
        pd.testing.assert_frame_equal(rows(scored, table), before[table.name])


def test_the_job_rescores_and_reports_on_its_request(scored):
    with scored.begin() as connection:
        request_id = connection.execute(rerun_requests.insert().values(
            segment="low", as_of_month=MONTH, requested_at=pd.Timestamp.now(tz="UTC"), status="pending")).inserted_primary_key[0]
    result = segment_rerun_job.execute_in_process(
        run_config=rerun_run_config("low", "2025-03", None, request_id),
        resources={"warehouse": WarehouseResource(db_url=scored.url, db_schema=scored.schema)})
    assert result.success
    request = scored.read_frame(select(rerun_requests)).iloc[0]
    assert (request["status"], request["run_id"]) == ("launched", result.run_id)  # the run-status sensor finishes it
    assert request["message"].startswith("2025-03 low: rescored")
    materialized = {(e.asset_key.path[-1], e.partition) for e in result.get_asset_materialization_events()
                    for e in [e.event_specific_data.materialization]}
    assert materialized == {(name, "2025-03") for name in ("customer_clv", "customer_rfm", "customer_segments", "segment_metrics",
                                                            "segment_migration")}
    assert (rows(scored, customer_clv).query("segment == 'low'")["run_id"] == result.run_id).all()


def test_bad_run_config_is_refused_before_anything_runs(scored):
    valid = rerun_run_config("at_risk", "2025-03", ["C1"], 7)
    assert dg.validate_run_config(segment_rerun_job, valid)
    bad_segment = rerun_run_config("vip", "2025-03", None, None)
    with pytest.raises(dg.DagsterInvalidConfigError, match="vip"):
        dg.validate_run_config(segment_rerun_job, bad_segment)
    result = segment_rerun_job.execute_in_process(
        run_config=rerun_run_config("high", "March", None, None), raise_on_error=False,
        resources={"warehouse": WarehouseResource(db_url=scored.url, db_schema=scored.schema)})
    assert not result.success
    failure = result.failure_data_for_node("rescore_segment")
    # Refused while building the op's config, before its body runs: a framework error carrying the message.
    assert "use YYYY-MM" in failure.error.to_string()
    assert (rows(scored, customer_clv)["run_id"] == "nightly").all()


def test_the_nightly_segment_tables_computed_in_the_warehouse_equal_the_pandas_reference(scored):
    """compute_segments joins and aggregates in SQL; the transforms over every member state the definitions."""
    members = segment_members(scored, MONTH)
    previous = scored.read_frame(select(customer_segments.c.customer_id, customer_segments.c.segment)
                                 .where(customer_segments.c.as_of_month == date(2025, 2, 1)))
    expected = segment_transforms.customer_segments(members, previous).set_index("customer_id").sort_index()
    stored = values(rows(scored, customer_segments)).drop(columns=["as_of_month"])
    assert len(stored) == len(members) > 100 and stored.index.equals(expected.index)
    assert stored["segment_changed"].astype(bool).tolist() == expected["segment_changed"].tolist()
    assert stored["previous_segment"].notna().sum() > 0 and stored["segment_changed"].astype(bool).any()
    for column in ("segment", "rfm_segment", "previous_segment"):
        assert stored[column].fillna("-").tolist() == expected[column].fillna("-").tolist(), column

    key = ["segment_type", "segment", "country"]
    metrics = scored.read_frame(select(segment_metrics).where(segment_metrics.c.as_of_month == MONTH))
    got = metrics.drop(columns=[*STAMPS, "as_of_month"]).fillna({"country": "(all)"}).sort_values(key, ignore_index=True)
    want = segment_transforms.segment_metrics(members).fillna({"country": "(all)"}).sort_values(key, ignore_index=True)[got.columns]
    assert got["country"].nunique() > 2
    pd.testing.assert_frame_equal(got.astype({"country": object}), want.astype({"country": object}),
                                  check_dtype=False, check_exact=False, rtol=1e-12)

    migration = scored.read_frame(select(segment_migration).where(segment_migration.c.as_of_month == MONTH))
    got = migration[["from_segment", "to_segment", "customers"]].sort_values(["from_segment", "to_segment"], ignore_index=True)
    want = segment_transforms.segment_migration(segment_transforms.customer_segments(members, previous))
    pd.testing.assert_frame_equal(got, want.sort_values(["from_segment", "to_segment"], ignore_index=True)[got.columns],
                                  check_dtype=False)
