"""`customer-analytics`: the project's command line.

Bad arguments exit with status 2 and a message that says what is valid; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from datetime import date
from pathlib import Path

from customer_analytics.config import ConfigError, Settings, add_months, month_key, parse_month

EXIT_USAGE = 2
LOCAL_DAGSTER_HOME = "dagster_home"
LOCAL_INSTANCE_YAML = """\
# Local Dagster instance written by `customer-analytics`: run history in SQLite files here.
# Production uses the repository's dagster.yaml (PostgreSQL); see the README.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
"""


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customer-analytics",
        description="Customer analytics on Dagster: sample data, materializations, reruns.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sample = commands.add_parser("generate-sample", help="write realistic synthetic landing data")
    sample.add_argument("--out", required=True, type=Path, help="landing folder to write (events/, transactions/, profiles/)")
    sample.add_argument("--customers", type=_positive_int, default=2000, help="number of customers (default 2000)")
    sample.add_argument("--start", type=_month_arg, default=None, help="first month, YYYY-MM (default: CUSTOMER_ANALYTICS_START_MONTH)")
    sample.add_argument("--months", type=_positive_int, default=12, help="number of months (default 12)")
    sample.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same files (default 7)")
    sample.add_argument("--bad-rate", type=_rate, default=0.01, help="share of bad records, 0–0.5 (default 0.01)")

    run = commands.add_parser("materialize", help="materialize assets month by month through Dagster")
    run.add_argument("--from", dest="first", type=_month_arg, default=None, help="first month, YYYY-MM (default: the first partition)")
    run.add_argument("--to", dest="last", type=_month_arg, default=None, help="last month, YYYY-MM (default: the month in progress)")
    run.add_argument("--select", default="*", help="Dagster asset selection, e.g. 'raw_events' or 'group:ingestion' (default: all)")

    rerun = commands.add_parser("request-rerun", help="ask for one value segment's CLV scores to be recomputed now")
    rerun.add_argument("--segment", required=True, help="high, medium, low or at_risk")
    rerun.add_argument("--month", default=None, help="YYYY-MM with CLV scores (default: the latest scored month)")
    rerun.add_argument("--customer", dest="customers", action="append", default=None, metavar="ID",
                       help="rescore only this customer (repeatable) instead of the whole segment")
    rerun.add_argument("--by", dest="requested_by", default=None, help="who asks (default: $USER)")

    commands.add_parser("init-instance", help="create a local Dagster instance in DAGSTER_HOME (default ./dagster_home)")
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
    except (UsageError, ConfigError) as error:
        print(f"customer-analytics {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def _generate_sample(args) -> int:
    from customer_analytics.sample_data import generate_sample

    start = args.start or Settings.from_env().start_month
    try:
        summary = generate_sample(args.out, customers=args.customers, start=month_key(start), months=args.months,
                                  seed=args.seed, bad_rate=args.bad_rate)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(summary.to_text())
    return 0


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to ./dagster_home; a local instance YAML is written if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or LOCAL_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(LOCAL_INSTANCE_YAML)
    if not os.environ.get("DAGSTER_HOME"):
        print(f"DAGSTER_HOME not set: recording runs in {home} (open them with `make dev`, see the README)")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _materialize(args) -> int:
    import dagster as dg

    from customer_analytics.definitions import customer_analytics_job, defs
    from customer_analytics.partitions import monthly_partitions

    keys = monthly_partitions.get_partition_keys()
    first = args.first or parse_month(keys[0])
    last = args.last or parse_month(keys[-1])
    if last < first:
        raise UsageError(f"--to {month_key(last)} is before --from {month_key(first)}: give --to the same month or a later one")
    for label, month in (("--from", first), ("--to", last)):
        if month_key(month) not in keys:
            raise UsageError(f"{label} {month_key(month)} is not a partition: valid months are {keys[0]} … {keys[-1]}")

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

    from customer_analytics.resources.warehouse import Warehouse, WarehouseUnavailable

    settings = Settings.from_env()
    try:
        target = Warehouse(settings.db_url, settings.db_schema)
        target.check_connection()
    except WarehouseUnavailable as error:
        raise UsageError(f"{error}; set CUSTOMER_ANALYTICS_DB_URL to a reachable database") from None
    print(f"warehouse: {target.describe()}")

    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
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
        result = job.execute_in_process(
            partition_key=partition, asset_selection=asset_keys, instance=instance, run_config=quiet,
            raise_on_error=False, tags={"trigger": "cli", **({"partition": partition} if partition else {})},
        )
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


def _request_rerun(args) -> int:
    from customer_analytics.reruns import validate_request, write_request
    from customer_analytics.resources.warehouse import Warehouse, WarehouseUnavailable

    settings = Settings.from_env()
    try:
        warehouse = Warehouse(settings.db_url, settings.db_schema)
        warehouse.check_connection()
        request = validate_request(warehouse, args.segment, args.month, args.customers,
                                   args.requested_by or os.environ.get("USER"))
    except WarehouseUnavailable as error:
        raise UsageError(f"{error}; set CUSTOMER_ANALYTICS_DB_URL to a reachable database") from None
    request_id = write_request(warehouse, request)
    scope = f"{len(request.customer_ids)} customer(s)" if request.customer_ids else f"segment {request.segment}"
    print(f"rerun request {request_id} pending: {scope}, month {month_key(request.as_of_month)}")
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
