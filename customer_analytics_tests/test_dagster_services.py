"""End to end against the real services: dagster-webserver + dagster-daemon on PostgreSQL, runs launched over GraphQL.

Sample data (300 customers, 2025-01..2025-03) → `customer_analytics_job` for 2025-02, submitted through the
webserver's GraphQL API, dequeued and launched by the daemon → SUCCESS → the month's rows in the warehouse.
One month alone is enough: every as-of table reads its history from the summaries with SQL bounded by the
month's end, so the missing January only means less history (asserted below), never an error.

Also: a rerun request through the sensor, the daemon killed (SIGKILL) as the sensor launches and then
restarted, and two runs of one month queued together.

Timings are printed (run pytest with -s) and recorded as junit properties.
"""

from __future__ import annotations

import time
from datetime import date

import pytest
from dagster import DagsterRunStatus, RunsFilter
from sqlalchemy import text

from customer_analytics.jobs import REQUEST_TAG
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.sensors import RELAUNCH_AFTER
from customer_analytics.views import VIEW_NAMES
from customer_analytics_tests.conftest import _postgres_or_skip, reachable_or_skip
from customer_analytics_tests.dagster_services import LOCATION_NAME, REPOSITORY_NAME, DagsterServices

pytestmark = [
    pytest.mark.postgres,
    # dagster_graphql's client calls gql in a way gql deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning"),
]

MONTH = "2025-02"
MONTH_START = date(2025, 2, 1)
JOB = "customer_analytics_job"
# The rerun sensors poll every POLL_SECONDS here (CUSTOMER_ANALYTICS_RERUN_POLL_SECONDS) instead of the default 30 s,
# so that waiting for "one more tick" costs seconds; what a tick does is the same at any interval.
POLL_SECONDS = 5
# Tables with one as-of month per partition: each must have rows for MONTH, and only for MONTH.
AS_OF_TABLES = ["customer_rfm", "customer_clv", "clv_model_fits", "customer_segments", "segment_metrics",
                "segment_migration", "cohort_ltv", "ltv_summary"]

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { minIntervalSeconds description }
  }
}
"""

ASSET_MATERIALIZATIONS_QUERY = """
query Materializations($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions, limit: 10) { partition runId } }
  }
}
"""


def _pg_reachable_or_skip(url: str) -> None:
    warehouse = Warehouse(url, "public")
    try:
        reachable_or_skip(warehouse)
    finally:
        warehouse.engine.dispose()


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    return {}


@pytest.fixture(scope="module")
def services(tmp_path_factory, timings):
    """Webserver + daemon on a fresh Dagster schema and warehouse schema, with sample data in the landing folder."""
    url = _postgres_or_skip()
    _pg_reachable_or_skip(url)
    started = time.perf_counter()
    with DagsterServices(pg_url=url, workdir=tmp_path_factory.mktemp("dagster_services"),
                         sample={"customers": 300, "months": 3, "start": "2025-01", "seed": 5},
                         extra_env={"CUSTOMER_ANALYTICS_RERUN_POLL_SECONDS": str(POLL_SECONDS)}) as running:
        timings["startup_s"] = time.perf_counter() - started
        print(f"\n[dagster-services] webserver on {running.base_url}, Dagster schema {running.dagster_schema}, "
              f"warehouse schema {running.warehouse_schema}; up in {timings['startup_s']:.1f} s")
        yield running
        stopping = time.perf_counter()
    timings["stop_s"] = time.perf_counter() - stopping
    total = time.perf_counter() - started
    print(f"[dagster-services] stopped in {timings['stop_s']:.1f} s; services up for {total:.1f} s in all "
          f"({', '.join(f'{k} {v:.1f}' for k, v in timings.items())})")


@pytest.fixture(scope="module")
def month_run(services, timings) -> dict:
    """`customer_analytics_job` for MONTH, launched over GraphQL and waited for; the run's row from runsOrError."""
    started = time.perf_counter()
    run_id = services.launch_job(JOB, partition=MONTH, tags={"trigger": "e2e-test"})
    status = services.wait_for_run(run_id, timeout=90)
    timings["month_run_s"] = time.perf_counter() - started
    print(f"[dagster-services] {JOB} {MONTH}: run {run_id} {status} in {timings['month_run_s']:.1f} s")
    if status != "SUCCESS":
        errors = "\n".join(services.run_errors(run_id)[-20:])
        pytest.fail(f"run {run_id} ended {status}:\n{errors}\n{services.log_tails()}")
    (run,) = [r for r in services.runs(JOB) if r["runId"] == run_id]
    return run


