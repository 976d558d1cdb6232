"""Rerun requests: what is accepted into `rerun_requests`, and what is refused with exit status 2."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import select

from customer_analytics.cli import main
from customer_analytics.config import ConfigError
from customer_analytics.reruns import count_requests, parse_customer_ids, validate_request
from customer_analytics.resources.tables import customer_clv, rerun_requests


@pytest.fixture
def scored(warehouse, monkeypatch, tmp_path):
    """A warehouse with CLV scores for January and February 2025."""
    warehouse.ensure_tables()
    for month in (date(2025, 1, 1), date(2025, 2, 1)):
        with warehouse.replace(lock_name=f"customer_clv/{month}") as replacement:
            replacement.replace_partition(customer_clv, month)
            replacement.append(customer_clv, pd.DataFrame({
                "as_of_month": pd.Timestamp(month), "customer_id": ["c1", "c'2"], "clv_score": 50, "predicted_revenue_24m": 1.0,
                "expected_purchases_12m": 1.0, "p_alive": 0.5, "churn_probability": 0.5, "expected_order_value": 1.0,
                "segment": "at_risk", "model": "heuristic", "frequency": 0, "recency": 0.0, "T": 1.0,
                "as_of_date": pd.Timestamp(month), "computed_at": pd.Timestamp("2025-03-01", tz="UTC")}))
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_URL", warehouse.url)
    monkeypatch.setenv("CUSTOMER_ANALYTICS_DB_SCHEMA", warehouse.schema)
    return warehouse


@pytest.mark.parametrize(("argv", "message"), [
    (["--segment", "vip"], "valid segments are high, medium, low, at_risk"),
    (["--segment", "high", "--month", "2024-12"], "scored months are 2025-01, 2025-02"),
    (["--segment", "high", "--month", "Feb 2025"], "use YYYY-MM"),
    (["--segment", "high; DROP TABLE rerun_requests"], "valid segments are"),
])
def test_bad_requests_are_refused_and_nothing_is_written(scored, capsys, argv, message):
    try:
        status = main(["request-rerun", *argv])
    except SystemExit as refused:  # argparse refuses a malformed --month itself
        status = refused.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert count_requests(scored) == 0


def test_a_request_is_stored_pending(scored, capsys):
    assert main(["request-rerun", "--segment", "at_risk", "--customer", "c1", "--customer", "c'2", "--by", "ana"]) == 0
    assert "pending" in capsys.readouterr().out
    row = scored.read_frame(select(rerun_requests)).iloc[0]
    assert (row["segment"], row["status"], row["requested_by"]) == ("at_risk", "pending", "ana")
    assert str(row["as_of_month"]) == "2025-02-01", "the latest scored month by default"
    assert json.loads(row["customer_ids"]) == ["c1", "c'2"]


def test_the_whole_segment_of_a_chosen_month(scored):
    request = validate_request(scored, "high", "2025-01")
    assert request.as_of_month == date(2025, 1, 1) and request.customer_ids is None


def test_every_segment_at_once(scored, capsys):
    assert main(["request-rerun", "--segment", "all", "--month", "2025-01"]) == 0
    assert "pending: every segment, month 2025-01" in capsys.readouterr().out
    row = scored.read_frame(select(rerun_requests)).iloc[0]
    assert (row["segment"], row["customer_ids"]) == ("all", None)


@pytest.mark.parametrize(("argv", "unknown"), [
    (["--customer", "c1", "--customer", "C-TYPO"], "1 listed customer(s) have no purchase before 2025-02's as-of and "
                                                   "no score for it: C-TYPO"),
    (["--month", "2025-01", "--customer", "c3", "--customer", "c1"], "no score for it: c3;"),
])
def test_an_unknown_customer_is_accepted_with_a_warning_naming_it(scored, capsys, argv, unknown):
    assert main(["request-rerun", "--segment", "high", *argv]) == 0
    err = capsys.readouterr().err
    assert unknown in err and "c1" not in err
    assert count_requests(scored) == 1


def test_with_customers_the_confirmation_names_no_segment(scored, capsys):
    assert main(["request-rerun", "--segment", "high", "--customer", "c1"]) == 0
    captured = capsys.readouterr()
    assert "1 customer(s) (--segment ignored)" in captured.out and "segment high" not in captured.out
    assert captured.err == "", "a known customer: no warning"


def test_a_control_table_made_before_the_count_columns_gains_them(warehouse):
    """`computed` and `errors` are added to an existing rerun_requests; its rows stay."""
    from sqlalchemy import text

    warehouse.ensure_tables()
    with warehouse.begin() as connection:
        connection.execute(text(f"DROP TABLE {warehouse.qualified('rerun_requests')}"))
        connection.execute(text(f"CREATE TABLE {warehouse.qualified('rerun_requests')} (request_id INTEGER PRIMARY KEY, "
                                "segment VARCHAR NOT NULL, customer_ids TEXT, as_of_month DATE NOT NULL, requested_by VARCHAR, "
                                "requested_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL, run_id VARCHAR, message TEXT)"))
        connection.execute(text(f"INSERT INTO {warehouse.qualified('rerun_requests')} (request_id, segment, as_of_month, "
                                "requested_at, status) VALUES (1, 'high', '2025-01-01', '2025-02-01 00:00:00', 'succeeded')"))
    for _process in range(2):  # a new process each, its tables not yet ensured: the second finds the columns
        fresh = type(warehouse)(warehouse.url, warehouse.schema)
        try:
            fresh.ensure_tables()
            rows = fresh.read_frame(select(rerun_requests))
        finally:
            fresh.engine.dispose()
        assert rows["request_id"].tolist() == [1] and rows[["computed", "errors"]].isna().all().all()


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("c1, c2,c1", ("c1", "c2")), ('["c1", 7]', ("c1", "7")), (["a", " "], ("a",)),
])
def test_customer_lists(value, expected):
    assert parse_customer_ids(value) == expected


@pytest.mark.parametrize("value", ['["c1", ', '{"a": 1}', [["nested"]]])
def test_bad_customer_lists_are_refused(value):
    with pytest.raises(ConfigError):
        parse_customer_ids(value)
