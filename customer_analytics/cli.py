"""`customer-analytics`: the project's command line.

Bad arguments (and bad settings in the environment) exit with status 2 and a message that says
what is valid; nothing is written. Passwords come only from environment variables, never from
arguments, and a database URL is only ever shown with its password masked.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import unicodedata
import warnings
from datetime import date, datetime, timezone
from pathlib import Path

from customer_analytics.config import (
    ConfigError,
    Settings,
    add_months,
    current_month,
    month_key,
    parse_month,
    redact_url,
    validate_identifier,
)

EXIT_USAGE = 2
LOCAL_DAGSTER_HOME = "dagster_home"
LOCAL_INSTANCE_YAML = """\
# Local Dagster instance written by `customer-analytics`: run history in SQLite files here.
# Production uses the repository's dagster.yaml (PostgreSQL); see the README.
telemetry:
  enabled: false
# The same run limits as the repository's dagster.yaml: never two queued runs of one month at once.
concurrency:
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
# A run whose worker never came up is failed after 5 minutes; one whose process died after starting
# is failed by dead_run_sensor (customer_analytics/liveness.py).
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
"""


BI_PASSWORD_ENV = "CUSTOMER_ANALYTICS_BI_PASSWORD"
DEFAULT_BI_ROLE = "bi_reader"
# The privilege statements of sql/bi_readonly_role.sql (between its "privileges" markers), in the
# same order, {role} and {schema} standing for its :"role" and :"schema"; both are filled in as
# quoted identifiers by psycopg.sql. customer_analytics_tests/test_security.py checks they agree.
BI_ROLE_PRIVILEGES = (
    "REVOKE ALL ON SCHEMA {schema} FROM {role}",
    "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}",
    "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {role}",
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
)
# The refusals of sql/bi_readonly_role.sql, same order and messages (a role that could already
# do more than read, or whose privileges the revocations would take from the pipeline).
BI_ROLE_CHECK = """
SELECT CASE
  WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s)
    THEN 'schema does not exist in this database: materialize the warehouse first, or name its schema'
  WHEN %(role)s = current_user
    THEN 'role is the warehouse user running this, which owns the tables: name a separate role'
  WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles
               WHERE rolname = %(role)s AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls))
    THEN 'role exists with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS: name a separate role'
  WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.member
               WHERE r.rolname = %(role)s)
    THEN 'role exists and is a member of other roles, whose privileges it would keep: name a separate role'
  WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
               WHERE n.nspname = %(schema)s AND r.rolname = %(role)s)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
               WHERE n.nspname = %(schema)s AND r.rolname = %(role)s)
    THEN 'role owns the schema or objects in it: name a separate role'
