"""Security, against the real PostgreSQL (CUSTOMER_ANALYTICS_TEST_PG_URL; under CI=true a missing server fails):

* a read-only BI role (`sql/bi_readonly_role.sql`, `customer-analytics create-bi-role`) reads every table and
  view and can change nothing;
* BI views expose no email and no names;
* a password in the warehouse URL never reaches output, logs, the Dagster instance, run metadata, error
  messages or the warehouse;
* injection strings through the CLI, the rerun_requests control table and the landing files are data, never SQL.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import traceback
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import delete, func, inspect, select, text
from sqlalchemy.engine import make_url

from customer_analytics import cli
from customer_analytics.cli import main
from customer_analytics.resources.tables import customer_clv, customer_profiles, metadata, raw_events, rerun_requests
from customer_analytics.views import VIEW_NAMES
from customer_analytics_tests.conftest import IN_CI, _drop_schema, _fresh_postgres, _postgres_or_skip
from customer_analytics_tests.landing_builder import event, write_csv, write_ndjson

ROOT = Path(__file__).resolve().parents[1]
SQL_FILE = ROOT / "sql" / "bi_readonly_role.sql"
CANARY = "S3cr3t-canary"
MONTH = "2025-02"

# Strings that would change a statement if pasted into SQL (quotes, comments, statement breaks, placeholders,
# backslashes, dollar quotes, unicode look-alikes). Each must be refused or stored exactly as given.
INJECTIONS = [
    "x'); DROP TABLE raw_events; --",
    '" OR 1=1 --',
    "Robert'); DROP TABLE customer_clv;--",
    "' OR '1'='1",
    "1; DELETE FROM rerun_requests",
    "C1\\'; DROP TABLE customer_segments; --",
    "back\\slash\\\\double\\",
    "$$; DROP TABLE raw_events; $$",
    "%(segment)s %s {0} :name ?",
    "*/ DROP TABLE rerun_requests; /*",
    '"; DROP SCHEMA public CASCADE; --',
    "\u2018smart\u2019 \u201cquotes\u201d \u02bc\uff07\uff1b DROP TABLE raw_events",
    "C1', 'C2",
    "E'\\x27'); SELECT pg_sleep(30); --",
]
NUL_INJECTION = "C1\x00'); DROP TABLE raw_events; --"  # PostgreSQL text cannot hold NUL: refused everywhere


def _tick(instance) -> dg.SensorResult:
    from customer_analytics.sensors import segment_rerun_sensor

    with dg.build_sensor_context(instance=instance, resources=_sensor_resources()) as context:
        return segment_rerun_sensor(context)


def _sensor_resources() -> dict:
    from customer_analytics.resources import WarehouseResource

    return {"warehouse": WarehouseResource()}  # the warehouse named by the environment, as in production


def _url(url: str, **parts) -> str:
    return make_url(url).set(**parts).render_as_string(hide_password=False)


def _run_cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def _tables_and_views(warehouse) -> tuple[set[str], set[str]]:
    names = inspect(warehouse.engine)
    return set(names.get_table_names(schema=warehouse.schema)), set(names.get_view_names(schema=warehouse.schema))


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """Sample data for 2025-01..2025-02 materialized by the CLI in a subprocess, on a fresh schema, with a warehouse
    URL carrying a password (trust auth ignores it). The subprocesses' stdout and stderr are kept for the scan."""
    url = _url(_postgres_or_skip(), password=CANARY)
    warehouse, schema = _fresh_postgres(url)
    root = tmp_path_factory.mktemp("secured")
    env = {**os.environ, "CUSTOMER_ANALYTICS_DB_URL": url, "CUSTOMER_ANALYTICS_DB_SCHEMA": schema,
           "CUSTOMER_ANALYTICS_LANDING_DIR": str(root / "landing"), "DAGSTER_HOME": str(root / "dagster_home"),
           "CUSTOMER_ANALYTICS_START_MONTH": "2025-01"}
    env.pop("CUSTOMER_ANALYTICS_BI_PASSWORD", None)
    outputs = []
    for argv in (["generate-sample", "--out", str(root / "landing"), "--customers", "150", "--start", "2025-01",
                  "--months", "2", "--seed", "3"],
                 ["materialize", "--from", "2025-01", "--to", MONTH]):
        done = subprocess.run([sys.executable, "-m", "customer_analytics.cli", *argv], env=env, cwd=root,
                              capture_output=True, text=True, timeout=900)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
    yield SimpleNamespace(warehouse=warehouse, schema=schema, url=url, root=root, outputs=outputs)
    _drop_schema(warehouse, schema)


