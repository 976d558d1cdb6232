"""Landing files into the warehouse: one month of `raw_events`, and `customer_profiles`.

Plain Python (no Dagster) so the CLI, the benchmark and the tests can call it directly; the
assets are thin wrappers. Every record read is accounted for exactly once:

    records read = loaded + rejected + duplicates

where, for a month, "records read" are the records of the files read that belong to that
month or to no month at all (unparsable timestamp, malformed line, outside the partitions).
Records of other months are counted apart (`other_months`): their own partition loads them.

Which files a month reads: the `landing_files` manifest remembers, per file (name, size,
modification time), which months it holds, so a month's load skips files that cannot
contain it; new or changed files are always read.

A file broken for good (corrupt gzip, unknown extension) is quarantined as record 0 and the
other files load. A file that disappears or changes while it is read (an upload or rewrite in
progress) stops the load instead (`LandingFileChanged`, naming it): nothing is replaced, so the
month keeps its previous rows rather than losing those the file delivered before.

A load that would leave a month (or the profiles) holding rows with none, or with fewer than
`1 - max_shrink` of them, stops the same way (`ShrinkRefused`) unless the run allows it: an
unmounted share or a half-copied folder reads as a landing folder that lost its files.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import and_, bindparam, func, or_, select

from customer_analytics.config import DEFAULT_MAX_SHRINK, month_key, parse_month
from customer_analytics.resources.landing import (
    FileChangedWhileRead,
    LandingFile,
    RecordChunk,
    UnreadableFile,
    clip_raw,
    list_files,
    read_ahead,
    read_records,
)
from customer_analytics.resources.tables import customer_profiles, landing_files, raw_events, rejected_events
from customer_analytics.resources.warehouse import Replacement, Warehouse
from customer_analytics.month_loads import (
    PUBLISH_LOCK,
    Decision,
    MonthIds,
    mark_landing_changes,
    record_load,
    remove_from_other_months,
    resolve_redeliveries,
    shown,
)
from customer_analytics.transforms.dedupe import (
    FirstDeliveries,
    content_hashes,
    id_hashes,
    origin,
    row_digests,
    split_origin,
)
from customer_analytics.transforms.events import validate_events, validate_transactions
from customer_analytics.transforms.profiles import merge_profiles, validate_profiles

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What one load did; the counts reconcile (see the module docstring)."""

    scope: str  # the month key, or "profiles"
    files_read: list[str] = field(default_factory=list)
    files_skipped: int = 0
    unreadable_files: dict[str, str] = field(default_factory=dict)
    records_scanned: int = 0
    other_months: int = 0
    loaded: int = 0
    rejected: int = 0
    rejected_without_month: int = 0  # part of `rejected`: no readable month, or outside the partitions
    duplicates: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    previous_rows: int = 0  # rows the month (customers, for profiles) held before this load
    published_rows: int = 0  # rows it holds after
    shrink_allowed: bool = False  # the run allowed the load to drop rows past the limit
    changed: bool = False  # the month's rows differ from what it held before
    redeliveries_across_months: list[dict] = field(default_factory=list)  # ids decided against another month

    @property
    def records_read(self) -> int:
        return self.records_scanned - self.other_months

    @property
    def rejected_share(self) -> float:
        """Share of the month's own records rejected (records with no month are not the month's)."""
        own = self.records_read - self.rejected_without_month
        return (self.rejected - self.rejected_without_month) / own if own else 0.0

    def check_reconciles(self) -> None:
        if self.records_read != self.loaded + self.rejected + self.duplicates:
            raise AssertionError(
                f"{self.scope}: records read {self.records_read} != loaded {self.loaded} + rejected "
                f"{self.rejected} + duplicates {self.duplicates}; refusing to publish"
            )


