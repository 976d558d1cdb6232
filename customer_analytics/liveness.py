"""Run liveness: a run whose process died is marked failed, so its month's run queue moves on.

Why: the run queue allows one run per `dagster/partition`, and Dagster's default run launcher
cannot tell whether a run worker is still alive, so run monitoring only fails runs stuck
`STARTING`. A `customer-analytics materialize` killed with SIGKILL, or a run worker that dies with
the code server that launched it (which otherwise notices and fails the run itself), leaves its run
`STARTED` for good, and every later run of that month `QUEUED` behind it.

* The process executing a run (the CLI, or the run worker the daemon launched) records on the
  run, from the moment the warehouse resource is set up, the tag `customer_analytics/liveness`:
  a JSON object with the run id, host, pid (and, on Linux, the pid namespace and the process's
  start time, so that a reused pid or another container is never taken for it), the heartbeat
  interval and the time of the last heartbeat. A daemon thread refreshes it every
  `CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS` (default 30) and stops when the run ends.
* `fail_dead_runs` marks a `STARTED` run failed when its process is gone (same host and pid
  namespace: checked at once) or when its heartbeat is older than `STALE_BEATS` intervals
  (any host: a worker on another machine, or a frozen one). It runs in `dead_run_sensor`, every
  two heartbeat intervals, and in the CLI before `materialize` starts its runs.

Runs without the tag (older runs, runs of other code) are never touched, nor is a tag copied from
another run (a re-execution with its parent's tags): the tag names the run it was written for.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg

from customer_analytics.config import parse_poll_seconds

LIVENESS_TAG = "customer_analytics/liveness"
HEARTBEAT_ENV = "CUSTOMER_ANALYTICS_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT_SECONDS = 30
# A run is dead once this many heartbeats in a row are missing: one late beat (a busy machine,
# a slow write to the run storage) is not enough.
STALE_BEATS = 3
DEAD_RUN_SENSOR_NAME = "dead_run_sensor"

log = logging.getLogger(__name__)


def heartbeat_seconds(environ=None) -> int:
    env = os.environ if environ is None else environ
    return parse_poll_seconds(env.get(HEARTBEAT_ENV) or str(DEFAULT_HEARTBEAT_SECONDS), what=HEARTBEAT_ENV)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _pid_namespace() -> int | None:
    """The pid namespace's inode (Linux): two containers may share a host name, never a namespace."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, from /proc; None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ')'.
    fields = text[text.rfind(")") + 2:].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _start_ticks(pid: int) -> int | None:
    state = _process_state(pid)
    return state[1] if state else None


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether `pid` is (still) the process that wrote a liveness tag on this host.

    Dead: no such process, a zombie (killed but not yet reaped by its parent), or a pid reused by a
    process that started at another time.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    state = _process_state(pid)
    if state is None:
        return True
    letter, ticks = state
    if letter in ("Z", "X"):
        return False
    return start_ticks is None or ticks == start_ticks


@dataclass(frozen=True)
class Liveness:
    """What a run's process says about itself (the tag's JSON)."""

    run_id: str
    host: str
    pid: int
    every: int  # heartbeat interval, s: the reaper judges staleness by the interval the run itself uses
    beat: datetime
    pidns: int | None = None
    started: int | None = None  # the process's start time in clock ticks since boot (Linux)

    def to_tag(self) -> str:
        return json.dumps({"run": self.run_id, "host": self.host, "pid": self.pid, "every": self.every,
                           "beat": self.beat.isoformat(timespec="seconds"), "pidns": self.pidns,
                           "started": self.started}, separators=(",", ":"))

    @classmethod
    def from_run(cls, run: dg.DagsterRun) -> "Liveness | None":
        """The run's own liveness tag; None if absent, unreadable or written for another run (copied tags)."""
        text = run.tags.get(LIVENESS_TAG)
        if not text:
            return None
        try:
            data = json.loads(text)
            liveness = cls(run_id=str(data["run"]), host=str(data["host"]), pid=int(data["pid"]),
                           every=int(data["every"]), beat=datetime.fromisoformat(data["beat"]),
                           pidns=data.get("pidns"), started=data.get("started"))
        except (ValueError, KeyError, TypeError):
            return None
        if liveness.run_id != run.run_id or liveness.every < 1 or liveness.beat.tzinfo is None:
            return None
        return liveness

    def on_this_machine(self) -> bool:
        """Same host and pid namespace as this process: the pid can be checked directly."""
        return self.host == socket.gethostname() and self.pidns == _pid_namespace()