END
"""
_INGESTION_RESOURCE = "landing"


class UsageError(Exception):
    """A bad argument: reported with exit status 2."""


def _month_arg(text: str) -> date:
    try:
        return parse_month(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: use e.g. 0.01") from None
    if not 0.0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: use a share between 0 and 0.5, e.g. 0.01")
    return value


def _role_arg(text: str) -> str:
    try:
        name = validate_identifier(text, what="role")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if name.lower().startswith("pg_") or name.lower() == "public":
        raise argparse.ArgumentTypeError(f"role {text!r} is reserved: names starting with pg_ and the name public "
                                         f"belong to PostgreSQL; use e.g. {DEFAULT_BI_ROLE}")
    return name


def _schema_arg(text: str) -> str:
    try:
        return validate_identifier(text, what="schema")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _plain_text(what: str, example: str):
    """Free text that reaches the warehouse as a value (an id, a name): not blank, no control characters."""
    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} is empty: give e.g. {example}")
        if any(unicodedata.category(c) == "Cc" for c in text):
            raise argparse.ArgumentTypeError(f"{what} {text!r} holds a control character (NUL, newline, escape…): "
                                             f"give e.g. {example}")
        return text.strip()
    return check


class _NoPasswordArgument(argparse.Action):
    """`--password` is refused: argv is visible to other users (ps, /proc, shell history)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not accepted: a password on the command line is visible to other users "
                     f"(ps, shell history); set {BI_PASSWORD_ENV} in the environment instead")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customer-analytics",
        description="Customer analytics on Dagster: sample data, materializations, reruns.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sample = commands.add_parser("generate-sample", help="write realistic synthetic landing data")
    sample.add_argument("--out", required=True, type=Path, help="landing folder to write (events/, transactions/, profiles/)")
    sample.add_argument("--customers", type=_positive_int, default=2000, help="number of customers (default 2000)")
    sample.add_argument("--start", type=_month_arg, default=None,
                        help="first month, YYYY-MM (default: --months before the month in progress, else "
                             "CUSTOMER_ANALYTICS_START_MONTH); not before CUSTOMER_ANALYTICS_START_MONTH")
    sample.add_argument("--months", type=_positive_int, default=None,
                        help="number of months (default: from --start through the month in progress)")
    sample.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same files (default 7)")
    sample.add_argument("--bad-rate", type=_rate, default=0.01, help="share of bad records, 0–0.5 (default 0.01)")

    run = commands.add_parser("materialize", help="materialize assets month by month through Dagster")
    run.add_argument("--from", dest="first", type=_month_arg, default=None, help="first month, YYYY-MM (default: the first partition)")
    run.add_argument("--to", dest="last", type=_month_arg, default=None, help="last month, YYYY-MM (default: the month in progress)")
    run.add_argument("--select", default="*", help="Dagster asset selection, e.g. 'raw_events' or 'group:ingestion' (default: all)")
    run.add_argument("--allow-shrink", action="store_true",
                     help="let the loads drop most of a month's rows or the profiles (to zero, or by more than "
                          "CUSTOMER_ANALYTICS_MAX_SHRINK); without it such a load fails and replaces nothing")

    rerun = commands.add_parser("request-rerun", help="ask for one value segment's CLV scores to be recomputed now")
    rerun.add_argument("--segment", required=True, help="high, medium, low or at_risk, or all (every segment, no refit); "
                                                        "ignored with --customer")
    rerun.add_argument("--month", type=_month_arg, default=None, help="YYYY-MM with CLV scores (default: the latest scored month)")
    rerun.add_argument("--customer", dest="customers", action="append", default=None, metavar="ID",
                       type=_plain_text("--customer", "C000123"),
                       help="rescore only this customer (repeatable) instead of the whole segment")
    rerun.add_argument("--by", dest="requested_by", default=None, type=_plain_text("--by", "ana"),
                       help="who asks (default: $USER)")

    commands.add_parser("init-instance", help="create a local Dagster instance in DAGSTER_HOME (default ./dagster_home)")

    bi = commands.add_parser(
        "create-bi-role",
        help="create (or reset) a read-only PostgreSQL role for BI tools on the warehouse schema",
        description="USAGE on the schema, SELECT on its tables and views, and on those created later; nothing else. "
                    f"Runs sql/bi_readonly_role.sql's statements as the warehouse user. The password, if any, is read "
                    f"from {BI_PASSWORD_ENV}, never from the command line.",
    )
    bi.add_argument("--role", type=_role_arg, default=DEFAULT_BI_ROLE, help=f"role name (default {DEFAULT_BI_ROLE})")
    bi.add_argument("--schema", type=_schema_arg, default=None,
                    help="warehouse schema (default: CUSTOMER_ANALYTICS_DB_SCHEMA, else customer_analytics)")
    bi.add_argument("--password", nargs="?", action=_NoPasswordArgument, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*(beta|preview|superseded).*", category=Warning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(parser, args) -> int:
    try:
        if args.command == "generate-sample":
            return _generate_sample(args)
        if args.command == "materialize":
            return _materialize(args)
        if args.command == "request-rerun":
            return _request_rerun(args)
        if args.command == "init-instance":
            print(f"Dagster instance: {ensure_dagster_home()}")
            return 0
        if args.command == "create-bi-role":
            return _create_bi_role(args)
    except (UsageError, ConfigError) as error:
        print(f"customer-analytics {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def _settings() -> Settings:
    """The environment's settings, every one checked (the database URL too) before anything runs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    settings = Settings.from_env()
    valid = ("use e.g. sqlite:///data/warehouse.db or postgresql+psycopg://user@host:5432/db "
             "(the password, if any, in the URL in the environment only)")
    try:
        parsed = make_url(settings.db_url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"CUSTOMER_ANALYTICS_DB_URL {redact_url(settings.db_url)!r} is not a database URL: {valid}") from None
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        raise ConfigError(f"CUSTOMER_ANALYTICS_DB_URL names {parsed.drivername!r}: only sqlite and postgresql+psycopg "
                          f"warehouses are supported; {valid}")
    return settings


def _check_writable_folder(path: Path, what: str) -> None:
    """`path` is, or can be created as, a folder we may write: refused before anything is written."""
    path = Path(path).absolute()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{what} {path} is a file: give a folder (new or existing)")
        existing = path
    else:
        existing = next(parent for parent in path.parents if parent.exists())
        if not existing.is_dir():
            raise UsageError(f"{what} {path} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path} cannot be written: no write permission on {existing}")


def _check_dagster_home() -> None:
    if os.environ.get("DAGSTER_HOME"):
        _check_writable_folder(Path(os.environ["DAGSTER_HOME"]), "DAGSTER_HOME")


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _open_warehouse(settings: Settings, *, must_exist: bool, schema: str | None = None):
    """The warehouse, connected; `must_exist` refuses a SQLite file that is not there rather than creating it."""
    from customer_analytics.resources.warehouse import Warehouse, WarehouseUnavailable

    database = _sqlite_file(settings.db_url)
    if database is not None:
        if must_exist and not database.is_file():
            raise UsageError(f"the warehouse {redact_url(settings.db_url)} does not exist: run `customer-analytics "
                             "materialize` first, or set CUSTOMER_ANALYTICS_DB_URL to the warehouse")
        _check_writable_folder(database.parent, "the warehouse's folder")
    try:
        warehouse = Warehouse(settings.db_url, schema or settings.db_schema)
        warehouse.check_connection()
    except WarehouseUnavailable as error:
        raise UsageError(f"{error}; set CUSTOMER_ANALYTICS_DB_URL to a reachable database") from None
    return warehouse


def _generate_sample(args) -> int:
    from customer_analytics.sample_data import generate_sample

    start, months = _sample_months(args.start, args.months, _settings().start_month, current_month())
    _check_writable_folder(args.out, "--out")
    try:
        # A sample reaching the month in progress stops now: no event dated in the future.
        summary = generate_sample(args.out, customers=args.customers, start=month_key(start), months=months,
                                  seed=args.seed, bad_rate=args.bad_rate, until=datetime.now(timezone.utc))
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(summary.to_text())
    return 0


def _months_through(first: date, last: date) -> int:
    return (last.year - first.year) * 12 + last.month - first.month + 1


def _sample_months(start: date | None, months: int | None, first_partition: date, in_progress: date) -> tuple[date, int]:
    """The sample's first month and length. By default it ends with the month in progress, so the
    latest month's views show recent buyers whenever the demo runs; it never starts before the first
    partition, whose months are the only ones loaded."""
    given = f"--start {month_key(start)}" if start is not None else \
        f"--months {months} (counted back from {month_key(in_progress)})"
    if start is None:
        start = add_months(in_progress, 1 - months) if months is not None else first_partition
    if start < first_partition:
        raise UsageError(
            f"{given} begins before the first partition {month_key(first_partition)} (CUSTOMER_ANALYTICS_START_MONTH), "
            f"and months before it are never loaded: start at {month_key(first_partition)} or later (at most "
            f"--months {_months_through(first_partition, in_progress)} to end with {month_key(in_progress)}), "
            f"or set CUSTOMER_ANALYTICS_START_MONTH={month_key(start)}")
    if months is None:
        if start > in_progress:
            raise UsageError(f"--start {month_key(start)} is after the month in progress {month_key(in_progress)}: "
                             f"give --months too, or a --start up to {month_key(in_progress)}")
        months = _months_through(start, in_progress)
    return start, months


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to ./dagster_home; a local instance YAML is written if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or LOCAL_DAGSTER_HOME).resolve()
    _check_writable_folder(home, "DAGSTER_HOME")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(LOCAL_INSTANCE_YAML)
    if not os.environ.get("DAGSTER_HOME"):
        print(f"DAGSTER_HOME not set: recording runs in {home} (open them with `make dev`, see the README)")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _materialize(args) -> int:
    import dagster as dg

    settings = _settings()  # first: the partitions below are built from the environment too
    from customer_analytics.definitions import customer_analytics_job, defs
    from customer_analytics.partitions import monthly_partitions

    keys = monthly_partitions.get_partition_keys()
    # Each given month is checked first, so a message only ever names a flag the user gave.
    for label, month in (("--from", args.first), ("--to", args.last)):
        if month is not None and month_key(month) not in keys:
            raise UsageError(f"{label} {month_key(month)} is not a partition: valid months are {keys[0]} … {keys[-1]}")
    first = args.first or parse_month(keys[0])
    last = args.last or parse_month(keys[-1])
    if last < first:
        raise UsageError(f"--to {month_key(last)} is before --from {month_key(first)}: give --to the same month or a later one")

    graph = defs.resolve_asset_graph()
    valid = ", ".join(sorted(key.to_user_string() for key in graph.materializable_asset_keys))
    try:
        # Assets written by one op together (raw_events and its quarantine) are selected together.
        selected = dg.AssetSelection.from_string(args.select).required_multi_asset_neighbors().resolve(graph)
    except Exception:  # Dagster raises several types for unknown keys or bad syntax
        selected = set()
    if not selected:
        raise UsageError(
            f"--select {args.select!r} matches no asset: use Dagster selection syntax (e.g. 'raw_events', "
            f"'raw_events+', 'group:ingestion'); assets are: {valid}"
        )

    reads_landing = sorted(key.to_user_string() for key in selected
                           if _INGESTION_RESOURCE in graph.get(key).assets_def.required_resource_keys)
    if reads_landing and not Path(settings.landing_dir).is_dir():
        # A mistyped folder would load as empty and replace every selected month with nothing.
        raise UsageError(
            f"landing folder {settings.landing_dir} (CUSTOMER_ANALYTICS_LANDING_DIR) does not exist, and "
            f"{', '.join(reads_landing)} would load every selected month from it as empty: point "
            "CUSTOMER_ANALYTICS_LANDING_DIR at the landing folder (or create it), or --select assets that do not read it"
        )
    _check_dagster_home()
    target = _open_warehouse(settings, must_exist=False)
    print(f"warehouse: {target.describe()}")

    ensure_dagster_home()
    try:
        instance = dg.DagsterInstance.get()
    except Exception as error:  # an unreadable dagster.yaml: Dagster raises several types
        raise UsageError(f"DAGSTER_HOME {os.environ['DAGSTER_HOME']} holds no usable Dagster instance: "
                         f"{str(error).strip().splitlines()[0]}") from None
    from customer_analytics.liveness import fail_dead_runs

    # A run left STARTED by a killed `materialize` (or a dead run worker) holds its month's queued runs.
    for dead in fail_dead_runs(instance, by="customer-analytics materialize"):
        print(str(dead), file=sys.stderr)
    job = defs.resolve_job_def(customer_analytics_job.name)
    partitioned = sorted((k for k in selected if graph.get(k).is_partitioned), key=lambda k: k.to_user_string())
    unpartitioned = [k for k in selected if not graph.get(k).is_partitioned]
    # Unpartitioned assets built from monthly ones (views, definitions) run after the months; the others before.
    monthly_upstream = {k for k in unpartitioned if any(graph.get(p).is_partitioned for p in graph.get(k).parent_keys)}
    before = sorted(set(unpartitioned) - monthly_upstream, key=lambda k: k.to_user_string())
    after = sorted(monthly_upstream, key=lambda k: k.to_user_string())
    plan: list[tuple[str | None, list]] = []
    if before:
        plan.append((None, before))
    month = first
    while partitioned and month <= last:
        plan.append((month_key(month), partitioned))
        month = add_months(month, 1)
    if after:
        plan.append((None, after))

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    rows = []
    for partition, asset_keys in plan:
        label = partition or "(unpartitioned)"
        started = time.perf_counter()
        run_config = dict(quiet)
        if args.allow_shrink:
            # Config only for the loads this run executes: Dagster refuses config of ops outside the selection.
            loads = {graph.get(key).assets_def.op.name for key in asset_keys if key.to_user_string() in reads_landing}
            run_config["ops"] = {name: {"config": {"allow_shrink": True}} for name in sorted(loads)}
        result = _execute(job, instance, partition=partition, asset_keys=asset_keys, run_config=run_config)
        seconds = time.perf_counter() - started
        failed_checks = [
            f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            + (" (warning)" if evaluation.severity == dg.AssetCheckSeverity.WARN else "")
            for evaluation in _check_evaluations(result)
            if not evaluation.passed
        ]
        status = "ok" if result.success else "FAILED"
        rows.append((label, status, seconds, len(asset_keys), result.run_id, failed_checks))
        note = f"  checks not passed: {', '.join(failed_checks)}" if failed_checks else ""
        print(f"{label:<16} {status:<6} {seconds:7.1f} s  {len(asset_keys)} assets  run {result.run_id[:8]}{note}", flush=True)
        if not result.success:
            for event in result.all_events:
                if event.is_failure and event.event_specific_data is not None and getattr(event.event_specific_data, "error", None):
                    print(f"    {event.step_key}: {event.event_specific_data.error.message.strip()}", file=sys.stderr)

    _print_summary(rows)
    _print_tables(target)
    return 1 if any(status != "ok" for _l, status, *_ in rows) else 0


# The code location `make dev` and the production webserver load (workspace.yaml's location_name), and
# the name Dagster gives the repository of a Definitions object: a run recorded with this origin gets the
# `.dagster/repository` tag the UI's job page and Overview timeline filter runs by.
CODE_LOCATION = "customer_analytics"
DEFINITIONS_MODULE = "customer_analytics.definitions"
DEFINITIONS_ATTRIBUTE = "defs"
REPOSITORY_NAME = "__repository__"


def _remote_job_origin(job_name: str):
    """The origin the webserver gives `job_name` when it loads workspace.yaml (a managed code server
    running the module): Dagster's own `execute_job` (and so `dagster job execute` and `dagster asset
    materialize`) records none, and the UI then lists such runs under no job."""
    from dagster._core.remote_origin import RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origin_from_module_name

    location = location_origin_from_module_name(DEFINITIONS_MODULE, None, None, CODE_LOCATION)
    return RemoteRepositoryOrigin(location, REPOSITORY_NAME).get_job_origin(job_name)


def _execute(job, instance, *, partition: str | None, asset_keys, run_config):
    """One run of `job` in this process, as `execute_in_process` would, but recorded with the code
    location's origin (so the UI links it) and the code pointer (so the UI can re-execute it)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run

    recon_job = ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, DEFINITIONS_ATTRIBUTE, working_directory=os.getcwd()
    ).get_reconstructable_job(job.name)
    tags = {**job.run_tags, "trigger": "cli"}
    if partition is not None:
        # dagster/partition (and nothing else naming the month): what the UI and the run queue's limit read.
        tags.update(job.get_tags_for_partition_key(partition, selected_asset_keys=asset_keys))
    run = instance.create_run_for_job(
        job_def=job, run_config=run_config, tags=tags, asset_selection=frozenset(asset_keys),
        remote_job_origin=_remote_job_origin(job.name), job_code_origin=recon_job.get_python_origin(),
    )
    with execute_run(recon_job, run, instance, raise_on_error=False) as result:
        return result


def _request_rerun(args) -> int:
    from sqlalchemy import inspect

    from customer_analytics.reruns import (ALL_SEGMENTS, REQUEST_SEGMENTS, VALUE_SEGMENTS, parse_customer_ids,
                                           unknown_customers, validate_request, write_request)
    from customer_analytics.resources.warehouse import WarehouseUnavailable

    if args.segment not in REQUEST_SEGMENTS:
        raise UsageError(f"unknown segment {args.segment!r}: valid segments are {', '.join(VALUE_SEGMENTS)} "
                         f"(or {ALL_SEGMENTS} for every segment)")
    parse_customer_ids(args.customers)  # the request's own rules (size, characters), before any connection
    settings = _settings()
    warehouse = _open_warehouse(settings, must_exist=True)
    with warehouse.connect() as connection:
        # Checked here so that a refused request creates no table either.
        scored = inspect(connection).has_table("customer_clv", schema=warehouse.schema if warehouse.dialect == "postgresql" else None)
    if not scored:
        raise UsageError(f"the warehouse {warehouse.describe()} has no CLV scores yet: materialize customer_clv first")
    try:
        request = validate_request(warehouse, args.segment, args.month, args.customers,
                                   args.requested_by or os.environ.get("USER"))
    except WarehouseUnavailable as error:
        raise UsageError(f"{error}; set CUSTOMER_ANALYTICS_DB_URL to a reachable database") from None
    request_id = write_request(warehouse, request)
    unknown = unknown_customers(warehouse, request.as_of_month, request.customer_ids) if request.customer_ids else []
    if unknown:  # accepted all the same (the run counts them in `errors`), but a typo should not pass unseen
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        print(f"warning: {len(unknown):,} listed customer(s) have no purchase before {month_key(request.as_of_month)}'s "
              f"as-of and no score for it: {shown}; the run will count them in the request's errors", file=sys.stderr)
    scope = (f"{len(request.customer_ids)} customer(s) (--segment ignored)" if request.customer_ids
             else "every segment" if request.segment == ALL_SEGMENTS else f"segment {request.segment}")
    print(f"rerun request {request_id} pending: {scope}, month {month_key(request.as_of_month)}")
    return 0


def _create_bi_role(args) -> int:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    settings = _settings()
    schema = args.schema or settings.db_schema
    password = os.environ.get(BI_PASSWORD_ENV) or None
    if make_url(settings.db_url).get_backend_name() == "sqlite":
        raise UsageError("a BI role needs a PostgreSQL warehouse, and CUSTOMER_ANALYTICS_DB_URL names SQLite, which has "
                         "no roles: give BI readers a copy of the file, or point CUSTOMER_ANALYTICS_DB_URL at PostgreSQL")
    warehouse = _open_warehouse(settings, must_exist=True, schema=schema)
    names = {"role": sql.Identifier(args.role), "schema": sql.Identifier(schema)}
    try:
        with warehouse.begin() as connection:
            driver = connection.connection.driver_connection
            with driver.cursor() as cursor:
                problem = cursor.execute(BI_ROLE_CHECK, {"role": args.role, "schema": schema}).fetchone()[0]
                if problem:
                    raise UsageError(f"refused for role {args.role} on schema {schema}: {problem}")
                cursor.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (args.role,))
                created = cursor.fetchone() is None
                if created:
                    cursor.execute(sql.SQL("CREATE ROLE {role} LOGIN").format(**names))
                for statement in BI_ROLE_PRIVILEGES:
                    cursor.execute(sql.SQL(statement).format(**names))
                if password is not None:
                    # Only the hash (SCRAM, or the server's password_encryption) leaves this process:
                    # no statement log or pg_stat_activity ever holds the password itself.
                    verifier = driver.pgconn.encrypt_password(password.encode(), args.role.encode(), None).decode()
                    cursor.execute(sql.SQL("ALTER ROLE {role} PASSWORD {verifier}").format(
                        verifier=sql.Literal(verifier), **names))
                cursor.execute("SELECT c.relkind IN ('v', 'm') AS view, COUNT(*) FROM pg_catalog.pg_class c "
                               "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition "
                               "GROUP BY 1", (schema,))
                counts = dict(cursor.fetchall())
    except psycopg.errors.InsufficientPrivilege as error:
        raise UsageError(f"the warehouse user cannot do this ({str(error).strip().splitlines()[0]}): run it as the "
                         "user that owns the warehouse tables, with CREATEROLE, or have an administrator apply "
                         "sql/bi_readonly_role.sql") from None
    login = ("password set from " + BI_PASSWORD_ENV) if password is not None else \
        f"no password (set one in psql with \\password {args.role}, or rerun with {BI_PASSWORD_ENV} set)"
    print(f"{'created' if created else 'reset'} read-only role {args.role} on {warehouse.describe()}: USAGE on schema "
          f"{schema}, SELECT on its {counts.get(False, 0)} tables and {counts.get(True, 0)} views and on those created "
          f"later; nothing else. LOGIN, {login}.")
    return 0


def _print_tables(warehouse) -> None:
    """Rows per warehouse table, so a person sees at a glance that every table was filled."""
    from sqlalchemy import func, select

    from customer_analytics.resources.tables import metadata

    print()
    print(f"{'table':<26} {'rows':>12}")
    for table in metadata.sorted_tables:
        print(f"{table.name:<26} {warehouse.scalar(select(func.count()).select_from(table)):>12,}")


def _check_evaluations(result):
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            yield event.event_specific_data


def _print_summary(rows) -> None:
    total = sum(seconds for _l, _s, seconds, *_ in rows)
    failed = [label for label, status, *_ in rows if status != "ok"]
    warned = sum(check.endswith("(warning)") for r in rows for check in r[5])
    errors = sum(len(r[5]) for r in rows) - warned
    print()
    print(f"{'partition':<16} {'status':<6} {'seconds':>8}  run")
    for label, status, seconds, _n, run_id, _c in rows:
        print(f"{label:<16} {status:<6} {seconds:8.1f}  {run_id}")
    print(f"{len(rows)} runs, {len(failed)} failed; checks: {errors} failed, {warned} warned; {total:.1f} s in all")


if __name__ == "__main__":
    sys.exit(main())
