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
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

UTC_TIMESTAMP = DateTime(timezone=True)

# Ids are opaque: on PostgreSQL they compare and sort byte by byte (COLLATE "C") whatever the
# database's locale. A locale collation (even C.UTF-8) compares through strcoll and without
# abbreviated keys: building a month's (customer_id) index over 2M rows took 3.07 s with it
# and 1.20 s in "C". Every id column uses this type, so joins never mix collations.
ID = String().with_variant(String(collation="C"), "postgresql")


def _run_stamps() -> list[Column]:
    """When and by which Dagster run a derived row was computed: every figure is traceable."""
    return [
        Column("computed_at", UTC_TIMESTAMP, nullable=False, comment="When the row was computed."),
        Column("run_id", String, comment="Dagster run that computed it."),
    ]


def _partitioned(column: str) -> dict:
    return {"info": {"partition_column": column}, "postgresql_partition_by": f"LIST ({column})"}


def _keyed_by_id(name: str, *key: str, month: str) -> list:
    """A per-month table's primary key: the id columns `key`, then the month.

    The month comes last because on PostgreSQL it is the same in every row of a partition:
    leading the key, it made every comparison of a swapped-in month's index build fall through
    to the id, and a sort only abbreviates its leading column (2M rows: 2.88 s as (month,
    customer_id), 0.91 s as (customer_id, month)). SQLite has no partitions, so there a month
    index keeps reading one month cheap.
    """
    return [
        PrimaryKeyConstraint(*key, month, name=f"{name}_pkey"),
        Index(f"{name}_month_idx", month).ddl_if(dialect="sqlite"),
    ]


# The month key of a rejection without a month, in `rejected_events_record_month_key`.
NO_MONTH = "0001-01-01"
# Unique constraints of earlier versions: `Warehouse.ensure_tables` drops them (table, constraint).
RETIRED_CONSTRAINTS = (("rejected_events", "rejected_events_record_key"),)  # keyed without the month
# Indexes of earlier versions that no table declares any more: `Warehouse.ensure_tables` drops them.
RETIRED_INDEXES = ("raw_events_customer_idx",)  # replaced by raw_events_purchases_idx

raw_events = Table(
    "raw_events",
    metadata,
    Column("event_id", ID, nullable=False, comment="Identifier of the event; unique. Legacy transactions get txn-<content digest>-<k>: the same row in another file is a redelivery, the k-th identical row of one file a purchase of its own."),
    Column("customer_id", ID, nullable=False, comment="Customer the event belongs to."),
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
    *_keyed_by_id("raw_events", "event_id", month="event_month"),
    # A customer's purchases are the one way the pipeline reads raw_events by customer (a history
    # rebuilt in full joins them), and the month's purchase scan reads this index alone, without the
    # heap (COPY … FREEZE leaves the pages all-visible). Purchases only: an index of every event's
    # customer took 6.9 s of a 10,000,000-event load; see the README for ad-hoc lookups of other events.
    Index("raw_events_purchases_idx", "customer_id",
          postgresql_include=["event_month", "event_date", "event_timestamp", "revenue"],
          postgresql_where=text("event_type = 'purchase'"), sqlite_where=text("event_type = 'purchase'")),
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
    Column("event_id", ID, comment="The record's event id, where it had one."),
    Column("customer_id", ID, comment="The record's customer id, where it had one."),
    Column("run_id", String, comment="Dagster run that rejected it."),
    # One row per record *and* month: a file rewritten so that a record number now holds a record of
    # another month adds that rejection instead of colliding with the old one (and losing the new one
    # when the old month's rerun then deletes the old). Rows without a month share one key per record.
    Index("rejected_events_record_month_key", "source_file", "record_number",
          text(f"COALESCE(event_month, '{NO_MONTH}')"), unique=True),
    Index("rejected_events_month_idx", "event_month"),
)

