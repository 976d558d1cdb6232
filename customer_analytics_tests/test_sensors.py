"""The rerun sensors against a real control table and a real (temporary) Dagster instance."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import delete, select

from customer_analytics import sensors
from customer_analytics.jobs import REQUEST_TAG, rerun_run_config, segment_rerun_job
from customer_analytics.reruns import validate_request, write_request
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import rerun_requests
from customer_analytics.sensors import (
    RELAUNCH_AFTER,
    segment_rerun_failed,
    segment_rerun_sensor,
    segment_rerun_succeeded,
)

MONTH = date(2025, 3, 1)


@pytest.fixture
def control(scored_warehouse):
    """The scored warehouse with an empty control table, a Dagster instance and the sensor's resources."""
    with scored_warehouse.begin() as connection:
        connection.execute(delete(rerun_requests))
    with dg.instance_for_test() as instance:
        yield scored_warehouse, instance, {"warehouse": WarehouseResource(db_url=scored_warehouse.url, db_schema=scored_warehouse.schema)}
    with scored_warehouse.begin() as connection:
        connection.execute(delete(rerun_requests))


def evaluate(instance, resources, cursor=None) -> dg.SensorResult:
    # A context manager: the warehouse resource sets itself up (and tears down) around the tick.
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return segment_rerun_sensor(context)


def on_run_status(sensor, context) -> None:
    with context:
        sensor(context)


def requests(warehouse) -> pd.DataFrame:
    return warehouse.read_frame(select(rerun_requests).order_by(rerun_requests.c.request_id)).set_index("request_id")


def insert_raw(warehouse, **values) -> int:
    """A request as another tool (psql, a BI tool) would write it: nothing checked."""
    with warehouse.begin() as connection:
        return connection.execute(rerun_requests.insert().values(
            requested_at=datetime.now(timezone.utc), status="pending", **values)).inserted_primary_key[0]


def test_a_pending_request_launches_one_run_and_the_same_tick_again_none(control):
    warehouse, instance, resources = control
    request_id = write_request(warehouse, validate_request(warehouse, "at_risk", "2025-03", ["C000003"]))

    first = evaluate(instance, resources)
    assert len(first.run_requests) == 1
    run = first.run_requests[0]
    assert run.run_key == f"rerun-request-{request_id}"
    assert run.tags[REQUEST_TAG] == str(request_id) and run.tags["dagster/partition"] == "2025-03"
    assert run.run_config == rerun_run_config("at_risk", "2025-03", ["C000003"], request_id)
    assert dg.validate_run_config(segment_rerun_job, run.run_config)

    again = evaluate(instance, resources, cursor=first.cursor)
    assert again.run_requests == []
    assert requests(warehouse).loc[request_id, "status"] == "pending"


@pytest.mark.parametrize(("values", "reason"), [
    ({"segment": "vip'; DROP TABLE rerun_requests; --", "as_of_month": MONTH}, "unknown segment"),
    ({"segment": "high", "as_of_month": date(2019, 1, 1)}, "2019-01 has no CLV scores to rerun: scored months are 2025-01, 2025-02, 2025-03"),
    ({"segment": "high", "as_of_month": MONTH, "customer_ids": "[\"C1\", "}, "customer_ids is not a valid JSON array"),
])
def test_an_invalid_request_is_rejected_with_its_reason_and_never_launched(control, values, reason):
    warehouse, instance, resources = control
    bad = insert_raw(warehouse, **values)
    good = insert_raw(warehouse, segment="low", as_of_month=MONTH)
    result = evaluate(instance, resources)
    assert [r.tags[REQUEST_TAG] for r in result.run_requests] == [str(good)]
    row = requests(warehouse).loc[bad]
    assert row["status"] == "rejected" and reason in row["message"]
    # Even with the cursor lost, a rejected request stays rejected and is never launched.
    assert [r.tags[REQUEST_TAG] for r in evaluate(instance, resources).run_requests] == [str(good)]
    assert requests(warehouse).loc[bad, "status"] == "rejected"


