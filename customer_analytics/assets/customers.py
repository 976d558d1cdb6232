"""Per-customer assets: monthly summaries, then as-of RFM and CLV."""

from collections.abc import Iterator
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from pydantic import Field, model_validator
from sqlalchemy import func, select

from customer_analytics.asof import AsOf, ClvResult, RfmResult, compute_scores
from customer_analytics.assets.metadata import OWNERS, counter_table, markdown_table, table_spec_metadata
from customer_analytics.month_loads import stale_months
from customer_analytics.config import add_months
from customer_analytics.partitions import monthly_partitions, partition_month
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import (
    clv_model_fits,
    customer_clv,
    customer_history,
    customer_month_summary,
    customer_rfm,
    customer_week_summary,
)
from customer_analytics.retries import retry_on_lost_connection
from customer_analytics.summaries import summarize_month
from customer_analytics.transforms.clv_scores import ClvSettings

GROUP = "customers"


MONTHS_CURRENT_DOC = ("Warns when months no longer agree with the months before them or with their landing files: an "
                      "earlier month reloaded or rebuilt after them, or a landing file changed since their load. The "
                      "nightly refresh rebuilds them (oldest first); or run `customer-analytics materialize --from <month>`.")


def months_current_check(wh) -> dg.AssetCheckResult:
    stale = stale_months(wh, first=partition_month(monthly_partitions.get_first_partition_key()),
                         last=partition_month(monthly_partitions.get_last_partition_key()))
    return dg.AssetCheckResult(
        asset_key="customer_history", check_name="all_months_current", passed=not stale, severity=dg.AssetCheckSeverity.WARN,
        description="Every built month agrees with the months before it and with its landing files." if not stale else
        f"{len(stale)} month(s) are stale, the oldest {stale[0].month:%Y-%m} ({stale[0].reason}); the nightly refresh "
        f"rebuilds them, or run `customer-analytics materialize --from {stale[0].month:%Y-%m}`.",
        metadata={"stale_months": markdown_table(pd.DataFrame([{"month": f"{m.month:%Y-%m}", "reason": m.reason} for m in stale],
                                                              columns=["month", "reason"]), max_rows=24)},
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec("customer_month_summary", deps=["raw_events"], group_name=GROUP, owners=OWNERS, kinds={"sql"},
                     metadata=table_spec_metadata(customer_month_summary),
                     description="One row per customer and month with a purchase: purchases, revenue, distinct purchase "
                                 "dates (and those with positive revenue), first/last purchase. Computed in SQL from "
                                 "raw_events; every as-of table is derived from these rows, never from raw history."),
        dg.AssetSpec("customer_week_summary", deps=["raw_events"], group_name=GROUP, owners=OWNERS, kinds={"sql"},
                     metadata=table_spec_metadata(customer_week_summary),
                     description="Purchases and revenue per customer and ISO week (Monday start) within the month, "
                                 "for weekly cohorts."),
        dg.AssetSpec("customer_history", deps=["customer_month_summary", "raw_events"], group_name=GROUP, owners=OWNERS,
                     kinds={"sql"}, metadata=table_spec_metadata(customer_history),
                     description="One row per customer as of the end of the month: running totals of the monthly "
                                 "summaries (purchases, revenue, purchase dates, first and last purchase, cohort month) "
                                 "and the revenue of the customer's first 30 and 90 days. Built as the previous "
                                 "month's history plus this month's summaries, so its cost does not grow with the "
                                 "months behind it (rebuilt in full from every summary when the previous month's "
                                 "history is missing or stale); RFM, CLV and cohorts read it. The same step keeps "
                                 "the month's cohort_activity (purchases per cohort and period, a few hundred rows), "
                                 "which cohort_ltv adds up instead of joining every summary with the history."),
    ],
    partitions_def=monthly_partitions,
    check_specs=[dg.AssetCheckSpec("all_months_current", asset="customer_history", description=MONTHS_CURRENT_DOC)],
)
@retry_on_lost_connection
def customer_summaries(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Summarize one month of purchases per customer (and per customer-week), then extend the customer history."""
    as_of = AsOf.for_month(partition_month(context.partition_key))
    wh = warehouse.get()
    counts = summarize_month(wh, as_of.month, as_of=as_of.instant)
    context.log.info(f"{context.partition_key}: {counts['customers']:,} purchasing customers, "
                     f"{counts['customer_weeks']:,} customer-weeks, {counts['history_customers']:,} customers in the "
                     f"history ({counts['history_method']} build)")
    yield dg.MaterializeResult(asset_key="customer_month_summary",
                               metadata={"dagster/row_count": counts["customers"], "as_of": as_of.instant.isoformat()})
    yield dg.MaterializeResult(asset_key="customer_week_summary", metadata={"dagster/row_count": counts["customer_weeks"]})
    yield dg.MaterializeResult(asset_key="customer_history", metadata={"dagster/row_count": counts["history_customers"],
                                                                       "build": counts["history_method"],
                                                                       "cohort_activity_rows": counts["cohort_activity_rows"]})
    yield months_current_check(wh)



class ClvConfig(dg.Config):
    """How CLV is scored; the defaults are documented in the README.

    Out-of-range values are refused, with the valid range named, as soon as a step reading this
    config starts and before it writes anything (Dagster's launchpad checks only the types).
    """

    monthly_discount_rate: float = Field(
        default=0.01, ge=0.0, lt=1.0,
        description="Monthly discount rate of the 24-month predicted revenue: 0 <= rate < 1 (0.01 = 1 % a month).")
    high_score: int = Field(
        default=67, ge=1, le=100,
        description="clv_score from which a customer is `high`: above medium_score, at most 100.")
    medium_score: int = Field(
        default=34, ge=0, le=99,
        description="clv_score from which a customer is `medium`: at least 0, below high_score.")
    at_risk_churn: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="churn_probability from which a customer is `at_risk`, whatever the score: 0 to 1.")

    @model_validator(mode="after")
    def _scores_in_order(self):
        if not self.medium_score < self.high_score:
            raise ValueError(f"medium_score ({self.medium_score}) must be below high_score ({self.high_score}): "
                             "use 0 <= medium_score < high_score <= 100, e.g. 34 and 67")
        return self

    def settings(self) -> ClvSettings:
        return ClvSettings(monthly_discount_rate=self.monthly_discount_rate, high_score=self.high_score,
                           medium_score=self.medium_score, at_risk_churn=self.at_risk_churn)


RFM, CLV, FITS = dg.AssetKey("customer_rfm"), dg.AssetKey("customer_clv"), dg.AssetKey("clv_model_fits")
CLV_TABLES = frozenset({CLV, FITS})


@dg.multi_asset(
    name="customer_value",
    specs=[
        dg.AssetSpec("customer_rfm", deps=["customer_history"], group_name=GROUP, owners=OWNERS, kinds={"sql"},
                     metadata=table_spec_metadata(customer_rfm),
                     description="Recency, frequency and monetary value per customer as of the end of the month, "
                                 "scored 1–5 by quintile (5 best; ties share a score) with the named RFM segment "
                                 "from the editable `rfm_segment_map`."),
        dg.AssetSpec("customer_clv", deps=["customer_history"], group_name=GROUP, owners=OWNERS,
                     kinds={"numpy", "scipy", "sql"}, metadata=table_spec_metadata(customer_clv),
                     description="Customer lifetime value as of the end of the month: BG/NBD purchases and "
                                 "Gamma-Gamma spend fitted by maximum likelihood on the month's as-of summary; "
                                 "24-month discounted predicted revenue, its percentile (clv_score), churn "
                                 "probability and value segment. Falls back to a documented heuristic (named "
                                 "in `model`; the reason is in clv_model_fits.message) when a fit is impossible."),
        dg.AssetSpec("clv_model_fits", deps=["customer_history"], group_name=GROUP, owners=OWNERS,
                     kinds={"scipy", "sql"}, metadata=table_spec_metadata(clv_model_fits),
                     description="The fitted BG/NBD (r, alpha in days, a, b) and Gamma-Gamma (p, q, gamma) "
                                 "parameters per month, with log-likelihoods and convergence. Written with "
                                 "customer_clv, always together."),
    ],
    partitions_def=monthly_partitions,
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec("one_row_per_purchasing_customer", asset="customer_rfm",
                          description="Fails when the month's RFM rows are not exactly its customer_history customers."),
        dg.AssetCheckSpec("scores_in_range", asset="customer_rfm", description="Fails when an R, F or M score is outside 1–5."),
        dg.AssetCheckSpec("fit_converged", asset="customer_clv", description="Warns when the heuristic fallback was used."),
        dg.AssetCheckSpec("probabilities_in_unit_interval", asset="customer_clv",
                          description="Fails when a p_alive or churn_probability is outside [0, 1]."),
        dg.AssetCheckSpec("no_missing_values", asset="customer_clv", description="Fails when a customer_clv value is missing (NaN)."),
    ],
)
@retry_on_lost_connection
def customer_value(context: dg.AssetExecutionContext, config: ClvConfig, warehouse: WarehouseResource):
    """Score the month's customers: RFM, and CLV with its model fits, side by side (see `compute_scores`).

    Either can be materialized alone. customer_clv and clv_model_fits are written together:
    selecting one of them writes both, and the other's materialization is logged too.
    """
    as_of = AsOf.for_month(partition_month(context.partition_key))
    selected = context.selected_asset_keys
    result = compute_scores(warehouse.get(), as_of, config.settings(), rfm=RFM in selected,
                            clv=bool(selected & CLV_TABLES), run_id=context.run.run_id,
                            computed_at=datetime.now(timezone.utc))
    events = [*(_rfm_events(as_of, result.rfm) if result.rfm else ()),
              *(_clv_events(context, result.clv, _previous_clv(warehouse.get(), as_of)) if result.clv else ())]
    checks = context.selected_asset_check_keys
    for event in events:
        if isinstance(event, dg.AssetCheckResult):
            if dg.AssetCheckKey(event.asset_key, event.check_name) in checks:
                yield event
        elif event.asset_key in selected:
            yield event
        else:  # the CLV table written beside the selected one
            context.log_event(dg.AssetMaterialization(asset_key=event.asset_key, partition=context.partition_key,
                                                      metadata=event.metadata))


def _rfm_events(as_of: AsOf, rfm: RfmResult) -> list:
    return [
        dg.MaterializeResult(asset_key=RFM, metadata={
            "dagster/row_count": rfm.rows, "as_of_date": as_of.day.isoformat(),
            "segments": counter_table(rfm.segments, "rfm_segment", "customers"),
            "preview": markdown_table(rfm.preview),
        }),
        # The primary key (as_of_month, customer_id) makes a second row per customer impossible; this
        # check catches customers lost on the way from customer_history.
        dg.AssetCheckResult(asset_key=RFM, check_name="one_row_per_purchasing_customer",
                            passed=rfm.rows == rfm.history_customers,
                            metadata={"rows": rfm.rows, "customers": rfm.history_customers}),
        dg.AssetCheckResult(asset_key=RFM, check_name="scores_in_range", passed=rfm.scores_in_range),
    ]


def _previous_clv(wh, as_of: AsOf) -> dict | None:
    """The previous month's model and mean predicted revenue, to report how much a switch of model moved it."""
    previous = add_months(as_of.month, -1)
    row = wh.read_frame(select(customer_clv.c.model, func.avg(customer_clv.c.predicted_revenue_24m).label("mean"))
                        .where(customer_clv.c.as_of_month == previous).group_by(customer_clv.c.model))
    if row.empty:
        return None
    return {"month": f"{previous:%Y-%m}", "model": str(row["model"].iloc[0]), "mean": float(row["mean"].iloc[0])}


def _model_change_metadata(scores: pd.DataFrame, model: str, previous: dict | None) -> dict:
    mean = float(scores["predicted_revenue_24m"].mean()) if len(scores) else 0.0
    metadata = {"mean_predicted_revenue_24m": round(mean, 2),
                "bounded_predictions": int(scores.attrs.get("bounded_predictions", 0))}
    if previous:
        metadata.update({
            "previous_month_model": previous["model"],
            "previous_month_mean_predicted_revenue_24m": round(previous["mean"], 2),
            "mean_change_vs_previous_month": round(mean / previous["mean"] - 1.0, 4) if previous["mean"] else None,
            "model_switched": previous["model"] != model,
        })
    return metadata


def _clv_events(context: dg.AssetExecutionContext, result: ClvResult, previous: dict | None = None) -> Iterator:
    scores, fits = result.scores, result.fits
    params = {}
    for fit in (fits.bgnbd, fits.gamma_gamma):
        if fit.converged:
            params.update({k: round(float(v), 6) for k, v in vars(fit.params).items()})
    reason = {"fallback_reason": fits.fallback_reason} if fits.fallback_reason else {}
    context.log.info(f"{context.partition_key}: {len(scores):,} customers scored with {fits.model} {params}"
                     + (f" ({fits.fallback_reason})" if reason else ""))
    yield dg.MaterializeResult(asset_key=CLV, metadata={
        "dagster/row_count": len(scores), "model": fits.model, **params,
        "segments": counter_table(scores["segment"].value_counts().to_dict(), "segment", "customers"),
        "preview": markdown_table(scores.sort_values("predicted_revenue_24m", ascending=False)[
            ["customer_id", "clv_score", "predicted_revenue_24m", "p_alive", "segment"]]),
    })
    yield dg.MaterializeResult(asset_key=FITS, metadata={"model": fits.model, "converged": fits.converged,
                                                         **params, **reason,
                                                         **_model_change_metadata(scores, fits.model, previous)})
    yield dg.AssetCheckResult(asset_key=CLV, check_name="fit_converged", passed=fits.converged,
                              severity=dg.AssetCheckSeverity.WARN, metadata={"model": fits.model, **reason})
    probabilities = scores[["p_alive", "churn_probability"]]
    yield dg.AssetCheckResult(asset_key=CLV, check_name="probabilities_in_unit_interval",
                              passed=bool(((probabilities >= 0) & (probabilities <= 1)).all().all()))
    yield dg.AssetCheckResult(asset_key=CLV, check_name="no_missing_values",
                              passed=not bool(scores.drop(columns=["run_id"]).isna().any().any()))
