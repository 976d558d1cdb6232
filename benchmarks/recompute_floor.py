"""The least any design's nightly recompute does beyond the bare work, measured beside both.

    python -m benchmarks.run --db URL --events 10000000 --customers 1000000 --months 12 --keep --schema S
    python -m benchmarks.recompute_floor --db URL --schema S --month 2024-12-01 --repeats 3

The recompute target (≤ 2× the bare work) compares every derived table of a month with one
GROUP BY over the summaries plus one fit. Whatever the design, a month's recompute also has to
summarize the month's raw events (the bare work starts from the summaries) and score every
customer and write the scores (the bare work stops at the models' parameters). These links form
one chain, each needing the one before it:

    month summary → GROUP BY over the summaries → fit → scores → customer_clv

`floor` runs that chain: the project's month summary statement into a temporary table (so it
publishes nothing and writes no WAL), then the bare work, scoring and the pipeline's write of the
month's `customer_clv`. It is a lower bound for a design that materializes nothing else: the
other as-of tables (history, RFM, segments, cohorts) would have to be computed when read.

`copies` copies the month's rows of the other per-customer tables (`COPIED`), as stored, into
temporary tables: the least that materializing them costs, were computing them free.

Runs take turns (bare work, floor, copies, the pipeline's recompute) after one warm-up each, and their
medians are reported: wall seconds, and the machine's busy CPU seconds from /proc/stat (every
process's, so run it on a quiet machine). Rewrites the month's tables of the kept schema with
the same figures. Prints a Markdown table and, with --json, writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy import text

from benchmarks.run import BARE_SQL, BARE_TYPES, bare_work, recompute
from customer_analytics.asof import AsOf, clv_rows, stamp_as_of, write_clv
from customer_analytics.resources.tables import customer_month_summary
from customer_analytics.resources.warehouse import Warehouse
from customer_analytics.summaries import MONTH_SUMMARY_SQL, PURCHASES_SQL
from customer_analytics.transforms.clv_scores import btyd_summary, fit_models

# /proc/stat's first line: user nice system idle iowait irq softirq steal guest guest_nice (guest time
# is counted in user already). Busy is everything but idle and iowait.
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)

# The month's other per-customer tables: one row per customer seen so far, as customer_clv.
COPIED = ("customer_history", "customer_rfm", "customer_segments")


def busy_cpu_seconds() -> float:
    """Seconds all CPUs of the machine have been busy since boot (Linux)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[index]) for index in BUSY_FIELDS) / os.sysconf("SC_CLK_TCK")


def timed(work) -> dict:
    """Run `work`; its wall seconds and the machine's busy CPU seconds meanwhile, plus what it returned."""
    cpu, started = busy_cpu_seconds(), time.perf_counter()
    links = work()
    return {"wall_s": time.perf_counter() - started, "cpu_s": busy_cpu_seconds() - cpu, "links": links or {}}


