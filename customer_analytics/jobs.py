"""`segment_rerun_job`: rescore one month's value segment (or a few customers) with the month's fitted model."""

import enum
from datetime import datetime, timezone

import dagster as dg
from pydantic import Field, field_validator
from sqlalchemy import update

from customer_analytics.assets.customers import ClvConfig
from customer_analytics.assets.metadata import counter_table, markdown_table
from customer_analytics.config import ConfigError, parse_month
from customer_analytics.reruns import MAX_CUSTOMERS, parse_customer_ids
from customer_analytics.rescoring import rescore
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import rerun_requests
from customer_analytics.retries import retry_on_lost_connection

REQUEST_TAG = "customer_analytics/rerun_request"
SEGMENT_TAG = "customer_analytics/segment"


class ValueSegment(enum.Enum):
    """The value segments a rerun can target (the `segment` column of customer_clv), or all of them."""

    high = "high"
    medium = "medium"
    low = "low"
    at_risk = "at_risk"
    all = "all"  # every scored customer of the month, with its stored model: no refit


class SegmentRerunConfig(ClvConfig):
    """Which month and segment to rescore; the CLV thresholds are the same settings as customer_clv's.

    A malformed month, an empty or control-character customer id, too many customers or a
    request id below 1 is refused, with what is valid, when the op starts: before it writes anything.
    """

    segment: ValueSegment
    month: str = Field(description="YYYY-MM, a month with CLV scores, e.g. 2025-03.")
    customer_ids: list[str] | None = Field(
        default=None,
        description=f"Rescore these customers (plus new ones) instead of the whole segment; at most {MAX_CUSTOMERS:,}.")
    request_id: int | None = Field(default=None, ge=1, description="The rerun_requests row this run serves, if any.")

    @field_validator("month")
    @classmethod
    def _month_is_a_month(cls, value: str) -> str:
        try:
            parse_month(value, what="month")
        except ConfigError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("customer_ids")
    @classmethod
    def _ids_are_plain_text(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not all(customer_id.strip() for customer_id in value):
                raise ValueError("customer_ids holds an empty id: give ids as they appear in customer_id, e.g. C000123, "
                                 "or leave customer_ids out to rescore the whole segment")
            try:
                parse_customer_ids(value)  # the rules a rerun request's list follows (control characters, size)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return value


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Rescore the customers of one value segment (or the listed customers), plus every customer not yet "
                "scored for the month, with the month's fitted CLV model; replace exactly their customer_clv, "
                "customer_rfm and customer_segments rows and recompute segment_metrics and segment_migration, in one "
                "transaction.",
)
@retry_on_lost_connection
def rescore_segment(context: dg.OpExecutionContext, config: SegmentRerunConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    if config.request_id is not None:
        # The run knows its id before the sensor's next tick does: record it now.
        with wh.begin() as connection:
            connection.execute(update(rerun_requests)
                               .where(rerun_requests.c.request_id == config.request_id, rerun_requests.c.status == "pending")
                               .values(status="launched", run_id=context.run_id))
    try:
        month = parse_month(config.month, what="month")
        result = rescore(wh, month, config.segment.value, parse_customer_ids(config.customer_ids), config.settings(),
                         run_id=context.run_id, computed_at=datetime.now(timezone.utc))
    except ConfigError as error:
        _note(wh, config.request_id, str(error))
        raise dg.Failure(description=str(error), allow_retries=False) from None
    context.log.info(result.summary())
    _note(wh, config.request_id, result.summary(), computed=result.rescored, errors=result.errors)
    shared = {"request_id": config.request_id if config.request_id is not None else "none",
              "segment": config.segment.value, "model": result.model, "rescored_customers": result.rescored,
              "new_customers": result.new_customers}
    yield dg.AssetMaterialization(asset_key="customer_clv", partition=config.month, description=result.summary(), metadata={
        **shared, "changed_segment": result.changed_segment, "removed_rows": result.removed,
        "segments": counter_table(result.scores["segment"].value_counts().to_dict(), "segment", "customers"),
        "preview": markdown_table(result.scores.sort_values("predicted_revenue_24m", ascending=False)[
            ["customer_id", "clv_score", "predicted_revenue_24m", "p_alive", "segment"]]),
    })
    for asset in ("customer_rfm", "customer_segments", "segment_metrics", "segment_migration"):
        yield dg.AssetMaterialization(asset_key=asset, partition=config.month, metadata=shared)


def _note(warehouse, request_id: int | None, message: str, **counts: int) -> None:
    """What the run did (or why it could not), with the `computed` and `errors` counts, on the request it serves."""
    if request_id is not None:
        with warehouse.begin() as connection:
            connection.execute(update(rerun_requests).where(rerun_requests.c.request_id == request_id)
                               .values(message=message, **counts))


@dg.job(
    executor_def=dg.in_process_executor,
    tags={"team": "customer-analytics"},
    description="Rescore one value segment of one month (or a few customers) with that month's fitted model, no refit. "
                "Launched by segment_rerun_sensor for each pending rerun_requests row; can be launched by hand too.",
)
def segment_rerun_job():
    rescore_segment()


def rerun_run_config(segment: str, month: str, customer_ids: list[str] | None, request_id: int | None) -> dict:
    config: dict = {"segment": segment, "month": month, "request_id": request_id}
    if customer_ids:
        config["customer_ids"] = list(customer_ids)
    return {"ops": {"rescore_segment": {"config": config}}}
