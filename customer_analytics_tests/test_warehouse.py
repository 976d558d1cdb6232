"""The warehouse: table creation, bulk loads and atomic replacement, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import event, func, inspect, select, text

from customer_analytics.config import ConfigError, redact_url
from customer_analytics.resources.tables import cohort_activity, customer_profiles, raw_events
from customer_analytics.resources.warehouse import Warehouse, WarehouseUnavailable
from customer_analytics.summaries import PURCHASES_SQL


def _events(month: str, ids: list[str], **overrides) -> pd.DataFrame:
    stamps = pd.Series(pd.to_datetime([f"{month}-15 10:00:00"] * len(ids), utc=True))
    frame = pd.DataFrame({
        "event_id": ids, "customer_id": "c1", "event_type": "purchase", "event_timestamp": stamps,
        "event_month": pd.Timestamp(f"{month}-01"), "event_date": pd.Timestamp(f"{month}-15"),
        "price": 1.25, "quantity": 2, "revenue": 2.5, "source": "events", "source_file": "events/a.ndjson",
        "source_record": range(1, len(ids) + 1), "ingested_at": pd.Timestamp("2026-01-01", tz="UTC"),
    })
    for name, value in overrides.items():
        frame[name] = value
    return frame


def _replace_month(warehouse: Warehouse, month: str, frame: pd.DataFrame) -> None:
    with warehouse.replace(lock_name=f"raw_events/{month}") as replacement:
        replacement.replace_partition(raw_events, date.fromisoformat(f"{month}-01"))
        replacement.append(raw_events, frame)


def _executed_statements(warehouse: Warehouse) -> list[str]:
    """A list that every SQL statement the warehouse's engine runs from now on is appended to."""
    statements: list[str] = []
    event.listen(warehouse.engine, "before_cursor_execute", lambda conn, cursor, statement, *args: statements.append(statement))
    return statements


def _counts(warehouse: Warehouse) -> dict:
    frame = warehouse.read_frame(select(raw_events.c.event_month, func.count()).group_by(raw_events.c.event_month))
    return {str(month): count for month, count in frame.itertuples(index=False)}


def test_replacing_a_month_leaves_other_months_alone(warehouse):
    _replace_month(warehouse, "2025-01", _events("2025-01", ["a", "b", "c"]))
    _replace_month(warehouse, "2025-02", _events("2025-02", ["d"]))
    _replace_month(warehouse, "2025-01", _events("2025-01", ["x", "y"]))
    assert _counts(warehouse) == {"2025-01-01": 2, "2025-02-01": 1}
    ids = set(warehouse.read_frame(select(raw_events.c.event_id))["event_id"])
    assert ids == {"x", "y", "d"}


def test_a_crash_part_way_leaves_the_previous_contents(warehouse):
    _replace_month(warehouse, "2025-01", _events("2025-01", ["a", "b"]))
    with pytest.raises(RuntimeError, match="boom"):
        with warehouse.replace(lock_name="raw_events/2025-01") as replacement:
            replacement.replace_partition(raw_events, date(2025, 1, 1))
            replacement.append(raw_events, _events("2025-01", ["x", "y", "z"]))
            raise RuntimeError("boom")
    assert _counts(warehouse) == {"2025-01-01": 2}
    # The staging tables are gone too: a second replacement works normally.
    _replace_month(warehouse, "2025-01", _events("2025-01", ["p"]))
    assert _counts(warehouse) == {"2025-01-01": 1}


@pytest.mark.parametrize("few_rows", [False, True])
def test_a_query_summing_many_rows_is_staged_alike_as_a_query_or_an_insert(warehouse, few_rows):
    _replace_month(warehouse, "2025-01", _events("2025-01", ["a", "b", "c"], customer_id=["c1", "c2", "c1"]))
    month = date(2025, 1, 1)
    sql = ("SELECT event_month, 'month', event_month, event_month, COUNT(DISTINCT customer_id), SUM(revenue), :at "
           f"FROM {warehouse.qualified('raw_events')} WHERE event_month = :month GROUP BY event_month")
    params = {"month": month, "at": pd.Timestamp("2026-01-01", tz="UTC")}
    statements = _executed_statements(warehouse)
    with warehouse.replace(lock_name="cohort_activity/2025-01") as replacement:
        replacement.replace_partition(cohort_activity, month)
        rows = replacement.append_select(cohort_activity, [c.name for c in cohort_activity.columns], sql, params,
                                         few_rows=few_rows)
    assert rows == 1
    stored = warehouse.read_frame(select(cohort_activity.c.granularity, cohort_activity.c.active_customers,
                                         cohort_activity.c.revenue))
    assert stored.values.tolist() == [["month", 2, 7.5]]
    # On PostgreSQL few rows come by a plain query (which may run on parallel workers), not by INSERT … SELECT.
    if warehouse.dialect == "postgresql":
        inserted_by_select = any(s.lstrip().startswith("INSERT") and "raw_events" in s for s in statements)
        assert inserted_by_select == (not few_rows)


