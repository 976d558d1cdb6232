"""Smoke test of benchmarks/model_fit.py: the project's side at a tiny size, without lifetimes.

No timing assertions; no virtualenv is created and nothing is fetched (subprocess is blocked).
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
from pathlib import Path

import pytest

from benchmarks import model_fit

PARAM_NAMES = {"r", "alpha", "a", "b", "p", "q", "gamma"}


@pytest.fixture
def no_subprocess(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the project-only path must not start processes: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(model_fit, "ensure_lifetimes_venv", refuse)
    monkeypatch.setattr(model_fit, "run_lifetimes_worker", refuse)


def test_project_side_runs_without_lifetimes(no_subprocess, tmp_path):
    result = model_fit.run(customers=3000, repeats=1, venv=tmp_path / "never-created", lifetimes=False)

    assert not (tmp_path / "never-created").exists()
    assert result["lifetimes"] is None and result["comparison"] is None
    assert result["customers"] == 3000 and 0 < result["n_repeat_customers"] < 3000
    project = result["project"]
    assert project["converged"], project["fits"]
    assert set(project["params"]) == PARAM_NAMES == set(result["true_params"])
    assert all(math.isfinite(v) and v > 0 for v in project["params"].values())
    assert set(project["seconds"]) == {"bgnbd", "gamma_gamma", "total"}
    assert all(s >= 0 for s in project["seconds"].values())
    assert all(len(v) == 1 for v in project["samples"].values())
    for fit in project["fits"].values():
        assert fit["converged"] and math.isfinite(fit["log_likelihood"])

    text = model_fit.markdown(result)
    assert "| BG/NBD fit |" in text and "lifetimes skipped" in text
    json.dumps(result)  # JSON-ready


def test_cli_skip_lifetimes_writes_json(no_subprocess, tmp_path, capsys):
    out = tmp_path / "model_fit.json"
    model_fit.main(["--customers", "2000", "--repeats", "1", "--skip-lifetimes", "--json", str(out)])
    written = json.loads(out.read_text())
    assert written["project"]["converged"] and written["lifetimes"] is None
    assert "| figure | project seconds |" in capsys.readouterr().out


def test_param_agreement_criteria():
    ours = {"r": 0.24302, "alpha": 30.8687, "a": 0.7748, "b": 2.3682, "p": 6.2331, "q": 3.7566, "gamma": 15.5986}
    theirs = {"r": 0.24302, "alpha": 30.8687, "a": 0.7748, "b": 2.3682, "p": 6.2331, "q": 3.7566, "v": 15.5986}
    rows = model_fit.compare_params(ours, theirs)
    assert [r["param"] for r in rows][-1] == "gamma (lifetimes v)"
    assert all(r["agree"] and r["criterion"] == "3 s.f. and rel" for r in rows)

    assert model_fit.same_sig_digits(1.2345, 1.2349) and not model_fit.same_sig_digits(1.2345, 1.2351)
    # Straddling a rounding boundary: different at 3 s.f. but relatively close -> "rel".
    rows = model_fit.compare_params({**ours, "r": 0.24349999}, {**theirs, "r": 0.24350001})
    assert rows[0]["agree"] and rows[0]["criterion"] == "rel"
    rows = model_fit.compare_params({**ours, "q": 3.70}, theirs)
    assert not rows[5]["agree"] and rows[5]["criterion"] == "none"


def test_worker_is_standalone():
    """The worker runs in the throwaway venv: it must not import the project."""
    source = Path(model_fit.WORKER).read_text()
    tree = ast.parse(source)
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "customer_analytics" not in modules and "benchmarks" not in modules
    assert {"lifetimes", "numpy", "pandas", "json"} <= modules
    compile(source, str(model_fit.WORKER), "exec")