@pytest.fixture
def secured_env(secured, monkeypatch):
    """The environment of the secured warehouse, for in-process commands and runs."""
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", secured.url)
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_SCHEMA", secured.schema)
    monkeypatch.setenv("CUSTOMER_ANALYTICS_LANDING_DIR", str(secured.root / "landing"))
    monkeypatch.setenv("DAGSTER_HOME", str(secured.root / "dagster_home"))
    monkeypatch.delenv("CUSTOMER_ANALYTICS_BI_PASSWORD", raising=False)
    with secured.warehouse.begin() as connection:
        connection.execute(delete(rerun_requests))
    yield secured
    with secured.warehouse.begin() as connection:
        connection.execute(delete(rerun_requests))


# -- The read-only BI role --------------------------------------------------------------------------------------

def _drop_role(warehouse, role: str) -> None:
    with warehouse.begin() as connection:
        if connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first():
            quoted = warehouse.quote(role)
            connection.execute(text(f"DROP OWNED BY {quoted}"))  # its grants and default privileges, everywhere here
            connection.execute(text(f"DROP ROLE {quoted}"))


@pytest.fixture
def roles(secured):
    """Fresh role names (cluster-wide, so unique per test run); every one is dropped afterwards."""
    made: list[str] = []

    def new(prefix: str = "bi_test") -> str:
        made.append(f"{prefix}_{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield new
    for role in made:
        _drop_role(secured.warehouse, role)


def _connect_as(role: str) -> psycopg.Connection:
    """A new connection as `role` (the test server trusts local connections, so no password is needed)."""
    server = make_url(_postgres_or_skip())
    return psycopg.connect(host=server.host or "127.0.0.1", port=server.port or 5432, dbname=server.database,
                           user=role, autocommit=True)


def _relations(warehouse) -> dict[str, str]:
    """Every table (partitions too) and view in the warehouse schema: name -> relkind."""
    with warehouse.connect() as connection:
        rows = connection.execute(text(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm')"), {"schema": warehouse.schema}).all()
    return dict(rows)


def _privileges(warehouse, role: str) -> set[tuple[str, str, str]]:
    """What the catalog says `role` may do in the schema: (kind, object, privilege)."""
    with warehouse.connect() as connection:
        rows = connection.execute(text("""
            WITH grantee AS (SELECT oid FROM pg_roles WHERE rolname = :role)
            SELECT 'relation', c.relname, a.privilege_type
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
             WHERE n.nspname = :schema AND a.grantee = (SELECT oid FROM grantee)
            UNION ALL
            SELECT 'schema', n.nspname, a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE n.nspname = :schema AND a.grantee = (SELECT oid FROM grantee)
            UNION ALL
            SELECT 'default', d.defaclobjtype::text, a.privilege_type
              FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a
             WHERE n.nspname = :schema AND a.grantee = (SELECT oid FROM grantee)
            UNION ALL
            SELECT 'attribute', 'login', rolcanlogin::text FROM pg_roles WHERE rolname = :role
            UNION ALL
            SELECT 'attribute', 'powers', (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)::text
              FROM pg_roles WHERE rolname = :role
            UNION ALL
            SELECT 'member of', r.rolname, '' FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
             WHERE m.member = (SELECT oid FROM grantee)
        """), {"role": role, "schema": warehouse.schema}).all()
    return {tuple(row) for row in rows}


def _psql(role: str, schema: str, database_url: str) -> subprocess.CompletedProcess:
    psql = shutil.which("psql")
    if psql is None:
        message = "psql (the PostgreSQL client) is not installed: sql/bi_readonly_role.sql cannot be applied"
        if IN_CI:
            pytest.fail(message + " (CI=true: this is a failure, not a skip)")
        pytest.skip(message)
    server = make_url(database_url)
    return subprocess.run(
        [psql, "-X", "-q", "-h", server.host or "127.0.0.1", "-p", str(server.port or 5432), "-U", server.username,
         "-d", server.database, "-v", f"role={role}", "-v", f"schema={schema}", "-f", str(SQL_FILE)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PGPASSWORD": ""})


def _expect_denied(connection: psycopg.Connection, statement) -> None:
    """`statement` fails with SQLSTATE 42501 (insufficient privilege); whatever happens is rolled back."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with connection.transaction(force_rollback=True):
            connection.execute(statement)


@pytest.mark.postgres
def test_bi_role_reads_every_table_and_view_and_can_change_nothing(secured, secured_env, roles, monkeypatch, capsys):
    warehouse, schema = secured.warehouse, secured.schema
    role = roles()
    monkeypatch.setenv(cli.BI_PASSWORD_ENV, "bi-pass-123")
    assert main(["create-bi-role", "--role", role]) == 0
    out = capsys.readouterr().out
    assert f"created read-only role {role}" in out and "bi-pass-123" not in out
    with warehouse.connect() as connection:
        stored = connection.execute(text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role}).scalar()
    assert stored.startswith("SCRAM-SHA-256$") and "bi-pass-123" not in stored, "only the password's hash is stored"

    relations = _relations(warehouse)
    views = {name for name, kind in relations.items() if kind in ("v", "m")}
    tables = {name for name, kind in relations.items() if kind in ("r", "p")}
    assert views == set(VIEW_NAMES)
    assert {t.name for t in metadata.sorted_tables} <= tables
    # The catalog: USAGE on the schema, SELECT on each relation and on future ones; no powers, no memberships.
    assert _privileges(warehouse, role) == (
        {("schema", schema, "USAGE"), ("default", "r", "SELECT"), ("attribute", "login", "true"),
         ("attribute", "powers", "false")} | {("relation", name, "SELECT") for name in relations})

    quoted = {name: sql.Identifier(schema, name) for name in relations}
    with _connect_as(role) as bi:
        for name in sorted(relations):
            bi.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(quoted[name])).fetchall()
        counts = {view: bi.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(quoted[view])).fetchone()[0] for view in views}
        assert all(counts[view] > 0 for view in views), counts  # the sample fills every view: the reads were real

        denied = 0
        for name in sorted(tables):
            column = bi.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND "
                                "table_name = %s ORDER BY ordinal_position LIMIT 1", (schema, name)).fetchone()[0]
            for statement in (
                sql.SQL("INSERT INTO {} DEFAULT VALUES").format(quoted[name]),
                sql.SQL("UPDATE {t} SET {c} = {c}").format(t=quoted[name], c=sql.Identifier(column)),
                sql.SQL("DELETE FROM {}").format(quoted[name]),
                sql.SQL("TRUNCATE {}").format(quoted[name]),
                sql.SQL("DROP TABLE {}").format(quoted[name]),
                sql.SQL("ALTER TABLE {} ADD COLUMN bi_extra integer").format(quoted[name]),
            ):
                _expect_denied(bi, statement)
                denied += 1
        for name in sorted(views):
            for statement in (sql.SQL("DROP VIEW {}").format(quoted[name]),
                              sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT 1 AS x").format(quoted[name])):
                _expect_denied(bi, statement)
                denied += 1
        sequences = [row[0] for row in bi.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = %s", (schema,)).fetchall()]
        for statement in (
            sql.SQL("CREATE TABLE {} (a integer)").format(sql.Identifier(schema, "bi_made_this")),
            sql.SQL("CREATE VIEW {} AS SELECT 1 AS x").format(sql.Identifier(schema, "bi_made_this_view")),
            sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(f"{role}_own")),
            *(sql.SQL("SELECT nextval({})").format(sql.Literal(f"{schema}.{s}")) for s in sequences),
        ):
            _expect_denied(bi, statement)
            denied += 1
    assert denied >= 6 * len(tables) + 2 * len(views) + 3

    # Default privileges: tables created later, and the views bi_views drops and recreates, stay readable.
    from customer_analytics.views import create_views

    create_views(warehouse)
    with warehouse.begin() as connection:
        connection.execute(text(f"CREATE TABLE {warehouse.qualified('bi_future')} (a integer)"))
    try:
        with _connect_as(role) as bi:
            for name in [*sorted(views), "bi_future"]:
                bi.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(schema, name))).fetchall()
            _expect_denied(bi, sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(schema, "bi_future")))
    finally:
        with warehouse.begin() as connection:
            connection.execute(text(f"DROP TABLE {warehouse.qualified('bi_future')}"))


def _statements(block: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in block.splitlines()]
    return [" ".join(s.split()) for s in " ".join(lines).split(";") if s.strip()]


def test_the_sql_file_and_the_cli_grant_the_same_privileges_statement_for_statement():
    text_ = SQL_FILE.read_text()
    block = re.search(r"-- privileges: begin\n(.*?)-- privileges: end", text_, re.S)
    assert block, "sql/bi_readonly_role.sql marks its privilege statements"
    from_file = [s.replace(':"schema"', "{schema}").replace(':"role"', "{role}") for s in _statements(block.group(1))]
    assert from_file == [" ".join(s.split()) for s in cli.BI_ROLE_PRIVILEGES]
    # No privilege other than USAGE and SELECT is ever granted, by either.
    grants = [s for s in from_file if " GRANT " in f" {s} "]
    assert all(re.search(r"GRANT (USAGE|SELECT) ON ", s) for s in grants) and len(grants) == 3
    # The refusals say the same in both.
    for reason in re.findall(r"THEN '([^']+)'", cli.BI_ROLE_CHECK):
        assert f"'{reason}'" in text_, reason


@pytest.mark.postgres
def test_the_sql_file_run_by_psql_gives_exactly_the_cli_s_privileges(secured, secured_env, roles):
    by_cli, by_psql = roles(), roles()
    assert main(["create-bi-role", "--role", by_cli]) == 0
    done = _psql(by_psql, secured.schema, _postgres_or_skip())
    assert done.returncode == 0, done.stderr
    assert _privileges(secured.warehouse, by_psql) == _privileges(secured.warehouse, by_cli)
    assert ("schema", secured.schema, "USAGE") in _privileges(secured.warehouse, by_psql)
    # Rerunning either resets to the same privileges.
    assert _psql(by_cli, secured.schema, _postgres_or_skip()).returncode == 0
    assert main(["create-bi-role", "--role", by_psql]) == 0
    assert _privileges(secured.warehouse, by_psql) == _privileges(secured.warehouse, by_cli)


@pytest.mark.postgres
def test_create_bi_role_refuses_roles_that_could_do_more_than_read_and_changes_nothing(secured, secured_env, roles,
                                                                                      monkeypatch, capsys):
    warehouse = secured.warehouse
    superuser, member, owner, fresh = roles("bi_super"), roles("bi_member"), roles("bi_owner"), roles("bi_fresh")
    with warehouse.begin() as connection:
        connection.execute(text(f"CREATE ROLE {superuser} SUPERUSER"))
        connection.execute(text(f"CREATE ROLE {member}"))
        connection.execute(text(f"GRANT pg_read_all_stats TO {member}"))
        connection.execute(text(f"CREATE ROLE {owner}"))
        connection.execute(text(f"CREATE TABLE {warehouse.qualified('bi_owned')} (a integer)"))
        connection.execute(text(f"ALTER TABLE {warehouse.qualified('bi_owned')} OWNER TO {owner}"))
    missing_schema = f"ca_missing_{uuid.uuid4().hex[:8]}"
    current = make_url(_postgres_or_skip()).username
    cases = [
        (current, secured.schema, "role is the warehouse user running this, which owns the tables"),
        (superuser, secured.schema, "role exists with SUPERUSER"),
        (member, secured.schema, "role exists and is a member of other roles"),
        (owner, secured.schema, "role owns the schema or objects in it"),
        (fresh, missing_schema, "schema does not exist in this database"),
    ]
    try:
        for role, schema, reason in cases:
            before = _privileges(warehouse, role)
            assert main(["create-bi-role", "--role", role, "--schema", schema]) == 2
            assert reason in capsys.readouterr().err
            done = _psql(role, schema, _postgres_or_skip())
            assert done.returncode == 3 and reason in done.stderr, done.stderr
            assert _privileges(warehouse, role) == before, f"{role}: nothing changed"
        with warehouse.connect() as connection:
            assert not connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": fresh}).first()
            assert not connection.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": missing_schema}).first()
    finally:
        with warehouse.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {warehouse.qualified('bi_owned')}"))


# -- Personal data stays in customer_profiles ---------------------------------------------------------------------

# A person's mail or name; a segment's name (segment_name, Tinybird's filter) is not personal.
PERSONAL_COLUMN = re.compile(r"mail|(?<!segment_)name", re.I)


@pytest.mark.postgres
def test_bi_views_expose_no_email_and_no_names(secured):
    warehouse = secured.warehouse
    profiles = warehouse.read_frame(select(customer_profiles.c.email, customer_profiles.c.first_name,
                                           customer_profiles.c.last_name))
    emails = set(profiles["email"].dropna())
    names = set(profiles["first_name"].dropna()) | set(profiles["last_name"].dropna())
    assert len(emails) > 50 and len(names) > 20, "the sample has personal data to leak"
    columns = inspect(warehouse.engine)
    with warehouse.connect() as connection:
        for view in VIEW_NAMES:
            view_columns = columns.get_columns(view, schema=warehouse.schema)
            assert not [c["name"] for c in view_columns if PERSONAL_COLUMN.search(c["name"])], view
            qualified = warehouse.qualified(view)
            # No email anywhere in a row's text; no name as a whole value of any column.
            leaked = connection.execute(text(
                f"SELECT COUNT(*) FROM {qualified} AS v JOIN {warehouse.qualified('customer_profiles')} AS p "
                "ON p.email IS NOT NULL AND strpos(CAST(v AS text), p.email) > 0")).scalar()
            assert leaked == 0, f"{view} shows profile emails"
            for column in view_columns:
                found = connection.execute(text(
                    f"SELECT COUNT(*) FROM {qualified} WHERE CAST({warehouse.quote(column['name'])} AS text) = ANY(:names)"),
                    {"names": sorted(names)}).scalar()
                assert found == 0, f"{view}.{column['name']} shows profile names"


# -- Credentials never logged ---------------------------------------------------------------------------------------

def _files_text(folder: Path) -> str:
    """Every byte under `folder` (SQLite databases, their WAL files, compute logs), as text."""
    return "\n".join(path.read_bytes().decode("utf-8", "replace") for path in sorted(folder.rglob("*")) if path.is_file())


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Dagster's own, building the UI's snapshot
def test_the_warehouse_password_never_reaches_output_logs_metadata_or_errors(secured, secured_env, monkeypatch,
                                                                              capfd, caplog):
    from dagster._core.remote_representation.external_data import RepositorySnap  # what the UI is sent
    from dagster._serdes import serialize_value

    from customer_analytics.definitions import customer_analytics_job, defs

    caplog.set_level(logging.DEBUG)
    corpus: list[str] = list(secured.outputs)
    home = secured.root / "dagster_home"
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        # A rerun through the control table: requested by the CLI, launched by the sensor, run in process.
        assert main(["request-rerun", "--segment", "at_risk", "--month", MONTH, "--by", "security-test"]) == 0
        tick = _tick(instance)
        assert len(tick.run_requests) == 1
        rerun = defs.resolve_job_def("segment_rerun_job").execute_in_process(
            run_config=tick.run_requests[0].run_config, tags=tick.run_requests[0].tags, instance=instance)
        assert rerun.success
        # Runs whose warehouse refuses the connection: the same password, a port nobody listens on.
        monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", _url(secured.url, port=1))
        failed = defs.resolve_job_def(customer_analytics_job.name).execute_in_process(
            partition_key=MONTH, asset_selection=[dg.AssetKey("customer_rfm")], instance=instance, raise_on_error=False)
        assert not failed.success
        failures = [e.event_specific_data.error.to_string() for e in failed.all_events
                    if e.is_failure and getattr(e.event_specific_data, "error", None)]
        assert any("cannot connect to the warehouse" in f for f in failures), failures
        corpus += failures
        try:
            _tick(instance)
            raise AssertionError("the sensor cannot reach the warehouse")
        except Exception as error:  # noqa: BLE001 - whatever it raises, its text is scanned
            corpus.append("".join(traceback.format_exception(error)))
        for argv in (["materialize", "--from", MONTH, "--to", MONTH], ["request-rerun", "--segment", "high"],
                     ["create-bi-role", "--role", "bi_never_made"]):
            assert _run_cli(argv) == 2
        done = subprocess.run([sys.executable, "-m", "customer_analytics.cli", "materialize"], cwd=secured.root,
                              env={**os.environ}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2
        corpus.append(done.stdout + done.stderr)
        # What Dagster's UI is sent about the code location, with the variable set.
        corpus.append(serialize_value(RepositorySnap.from_def(defs.get_repository_def())))
        # Everything the instance recorded: runs (config, tags) and every event with its metadata.
        for run in instance.get_runs():
            corpus.append(serialize_value(run))
            corpus += [serialize_value(record) for record in instance.all_logs(run.run_id)]
    finally:
        instance.dispose()
    captured = capfd.readouterr()
    corpus += [captured.out, captured.err, caplog.text, _files_text(home)]
    everything = "\n".join(corpus)

    assert CANARY not in everything
    # The scan saw what it had to: the masked URL, the runs, the refusals and the rerun's own metadata.
    assert "postgres:***@" in everything and "cannot connect to the warehouse" in everything
    assert rerun.run_id in everything and failed.run_id in everything and "rescored_customers" in everything
    # Nor does the warehouse store it anywhere (request messages, rejections, run ids, …).
    with secured.warehouse.connect() as connection:
        for table in metadata.sorted_tables:
            hits = connection.execute(text(f"SELECT COUNT(*) FROM {secured.warehouse.qualified(table.name)} AS t "
                                           "WHERE strpos(CAST(t AS text), :canary) > 0"), {"canary": CANARY}).scalar()
            assert hits == 0, table.name


# -- Injection strings: refused, or stored exactly as given -------------------------------------------------------

def _requests(warehouse):
    return warehouse.read_frame(select(rerun_requests).order_by(rerun_requests.c.request_id))


def _guarded_tables(warehouse) -> tuple[set[str], set[str], int, int]:
    tables, views = _tables_and_views(warehouse)
    month = date.fromisoformat(f"{MONTH}-01")
    return (tables, views, warehouse.scalar(select(func.count()).select_from(raw_events)),
            warehouse.scalar(select(func.count()).select_from(customer_clv).where(customer_clv.c.as_of_month == month)))


@pytest.mark.postgres
def test_injection_strings_through_the_cli_are_refused_or_stored_literally(secured, secured_env, capsys):
    warehouse = secured.warehouse
    guarded = _guarded_tables(warehouse)
    tried = 0
    for injection in INJECTIONS:
        assert _run_cli(["request-rerun", "--segment", injection]) == 2
        assert "valid segments are high, medium, low, at_risk" in capsys.readouterr().err
        assert _run_cli(["request-rerun", "--segment", "high", "--month", MONTH, "--customer", injection,
                         "--by", injection]) == 0
        row = _requests(warehouse).iloc[-1]
        assert json.loads(row["customer_ids"]) == [injection.strip()] and row["requested_by"] == injection.strip()
        assert row["segment"] == "high" and row["status"] == "pending"
        tried += 1
    for argv in (["--segment", NUL_INJECTION], ["--segment", "high", "--customer", NUL_INJECTION],
                 ["--segment", "high", "--by", NUL_INJECTION]):
        assert _run_cli(["request-rerun", *argv]) == 2
    tried += 1
    err = capsys.readouterr().err
    assert "holds a control character" in err and "Traceback" not in err
    assert len(_requests(warehouse)) == len(INJECTIONS), "one request per accepted command, none for a refused one"
    assert _guarded_tables(warehouse) == guarded
    assert tried == len(INJECTIONS) + 1


@pytest.mark.postgres
def test_injection_strings_in_the_control_table_are_rejected_or_run_as_plain_ids(secured, secured_env):
    from customer_analytics.definitions import defs
    from customer_analytics.jobs import REQUEST_TAG

    warehouse = secured.warehouse
    guarded = _guarded_tables(warehouse)
    month = date.fromisoformat(f"{MONTH}-01")

    def insert(**values) -> int:  # as psql or a BI tool would write a request: nothing checked
        with warehouse.begin() as connection:
            return int(connection.execute(rerun_requests.insert().values(
                requested_at=datetime.now(timezone.utc), status="pending", as_of_month=month, **values))
                .inserted_primary_key[0])

    bad_segments = {insert(segment=injection) for injection in INJECTIONS}
    bad_lists = {
        insert(segment="high", customer_ids=json.dumps([NUL_INJECTION])): "holds a control character",
        insert(segment="high", customer_ids=json.dumps({"ids": INJECTIONS[0]})): "must be a list of customer ids",
        insert(segment="high", customer_ids="[" + INJECTIONS[0]): "is not a valid JSON array",
    }
    as_json = insert(segment="high", customer_ids=json.dumps(INJECTIONS))
    as_text = insert(segment="low", customer_ids=INJECTIONS[0])  # not JSON: a comma-separated list of one id

    with dg.instance_for_test() as instance:
        tick = _tick(instance)
        launched = {int(r.tags[REQUEST_TAG]): r for r in tick.run_requests}
        assert set(launched) == {as_json, as_text}
        rows = _requests(warehouse).set_index("request_id")
        for request_id in bad_segments:
            assert rows.loc[request_id, "status"] == "rejected"
            assert "valid segments are high, medium, low, at_risk" in rows.loc[request_id, "message"]
        for request_id, reason in bad_lists.items():
            assert rows.loc[request_id, "status"] == "rejected" and reason in rows.loc[request_id, "message"]
        config = launched[as_json].run_config["ops"]["rescore_segment"]["config"]
        assert config["customer_ids"] == [i.strip() for i in INJECTIONS], "the ids travel as data, unchanged"
        assert launched[as_text].run_config["ops"]["rescore_segment"]["config"]["customer_ids"] == [INJECTIONS[0]]

        job = defs.resolve_job_def("segment_rerun_job")
        for request in launched.values():
            result = job.execute_in_process(run_config=request.run_config, tags=request.tags, instance=instance)
            assert result.success
    rows = _requests(warehouse).set_index("request_id")
    # A customer list: the message names no segment (the request's `high` was ignored), and counts every id as an error.
    assert rows.loc[as_json, "message"].startswith(f"{MONTH} {len(INJECTIONS)} listed customers: rescored 0 customers")
    assert (rows.loc[as_json, "computed"], rows.loc[as_json, "errors"]) == (0, len(INJECTIONS))
    # Nobody of those names exists, so nothing was rescored; every table is still there with its rows.
    assert _guarded_tables(warehouse) == guarded
    with warehouse.connect() as connection:
        assert connection.execute(select(func.count()).select_from(customer_clv)
                                  .where(customer_clv.c.customer_id.in_(INJECTIONS))).scalar() == 0


@pytest.mark.postgres
def test_injection_strings_in_landing_files_load_literally_and_every_table_survives(tmp_path, monkeypatch, capsys):
    warehouse, schema = _fresh_postgres(_postgres_or_skip())
    landing = tmp_path / "landing"
    try:
        monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", warehouse.url)
        monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_SCHEMA", schema)
        monkeypatch.setenv("CUSTOMER_ANALYTICS_LANDING_DIR", str(landing))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        monkeypatch.setenv("CUSTOMER_ANALYTICS_START_MONTH", "2025-01")
        # Each injection is a customer with two purchases (NDJSON and CSV) and an event id of its own.
        ndjson = [event(f"{injection}#1", injection, f"2025-01-{day:02d} 10:00:00", price=10 + day,
                        country=injection, page_url=injection)
                  for day, injection in enumerate(INJECTIONS, start=1)]
        ndjson.append(event("nul-1", NUL_INJECTION, "2025-01-20 10:00:00"))
        write_ndjson(landing / "events" / "injections.ndjson", ndjson)
        write_csv(landing / "events" / "injections.csv",
                  ["event_id", "customer_id", "event_type", "event_timestamp", "price", "quantity"],
                  [[f"{injection}#2", injection, "purchase", f"2025-01-{day:02d} 18:00:00", "5.5", "2"]
                   for day, injection in enumerate(INJECTIONS, start=1)])
        write_ndjson(landing / "profiles" / "profiles.ndjson", [
            {"customer_id": injection, "email": f"{injection}@example.com", "first_name": injection,
             "last_name": injection, "city": injection, "country": "DE", "signup_date": "2024-12-01"}
            for injection in INJECTIONS])
        assert main(["materialize", "--from", "2025-01", "--to", "2025-01"]) == 0, capsys.readouterr().out

        tables, views = _tables_and_views(warehouse)
        assert {t.name for t in metadata.sorted_tables} <= tables and set(VIEW_NAMES) <= views
        loaded = warehouse.read_frame(select(raw_events.c.event_id, raw_events.c.customer_id, raw_events.c.country))
        expected_ids = {f"{i}#{n}" for i in INJECTIONS for n in (1, 2)}
        assert set(loaded["event_id"]) == expected_ids, "every id loaded exactly as written"
        assert set(loaded["customer_id"]) == set(INJECTIONS)
        assert set(loaded["country"].dropna()) == set(INJECTIONS)
        rejected = warehouse.read_frame(text(f"SELECT reason FROM {warehouse.qualified('rejected_events')}"))
        assert len(rejected) == 1 and "NUL" in rejected["reason"].iloc[0], "the NUL record is quarantined with a reason"
        scored = warehouse.read_frame(select(customer_clv.c.customer_id))
        assert set(scored["customer_id"]) == set(INJECTIONS)
        profiles = warehouse.read_frame(select(customer_profiles.c.customer_id, customer_profiles.c.city))
        assert (profiles["customer_id"] == profiles["city"]).all() and set(profiles["customer_id"]) == set(INJECTIONS)
        by_customer = warehouse.read_frame(text(f"SELECT customer_id, cltv, purchases FROM {warehouse.qualified('customer_cltv')}"))
        assert set(by_customer["customer_id"]) == set(INJECTIONS) and (by_customer["purchases"] == 2).all()
    finally:
        _drop_schema(warehouse, schema)
