"""`customer-analytics`: refusals with exit status 2, and a materialization recorded in DAGSTER_HOME."""

from __future__ import annotations

import argparse
import hashlib
import re
from datetime import date

import dagster as dg
import pytest

from customer_analytics.cli import main
from customer_analytics_tests.landing_builder import event, write_ndjson


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    monkeypatch.setenv("CUSTOMER_ANALYTICS_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "landing").mkdir()  # materialize refuses a landing folder that does not exist
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["materialize", "--from", "2025-13"], "use YYYY-MM"),
        (["materialize", "--from", "May 2025"], "use YYYY-MM"),
        (["materialize", "--from", "2025-03", "--to", "2025-01"], "is before --from"),
        (["materialize", "--from", "1999-01"], "valid months are"),
        (["materialize", "--select", "no_such_asset"], "assets are: "),
        (["generate-sample", "--out", "x", "--customers", "0"], "at least 1"),
        (["generate-sample", "--out", "x", "--bad-rate", "2"], "between 0 and 0.5"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_and_say_what_is_valid(env, capsys, argv, message):
    with pytest.raises(SystemExit) as raised:
        code = main(argv)
        raise SystemExit(code)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not (env / "wh.db").exists(), "nothing is written for a refused command"


def test_unreachable_database_is_refused_without_the_password(env, monkeypatch, capsys):
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", "postgresql+psycopg://etl:hunter2@127.0.0.1:1/shop")
    assert main(["materialize", "--from", "2025-01", "--to", "2025-01"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and "hunter2" not in err and "etl:***@" in err


def test_materialize_records_runs_in_the_instance(env, capsys):
    write_ndjson(env / "landing" / "events" / "a.ndjson", [event("e1", "c1", "2025-02-10 10:00:00")])
    code = main(["materialize", "--from", "2025-01", "--to", "2025-02", "--select", "raw_events"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2025-01" in out and "2025-02" in out and "0 failed;" in out
    assert re.search(r"^raw_events\s+1$", out, re.MULTILINE), "the closing table counts the warehouse's rows"
    instance = dg.DagsterInstance.from_config(str(env / "dagster_home"))
    runs = instance.get_runs()
    assert sorted(r.tags.get("dagster/partition") for r in runs) == ["2025-01", "2025-02"]
    assert all(r.tags.get("trigger") == "cli" and "partition" not in r.tags for r in runs), \
        "the month is tagged once, as dagster/partition"


# What the UI asks for: the job page lists runs by job name and the repository label tag
# (`<repository>@<location>`, from the workspace), the Overview timeline groups them by their repositoryOrigin.
UI_WORKSPACE_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
    __typename ... on RepositoryLocation { repositories { name pipelines { name } } } ... on PythonError { message } } } } } }
"""
UI_JOB_RUNS_QUERY = """
query JobRuns($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId pipelineName tags { key value } repositoryOrigin { repositoryLocationName repositoryName } } }
  ... on PythonError { message } } }