class ShrinkRefused(RuntimeError):
    """A load would drop most (or all) of what a month or the profiles hold; nothing was replaced."""

    def __init__(self, scope: str, before: int, after: int, max_shrink: float):
        drop = (before - after) / before if before else 0.0
        limit = "to zero rows" if after == 0 else f"by {drop:.0%}, more than CUSTOMER_ANALYTICS_MAX_SHRINK {max_shrink:g}"
        super().__init__(
            f"{scope}: this load would shrink {before:,} rows to {after:,} ({limit}); nothing was replaced. "
            "An empty, unmounted or half-copied landing folder looks like this: check CUSTOMER_ANALYTICS_LANDING_DIR. "
            "If the loss is intended, run again with `customer-analytics materialize --allow-shrink` "
            "(run config: allow_shrink: true), or raise CUSTOMER_ANALYTICS_MAX_SHRINK"
        )
        self.scope, self.before, self.after, self.max_shrink = scope, before, after, max_shrink


def refuses_shrink(before: int, after: int, max_shrink: float) -> bool:
    """Whether replacing `before` rows by `after` is a shrink a run must allow explicitly."""
    if before == 0 or after >= before:
        return False
    return after == 0 or (before - after) / before > max_shrink


def _guard_shrink(report: LoadReport, before: int, after: int, *, allow: bool, max_shrink: float) -> None:
    report.previous_rows, report.published_rows = before, after
    if refuses_shrink(before, after, max_shrink):
        if not allow:
            raise ShrinkRefused(report.scope, before, after, max_shrink)
        report.shrink_allowed = True
        log.warning("%s: shrinking %s rows to %s, as the run allows", report.scope, f"{before:,}", f"{after:,}")


def _reason_kind(reason: str) -> str:
    """The reason without the record's own values, for counting reasons by kind."""
    kinds = []
    for part in reason.split("; "):
        kinds.append(part.split(" '")[0].split(" -")[0].split(" (")[0])
    return "; ".join(kinds)


def _storable(text: str) -> str:
    """Quarantined text as both warehouses can hold it: NUL characters and lone surrogates as visible escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class _RejectSink:
    """Collects rejected records for one load, staging them in batches."""

    def __init__(self, replacement: Replacement, report: LoadReport, *, run_id: str, started_at: datetime):
        self.replacement, self.report = replacement, report
        self.run_id, self.started_at = run_id, started_at
        self.rows: list[dict] = []

    def add_file(self, file: LandingFile, reason: str) -> None:
        """A file that could not be read at all: recorded as record 0, counted apart from records."""
        self._append(file.source, file.name, 0, "", f"file could not be read: {reason}")
        self.report.unreadable_files[file.name] = reason

    def add(self, file: LandingFile, record_number: int, raw_record: str, reason: str, *,
            event_month=None, event_id=None, customer_id=None, owned: bool = False) -> None:
        """Quarantine one record; `owned` when it belongs to the month being loaded."""
        self._append(file.source, file.name, record_number, raw_record, reason,
                     event_month=event_month, event_id=event_id, customer_id=customer_id)
        self.report.rejected += 1
        self.report.rejected_without_month += 0 if owned else 1
        self.report.reasons[_reason_kind(reason)] += 1

    def _append(self, source, source_file, record_number, raw_record, reason, *, event_month=None, event_id=None, customer_id=None):
        self.rows.append({
            "source": source, "source_file": _storable(source_file), "record_number": int(record_number),
            "raw_record": _storable(raw_record), "reason": _storable(reason), "rejected_at": self.started_at,
            "event_month": None if event_month is None or pd.isna(event_month) else pd.Timestamp(event_month),
            "event_id": None if event_id is None or pd.isna(event_id) else _storable(clip_raw(str(event_id))),
            "customer_id": None if customer_id is None or pd.isna(customer_id) else _storable(clip_raw(str(customer_id))),
            "run_id": self.run_id,
        })
        if len(self.rows) >= 50_000:
            self.flush()

    def add_other_month(self, file: LandingFile, record_number: int, raw_record: str, reason: str, *, event_month,
                        event_id=None, customer_id=None) -> None:
        """Quarantine a record of another month (a redelivery this load decided): not counted in this load's records."""
        self._append(file.source, file.name, record_number, raw_record, reason,
                     event_month=event_month, event_id=event_id, customer_id=customer_id)

    def add_frame(self, file: LandingFile, chunk: RecordChunk, rows: np.ndarray, validated: pd.DataFrame, reasons,
                  owned: np.ndarray) -> None:
        if len(rows) == 0:
            return
        raws = chunk.raw_text(rows)
        for position, raw, reason, mine in zip(rows, raws, reasons, owned):
            self.add(file, chunk.record_numbers[position], raw, reason,
                     event_month=validated["event_month"].iat[position],
                     event_id=validated["event_id"].iat[position],
                     customer_id=validated["customer_id"].iat[position], owned=bool(mine))

    def flush(self) -> None:
        if self.rows:
            frame = pd.DataFrame(self.rows)
            frame["event_month"] = pd.to_datetime(frame["event_month"])
            self.replacement.append(rejected_events, frame)
            self.rows = []


