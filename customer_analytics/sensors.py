"""Sensors for segment reruns: launch one run per pending `rerun_requests` row, then record how it ended.

Exactly once, even across daemon restarts, re-evaluated ticks and reset cursors:
* every request's run carries the tag `customer_analytics/rerun_request=<id>` and the run key
  `rerun-request-<id>`; before requesting a run the sensor looks for a run with that tag and,
  if there is one, only records it (the daemon would also skip a repeated run key);
* the cursor remembers the requests already asked for, so the next tick does not ask again
  while the daemon is still creating the run; a request asked for but still without a run
  after `RELAUNCH_AFTER` (the daemon died between the tick and the launch) is asked for again
  under the same run key;
* a request whose run the daemon created but never submitted (killed in between, its tick not
  resumed: the daemon stayed down for over a day, or the sensor was stopped mid-tick) still has
  that run `NOT_STARTED` after `RELAUNCH_AFTER`; the sensor asks for it again under its run key,
  and the daemon submits that same run rather than creating another.

A request is marked `launched` with its run id (by the run itself as it starts, or by the sensor
when it finds the run), then `succeeded` or `failed` by the run-status sensors — or by the
sensor's next tick, should those miss it. A request with an invalid segment, month or customer
list (written by psql or a BI tool) is marked `rejected` with the reason and never launched.
"""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
from sqlalchemy import func, select, update

from customer_analytics.config import ConfigError, Settings, month_key
from customer_analytics.jobs import REQUEST_TAG, SEGMENT_TAG, rerun_run_config, segment_rerun_job
from customer_analytics.reruns import validate_request
from customer_analytics.resources import WarehouseResource
from customer_analytics.resources.tables import rerun_requests
from customer_analytics.resources.warehouse import Warehouse

RELAUNCH_AFTER = timedelta(minutes=5)
# How often the three sensors look for requests and finished runs (CUSTOMER_ANALYTICS_RERUN_POLL_SECONDS):
# a request waits up to this long for its run, and its run's end up to this long to be recorded.
POLL_SECONDS = Settings.from_env().rerun_poll_seconds
OPEN_STATUSES = ("pending", "launched")
# Tags the daemon puts on every run a sensor creates (Dagster's RUN_KEY_TAG and SENSOR_NAME_TAG).
RUN_KEY_TAG, SENSOR_NAME_TAG = "dagster/run_key", "dagster/sensor_name"
SENSOR_TAGS = (RUN_KEY_TAG, SENSOR_NAME_TAG)
SENSOR_NAME = "segment_rerun_sensor"
FAILED_RUN_STATUSES = {dg.DagsterRunStatus.FAILURE: "failed", dg.DagsterRunStatus.CANCELED: "failed"}


def run_key(request_id: int) -> str:
    return f"rerun-request-{request_id}"


def mark_request(warehouse: Warehouse, request_id: int, status: str, *, run_id: str | None = None,
                 message: str | None = None) -> bool:
    """Move an open request to `status`; a request already finished (or rejected) is never changed back.

    `message` fills the request's message unless the run already wrote a more precise one.
    """
    values: dict = {"status": status}
    if run_id is not None:
        values["run_id"] = run_id
    if message is not None:
        values["message"] = func.coalesce(rerun_requests.c.message, message)
    with warehouse.begin() as connection:
        result = connection.execute(update(rerun_requests)
                                    .where(rerun_requests.c.request_id == request_id, rerun_requests.c.status.in_(OPEN_STATUSES))
                                    .values(**values))
        return result.rowcount > 0


def _run_for(instance: dg.DagsterInstance, request_id: int) -> dg.RunRecord | None:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={REQUEST_TAG: str(request_id)}), limit=1)
    return records[0] if records else None


def _stranded(record: dg.RunRecord, request_id: int, now: datetime) -> bool:
    """The sensor's own run for the request, created over `RELAUNCH_AFTER` ago and never submitted.

    Only such a run is asked for again: the daemon finds it by its run key and submits it. A run
    without the key (made by hand) would not be found, and asking would create a second one.
    """
    run = record.dagster_run
    return (run.status == dg.DagsterRunStatus.NOT_STARTED
            and run.tags.get(RUN_KEY_TAG) == run_key(request_id)
            and run.tags.get(SENSOR_NAME_TAG) == SENSOR_NAME
            and now - record.create_timestamp >= RELAUNCH_AFTER)  # Dagster's run records are aware UTC


def _record_run(warehouse: Warehouse, request_id: int, run: dg.DagsterRun) -> str:
    """Record what became of a request's run; returns the status written."""
    if run.status == dg.DagsterRunStatus.SUCCESS:
        status = "succeeded"
    elif run.status in FAILED_RUN_STATUSES:
        status = "failed"
    else:
        status = "launched"
    message = f"run {run.run_id} ended {run.status.value}" if status == "failed" else None
    mark_request(warehouse, request_id, status, run_id=run.run_id, message=message)
    return status


def _load_cursor(text: str | None) -> dict:
    try:
        cursor = json.loads(text) if text else {}
    except json.JSONDecodeError:
        cursor = {}
    return {"asked": dict(cursor.get("asked", {})) if isinstance(cursor, dict) else {}}