def test_a_reset_cursor_finds_the_run_instead_of_launching_again(control):
    warehouse, instance, resources = control
    request_id = insert_raw(warehouse, segment="high", as_of_month=MONTH)
    first = evaluate(instance, resources)
    run = instance.create_run_for_job(segment_rerun_job, run_config=first.run_requests[0].run_config,
                                      tags=first.run_requests[0].tags, status=dg.DagsterRunStatus.STARTED)

    for cursor in (None, first.cursor, "not json"):
        assert evaluate(instance, resources, cursor=cursor).run_requests == []
    row = requests(warehouse).loc[request_id]
    assert (row["status"], row["run_id"]) == ("launched", run.run_id)


def test_a_run_that_ended_while_nobody_watched_is_recorded(control):
    warehouse, instance, resources = control
    ok = insert_raw(warehouse, segment="high", as_of_month=MONTH)
    broken = insert_raw(warehouse, segment="low", as_of_month=MONTH)
    for request_id, status in ((ok, dg.DagsterRunStatus.SUCCESS), (broken, dg.DagsterRunStatus.FAILURE)):
        instance.create_run_for_job(segment_rerun_job, tags={REQUEST_TAG: str(request_id)}, status=status,
                                    run_config=rerun_run_config("high", "2025-03", None, request_id))
    assert evaluate(instance, resources).run_requests == []
    rows = requests(warehouse)
    assert rows.loc[ok, "status"] == "succeeded"
    assert rows.loc[broken, "status"] == "failed" and "FAILURE" in rows.loc[broken, "message"]


def test_a_request_asked_for_but_never_launched_is_asked_again_under_the_same_key(control):
    warehouse, instance, resources = control
    request_id = insert_raw(warehouse, segment="medium", as_of_month=MONTH)
    first = evaluate(instance, resources)
    long_ago = (datetime.now(timezone.utc) - RELAUNCH_AFTER - timedelta(seconds=1)).isoformat()
    stale = json.dumps({"asked": {str(request_id): long_ago}})
    again = evaluate(instance, resources, cursor=stale)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests] == [f"rerun-request-{request_id}"]


def test_a_run_created_but_never_submitted_is_asked_for_again_under_its_key(control, monkeypatch):
    """The daemon killed between creating a request's run and submitting it, its tick not resumed: the run stays
    NOT_STARTED. Past RELAUNCH_AFTER the sensor asks again under the run's key, which makes the daemon submit that run."""
    warehouse, instance, resources = control
    request_id = insert_raw(warehouse, segment="high", as_of_month=MONTH)
    (asked,) = evaluate(instance, resources).run_requests
    # The run as the daemon creates it from the request (its tags plus the sensor's), left unsubmitted.
    run = instance.create_run_for_job(segment_rerun_job, run_config=asked.run_config, status=dg.DagsterRunStatus.NOT_STARTED,
                                      tags={**asked.tags, "dagster/run_key": asked.run_key,
                                            "dagster/sensor_name": segment_rerun_sensor.name})
    by_hand = insert_raw(warehouse, segment="low", as_of_month=MONTH)
    instance.create_run_for_job(segment_rerun_job, run_config=rerun_run_config("low", "2025-03", None, by_hand),
                                tags={REQUEST_TAG: str(by_hand)}, status=dg.DagsterRunStatus.NOT_STARTED)

    # Just created: the daemon that made it may still submit it, so it is only recorded.
    assert evaluate(instance, resources).run_requests == []
    row = requests(warehouse).loc[request_id]
    assert (row["status"], row["run_id"]) == ("launched", run.run_id)

    monkeypatch.setattr(sensors, "RELAUNCH_AFTER", timedelta(0))
    (again,) = evaluate(instance, resources).run_requests
    assert again.run_key == asked.run_key == f"rerun-request-{request_id}"
    assert again.run_config == run.run_config == asked.run_config
    assert again.tags[REQUEST_TAG] == str(request_id) and "dagster/run_key" not in again.tags
    # The run made by hand has no run key the daemon could find: asking would create a second run, so it is left.
    assert requests(warehouse).loc[by_hand, "status"] == "launched"


