"""`customer-analytics`: refusals with exit status 2, and a materialization recorded in DAGSTER_HOME."""

from __future__ import annotations

import re

import dagster as dg
import pytest

from customer_analytics.cli import main
from customer_analytics_tests.landing_builder import event, write_ndjson


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    monkeypatch.setenv("CUSTOMER_ANALYTICS_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["materialize", "--from", "2025-13"], "use YYYY-MM"),
        (["materialize", "--from", "May 2025"], "use YYYY-MM"),
        (["materialize", "--from", "2025-03", "--to", "2025-01"], "is before --from"),
        (["materialize", "--from", "1999-01"], "valid months are"),
        (["materialize", "--select", "no_such_asset"], "assets are: "),
        (["generate-sample", "--out", "x", "--customers", "0"], "at least 1"),
        (["generate-sample", "--out", "x", "--bad-rate", "2"], "between 0 and 0.5"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_and_say_what_is_valid(env, capsys, argv, message):
    with pytest.raises(SystemExit) as raised:
        code = main(argv)
        raise SystemExit(code)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not (env / "wh.db").exists(), "nothing is written for a refused command"


def test_unreachable_database_is_refused_without_the_password(env, monkeypatch, capsys):
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", "postgresql+psycopg://etl:hunter2@127.0.0.1:1/shop")
    assert main(["materialize", "--from", "2025-01", "--to", "2025-01"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and "hunter2" not in err and "etl:***@" in err


def test_materialize_records_runs_in_the_instance(env, capsys):
    write_ndjson(env / "landing" / "events" / "a.ndjson", [event("e1", "c1", "2025-02-10 10:00:00")])
    code = main(["materialize", "--from", "2025-01", "--to", "2025-02", "--select", "raw_events"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2025-01" in out and "2025-02" in out and "0 failed;" in out
    assert re.search(r"^raw_events\s+1$", out, re.MULTILINE), "the closing table counts the warehouse's rows"
    instance = dg.DagsterInstance.from_config(str(env / "dagster_home"))
    runs = instance.get_runs()
    assert sorted(r.tags.get("partition") for r in runs) == ["2025-01", "2025-02"]
    assert all(r.tags.get("trigger") == "cli" for r in runs)