def _file_scoped(first_month: date, last_month: date):
    """Rejections no month partition owns: no readable month, or a month outside the partitions."""
    month = rejected_events.c.event_month
    return or_(month.is_(None), month < first_month, month > last_month)


def load_events_month(
    warehouse: Warehouse,
    landing_dir: str,
    month: date,
    *,
    first_month: date,
    last_month: date,
    run_id: str = "",
    started_at: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    allow_shrink: bool = False,
    max_shrink: float = DEFAULT_MAX_SHRINK,
) -> LoadReport:
    """Replace `raw_events` for `month` (and its rejections) with what the landing folder holds.

    Refused (`ShrinkRefused`, nothing replaced) when it would shrink the month past `max_shrink`,
    unless `allow_shrink`.
    """
    started_at = started_at or datetime.now(timezone.utc)
    warehouse.ensure_tables()
    files = list_files(landing_dir, "events") + list_files(landing_dir, "transactions")
    manifest = _read_manifest(warehouse)
    unreadable: dict[str, str] = {}
    # A file failing part-way restarts the load without it: its earlier chunks are already staged.
    while True:
        try:
            return _load_month_once(warehouse, files, manifest, unreadable, month, first_month, last_month,
                                    run_id, started_at, progress or (lambda message: None),
                                    shrink=dict(allow=allow_shrink, max_shrink=max_shrink))
        except _RestartWithout as restart:
            unreadable[restart.file.name] = restart.reason


class LandingFileChanged(RuntimeError):
    """A landing file disappeared or changed while it was read: the load stops and replaces nothing.

    Unlike a broken file (quarantined as record 0 while the other files load), this is a passing
    state — an upload or rewrite in progress — and publishing without the file would drop rows
    it delivered before; so the month keeps its previous contents until a rerun reads the file whole.
    """

    def __init__(self, scope: str, file: LandingFile, reason: str):
        super().__init__(
            f"{scope}: landing file {file.name} could not be read consistently: {reason}. Nothing was replaced "
            "(the tables keep their previous contents); run again once the file is complete"
        )
        self.file_name, self.reason = file.name, reason


class _RestartWithout(Exception):
    def __init__(self, file: LandingFile, reason: str):
        super().__init__(reason)
        self.file, self.reason = file, reason


