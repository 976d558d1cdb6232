"""The real Dagster services for end-to-end tests: `dagster-webserver` and `dagster-daemon` as subprocesses.

    with DagsterServices(pg_url=url, workdir=tmp_path) as services:
        services.generate_sample(customers=300, months=3)
        run_id = services.launch_job("customer_analytics_job", partition="2025-02")
        assert services.wait_for_run(run_id) == "SUCCESS"

What it sets up, and takes down again on exit:

* a temporary DAGSTER_HOME whose `dagster.yaml` keeps runs, event logs and schedules in
  PostgreSQL, in a fresh schema `ca_dagster_<random>` of the test database (dagster-postgres's
  `postgres_db.params` passes `options=-c search_path=<schema>` to libpq, so every Dagster table
  lands there and parallel or old sessions never meet); without `pg_url`, Dagster's SQLite
  defaults inside the temporary DAGSTER_HOME;
* the warehouse: a fresh schema `ca_e2e_<random>` on the same server (or a SQLite file);
* a landing folder (fill it with `generate_sample`, i.e. `customer-analytics generate-sample`);
* the webserver on a free port of 127.0.0.1 and the daemon, both with `-w <repo>/workspace.yaml`
  (code location `customer_analytics`), each in its own session and so its own process group,
  their output in log files whose tails are printed when something fails.

Stopping: SIGTERM to each process group (the process and the code servers and run workers it
started), then SIGKILL to whatever of the group is still there after a grace period. Only the
groups this harness started are signalled, by their ids. Then both schemas are dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCATION_NAME = "customer_analytics"  # workspace.yaml's location_name
REPOSITORY_NAME = "__repository__"  # what Dagster calls the repository of a Definitions object
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

RUNS_QUERY = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs { results { runId jobName status creationTime startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""

RUN_ERRORS_QUERY = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId, limit: 2000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""


class DagsterServicesError(RuntimeError):
    """The services did not start, a run did not end as asked, or a GraphQL call failed; logs appended."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _tool(name: str) -> str:
    """A console script of this interpreter's environment (the venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise DagsterServicesError(f"{name} not found next to {sys.executable} nor on PATH: pip install -e '.[test]'")
    return found


def _instance_yaml(storage: str, max_concurrent_runs: int = 4) -> str:
    # Same run limits as the repository's dagster.yaml (0 runs: the queue holds every run); the queue is
    # polled every second.
    return f"""\
# Written by customer_analytics_tests/dagster_services.py for one test session.
{storage}
concurrency:
  runs:
    max_concurrent_runs: {max_concurrent_runs}
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
run_queue:
  dequeue_interval_seconds: 1
sensors:
  use_threads: true
  num_workers: 2
schedules:
  use_threads: true
  num_workers: 2
telemetry:
  enabled: false
"""


def _pg_storage_yaml(pg_url: str, schema: str) -> tuple[str, dict[str, str]]:
    """dagster-postgres storage in `schema` of pg_url's database; the password (if any) goes through the env."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    env: dict[str, str] = {}
    password = ""
    if url.password:
        env["CA_TEST_DAGSTER_PG_PASSWORD"] = str(url.password)
        password = "\n      password: {env: CA_TEST_DAGSTER_PG_PASSWORD}"
    storage = f"""\
storage:
  postgres:
    postgres_db:
      hostname: "{url.host or '127.0.0.1'}"
      port: {url.port or 5432}
      username: "{url.username or 'postgres'}"{password}
      db_name: "{url.database}"
      # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which dagster-postgres cannot use.
      scheme: postgresql+psycopg2
      params:
        options: "-c search_path={schema}"
"""
    return storage, env