@pytest.mark.postgres
def test_rows_a_month_does_not_hold_are_refused_before_publishing(pg_warehouse):
    # A March row staged as January must never become visible: the staging table's CHECK refuses it
    # during the (background) COPY, and the error reaches the caller.
    warehouse = pg_warehouse
    _replace_month(warehouse, "2025-01", _events("2025-01", ["a"]))
    wrong = _events("2025-03", ["m"])
    with pytest.raises(Exception, match="violates check constraint"):
        _replace_month(warehouse, "2025-01", wrong)
    assert _counts(warehouse) == {"2025-01-01": 1}


def test_text_survives_the_bulk_load_exactly(warehouse):
    awkward = ['comma, "quotes"', "new\nline", "tab\tand back\\slash", "ünïcødé ✓", "", None]
    frame = _events("2025-01", [f"e{i}" for i in range(len(awkward))], page_url=awkward)
    _replace_month(warehouse, "2025-01", frame)
    stored = warehouse.read_frame(select(raw_events.c.event_id, raw_events.c.page_url).order_by(raw_events.c.event_id))
    got = [None if pd.isna(v) else v for v in stored["page_url"]]
    # An empty string is stored as NULL only if the loader made it so; the warehouse keeps it.
    assert got == awkward


def test_money_and_timestamps_round_trip(warehouse):
    frame = _events("2025-01", ["a"], price=0.1, revenue=0.30000000000000004,
                    event_timestamp=pd.Series(pd.to_datetime(["2025-01-31 23:59:59.123456"], utc=True)))
    _replace_month(warehouse, "2025-01", frame)
    row = warehouse.read_frame(select(raw_events)).iloc[0]
    assert row["price"] == 0.1 and row["revenue"] == 0.30000000000000004
    stamp = pd.Timestamp(row["event_timestamp"])
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    assert stamp == pd.Timestamp("2025-01-31 23:59:59.123456", tz="UTC")
    assert str(row["event_month"]) == "2025-01-01" and str(row["event_date"]) == "2025-01-15"


def test_whole_table_replacement(warehouse):
    for names in (["c1", "c2", "c3"], ["c9"]):
        with warehouse.replace(lock_name="customer_profiles") as replacement:
            replacement.delete_where(customer_profiles, customer_profiles.c.customer_id.is_not(None))
            replacement.append(customer_profiles, pd.DataFrame({"customer_id": names, "updated_at": pd.Timestamp("2026-01-01", tz="UTC")}))
    assert list(warehouse.read_frame(select(customer_profiles.c.customer_id))["customer_id"]) == ["c9"]


def test_ensure_tables_is_idempotent(warehouse):
    warehouse.ensure_tables()
    warehouse._tables_ready = False
    warehouse.ensure_tables()
    assert warehouse.scalar(select(func.count()).select_from(raw_events)) == 0


@pytest.mark.postgres
def test_postgres_tables_live_in_the_configured_schema(pg_warehouse):
    pg_warehouse.ensure_tables()
    tables = pg_warehouse.read_frame(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = :schema", {"schema": pg_warehouse.schema}
    )["table_name"].tolist()
    assert {"raw_events", "rejected_events", "customer_profiles", "landing_files"} <= set(tables)


