"""The performance benchmark: every figure of the pipeline beside its anchor, measured in one run.

    python -m benchmarks.run --events 10000000 --customers 1000000 --months 12 \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test

Deterministic data (`benchmarks.events`), a scratch schema (dropped at the end), and for each
figure the median of `--repeats` runs after a warm-up:

| figure | the project | anchor |
|---|---|---|
| ingestion of one month | landing NDJSON → raw_events, all validation | PostgreSQL COPY of the same rows from CSV into an unindexed table |
| nightly recompute of one month | every derived table of the month | one SQL GROUP BY customer_id over the summaries + one BG/NBD + Gamma-Gamma fit |
| model fit | the project's fits | lifetimes 0.11.3 in a throwaway venv (`benchmarks.model_fit`) |
| growth | recompute with 1, 6 and 12 months of history | month 1 |
| memory | peak RSS of the process that ingests and recomputes the last month | 2 GB |

The last month is ingested and recomputed in a child process, so its peak RSS is that work's
alone (not the data generator's). Each of those runs takes turns with its anchor (a COPY
before each load, the bare work before each recompute), so a ratio compares runs made in the
same state of a shared machine. Prints a Markdown table and writes the same as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from benchmarks.events import FIRST_MONTH, month_events, write_ndjson_files
from customer_analytics.asof import AsOf, compute_scores
from customer_analytics.cohorts import compute_cohort_ltv, compute_ltv_summary
from customer_analytics.config import add_months
from customer_analytics.loading import load_events_month
from customer_analytics.resources.tables import customer_month_summary
from customer_analytics.resources.warehouse import Warehouse, arrow_types
from customer_analytics.segments import compute_segments
from customer_analytics.summaries import summarize_month
from customer_analytics.transforms.clv_scores import btyd_summary, fit_models

FIRST = FIRST_MONTH  # the customers (`benchmarks.events.population`) are drawn from it
TARGETS = {"ingestion": 0.5, "recompute": 2.0, "model_fit": 10.0, "growth": 1.3, "memory_gb": 2.0}
BARE_SQL = """
SELECT customer_id, SUM(purchases) AS purchases, SUM(revenue) AS revenue, SUM(purchase_days) AS purchase_days,
       SUM(positive_days) AS positive_days, SUM(positive_day_revenue) AS positive_day_revenue,
       MIN(first_purchase_date) AS first_purchase_date, MAX(last_purchase_date) AS last_purchase_date,
       MIN(first_day_revenue) AS first_day_revenue
FROM {summary}
WHERE summary_month <= :month
GROUP BY customer_id
"""
BARE_TYPES = arrow_types(*(customer_month_summary.c[name] for name in (
    "customer_id", "purchases", "revenue", "purchase_days", "positive_days", "positive_day_revenue",
    "first_purchase_date", "last_purchase_date", "first_day_revenue")))


def median_of(function, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    samples = []
    for index in range(repeats + 1):
        started = time.perf_counter()
        function()
        if index:
            samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def recompute(warehouse: Warehouse, month: date, steps: dict | None = None) -> None:
    """Every derived table of one month, as the nightly run computes them.

    With `steps`, each step's seconds and peak RSS (bytes, Linux) are recorded in it by name.
    """
    as_of = AsOf.for_month(month)
    for name, work in (
        ("summaries", lambda: summarize_month(warehouse, month, as_of=as_of.instant)),
        ("customer_value", lambda: compute_scores(warehouse, as_of)),  # RFM and CLV side by side, as the Dagster step
        ("customer_segments", lambda: compute_segments(warehouse, month)),
        ("cohort_ltv", lambda: compute_cohort_ltv(warehouse, as_of)),
        ("ltv_summary", lambda: compute_ltv_summary(warehouse, as_of)),
    ):
        measured(work, steps, name)


def measured(work, steps: dict | None, name: str):
    """Run `work`; with `steps`, record its seconds and the peak RSS reached while it ran."""
    if steps is None:
        return work()
    reset_peak_rss()
    started = time.perf_counter()
    value = work()
    peak = max(peak_rss_bytes(), steps.get(name, {}).get("peak_rss_bytes", 0))
    steps[name] = {"seconds": time.perf_counter() - started, "peak_rss_bytes": peak}
    return value


def reset_peak_rss() -> None:
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM to the current RSS)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_bytes() -> int:
    """This process's peak RSS since start or since `reset_peak_rss` (VmHWM), else ru_maxrss."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bare_work(warehouse: Warehouse, month: date) -> None:
    """The anchor: one GROUP BY over the month's summaries and one fit of both models.

    Its rows reach pandas the way the pipeline's large reads do (`Warehouse.read_typed`: COPY
    parsed by pyarrow), in a session with the pipeline's settings: a floor must not pay for a
    slower path than the work it measures.
    """
    as_of = AsOf.for_month(month)
    history = warehouse.read_typed(BARE_SQL.format(summary=warehouse.qualified("customer_month_summary")),
                                   {"month": month}, BARE_TYPES)
    fit_models(btyd_summary(history, as_of.day))