raw_events_loads = Table(
    "raw_events_loads",
    metadata,
    Column("event_month", Date, primary_key=True, comment="The raw_events month."),
    Column("loaded_at", UTC_TIMESTAMP, nullable=False, comment="When the run that last loaded the month started."),
    Column("run_id", String, comment="Dagster run that last loaded it."),
    Column("rows", BigInteger, nullable=False, comment="Rows the month holds."),
    Column("content_digest", String, comment="Order-independent digest of the month's ids and contents; NULL once another month's load changed the month."),
    Column("changed_at", UTC_TIMESTAMP, nullable=False, comment="When the month's rows last changed (a load with another digest, or a redelivery decided by another month's load). Later months' history built before this is stale."),
    Column("landing_changed_at", UTC_TIMESTAMP, comment="When a landing file holding (or having held) the month changed or disappeared after its last load: its raw_events are stale until it runs again. NULL when current."),
    Column("id_hash_version", Integer, nullable=False, comment="Version of the id hash function of id_hashes."),
    Column("id_hashes", LargeBinary, nullable=False, comment="Sorted 64-bit hashes of the month's event ids (a superset): how a load finds ids other months hold without reading them."),
    comment="One row per loaded month of raw_events: when it last loaded and changed, for redeliveries across months and stale later months.",
)

