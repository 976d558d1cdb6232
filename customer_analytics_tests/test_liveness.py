"""Run liveness (customer_analytics/liveness.py): heartbeats while a run executes, and the reaper of dead runs.

Unit tests on a real Dagster instance (SQLite in a temporary DAGSTER_HOME) with fabricated runs, plus the
CLI killed with SIGKILL mid-run: its run stays STARTED until the next `materialize` marks it failed.
The same against the real daemon and its run queue: test_run_liveness_daemon.py.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from customer_analytics.config import ConfigError
from customer_analytics.liveness import (
    LIVENESS_TAG, STALE_BEATS, Liveness, _pid_namespace, _start_ticks, dead_run_sensor, fail_dead_runs,
    heartbeat_seconds, process_alive,
)
from customer_analytics.resources import WarehouseResource

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
EVERY = 30
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def instance(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as test_instance:
        yield test_instance


def _liveness(run_id: str, *, age: float, host: str | None = None, pid: int | None = None, here: bool = True,
              every: int = EVERY) -> str:
    pid = os.getpid() if pid is None else pid
    return Liveness(run_id=run_id, host=host or socket.gethostname(), pid=pid, every=every,
                    beat=NOW - timedelta(seconds=age), pidns=_pid_namespace() if here else None,
                    started=_start_ticks(pid) if here else None).to_tag()


def _run(instance, *, status=dg.DagsterRunStatus.STARTED, partition="2026-02", liveness=None, run_id=None,
         **liveness_args) -> str:
    """A run added as it would be mid-execution: status, partition tag and (unless None) a liveness tag."""
    run_id = run_id or str(uuid.uuid4())
    tags = {"dagster/partition": partition}
    if liveness is not None:
        tags[LIVENESS_TAG] = liveness
    elif liveness_args:
        tags[LIVENESS_TAG] = _liveness(run_id, **liveness_args)
    instance.add_run(dg.DagsterRun(job_name="customer_analytics_job", run_id=run_id, status=status, tags=tags))
    return run_id


def _status(instance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def _failure_message(instance, run_id: str) -> str:
    (record,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return record.dagster_event.message


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_whose_process_is_gone_is_marked_failed_and_only_it(instance):
    dead_pid = _dead_pid()
    gone = _run(instance, age=1, pid=dead_pid)
    alive = _run(instance, age=1)  # this test's own process, beating a second ago
    dead = fail_dead_runs(instance, NOW)

    assert [d.run_id for d in dead] == [gone]
    assert _status(instance, gone) == dg.DagsterRunStatus.FAILURE
    assert _status(instance, alive) == dg.DagsterRunStatus.STARTED
    message = _failure_message(instance, gone)
    assert f"process {dead_pid} on {socket.gethostname()} is gone" in message, message
    assert "rerun the month" in message
    assert str(dead[0]).startswith(f"run {gone} of customer_analytics_job (2026-02) marked failed: its process")
    # Once failed, it is not failed again.
    assert fail_dead_runs(instance, NOW) == []


def test_a_run_on_another_host_is_dead_after_three_missed_heartbeats_not_before(instance):
    late = _run(instance, age=STALE_BEATS * EVERY - 1, host="worker-7", pid=1, here=False)
    stale = _run(instance, age=STALE_BEATS * EVERY + 1, host="worker-7", pid=1, here=False)
    assert [d.run_id for d in fail_dead_runs(instance, NOW)] == [stale]
    assert _status(instance, late) == dg.DagsterRunStatus.STARTED
    assert "no heartbeat from its process 1 on worker-7 for 91 s (it beats every 30 s" in _failure_message(instance, stale)
    # Two beats later, the late one is dead too.
    assert [d.run_id for d in fail_dead_runs(instance, NOW + timedelta(seconds=2))] == [late]


def test_staleness_uses_the_interval_the_run_itself_beats_at(instance):
    """A reaper configured for 1 s never fails a run beating every 30 s (and vice versa)."""
    slow = _run(instance, age=80, host="elsewhere", pid=1, here=False, every=30)
    fast = _run(instance, age=4, host="elsewhere", pid=1, here=False, every=1)
    assert [d.run_id for d in fail_dead_runs(instance, NOW)] == [fast]
    assert _status(instance, slow) == dg.DagsterRunStatus.STARTED


def test_a_pid_in_another_pid_namespace_is_not_checked_here(instance):
    """Same host name but another container (pid namespace): the pid means nothing here, only the heartbeat counts."""
    other = _run(instance, age=1, pid=_dead_pid(), here=False)
    assert fail_dead_runs(instance, NOW) == []
    assert _status(instance, other) == dg.DagsterRunStatus.STARTED


def test_runs_without_a_liveness_of_their_own_are_left_alone(instance):
    ancient = _run(instance)  # started before liveness existed: no tag at all
    other_run = str(uuid.uuid4())
    # Re-executed with its parent's tags: the parent's dead process and old heartbeat are not this run's.
    copied = _run(instance, liveness=_liveness(other_run, age=3600, pid=_dead_pid()))
    garbled = _run(instance, liveness="{not json")
    done = _run(instance, status=dg.DagsterRunStatus.SUCCESS, age=3600, host="h", pid=1, here=False)
    # STARTING past its timeout is run monitoring's (dagster.yaml), not ours.
    starting = _run(instance, status=dg.DagsterRunStatus.STARTING, age=3600, host="h", pid=1, here=False)
    assert fail_dead_runs(instance, NOW + timedelta(days=30)) == []
    assert [_status(instance, r) for r in (ancient, copied, garbled, done, starting)] == [
        dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.STARTING]


def test_a_run_that_beat_or_ended_while_the_reaper_decided_is_left_alone(instance):
    """The reaper reads the run again after deciding: a fresh heartbeat or an end in between wins."""
    beating = _run(instance, age=STALE_BEATS * EVERY + 5, host="w", pid=1, here=False)
    ending = _run(instance, age=STALE_BEATS * EVERY + 5, host="w", pid=1, here=False)

    real_get = instance.get_run_by_id
    pending = {beating, ending}  # each changes once, on the reaper's second look

    def get_run_by_id(run_id):
        if run_id in pending:
            pending.discard(run_id)
            if run_id == beating:
                instance.add_run_tags(beating, {LIVENESS_TAG: _liveness(beating, age=0, host="w", pid=1, here=False)})
            else:
                instance.report_run_failed(real_get(ending), "ended by itself")
        return real_get(run_id)

    instance.get_run_by_id = get_run_by_id
    try:
        assert fail_dead_runs(instance, NOW) == []
    finally:
        del instance.get_run_by_id
    assert not pending
    assert _status(instance, beating) == dg.DagsterRunStatus.STARTED
    assert _failure_message(instance, ending) == "ended by itself"


def test_process_alive_tells_a_zombie_and_a_reused_pid_from_the_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = _start_ticks(proc.pid)
        assert process_alive(proc.pid, started)
        if started is not None:  # Linux: a process with this pid that started at another time is another process
            assert not process_alive(proc.pid, started + 1)
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_alive(proc.pid, started):  # killed, not yet reaped: a zombie where /proc tells
            if sys.platform != "linux":
                break
            assert time.monotonic() < deadline, "a killed, unreaped process still counts as alive"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert not process_alive(proc.pid, started)


def test_the_sensor_fails_dead_runs_and_otherwise_skips_quietly(instance):
    context = dg.build_sensor_context(instance=instance)
    result = dead_run_sensor(context)
    assert isinstance(result, dg.SkipReason) and result.skip_message == "no dead runs"
    dead = _run(instance, age=0, pid=_dead_pid())
    result = dead_run_sensor(dg.build_sensor_context(instance=instance))
    assert result.skip_message == f"marked 1 dead run(s) failed: {dead}"
    assert _status(instance, dead) == dg.DagsterRunStatus.FAILURE


def test_heartbeat_seconds_comes_from_the_environment_and_is_checked():
    assert heartbeat_seconds({}) == 30
    assert heartbeat_seconds({"CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS": "2"}) == 2
    for bad in ("0", "ten", "1.5"):
        with pytest.raises(ConfigError, match="CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS .* whole number of seconds"):
            heartbeat_seconds({"CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS": bad})


def test_both_jobs_run_in_one_process(instance):
    """Liveness records one pid per run: a multiprocess executor would record a step's process, gone after the step."""
    from customer_analytics.definitions import defs

    for name in ("customer_analytics_job", "segment_rerun_job"):
        assert defs.resolve_job_def(name).executor_def is dg.in_process_executor, name