def load(warehouse: Warehouse, landing: Path, month: date, last: date) -> int:
    return load_events_month(warehouse, str(landing), month, first_month=FIRST, last_month=last).loaded


def copy_anchor(url: str, csv_path: Path, columns: list[str]) -> None:
    """COPY the CSV into a fresh unindexed table (text, timestamptz and numbers, as delivered)."""
    types = {"event_timestamp": "timestamptz", "price": "double precision", "quantity": "bigint"}
    definition = ", ".join(f'"{c}" {types.get(c, "text")}' for c in columns)
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS benchmark_copy_anchor")
        connection.execute(f"CREATE TABLE benchmark_copy_anchor ({definition})")
        with connection.cursor() as cursor, open(csv_path, "rb") as handle:
            with cursor.copy("COPY benchmark_copy_anchor FROM STDIN (FORMAT csv)") as copy:
                while data := handle.read(1 << 20):
                    copy.write(data)
        connection.execute("DROP TABLE benchmark_copy_anchor")


def child(args) -> None:
    """Ingest and recompute the last month, each run taking turns with its anchor; report medians and peak RSS.

    The anchors run in this process beside the work they anchor (COPY before each load, the bare
    work before each recompute), so both see the machine in the same state: measured minutes
    apart, the COPY anchor alone moved a ratio by a third on these shared machines. Each step's
    seconds (of the last run) and peak RSS (over all runs, the anchors' excluded) are reported too.
    """
    warehouse = Warehouse(args.db, args.schema)
    month, last = date.fromisoformat(args.child_month), date.fromisoformat(args.child_month)
    copy = functools.partial(copy_anchor, args.db, Path(args.anchor_csv), args.anchor_columns.split(","))
    rows = load(warehouse, Path(args.landing), month, last)  # also the warm-up
    peak = peak_rss_bytes()
    copy()  # the anchor's warm-up
    steps: dict = {}
    samples: dict[str, list[float]] = {"copy": [], "ingestion": [], "bare": [], "recompute": []}

    def timed(name: str, work) -> None:
        started = time.perf_counter()
        work()
        samples[name].append(time.perf_counter() - started)

    for _ in range(args.repeats):
        timed("copy", copy)
        timed("ingestion", lambda: measured(lambda: load(warehouse, Path(args.landing), month, last), steps, "raw_events"))
    recompute(warehouse, month)  # warm-ups
    bare_work(warehouse, month)
    for _ in range(args.repeats):
        timed("bare", lambda: bare_work(warehouse, month))
        timed("recompute", lambda: recompute(warehouse, month, steps))
    peak = max(peak, *(step["peak_rss_bytes"] for step in steps.values()))
    medians = {f"{name}_s": statistics.median(values) for name, values in samples.items()}
    print(json.dumps({"rows": rows, **medians, "samples_s": samples, "peak_rss_bytes": peak, "steps": steps}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="PostgreSQL warehouse URL (a scratch schema is created and dropped)")
    parser.add_argument("--events", type=int, default=10_000_000, help="events per month")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=4, help="landing files per month")
    parser.add_argument("--schema", default="ca_bench_run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema (e.g. to profile against it)")
    parser.add_argument("--json", default="benchmarks/results/run.json")
    parser.add_argument("--skip-lifetimes", action="store_true", help="model fit without the lifetimes anchor")
    parser.add_argument("--fit-customers", type=int, default=None, help="customers for the model-fit figure (default --customers)")
    parser.add_argument("--child-month", help=argparse.SUPPRESS)
    parser.add_argument("--landing", help=argparse.SUPPRESS)
    parser.add_argument("--anchor-csv", help=argparse.SUPPRESS)
    parser.add_argument("--anchor-columns", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_month:
        return child(args)
    if args.months < 1 or args.events < 1 or args.customers < 1:
        parser.error("--events, --customers and --months must be positive")
    warehouse = Warehouse(args.db, args.schema)
    if warehouse.dialect != "postgresql":
        parser.error("the anchors are PostgreSQL's COPY: --db must be a postgresql+psycopg:// URL")
    with warehouse.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {warehouse.quote(args.schema)} CASCADE"))
    months = [add_months(FIRST, index) for index in range(args.months)]
    last = months[-1]
    result: dict = {"started_at": datetime.now(timezone.utc).isoformat(), "events_per_month": args.events,
                    "customers": args.customers, "months": args.months, "repeats": args.repeats,
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}}
    recompute_times: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ca-bench-") as folder:
            landing = Path(folder) / "landing"
            for index, month in enumerate(months, start=1):
                started = time.perf_counter()
                frame = month_events(month, args.events, args.customers, seed=index)
                write_ndjson_files(frame, landing / "events", files=args.files, stem=f"{month:%Y-%m}")
                if month == last:
                    csv_path = Path(folder) / "anchor.csv"
                    frame.to_csv(csv_path, index=False, header=False)
                    columns = list(frame.columns)
                del frame
                generated = time.perf_counter()
                if month != last:
                    # Single, unmeasured-by-the-table timings: a partial run still shows the trend.
                    loaded = load(warehouse, landing, month, last)
                    ingested = time.perf_counter()
                    recompute(warehouse, month)
                    done = time.perf_counter()
                    for path in (landing / "events").glob(f"{month:%Y-%m}-*.ndjson"):
                        path.unlink()  # bounded disk: only the measured month stays
                    result.setdefault("preparation", []).append(
                        {"month": f"{month:%Y-%m}", "generate_s": generated - started, "ingest_s": ingested - generated,
                         "rows": loaded, "recompute_s": done - ingested})
                    print(f"{month:%Y-%m}: generated in {generated - started:.0f} s, ingested {loaded:,} rows in "
                          f"{ingested - generated:.1f} s, recomputed in {done - ingested:.1f} s", flush=True)
                else:
                    print(f"{month:%Y-%m}: generated in {generated - started:.0f} s", flush=True)

            print(f"project: ingestion + recompute of {last:%Y-%m} in a child process, taking turns with the COPY "
                  "anchor (into an unindexed table) and the bare work (GROUP BY + one fit)", flush=True)
            done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--db", args.db, "--schema", args.schema,
                                   "--repeats", str(args.repeats), "--child-month", last.isoformat(),
                                   "--landing", str(landing), "--anchor-csv", str(csv_path),
                                   "--anchor-columns", ",".join(columns)], check=True, stdout=subprocess.PIPE, text=True)
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            result.update(measured)
            recompute_times[args.months] = measured["recompute_s"]
        # Growth: the same work for earlier months, on the same (full) warehouse. Latest first: rebuilding
        # month 1 makes the later months' stored histories stale, and a nightly run extends a current one.
        for index in sorted({1, min(6, args.months)} - {args.months}, reverse=True):
            print(f"growth: recompute of month {index}", flush=True)
            recompute_times[index] = median_of(lambda m=months[index - 1]: recompute(warehouse, m), args.repeats)
    finally:
        if not args.keep:
            with warehouse.begin() as connection:
                connection.execute(text(f"DROP SCHEMA IF EXISTS {warehouse.quote(args.schema)} CASCADE"))
    result["recompute_by_history"] = recompute_times

    from benchmarks import model_fit

    fit = model_fit.run(args.fit_customers or args.customers, args.repeats, lifetimes=not args.skip_lifetimes)
    result["model_fit"] = {"project_s": fit["project"]["seconds"]["total"],
                           "lifetimes_s": (fit["lifetimes"] or {}).get("seconds", {}).get("total"),
                           "params_agree": (fit["comparison"] or {}).get("params_agree")}
    result["figures"] = figures(result, args)
    print(markdown(result))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.json}")


