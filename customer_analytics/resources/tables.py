"""The warehouse tables: a contract that BI users and outside checks read.

Columns may be added; none may be renamed or dropped. Each column's `comment` is its
documentation: it becomes a PostgreSQL column comment and the column schema Dagster shows.

Tables with `info["partition_column"]` hold one month per partition. On PostgreSQL they are
declared `PARTITION BY LIST` on that column, so a month is replaced by swapping in a freshly
loaded child table (see `Warehouse.replace`); on SQLite they are plain tables and a month is
replaced by delete + insert in one transaction.
"""

from __future__ import annotations

import dagster as dg
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

UTC_TIMESTAMP = DateTime(timezone=True)


def _partitioned(column: str) -> dict:
    return {"info": {"partition_column": column}, "postgresql_partition_by": f"LIST ({column})"}


raw_events = Table(
    "raw_events",
    metadata,
    Column("event_id", String, nullable=False, comment="Identifier of the event; unique. Legacy transactions get txn-<file digest>-<record number>."),
    Column("customer_id", String, nullable=False, comment="Customer the event belongs to."),
    Column("event_type", String, nullable=False, comment="page_view, product_view, add_to_cart, purchase, …; a purchase is event_type = 'purchase'."),
    Column("event_timestamp", UTC_TIMESTAMP, nullable=False, comment="When the event happened, in UTC."),
    Column("event_month", Date, nullable=False, comment="First day of the UTC month of event_timestamp (the partition)."),
    Column("event_date", Date, nullable=False, comment="UTC calendar date of event_timestamp."),
    Column("session_id", String, comment="Browsing session."),
    Column("page_url", Text, comment="Page the event happened on."),
    Column("product_id", String, comment="Product involved, if any."),
    Column("category_id", String, comment="Product category, if any."),
    Column("price", Float, comment="Unit price; required for purchases."),
    Column("quantity", BigInteger, comment="Units; a purchase delivered without one is stored as 1."),
    Column("revenue", Float, nullable=False, comment="price × quantity for purchases (the amount for legacy transactions); 0 for other events."),
    Column("device_type", String, comment="mobile, desktop, tablet, …"),
    Column("country", String, comment="Country of the event, as delivered."),
    Column("referrer", Text, comment="Referring site."),
    Column("user_agent", Text, comment="Browser user agent."),
    Column("source", String, nullable=False, comment="'events' or 'transactions': which landing folder the record came from."),
    Column("source_file", String, nullable=False, comment="Landing file, relative to the landing folder."),
    Column("source_record", BigInteger, nullable=False, comment="Record number in source_file (line number for NDJSON/CSV, row number for Parquet)."),
    Column("ingested_at", UTC_TIMESTAMP, nullable=False, comment="When the run that loaded this month started."),
    PrimaryKeyConstraint("event_month", "event_id", name="raw_events_pkey"),
    Index("raw_events_customer_idx", "customer_id"),
    **_partitioned("event_month"),
)

rejected_events = Table(
    "rejected_events",
    metadata,
    Column("rejection_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True, comment="Surrogate key."),
    Column("source", String, nullable=False, comment="'events', 'transactions' or 'profiles'."),
    Column("source_file", String, nullable=False, comment="Landing file, relative to the landing folder."),
    Column("record_number", BigInteger, nullable=False, comment="Record number in the file (as raw_events.source_record); 0 when the whole file could not be read."),
    Column("raw_record", Text, nullable=False, comment="The record as delivered (for a whole-file rejection: empty)."),
    Column("reason", Text, nullable=False, comment="Why the record was not loaded, in words."),
    Column("rejected_at", UTC_TIMESTAMP, nullable=False, comment="When the run that rejected it started."),
    Column("event_month", Date, comment="Month of the record's timestamp, where it could be read."),
    Column("event_id", String, comment="The record's event id, where it had one."),
    Column("customer_id", String, comment="The record's customer id, where it had one."),
    Column("run_id", String, comment="Dagster run that rejected it."),
    UniqueConstraint("source_file", "record_number", name="rejected_events_record_key"),
    Index("rejected_events_month_idx", "event_month"),
)

customer_profiles = Table(
    "customer_profiles",
    metadata,
    Column("customer_id", String, primary_key=True, comment="Customer."),
    Column("email", String, comment="Personal data: stays in this table, never in BI views."),
    Column("first_name", String, comment="Personal data."),
    Column("last_name", String, comment="Personal data."),
    Column("age", Integer, comment="Age in years (0–130)."),
    Column("gender", String, comment="As delivered."),
    Column("city", String, comment="City from the profile."),
    Column("country", String, comment="Country from the profile."),
    Column("location", String, comment="Location from demographic rows; the city when none was delivered."),
    Column("signup_date", Date, comment="Date the customer signed up."),
    Column("last_login", UTC_TIMESTAMP, comment="Latest login, UTC."),
    Column("source_file", String, comment="File of the latest record merged into this row."),
    Column("updated_at", UTC_TIMESTAMP, nullable=False, comment="When this row was last rebuilt."),
)

landing_files = Table(
    "landing_files",
    metadata,
    Column("source_file", String, primary_key=True, comment="Landing file, relative to the landing folder."),
    Column("size_bytes", BigInteger, nullable=False, comment="Size when scanned."),
    Column("modified_ns", BigInteger, nullable=False, comment="Modification time (ns) when scanned."),
    Column("months", Text, nullable=False, comment="Comma-separated YYYY-MM months holding at least one record; '' if none."),
    Column("records", BigInteger, nullable=False, comment="Records read from the file."),
    Column("scanned_at", UTC_TIMESTAMP, nullable=False, comment="When the file was last read completely."),
)


def partition_column(table: Table) -> str | None:
    return table.info.get("partition_column")


def column_schema(table: Table) -> dg.TableSchema:
    """The table's columns as Dagster column-schema metadata, documented by their comments."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=str(column.type.compile()) if not isinstance(column.type, DateTime) else "TIMESTAMP (UTC)",
                description=column.comment,
                constraints=dg.TableColumnConstraints(nullable=bool(column.nullable), unique=False),
            )
            for column in table.columns
        ]
    )