def test_a_run_beats_while_it_executes_and_stops_when_it_ends(instance, tmp_path, monkeypatch):
    """Through the warehouse resource, as every asset of the project gets it; heartbeats every second here."""
    monkeypatch.setenv("CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS", "1")
    seen: list[Liveness] = []

    @dg.asset
    def watches_its_heartbeat(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> None:
        deadline = time.monotonic() + 10
        while len({beat.beat for beat in seen}) < 2:  # a second beat, written by the thread
            seen.append(Liveness.from_run(context.instance.get_run_by_id(context.run.run_id)))
            assert seen[-1] is not None and time.monotonic() < deadline, seen
            time.sleep(0.2)

    result = dg.materialize([watches_its_heartbeat], instance=instance, resources={
        "warehouse": WarehouseResource(db_url=f"sqlite:///{tmp_path / 'wh.db'}")})
    assert result.success
    first = seen[0]
    assert (first.run_id, first.host, first.pid, first.every) == (result.run_id, socket.gethostname(), os.getpid(), 1)
    assert first.on_this_machine()
    # Ended: the thread is gone and the run's last beat stays as it was.
    assert not [t for t in threading.enumerate() if t.name == f"heartbeat-{result.run_id[:8]}"]
    last = Liveness.from_run(instance.get_run_by_id(result.run_id))
    time.sleep(1.5)
    assert Liveness.from_run(instance.get_run_by_id(result.run_id)) == last


def test_heartbeat_outside_a_run_does_nothing():
    """Sensors and build_resources set the warehouse up without a run: no heartbeat, no error."""
    with dg.build_resources({"warehouse": WarehouseResource(db_url="sqlite://")}) as resources:
        assert resources.warehouse is not None


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CUSTOMER_ANALYTICS_"))}
    env.update({"DAGSTER_HOME": str(tmp_path / "dagster_home"), "CUSTOMER_ANALYTICS_DB_URL": f"sqlite:///{tmp_path / 'wh.db'}",
                "CUSTOMER_ANALYTICS_LANDING_DIR": str(tmp_path / "landing"), "CUSTOMER_ANALYTICS_START_MONTH": "2025-01",
                "CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS": "1", "PYTHONUNBUFFERED": "1"})
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "customer_analytics.cli", *args]


