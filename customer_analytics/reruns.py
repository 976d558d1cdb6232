"""Segment-targeted rerun requests: the `rerun_requests` control table.

Anyone may write a request (the CLI, psql, a BI tool); requests are checked before anything
runs, so a bad segment, month or customer list is refused with the valid values named. A
listed customer the month knows nothing of is not a reason to refuse (ids are data, whatever
they hold): `unknown_customers` names them for the CLI's warning, and the run counts them in
the request's `errors` and names them in its message.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy import func, insert, select, union

from customer_analytics.config import ConfigError, current_month, month_key, parse_month
from customer_analytics.resources.tables import customer_clv, customer_history, rerun_requests
from customer_analytics.resources.warehouse import Warehouse

VALUE_SEGMENTS = ("high", "medium", "low", "at_risk")
ALL_SEGMENTS = "all"  # a request for every value segment of the month at once (still no refit)
REQUEST_SEGMENTS = (*VALUE_SEGMENTS, ALL_SEGMENTS)
STATUSES = ("pending", "launched", "rejected", "succeeded", "failed")
MAX_CUSTOMERS = 10_000


@dataclass(frozen=True)
class RerunRequest:
    segment: str
    as_of_month: date
    customer_ids: tuple[str, ...] | None = None
    requested_by: str | None = None


def parse_customer_ids(value) -> tuple[str, ...] | None:
    """A JSON array of ids, or a comma-separated list; None (NULL, NaN) or empty means the whole segment."""
    if value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError("customer_ids is not a valid JSON array: use e.g. [\"C000123\", \"C000456\"]") from None
        else:
            value = text.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError("customer_ids must be a list of customer ids")
    ids = tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
    if not ids:
        return None
    for customer_id in ids:
        if any(unicodedata.category(c) == "Cc" for c in customer_id):  # NUL, newlines, escapes: never an id
            raise ConfigError(f"customer id {customer_id!r} holds a control character: give ids as they appear in customer_id")
    if len(ids) > MAX_CUSTOMERS:
        raise ConfigError(f"customer_ids lists {len(ids):,} customers: at most {MAX_CUSTOMERS:,} per request")
    return ids


def scored_months(warehouse: Warehouse) -> list[date]:
    """Months with CLV scores (and so a fitted model to reuse), oldest first."""
    warehouse.ensure_tables()
    frame = warehouse.read_frame(select(customer_clv.c.as_of_month).distinct().order_by(customer_clv.c.as_of_month))
    return [date.fromisoformat(str(m)[:10]) for m in frame["as_of_month"]]


def validate_request(warehouse: Warehouse, segment, month, customer_ids=None, requested_by=None) -> RerunRequest:
    """A checked request; `ConfigError` names what is valid. `month` None means the latest scored month."""
    if segment not in REQUEST_SEGMENTS:
        raise ConfigError(f"unknown segment {segment!r}: valid segments are {', '.join(VALUE_SEGMENTS)} "
                          f"(or {ALL_SEGMENTS} for every segment)")
    months = scored_months(warehouse)
    if month is None:
        chosen = months[-1] if months else current_month()
    else:
        chosen = month if isinstance(month, date) else parse_month(str(month), what="month")
    if chosen not in months:
        valid = ", ".join(month_key(m) for m in months) if months else "none yet (materialize customer_clv first)"
        raise ConfigError(f"month {month_key(chosen)} has no CLV scores to rerun: scored months are {valid}")
    return RerunRequest(segment, chosen, parse_customer_ids(customer_ids), requested_by)


def unknown_customers(warehouse: Warehouse, month: date, ids: tuple[str, ...]) -> list[str]:
    """The ids with neither a `customer_clv` nor a `customer_history` row for `month`, in the order given.

    A scored customer without history any more is known: its rerun removes its rows.
    """
    known: set[str] = set()
    for start in range(0, len(ids), 500):  # bound parameters per statement, well within SQLite's limit
        chunk = list(ids[start:start + 500])
        query = union(
            select(customer_clv.c.customer_id).where(customer_clv.c.as_of_month == month, customer_clv.c.customer_id.in_(chunk)),
            select(customer_history.c.customer_id).where(customer_history.c.as_of_month == month,
                                                         customer_history.c.customer_id.in_(chunk)))
        known.update(str(v) for v in warehouse.read_frame(query)["customer_id"])
    return [customer_id for customer_id in ids if customer_id not in known]


def write_request(warehouse: Warehouse, request: RerunRequest, now: datetime | None = None) -> int:
    """Store a pending request; returns its id."""
    with warehouse.begin() as connection:
        result = connection.execute(insert(rerun_requests).values(
            segment=request.segment,
            customer_ids=json.dumps(list(request.customer_ids)) if request.customer_ids else None,
            as_of_month=request.as_of_month,
            requested_by=request.requested_by,
            requested_at=now or datetime.now(timezone.utc),
            status="pending",
        ))
        return int(result.inserted_primary_key[0])


def count_requests(warehouse: Warehouse) -> int:
    return int(warehouse.scalar(select(func.count()).select_from(rerun_requests)))