class DagsterServices:
    """Webserver + daemon on a throwaway instance and warehouse. Use as a context manager."""

    def __init__(self, *, pg_url: str | None, workdir: Path | str | None = None, start_month: str = "2025-01",
                 repo_root: Path = REPO_ROOT, startup_timeout: float = 90.0, extra_env: dict[str, str] | None = None,
                 sample: dict | None = None, daemon: bool = True):
        self.pg_url = pg_url
        self.repo_root = Path(repo_root)
        self.start_month = start_month
        self.startup_timeout = startup_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="ca_dagster_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dagster_home = self.workdir / "dagster_home"
        self.landing_dir = self.workdir / "landing"
        self.log_dir = self.workdir / "logs"
        token = uuid.uuid4().hex[:10]
        self.dagster_schema = f"ca_dagster_{token}" if pg_url else None
        self.warehouse_schema = f"ca_e2e_{token}"
        self.warehouse_url = pg_url or f"sqlite:///{self.workdir / 'warehouse.db'}"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.base_url = f"http://{self.host}:{self.port}"
        self._extra_env = dict(extra_env or {})
        self._sample = sample
        self._with_daemon = daemon
        self._procs: dict[str, subprocess.Popen] = {}
        self._argv: dict[str, list[str]] = {}
        self._orphans: list[subprocess.Popen] = []  # killed services whose process groups may still have members
        self._logs: dict[str, Path] = {}
        self._log_files: list[Any] = []
        self._schemas_created: list[str] = []
        self._storage_yaml = ""
        self.env: dict[str, str] = {}
        self._client = None

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "DagsterServices":
        try:
            self.prepare()
            self.start()
        except BaseException:
            self.print_log_tails()
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.print_log_tails()
        self.stop()

    def prepare(self) -> None:
        """DAGSTER_HOME, schemas, landing folder and the environment of every process; starts nothing."""
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        self.landing_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        storage_env: dict[str, str] = {}
        if self.pg_url:
            self._create_schema(self.dagster_schema)
            storage, storage_env = _pg_storage_yaml(self.pg_url, self.dagster_schema)
        else:
            storage = "# storage: Dagster's SQLite defaults inside DAGSTER_HOME"
        self._storage_yaml = storage
        (self.dagster_home / "dagster.yaml").write_text(_instance_yaml(storage))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CUSTOMER_ANALYTICS_"))}
        env.update(storage_env)
        env.update({
            "DAGSTER_HOME": str(self.dagster_home),
            "CUSTOMER_ANALYTICS_DB_URL": self.warehouse_url,
            "CUSTOMER_ANALYTICS_DB_SCHEMA": self.warehouse_schema,
            "CUSTOMER_ANALYTICS_LANDING_DIR": str(self.landing_dir),
            "CUSTOMER_ANALYTICS_START_MONTH": self.start_month,
            "PYTHONUNBUFFERED": "1",
        })
        # The test PG URL stays out of the services: they get the warehouse URL only.
        env.pop("CUSTOMER_ANALYTICS_TEST_PG_URL", None)
        env.update(self._extra_env)
        self.env = env

    def start(self) -> None:
        """Spawn webserver and daemon; generate the sample (if asked) while they load; wait for the webserver."""
        workspace = str(self.repo_root / "workspace.yaml")
        self._spawn("webserver", [_tool("dagster-webserver"), "-w", workspace, "-h", self.host, "-p", str(self.port)])
        if self._with_daemon:  # without it, queued runs wait forever (the CLI's in-process runs do not queue)
            self._spawn("daemon", [_tool("dagster-daemon"), "run", "-w", workspace])
        if self._sample is not None:
            self.generate_sample(**self._sample)
        self._wait_for_webserver()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM each process group this harness started, SIGKILL what is left after `grace` s; drop schemas."""
        _stop_groups([*self._procs.values(), *self._orphans], grace)
        self._procs.clear()
        self._orphans.clear()
        for handle in self._log_files:
            handle.close()
        self._log_files.clear()
        for schema in reversed(self._schemas_created):
            self._drop_schema(schema)
        self._schemas_created.clear()
        if self.pg_url and self.warehouse_schema:
            self._drop_schema(self.warehouse_schema)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self, name: str) -> None:
        """SIGKILL one service's own process (not its group): its code server and run workers live on, as after a crash."""
        proc = self._procs[name]
        proc.kill()
        proc.wait(timeout=30)
        # The group keeps its id while members live: stop() must still reach them.
        self._orphans.append(proc)

    def pid(self, name: str) -> int:
        """A service's pid, which is also its process group's id (each service has its own session)."""
        return self._procs[name].pid

    def kill_group(self, name: str) -> None:
        """SIGKILL a service's whole process group (its code servers and run workers too), as a crash would."""
        proc = self._procs[name]
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def restart_daemon(self, *, max_concurrent_runs: int) -> None:
        """Start the daemon again (after SIGKILL, if it runs) under a new run limit (0: queued runs stay queued)."""
        (self.dagster_home / "dagster.yaml").write_text(_instance_yaml(self._storage_yaml, max_concurrent_runs))
        if self._procs["daemon"].poll() is None:
            self.kill("daemon")
        self.restart("daemon")

    def restart(self, name: str) -> None:
        """Start a service again with the arguments it first had (e.g. the daemon after `kill`)."""
        self._spawn(name, self._argv[name])

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._argv[name] = argv
        log_path = self.log_dir / f"{name}.log"
        handle = open(log_path, "ab")
        self._log_files.append(handle)
        self._logs[name] = log_path
        self._procs[name] = subprocess.Popen(
            argv, cwd=self.repo_root, env=self.env, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,  # own session, own process group: stopped by its id, with its children
        )

    def _wait_for_webserver(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.base_url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise DagsterServicesError(f"webserver not answering {self.base_url}/server_info after "
                                           f"{self.startup_timeout:.0f} s\n{self.log_tails()}")
            time.sleep(0.25)
        # /server_info answers once the workspace is loaded; a location that failed to load is an error.
        data = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        entries = {entry["name"]: entry for entry in data.get("locationEntries", [])}
        entry = entries.get(LOCATION_NAME)
        if entry is None or (entry["locationOrLoadError"] or {}).get("__typename") == "PythonError":
            detail = json.dumps(data, indent=1)[:4000]
            raise DagsterServicesError(f"code location {LOCATION_NAME!r} did not load:\n{detail}\n{self.log_tails()}")

    def check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise DagsterServicesError(f"{name} exited with status {proc.returncode}\n{self.log_tails()}")

    # ---- warehouse and schemas --------------------------------------------------------------

    def _engine(self):
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        return create_engine(self.pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def _create_schema(self, schema: str) -> None:
        from sqlalchemy import text

        engine = self._engine()
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        finally:
            engine.dispose()
        self._schemas_created.append(schema)

    def _drop_schema(self, schema: str) -> None:
        from sqlalchemy import text

        engine = self._engine()
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        except Exception as error:  # teardown goes on: report, do not mask the test's own failure
            print(f"dagster_services: could not drop schema {schema}: {error}", file=sys.stderr)
        finally:
            engine.dispose()

    def warehouse(self):
        """The warehouse the services write (dispose its engine when done)."""
        from customer_analytics.resources.warehouse import Warehouse

        return Warehouse(self.warehouse_url, self.warehouse_schema)

    @contextlib.contextmanager
    def instance(self):
        """The services' Dagster instance, opened in this process (its storage's password through the environment)."""
        import dagster as dg
        from dagster._core.instance.ref import InstanceRef

        with mock.patch.dict(os.environ, self.env):
            instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.dagster_home)))
        try:
            yield instance
        finally:
            instance.dispose()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`customer-analytics ARGS` with the services' environment (warehouse, landing, DAGSTER_HOME)."""
        result = subprocess.run([_tool("customer-analytics"), *args], cwd=self.repo_root, env=self.env,
                                capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise DagsterServicesError(f"customer-analytics {' '.join(args)} exited {result.returncode}:\n"
                                       f"{result.stdout}\n{result.stderr}")
        return result

    def generate_sample(self, *, customers: int = 300, months: int = 3, start: str | None = None,
                        seed: int = 7) -> str:
        """`customer-analytics generate-sample` into the landing folder; returns its summary."""
        return self.cli("generate-sample", "--out", str(self.landing_dir), "--customers", str(customers),
                        "--start", start or self.start_month, "--months", str(months), "--seed", str(seed)).stdout

    # ---- GraphQL ------------------------------------------------------------------------------

    @property
    def client(self):
        """dagster_graphql.DagsterGraphQLClient on the webserver."""
        if self._client is None:
            from dagster_graphql import DagsterGraphQLClient

            self._client = DagsterGraphQLClient(self.host, port_number=self.port, timeout=60)
        return self._client

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        """A raw GraphQL POST to /graphql; returns `data`, raises on `errors`."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.base_url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise DagsterServicesError(f"GraphQL HTTP {error.code}: {error.read()[:2000]!r}") from None
        if payload.get("errors"):
            raise DagsterServicesError(f"GraphQL errors: {json.dumps(payload['errors'])[:2000]}")
        return payload["data"]

    def launch_job(self, job_name: str, *, partition: str | None = None, asset_selection: list[str] | None = None,
                   run_config: dict | None = None, tags: dict[str, str] | None = None) -> str:
        """Submit a run (queued; the daemon launches it). A partition is the `dagster/partition` tag, as the UI sets it."""
        all_tags = dict(tags or {})
        if partition is not None:
            all_tags["dagster/partition"] = partition
        return self.client.submit_job_execution(
            job_name, repository_location_name=LOCATION_NAME, repository_name=REPOSITORY_NAME,
            run_config=run_config or {}, tags=all_tags or None, asset_selection=asset_selection,
        )

    def runs(self, job_name: str | None = None, *, tags: dict[str, str] | None = None, limit: int = 100) -> list[dict]:
        """Runs (newest first) of a job and/or with these tags: runId, jobName, status, times, tags (a dict)."""
        run_filter: dict[str, Any] = {}
        if job_name:
            run_filter["pipelineName"] = job_name
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        data = self.graphql(RUNS_QUERY, {"filter": run_filter, "limit": limit})["runsOrError"]
        if data["__typename"] != "Runs":
            raise DagsterServicesError(f"runsOrError: {data}")
        return [{**run, "tags": {t["key"]: t["value"] for t in run["tags"]}} for run in data["results"]]

    def run_status(self, run_id: str) -> str:
        return self.client.get_run_status(run_id).value

    def wait_for_run(self, run_id: str, timeout: float = 90.0, poll: float = 0.5) -> str:
        """Wait until the run ends; returns its status (SUCCESS, FAILURE, CANCELED). Raises on timeout or a dead service."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in TERMINAL_STATUSES:
                return status
            self.check_alive()
            time.sleep(poll)
        raise DagsterServicesError(f"run {run_id} still {status} after {timeout:.0f} s\n{self.log_tails()}")

    def wait_for_runs(self, job_name: str, count: int = 1, *, timeout: float = 90.0, poll: float = 1.0,
                      tags: dict[str, str] | None = None) -> list[dict]:
        """Wait until the job has at least `count` runs (e.g. launched by a sensor); returns them, newest first."""
        deadline = time.monotonic() + timeout
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = self.runs(job_name, tags=tags)
            if len(runs) >= count:
                return runs
            self.check_alive()
            time.sleep(poll)
        raise DagsterServicesError(f"{job_name}: {len(runs)} run(s) after {timeout:.0f} s, expected {count}\n"
                                   f"{self.log_tails()}")

    def run_errors(self, run_id: str) -> list[str]:
        """The error messages of a run's events (step failures, run failure, ERROR logs)."""
        data = self.graphql(RUN_ERRORS_QUERY, {"runId": run_id})["logsForRun"]
        messages = []
        for event in data.get("events", []):
            error = event.get("error") or {}
            if error.get("message") or event.get("level") in ("ERROR", "CRITICAL"):
                step = f"[{event.get('stepKey')}] " if event.get("stepKey") else ""
                messages.append(f"{step}{event.get('message', '')} {error.get('message', '')}".strip())
        return messages

    # ---- logs ---------------------------------------------------------------------------------

    def log_tails(self, lines: int = 60) -> str:
        parts = []
        for name, path in self._logs.items():
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError as error:
                text = [f"(unreadable: {error})"]
            parts.append(f"----- {name} log ({path}), last {len(text)} lines -----\n" + "\n".join(text))
        return "\n".join(parts)

    def print_log_tails(self, lines: int = 60) -> None:
        if self._logs:
            print(self.log_tails(lines), file=sys.stderr)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _stop_groups(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM the process groups these processes lead (start_new_session: pgid == pid), all at once, by id;
    wait up to `grace` s for every member (code servers and run workers too) to exit; SIGKILL what remains."""
    for proc in procs:
        _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    # Children (the gRPC code servers) outlive their parent by a second or two: give them the rest of the grace.
    while any(_group_alive(proc.pid) for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in procs:
        if _group_alive(proc.pid):
            print(f"dagster_services: process group {proc.pid} ({' '.join(map(str, proc.args[:2]))}) ignored SIGTERM "
                  f"for {grace:.0f} s: SIGKILL", file=sys.stderr)
            _signal_group(proc.pid, signal.SIGKILL)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