def stop_mid_run(instance, partition: str, proc: subprocess.Popen | None = None,
                 timeout: float = 120.0) -> tuple[dg.DagsterRun, int]:
    """SIGSTOP the process executing a run of `partition` while the run is STARTED with its liveness recorded
    (`proc`'s run, or whichever process's); returns the run and the pid, the process frozen.

    Frozen, the process cannot end the run under the caller's feet: the caller then kills it mid-run for sure.
    Keep it frozen for less than STALE_BEATS heartbeats, or it is (rightly) failed as stale before the kill.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            assert proc.poll() is None, f"the CLI exited ({proc.returncode}) before a run could be caught mid-way"
        for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED],
                                                             tags={"dagster/partition": partition})):
            liveness = Liveness.from_run(record.dagster_run)
            if liveness is None or (proc is not None and liveness.pid != proc.pid):
                continue
            os.kill(liveness.pid, signal.SIGSTOP)
            run = instance.get_run_by_id(record.dagster_run.run_id)
            if run.status == dg.DagsterRunStatus.STARTED:
                return run, liveness.pid
            os.kill(liveness.pid, signal.SIGCONT)  # it ended just before the stop: catch the next one
        time.sleep(0.05)
    raise AssertionError(f"no STARTED run of {partition} with a liveness tag within {timeout:.0f} s")


def test_a_materialize_killed_mid_run_is_failed_by_the_next_materialize(tmp_path):
    env = _env(tmp_path)
    subprocess.run(_cli("generate-sample", "--out", env["CUSTOMER_ANALYTICS_LANDING_DIR"], "--customers", "200",
                        "--months", "2", "--seed", "3"), env=env, cwd=REPO_ROOT, check=True, capture_output=True)
    proc = subprocess.Popen(_cli("materialize", "--from", "2025-02", "--to", "2025-02"), env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The CLI writes its local instance (with run monitoring and the one-run-per-month limit) first.
        deadline = time.monotonic() + 60
        while not (tmp_path / "dagster_home" / "dagster.yaml").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))
        try:
            run, _pid = stop_mid_run(instance, "2025-02", proc)
            proc.kill()
            proc.wait(timeout=30)
            # Killed mid-run, nothing marks the run: as long as no reaper looks, it stays STARTED.
            time.sleep(2)
            assert _status(instance, run.run_id) == dg.DagsterRunStatus.STARTED

            again = subprocess.run(_cli("materialize", "--from", "2025-02", "--to", "2025-02"), env=env,
                                   cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
            assert again.returncode == 0, again.stdout + again.stderr
            assert f"run {run.run_id} of customer_analytics_job (2025-02) marked failed: its process {proc.pid}" \
                in again.stderr, again.stderr
            assert _status(instance, run.run_id) == dg.DagsterRunStatus.FAILURE
            assert _failure_message(instance, run.run_id).startswith(
                f"Marked failed by customer-analytics materialize: its process {proc.pid} on ")
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "2025-02"}))
            assert sorted(r.status.value for r in runs) == ["FAILURE", "SUCCESS"]
        finally:
            instance.dispose()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