"""


def test_materialize_runs_are_listed_on_the_job_page_of_the_workspace_the_ui_loads(env, capsys):
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    from customer_analytics_tests.dagster_services import REPO_ROOT

    write_ndjson(env / "landing" / "events" / "a.ndjson", [event("e1", "c1", "2025-02-10 10:00:00")])
    assert main(["materialize", "--from", "2025-02", "--to", "2025-02", "--select", "raw_events"]) == 0, \
        capsys.readouterr().out
    instance = dg.DagsterInstance.from_config(str(env / "dagster_home"))
    # workspace.yaml loaded as `make dev` loads it: a code server process for the module.
    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(REPO_ROOT / "workspace.yaml")])) as process:
        context = process.create_request_context()
        entries = execute_dagster_graphql(context, UI_WORKSPACE_QUERY).data["workspaceOrError"]["locationEntries"]
        jobs = [(entry["name"], repo["name"]) for entry in entries
                for repo in entry["locationOrLoadError"].get("repositories", [])
                for job in repo["pipelines"] if job["name"] == "customer_analytics_job"]
        assert len(jobs) == 1, entries
        location, repository = jobs[0]
        page_filter = {"pipelineName": "customer_analytics_job",
                       "tags": [{"key": ".dagster/repository", "value": f"{repository}@{location}"}]}
        result = execute_dagster_graphql(context, UI_JOB_RUNS_QUERY, {"filter": page_filter})
    runs = result.data["runsOrError"]["results"]
    assert len(runs) == 1, result.data
    assert runs[0]["repositoryOrigin"] == {"repositoryLocationName": location, "repositoryName": repository}
    assert [t["key"] for t in runs[0]["tags"] if t["value"] == "2025-02"] == ["dagster/partition"], "the month once"


def test_materialize_from_an_emptied_landing_folder_fails_and_keeps_the_months_until_allowed(env, capsys):
    write_ndjson(env / "landing" / "events" / "a.ndjson", [event("e1", "c1", "2025-02-10 10:00:00"),
                                                            event("e2", "c2", "2025-02-11 10:00:00")])
    months = ["--from", "2025-02", "--to", "2025-02", "--select", "raw_events"]
    assert main(["materialize", *months]) == 0
    (env / "landing" / "events" / "a.ndjson").unlink()  # an unmounted share: the folder is there, its files are not
    capsys.readouterr()
    assert main(["materialize", *months]) == 1
    out, err = capsys.readouterr()
    assert "2025-02: this load would shrink 2 rows to 0" in err and "--allow-shrink" in err, err
    assert re.search(r"^raw_events\s+2$", out, re.MULTILINE), "the month keeps its rows"
    assert main(["materialize", *months, "--allow-shrink"]) == 0
    assert re.search(r"^raw_events\s+0$", capsys.readouterr().out, re.MULTILINE)
    # Allowing a shrink configures only the loads a run executes (Dagster refuses config of other ops).
    assert main(["materialize", "--from", "2025-02", "--to", "2025-02", "--select", "customer_rfm", "--allow-shrink"]) == 0


# -- Bad arguments to every command: exit status 2, a message saying what is valid, nothing written --------------

SNAPSHOT_IGNORED = ("-wal", "-shm")  # SQLite's WAL side files come and go with connections


def snapshot(root) -> dict[str, str]:
    """Every file under `root` with a hash of its bytes: equal snapshots mean nothing was written."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(SNAPSHOT_IGNORED) and "__pycache__" not in path.parts
    }


def run_cli(argv) -> int:
    """`customer-analytics ARGV` in process: the exit status, whether argparse or the command refused."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A working setup to leave untouched: a landing folder with a file, a warehouse with its tables and a
    pending rerun request, a Dagster instance, and a plain file to misuse as a folder."""
    from customer_analytics.reruns import RerunRequest, write_request
    from customer_analytics.resources.warehouse import Warehouse

    write_ndjson(tmp_path / "landing" / "events" / "a.ndjson", [event("e1", "c1", "2025-02-10 10:00:00")])
    warehouse = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    warehouse.ensure_tables()
    write_request(warehouse, RerunRequest("high", date(2025, 2, 1)))
    warehouse.engine.dispose()
    (tmp_path / "a_file.txt").write_text("not a folder\n")
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    monkeypatch.setenv("CUSTOMER_ANALYTICS_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for name in ("CUSTOMER_ANALYTICS_DB_SCHEMA", "CUSTOMER_ANALYTICS_START_MONTH", "CUSTOMER_ANALYTICS_TIMEZONE",
                 "CUSTOMER_ANALYTICS_LATE_DAYS", "CUSTOMER_ANALYTICS_RERUN_POLL_SECONDS",
                 "CUSTOMER_ANALYTICS_BI_PASSWORD", "CUSTOMER_ANALYTICS_MAX_SHRINK"):
        monkeypatch.delenv(name, raising=False)
    assert run_cli(["init-instance"]) == 0
    return tmp_path