def test_run_status_sensors_finish_the_request(control):
    warehouse, instance, resources = control
    ok = insert_raw(warehouse, segment="at_risk", as_of_month=MONTH)
    broken = insert_raw(warehouse, segment="at_risk", as_of_month=MONTH)
    succeeded = segment_rerun_job.execute_in_process(run_config=rerun_run_config("at_risk", "2025-03", None, ok),
                                                     instance=instance, resources=resources, tags={REQUEST_TAG: str(ok)})
    failed = segment_rerun_job.execute_in_process(run_config=rerun_run_config("at_risk", "1999-13", None, broken),
                                                  instance=instance, resources=resources, tags={REQUEST_TAG: str(broken)},
                                                  raise_on_error=False)
    on_run_status(segment_rerun_succeeded, dg.build_run_status_sensor_context(
        sensor_name="segment_rerun_succeeded", dagster_instance=instance, dagster_run=succeeded.dagster_run,
        dagster_event=succeeded.get_run_success_event(), resources=resources))
    on_run_status(segment_rerun_failed, dg.build_run_status_sensor_context(
        sensor_name="segment_rerun_failed", dagster_instance=instance, dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event(), resources=resources).for_run_failure())
    rows = requests(warehouse)
    assert (rows.loc[ok, "status"], rows.loc[ok, "run_id"]) == ("succeeded", succeeded.run_id)
    assert rows.loc[ok, "message"].startswith("2025-03 at_risk: rescored")
    assert (rows.loc[broken, "status"], rows.loc[broken, "run_id"]) == ("failed", failed.run_id)
    assert "1999-13" in rows.loc[broken, "message"], "the run's own reason, not a generic one"
    # A finished request is never moved back, whatever arrives late.
    on_run_status(segment_rerun_failed, dg.build_run_status_sensor_context(
        sensor_name="segment_rerun_failed", dagster_instance=instance, dagster_run=succeeded.dagster_run,
        dagster_event=failed.get_run_failure_event(), resources=resources).for_run_failure())
    assert requests(warehouse).loc[ok, "status"] == "succeeded"


def test_a_tick_logs_at_info_only_what_it_changed(control):
    """Quiet ticks (nothing pending, a run still going) log at DEBUG; a launch or a status it records, at INFO."""
    import logging

    warehouse, instance, resources = control
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append

    def evaluate(instance, resources, cursor=None) -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            context.log.setLevel(logging.DEBUG)  # the tick's own logger: see every line, then judge its level
            context.log.addHandler(handler)
            return segment_rerun_sensor(context)

    def info_lines() -> list[str]:
        lines = [r.getMessage() for r in records if r.levelno >= logging.INFO and "request " in r.getMessage()]
        records.clear()
        return lines

    evaluate(instance, resources)
    assert info_lines() == [], "an idle tick says nothing at INFO"
    request_id = insert_raw(warehouse, segment="high", as_of_month=MONTH)
    first = evaluate(instance, resources)
    assert any(f"request {request_id}: launching" in line for line in info_lines())
    run = instance.create_run_for_job(segment_rerun_job, run_config=first.run_requests[0].run_config,
                                      tags=first.run_requests[0].tags, status=dg.DagsterRunStatus.STARTED)
    evaluate(instance, resources, cursor=first.cursor)
    assert any(f"run {run.run_id} → launched" in line for line in info_lines()), "pending → launched is news"
    evaluate(instance, resources, cursor=first.cursor)
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    assert info_lines() == [], "the same run still going is not"
    assert any(f"run {run.run_id} → launched" in line for line in debug), records