@pytest.mark.postgres
def test_every_postgres_session_has_room_to_hash_a_month_of_customers(pg_warehouse):
    assert pg_warehouse.scalar("SHOW work_mem") == "256MB"  # reads as well as replacements
    with pg_warehouse.replace(lock_name="test") as replacement:
        assert replacement.query("SHOW work_mem", {})["work_mem"].iloc[0] == "256MB"
        # ...and to keep its temporary tables in memory, set before the first one is created
        replacement.temp_table("numbers", "SELECT 1 AS n", {})
        assert replacement.query("SHOW temp_buffers", {})["temp_buffers"].iloc[0] == "256MB"


@pytest.mark.postgres
def test_ids_compare_bytewise_and_lead_the_keys_of_swapped_in_months(pg_warehouse):
    """Index builds over ids are the bulk of a month's swap: they must sort in "C" and on the id first."""
    _replace_month(pg_warehouse, "2025-03", _events("2025-03", ["e2", "e1"]))
    columns = pg_warehouse.read_frame(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        "WHERE table_schema = :schema AND column_name IN ('customer_id', 'event_id')", {"schema": pg_warehouse.schema})
    assert "raw_events_2025_03" in set(columns["table_name"])  # the swapped-in child, not only the parents
    assert len(columns) > 10
    assert (columns["collation_name"] == "C").all(), columns[columns["collation_name"] != "C"]
    keys = pg_warehouse.read_frame(
        "SELECT c.relname AS table_name, pg_get_indexdef(i.indexrelid) AS definition FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND i.indisprimary", {"schema": pg_warehouse.schema}).set_index("table_name")["definition"]
    assert keys["raw_events_2025_03"].endswith("(event_id, event_month)")
    for table in ("customer_month_summary", "customer_week_summary", "customer_history", "customer_rfm",
                  "customer_clv", "customer_segments"):
        assert "(customer_id, " in keys[table], keys[table]


def test_bad_urls_are_refused_with_what_is_valid():
    with pytest.raises(ConfigError, match="sqlite:///"):
        Warehouse("mysql://u:p@h/db")
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        Warehouse("not a url")
    with pytest.raises(ConfigError, match="not a valid identifier"):
        Warehouse("sqlite://", "bad schema; drop")


def test_unreachable_database_message_hides_the_password():
    warehouse = Warehouse("postgresql+psycopg://analyst:s3cret-pw@127.0.0.1:1/db")
    with pytest.raises(WarehouseUnavailable) as raised:
        warehouse.check_connection()
    assert "s3cret-pw" not in str(raised.value) and "analyst:***@127.0.0.1" in str(raised.value)
    assert "s3cret-pw" not in redact_url("postgresql://analyst:s3cret-pw@host/db")


def test_typed_reads_keep_values_nulls_and_types(warehouse):
    import pyarrow as pa

    sql = """
    SELECT 'a,"b"' AS s, '' AS empty, CAST(NULL AS TEXT) AS missing, 3 AS n, 2.5 AS x,
           '2025-03-01' AS d, :who AS who
    """
    types = {"s": pa.string(), "empty": pa.string(), "missing": pa.string(), "n": pa.int64(), "x": pa.float64(),
             "d": pa.date32(), "who": pa.string()}
    frame = warehouse.read_typed(sql, {"who": "x'); DROP TABLE raw_events; --"}, types)
    row = frame.iloc[0]
    assert (row["s"], row["empty"], row["n"], row["x"]) == ('a,"b"', "", 3, 2.5)
    assert row["missing"] is None or row["missing"] != row["missing"]  # NULL stays NULL, not ""
    assert str(row["d"])[:10] == "2025-03-01"
    assert row["who"] == "x'); DROP TABLE raw_events; --", "bound as a value, never as SQL"


@pytest.mark.postgres
def test_typed_reads_of_timestamps_are_utc_whatever_the_session_time_zone(pg_warehouse):
    import pyarrow as pa

    from sqlalchemy.engine import make_url

    url = make_url(pg_warehouse.url).update_query_dict({"options": "-c TimeZone=Asia/Kolkata"})
    kolkata = Warehouse(url.render_as_string(hide_password=False), pg_warehouse.schema)
    try:
        assert kolkata.scalar("SHOW TimeZone") == "Asia/Kolkata"
        frame = kolkata.read_typed("SELECT CAST(:t AS TIMESTAMPTZ) AS t", {"t": "2025-03-01 12:00:00+00"},
                                   {"t": pa.timestamp("us", tz="UTC")})
    finally:
        kolkata.engine.dispose()
    assert frame["t"].iloc[0] == pd.Timestamp("2025-03-01 12:00:00", tz="UTC")


