"""Small landing folders for tests, written exactly as a shop's export would be."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path


def event(event_id: str, customer_id: str, timestamp: str, event_type: str = "purchase", price=10.0, quantity=1, **extra) -> dict:
    record = {"event_id": event_id, "customer_id": customer_id, "event_type": event_type, "event_timestamp": timestamp}
    if price is not None:
        record["price"] = price
    if quantity is not None:
        record["quantity"] = quantity
    record.update(extra)
    return record


def write_ndjson(path: Path, records: list, *, gz: bool = False) -> Path:
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(lines, mtime=0) if gz else lines)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue())
    return path
