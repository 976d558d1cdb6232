"""The nightly refresh schedule, evaluated at chosen ticks."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from customer_analytics.config import ConfigError, Settings, parse_late_days, parse_poll_seconds, parse_timezone
from customer_analytics.definitions import customer_analytics_job, defs
from customer_analytics.resources import WarehouseResource
from customer_analytics.schedules import build_nightly_refresh_schedule


@pytest.fixture(autouse=True)
def warehouse_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", url)
    return url


def requests_at(tick: datetime, **settings) -> list[dg.RunRequest]:
    schedule = build_nightly_refresh_schedule(customer_analytics_job, Settings.from_env({**settings}))
    with dg.build_schedule_context(scheduled_execution_time=tick, resources={"warehouse": WarehouseResource()}) as context:
        return list(schedule(context))


def test_stale_months_are_refreshed_too_oldest_first(warehouse_url):
    """February's history was built before January's rows changed: February (and March, built on it) are stale."""
    from sqlalchemy import insert

    from customer_analytics.resources.tables import customer_history_builds, raw_events_loads
    from customer_analytics.resources.warehouse import Warehouse

    warehouse = Warehouse(warehouse_url)
    warehouse.ensure_tables()
    at = lambda day: datetime(2026, 3, day, tzinfo=timezone.utc)  # noqa: E731
    with warehouse.begin() as connection:
        connection.execute(insert(raw_events_loads), [
            {"event_month": date(2025, m, 1), "loaded_at": at(1), "rows": 1, "changed_at": at(10 if m == 1 else 1),
             "id_hash_version": 1, "id_hashes": b""} for m in (1, 2, 3)])
        connection.execute(insert(customer_history_builds), [
            {"as_of_month": date(2025, m, 1), "method": "full", "built_at": at({1: 11, 2: 3, 3: 4}[m]),
             "as_of": at(1), "customers": 1} for m in (1, 2, 3)])
    requests = requests_at(datetime(2026, 3, 15, 2, tzinfo=timezone.utc))
    assert [r.partition_key for r in requests] == ["2025-02", "2025-03", "2026-03"]
    assert requests[0].tags == {"trigger": "nightly_refresh:stale"}


def test_mid_month_refreshes_the_month_in_progress_only():
    requests = requests_at(datetime(2026, 3, 15, 2, tzinfo=timezone.utc))
    assert [r.partition_key for r in requests] == ["2026-03"]
    assert requests[0].tags == {"trigger": "nightly_refresh"}
    assert requests[0].run_key == "nightly:2026-03@2026-03-15"


@pytest.mark.parametrize(("day", "expected"), [(1, ["2026-02", "2026-03"]), (3, ["2026-02", "2026-03"]), (4, ["2026-03"])])
def test_the_first_late_days_of_a_month_also_refresh_the_previous_month(day, expected):
    assert [r.partition_key for r in requests_at(datetime(2026, 3, day, 2, tzinfo=timezone.utc))] == expected


def test_late_days_is_configurable():
    tick = datetime(2026, 3, 5, 2, tzinfo=timezone.utc)
    assert len(requests_at(tick, CUSTOMER_ANALYTICS_LATE_DAYS="5")) == 2
    assert len(requests_at(tick, CUSTOMER_ANALYTICS_LATE_DAYS="0")) == 1


def test_a_tick_gives_stable_distinct_run_keys():
    tick = datetime(2026, 3, 2, 2, tzinfo=timezone.utc)
    first, again = requests_at(tick), requests_at(tick)
    assert [r.run_key for r in first] == [r.run_key for r in again]  # the daemon launches a run key once
    assert len({r.run_key for r in first}) == 2
    assert {r.run_key for r in first}.isdisjoint(r.run_key for r in requests_at(datetime(2026, 3, 3, 2, tzinfo=timezone.utc)))


def test_before_the_first_partition_nothing_is_requested():
    assert requests_at(datetime(2024, 6, 10, 2, tzinfo=timezone.utc), CUSTOMER_ANALYTICS_START_MONTH="2025-01") == []


def test_timezone_sets_when_it_runs_and_months_stay_utc():
    schedule = build_nightly_refresh_schedule(customer_analytics_job, Settings.from_env({"CUSTOMER_ANALYTICS_TIMEZONE": "Asia/Tokyo"}))
    assert schedule.execution_timezone == "Asia/Tokyo" and schedule.cron_schedule == "0 2 * * *"
    # 02:00 in Tokyo on April 1st is still March 31st in UTC: March is the month in progress (and late-days apply to April 1st UTC only).
    tick = datetime(2026, 4, 1, 2, tzinfo=ZoneInfo("Asia/Tokyo"))
    with dg.build_schedule_context(scheduled_execution_time=tick, resources={"warehouse": WarehouseResource()}) as context:
        assert [r.partition_key for r in schedule(context)] == ["2026-03"]


def test_the_schedule_is_registered_and_running_by_default():
    schedule = defs.resolve_schedule_def("nightly_refresh_schedule")
    assert schedule.job_name == customer_analytics_job.name
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize("bad", ["Mars/Olympus", "utc+2", ""])
def test_bad_timezones_are_refused_with_an_example(bad):
    if bad == "":
        assert Settings.from_env({"CUSTOMER_ANALYTICS_TIMEZONE": ""}).timezone == "UTC"  # unset means the default
        return
    with pytest.raises(ConfigError, match="IANA name such as UTC or Europe/Berlin"):
        parse_timezone(bad)


@pytest.mark.parametrize("bad", ["-1", "29", "three", "1.5"])
def test_bad_late_days_are_refused(bad):
    with pytest.raises(ConfigError, match="from 0 to 28"):
        parse_late_days(bad)


@pytest.mark.parametrize("bad", ["0", "-5", "3601", "ten", "2.5"])
def test_bad_rerun_poll_intervals_are_refused(bad):
    with pytest.raises(ConfigError, match="from 1 to 3600"):
        parse_poll_seconds(bad)


def test_the_rerun_poll_interval_defaults_to_30_seconds_and_is_read_from_the_environment():
    assert Settings.from_env({}).rerun_poll_seconds == 30
    assert Settings.from_env({"CUSTOMER_ANALYTICS_RERUN_POLL_SECONDS": " 5 "}).rerun_poll_seconds == 5
