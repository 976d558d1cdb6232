"""The nightly refresh: the month in progress, and early in a month the previous one too (late data)."""

from datetime import datetime, timezone

import dagster as dg

from customer_analytics.config import Settings
from customer_analytics.partitions import monthly_partitions

NIGHTLY_CRON = "0 2 * * *"


def nightly_partition_keys(tick: datetime, late_days: int) -> list[str]:
    """Partitions a tick refreshes: the UTC month holding the tick, plus the month before during the
    first `late_days` UTC days of a month (events arrive late). Oldest first; only existing partitions."""
    instant = tick.astimezone(timezone.utc)
    keys = monthly_partitions.get_partition_keys(current_time=instant)
    if not keys:
        return []
    return keys[-2:] if instant.day <= late_days else keys[-1:]


def build_nightly_refresh_schedule(job, settings: Settings | None = None) -> dg.ScheduleDefinition:
    settings = settings or Settings.from_env()

    @dg.schedule(
        name="nightly_refresh_schedule",
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=settings.timezone,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every night at 02:00 ({settings.timezone}): recompute the month in progress, and during the first "
            f"{settings.late_days} days of a month the previous month too, for late data."
        ),
    )
    def nightly_refresh_schedule(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time or datetime.now(timezone.utc)
        day = tick.astimezone(timezone.utc).date().isoformat()
        for key in nightly_partition_keys(tick, settings.late_days):
            yield dg.RunRequest(
                run_key=f"nightly:{key}@{day}",  # one tick never launches the same month twice
                partition_key=key,
                tags={"trigger": "nightly_refresh", "partition": key},
            )

    return nightly_refresh_schedule
