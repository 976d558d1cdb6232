"""Synthetic landing data: a small online shop, simulated, written as the shop would deliver it.

`generate_sample(out_dir)` fills a landing folder that the ingestion assets read. The same
arguments always produce byte-identical files (seeded numpy generators, gzip with no name or
time in its header, deterministic Parquet, no wall-clock time anywhere).

The synthetic world
-------------------
* **Customers** (`C000001`, …) sign up over the simulated months, more of them early on
  (a month's share of signups falls by 10 % a month, times its season). Each has a country
  (US, GB, DE, FR, ES, IT, NL, CA), a city there, a usual device and a profile.
* **Buying follows the BG/NBD story**, so a CLV model fitted on the data makes sense: a
  customer's order rate λ (orders per average month) is Gamma(0.9, 0.67) distributed, and
  after every order they drop out for good with their own probability p ~ Beta(0.8, 3.2).
  About one customer in five never buys and only browses until they lose interest
  (exponential lifetime, two months on average). Some buy once, a few many times.
* **Seasonal clock**: activity per hour is a month factor (November ×1.5, December ×1.8,
  late-winter and summer dips) × a weekday factor (weekends busier) × an hour-of-day curve.
  Signups, orders and browsing sessions are placed on that clock, so they bunch up in busy
  hours and at the end of the year.
* **Sessions**: a customer's first session is their signup (a login and page views). A
  browsing session is page views, perhaps a search, product views and now and then an
  abandoned add_to_cart. An order session is page views, then for each of its 1–3 products
  a product_view, an add_to_cart and one purchase event (price paid, quantity). Events in a
  session are a few seconds to minutes apart. Products come from a catalogue of 400
  products in 12 categories with their own price levels; popular products sell more, and
  November/December orders are more often discounted.
* **Legacy till**: about 15 % of customers also shop in store; roughly 60 % of their orders
  are rung up on the legacy till and land as transaction rows (time, basket total) instead
  of events.
* Sessions carry a device (mobile/desktop/tablet) with a matching user agent, a referrer
  (search engines, social, newsletter, partner, or none), and the customer's country (now
  and then another one: travel). Every timestamp lies in [start month, start + months) UTC.
  At the defaults that is about 36 events per customer. The world does not depend on
  bad_rate: corruption draws come from their own random stream, so the same seed gives the
  same events with or without bad records.

The landing folder
------------------
``events/``
    One file per month, formats rotating ndjson, jsonl.gz, parquet, csv, ndjson, ndjson, …
    (`2025-01.ndjson`, `2025-02.jsonl.gz`, `2025-03.parquet`, `2025-04.csv`, …). One file,
    `<m>_<m+1>.ndjson` (the fifth month's, or the first month's when there are 2–5 months),
    also holds the first three days of the next month. Fields: `EVENT_FIELDS`. NDJSON
    records have every field, null where empty, except that a purchase's quantity is now
    and then left out (which means 1). Parquet: price float64, quantity int64, all else
    string. CSV: a header row, empty fields for nulls. Records are in time order. Timestamps
    are mostly `YYYY-MM-DD HH:MM:SS` (UTC); 5 % are `YYYY-MM-DDTHH:MM:SSZ` and 5 % carry one
    of the session country's usual UTC offsets (`2025-03-01T10:15:00+01:00` for 09:15 UTC;
    the offsets are plausible, not daylight-saving exact). The first plain
    `.ndjson` file holds three blank lines (not records). `redelivery_<m>.ndjson` repeats
    2 % of the valid events of the month of the last plain `.ndjson` file, byte for byte.
``transactions/``
    `legacy_<start year>.csv` and `legacy_extra.ndjson` (the second store): customer_id,
    transaction_date (`YYYY-MM-DD HH:MM:SS`), transaction_amount (2 decimals), in time order
    (except the row with the garbled date).
    Two rows are followed by an identical row (same customer, time and amount): the same
    basket rung up twice, i.e. two real purchases, not a duplicate delivery.
``profiles/``
    `customers.csv` (every customer), `updates.ndjson` (full profile rows of customers who
    moved: a later last_login and another city; the latest last_login wins) and
    `demographics.ndjson` (customer_id, age, location only, for about a quarter of the
    customers, including most of those whose profile has no age).

Bad records (only when bad_rate > 0)
------------------------------------
Each event record is corrupted with probability bad_rate, as one of `EVENT_BAD_KINDS`
chosen uniformly among the kinds that fit the record: the price and quantity kinds only hit
purchases, and Parquet's types cannot hold a truncated record, a price of "abc" or a
quantity of 2.5. "Missing" means a left-out key or a null in NDJSON (half each), an empty
field in CSV, a null in Parquet. "malformed" is a line cut short in NDJSON (after its
event_id) and a row with four fields too few in CSV. Every corrupted record keeps its
event_id. On top: one legacy till row with a negative amount (a refund), one with an
unparsable date, and one profile row without a customer_id. `SampleSummary.bad_records`
counts each kind; the redelivery only repeats valid events.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import json
import math
import numbers
import os
from dataclasses import dataclass
from datetime import date, datetime
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from customer_analytics.config import add_months, month_key, parse_month

__all__ = [
    "EVENT_BAD_KINDS",
    "EVENT_FIELDS",
    "FileSummary",
    "SampleSummary",
    "generate_sample",
]

EVENT_FIELDS = (
    "event_id", "customer_id", "event_type", "event_timestamp", "session_id", "page_url",
    "product_id", "category_id", "price", "quantity", "device_type", "country", "referrer",
    "user_agent",
)
TRANSACTION_FIELDS = ("customer_id", "transaction_date", "transaction_amount")
PROFILE_FIELDS = (
    "customer_id", "email", "first_name", "last_name", "age", "gender", "city", "country",
    "signup_date", "last_login",
)
DEMOGRAPHIC_FIELDS = ("customer_id", "age", "location")

EVENT_BAD_KINDS = (
    "malformed", "missing_customer_id", "missing_event_type", "missing_event_timestamp",
    "unparsable_timestamp", "missing_price", "non_numeric_price", "negative_price",
    "negative_quantity", "non_integer_quantity",
)
TRANSACTION_BAD_KINDS = ("negative_amount", "unparsable_date")
PROFILE_BAD_KINDS = ("missing_customer_id",)

MAX_MONTHS = 120
MAX_BAD_RATE = 0.5

_STR = np.dtypes.StringDType()

# --- the shop's world -------------------------------------------------------------------

# Event types in the order they appear within a session; the index is the type's code.
_EVENT_TYPES = ("login", "page_view", "search", "product_view", "add_to_cart", "purchase")
_LOGIN, _PAGE_VIEW, _SEARCH, _PRODUCT_VIEW, _ADD_TO_CART, _PURCHASE = range(6)

_CATEGORIES = (  # slug, typical price
    ("electronics", 180.0), ("books", 14.0), ("clothing", 38.0), ("shoes", 70.0),
    ("home", 45.0), ("kitchen", 32.0), ("beauty", 22.0), ("toys", 26.0), ("sports", 55.0),
    ("garden", 40.0), ("grocery", 9.0), ("jewelry", 95.0),
)
_PRODUCT_COUNT = 400

_COUNTRIES = (  # code, share of customers, cities, UTC offsets their timestamps may carry
    ("US", 0.34, ("New York", "Los Angeles", "Chicago", "Houston", "Seattle"), ("-05:00", "-06:00", "-08:00")),
    ("GB", 0.16, ("London", "Manchester", "Birmingham", "Leeds"), ("+00:00", "+01:00")),
    ("DE", 0.15, ("Berlin", "Hamburg", "Munich", "Cologne"), ("+01:00", "+02:00")),
    ("FR", 0.11, ("Paris", "Lyon", "Marseille", "Toulouse"), ("+01:00", "+02:00")),
    ("ES", 0.08, ("Madrid", "Barcelona", "Valencia", "Seville"), ("+01:00", "+02:00")),
    ("IT", 0.06, ("Rome", "Milan", "Naples", "Turin"), ("+01:00", "+02:00")),
    ("NL", 0.05, ("Amsterdam", "Rotterdam", "Utrecht"), ("+01:00", "+02:00")),
    ("CA", 0.05, ("Toronto", "Vancouver", "Montreal"), ("-05:00", "-08:00")),
)

_DEVICES = ("mobile", "desktop", "tablet")
_DEVICE_SHARES = (0.55, 0.35, 0.10)
_USER_AGENTS = (
    (  # mobile
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Mobile Safari/537.36",
    ),
    (  # desktop
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    ),
    (  # tablet
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    ),
)
_REFERRERS = (  # None: typed in / bookmark
    None, "https://www.google.com/", "https://www.bing.com/", "https://www.facebook.com/",
    "https://www.instagram.com/", "https://newsletter.example.com/", "https://partner.example.net/deals",
)
_REFERRER_SHARES = (0.35, 0.30, 0.05, 0.08, 0.08, 0.09, 0.05)
_SITE = "https://shop.example.com"

_FIRST_NAMES = (
    "Anna", "Ben", "Carla", "David", "Elena", "Felix", "Grace", "Hugo", "Isabel", "Jonas",
    "Klara", "Liam", "Maria", "Noah", "Olivia", "Paul", "Quentin", "Rosa", "Samuel", "Tara",
    "Umar", "Vera", "William", "Xenia", "Yusuf", "Zoe", "Lucas", "Emma", "Mateo", "Sofia",
    "Leon", "Mia", "James", "Chloe", "Luca", "Ines", "Oscar", "Julia", "Adam", "Lea",
)
_LAST_NAMES = (
    "Smith", "Johnson", "Brown", "Garcia", "Miller", "Martin", "Bernard", "Dubois", "Schmidt",
    "Schneider", "Fischer", "Weber", "Rossi", "Russo", "Ferrari", "Lopez", "Martinez",
    "Sanchez", "Jansen", "de Vries", "Taylor", "Wilson", "Evans", "Thomas", "Moreau",
    "Laurent", "Wagner", "Becker", "Romano", "Gomez", "Bakker", "Visser", "Clark", "Lewis",
    "Walker", "Hall", "Young", "King", "Wright", "Green",
)
_GENDERS = ("F", "M", "X", "")
_GENDER_SHARES = (0.47, 0.47, 0.02, 0.04)

# Seasonal clock factors: calendar month (Jan..Dec), weekday (Mon..Sun), UTC hour.
_MONTH_FACTOR = np.array([0.90, 0.85, 0.95, 0.95, 1.00, 0.95, 0.90, 0.90, 1.00, 1.05, 1.50, 1.80])
_WEEKDAY_FACTOR = np.array([1.0, 0.95, 0.95, 1.0, 1.05, 1.2, 1.15])
_HOUR_FACTOR = np.array([
    0.30, 0.20, 0.15, 0.12, 0.12, 0.18, 0.30, 0.50, 0.70, 0.85, 0.95, 1.00,
    1.05, 1.00, 0.95, 0.95, 1.00, 1.10, 1.25, 1.40, 1.50, 1.40, 1.00, 0.60,
])

# Event files rotate through these formats month by month: mostly NDJSON.
_FORMAT_CYCLE = ("ndjson", "jsonl.gz", "parquet", "csv", "ndjson", "ndjson")
_SPAN_DAYS = 3  # how far into the next month the two-month file reaches

# Value kinds of an event field in a file: left out (NDJSON only), null, or a value.
_ABSENT, _NULL, _VALUE = 0, 1, 2

_BAD_CODE = {kind: code for code, kind in enumerate(EVENT_BAD_KINDS, start=1)}
_GENERAL_KINDS = np.array([_BAD_CODE[k] for k in EVENT_BAD_KINDS[:5]])
_PURCHASE_KINDS = np.array([_BAD_CODE[k] for k in EVENT_BAD_KINDS])
_PARQUET_GENERAL_KINDS = _GENERAL_KINDS[1:]
_PARQUET_PURCHASE_KINDS = np.array([
    _BAD_CODE[k] for k in EVENT_BAD_KINDS
    if k not in ("malformed", "non_numeric_price", "non_integer_quantity")
])


def _check_plain_vocabulary() -> None:
    """NDJSON and CSV lines are assembled without escaping, which is only right if no
    vocabulary string holds a character JSON would escape or a quote CSV would double."""
    texts = [s for s in _REFERRERS if s] + [u for group in _USER_AGENTS for u in group]
    texts += [c[0] for c in _CATEGORIES] + list(_DEVICES) + [_SITE]
    for _, _, cities, offsets in _COUNTRIES:
        texts += list(cities) + list(offsets)
    for text in texts:
        if json.dumps(text) != f'"{text}"' or '"' in text or "\n" in text:
            raise RuntimeError(f"sample vocabulary entry needs escaping: {text!r}")


_check_plain_vocabulary()


# --- the summary --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSummary:
    """One file written: its path relative to the landing folder, format and records.

    `records` counts records as a reader sees them: NDJSON/CSV data lines (blank lines and
    the CSV header excluded, corrupted lines included), Parquet rows.
    """

    path: str
    format: str
    records: int
    bad_records: int = 0
    months: tuple[str, ...] = ()


@dataclass(frozen=True)
class SampleSummary:
    """What `generate_sample` wrote.

    events: event records in the events folder, each simulated event once (corrupted ones
    included, the redelivered copies not). purchases / orders: purchase events among them
    and the order sessions they belong to. transactions / profiles / profile_updates /
    demographics: rows of those files, bad and duplicate rows included. bad_records:
    (`<folder>/<kind>`, count) for every kind, zero counts included.
    duplicate_deliveries: records in `redelivery_file`.
    """

    out_dir: Path
    customers: int
    start: str
    months: int
    seed: int
    bad_rate: float
    files: tuple[FileSummary, ...]
    events: int
    purchases: int
    orders: int
    transactions: int
    profiles: int
    profile_updates: int
    demographics: int
    bad_records: tuple[tuple[str, int], ...]
    duplicate_deliveries: int
    redelivery_file: str

    @property
    def bad_total(self) -> int:
        return sum(count for _, count in self.bad_records)

    def bad_count(self, folder: str | None = None, kind: str | None = None) -> int:
        """Bad records injected, optionally only in one folder and/or of one kind."""
        total = 0
        for key, count in self.bad_records:
            key_folder, key_kind = key.split("/", 1)
            if (folder is None or folder == key_folder) and (kind is None or kind == key_kind):
                total += count
        return total

    def file(self, path: str) -> FileSummary:
        """The summary of one file by its path relative to the landing folder."""
        for summary in self.files:
            if summary.path == path:
                return summary
        raise KeyError(path)

    def to_text(self) -> str:
        last_month = month_key(add_months(parse_month(self.start), self.months - 1))
        lines = [
            f"Sample landing data in {self.out_dir}",
            f"  {self.customers:,} customers, {self.start} .. {last_month} ({self.months} months), "
            f"seed {self.seed}, bad rate {self.bad_rate:g}",
            "",
            "Files:",
        ]
        width = max(len(f.path) for f in self.files)
        for f in self.files:
            bad = f"  ({f.bad_records:,} bad)" if f.bad_records else ""
            lines.append(f"  {f.path:<{width}}  {f.format:<8} {f.records:>10,} records{bad}")
        lines += [
            "",
            f"Events: {self.events:,} (purchases {self.purchases:,} in {self.orders:,} orders)",
            f"Duplicate deliveries: {self.duplicate_deliveries:,} events repeated in {self.redelivery_file}",
            f"Legacy transactions: {self.transactions:,}",
            f"Profiles: {self.profiles:,} (+ {self.profile_updates:,} updates, "
            f"{self.demographics:,} demographic rows)",
            f"Bad records: {self.bad_total:,}",
        ]
        lines += [f"  {key:<36} {count:>8,}" for key, count in self.bad_records if count]
        return "\n".join(lines)


# --- entry point --------------------------------------------------------------------------


def generate_sample(
    out_dir: Path | str,
    *,
    customers: int = 2000,
    start: str = "2025-01",
    months: int = 12,
    seed: int = 7,
    bad_rate: float = 0.01,
    until: datetime | None = None,
) -> SampleSummary:
    """Simulate the shop and write its landing folder into `out_dir` (see the module docs).

    `until` (aware): nothing happens after it, e.g. now when the sample ends with the month in
    progress (the CLI's default), so no event is dated in the future; without it every month is whole.

    Raises ValueError for invalid arguments, and when `out_dir` already holds landing files
    this sample would not overwrite (they would mix with the sample).
    """
    first_month = _validate(customers, start, months, seed, bad_rate)
    customers, months, seed, bad_rate = int(customers), int(months), int(seed), float(bad_rate)
    out_dir = Path(out_dir)
    seeds = np.random.SeedSequence(seed)
    world_rng, session_rng, bad_rng, delivery_rng = (np.random.default_rng(s) for s in seeds.spawn(4))
    # Ids depend on every argument that shapes the world, so two different samples never
    # share an event id with different content.
    world_key = [seed, customers, months, first_month.year, first_month.month]
    id_salt = int(np.random.SeedSequence(world_key).generate_state(1, np.uint64)[0])
    clock = _SeasonalClock(first_month, months, None if until is None else int(until.timestamp()))
    plan = _plan_event_files(first_month, months)
    transaction_paths = (f"transactions/legacy_{first_month.year}.csv", "transactions/legacy_extra.ndjson")
    profile_paths = ("profiles/customers.csv", "profiles/updates.ndjson", "profiles/demographics.ndjson")
    redelivery_path = f"events/redelivery_{plan.redelivery_month}.ndjson"
    _check_out_dir(out_dir, [f.path for f in plan.files] + [redelivery_path, *transaction_paths, *profile_paths])

    catalogue = _Catalogue.create(world_rng)
    people = _simulate_customers(world_rng, customers, clock)
    sessions = _simulate_sessions(session_rng, people, catalogue, clock)
    events = _build_events(session_rng, sessions, catalogue, clock)
    bad_codes = _choose_event_corruptions(bad_rng, events, plan, bad_rate)

    files: list[FileSummary] = []
    bad_counts = {f"events/{kind}": 0 for kind in EVENT_BAD_KINDS}
    for code, count in zip(*np.unique(bad_codes[bad_codes > 0], return_counts=True)):
        bad_counts[f"events/{EVENT_BAD_KINDS[code - 1]}"] = int(count)

    redelivered = 0
    for index, spec in enumerate(plan.files):
        lo, hi = np.searchsorted(events.secs, [spec.lo, spec.hi])
        lo, hi = int(lo), int(hi)
        payload = _EventPayload(events, people, slice(lo, hi), bad_codes[lo:hi], bad_rng, id_salt)
        blank_lines = 3 if index == plan.blank_lines_file else 0
        data, line_of = payload.encode(spec.format, delivery_rng, blank_lines)
        _write(out_dir, spec.path, data, gzipped=spec.format == "jsonl.gz")
        files.append(FileSummary(
            spec.path, spec.format, hi - lo, int(np.count_nonzero(bad_codes[lo:hi])),
            clock.months_present(events.secs[lo:hi]),
        ))
        if index == plan.redelivery_file:
            month = clock.month_keys.index(plan.redelivery_month)
            month_range = clock.month_starts[month], clock.month_starts[month + 1]
            chosen = _choose_redelivery(delivery_rng, events.secs[lo:hi], bad_codes[lo:hi], *month_range)
            _write(out_dir, redelivery_path, "".join(line_of(i) for i in chosen.tolist()).encode())
            redelivered = len(chosen)
            months_held = (plan.redelivery_month,) if redelivered else ()
            files.append(FileSummary(redelivery_path, "ndjson", redelivered, 0, months_held))

    transaction_files, transaction_bad = _write_transactions(
        out_dir, transaction_paths, world_rng, bad_rng, sessions, people, clock, bad_rate > 0
    )
    profile_files, profile_bad = _write_profiles(
        out_dir, profile_paths, world_rng, bad_rng, sessions, people, clock, bad_rate > 0
    )
    files += transaction_files + profile_files
    bad_counts.update(transaction_bad)
    bad_counts.update(profile_bad)

    return SampleSummary(
        out_dir=out_dir,
        customers=customers,
        start=month_key(first_month),
        months=months,
        seed=seed,
        bad_rate=bad_rate,
        files=tuple(sorted(files, key=lambda f: f.path)),
        events=len(events.secs),
        purchases=int(np.count_nonzero(events.type == _PURCHASE)),
        orders=int(np.count_nonzero((sessions.kind == 2) & ~sessions.till)),
        transactions=sum(f.records for f in transaction_files),
        profiles=profile_files[0].records,
        profile_updates=profile_files[1].records,
        demographics=profile_files[2].records,
        bad_records=tuple(bad_counts.items()),
        duplicate_deliveries=redelivered,
        redelivery_file=redelivery_path,
    )


def _validate(customers, start, months, seed, bad_rate) -> date:
    def whole(value) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    if not whole(customers) or customers < 1:
        raise ValueError(f"customers must be a whole number >= 1, got {customers!r}")
    if not whole(months) or not 1 <= months <= MAX_MONTHS:
        raise ValueError(f"months must be a whole number from 1 to {MAX_MONTHS}, got {months!r}")
    if not whole(seed) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if (
        not isinstance(bad_rate, numbers.Real) or isinstance(bad_rate, bool)
        or not math.isfinite(bad_rate) or not 0 <= bad_rate <= MAX_BAD_RATE
    ):
        raise ValueError(
            f"bad_rate must be a number from 0 to {MAX_BAD_RATE} (the share of event records "
            f"to corrupt), got {bad_rate!r}"
        )
    if not isinstance(start, str):
        raise ValueError(f"start {start!r} is not a month: use YYYY-MM, e.g. 2025-01")
    first_month = parse_month(start, what="start")  # ConfigError, a ValueError, says what is valid
    if add_months(first_month, int(months)) > date(9999, 1, 1):
        raise ValueError(f"start {start} + {months} months must end by 9999-01")
    return first_month


def _check_out_dir(out_dir: Path, paths: list[str]) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} is a file: give a folder (new or empty)")
    expected = set(paths)
    foreign = sorted(
        path.relative_to(out_dir).as_posix()
        for folder in ("events", "transactions", "profiles")
        if (out_dir / folder).is_dir()
        for path in (out_dir / folder).rglob("*")
        if path.is_file() and path.relative_to(out_dir).as_posix() not in expected
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
        raise ValueError(
            f"out_dir {out_dir} already holds landing files this sample would not overwrite "
            f"({shown}): use a new or empty folder, or one generated with the same start and months"
        )


def _write(out_dir: Path, relative: str, data: bytes | Iterable[bytes], *, gzipped: bool = False) -> None:
    """Write bytes (or chunks of them) via a temporary file and a rename, so no reader ever
    sees half a file. gzip gets no file name and mtime 0: the bytes depend on content only."""
    path = out_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as raw:
            sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) if gzipped else raw
            for chunk in [data] if isinstance(data, bytes) else data:
                sink.write(chunk)
            if gzipped:
                sink.close()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# --- time ---------------------------------------------------------------------------------


def _epoch_seconds(day: date) -> int:
    return int(np.datetime64(day.isoformat(), "s").astype(np.int64))


def _format_utc(secs: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DD HH:MM:SS` strings of epoch seconds."""
    iso = np.datetime_as_string(np.asarray(secs, dtype=np.int64).astype("datetime64[s]")).astype(_STR)
    return np.strings.replace(iso, "T", " ")


class _SeasonalClock:
    """Maps activity time (1.0 = one average month of activity) to UTC epoch seconds.

    Placing things uniformly in activity time puts them where the shop is busy."""

    def __init__(self, first_month: date, months: int, until: int | None = None):
        self.months = months
        self.start = _epoch_seconds(first_month)
        self.end = _epoch_seconds(add_months(first_month, months))
        self.month_starts = np.array([_epoch_seconds(add_months(first_month, i)) for i in range(months + 1)])
        hour_starts = np.arange(self.start, self.end, 3600, dtype=np.int64)
        calendar_month = hour_starts.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12
        weekday = (hour_starts // 86400 + 3) % 7  # 1970-01-01 was a Thursday
        hour = (hour_starts // 3600) % 24
        intensity = _MONTH_FACTOR[calendar_month] * _WEEKDAY_FACTOR[weekday] * _HOUR_FACTOR[hour]
        cumulative = np.concatenate([[0.0], np.cumsum(intensity)])
        self.cumulative = cumulative * (months / cumulative[-1])
        self.month_marks = self.cumulative[(self.month_starts - self.start) // 3600]
        self.month_keys = [month_key(add_months(first_month, i)) for i in range(months)]
        self._horizon = float(months)
        if until is not None and self.start < until < self.end:
            # The shop so far: activity stops at `until` (the month in progress is cut at now, at its usual
            # pace, not squeezed), and nothing is clamped to later than it.
            edges = self.start + 3600 * np.arange(len(self.cumulative))
            self._horizon = float(np.interp(until, edges, self.cumulative))
            self.month_marks = np.minimum(self.month_marks, self._horizon)
            self.end = int(until)

    @property
    def horizon(self) -> float:
        return self._horizon

    def months_present(self, secs: np.ndarray) -> tuple[str, ...]:
        """The `YYYY-MM` keys of the months these instants fall in."""
        index = np.unique(np.searchsorted(self.month_starts, secs, side="right") - 1)
        return tuple(self.month_keys[i] for i in index.tolist())

    def to_seconds(self, activity: np.ndarray) -> np.ndarray:
        hours = len(self.cumulative) - 1
        index = np.clip(np.searchsorted(self.cumulative, activity, side="right") - 1, 0, hours - 1)
        width = self.cumulative[index + 1] - self.cumulative[index]
        fraction = np.clip((activity - self.cumulative[index]) / width, 0.0, 1.0)
        secs = self.start + index * 3600 + np.floor(fraction * 3600).astype(np.int64)
        return np.minimum(secs, self.end - 1)


# --- the event files ----------------------------------------------------------------------


@dataclass(frozen=True)
class _FileSpec:
    path: str
    format: str
    lo: int  # first second it holds
    hi: int  # first second it no longer holds


@dataclass(frozen=True)
class _FilePlan:
    files: tuple[_FileSpec, ...]
    blank_lines_file: int
    redelivery_file: int
    redelivery_month: str


def _plan_event_files(first_month: date, months: int) -> _FilePlan:
    """Which event file holds which seconds, in which format (see the module docs)."""
    keys = [month_key(add_months(first_month, i)) for i in range(months + 1)]
    bounds = [_epoch_seconds(add_months(first_month, i)) for i in range(months + 1)]
    span = 4 if months >= 6 else 0 if months >= 2 else None
    if span is not None:
        bounds[span + 1] += _SPAN_DAYS * 86400
    files = []
    for i in range(months):
        fmt = _FORMAT_CYCLE[i % len(_FORMAT_CYCLE)]
        name = f"{keys[i]}_{keys[i + 1]}" if i == span else keys[i]
        files.append(_FileSpec(f"events/{name}.{fmt}", fmt, bounds[i], bounds[i + 1]))
    plain = [i for i, f in enumerate(files) if f.format == "ndjson"]
    return _FilePlan(tuple(files), plain[0], plain[-1], keys[plain[-1]])


def _choose_redelivery(rng, secs, bad_codes, lo: int, hi: int) -> np.ndarray:
    """About 2 % of the file's valid events in [lo, hi), in file order."""
    candidates = np.flatnonzero((secs >= lo) & (secs < hi) & (bad_codes == 0))
    if candidates.size == 0:
        return candidates
    count = max(1, round(0.02 * candidates.size))
    return np.sort(rng.choice(candidates, size=count, replace=False))


# --- simulation ---------------------------------------------------------------------------


@dataclass
class _Catalogue:
    product_category: np.ndarray  # category index per product
    product_cents: np.ndarray     # list price per product
    popularity: np.ndarray        # probability of each product being picked
    category_popularity: np.ndarray

    @classmethod
    def create(cls, rng: np.random.Generator) -> "_Catalogue":
        category = rng.integers(0, len(_CATEGORIES), _PRODUCT_COUNT)
        typical = np.array([price for _, price in _CATEGORIES])[category]
        list_price = typical * rng.lognormal(0.0, 0.45, _PRODUCT_COUNT)
        cents = np.floor(list_price).astype(np.int64) * 100 + 99  # prices end in .99
        weight = rng.permutation(1.0 / np.arange(1, _PRODUCT_COUNT + 1) ** 0.8)
        popularity = weight / weight.sum()
        category_popularity = np.bincount(category, weights=popularity, minlength=len(_CATEGORIES))
        return cls(category, cents, popularity, category_popularity / category_popularity.sum())


@dataclass
class _Customers:
    count: int
    signup_activity: np.ndarray
    signup_secs: np.ndarray
    active_until: np.ndarray    # activity time after which they never come back
    browse_rate: np.ndarray     # browsing sessions per average month while active
    order_customer: np.ndarray  # one entry per order
    order_activity: np.ndarray
    country: np.ndarray
    city: np.ndarray            # index into the flat city table
    device: np.ndarray
    till: np.ndarray            # also shops in store
    second_store: np.ndarray    # their till is the one exporting NDJSON
    first_name: np.ndarray
    last_name: np.ndarray
    gender: np.ndarray
    age: np.ndarray
    age_missing: np.ndarray
    email_domain: np.ndarray


_CITY_NAMES = tuple(city for _, _, cities, _ in _COUNTRIES for city in cities)
_CITY_COUNTRY = np.array([i for i, (_, _, cities, _) in enumerate(_COUNTRIES) for _ in cities])
_COUNTRY_FIRST_CITY = np.array([np.flatnonzero(_CITY_COUNTRY == i)[0] for i in range(len(_COUNTRIES))])
_COUNTRY_CITY_COUNT = np.array([len(cities) for _, _, cities, _ in _COUNTRIES])
_OFFSET_TEXTS = tuple(off for _, _, _, offsets in _COUNTRIES for off in offsets)
_OFFSET_MINUTES = np.array([(1 if t[0] == "+" else -1) * (int(t[1:3]) * 60 + int(t[4:6])) for t in _OFFSET_TEXTS])
_COUNTRY_FIRST_OFFSET = np.cumsum([0] + [len(o) for _, _, _, o in _COUNTRIES])[:-1]
_COUNTRY_OFFSET_COUNT = np.array([len(o) for _, _, _, o in _COUNTRIES])


def _pick_below(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """A uniform choice in 0..count-1 for each entry of `counts`."""
    return np.floor(rng.random(len(counts)) * counts).astype(np.int64)


def _simulate_customers(rng: np.random.Generator, count: int, clock: _SeasonalClock) -> _Customers:
    months = clock.months
    month_width = np.diff(clock.month_marks)
    signup_weight = 0.9 ** np.arange(months) * month_width
    signup_month = rng.choice(months, size=count, p=signup_weight / signup_weight.sum())
    signup_activity = clock.month_marks[signup_month] + rng.random(count) * month_width[signup_month]

    buyer = rng.random(count) >= 0.2
    rate = np.where(buyer, np.clip(rng.gamma(0.9, 0.6 / 0.9, count), 0.02, 6.0), 0.0)
    dropout = rng.beta(0.8, 3.2, count)

    # BG/NBD: exponential gaps at the customer's rate; after each order they may leave for good.
    active_until = np.full(count, clock.horizon)
    order_customer, order_activity = [], []
    alive = np.flatnonzero(buyer)
    moment = signup_activity[alive]
    while alive.size:
        moment = moment + rng.exponential(1.0, alive.size) / rate[alive]
        inside = moment < clock.horizon
        alive, moment = alive[inside], moment[inside]
        order_customer.append(alive)
        order_activity.append(moment)
        leaves = rng.random(alive.size) < dropout[alive]
        active_until[alive[leaves]] = moment[leaves]
        alive, moment = alive[~leaves], moment[~leaves]
    browser_life = signup_activity + rng.exponential(2.0, count)
    active_until = np.where(buyer, active_until, np.minimum(browser_life, clock.horizon))

    country = rng.choice(len(_COUNTRIES), size=count, p=[c[1] for c in _COUNTRIES])
    city = _COUNTRY_FIRST_CITY[country] + _pick_below(rng, _COUNTRY_CITY_COUNT[country])
    till = buyer & (rng.random(count) < 0.15)
    return _Customers(
        count=count,
        signup_activity=signup_activity,
        signup_secs=clock.to_seconds(signup_activity),
        active_until=active_until,
        browse_rate=rng.gamma(2.0, 0.35, count) * (1.0 + rate),
        order_customer=np.concatenate(order_customer) if order_customer else np.zeros(0, np.int64),
        order_activity=np.concatenate(order_activity) if order_activity else np.zeros(0),
        country=country,
        city=city,
        device=rng.choice(len(_DEVICES), size=count, p=_DEVICE_SHARES),
        till=till,
        second_store=rng.random(count) < 0.25,
        first_name=rng.integers(0, len(_FIRST_NAMES), count),
        last_name=rng.integers(0, len(_LAST_NAMES), count),
        gender=rng.choice(len(_GENDERS), size=count, p=_GENDER_SHARES),
        age=np.clip(np.round(18 + rng.gamma(3.0, 6.0, count)), 18, 90).astype(np.int64),
        age_missing=rng.random(count) < 0.04,
        email_domain=rng.integers(0, 3, count),
    )


@dataclass
class _Sessions:
    """Sessions sorted by start time; order items flattened (`item_*`, `item_start`)."""

    customer: np.ndarray
    kind: np.ndarray   # 0 signup, 1 browsing, 2 order
    secs: np.ndarray   # planned start
    till: np.ndarray   # an order rung up on the legacy till: no events
    device: np.ndarray
    user_agent: np.ndarray   # index into the flat user agent table
    referrer: np.ndarray
    country: np.ndarray
    offset: np.ndarray       # index into _OFFSET_TEXTS
    items: np.ndarray
    item_start: np.ndarray
    item_product: np.ndarray
    item_quantity: np.ndarray
    item_cents: np.ndarray   # unit price paid


_FLAT_USER_AGENTS = tuple(ua for group in _USER_AGENTS for ua in group)
_DEVICE_FIRST_UA = np.cumsum([0] + [len(g) for g in _USER_AGENTS])[:-1]
_DEVICE_UA_COUNT = np.array([len(g) for g in _USER_AGENTS])


def _simulate_sessions(rng, people: _Customers, catalogue: _Catalogue, clock: _SeasonalClock) -> _Sessions:
    n = people.count
    lifetime = np.maximum(people.active_until - people.signup_activity, 0.0)
    browse_counts = rng.poisson(people.browse_rate * lifetime)
    browse_customer = np.repeat(np.arange(n), browse_counts)
    browse_activity = (
        people.signup_activity[browse_customer] + rng.random(browse_customer.size) * lifetime[browse_customer]
    )

    customer = np.concatenate([np.arange(n), browse_customer, people.order_customer])
    kind = np.concatenate([
        np.zeros(n, np.int8), np.ones(browse_customer.size, np.int8), np.full(people.order_customer.size, 2, np.int8),
    ])
    activity = np.concatenate([people.signup_activity, browse_activity, people.order_activity])
    secs = clock.to_seconds(activity)
    order = np.lexsort((kind, customer, secs))
    customer, kind, secs = customer[order], kind[order], secs[order]
    count = customer.size

    till = (kind == 2) & people.till[customer] & (rng.random(count) < 0.6)
    device = np.where(rng.random(count) < 0.8, people.device[customer], rng.choice(3, size=count, p=_DEVICE_SHARES))
    user_agent = _DEVICE_FIRST_UA[device] + _pick_below(rng, _DEVICE_UA_COUNT[device])
    travelling = rng.random(count) < 0.03
    country = np.where(travelling, rng.choice(len(_COUNTRIES), size=count), people.country[customer])
    offset = _COUNTRY_FIRST_OFFSET[country] + _pick_below(rng, _COUNTRY_OFFSET_COUNT[country])

    items = np.where(kind == 2, rng.choice([1, 2, 3], size=count, p=[0.6, 0.28, 0.12]), 0)
    item_start = np.cumsum(items) - items
    item_session = np.repeat(np.arange(count), items)
    item_product = rng.choice(_PRODUCT_COUNT, size=item_session.size, p=catalogue.popularity)
    u = rng.random(item_session.size)
    item_quantity = 1 + (u > 0.82) + (u > 0.94) + (u > 0.98)
    calendar_month = secs[item_session].astype("datetime64[s]").astype("datetime64[M]").astype(np.int64) % 12
    holiday = calendar_month >= 10
    discounted = rng.random(item_session.size) < np.where(holiday, 0.35, 0.08)
    discount = np.where(discounted, np.where(holiday, rng.uniform(0.1, 0.3, item_session.size), 0.1), 0.0)
    item_cents = np.maximum(np.round(catalogue.product_cents[item_product] * (1 - discount)).astype(np.int64), 1)

    return _Sessions(
        customer=customer, kind=kind, secs=secs, till=till, device=device, user_agent=user_agent,
        referrer=rng.choice(len(_REFERRERS), size=count, p=_REFERRER_SHARES), country=country,
        offset=offset, items=items, item_start=item_start, item_product=item_product,
        item_quantity=item_quantity, item_cents=item_cents,
    )


@dataclass
class _Events:
    """Events sorted by time. Product/category -1: none; price -1: null; quantity 0: null."""

    secs: np.ndarray
    type: np.ndarray
    session: np.ndarray
    customer: np.ndarray
    product: np.ndarray
    category: np.ndarray
    url: np.ndarray           # index into the URL table
    price_cents: np.ndarray
    quantity: np.ndarray
    quantity_absent: np.ndarray  # a purchase of one unit delivered without a quantity
    timestamp_style: np.ndarray  # 0 plain UTC, 1 with Z, 2 with the session's offset
    sessions: _Sessions


# URL table: fixed pages, then category pages, searches and product pages.
_FIXED_PAGES = ("/", "/deals", "/cart", "/account/login", "/checkout/confirmation")
_HOME, _DEALS, _CART, _LOGIN_PAGE, _CHECKOUT = range(5)
_CATEGORY_PAGE = len(_FIXED_PAGES)
_SEARCH_PAGE = _CATEGORY_PAGE + len(_CATEGORIES)
_PRODUCT_PAGE = _SEARCH_PAGE + len(_CATEGORIES)


def _url_table() -> np.ndarray:
    paths = list(_FIXED_PAGES)
    paths += [f"/c/{slug}" for slug, _ in _CATEGORIES]
    paths += [f"/search?q={slug}" for slug, _ in _CATEGORIES]
    paths += [f"/p/{pid}" for pid in _product_ids()]
    return np.array([_SITE + p for p in paths], dtype=_STR)


def _product_ids() -> list[str]:
    return [f"P{i:04d}" for i in range(1, _PRODUCT_COUNT + 1)]


def _category_ids() -> list[str]:
    return [f"CAT{i:02d}" for i in range(1, len(_CATEGORIES) + 1)]


def _build_events(rng, sessions: _Sessions, catalogue: _Catalogue, clock: _SeasonalClock) -> _Events:
    count = sessions.customer.size
    kind = sessions.kind
    online = ~sessions.till
    order, browse, signup = (kind == 2) & online, (kind == 1) & online, (kind == 0) & online
    page_views = np.where(online, 1 + rng.poisson(np.where(kind == 0, 0.5, np.where(kind == 1, 1.2, 0.7))), 0)
    product_views = np.select(
        [order, browse, signup],
        [sessions.items + rng.poisson(0.5, count), rng.poisson(1.5, count), rng.poisson(0.8, count)], 0,
    )
    block_counts = np.stack([
        signup | (order & (rng.random(count) < 0.3)) | (browse & (rng.random(count) < 0.1)),  # login
        page_views,
        (order & (rng.random(count) < 0.25)) | (browse & (rng.random(count) < 0.2)),  # search
        product_views,
        np.where(order, sessions.items, browse & (product_views > 0) & (rng.random(count) < 0.15)),
        np.where(order, sessions.items, 0),  # purchase lines
    ], axis=1).astype(np.int64)

    # One row per event: (session, type, rank within that type in the session).
    parts_session, parts_type, parts_rank = [], [], []
    for event_type in range(len(_EVENT_TYPES)):
        per_session = block_counts[:, event_type]
        session = np.repeat(np.arange(count), per_session)
        parts_session.append(session)
        parts_type.append(np.full(session.size, event_type, np.int8))
        parts_rank.append(np.arange(session.size) - np.repeat(np.cumsum(per_session) - per_session, per_session))
    session, event_type, rank = (np.concatenate(p) for p in (parts_session, parts_type, parts_rank))
    in_session_order = np.lexsort((rank, event_type, session))
    session, event_type, rank = session[in_session_order], event_type[in_session_order], rank[in_session_order]
    total = session.size

    # Seconds after the session's first event; sessions that would run past the end start earlier.
    first = np.ones(total, bool)
    first[1:] = session[1:] != session[:-1]
    gaps = np.where(first, 0, 3 + np.floor(rng.exponential(40.0, total)).astype(np.int64))
    elapsed = np.cumsum(gaps)
    events_per_session = block_counts.sum(axis=1)
    elapsed -= np.repeat(elapsed[first], events_per_session[events_per_session > 0])
    duration = np.zeros(count, np.int64)
    np.maximum.at(duration, session, elapsed)
    session_start = np.minimum(sessions.secs, clock.end - 1 - duration)
    secs = session_start[session] + elapsed

    # Products: an order session's first views, its carts and its purchases are its items.
    items = sessions.items[session]
    item_index = sessions.item_start[session] + np.minimum(rank, np.maximum(items - 1, 0))
    is_item = (items > 0) & (
        ((event_type == _PRODUCT_VIEW) & (rank < items)) | (event_type == _ADD_TO_CART) | (event_type == _PURCHASE)
    )
    has_product = np.isin(event_type, (_PRODUCT_VIEW, _ADD_TO_CART, _PURCHASE))
    random_product = rng.choice(_PRODUCT_COUNT, size=total, p=catalogue.popularity)
    safe_item_index = np.where(is_item, item_index, 0)
    item_product = sessions.item_product[safe_item_index] if sessions.item_product.size else random_product
    product = np.where(has_product, np.where(is_item, item_product, random_product), -1)

    page_choice = rng.random(total)
    page_category = rng.choice(len(_CATEGORIES), size=total, p=catalogue.category_popularity)
    category_page = (event_type == _PAGE_VIEW) & (page_choice >= 0.4) & (page_choice < 0.85)
    page_category_or_none = np.where(category_page, page_category, -1)
    category = np.where(has_product, catalogue.product_category[np.maximum(product, 0)], page_category_or_none)
    url = np.select(
        [event_type == _LOGIN, event_type == _SEARCH, has_product & (event_type != _PURCHASE), event_type == _PURCHASE,
         category_page, page_choice < 0.4, page_choice < 0.95],
        [_LOGIN_PAGE, _SEARCH_PAGE + page_category, _PRODUCT_PAGE + np.maximum(product, 0), _CHECKOUT,
         _CATEGORY_PAGE + page_category, _HOME, _DEALS],
        _CART,
    )

    list_cents = catalogue.product_cents[np.maximum(product, 0)]
    paid_cents = sessions.item_cents[safe_item_index] if sessions.item_cents.size else list_cents
    shows_price = (event_type == _ADD_TO_CART) | ((event_type == _PRODUCT_VIEW) & (rng.random(total) < 0.9))
    price_cents = np.where(event_type == _PURCHASE, paid_cents, np.where(shows_price, list_cents, -1))
    item_quantity = sessions.item_quantity[safe_item_index] if sessions.item_quantity.size else 1
    quantity = np.where(event_type == _PURCHASE, item_quantity, 0)
    quantity_absent = (quantity == 1) & (rng.random(total) < 0.06)
    timestamp_style = rng.choice(3, size=total, p=[0.9, 0.05, 0.05]).astype(np.int8)

    by_time = np.lexsort((np.arange(total), session, secs))
    return _Events(
        secs=secs[by_time], type=event_type[by_time], session=session[by_time],
        customer=sessions.customer[session][by_time], product=product[by_time], category=category[by_time],
        url=url[by_time], price_cents=price_cents[by_time], quantity=quantity[by_time],
        quantity_absent=quantity_absent[by_time], timestamp_style=timestamp_style[by_time], sessions=sessions,
    )


def _choose_event_corruptions(rng, events: _Events, plan: _FilePlan, bad_rate: float) -> np.ndarray:
    """A bad-kind code per event (0: left intact), fitting the record's type and format."""
    total = events.secs.size
    hit = rng.random(total) < bad_rate  # drawn even at rate 0 so the later draws do not shift
    pick = rng.random(total)
    parquet = np.zeros(total, bool)
    for spec in plan.files:
        if spec.format == "parquet":
            lo, hi = np.searchsorted(events.secs, [spec.lo, spec.hi])
            parquet[lo:hi] = True
    purchase = events.type == _PURCHASE
    codes = np.zeros(total, np.int8)
    for mask, kinds in (
        (~parquet & ~purchase, _GENERAL_KINDS), (~parquet & purchase, _PURCHASE_KINDS),
        (parquet & ~purchase, _PARQUET_GENERAL_KINDS), (parquet & purchase, _PARQUET_PURCHASE_KINDS),
    ):
        chosen = hit & mask
        codes[chosen] = kinds[np.floor(pick[chosen] * len(kinds)).astype(np.int64)]
    return codes


# --- encoding events ----------------------------------------------------------------------


def _hex_tokens(values: np.ndarray, digits: int) -> np.ndarray:
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (values.astype(np.uint64)[:, None] >> shifts) & np.uint64(15)
    chars = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)[nibbles]
    return np.ascontiguousarray(chars).view(f"S{digits}").ravel().astype(_STR)


def _scrambled(index: np.ndarray, bits: int, salt: int) -> np.ndarray:
    """A bijection of 0..2**bits-1, so tokens are unique yet show no order: adding a salt,
    xor-shifting right and multiplying by an odd number are each invertible mod 2**bits."""
    mask = np.uint64((1 << bits) - 1)
    half = np.uint64(bits // 2)
    value = (index.astype(np.uint64) + np.uint64(salt & ((1 << bits) - 1))) & mask
    for multiplier in (0xBF58476D1CE4E5B9, 0x94D049BB133111EB):
        value ^= value >> half
        value = (value * np.uint64(multiplier)) & mask
    return value ^ (value >> half)


def _cents_text(cents: np.ndarray) -> np.ndarray:
    sign = np.where(cents < 0, "-", "").astype(_STR)
    magnitude = np.abs(cents)
    return sign + (magnitude // 100).astype(_STR) + "." + np.strings.zfill((magnitude % 100).astype(_STR), 2)


@dataclass
class _Field:
    """One event field of a file: each record's value is `vocab[codes]`, unless its kind says
    absent/null or `replaced` marks it as carrying `replacement` (a corruption) instead.

    Encoding works on the small vocabulary and looks the results up per record, which keeps
    100k-customer samples fast: only event ids and timestamps are unique per record."""

    name: str
    vocab: np.ndarray  # StringDType
    codes: np.ndarray
    kinds: np.ndarray  # _ABSENT / _NULL / _VALUE per record
    quoted: bool       # a JSON string (else a JSON number)
    replaced: np.ndarray
    replacement: np.ndarray | None = None  # StringDType, read where `replaced`
    replacement_quoted: bool = True

    @classmethod
    def of(cls, name, vocab, codes, null=None, *, quoted=True) -> "_Field":
        n = len(codes)
        kinds = np.full(n, _VALUE, np.int8)
        if null is not None:
            kinds[null] = _NULL
        return cls(name, np.asarray(vocab, dtype=_STR), np.asarray(codes), kinds, quoted, np.zeros(n, bool))

    @classmethod
    def unique(cls, name, values, null=None, *, quoted=True, text=None) -> "_Field":
        """A field from raw values; `text` turns the distinct values into strings."""
        vocab, codes = np.unique(values, return_inverse=True)
        return cls.of(name, vocab if text is None else text(vocab), codes, null, quoted=quoted)

    def replace(self, hit: np.ndarray, text, *, quoted: bool) -> None:
        """Give the `hit` records `text` instead (one kind of replacement per field)."""
        if not hit.any():
            return
        if self.replacement is None:
            self.replacement = np.full(len(self.codes), "", dtype=_STR)
        self.replacement[hit] = text
        self.replaced[hit] = True
        self.kinds[hit] = _VALUE
        self.replacement_quoted = quoted

    def fragments(self, value_text, null_text: str, absent_text: str) -> np.ndarray:
        """Per record (an object array of shared strings): the value rendered by
        `value_text(texts, quoted)`, or `null_text` / `absent_text`."""
        table = np.asarray(value_text(self.vocab, self.quoted), dtype=object)
        out = table[self.codes]
        out[self.kinds == _NULL] = null_text
        out[self.kinds == _ABSENT] = absent_text
        if self.replacement is not None:
            out[self.replaced] = value_text(self.replacement[self.replaced], self.replacement_quoted).astype(object)
        return out

    def values(self) -> np.ndarray:
        """Per record value text (StringDType); meaningless where absent/null."""
        out = self.vocab[self.codes] if len(self.vocab) else np.full(len(self.codes), "", dtype=_STR)
        if self.replacement is not None:
            out[self.replaced] = self.replacement[self.replaced]
        return out


class _EventPayload:
    """One event file's records, corrupted as chosen, ready to encode in any format."""

    def __init__(self, events: _Events, people: _Customers, part: slice, codes, rng, salt: int):
        sessions = events.sessions
        secs = events.secs[part]
        n = secs.size
        self.codes = codes
        self.size = n
        session = events.session[part]
        product, category = events.product[part], events.category[part]
        session_vocab, session_codes = np.unique(session, return_inverse=True)
        customer_vocab, customer_codes = np.unique(events.customer[part], return_inverse=True)
        width = max(6, len(str(people.count)))

        style = events.timestamp_style[part]
        offset = sessions.offset[session]
        shifted = secs + np.where(style == 2, _OFFSET_MINUTES[offset] * 60, 0)
        iso = np.datetime_as_string(shifted.astype("datetime64[s]")).astype(_STR)
        suffix = np.array(("", "Z") + _OFFSET_TEXTS, dtype=_STR)[np.select([style == 1, style == 2], [1, offset + 2], 0)]
        timestamp = np.where(style == 0, np.strings.replace(iso, "T", " "), iso + suffix).astype(_STR)
        referrer = sessions.referrer[session]

        # Negative prices and quantities are values like any other, so they are set first.
        price_cents, quantity = events.price_cents[part].copy(), events.quantity[part].copy()
        price_null = price_cents < 0
        quantity_kind = np.where(events.quantity_absent[part], _ABSENT, np.where(quantity == 0, _NULL, _VALUE))
        hit = codes == _BAD_CODE["negative_price"]
        price_cents[hit] = -price_cents[hit]
        hit = codes == _BAD_CODE["negative_quantity"]
        quantity[hit] = -np.maximum(quantity[hit], 1)
        quantity_kind[hit] = _VALUE
        self.price_cents, self.quantity = price_cents, quantity

        event_ids = "E" + _hex_tokens(_scrambled(np.arange(part.start, part.stop), 48, salt), 12)
        customer_ids = "C" + np.strings.zfill((customer_vocab + 1).astype(_STR), width)
        session_ids = "S" + _hex_tokens(_scrambled(session_vocab, 40, salt >> 16), 10)
        self.fields = {
            "event_id": _Field.of("event_id", event_ids, np.arange(n)),
            "customer_id": _Field.of("customer_id", customer_ids, customer_codes),
            "event_type": _Field.of("event_type", _EVENT_TYPES, events.type[part]),
            "event_timestamp": _Field.of("event_timestamp", timestamp, np.arange(n)),
            "session_id": _Field.of("session_id", session_ids, session_codes),
            "page_url": _Field.of("page_url", _url_table(), events.url[part]),
            "product_id": _Field.of("product_id", _product_ids(), np.maximum(product, 0), product < 0),
            "category_id": _Field.of("category_id", _category_ids(), np.maximum(category, 0), category < 0),
            "price": _Field.unique("price", price_cents, price_null, quoted=False, text=_cents_text),
            "quantity": _Field.unique(
                "quantity", quantity, quantity_kind == _NULL, quoted=False, text=lambda v: v.astype(_STR)
            ),
            "device_type": _Field.of("device_type", _DEVICES, sessions.device[session]),
            "country": _Field.of("country", [c[0] for c in _COUNTRIES], sessions.country[session]),
            "referrer": _Field.of("referrer", [r or "" for r in _REFERRERS], referrer, referrer == 0),
            "user_agent": _Field.of("user_agent", _FLAT_USER_AGENTS, sessions.user_agent[session]),
        }
        self.fields["quantity"].kinds[quantity_kind == _ABSENT] = _ABSENT
        self._corrupt(rng, secs)

    def _corrupt(self, rng, secs) -> None:
        codes, n, fields = self.codes, self.size, self.fields
        absent_or_null = np.where(rng.random(n) < 0.5, _ABSENT, _NULL).astype(np.int8)
        alternative = rng.random(n) < 0.5
        self.cut = rng.random(n)
        for name in ("customer_id", "event_type", "event_timestamp"):
            hit = codes == _BAD_CODE[f"missing_{name}"]
            fields[name].kinds[hit] = absent_or_null[hit]
        hit = codes == _BAD_CODE["unparsable_timestamp"]
        if hit.any():
            year = secs[hit].astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
            impossible = np.strings.zfill(year.astype(_STR), 4) + "-13-45 10:00:00"
            fields["event_timestamp"].replace(hit, np.where(alternative[hit], "not-a-date", impossible), quoted=True)
        hit = codes == _BAD_CODE["missing_price"]
        fields["price"].kinds[hit] = absent_or_null[hit]
        # Parquet files never get the two kinds below: their types could not hold them.
        fields["price"].replace(codes == _BAD_CODE["non_numeric_price"], "abc", quoted=True)
        fields["quantity"].replace(codes == _BAD_CODE["non_integer_quantity"], "2.5", quoted=False)

    def encode(self, fmt: str, rng, blank_lines: int):
        """The file's bytes (in chunks for text formats, to bound memory), and for text
        formats a function giving a record's line."""
        if fmt == "parquet":
            return self._parquet(), None
        rows = self._csv_rows() if fmt == "csv" else self._json_rows()
        if blank_lines and self.size:
            for position in rng.integers(0, self.size, blank_lines):
                rows[position, -1] += "\n"

        def chunks():
            if fmt == "csv":
                yield (",".join(EVENT_FIELDS) + "\n").encode()
            for lo in range(0, self.size, 50_000):
                yield "".join(rows[lo : lo + 50_000].ravel().tolist()).encode()

        return chunks(), lambda i: "".join(rows[i, :-1].tolist()) + "\n"

    def _json_rows(self) -> np.ndarray:
        """Records as rows of fragments: the fields, "}" and the line end."""
        def render(texts, quoted):
            return ('"' + texts + '"') if quoted else texts

        rows = np.empty((self.size, len(EVENT_FIELDS) + 2), dtype=object)
        for column, name in enumerate(EVENT_FIELDS):
            key = '{"event_id":' if column == 0 else f',"{name}":'
            rows[:, column] = self.fields[name].fragments(lambda t, q, key=key: key + render(t, q), key + "null", "")
        rows[:, -2] = "}"
        rows[:, -1] = "\n"
        # Malformed: the line is cut short somewhere after its event_id.
        keep = len('{"event_id":"') + 13 + 1
        for i in np.flatnonzero(self.codes == _BAD_CODE["malformed"]).tolist():
            text = "".join(rows[i, :-1].tolist())
            rows[i, :-1] = ""
            rows[i, 0] = text[: keep + int(self.cut[i] * (len(text) - 1 - keep))]
        return rows

    def _csv_rows(self) -> np.ndarray:
        def render(texts, quoted):
            return np.where(np.strings.find(texts, ",") >= 0, '"' + texts + '"', texts)

        rows = np.empty((self.size, len(EVENT_FIELDS) + 1), dtype=object)
        for column, name in enumerate(EVENT_FIELDS):
            key = "" if column == 0 else ","
            rows[:, column] = self.fields[name].fragments(lambda t, q, key=key: key + render(t, q), key, key)
        rows[:, -1] = "\n"
        # Malformed: the last four fields are missing, so the row is too short.
        rows[self.codes == _BAD_CODE["malformed"], -5:-1] = ""
        return rows

    def _parquet(self) -> bytes:
        arrays = {}
        for name in EVENT_FIELDS:
            field = self.fields[name]
            if name == "price":
                arrays[name] = pa.array(self.price_cents / 100.0, type=pa.float64(), mask=field.kinds != _VALUE)
            elif name == "quantity":
                arrays[name] = pa.array(self.quantity, type=pa.int64(), mask=field.kinds != _VALUE)
            else:
                arrays[name] = pa.array(field.values(), type=pa.string(), mask=field.kinds != _VALUE)
        buffer = io.BytesIO()
        pq.write_table(pa.table(arrays), buffer, compression="snappy", row_group_size=256_000)
        return buffer.getvalue()


# --- legacy transactions and profiles -----------------------------------------------------


def _customer_ids(people: _Customers, index: np.ndarray) -> list[str]:
    width = max(6, len(str(people.count)))
    return [f"C{i + 1:0{width}d}" for i in index.tolist()]


def _write_transactions(out_dir, paths, world_rng, bad_rng, sessions: _Sessions, people, clock, with_bad):
    """Till orders as legacy rows, two of them bought twice; a refund and a garbled date if bad."""
    till = np.flatnonzero(sessions.till)
    basket = sessions.item_cents * sessions.item_quantity
    item_totals = np.concatenate([[0], np.cumsum(basket)])
    amount = item_totals[sessions.item_start[till] + sessions.items[till]] - item_totals[sessions.item_start[till]]
    customer = sessions.customer[till]
    dates = _format_utc(sessions.secs[till]).tolist()
    ids = _customer_ids(people, customer)
    rows = [[cid, day, cents] for cid, day, cents in zip(ids, dates, amount.tolist())]
    second = people.second_store[customer].tolist()
    if len(rows) >= 2:
        for i in sorted(world_rng.choice(len(rows), size=2, replace=False).tolist(), reverse=True):
            rows.insert(i + 1, list(rows[i]))
            second.insert(i + 1, second[i])
    first_rows = [r for r, s in zip(rows, second) if not s]
    second_rows = [r for r, s in zip(rows, second) if s]

    bad = {f"transactions/{kind}": 0 for kind in TRANSACTION_BAD_KINDS}
    if with_bad:
        someone = _customer_ids(people, bad_rng.integers(0, people.count, 2))
        moment = _format_utc(bad_rng.integers(clock.start, clock.end, 2)).tolist()
        refund = [someone[0], moment[0], -int(bad_rng.integers(500, 20000))]
        garbled = [someone[1], f"{moment[1][:4]}-13-45 25:61:00", int(bad_rng.integers(500, 20000))]
        first_rows.insert(bisect.bisect([r[1] for r in first_rows], refund[1]), refund)  # in time order
        second_rows.insert(int(bad_rng.integers(0, len(second_rows) + 1)), garbled)
        bad["transactions/negative_amount"] = 1
        bad["transactions/unparsable_date"] = 1

    def amount_text(cents: int) -> str:
        return f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRANSACTION_FIELDS)
    writer.writerows([cid, day, amount_text(cents)] for cid, day, cents in first_rows)
    _write(out_dir, paths[0], buffer.getvalue().encode())
    ndjson = "".join(
        f'{{"customer_id":"{cid}","transaction_date":"{day}","transaction_amount":{amount_text(cents)}}}\n'
        for cid, day, cents in second_rows
    )
    _write(out_dir, paths[1], ndjson.encode())
    files = [
        FileSummary(paths[0], "csv", len(first_rows), bad["transactions/negative_amount"]),
        FileSummary(paths[1], "ndjson", len(second_rows), bad["transactions/unparsable_date"]),
    ]
    return files, bad


def _write_profiles(out_dir, paths, world_rng, bad_rng, sessions: _Sessions, people: _Customers, clock, with_bad):
    """customers.csv as exported some time ago, updates for movers, partial demographics."""
    n = people.count
    online = ~sessions.till
    last_seen = people.signup_secs.copy()
    np.maximum.at(last_seen, sessions.customer[online], np.minimum(sessions.secs[online], clock.end - 1))
    exported_login = people.signup_secs + np.floor(
        world_rng.uniform(0.2, 1.0, n) * (last_seen - people.signup_secs)
    ).astype(np.int64)
    moved = ((last_seen - exported_login) >= 86400) & (world_rng.random(n) < 0.25)
    city_count = _COUNTRY_CITY_COUNT[people.country]
    step = world_rng.integers(0, 1 << 30, n) % np.maximum(city_count - 1, 1) + 1  # 1..cities-1: another city
    new_city = _COUNTRY_FIRST_CITY[people.country] + (people.city - _COUNTRY_FIRST_CITY[people.country] + step) % city_count
    ids = _customer_ids(people, np.arange(n))
    signup_dates = [s[:10] for s in _format_utc(people.signup_secs).tolist()]
    exported_text = _format_utc(exported_login).tolist()
    last_text = _format_utc(last_seen).tolist()
    domains = ("example.com", "example.org", "example.net")

    def profile(i: int, city: int, login: str) -> list:
        first, last = _FIRST_NAMES[people.first_name[i]], _LAST_NAMES[people.last_name[i]]
        email = f"{first}.{last.replace(' ', '')}{i + 1}@{domains[people.email_domain[i]]}".lower()
        age = None if people.age_missing[i] else int(people.age[i])
        return [ids[i], email, first, last, age, _GENDERS[people.gender[i]], _CITY_NAMES[city],
                _COUNTRIES[people.country[i]][0], signup_dates[i], login]

    rows = [profile(i, int(people.city[i]), exported_text[i]) for i in range(n)]
    bad = {f"profiles/{kind}": 0 for kind in PROFILE_BAD_KINDS}
    if with_bad:
        # Someone typed a customer into the CRM by hand and never gave them an id.
        model = int(bad_rng.integers(0, n))
        orphan = profile(model, int(bad_rng.integers(0, len(_CITY_NAMES))), exported_text[model])
        orphan[0] = ""
        orphan[1] = "walk-in@example.com"
        rows.insert(int(bad_rng.integers(0, n + 1)), orphan)
        bad["profiles/missing_customer_id"] = 1
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PROFILE_FIELDS)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    _write(out_dir, paths[0], buffer.getvalue().encode())

    movers = np.flatnonzero(moved)
    movers = movers[np.argsort(last_seen[movers], kind="stable")]  # the file is in login order
    updates = [dict(zip(PROFILE_FIELDS, profile(i, int(new_city[i]), last_text[i]))) for i in movers.tolist()]
    _write(out_dir, paths[1], "".join(json.dumps(u) + "\n" for u in updates).encode())

    current_city = np.where(moved, new_city, people.city)
    described = (world_rng.random(n) < 0.22) | (people.age_missing & (world_rng.random(n) < 0.8))
    demographics = [
        json.dumps({"customer_id": ids[i], "age": int(people.age[i]), "location": _CITY_NAMES[current_city[i]]})
        for i in np.flatnonzero(described).tolist()
    ]
    _write(out_dir, paths[2], "".join(d + "\n" for d in demographics).encode())
    files = [
        FileSummary(paths[0], "csv", len(rows), bad["profiles/missing_customer_id"]),
        FileSummary(paths[1], "ndjson", len(updates)),
        FileSummary(paths[2], "ndjson", len(demographics)),
    ]
    return files, bad