def _load_month_once(warehouse, files, manifest, unreadable, month, first_month, last_month, run_id, started_at, progress,
                     *, shrink: dict) -> LoadReport:
    key = month_key(month)
    report = LoadReport(scope=key)
    seen = FirstDeliveries()
    month_ids = MonthIds()
    scanned_months: dict[str, tuple[LandingFile, set[str], int]] = {}
    with warehouse.replace(lock_name=f"raw_events/{key}") as replacement:
        replacement.replace_partition(raw_events, month)
        replacement.delete_where(rejected_events, rejected_events.c.event_month == month, keep_existing_on_conflict=True)
        rejects = _RejectSink(replacement, report, run_id=run_id, started_at=started_at)
        for file_index, file in enumerate(files):
            known = manifest.get(file.name)
            if file.name not in unreadable and known and known[:2] == (file.size, file.modified_ns) and key not in known[2]:
                report.files_skipped += 1
                continue
            if file.name in unreadable:
                report.files_read.append(file.name)
                rejects.add_file(file, unreadable[file.name])
                continue
            months_in_file: set[str] = set()
            transaction_copies: dict[str, int] = {}  # a legacy file's contents so far (their ids count them)
            scanned = 0
            staged_any = False
            try:
                # The next chunk is parsed while this one is loaded; closing stops that (and the file) at once.
                with contextlib.closing(read_ahead(read_records(file))) as chunks:
                    for chunk in chunks:
                        staged_any = True
                        scanned += chunk.records
                        _load_chunk(files, file_index, chunk, month, first_month, last_month, seen, report,
                                    replacement, rejects, months_in_file, month_ids, started_at, transaction_copies)
            except FileChangedWhileRead as error:
                raise LandingFileChanged(key, file, str(error)) from None
            except UnreadableFile as error:
                if staged_any:
                    raise _RestartWithout(file, str(error)) from None
                unreadable[file.name] = str(error)
                report.files_read.append(file.name)
                rejects.add_file(file, str(error))
                continue
            report.files_read.append(file.name)
            report.records_scanned += scanned
            scanned_months[file.name] = (file, months_in_file, scanned)
            progress(f"{key}: read {file.name} ({scanned:,} records)")
        rejects.flush()
        if report.files_read:
            replacement.delete_where(
                rejected_events,
                and_(rejected_events.c.source_file.in_(bindparam("files_read", report.files_read, expanding=True)),
                     _file_scoped(first_month, last_month)),
                keep_existing_on_conflict=True,
            )
        # Rejections no month owns, of files renamed or deleted since: no load would read them again.
        listed = replacement.stage_keys("source_file", [_storable(f.name) for f in files])
        replacement.delete_where(
            rejected_events,
            and_(rejected_events.c.source.in_(("events", "transactions")), _file_scoped(first_month, last_month),
                 rejected_events.c.source_file.not_in(select(listed.c.source_file))),
            keep_existing_on_conflict=True,
        )
        report.check_reconciles()
        touched, vanished = _landing_changes(files, manifest, scanned_months)

        def decide_and_record(replacement: Replacement) -> None:
            # Under the publish lock: no other month publishes between these reads and this month's commit.
            now = datetime.now(timezone.utc)
            decisions, lost = resolve_redeliveries(replacement, month, month_ids, [f.name for f in files],
                                                   {_storable(name) for name in report.files_read},
                                                   _manifest_months(manifest, first_month, last_month))
            _quarantine_decisions(replacement, rejects, files, month, decisions, report)
            remove_from_other_months(replacement, decisions, month, now)
            before = replacement.scalar(select(func.count()).select_from(raw_events).where(raw_events.c.event_month == month))
            _guard_shrink(report, before, report.loaded, **shrink)
            report.check_reconciles()
            report.changed = record_load(replacement, month, month_ids, lost, rows=report.loaded, at=now, run_id=run_id)
            mark_landing_changes(replacement, month, touched, vanished, now)

        replacement.before_publish(decide_and_record, lock_name=PUBLISH_LOCK)
    _update_manifest(warehouse, scanned_months, started_at)
    return report