def test_constant_columns_are_stored_for_every_row_and_stay_with_their_rows(warehouse):
    """`append(..., constants=...)`: on PostgreSQL the staging table's defaults, not COPY data. Each append's
    constants hold for its own rows only, and the published partition keeps no default."""
    month = date(2025, 1, 1)
    quoted = "events/it's; DROP TABLE raw_events; --.ndjson"
    with warehouse.replace(lock_name="raw_events/2025-01") as replacement:
        replacement.replace_partition(raw_events, month)
        replacement.append(raw_events, _events("2025-01", ["a", "b"]).drop(columns=["source_file", "ingested_at"]),
                           constants={"source_file": quoted, "ingested_at": pd.Timestamp("2026-02-03 04:05:06.789", tz="UTC"),
                                      "event_month": month})
        replacement.append(raw_events, _events("2025-01", ["c"], source_file="events/b.ndjson"),
                           constants={"ingested_at": pd.Timestamp("2027-01-01", tz="UTC")})
        replacement.append(raw_events, _events("2025-01", ["d"], source_file="events/c.ndjson"))
    stored = warehouse.read_frame(select(raw_events).order_by(raw_events.c.event_id)).set_index("event_id")
    assert stored["source_file"].tolist() == [quoted, quoted, "events/b.ndjson", "events/c.ndjson"]
    ingested = pd.to_datetime(stored["ingested_at"], utc=True, format="ISO8601")
    assert ingested.tolist() == [pd.Timestamp("2026-02-03 04:05:06.789", tz="UTC")] * 2 + [
        pd.Timestamp("2027-01-01", tz="UTC"), pd.Timestamp("2026-01-01", tz="UTC")]
    assert set(stored["event_month"].astype(str)) == {"2025-01-01"}
    if warehouse.dialect == "postgresql":
        defaults = warehouse.read_frame(
            "SELECT c.relname, a.attname FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid "
            "JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname LIKE 'raw_events%'",
            {"schema": warehouse.schema})
        assert defaults.empty, defaults
    with pytest.raises(ValueError, match="raw_events has no column no_such_column"):
        with warehouse.replace(lock_name="raw_events/2025-01") as replacement:
            replacement.replace_partition(raw_events, month)
            replacement.append(raw_events, _events("2025-01", ["e"]), constants={"no_such_column": 1})
    assert len(warehouse.read_frame(select(raw_events.c.event_id))) == 4


@pytest.mark.postgres
def test_the_planner_estimates_joins_of_one_month_from_the_parents_statistics(pg_warehouse):
    """Swapping in a new month analyzes the partitioned parent: a one-month join is estimated near its true
    size (without parent statistics PostgreSQL assumes 200 distinct ids, and a million-row join goes by
    nested loop)."""
    from customer_analytics.resources.tables import customer_rfm, customer_segments

    month, customers = date(2025, 1, 1), 20_000
    ids = [f"c{i:06d}" for i in range(customers)]
    stamp = {"as_of_month": pd.Timestamp(month), "computed_at": pd.Timestamp("2025-02-01", tz="UTC"), "run_id": "t"}
    segments = pd.DataFrame({"customer_id": ids, "segment": "low", "rfm_segment": "Lost", "previous_segment": None,
                             "segment_changed": True, **stamp})
    rfm = pd.DataFrame({"customer_id": ids, "first_purchase_at": pd.Timestamp("2025-01-02", tz="UTC"),
                        "last_purchase_at": pd.Timestamp("2025-01-03", tz="UTC"), "recency_days": 28, "frequency": 1,
                        "monetary": 1.0, "avg_order_value": 1.0, "r_score": 1, "f_score": 1, "m_score": 1, "rfm_score": "111",
                        "rfm_segment": "Lost", "fm_score": 1, "as_of_date": pd.Timestamp("2025-01-31"), **stamp})
    pg_warehouse.replace_month(customer_segments, month, segments)
    pg_warehouse.replace_month(customer_rfm, month, rfm)
    plan = pg_warehouse.scalar(
        f"EXPLAIN (FORMAT JSON) SELECT COUNT(*) FROM {pg_warehouse.qualified('customer_segments')} s "
        f"JOIN {pg_warehouse.qualified('customer_rfm')} r ON r.as_of_month = s.as_of_month AND r.customer_id = s.customer_id "
        "WHERE s.as_of_month = DATE '2025-01-01'")
    plan = plan if isinstance(plan, list) else __import__("json").loads(plan)

    def joins(node):
        if "Join" in node["Node Type"] or node["Node Type"] == "Nested Loop":
            yield node
        for child in node.get("Plans", []):
            yield from joins(child)

    join = next(joins(plan[0]["Plan"]))
    assert customers / 3 <= join["Plan Rows"] <= customers * 3, join
    assert join["Node Type"] != "Nested Loop", join