@dg.sensor(
    name=SENSOR_NAME,
    job=segment_rerun_job,
    minimum_interval_seconds=POLL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Every {POLL_SECONDS} s: one segment_rerun_job run per pending rerun_requests row "
                "(run key rerun-request-<id>); invalid requests are marked rejected with the reason.",
)
def segment_rerun_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    wh = warehouse.get()
    wh.ensure_tables()
    cursor = _load_cursor(context.cursor)
    now = datetime.now(timezone.utc)
    open_requests = wh.read_frame(select(rerun_requests).where(rerun_requests.c.status.in_(OPEN_STATUSES))
                                  .order_by(rerun_requests.c.request_id))
    # Forget requests no longer open (finished, rejected, or changed by hand).
    open_ids = {str(int(i)) for i in open_requests["request_id"]}
    cursor["asked"] = {key: at for key, at in cursor["asked"].items() if key in open_ids}
    # notes: what this tick did (INFO); quiet: what it only saw again (DEBUG), so an idle tick logs nothing at INFO.
    run_requests, notes, quiet = [], [], []
    for row in open_requests.itertuples(index=False):
        request_id = int(row.request_id)
        key = str(request_id)
        record = _run_for(context.instance, request_id)
        if record is not None:
            run = record.dagster_run
            status = _record_run(wh, request_id, run)
            (notes if status != row.status else quiet).append(f"request {request_id}: run {run.run_id} → {status}")
            cursor["asked"].pop(key, None)
            if _stranded(record, request_id, now):
                # Same key, the run's own config and tags: the daemon submits this run, creates none.
                run_requests.append(dg.RunRequest(run_key=run_key(request_id), run_config=run.run_config,
                                                  tags={k: v for k, v in run.tags.items() if k not in SENSOR_TAGS}))
                notes.append(f"request {request_id}: run {run.run_id} was created but never submitted; asking again")
            continue
        if row.status != "pending":
            continue  # launched by hand or its run was deleted: nothing to launch again
        asked_at = cursor["asked"].get(key)
        if asked_at is not None and now - datetime.fromisoformat(asked_at) < RELAUNCH_AFTER:
            continue  # asked for on an earlier tick; the daemon is creating the run
        try:
            request = validate_request(wh, row.segment, pd.Timestamp(row.as_of_month).date(), row.customer_ids)
        except ConfigError as error:
            mark_request(wh, request_id, "rejected", message=str(error))
            notes.append(f"request {request_id}: rejected: {error}")
            continue
        month = month_key(request.as_of_month)
        run_requests.append(dg.RunRequest(
            run_key=run_key(request_id),
            run_config=rerun_run_config(request.segment, month, request.customer_ids, request_id),
            tags={REQUEST_TAG: key, SEGMENT_TAG: request.segment, "customer_analytics/month": month,
                  "customer_analytics/trigger": "segment_rerun_sensor",
                  # Shares the one-run-per-partition queue limit with the nightly refresh and backfills.
                  "dagster/partition": month},
        ))
        cursor["asked"][key] = now.isoformat()
        notes.append(f"request {request_id}: launching {request.segment} for {month}")
    for note in quiet:
        context.log.debug(note)
    for note in notes:
        context.log.info(note)
    return dg.SensorResult(run_requests=run_requests, cursor=json.dumps(cursor, sort_keys=True),
                           skip_reason=None if run_requests else "no pending rerun requests to launch")


def _request_id(run: dg.DagsterRun) -> int | None:
    value = run.tags.get(REQUEST_TAG)
    return int(value) if value and value.isdigit() else None


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[segment_rerun_job],
    minimum_interval_seconds=POLL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks a rerun request succeeded when its segment_rerun_job run succeeds.",
)
def segment_rerun_succeeded(context: dg.RunStatusSensorContext, warehouse: WarehouseResource):
    request_id = _request_id(context.dagster_run)
    if request_id is not None and mark_request(warehouse.get(), request_id, "succeeded", run_id=context.dagster_run.run_id):
        context.log.info(f"request {request_id}: run {context.dagster_run.run_id} → succeeded")


@dg.run_failure_sensor(
    monitored_jobs=[segment_rerun_job],
    minimum_interval_seconds=POLL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks a rerun request failed, with the run's error, when its segment_rerun_job run fails.",
)
def segment_rerun_failed(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
    request_id = _request_id(context.dagster_run)
    if request_id is not None:
        reason = context.failure_event.message if context.failure_event else "run failed"
        # The failed step's own error, innermost cause (e.g. run config refused as the step started).
        for record in context.instance.all_logs(context.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            error = record.dagster_event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            if error is not None:
                reason += " " + " ".join(error.message.split())[:500]
                break
        if mark_request(warehouse.get(), request_id, "failed", run_id=context.dagster_run.run_id,
                        message=f"run {context.dagster_run.run_id} failed: {reason}"):
            context.log.info(f"request {request_id}: run {context.dagster_run.run_id} → failed")


rerun_sensors = [segment_rerun_sensor, segment_rerun_succeeded, segment_rerun_failed]