def _load_chunk(files, file_index, chunk, month, first_month, last_month, seen, report, replacement, rejects,
                months_in_file, month_ids: MonthIds, started_at: datetime, transaction_copies: dict[str, int]) -> None:
    file = files[file_index]
    for error in chunk.errors:
        rejects.add(file, error.record_number, error.raw_record, error.reason)
    if chunk.fields.empty:
        return
    fields = chunk.fields.reset_index(drop=True)
    if file.source == "transactions":
        validated = validate_transactions(fields, transaction_copies)
    else:
        validated = validate_events(fields)
    months = validated["event_month"]
    months_in_file.update(f"{m:%Y-%m}" for m in months.dropna().unique())
    has_month = months.notna().to_numpy()
    month_values = months.to_numpy(dtype="datetime64[D]")
    in_range = has_month & (month_values >= np.datetime64(first_month)) & (month_values <= np.datetime64(last_month))
    mine = has_month & (month_values == np.datetime64(month))
    report.other_months += int((in_range & ~mine).sum())

    reasons = validated["reject_reason"]
    invalid = reasons.notna().to_numpy()
    # Rejected here: this month's invalid records, and records no month owns.
    out_of_range = has_month & ~in_range
    for_rejection = (mine & invalid) | ~has_month | out_of_range
    rows = np.flatnonzero(for_rejection)
    # Built for the rejected rows only: string work over every row of a chunk costs more than the rest of the check.
    reasons_out = reasons.iloc[rows]
    range_reason = np.where(
        month_values[rows] < np.datetime64(first_month),
        f"event_timestamp is before the first month partition {first_month:%Y-%m} (CUSTOMER_ANALYTICS_START_MONTH)",
        f"event_timestamp is after the month in progress ({last_month:%Y-%m})",
    )
    combined = reasons_out.where(~out_of_range[rows],
                                 reasons_out.fillna("").where(reasons_out.isna(), reasons_out + "; ") + range_reason)
    rejects.add_frame(file, chunk, rows, validated, combined, mine[rows])

    # Deliveries of any in-range month take part in "first delivery wins"; this month's are loaded.
    candidates = np.flatnonzero(in_range & ~invalid)
    if len(candidates) == 0:
        return
    batch = validated.iloc[candidates]
    ids, contents = id_hashes(batch["event_id"]), content_hashes(batch)
    status, first = seen.classify(ids, contents, origin(file_index, chunk.record_numbers[candidates]))
    batch_mine = mine[candidates]
    report.duplicates += int(((status == 1) & batch_mine).sum())
    conflicts = np.flatnonzero((status == 2) & batch_mine)
    if len(conflicts):
        messages = []
        for position in conflicts:
            first_file, first_record = split_origin(first[position])
            messages.append(
                f"event_id {batch['event_id'].iat[position]!r} was already delivered with different contents "
                f"({files[first_file].name}, record {first_record}); the first delivery is kept"
            )
        rejects.add_frame(file, chunk, candidates[conflicts], validated, messages, np.ones(len(conflicts), dtype=bool))
    kept = (status == 0) & batch_mine
    keep = candidates[kept]
    if len(keep) == 0:
        return
    month_ids.add(ids[kept], row_digests(ids[kept], contents[kept]), origin(file_index, chunk.record_numbers[keep]))
    rows_out = validated.iloc[keep].drop(columns=["reject_reason", "event_month"])
    rows_out["source_record"] = chunk.record_numbers[keep]
    replacement.append(raw_events, rows_out, constants={"event_month": month, "source": file.source,
                                                        "source_file": file.name, "ingested_at": started_at})
    report.loaded += len(rows_out)


def _quarantine_decisions(replacement: Replacement, rejects: _RejectSink, files: list[LandingFile], month: date,
                          decisions: list[Decision], report: LoadReport) -> None:
    """Quarantine the deliveries that lost to another month's: this month's leave its staged rows."""
    by_name = {f.name: f for f in files}
    lost_here = [d for d in decisions if d.lost_month == month]
    for decision in decisions:
        row = decision.lost_row
        file = by_name.get(row["source_file"]) or LandingFile(Path(row["source_file"]), row["source_file"], row["source"], 0, 0)
        raw = shown(row)
        if decision.lost_month == month:
            rejects.add(file, int(row["source_record"]), raw, decision.reason, event_month=month,
                        event_id=decision.event_id, customer_id=row["customer_id"], owned=True)
        else:  # another month's row: counted in that month, not in this load's records
            rejects.add_other_month(file, int(row["source_record"]), raw, decision.reason, event_month=decision.lost_month,
                                    event_id=decision.event_id, customer_id=row["customer_id"])
        report.redeliveries_across_months.append({"event_id": decision.event_id, "kept_in": f"{decision.kept_month:%Y-%m}",
                                                  "quarantined_in": f"{decision.lost_month:%Y-%m}"})
    rejects.flush()
    if lost_here:
        report.loaded -= len(lost_here)
        keys = replacement.stage_keys("event_id", [d.event_id for d in lost_here])
        replacement.execute(f"DELETE FROM {replacement.staged(raw_events)} WHERE event_id IN "
                            f"(SELECT event_id FROM {keys.schema}.{replacement.warehouse.quote(keys.name)})", {}, writes=raw_events)


def _landing_changes(files: list[LandingFile], manifest: dict, scanned: dict) -> tuple[set[date], list[str]]:
    """Months whose landing files this load found changed (as they were and are) or gone, and the files gone."""
    touched: set[str] = set()
    for name, (file, months, _records) in scanned.items():
        known = manifest.get(name)
        if known and known[:2] != (file.size, file.modified_ns):
            touched |= known[2] | months
    listed = {f.name for f in files}
    vanished = sorted(name for name in manifest if name not in listed)
    for name in vanished:
        touched |= manifest[name][2]
    return {parse_month(key) for key in touched}, vanished