def floor(warehouse: Warehouse, month: date) -> dict[str, float]:
    """The chain every design runs (see the module's doc); returns each link's wall seconds."""
    as_of = AsOf.for_month(month)
    computed_at = datetime.now(timezone.utc)
    links: dict[str, float] = {}
    started = time.perf_counter()

    def link(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        links[name] = now - started
        started = now

    purchases = PURCHASES_SQL.format(raw_events=warehouse.qualified("raw_events"))
    with warehouse.connect() as connection:  # rolled back on leaving: the temporary table goes with it
        columns = ", ".join(warehouse.quote(column.name) for column in customer_month_summary.columns)
        connection.execute(text(f"CREATE TEMPORARY TABLE floor_month_summary ({columns}) AS "
                                f"{MONTH_SUMMARY_SQL.format(purchases=purchases)}"),
                           {"month": month, "as_of": as_of.instant, "computed_at": computed_at})
    link("month_summary")
    history = warehouse.read_typed(BARE_SQL.format(summary=warehouse.qualified("customer_month_summary")),
                                   {"month": month}, BARE_TYPES)
    link("group_by_and_read")
    summary = btyd_summary(history, as_of.day)
    fits = fit_models(summary)
    link("fit")
    scores = stamp_as_of(clv_rows(summary, fits), as_of, computed_at, "")
    link("score")
    write_clv(warehouse, as_of, scores, fits, computed_at=computed_at, run_id="")
    link("write_customer_clv")
    return links


def copies(warehouse: Warehouse, month: date) -> dict[str, float]:
    """Seconds to copy each of `COPIED`'s month of rows, as stored, into a temporary table: what
    materializing it costs at the least, with nothing computed (no WAL, no index)."""
    seconds: dict[str, float] = {}
    with warehouse.connect() as connection:  # rolled back on leaving, with the copies
        for table in COPIED:
            started = time.perf_counter()
            connection.execute(text(f"CREATE TEMPORARY TABLE floor_copy_{table} AS "
                                    f"SELECT * FROM {warehouse.partition_of(table, month)} WHERE as_of_month = :month"),
                               {"month": month})
            seconds[table] = time.perf_counter() - started
    return seconds


def measure(warehouse: Warehouse, month: date, repeats: int) -> dict:
    """Medians of `repeats` turns of bare work, floor, copies and recompute, after one warm-up of each."""
    runs = {
        "bare": lambda: bare_work(warehouse, month),
        "floor": lambda: floor(warehouse, month),
        "copies": lambda: copies(warehouse, month),
        "recompute": lambda: recompute(warehouse, month),
    }
    for work in runs.values():
        work()
    samples: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, work in runs.items():
            samples[name].append(timed(work))
    medians = {name: {"wall_s": statistics.median(s["wall_s"] for s in runs_),
                      "cpu_s": statistics.median(s["cpu_s"] for s in runs_)} for name, runs_ in samples.items()}
    for name in ("floor", "copies"):
        medians[name]["links"] = {link: statistics.median(s["links"][link] for s in samples[name])
                                  for link in samples[name][0]["links"]}
    return {"month": month.isoformat(), "repeats": repeats, "cpus": os.cpu_count(), "medians": medians, "samples": samples}


def markdown(result: dict) -> str:
    medians = result["medians"]
    bare = medians["bare"]
    lines = ["| run | wall (s) | × bare work | CPU-seconds | × bare work | cores busy |", "|---|---|---|---|---|---|"]
    for name in ("bare", "floor", "copies", "recompute"):
        m = medians[name]
        lines.append(f"| {name} | {m['wall_s']:.2f} | {m['wall_s'] / bare['wall_s']:.2f}× | {m['cpu_s']:.2f} | "
                     f"{m['cpu_s'] / bare['cpu_s']:.2f}× | {m['cpu_s'] / m['wall_s']:.2f} |")
    for name, what in (("floor", "floor by link"), ("copies", "copies by table")):
        parts = ", ".join(f"{link} {seconds:.2f} s" for link, seconds in medians[name]["links"].items())
        lines.append(f"{'' if name == 'copies' else chr(10)}{what} (medians): {parts}.")
    both = medians["floor"]["wall_s"] + medians["copies"]["wall_s"]
    lines.append(f"floor + copies: {both:.2f} s, {both / bare['wall_s']:.2f}× the bare work.")
    lines.append(f"Month {result['month']}, {result['cpus']} CPUs; {result['repeats']} turn(s) each after a warm-up (medians).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="the PostgreSQL URL the benchmark ran against")
    parser.add_argument("--schema", required=True, help="a schema kept by `benchmarks.run --keep`")
    parser.add_argument("--month", type=date.fromisoformat, help="first day of a recomputed month (default: the latest)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    warehouse = Warehouse(args.db, args.schema)
    if warehouse.dialect != "postgresql":
        parser.error("--db must be a postgresql+psycopg:// URL (the floor's month summary is PostgreSQL's statement)")
    with warehouse.connect() as connection:
        built = sorted(connection.execute(text(
            f"SELECT DISTINCT as_of_month FROM {warehouse.qualified('customer_history')}")).scalars()) \
            if warehouse.table_exists(connection, "customer_history") else []
    if not built:
        parser.error(f"schema {args.schema!r} holds no recomputed month: run `benchmarks.run --keep --schema {args.schema}` first")
    month = args.month or built[-1]
    if month not in built:
        parser.error(f"--month {month} is not a recomputed month of {args.schema!r}; valid: {', '.join(map(str, built))}")
    result = measure(warehouse, month, args.repeats)
    print(markdown(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
