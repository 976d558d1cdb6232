"""Events and legacy transactions: delivered fields in, typed `raw_events` rows and refusal reasons out.

Rules (the README's data contract):
* `customer_id`, `event_type` and `event_timestamp` are required, and so is `event_id` for
  events (it is what makes a redelivery recognisable).
* A purchase (`event_type = 'purchase'`) needs a price; a price, when given, is a finite
  number ≥ 0 and at most `MAX_AMOUNT`; a quantity, when given, is a whole number ≥ 0 and at
  most `MAX_QUANTITY`; a purchase without a quantity bought one unit.
* `revenue` = price × quantity for purchases, 0 for every other event.
* Text holds no NUL character, and `event_id` / `customer_id` are at most `MAX_ID_LENGTH`
  characters: PostgreSQL could not store or index them, so both warehouses refuse them alike.
* A legacy transaction is a purchase of one unit at `transaction_amount`; its id comes from
  its content as stored, never from the file's name or the row's place: see `transaction_ids`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from customer_analytics.transforms.fields import (
    Reasons,
    date_of,
    field_values,
    holds_nul,
    longer_than,
    month_of,
    number_column,
    shown,
    text_column,
    timestamp_column,
)

PURCHASE = "purchase"
MAX_AMOUNT = 1e10  # a price or amount above ten billion is a unit or typing error
MAX_QUANTITY = 1_000_000
# Ids are indexed: a B-tree entry must fit in a third of a PostgreSQL page (2,704 bytes), and a
# character takes up to 4 bytes in UTF-8. Real ids are far shorter; longer ones are garbage.
MAX_ID_LENGTH = 500
OPTIONAL_TEXT = ("session_id", "page_url", "product_id", "category_id", "device_type", "country", "referrer", "user_agent")
EVENT_COLUMNS = (
    "event_id", "customer_id", "event_type", "event_timestamp", "event_month", "event_date",
    *OPTIONAL_TEXT[:4], "price", "quantity", "revenue", *OPTIONAL_TEXT[4:],
)


def _required_text(fields, name, reasons: Reasons, *, max_length: int | None = None) -> pd.Series:
    text, wrong = text_column(field_values(fields, name))
    reasons.add(wrong, f"{name} must be text, not a JSON object, array or boolean")
    reasons.add(text.isna() & ~wrong, f"missing {name}")
    _storable(text, name, reasons)
    if max_length is not None:
        reasons.add(longer_than(text, max_length), f"{name} is longer than {max_length:,} characters")
    return text


def _storable(text: pd.Series, name: str, reasons: Reasons) -> None:
    """Text PostgreSQL cannot hold (a NUL character) is refused on every warehouse alike."""
    reasons.add(holds_nul(text), f"{name} contains a NUL character (\\x00), which the warehouse cannot store")


def _timestamp(fields, name, reasons: Reasons) -> pd.Series:
    raw = field_values(fields, name)
    stamps, present, invalid = timestamp_column(raw)
    reasons.add(~present, f"missing {name}")
    reasons.add(invalid, "unparsable " + name + " " + shown(raw) + " (use e.g. 2023-06-15 14:30:45, or ISO 8601 with Z or an offset)")
    return stamps


def _amount(raw: pd.Series, name: str, reasons: Reasons) -> tuple[pd.Series, pd.Series]:
    """(amounts usable as money, mask present): refuses non-numbers, negatives and absurd sizes."""
    values, present, invalid = number_column(raw)
    reasons.add(invalid, name + " " + shown(raw) + " is not a number")
    ok = present & ~invalid
    reasons.add(ok & (values.fillna(0) < 0), "negative " + name + " " + shown(raw))
    reasons.add(ok & (values.fillna(0) > MAX_AMOUNT), name + " " + shown(raw) + f" is above {MAX_AMOUNT:,.0f}")
    return values.where(ok), present


def validate_events(fields: pd.DataFrame) -> pd.DataFrame:
    """Typed event rows (`EVENT_COLUMNS`) plus `reject_reason` (None for loadable rows)."""
    reasons = Reasons(fields.index)
    out = pd.DataFrame(index=fields.index)
    out["event_id"] = _required_text(fields, "event_id", reasons, max_length=MAX_ID_LENGTH)
    out["customer_id"] = _required_text(fields, "customer_id", reasons, max_length=MAX_ID_LENGTH)
    out["event_type"] = _required_text(fields, "event_type", reasons)
    stamps = _timestamp(fields, "event_timestamp", reasons)
    for name in OPTIONAL_TEXT:
        text, wrong = text_column(field_values(fields, name))
        reasons.add(wrong, f"{name} must be text, not a JSON object, array or boolean")
        _storable(text, name, reasons)
        out[name] = text

    is_purchase = (out["event_type"] == PURCHASE).fillna(False).astype(bool)
    price, price_present = _amount(field_values(fields, "price"), "price", reasons)
    reasons.add(is_purchase & ~price_present, "purchase without a price")

    raw_quantity = field_values(fields, "quantity")
    quantity, quantity_present, quantity_invalid = number_column(raw_quantity)
    reasons.add(quantity_invalid, "quantity " + shown(raw_quantity) + " is not a number")
    ok_quantity = quantity_present & ~quantity_invalid
    q = quantity.fillna(0)
    reasons.add(ok_quantity & (q < 0), "negative quantity " + shown(raw_quantity))
    reasons.add(ok_quantity & (q >= 0) & (q != np.floor(q)), "quantity " + shown(raw_quantity) + " is not a whole number")
    reasons.add(ok_quantity & (q > MAX_QUANTITY), "quantity " + shown(raw_quantity) + f" is above {MAX_QUANTITY:,}")

    quantity = quantity.where(ok_quantity & (q >= 0) & (q == np.floor(q)) & (q <= MAX_QUANTITY))
    quantity = quantity.where(~(is_purchase & quantity.isna()), 1.0)
    out["price"] = price
    out["quantity"] = quantity.round().astype("Int64")
    out["revenue"] = np.where(is_purchase, out["price"].fillna(0.0) * quantity.fillna(0.0), 0.0)
    return _finish(out, stamps, reasons)


def transaction_content_digest(customer_id: str, utc_instant: str, amount: str) -> str:
    """The 16 hex digits of a legacy transaction's content, its id's middle part.

    SHA-1 of `customer_id` (trimmed, as stored), the UTC instant (`2025-01-05T00:00:00.000000`)
    and the amount as stored (Python's `repr` of the float: `19.99`), joined by U+001F; an absent
    value (in a row that is refused anyway) is empty. Only the customer id can hold U+001F, and
    it comes first, so two different contents never join to the same text.
    """
    text = f"{customer_id}\x1f{utc_instant}\x1f{amount}"
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def transaction_ids(customer: pd.Series, stamps: pd.Series, amount: pd.Series, copies: dict[str, int]) -> pd.Series:
    """`txn-<content digest>-<k>`: the k-th row of that same content in its file.

    A till file carries no ids. Deriving one from the content lets the same file delivered again
    under another name (`till_2025-01 (1).csv`) be recognised as a redelivery (same id, same
    content: a duplicate), while identical rows within one file stay distinct purchases (k = 1,
    2, ...). `copies` counts each content seen so far in the file: the caller passes the same
    dict for every chunk of a file, and a new one per file.
    """
    instants = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").fillna("")
    ids = []
    for customer_id, instant, value in zip(customer.fillna(""), instants, amount.astype(object)):
        digest = transaction_content_digest(customer_id, instant, "" if pd.isna(value) else repr(float(value)))
        copies[digest] = copies.get(digest, 0) + 1
        ids.append(f"txn-{digest}-{copies[digest]}")
    return pd.Series(ids, index=customer.index, dtype="string")


def validate_transactions(fields: pd.DataFrame, copies: dict[str, int] | None = None) -> pd.DataFrame:
    """Legacy transaction rows as purchase events (same columns as `validate_events`).

    `copies`: the contents counted so far in this file (see `transaction_ids`); None for a chunk
    that is a whole file.
    """
    reasons = Reasons(fields.index)
    out = pd.DataFrame(index=fields.index)
    out["customer_id"] = _required_text(fields, "customer_id", reasons, max_length=MAX_ID_LENGTH)
    out["event_type"] = pd.Series(PURCHASE, index=fields.index, dtype="string")
    stamps = _timestamp(fields, "transaction_date", reasons)
    amount, present = _amount(field_values(fields, "transaction_amount"), "transaction_amount", reasons)
    reasons.add(~present, "missing transaction_amount")
    out["event_id"] = transaction_ids(out["customer_id"], stamps, amount, {} if copies is None else copies)
    for name in OPTIONAL_TEXT:
        out[name] = pd.Series(pd.NA, index=fields.index, dtype="string")
    out["price"] = amount
    out["quantity"] = pd.Series(1, index=fields.index, dtype="Int64")
    out["revenue"] = amount.fillna(0.0)
    return _finish(out, stamps, reasons)


def _finish(out: pd.DataFrame, stamps: pd.Series, reasons: Reasons) -> pd.DataFrame:
    out["event_timestamp"] = stamps
    out["event_month"] = month_of(stamps)
    out["event_date"] = date_of(stamps)
    out = out[list(EVENT_COLUMNS)]  # a new frame already: with copy-on-write, no .copy() is needed
    out["reject_reason"] = reasons.values
    return out