def test_month_run_through_webserver_and_daemon_fills_the_warehouse(services, month_run, timings,
                                                                      record_property):
    started = time.perf_counter()
    # Dagster's side: one run of the job, for the partition, recorded in the isolated instance.
    runs = services.runs(JOB)
    assert [r["runId"] for r in runs] == [month_run["runId"]]
    assert month_run["status"] == "SUCCESS"
    assert month_run["tags"]["dagster/partition"] == MONTH
    materializations = services.graphql(ASSET_MATERIALIZATIONS_QUERY, {"path": ["customer_clv"], "partitions": [MONTH]})
    assert [(m["partition"], m["runId"]) for m in materializations["assetOrError"]["assetMaterializations"]] == \
        [(MONTH, month_run["runId"])]

    # The warehouse's side: the month's rows, and no other month's.
    warehouse = services.warehouse()
    try:
        with warehouse.connect() as connection:
            def count(table: str, where: str = "", **params) -> int:
                sql = f"SELECT COUNT(*) FROM {warehouse.qualified(table)}" + (f" WHERE {where}" if where else "")
                return connection.execute(text(sql), params).scalar()

            assert count("raw_events", "event_month = :m", m=MONTH_START) > 0
            assert count("customer_profiles") > 0  # unpartitioned, in the same run
            assert count("segment_definitions") > 0
            for table in AS_OF_TABLES:
                assert count(table, "as_of_month = :m", m=MONTH_START) > 0, f"{table}: no rows for {MONTH}"
                assert count(table, "as_of_month <> :m", m=MONTH_START) == 0, f"{table}: rows of another month"
            # History is what the summaries hold: January was not materialized, so RFM sees February only.
            assert count("customer_month_summary", "summary_month <> :m", m=MONTH_START) == 0
            first = connection.execute(text(
                f"SELECT MIN(first_purchase_at) FROM {warehouse.qualified('customer_rfm')}")).scalar()
            assert first is not None and first.date() >= MONTH_START
            for view in VIEW_NAMES:  # bi_views ran after the month, in the same run
                assert connection.execute(text(f"SELECT COUNT(*) FROM {warehouse.qualified(view)}")).scalar() > 0, view
    finally:
        warehouse.engine.dispose()
    timings["checks_s"] = time.perf_counter() - started
    for key, seconds in timings.items():
        record_property(key, round(seconds, 1))
    print(f"[dagster-services] timings: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}")


def test_the_rerun_sensors_poll_at_the_interval_the_environment_sets(services):
    sensors = {}
    for name in ("segment_rerun_sensor", "segment_rerun_succeeded", "segment_rerun_failed"):
        selector = {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME, "sensorName": name}
        sensors[name] = services.graphql(SENSOR_QUERY, {"selector": selector})["sensorOrError"]
    assert {name: (s["__typename"], s.get("minIntervalSeconds")) for name, s in sensors.items()} == \
        {name: ("Sensor", POLL_SECONDS) for name in sensors}, sensors
    assert sensors["segment_rerun_sensor"]["description"].startswith(f"Every {POLL_SECONDS} s:"), sensors


def _month_rows(warehouse, table: str) -> dict[str, str]:
    """customer_id → run_id of the month's rows."""
    frame = warehouse.read_frame(text(f"SELECT customer_id, run_id FROM {warehouse.qualified(table)} WHERE as_of_month = :m"),
                                 {"m": MONTH_START})
    return dict(zip(frame["customer_id"], frame["run_id"]))


def test_a_rerun_request_launches_exactly_one_sensor_run_that_changes_exactly_its_rows(services, month_run, timings,
                                                                                       record_property):
    warehouse = services.warehouse()
    try:
        clv_before = _month_rows(warehouse, "customer_clv")
        segments_before = _month_rows(warehouse, "customer_segments")
        segment_of = dict(warehouse.read_frame(text(
            f"SELECT customer_id, segment FROM {warehouse.qualified('customer_clv')} WHERE as_of_month = :m"),
            {"m": MONTH_START}).itertuples(index=False))
        segment = max(set(segment_of.values()), key=list(segment_of.values()).count)  # the largest segment
        targeted = {c for c, s in segment_of.items() if s == segment}

        started = time.perf_counter()
        services.cli("request-rerun", "--segment", segment, "--month", MONTH, "--by", "e2e")
        (run,) = services.wait_for_runs("segment_rerun_job", count=1, timeout=90)
        assert services.wait_for_run(run["runId"], timeout=90) == "SUCCESS", services.run_errors(run["runId"])
        timings["rerun_request_to_success_s"] = time.perf_counter() - started
        assert run["tags"]["customer_analytics/segment"] == segment
        assert run["tags"]["dagster/partition"] == MONTH
        assert run["tags"]["dagster/sensor_name"] == "segment_rerun_sensor"

        # The request ends succeeded with its run id (run-status sensor), and no second run follows.
        deadline = time.monotonic() + 60
        while True:
            request = warehouse.read_frame(text(f"SELECT * FROM {warehouse.qualified('rerun_requests')}"))
            if request["status"].tolist() == ["succeeded"] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert request["status"].tolist() == ["succeeded"] and request["run_id"].tolist() == [run["runId"]], request
        time.sleep(POLL_SECONDS + 2)  # at least one more sensor tick
        assert [r["runId"] for r in services.runs("segment_rerun_job")] == [run["runId"]]

        # Exactly the segment's rows were rewritten, by that run; every other row is the month run's.
        for table, before in (("customer_clv", clv_before), ("customer_segments", segments_before)):
            after = _month_rows(warehouse, table)
            assert set(after) == set(before), table
            assert {c for c, r in after.items() if r == run["runId"]} == targeted, table
            assert {after[c] for c in set(after) - targeted} == {month_run["runId"]}, table
        metrics_runs = warehouse.read_frame(text(
            f"SELECT DISTINCT run_id FROM {warehouse.qualified('segment_metrics')} WHERE as_of_month = :m"), {"m": MONTH_START})
        assert metrics_runs["run_id"].tolist() == [run["runId"]]
    finally:
        warehouse.engine.dispose()
    record_property("rerun_request_to_success_s", round(timings["rerun_request_to_success_s"], 1))
    print(f"[dagster-services] rerun of {segment} ({len(targeted)} customers): request → SUCCESS in "
          f"{timings['rerun_request_to_success_s']:.1f} s")