FILE = "{root}/a_file.txt"
# (argv, environment changes, what the message must say). "{root}" is the world's folder.
BAD_ARGUMENTS = [
    # no or unknown command
    ([], {}, "the following arguments are required: COMMAND"),
    (["no-such-command"], {}, "invalid choice: 'no-such-command'"),
    (["materialise"], {}, "choose from"),
    # generate-sample
    (["generate-sample"], {}, "the following arguments are required: --out"),
    (["generate-sample", "--out", "{root}/new", "--customers", "0"], {}, "'0' must be at least 1"),
    (["generate-sample", "--out", "{root}/new", "--customers", "-5"], {}, "'-5' must be at least 1"),
    (["generate-sample", "--out", "{root}/new", "--customers", "abc"], {}, "'abc' is not a whole number"),
    (["generate-sample", "--out", "{root}/new", "--months", "0"], {}, "'0' must be at least 1"),
    (["generate-sample", "--out", "{root}/new", "--start", "2025-13"], {}, "use YYYY-MM, e.g. 2025-01"),
    (["generate-sample", "--out", "{root}/new", "--start", "abc"], {}, "use YYYY-MM, e.g. 2025-01"),
    (["generate-sample", "--out", "{root}/new", "--bad-rate", "2"], {}, "between 0 and 0.5"),
    (["generate-sample", "--out", "{root}/new", "--bad-rate", "-0.1"], {}, "between 0 and 0.5"),
    (["generate-sample", "--out", "{root}/new", "--bad-rate", "often"], {}, "is not a number: use e.g. 0.01"),
    (["generate-sample", "--out", "{root}/new", "--seed", "lucky"], {}, "invalid int value: 'lucky'"),
    (["generate-sample", "--out", FILE], {}, "is a file: give a folder"),
    (["generate-sample", "--out", FILE + "/sub"], {}, "a_file.txt is a file, not a folder"),
    (["generate-sample", "--out", "{root}/landing"], {}, "already holds landing files this sample would not overwrite"),
    (["generate-sample", "--out", "{root}/new"], {"CUSTOMER_ANALYTICS_START_MONTH": "2025-13"},
     "CUSTOMER_ANALYTICS_START_MONTH '2025-13' is not a month: use YYYY-MM"),
    # materialize
    (["materialize", "--from", "2025-13"], {}, "use YYYY-MM, e.g. 2025-01"),
    (["materialize", "--from", "abc"], {}, "use YYYY-MM, e.g. 2025-01"),
    (["materialize", "--to", "2025-00"], {}, "use YYYY-MM, e.g. 2025-01"),
    (["materialize", "--from", "2025-03", "--to", "2025-01"], {}, "give --to the same month or a later one"),
    (["materialize", "--from", "1999-01"], {}, "is not a partition: valid months are 2025-01 …"),
    (["materialize", "--select", "no_such_asset"], {}, "matches no asset: use Dagster selection syntax"),
    (["materialize", "--select", "group:nope"], {}, "assets are: "),
    (["materialize", "--bogus"], {}, "unrecognized arguments: --bogus"),
    (["materialize"], {"CUSTOMER_ANALYTICS_DB_URL": "not a url"}, "is not a database URL: use e.g. sqlite:///"),
    (["materialize"], {"CUSTOMER_ANALYTICS_DB_URL": "postgresql://etl:hunter2@db:notaport/shop"}, "is not a database URL"),
    (["materialize"], {"CUSTOMER_ANALYTICS_DB_URL": "mysql://etl:hunter2@db/shop"}, "only sqlite and postgresql+psycopg"),
    (["materialize"], {"CUSTOMER_ANALYTICS_DB_URL": "postgresql+psycopg://etl:hunter2@127.0.0.1:1/shop"},
     "cannot connect to the warehouse postgresql+psycopg://etl:***@127.0.0.1:1/shop"),
    (["materialize"], {"CUSTOMER_ANALYTICS_DB_URL": "sqlite:///" + FILE + "/wh.db"}, "a_file.txt is a file: give a folder"),
    (["materialize"], {"CUSTOMER_ANALYTICS_DB_SCHEMA": "analytics; DROP SCHEMA public"}, "is not a valid identifier"),
    (["materialize"], {"CUSTOMER_ANALYTICS_START_MONTH": "abc"}, "CUSTOMER_ANALYTICS_START_MONTH 'abc' is not a month"),
    (["materialize"], {"CUSTOMER_ANALYTICS_START_MONTH": "2999-01"},
     "CUSTOMER_ANALYTICS_START_MONTH '2999-01' is after the month in progress"),
    (["materialize", "--from", "2999-01"], {}, "--from 2999-01 is not a partition: valid months are 2025-01 …"),
    (["materialize", "--to", "1999-01"], {}, "--to 1999-01 is not a partition: valid months are 2025-01 …"),
    (["materialize"], {"CUSTOMER_ANALYTICS_TIMEZONE": "Mars/Olympus"}, "use an IANA name such as UTC"),
    (["materialize"], {"CUSTOMER_ANALYTICS_LATE_DAYS": "-1"}, "use a whole number of days from 0 to 28"),
    (["materialize"], {"CUSTOMER_ANALYTICS_MAX_SHRINK": "1.5"}, "from 0 to 1 (e.g. 0.5; 1 still refuses a load to zero rows)"),
    (["materialize"], {"CUSTOMER_ANALYTICS_RERUN_POLL_SECONDS": "0"}, "use a whole number of seconds from 1 to 3600"),
    (["materialize"], {"CUSTOMER_ANALYTICS_LANDING_DIR": "{root}/no_such_landing"},
     "no_such_landing (CUSTOMER_ANALYTICS_LANDING_DIR) does not exist"),
    (["materialize"], {"DAGSTER_HOME": FILE}, "DAGSTER_HOME {root}/a_file.txt is a file"),
    # request-rerun
    (["request-rerun"], {}, "the following arguments are required: --segment"),
    (["request-rerun", "--segment", "vip"], {}, "valid segments are high, medium, low, at_risk"),
    (["request-rerun", "--segment", "x'); DROP TABLE raw_events; --"], {}, "valid segments are high, medium, low, at_risk"),
    (["request-rerun", "--segment", "high", "--month", "2025-13"], {}, "use YYYY-MM, e.g. 2025-01"),
    (["request-rerun", "--segment", "high", "--month", "abc"], {}, "use YYYY-MM, e.g. 2025-01"),
    (["request-rerun", "--segment", "high", "--month", "2019-01"], {}, "scored months are none yet"),
    (["request-rerun", "--segment", "high", "--customer", ""], {}, "--customer is empty: give e.g. C000123"),
    (["request-rerun", "--segment", "high", "--customer", "C1\x00; DROP TABLE raw_events"], {}, "holds a control character"),
    (["request-rerun", "--segment", "high", "--by", "ana\nINSERT"], {}, "holds a control character"),
    (["request-rerun", "--segment", "high"], {"CUSTOMER_ANALYTICS_DB_URL": "sqlite:///{root}/missing/wh.db"},
     "does not exist: run `customer-analytics materialize` first"),
    (["request-rerun", "--segment", "high"], {"CUSTOMER_ANALYTICS_DB_URL": "::"}, "is not a database URL"),
    # init-instance
    (["init-instance"], {"DAGSTER_HOME": FILE}, "is a file: give a folder"),
    (["init-instance", "--now"], {}, "unrecognized arguments: --now"),
    # create-bi-role (the PostgreSQL refusals are in test_security.py)
    (["create-bi-role"], {}, "a BI role needs a PostgreSQL warehouse"),
    (["create-bi-role", "--role", "bi; DROP ROLE postgres"], {}, "is not a valid identifier"),
    (["create-bi-role", "--role", ""], {}, "is not a valid identifier"),
    (["create-bi-role", "--role", "pg_monitor"], {}, "names starting with pg_ and the name public"),
    (["create-bi-role", "--schema", "a-b"], {}, "schema 'a-b' is not a valid identifier"),
    (["create-bi-role", "--password", "hunter2"], {}, "set CUSTOMER_ANALYTICS_BI_PASSWORD in the environment instead"),
    (["create-bi-role", "--password=hunter2"], {}, "a password on the command line is visible to other users"),
]