def test_one_month_is_read_from_its_own_partition_when_there_is_one(warehouse):
    """`partition_of`: PostgreSQL queries of one month name the month's partition, so the planner uses that
    partition's statistics; a month not built yet, and SQLite, read the table (the month filter stays)."""
    _replace_month(warehouse, "2025-01", _events("2025-01", ["a", "b"]))
    built, missing = warehouse.partition_of("raw_events", date(2025, 1, 1)), warehouse.partition_of("raw_events", date(2025, 2, 1))
    if warehouse.dialect == "postgresql":
        assert built == warehouse.qualified("raw_events_2025_01") and missing == warehouse.qualified("raw_events")
    else:
        assert built == missing == warehouse.qualified("raw_events")
    assert warehouse.scalar(f"SELECT COUNT(*) FROM {built} WHERE event_month = :month", warehouse.sql_params({"month": date(2025, 1, 1)})) == 2
    assert warehouse.scalar(f"SELECT COUNT(*) FROM {missing} WHERE event_month = :month", warehouse.sql_params({"month": date(2025, 2, 1)})) == 0


@pytest.mark.postgres
def test_a_swapped_in_month_has_statistics_of_its_final_rows_analyzed_once(pg_warehouse):
    """A staged table analyzed to be queried is not analyzed again at the swap unless written since; one
    written after its ANALYZE (here an UPDATE) is analyzed again, so the partition's statistics are current."""
    statements = _executed_statements(pg_warehouse)
    n_distinct = f"SELECT n_distinct FROM pg_stats WHERE schemaname = '{pg_warehouse.schema}' " \
                 "AND tablename = 'raw_events_2025_01' AND attname = 'customer_id'"
    for update in (False, True):
        statements.clear()
        with pg_warehouse.replace(lock_name="raw_events/2025-01") as replacement:
            replacement.replace_partition(raw_events, date(2025, 1, 1))
            replacement.append(raw_events, _events("2025-01", [f"e{i}" for i in range(50)]))  # all of customer c1
            staged = replacement.staged(raw_events)
            replacement.analyze(staged)
            if update:
                replacement.execute(f"UPDATE {staged} SET customer_id = 'c' || event_id", {}, writes=raw_events)
        analyzes = [s for s in statements if s.startswith(f"ANALYZE {staged}")]
        assert len(analyzes) == (2 if update else 1), analyzes
        # One customer: n_distinct 1; after the UPDATE every row's customer differs: -1 (all distinct).
        assert pg_warehouse.scalar(n_distinct) == (-1 if update else 1)


@pytest.mark.postgres
def test_the_parent_is_analyzed_as_its_partition_count_reaches_a_power_of_two(pg_warehouse):
    """ANALYZE of a partitioned parent analyzes every partition again, so adding a month must not pay it each
    time: months 1, 2 and 4 refresh the parent's statistics, months 3 and 5 and a replaced month do not."""
    statements = _executed_statements(pg_warehouse)
    parent = f"ANALYZE {pg_warehouse.qualified('raw_events')}"
    analyzed = []
    for month in ("2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-03"):
        statements.clear()
        _replace_month(pg_warehouse, month, _events(month, [f"{month}-e{i}" for i in range(20)]))
        analyzed.append(statements.count(parent))
    assert analyzed == [1, 1, 0, 1, 0, 0]
    inherited = pg_warehouse.scalar(f"SELECT COUNT(*) FROM pg_stats WHERE schemaname = '{pg_warehouse.schema}' "
                                    "AND tablename = 'raw_events' AND inherited")
    assert inherited > 0


