"""Issue #35.6 against the real daemon: a run whose process is killed with SIGKILL mid-run is marked failed by
`dead_run_sensor`, and the run of the same month queued behind it (one run per `dagster/partition`) starts.

Two ways to die: `customer-analytics materialize` killed (its in-process run recorded in the services'
PostgreSQL instance), and a run launched by the daemon whose worker dies with the daemon's whole process group
(a run worker killed alone is failed by Dagster itself: the code server that launched it notices). Each time the process is first frozen
(SIGSTOP) while its run is STARTED, so the kill lands mid-run for sure, and a second run of the month is
submitted and seen waiting in the queue. Heartbeats every 2 s here (CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS), so
the sensor looks every 4 s; in production 30 s and 60 s. Timings are printed (pytest -s) and recorded as
junit properties.
"""

import os
import subprocess
import time

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from customer_analytics.liveness import DEAD_RUN_SENSOR_NAME, Liveness
from customer_analytics_tests.conftest import _postgres_or_skip
from customer_analytics_tests.dagster_services import DagsterServices, _tool
from customer_analytics_tests.test_dagster_services import _pg_reachable_or_skip
from customer_analytics_tests.test_liveness import stop_mid_run

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning"),
]

JOB = "customer_analytics_job"
HEARTBEAT_SECONDS = 2


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    url = _postgres_or_skip()
    _pg_reachable_or_skip(url)
    with DagsterServices(pg_url=url, workdir=tmp_path_factory.mktemp("liveness_services"),
                         sample={"customers": 200, "months": 3, "start": "2025-01", "seed": 5},
                         extra_env={"CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)}) as running:
        yield running


def _wait_for_status(instance, run_id: str, statuses: set, timeout: float, services) -> float:
    """Seconds until the run is in one of `statuses`; fails with the services' logs after `timeout` s."""
    started = time.monotonic()
    while (status := instance.get_run_by_id(run_id).status) not in statuses:
        assert time.monotonic() - started < timeout, f"run {run_id} still {status} after {timeout:.0f} s\n" \
                                                     f"{services.log_tails()}"
        services.check_alive()
        time.sleep(0.2)
    return time.monotonic() - started


def _queue_behind(services, instance, month: str) -> str:
    """A second run of `month`, submitted over GraphQL; returns its id once the queue has held it back a while."""
    queued = services.launch_job(JOB, partition=month, tags={"trigger": "e2e-liveness"})
    # The queue (dequeued every second) keeps it back: the month's slot is taken by the frozen run.
    time.sleep(2)
    assert instance.get_run_by_id(queued).status == DagsterRunStatus.QUEUED
    return queued


def _kill_and_measure(services, instance, run, pid: int, queued: str, month: str, record_property, what: str,
                      kill) -> None:
    killed = time.monotonic()
    kill()
    to_failure = _wait_for_status(instance, run.run_id, {DagsterRunStatus.FAILURE}, 150, services)
    (failure,) = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    message = failure.dagster_event.message
    assert message.startswith(f"Marked failed by {DEAD_RUN_SENSOR_NAME}: its process {pid} on "), message
    assert "is gone" in message, message
    assert services.wait_for_run(queued, timeout=120) == "SUCCESS", services.run_errors(queued)
    queued_record = instance.get_run_record_by_id(queued)
    to_queued_start = queued_record.start_time - (time.time() - (time.monotonic() - killed))
    print(f"\n[liveness] {what} {month}: killed → FAILURE in {to_failure:.1f} s, the queued run started "
          f"{to_queued_start:.1f} s after the kill")
    record_property(f"{what}_kill_to_failure_s", round(to_failure, 1))
    record_property(f"{what}_kill_to_queued_start_s", round(to_queued_start, 1))
    # The month's two runs: the killed one failed, the one queued behind it succeeded, never both at once.
    assert queued_record.start_time >= instance.get_run_record_by_id(run.run_id).end_time


def test_a_killed_materialize_is_failed_by_the_sensor_and_the_months_queue_moves_on(services, record_property):
    month = "2025-02"
    with open(services.log_dir / "materialize.log", "wb") as log, services.instance() as instance:
        proc = subprocess.Popen([_tool("customer-analytics"), "materialize", "--from", month, "--to", month],
                                cwd=services.repo_root, env=services.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            run, pid = stop_mid_run(instance, month, proc)
            assert pid == proc.pid
            queued = _queue_behind(services, instance, month)
            _kill_and_measure(services, instance, run, pid, queued, month, record_property, "cli",
                              kill=lambda: (proc.kill(), proc.wait(timeout=30)))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_run_worker_killed_with_its_daemon_is_failed_and_the_months_queue_moves_on(services, record_property):
    """The daemon's own run, its whole process group killed (daemon, code server, run worker: a crash or the OOM
    killer), then the daemon restarted. Killing the worker alone is Dagster's to handle: the code server that
    launched it sees its child exit and fails the run itself; with the code server gone too, nothing did."""
    month = "2025-03"
    with services.instance() as instance:
        first = services.launch_job(JOB, partition=month, tags={"trigger": "e2e-liveness"})
        run, pid = stop_mid_run(instance, month)
        assert run.run_id == first and os.getpgid(pid) == services.pid("daemon"), "the worker is in the daemon's group"
        assert Liveness.from_run(run).every == HEARTBEAT_SECONDS
        queued = _queue_behind(services, instance, month)

        _kill_and_measure(services, instance, run, pid, queued, month, record_property, "daemon_group",
                          kill=lambda: (services.kill_group("daemon"), services.restart("daemon")))