class Heartbeat:
    """Refreshes a run's liveness tag every `every` seconds from a daemon thread, until `stop`."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, every: int | None = None):
        self.instance = instance
        self.run_id = run_id
        self.every = every or heartbeat_seconds()
        pid = os.getpid()
        self._identity = dict(run_id=run_id, host=socket.gethostname(), pid=pid, every=self.every,
                              pidns=_pid_namespace(), started=_start_ticks(pid))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self.instance.add_run_tags(self.run_id, {LIVENESS_TAG: Liveness(beat=_now(), **self._identity).to_tag()})

    def start(self) -> "Heartbeat":
        self.beat()  # before the first step: the run is never STARTED long without the tag
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.run_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception as error:  # the run storage briefly unreachable: try again next time
                log.warning("run %s: heartbeat not recorded: %s", self.run_id, error)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def start_heartbeat(context: dg.InitResourceContext) -> Heartbeat | None:
    """The heartbeat of the run a resource is set up for; None outside a run (sensors, build_resources)."""
    run = context.run
    if run is None or context.instance is None:
        return None
    return Heartbeat(context.instance, run.run_id).start()


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    job_name: str
    partition: str | None
    reason: str

    def __str__(self) -> str:
        month = f" ({self.partition})" if self.partition else ""
        return f"run {self.run_id} of {self.job_name}{month} marked failed: {self.reason}"


def _why_dead(liveness: Liveness, now: datetime, pid_alive) -> str | None:
    age = (now - liveness.beat).total_seconds()
    process = f"process {liveness.pid} on {liveness.host}"
    if liveness.on_this_machine() and not pid_alive(liveness.pid, liveness.started):
        return f"its {process} is gone (last heartbeat {age:.0f} s ago)"
    if age > STALE_BEATS * liveness.every:
        return (f"no heartbeat from its {process} for {age:.0f} s (it beats every {liveness.every} s; "
                f"dead after {STALE_BEATS} missed)")
    return None


def fail_dead_runs(instance: dg.DagsterInstance, now: datetime | None = None, *, by: str = DEAD_RUN_SENSOR_NAME,
                   pid_alive=process_alive) -> list[DeadRun]:
    """Mark failed every STARTED run whose process is dead (see the module's docstring); returns them, for the
    caller to report (the sensor's log, the CLI's stderr). `by` names the caller in the run's failure."""
    dead: list[DeadRun] = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        liveness = Liveness.from_run(run)
        if liveness is None:
            continue  # no heartbeat of its own: an older run, or not one of ours
        reason = _why_dead(liveness, now or _now(), pid_alive)
        if reason is None:
            continue
        # Read again after deciding: a run that ended (its process exits after recording the end) or
        # beat since is left alone.
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTED or Liveness.from_run(current) != liveness:
            continue
        message = (f"Marked failed by {by}: {reason}. The run did not end by itself, so its "
                   f"month's queued runs were blocked; rerun the month.")
        instance.report_run_failed(current, message)
        dead.append(DeadRun(run.run_id, run.job_name, run.tags.get("dagster/partition"), reason))
    return dead


SENSOR_SECONDS = 2 * heartbeat_seconds()


@dg.sensor(
    name=DEAD_RUN_SENSOR_NAME,
    minimum_interval_seconds=SENSOR_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Every {SENSOR_SECONDS} s: marks failed a STARTED run whose process died (gone from its host, or "
                f"no heartbeat for {STALE_BEATS} intervals), so the month's queued runs can start.",
)
def dead_run_sensor(context: dg.SensorEvaluationContext):
    dead = fail_dead_runs(context.instance)
    if not dead:
        return dg.SkipReason("no dead runs")  # quiet: the log only ever names runs it failed
    for found in dead:
        context.log.warning(str(found))
    return dg.SkipReason(f"marked {len(dead)} dead run(s) failed: {', '.join(d.run_id for d in dead)}")