@pytest.mark.postgres
def test_a_swapped_in_month_is_loaded_frozen_and_all_visible(pg_warehouse):
    """Staged rows are COPYed with FREEZE: the published partition's pages are all-visible from the start, so
    the first scan after the load does not rewrite every page to set hint bits (nor autovacuum later)."""
    _replace_month(pg_warehouse, "2025-01", _events("2025-01", [f"e{i:05d}" for i in range(20_000)], page_url="x" * 200))
    with pg_warehouse.engine.connect() as connection:
        pages, visible = connection.execute(
            text("SELECT relpages, relallvisible FROM pg_class WHERE oid = CAST(:name AS regclass)"),
            {"name": pg_warehouse.qualified("raw_events_2025_01")}).one()
    assert pages > 50  # several pages, all of them all-visible
    assert visible == pages


@pytest.mark.postgres
def test_a_months_purchase_scan_reads_its_customer_index_alone(pg_warehouse):
    """raw_events indexes customers' purchases only, covering what the summaries' purchase scan reads."""
    types = (["purchase"] + ["page_view"] * 9) * 2_000
    _replace_month(pg_warehouse, "2025-01", _events("2025-01", [f"e{i:05d}" for i in range(len(types))], event_type=types))
    purchases = PURCHASES_SQL.format(raw_events=pg_warehouse.qualified("raw_events"))
    params = {"month": date(2025, 1, 1), "as_of": pd.Timestamp("2025-02-01", tz="UTC")}
    with pg_warehouse.engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))  # at 20,000 rows a scan of the table costs less
        plan = "\n".join(connection.execute(text(f"EXPLAIN {purchases}"), params).scalars())
        rows = connection.execute(text(purchases), params).all()
    assert "Index Only Scan" in plan and "on raw_events_2025_01" in plan, plan
    assert len(rows) == 2_000
    definition = pg_warehouse.scalar(
        "SELECT pg_get_indexdef(CAST(:name AS regclass))", {"name": pg_warehouse.qualified("raw_events_purchases_idx")})
    assert "(customer_id) INCLUDE" in definition and "WHERE" in definition and "'purchase'" in definition, definition


def test_a_warehouse_of_an_earlier_version_gets_todays_indexes(warehouse):
    warehouse.ensure_tables()
    with warehouse.begin() as connection:
        connection.execute(text(f"DROP INDEX {warehouse.qualified('raw_events_purchases_idx')}"))
        connection.execute(text(f"CREATE INDEX raw_events_customer_idx ON {warehouse.qualified('raw_events')} (customer_id)"))
    warehouse._tables_ready = False
    warehouse.ensure_tables()
    with warehouse.engine.connect() as connection:
        names = {index["name"] for index in inspect(connection).get_indexes("raw_events", schema=warehouse.schema
                                                                             if warehouse.dialect == "postgresql" else None)}
    assert "raw_events_purchases_idx" in names
    assert "raw_events_customer_idx" not in names


def test_a_column_added_since_a_warehouse_was_made_is_added_to_its_table(warehouse):
    """Tables only ever gain columns: ensure_tables adds them to an older warehouse, NULL in its old rows."""
    from sqlalchemy import MetaData, insert, inspect, select

    from customer_analytics.resources.tables import customer_profiles

    old = MetaData(schema=warehouse.schema if warehouse.dialect == "postgresql" else None)
    legacy = customer_profiles.to_metadata(old)
    legacy._columns.remove(legacy.c.location)  # customer_profiles as it was before `location`
    with warehouse.begin() as connection:
        if warehouse.dialect == "postgresql":
            connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {warehouse.quote(warehouse.schema)}")
        legacy.create(connection)
        connection.execute(insert(legacy).values(customer_id="c1", source_file="p.csv", updated_at=pd.Timestamp("2025-01-01", tz="UTC")))
    warehouse.ensure_tables()
    with warehouse.connect() as connection:
        names = {c["name"] for c in inspect(connection).get_columns("customer_profiles", schema=old.schema)}
    assert "location" in names
    rows = warehouse.read_frame(select(customer_profiles.c.customer_id, customer_profiles.c.location))
    assert list(rows["customer_id"]) == ["c1"] and rows["location"].isna().all()