@pytest.mark.parametrize(("argv", "environ", "message"), BAD_ARGUMENTS,
                         ids=[" ".join(a)[:60] + (f" [{', '.join(e)}]" if e else "") for a, e, _m in BAD_ARGUMENTS])
def test_every_command_refuses_bad_arguments_with_status_2_and_writes_nothing(world, monkeypatch, capsys, argv,
                                                                              environ, message):
    for name, value in environ.items():
        monkeypatch.setenv(name, value.format(root=world))
    before = snapshot(world)
    code = run_cli([arg.format(root=world) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.format(root=world) in err
    assert "Traceback" not in err and "hunter2" not in err
    assert snapshot(world) == before, "a refused command writes nothing (landing, warehouse, instance)"


def test_a_refused_request_leaves_the_control_table_as_it_was(world, capsys):
    from customer_analytics.reruns import count_requests
    from customer_analytics.resources.warehouse import Warehouse

    warehouse = Warehouse(f"sqlite:///{world / 'wh.db'}")
    assert count_requests(warehouse) == 1
    for argv in (["--segment", "vip"], ["--segment", "low", "--month", "2019-01"], ["--segment", "low", "--customer", " "]):
        assert run_cli(["request-rerun", *argv]) == 2
    assert count_requests(warehouse) == 1


def test_the_bad_argument_cases_cover_every_command():
    from customer_analytics.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    covered = {argv[0] for argv, _e, _m in BAD_ARGUMENTS if argv}
    assert set(commands) <= covered, f"commands without a bad-argument case: {set(commands) - covered}"


# -- Bad run config (the UI's launchpad, or code): refused before anything is written ---------------------------

def _step_errors(result) -> str:
    """Every failure message of a run, causes included."""
    texts = []
    for event_ in result.all_events:
        error = getattr(event_.event_specific_data, "error", None) if event_.is_failure else None
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return "\n".join(texts)


@pytest.fixture
def config_world(tmp_path, monkeypatch):
    """A SQLite warehouse with its tables and a pending request, named by the environment as in production."""
    from customer_analytics.reruns import RerunRequest, write_request
    from customer_analytics.resources.warehouse import Warehouse

    warehouse = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    warehouse.ensure_tables()
    request_id = write_request(warehouse, RerunRequest("high", date(2025, 2, 1)))
    warehouse.engine.dispose()
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", warehouse.url)
    monkeypatch.setenv("CUSTOMER_ANALYTICS_LANDING_DIR", str(tmp_path / "landing"))
    with dg.instance_for_test() as instance:
        yield tmp_path, warehouse, request_id, instance


BAD_CLV_CONFIG = [
    ({"monthly_discount_rate": 1.0}, "monthly_discount_rate", "less than 1"),
    ({"monthly_discount_rate": -0.01}, "monthly_discount_rate", "greater than or equal to 0"),
    ({"high_score": 101}, "high_score", "less than or equal to 100"),
    ({"medium_score": -1}, "medium_score", "greater than or equal to 0"),
    ({"medium_score": 70, "high_score": 67}, "medium_score (70) must be below high_score (67)", "0 <= medium_score < high_score <= 100"),
    ({"medium_score": 50, "high_score": 50}, "medium_score (50) must be below high_score (50)", "0 <= medium_score < high_score <= 100"),
    ({"at_risk_churn": 1.5}, "at_risk_churn", "less than or equal to 1"),
    ({"at_risk_churn": -0.5}, "at_risk_churn", "greater than or equal to 0"),
]


@pytest.mark.parametrize(("values", "field", "valid"), BAD_CLV_CONFIG)
def test_bad_clv_config_fails_the_clv_step_before_it_writes(config_world, values, field, valid):
    from customer_analytics.assets.customers import ClvConfig
    from customer_analytics.definitions import customer_analytics_job, defs

    root, _warehouse, _request_id, instance = config_world
    before = snapshot(root)
    job = defs.resolve_job_def(customer_analytics_job.name)
    result = job.execute_in_process(
        run_config={"ops": {"customer_value": {"config": values}}}, partition_key="2025-02",
        asset_selection=[dg.AssetKey("customer_clv"), dg.AssetKey("clv_model_fits")],
        instance=instance, raise_on_error=False)
    assert not result.success
    errors = _step_errors(result)
    assert field in errors and valid in errors, errors
    assert snapshot(root) == before, "customer_clv and clv_model_fits are untouched"
    # In code, the same config is refused when it is built.
    with pytest.raises(ValueError, match=field.split(" ")[0]):
        ClvConfig(**values)


BAD_RERUN_CONFIG = [
    ({"month": "2025-13"}, "month '2025-13' is not a month: use YYYY-MM"),
    ({"month": "abc"}, "month 'abc' is not a month: use YYYY-MM"),
    ({"month": "2025-3"}, "use YYYY-MM, e.g. 2025-01"),
    ({"month": "2025-02", "customer_ids": [""]}, "customer_ids holds an empty id"),
    ({"month": "2025-02", "customer_ids": ["C1\x00"]}, "holds a control character"),
    ({"month": "2025-02", "request_id": 0}, "request_id"),
    ({"month": "2025-02", "monthly_discount_rate": 3.0}, "monthly_discount_rate"),
    ({"month": "2025-02", "high_score": 30}, "medium_score (34) must be below high_score (30)"),
]


@pytest.mark.parametrize(("values", "message"), BAD_RERUN_CONFIG)
def test_bad_rerun_config_is_refused_before_the_op_writes(config_world, values, message):
    from customer_analytics.definitions import defs
    from customer_analytics.jobs import segment_rerun_job
    from customer_analytics.reruns import count_requests

    root, warehouse, request_id, instance = config_world
    config = {"segment": "high", "request_id": request_id, **values}
    before = snapshot(root)
    job = defs.resolve_job_def(segment_rerun_job.name)
    result = job.execute_in_process(run_config={"ops": {"rescore_segment": {"config": config}}},
                                    instance=instance, raise_on_error=False)
    assert not result.success
    assert message in _step_errors(result)
    # Not even the request's status moved to `launched`: the op never started its work.
    assert snapshot(root) == before
    assert count_requests(warehouse) == 1


@pytest.mark.parametrize(("job_name", "config", "message"), [
    ("segment_rerun_job", {"ops": {"rescore_segment": {"config": {"segment": "vip", "month": "2025-02"}}}}, "vip"),
    ("segment_rerun_job", {"ops": {"rescore_segment": {"config": {"segment": "high"}}}}, "month"),
    ("segment_rerun_job", {"ops": {"rescore_segment": {"config": {"segment": "high", "month": "2025-02", "typo": 1}}}}, "typo"),
    ("customer_analytics_job", {"ops": {"customer_value": {"config": {"monthly_discount_rate": "abc"}}}}, "abc"),
])
def test_config_of_the_wrong_shape_is_refused_before_the_run_starts(config_world, job_name, config, message):
    from customer_analytics.definitions import defs

    root, _warehouse, _request_id, instance = config_world
    before = snapshot(root)
    job = defs.resolve_job_def(job_name)
    with pytest.raises(dg.DagsterInvalidConfigError, match=message):
        job.execute_in_process(run_config=config, instance=instance,
                               **({"partition_key": "2025-02"} if job.partitions_def else {}))
    assert instance.get_runs() == [], "no run was even created"
    assert snapshot(root) == before


# -- generate-sample's months: by default they end with the month in progress -----------------------------------

@pytest.mark.parametrize(("start", "months", "expected"), [
    (None, None, ("2025-01", 24)),     # the first partition through the month in progress
    (None, 12, ("2026-01", 12)),       # counted back from the month in progress
    ("2026-06", None, ("2026-06", 7)),  # from --start through the month in progress
    ("2025-03", 4, ("2025-03", 4)),    # both given: as given
    (None, 24, ("2025-01", 24)),
])
def test_sample_months_end_with_the_month_in_progress_by_default(start, months, expected):
    from customer_analytics.cli import _sample_months
    from customer_analytics.config import month_key, parse_month

    first, count = _sample_months(start and parse_month(start), months, date(2025, 1, 1), date(2026, 12, 1))
    assert (month_key(first), count) == expected


@pytest.mark.parametrize(("start", "months", "message"), [
    ("2024-06", None, "--start 2024-06 begins before the first partition 2025-01 (CUSTOMER_ANALYTICS_START_MONTH)"),
    (None, 25, "--months 25 (counted back from 2026-12) begins before the first partition 2025-01"),
    ("2027-02", None, "--start 2027-02 is after the month in progress 2026-12"),
])
def test_sample_months_never_start_before_the_first_partition(start, months, message):
    from customer_analytics.cli import UsageError, _sample_months
    from customer_analytics.config import parse_month

    with pytest.raises(UsageError, match=re.escape(message)) as refused:
        _sample_months(start and parse_month(start), months, date(2025, 1, 1), date(2026, 12, 1))
    if "before" in message:
        assert "at most --months 24 to end with 2026-12" in str(refused.value)


def test_generate_sample_by_default_ends_with_the_month_in_progress(env, monkeypatch, capsys):
    from customer_analytics.config import add_months, current_month, month_key

    now = current_month()
    monkeypatch.setenv("CUSTOMER_ANALYTICS_START_MONTH", month_key(add_months(now, -2)))
    assert main(["generate-sample", "--out", str(env / "sample"), "--customers", "30", "--bad-rate", "0"]) == 0
    assert f"{month_key(add_months(now, -2))} .. {month_key(now)} (3 months)" in capsys.readouterr().out
    assert (env / "sample" / "events" / f"{month_key(now)}.parquet").exists(), "the month in progress has events"