def figures(result: dict, args) -> list[dict]:
    rows = result["rows"]
    project_rate, copy_rate = rows / result["ingestion_s"], rows / result["copy_s"]
    history = result["recompute_by_history"]
    out = [
        {"figure": f"ingestion of one month ({rows:,} rows)", "project": f"{project_rate:,.0f} rows/s ({result['ingestion_s']:.1f} s)",
         "anchor": f"COPY {copy_rate:,.0f} rows/s ({result['copy_s']:.1f} s)", "ratio": project_rate / copy_rate,
         "target": f"≥ {TARGETS['ingestion']}×", "met": project_rate / copy_rate >= TARGETS["ingestion"]},
        {"figure": "nightly recompute of one month", "project": f"{result['recompute_s']:.1f} s",
         "anchor": f"bare work {result['bare_s']:.1f} s", "ratio": result["recompute_s"] / result["bare_s"],
         "target": f"≤ {TARGETS['recompute']}×", "met": result["recompute_s"] / result["bare_s"] <= TARGETS["recompute"]},
    ]
    fit = result["model_fit"]
    if fit["lifetimes_s"]:
        ratio = fit["lifetimes_s"] / fit["project_s"]
        out.append({"figure": f"model fit, {args.fit_customers or args.customers:,} customers", "project": f"{fit['project_s']:.2f} s",
                    "anchor": f"lifetimes {fit['lifetimes_s']:.2f} s", "ratio": ratio, "target": f"≥ {TARGETS['model_fit']}× faster, params to 3 s.f.",
                    "met": ratio >= TARGETS["model_fit"] and bool(fit["params_agree"])})
    if 1 in history and args.months in history and args.months > 1:
        ratio = history[args.months] / history[1]
        shown = ", ".join(f"month {k}: {v:.1f} s" for k, v in sorted(history.items()))
        out.append({"figure": f"growth: recompute with {args.months} months of history vs 1", "project": shown, "anchor": "month 1",
                    "ratio": ratio, "target": f"≤ {TARGETS['growth']}×", "met": ratio <= TARGETS["growth"]})
    gigabytes = result["peak_rss_bytes"] / 1e9
    out.append({"figure": "memory: peak RSS, ingest + recompute of the last month", "project": f"{gigabytes:.2f} GB",
                "anchor": "—", "ratio": None, "target": f"≤ {TARGETS['memory_gb']} GB", "met": gigabytes <= TARGETS["memory_gb"]})
    return out


def markdown(result: dict) -> str:
    lines = ["| figure | project | anchor | ratio | target | met? |", "|---|---|---|---|---|---|"]
    for f in result["figures"]:
        ratio = "—" if f["ratio"] is None else f"{f['ratio']:.2f}×"
        lines.append(f"| {f['figure']} | {f['project']} | {f['anchor']} | {ratio} | {f['target']} | {'yes' if f['met'] else 'no'} |")
    if result.get("steps"):
        lines += ["", "| step of the last month | seconds (last run) | peak RSS |", "|---|---|---|"]
        lines += [f"| {name} | {step['seconds']:.1f} | {step['peak_rss_bytes'] / 1e9:.2f} GB |" for name, step in result["steps"].items()]
    machine = result["machine"]
    lines.append(f"\n{result['events_per_month']:,} events and {result['customers']:,} customers a month, {result['months']} months; "
                 f"{machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}; medians of {result['repeats']} after a warm-up.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