def _requests(warehouse, requested_by: str):
    return warehouse.read_frame(text(f"SELECT request_id, status, run_id FROM {warehouse.qualified('rerun_requests')} "
                                     "WHERE requested_by = :by ORDER BY request_id"), {"by": requested_by})


def _wait_for_requests(services, warehouse, requested_by: str, done, timeout: float, what: str, poll: float = 1.0):
    """Poll `requested_by`'s requests until `done(their statuses)`; after `timeout` s fail with `what`, the rows and the
    services' log tails. Returns the rows."""
    deadline = time.monotonic() + timeout
    while not done((requests := _requests(warehouse, requested_by))["status"].tolist()):
        assert time.monotonic() < deadline, f"{what}: {requests}\n{services.log_tails()}"
        services.check_alive()
        time.sleep(poll)
    return requests


def test_a_daemon_killed_as_the_sensor_launches_forgets_no_request_and_runs_none_twice(services, month_run, timings):
    """kill -9 of the daemon the moment the sensor's first run exists (its tick unfinished, the requests still
    unmarked); after a restart every request has exactly one run, and each succeeded.

    The daemon that is killed holds queued runs (run limit 0): otherwise, on a loaded machine, the kill can land
    while its run queue starts the first run (STARTING reported, the launch not made), which strands that run and,
    through the one-run-per-month limit, every later run of the month. Production's dagster.yaml has run
    monitoring fail such a run after its start timeout; that is not what this test is about.
    """
    warehouse = services.warehouse()
    paused = True
    try:
        services.restart_daemon(max_concurrent_runs=0)
        segments = warehouse.read_frame(text(f"SELECT DISTINCT segment FROM {warehouse.qualified('customer_clv')} "
                                             "WHERE as_of_month = :m ORDER BY segment"), {"m": MONTH_START})["segment"]
        asked = list(segments[:3])
        assert len(asked) >= 2, "the sample month has at least two value segments"
        for segment in asked:
            services.cli("request-rerun", "--segment", segment, "--month", MONTH, "--by", "e2e-daemon-kill")
        ids = {str(i) for i in _requests(warehouse, "e2e-daemon-kill")["request_id"]}
        assert len(ids) == len(asked)

        def request_runs() -> list[dict]:
            return [r for r in services.runs("segment_rerun_job") if r["tags"].get(REQUEST_TAG) in ids]

        started = time.perf_counter()
        deadline = time.monotonic() + 90
        while not (runs := request_runs()):
            assert time.monotonic() < deadline, f"no sensor run within 90 s\n{services.log_tails()}"
            services.check_alive()
            time.sleep(0.1)
        services.kill("daemon")
        at_kill = _requests(warehouse, "e2e-daemon-kill")
        print(f"[dagster-services] daemon killed {time.perf_counter() - started:.1f} s after the requests: "
              f"{len(runs)} of {len(ids)} runs created ({', '.join(r['status'] for r in runs)}), "
              f"requests {at_kill['status'].tolist()}")
        # Created but not yet submitted (NOT_STARTED) when the kill lands between the two, else queued; the restarted
        # daemon resumes the unfinished tick and submits a NOT_STARTED run it finds under the run key.
        at_kill_runs = request_runs()
        assert at_kill_runs and {r["status"] for r in at_kill_runs} <= {"NOT_STARTED", "QUEUED"}, at_kill_runs
        services.restart_daemon(max_concurrent_runs=4)
        paused = False

        _wait_for_requests(services, warehouse, "e2e-daemon-kill",
                           lambda statuses: set(statuses) <= {"succeeded", "failed", "rejected"},
                           240, "requests still open after the restart")
        timings["daemon_kill_to_all_requests_done_s"] = time.perf_counter() - started
        time.sleep(POLL_SECONDS + 2)  # at least one more sensor tick after the last request ended

        runs = request_runs()
        by_request = {key: [r for r in runs if r["tags"][REQUEST_TAG] == key] for key in ids}
        assert all(len(found) == 1 for found in by_request.values()), {k: [r["runId"] for r in v] for k, v in by_request.items()}
        requests = _requests(warehouse, "e2e-daemon-kill")
        assert requests["status"].tolist() == ["succeeded"] * len(ids), requests
        for row in requests.itertuples():
            (run,) = by_request[str(row.request_id)]
            assert run["status"] == "SUCCESS" and row.run_id == run["runId"], (row, run)
    finally:
        if paused:  # the later tests need a daemon that starts runs
            services.restart_daemon(max_concurrent_runs=4)
        warehouse.engine.dispose()