customer_profiles = Table(
    "customer_profiles",
    metadata,
    Column("customer_id", ID, primary_key=True, comment="Customer."),
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
    Column("source_customer_segment", String, comment="customer_segment as the source system delivered it (its own label, e.g. 'High Value'); ours are in customer_segments."),
    Column("source_lifetime_value", Float, comment="lifetime_value as the source system delivered it; ours is customer_clv.predicted_revenue_24m."),
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
    comment="The manifest: each landing file's size, modification time and months, so a month's load skips files that cannot hold it.",
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


# -- Analytics: per-customer-month summaries, then as-of-month tables --------------------------------
customer_month_summary = Table(
    "customer_month_summary",
    metadata,
    Column("summary_month", Date, nullable=False, comment="First day of the month summarized (the partition)."),
    Column("customer_id", ID, nullable=False, comment="Customer with at least one purchase in the month."),
    Column("purchases", BigInteger, nullable=False, comment="Purchase events in the month."),
    Column("revenue", Float, nullable=False, comment="Revenue of those purchases."),
    Column("purchase_days", Integer, nullable=False, comment="Distinct UTC dates with a purchase."),
    Column("positive_days", Integer, nullable=False, comment="Purchase dates whose revenue (the date's purchases summed) is > 0."),
    Column("positive_day_revenue", Float, nullable=False, comment="Revenue of the positive purchase dates."),
    Column("first_purchase_at", UTC_TIMESTAMP, nullable=False, comment="First purchase in the month."),
    Column("last_purchase_at", UTC_TIMESTAMP, nullable=False, comment="Last purchase in the month."),
    Column("first_purchase_date", Date, nullable=False, comment="UTC date of first_purchase_at."),
    Column("last_purchase_date", Date, nullable=False, comment="UTC date of last_purchase_at."),
    Column("first_day_revenue", Float, nullable=False, comment="Revenue on first_purchase_date."),
    Column("as_of", UTC_TIMESTAMP, nullable=False, comment="Purchases before this instant count (next month's start; the run time for the month in progress)."),
    Column("computed_at", UTC_TIMESTAMP, nullable=False, comment="When this row was computed."),
    *_keyed_by_id("customer_month_summary", "customer_id", month="summary_month"),
    **_partitioned("summary_month"),
)

customer_week_summary = Table(
    "customer_week_summary",
    metadata,
    Column("summary_month", Date, nullable=False, comment="Month whose purchases are summarized (the partition); a week spanning two months has a row in each."),
    Column("customer_id", ID, nullable=False, comment="Customer."),
    Column("week_start", Date, nullable=False, comment="Monday of the ISO week."),
    Column("purchases", BigInteger, nullable=False, comment="Purchase events in that week and month."),
    Column("revenue", Float, nullable=False, comment="Their revenue."),
    *_keyed_by_id("customer_week_summary", "customer_id", "week_start", month="summary_month"),
    **_partitioned("summary_month"),
)

customer_history = Table(
    "customer_history",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Figures are as of the end of this month (the partition)."),
    Column("customer_id", ID, nullable=False, comment="Customer with at least one purchase before as_of."),
    Column("purchases", BigInteger, nullable=False, comment="Purchase events before as_of."),
    Column("revenue", Float, nullable=False, comment="Their revenue."),
    Column("purchase_days", BigInteger, nullable=False, comment="Distinct UTC dates with a purchase."),
    Column("positive_days", BigInteger, nullable=False, comment="Purchase dates whose revenue is > 0."),
    Column("positive_day_revenue", Float, nullable=False, comment="Revenue of the positive purchase dates."),
    Column("first_purchase_at", UTC_TIMESTAMP, nullable=False, comment="First purchase ever (UTC)."),
    Column("last_purchase_at", UTC_TIMESTAMP, nullable=False, comment="Latest purchase before as_of (UTC)."),
    Column("first_purchase_date", Date, nullable=False, comment="UTC date of first_purchase_at."),
    Column("last_purchase_date", Date, nullable=False, comment="UTC date of last_purchase_at."),
    Column("first_month", Date, nullable=False, comment="Month of the first purchase: the customer's monthly cohort."),
    Column("first_day_revenue", Float, nullable=False, comment="Revenue on first_purchase_date."),
    Column("revenue_30d", Float, nullable=False, comment="Revenue of purchases from first_purchase_at to 30 days (720 hours) later, before as_of."),
    Column("revenue_90d", Float, nullable=False, comment="Revenue of purchases from first_purchase_at to 90 days (2,160 hours) later, before as_of."),
    Column("as_of", UTC_TIMESTAMP, nullable=False, comment="Purchases before this instant count (next month's start; the run time for the month in progress)."),
    Column("computed_at", UTC_TIMESTAMP, nullable=False, comment="When this row was computed."),
    *_keyed_by_id("customer_history", "customer_id", month="as_of_month"),
    **_partitioned("as_of_month"),
)

customer_history_builds = Table(
    "customer_history_builds",
    metadata,
    Column("as_of_month", Date, primary_key=True, comment="The customer_history partition built."),
    Column("method", String, nullable=False, comment="'incremental' (previous month's history + this month's summaries) or 'full' (every summary up to the month)."),
    Column("built_at", UTC_TIMESTAMP, nullable=False, comment="When it was built. Builds are serialized, so a history built before an earlier month's is stale and is never extended."),
    Column("as_of", UTC_TIMESTAMP, nullable=False, comment="The history's as_of: only a history as of its month's end is extended."),
    Column("customers", BigInteger, nullable=False, comment="Rows written."),
    comment="How and when each month's customer_history was built (incremental or full).",
)

cohort_activity = Table(
    "cohort_activity",
    metadata,
    Column("summary_month", Date, nullable=False, comment="Month whose purchases are counted (the partition)."),
    Column("granularity", String, nullable=False, comment="'month' or 'week'."),
    Column("cohort_start", Date, nullable=False, comment="First day of the month (Monday of the ISO week) of the customers' first purchase."),
    Column("period_start", Date, nullable=False, comment="First day (Monday) of the period the purchases fall in."),
    Column("active_customers", BigInteger, nullable=False, comment="Cohort customers with a purchase in the period and this month; for a week spanning two months, only those without one in its part of the previous month, so the months' rows add up."),
    Column("revenue", Float, nullable=False, comment="Their revenue in the period and this month."),
    Column("computed_at", UTC_TIMESTAMP, nullable=False, comment="When this row was computed."),
    PrimaryKeyConstraint("summary_month", "granularity", "cohort_start", "period_start", name="cohort_activity_pkey"),
    **_partitioned("summary_month"),
    comment="Purchases per cohort and period of one summary month, kept with the month's history; cohort_ltv adds these up.",
)

cohort_activity_builds = Table(
    "cohort_activity_builds",
    metadata,
    Column("summary_month", Date, primary_key=True, comment="The cohort_activity partition built."),
    Column("built_at", UTC_TIMESTAMP, nullable=False, comment="Same as the month's customer_history_builds.built_at: both are built in one transaction."),
    comment="When each month's cohort_activity was built.",
)

rfm_segment_map = Table(
    "rfm_segment_map",
    metadata,
    Column("priority", Integer, primary_key=True, comment="Rules are tried in this order; the first whose ranges hold a customer's scores wins."),
    Column("rfm_segment", String, nullable=False, comment="Segment name."),
    Column("r_min", Integer, nullable=False, comment="Lowest R score of the rule."),
    Column("r_max", Integer, nullable=False, comment="Highest R score of the rule."),
    Column("fm_min", Integer, nullable=False, comment="Lowest FM score (mean of F and M, rounded half up)."),
    Column("fm_max", Integer, nullable=False, comment="Highest FM score."),
    Column("description", Text, comment="What the segment means."),
    comment='The rules naming RFM segments from R and FM scores, tried in priority order.',
)

customer_rfm = Table(
    "customer_rfm",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Figures are as of the end of this month (the partition)."),
    Column("customer_id", ID, nullable=False, comment="Customer with at least one purchase before as_of."),
    Column("first_purchase_at", UTC_TIMESTAMP, nullable=False, comment="First purchase ever (UTC)."),
    Column("last_purchase_at", UTC_TIMESTAMP, nullable=False, comment="Latest purchase before as_of (UTC)."),
    Column("recency_days", Integer, nullable=False, comment="as_of_date − date of the last purchase, in days."),
    Column("frequency", BigInteger, nullable=False, comment="Purchase events."),
    Column("monetary", Float, nullable=False, comment="Total revenue."),
    Column("avg_order_value", Float, nullable=False, comment="monetary / frequency."),
    Column("r_score", Integer, nullable=False, comment="Recency quintile, 1–5, 5 = most recent; ties share a score."),
    Column("f_score", Integer, nullable=False, comment="Frequency quintile, 1–5, 5 = most frequent."),
    Column("m_score", Integer, nullable=False, comment="Monetary quintile, 1–5, 5 = highest spend."),
    Column("rfm_score", String, nullable=False, comment="The three scores as digits, R F M (e.g. '545')."),
    Column("rfm_segment", String, nullable=False, comment="Named segment from rfm_segment_map (first matching rule)."),
    Column("fm_score", Integer, nullable=False, comment="(F + M + 1) // 2, the FM axis of the segment map."),
    Column("as_of_date", Date, nullable=False, comment="Last calendar day covered."),
    *_run_stamps(),
    *_keyed_by_id("customer_rfm", "customer_id", month="as_of_month"),
    **_partitioned("as_of_month"),
)

customer_clv = Table(
    "customer_clv",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Figures are as of the end of this month (the partition)."),
    Column("customer_id", ID, nullable=False, comment="Customer with at least one purchase before as_of."),
    Column("clv_score", Integer, nullable=False, comment="Percentile rank of predicted_revenue_24m, 0–100."),
    Column("predicted_revenue_24m", Float, nullable=False, comment="Expected revenue over the next 24 months, discounted monthly (1 % a month by default)."),
    Column("expected_purchases_12m", Float, nullable=False, comment="Expected purchase dates in the next 365.25 days."),
    Column("p_alive", Float, nullable=False, comment="Probability the customer is still active."),
    Column("churn_probability", Float, nullable=False, comment="1 − p_alive."),
    Column("expected_order_value", Float, nullable=False, comment="Expected revenue per purchase date (Gamma-Gamma)."),
    Column("segment", String, nullable=False, comment="at_risk (churn ≥ 0.5), else high (score ≥ 67), medium (≥ 34) or low."),
    Column("model", String, nullable=False, comment="bgnbd+gamma_gamma, or the heuristic used and why."),
    Column("frequency", Integer, nullable=False, comment="BG/NBD frequency: distinct purchase dates − 1."),
    Column("recency", Float, nullable=False, comment="BG/NBD recency: last − first purchase date, days."),
    Column("T", Float, nullable=False, comment="BG/NBD age: as_of_date − first purchase date, days."),
    Column("as_of_date", Date, nullable=False, comment="Last calendar day covered."),
    *_run_stamps(),
    *_keyed_by_id("customer_clv", "customer_id", month="as_of_month"),
    **_partitioned("as_of_month"),
)

clv_model_fits = Table(
    "clv_model_fits",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Month whose as-of summary was fitted (the partition)."),
    Column("model", String, nullable=False, comment="bgnbd+gamma_gamma, or the fallback used."),
    Column("r", Float, comment="BG/NBD r."),
    Column("alpha", Float, comment="BG/NBD alpha, in days."),
    Column("a", Float, comment="BG/NBD a."),
    Column("b", Float, comment="BG/NBD b."),
    Column("p", Float, comment="Gamma-Gamma p."),
    Column("q", Float, comment="Gamma-Gamma q."),
    Column("gamma", Float, comment="Gamma-Gamma gamma."),
    Column("log_likelihood", Float, comment="BG/NBD log-likelihood at the optimum (time in days)."),
    Column("gamma_gamma_log_likelihood", Float, comment="Gamma-Gamma log-likelihood at the optimum."),
    Column("n_customers", BigInteger, nullable=False, comment="Customers in the summary."),
    Column("n_repeat_customers", BigInteger, nullable=False, comment="Customers with a repeat purchase date."),
    Column("converged", Boolean, nullable=False, comment="Both fits converged."),
    Column("message", Text, comment="The optimizer's or the fallback's explanation."),
    Column("fitted_at", UTC_TIMESTAMP, nullable=False, comment="When the fit ran."),
    Column("run_id", String, comment="Dagster run that fitted it."),
    PrimaryKeyConstraint("as_of_month", "model", name="clv_model_fits_pkey"),
    **_partitioned("as_of_month"),
)

customer_segments = Table(
    "customer_segments",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Month the membership is as of (the partition)."),
    Column("customer_id", ID, nullable=False, comment="Customer."),
    Column("segment", String, nullable=False, comment="Value segment from customer_clv: high, medium, low or at_risk."),
    Column("rfm_segment", String, nullable=False, comment="Named RFM segment from customer_rfm."),
    Column("previous_segment", String, comment="Value segment in the previous month's customer_segments; NULL if the customer was not there."),
    Column("segment_changed", Boolean, nullable=False, comment="segment differs from previous_segment (new customers count as changed)."),
    *_run_stamps(),
    *_keyed_by_id("customer_segments", "customer_id", month="as_of_month"),
    **_partitioned("as_of_month"),
)

segment_metrics = Table(
    "segment_metrics",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Month the metrics are as of (the partition)."),
    Column("segment_type", String, nullable=False, comment="'value' (high/medium/low/at_risk) or 'rfm' (named RFM segments)."),
    Column("segment", String, nullable=False, comment="Segment name."),
    Column("country", String, comment="Profile country; NULL for the row over all countries."),
    Column("customers", BigInteger, nullable=False, comment="Customers in the segment (and country)."),
    Column("share", Float, nullable=False, comment="customers / all customers in the same country scope."),
    Column("avg_clv_score", Float, comment="Mean clv_score."),
    Column("avg_predicted_revenue", Float, comment="Mean predicted_revenue_24m."),
    Column("total_revenue", Float, comment="Sum of the members' revenue to date (customer_rfm.monetary)."),
    Column("avg_recency_days", Float, comment="Mean recency_days."),
    Column("avg_frequency", Float, comment="Mean purchases to date."),
    *_run_stamps(),
    **_partitioned("as_of_month"),
)

segment_migration = Table(
    "segment_migration",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Month the move ends in (the partition)."),
    Column("from_segment", String, nullable=False, comment="Value segment the month before; 'new' for customers new this month."),
    Column("to_segment", String, nullable=False, comment="Value segment this month."),
    Column("customers", BigInteger, nullable=False, comment="Customers who moved so (or stayed, when equal)."),
    *_run_stamps(),
    PrimaryKeyConstraint("as_of_month", "from_segment", "to_segment", name="segment_migration_pkey"),
    **_partitioned("as_of_month"),
)

segment_definitions = Table(
    "segment_definitions",
    metadata,
    Column("segment_id", String, primary_key=True, comment="'value:<name>', 'rfm:<name>' or 'behavioral:<name>'."),
    Column("segment_name", String, nullable=False, comment="The name used in customer_segments and segment_metrics (behavioural ones: customer_segmentation_suggestions); segment_members takes every kind under this name."),
    Column("segment_description", Text, comment="What the segment means."),
    Column("segment_rules", Text, nullable=False, comment="The rule, in words and thresholds."),
    Column("segment_type", String, nullable=False, comment="'value-based', 'rfm' or 'behavioral'."),
    Column("creation_date", Date, nullable=False, comment="When the segment first appeared."),
    Column("update_date", Date, nullable=False, comment="When its rule or description last changed."),
)

cohort_ltv = Table(
    "cohort_ltv",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Figures are as of the end of this month (the partition)."),
    Column("granularity", String, nullable=False, comment="'month' or 'week': how cohorts and periods are cut."),
    Column("cohort_start", Date, nullable=False, comment="First day of the month (Monday of the ISO week) holding the cohort's customers' first purchase."),
    Column("period", Integer, nullable=False, comment="Months (weeks) since cohort_start: 0 is the cohort's own month (week), up to the one holding as_of_date."),
    Column("period_start", Date, nullable=False, comment="First day (Monday) of the period."),
    Column("customers", BigInteger, nullable=False, comment="Customers in the cohort (same for every period)."),
    Column("active_customers", BigInteger, nullable=False, comment="Cohort customers with at least one purchase in the period."),
    Column("period_revenue", Float, nullable=False, comment="The cohort's revenue in the period."),
    Column("cumulative_revenue", Float, nullable=False, comment="The cohort's revenue from its first purchase to the end of the period (or as_of)."),
    Column("cumulative_revenue_per_customer", Float, nullable=False, comment="cumulative_revenue / customers."),
    Column("as_of_date", Date, nullable=False, comment="Last calendar day covered."),
    *_run_stamps(),
    PrimaryKeyConstraint("as_of_month", "granularity", "cohort_start", "period", name="cohort_ltv_pkey"),
    **_partitioned("as_of_month"),
)

ltv_summary = Table(
    "ltv_summary",
    metadata,
    Column("as_of_month", Date, nullable=False, comment="Figures are as of the end of this month (the partition)."),
    Column("average_ltv_30d", Float, comment="Mean revenue of a customer's first 30 days (first purchase included), over customers_30d; NULL when none."),
    Column("average_ltv_90d", Float, comment="Mean revenue of a customer's first 90 days, over customers_90d; NULL when none."),
    Column("customers_30d", BigInteger, nullable=False, comment="Customers whose first purchase + 30 days (720 hours) is at or before as_of."),
    Column("customers_90d", BigInteger, nullable=False, comment="Customers whose first purchase + 90 days (2,160 hours) is at or before as_of."),
    Column("as_of", UTC_TIMESTAMP, nullable=False, comment="Purchases before this instant count (next month's start; the run time for the month in progress)."),
    Column("as_of_date", Date, nullable=False, comment="Last calendar day covered."),
    *_run_stamps(),
    PrimaryKeyConstraint("as_of_month", name="ltv_summary_pkey"),
    **_partitioned("as_of_month"),
)

rerun_requests = Table(
    "rerun_requests",
    metadata,
    Column("request_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True, comment="Request number."),
    Column("segment", String, nullable=False, comment="Value segment to rescore: high, medium, low or at_risk, or all (every segment, no refit); ignored when customer_ids lists customers."),
    Column("customer_ids", Text, comment="Optional JSON array (or comma-separated list) of customers to rescore instead of the whole segment."),
    Column("as_of_month", Date, nullable=False, comment="Month whose scores are recomputed (its model is reused, not refitted)."),
    Column("requested_by", String, comment="Who asked."),
    Column("requested_at", UTC_TIMESTAMP, nullable=False, comment="When they asked."),
    Column("status", String, nullable=False, comment="pending, launched, rejected, succeeded or failed."),
    Column("run_id", String, comment="Dagster run launched for the request."),
    Column("message", Text, comment="Why a request was rejected or failed, or what the run did."),
    Column("computed", BigInteger, comment="Customers the run rescored (rows written to customer_clv); NULL until it succeeds."),
    Column("errors", BigInteger, comment="Listed customers the run could not score (no purchase before the month's as-of); NULL until it succeeds."),
    Index("rerun_requests_status_idx", "status"),
    comment='The control table of segment reruns: `customer-analytics request-rerun` writes a row, segment_rerun_sensor launches it and records the outcome.',
)