def _manifest_months(manifest: dict, first_month: date, last_month: date) -> set[date]:
    months = {parse_month(key) for _size, _modified, keys in manifest.values() for key in keys}
    return {m for m in months if first_month <= m <= last_month}


def _read_manifest(warehouse: Warehouse) -> dict[str, tuple[int, int, set[str]]]:
    frame = warehouse.read_frame(landing_files.select())
    return {
        row.source_file: (int(row.size_bytes), int(row.modified_ns), set(filter(None, row.months.split(","))))
        for row in frame.itertuples()
    }


def _update_manifest(warehouse: Warehouse, scanned: dict[str, tuple[LandingFile, set[str], int]], at: datetime) -> None:
    if not scanned:
        return
    frame = pd.DataFrame([
        {"source_file": name, "size_bytes": file.size, "modified_ns": file.modified_ns,
         "months": ",".join(sorted(months)), "records": records, "scanned_at": at}
        for name, (file, months, records) in scanned.items()
    ])
    with warehouse.replace(lock_name="landing_files") as replacement:
        replacement.delete_where(landing_files, landing_files.c.source_file.in_(bindparam("names", list(scanned), expanding=True)))
        replacement.append(landing_files, frame)


def load_profiles(warehouse: Warehouse, landing_dir: str, *, run_id: str = "", started_at: datetime | None = None,
                  allow_shrink: bool = False, max_shrink: float = DEFAULT_MAX_SHRINK) -> LoadReport:
    """Replace `customer_profiles` (and the profile rejections) from every profile file.

    `loaded` counts profile records merged; a customer with several records is one row. Refused
    (`ShrinkRefused`) when it would shrink the customers past `max_shrink`, unless `allow_shrink`.
    """
    started_at = started_at or datetime.now(timezone.utc)
    warehouse.ensure_tables()
    report = LoadReport(scope="profiles")
    valid_parts = []
    with warehouse.replace(lock_name="customer_profiles") as replacement:
        replacement.delete_where(customer_profiles, customer_profiles.c.customer_id.is_not(None))
        replacement.delete_where(rejected_events, rejected_events.c.source == "profiles")
        rejects = _RejectSink(replacement, report, run_id=run_id, started_at=started_at)
        for file in list_files(landing_dir, "profiles"):
            report.files_read.append(file.name)
            try:
                # Profiles are small enough to validate a whole file before keeping any of it.
                chunks = [(chunk, validate_profiles(chunk.fields.reset_index(drop=True)) if not chunk.fields.empty else None)
                          for chunk in read_records(file)]
            except FileChangedWhileRead as error:
                raise LandingFileChanged("profiles", file, str(error)) from None
            except UnreadableFile as error:
                rejects.add_file(file, str(error))
                continue
            for chunk, validated in chunks:
                report.records_scanned += chunk.records
                for error in chunk.errors:
                    rejects.add(file, error.record_number, error.raw_record, error.reason)
                if validated is None:
                    continue
                bad = np.flatnonzero(validated["reject_reason"].notna().to_numpy())
                for position, raw in zip(bad, chunk.raw_text(bad)):
                    rejects.add(file, chunk.record_numbers[position], raw, validated["reject_reason"].iat[position],
                                customer_id=validated["customer_id"].iat[position])
                good = validated[validated["reject_reason"].isna()].drop(columns=["reject_reason"])
                valid_parts.append(good.assign(source_file=file.name))
        records = pd.concat(valid_parts, ignore_index=True) if valid_parts else pd.DataFrame(columns=["customer_id"])
        report.loaded = len(records)
        merged = merge_profiles(records).assign(updated_at=started_at)
        rejects.flush()
        replacement.append(customer_profiles, merged)
        report.check_reconciles()
        before = replacement.scalar(select(func.count()).select_from(customer_profiles))
        _guard_shrink(report, before, len(merged), allow=allow_shrink, max_shrink=max_shrink)
    return report
