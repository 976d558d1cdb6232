"""The nightly refresh: the month in progress, early in a month the previous one too (late data), and stale months."""

from datetime import datetime, timezone

import dagster as dg

from customer_analytics.config import Settings, month_key
from customer_analytics.month_loads import stale_months
from customer_analytics.partitions import monthly_partitions, partition_month
from customer_analytics.resources import WarehouseResource

NIGHTLY_CRON = "0 2 * * *"


def nightly_partition_keys(tick: datetime, late_days: int) -> list[str]:
    """Partitions a tick refreshes: the UTC month holding the tick, plus the month before during the
    first `late_days` UTC days of a month (events arrive late). Oldest first; only existing partitions."""
    instant = tick.astimezone(timezone.utc)
    keys = monthly_partitions.get_partition_keys(current_time=instant)
    if not keys:
        return []
    return keys[-2:] if instant.day <= late_days else keys[-1:]


def stale_partition_keys(warehouse) -> list[str]:
    """Months whose tables no longer agree with the months before them or with their landing files (oldest first)."""
    keys = monthly_partitions.get_partition_keys()
    if not keys:
        return []
    warehouse.ensure_tables()
    stale = stale_months(warehouse, first=partition_month(keys[0]), last=partition_month(keys[-1]))
    return [month_key(s.month) for s in stale]


def build_nightly_refresh_schedule(job, settings: Settings | None = None) -> dg.ScheduleDefinition:
    settings = settings or Settings.from_env()

    @dg.schedule(
        name="nightly_refresh_schedule",
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=settings.timezone,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every night at 02:00 ({settings.timezone}): recompute the month in progress, during the first "
            f"{settings.late_days} days of a month the previous month too, for late data, and every stale month "
            "(an earlier month reloaded or rebuilt after it, or a landing file of it changed)."
        ),
    )
    def nightly_refresh_schedule(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
        tick = context.scheduled_execution_time or datetime.now(timezone.utc)
        day = tick.astimezone(timezone.utc).date().isoformat()
        try:
            stale = stale_partition_keys(warehouse.get())
        except Exception as error:  # the warehouse down: the usual months still run (and fail loudly there)
            context.log.warning(f"stale months not read, refreshing the usual months only: {error}")
            stale = []
        usual = nightly_partition_keys(tick, settings.late_days)
        for key in sorted(set(stale) | set(usual)):
            yield dg.RunRequest(
                run_key=f"nightly:{key}@{day}",  # one tick never launches the same month twice
                partition_key=key,
                # The month is in dagster/partition (from partition_key): no second tag naming it.
                tags={"trigger": "nightly_refresh" if key in usual else "nightly_refresh:stale"},
            )

    return nightly_refresh_schedule