def test_a_sensor_run_created_but_never_submitted_is_submitted_once_the_sensor_asks_again(services, month_run):
    """The daemon killed between creating a request's run and submitting it, its tick not resumed (down for over a
    day, or the sensor stopped mid-tick), leaves the run NOT_STARTED. Made here from a queued run: deleted and added
    back NOT_STARTED, created RELAUNCH_AFTER ago. The restarted daemon submits that same run once the sensor asks
    again under its run key; no second run is created."""
    warehouse = services.warehouse()
    paused = True
    try:
        services.restart_daemon(max_concurrent_runs=0)
        segment = warehouse.read_frame(text(f"SELECT MIN(segment) AS s FROM {warehouse.qualified('customer_clv')} "
                                            "WHERE as_of_month = :m"), {"m": MONTH_START})["s"][0]
        services.cli("request-rerun", "--segment", segment, "--month", MONTH, "--by", "e2e-stranded")
        # The tick after the one that created the run records it: the creating tick has ended.
        requests = _wait_for_requests(services, warehouse, "e2e-stranded", lambda statuses: statuses == ["launched"],
                                      90, "request not launched within 90 s", poll=0.5)
        services.kill("daemon")
        request_id = str(requests["request_id"][0])
        (queued,) = [r for r in services.runs("segment_rerun_job") if r["tags"].get(REQUEST_TAG) == request_id]
        assert queued["status"] == "QUEUED", queued
        with services.instance() as instance:
            run = instance.get_run_by_id(queued["runId"])
            instance.delete_run(run.run_id)
            instance.add_run(run.with_status(DagsterRunStatus.NOT_STARTED))
            with instance.run_storage.connect() as connection:  # Dagster's runs table: when the run was created
                connection.execute(text("UPDATE runs SET create_timestamp = create_timestamp - :ago WHERE run_id = :r"),
                                   {"ago": RELAUNCH_AFTER, "r": run.run_id})
                connection.commit()
            (record,) = instance.get_run_records(RunsFilter(run_ids=[run.run_id]))
            assert record.dagster_run.status == DagsterRunStatus.NOT_STARTED
        services.restart_daemon(max_concurrent_runs=4)
        paused = False

        requests = _wait_for_requests(services, warehouse, "e2e-stranded", lambda statuses: statuses != ["launched"],
                                      120, "the stranded run was not submitted")
        assert requests["status"].tolist() == ["succeeded"] and requests["run_id"].tolist() == [run.run_id], requests
        runs = [r for r in services.runs("segment_rerun_job") if r["tags"].get(REQUEST_TAG) == request_id]
        assert [(r["runId"], r["status"]) for r in runs] == [(run.run_id, "SUCCESS")]
    finally:
        if paused:  # the later tests need a daemon that starts runs
            services.restart_daemon(max_concurrent_runs=4)
        warehouse.engine.dispose()


def test_the_run_queue_never_runs_two_runs_of_one_month_at_once(services, month_run):
    """Submitted together, two runs of the same month are started one after the other by the daemon."""
    run_ids = [services.launch_job(JOB, partition=MONTH, tags={"trigger": "e2e-concurrency"}) for _ in range(2)]
    for run_id in run_ids:
        assert services.wait_for_run(run_id, timeout=120) == "SUCCESS", services.run_errors(run_id)
    runs = sorted((r for r in services.runs(JOB) if r["runId"] in run_ids), key=lambda r: r["startTime"])
    assert len(runs) == 2
    assert runs[1]["startTime"] >= runs[0]["endTime"], runs
