"""BG/NBD + Gamma-Gamma maximum-likelihood fit: this project vs the `lifetimes` library, same data, same run.

    python -m benchmarks.model_fit --customers 1000000 [--repeats 3] [--venv /tmp/ca-lifetimes-venv]
                                   [--json benchmarks/results/model_fit.json] [--skip-lifetimes]

Target: the project's fit (``fit_bgnbd`` + ``fit_gamma_gamma``, as ``clv_scores.fit_models``
calls them) at least 10x faster than lifetimes' ``BetaGeoFitter`` + ``GammaGammaFitter``, with
every parameter equal to 3 significant digits.

What it does:

1. Simulates a deterministic customer summary from known CDNOW-like parameters in days
   (``TRUE_BGNBD``, ``TRUE_GAMMA_GAMMA``; first purchases spread over a one-year window, so T is
   uniform on 1..365 days) and writes it to a temporary Parquet file.
2. Times the project's two fits on that file's data: median of ``repeats`` after one warm-up.
3. Unless ``--skip-lifetimes``: makes sure a THROWAWAY virtualenv (default
   ``$TMPDIR/ca-lifetimes-venv``) holds lifetimes 0.11.3 -- creating it with ``python3 -m venv``
   and ``pip install lifetimes==0.11.3 "pandas<3" "setuptools<82" pyarrow`` from the default
   package index if needed, printing each command -- and runs ``benchmarks/lifetimes_worker.py``
   there on the same file (warm-up + ``repeats``; lifetimes' default convergence settings).
   lifetimes is never installed into the project's own environment (it needs pandas < 3).
4. Prints Markdown tables (times with ratio lifetimes/project against the 10x target;
   parameters of both sides and the true ones, with 3-significant-digit agreement) and writes
   the same figures as JSON.

Agreement of a parameter: "3 s.f." means ``float(f"{x:.3g}") == float(f"{y:.3g}")``; "rel" means
``|x - y| / max(|x|, |y|) < 5e-4``. Rounding alone can split two values that differ by 1e-12
across a rounding boundary, and the relative test alone admits e.g. 1.0004 vs 1.0008, so both
are reported and a parameter counts as agreeing when either holds (column "agree", which names
the criterion that held). To tell which side stopped early when they disagree, both parameter
sets are scored with the project's own log-likelihood (total over customers, days).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from customer_analytics.transforms.models import (
    BgNbdParams,
    FitResult,
    GammaGammaParams,
    bgnbd_log_likelihood,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    simulate_bgnbd_gamma_gamma,
)

# CDNOW estimates (Fader, Hardie & Lee 2005): BG/NBD r=0.243, alpha=4.414 weeks, a=0.793, b=2.426;
# Gamma-Gamma p=6.25, q=3.74, gamma=15.44 (dollars). alpha converted to days.
TRUE_BGNBD = BgNbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)
TRUE_GAMMA_GAMMA = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
OBSERVATION_DAYS = 365
SEED = 2024

TARGET_RATIO = 10.0
SIG_DIGITS = 3
REL_TOLERANCE = 5e-4

LIFETIMES_REQUIREMENTS = ["lifetimes==0.11.3", "pandas<3", "setuptools<82", "pyarrow"]
DEFAULT_VENV = Path(tempfile.gettempdir()) / "ca-lifetimes-venv"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "model_fit.json"
WORKER = Path(__file__).resolve().parent / "lifetimes_worker.py"

# (our name, lifetimes' name, model)
PARAMS = [
    ("r", "r", "bgnbd"), ("alpha", "alpha", "bgnbd"), ("a", "a", "bgnbd"), ("b", "b", "bgnbd"),
    ("p", "p", "gamma_gamma"), ("q", "q", "gamma_gamma"), ("gamma", "v", "gamma_gamma"),
]


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def simulated_summary(customers: int, seed: int = SEED) -> pd.DataFrame:
    """Deterministic BTYD summary (days), columns as ``clv_scores.btyd_summary`` names them."""
    sim = simulate_bgnbd_gamma_gamma(
        customers, TRUE_BGNBD, TRUE_GAMMA_GAMMA, max_T=float(OBSERVATION_DAYS), seed=seed
    )
    return pd.DataFrame({
        "frequency": sim.frequency,
        "recency": sim.recency,
        "T": sim.T,
        "spend_frequency": sim.frequency,
        "spend_monetary": sim.monetary,  # 0.0 where frequency == 0 (not used by either fit)
    })


# ---------------------------------------------------------------------------------------
# Project side
# ---------------------------------------------------------------------------------------


def _project_inputs(summary: pd.DataFrame) -> tuple[np.ndarray, ...]:
    spenders = summary["spend_frequency"].to_numpy() > 0
    return (
        summary["frequency"].to_numpy(),
        summary["recency"].to_numpy(),
        summary["T"].to_numpy(),
        summary["spend_frequency"].to_numpy()[spenders],
        summary["spend_monetary"].to_numpy()[spenders],
    )


def _fit_summary(fit: FitResult) -> dict:
    return {
        "converged": fit.converged,
        "message": fit.message,
        "log_likelihood": fit.log_likelihood,
        "n_customers": fit.n_customers,
    }


def time_project(summary: pd.DataFrame, repeats: int) -> dict:
    """Median seconds of fit_bgnbd and fit_gamma_gamma (as fit_models calls them) after a warm-up."""
    x, tx, T, spend_x, spend_m = _project_inputs(summary)
    samples: dict[str, list[float]] = {"bgnbd": [], "gamma_gamma": [], "total": []}
    for attempt in range(repeats + 1):  # the first is a warm-up
        started = time.perf_counter()
        bg = fit_bgnbd(x, tx, T)
        middle = time.perf_counter()
        gg = fit_gamma_gamma(spend_x, spend_m)
        done = time.perf_counter()
        if attempt:
            samples["bgnbd"].append(middle - started)
            samples["gamma_gamma"].append(done - middle)
            samples["total"].append(done - started)
    bgp, ggp = bg.params, gg.params
    return {
        "params": {"r": bgp.r, "alpha": bgp.alpha, "a": bgp.a, "b": bgp.b,
                   "p": ggp.p, "q": ggp.q, "gamma": ggp.gamma},
        "seconds": {k: statistics.median(v) for k, v in samples.items()},
        "samples": samples,
        "fits": {"bgnbd": _fit_summary(bg), "gamma_gamma": _fit_summary(gg)},
        "converged": bg.converged and gg.converged,
    }


# ---------------------------------------------------------------------------------------
# lifetimes side (throwaway venv)
# ---------------------------------------------------------------------------------------


def _run_logged(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$ " + " ".join(f'"{c}"' if any(ch in c for ch in " <>") else c for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def ensure_lifetimes_venv(venv: Path) -> Path:
    """Python of a throwaway venv with lifetimes 0.11.3 in it, creating/filling the venv if needed."""
    venv = Path(venv).absolute()
    if venv.resolve() in {Path(sys.prefix).resolve(), (Path(__file__).resolve().parents[1] / ".venv").resolve()}:
        raise SystemExit(f"refusing to install lifetimes into the project's own environment {venv}")
    python = venv / "bin" / "python"
    if python.exists():
        probe = subprocess.run([str(python), "-c", "import lifetimes, pyarrow"], capture_output=True)
        if probe.returncode == 0:
            print(f"lifetimes venv: using existing {venv}", flush=True)
            return python
    else:
        base = shutil.which("python3") or sys.executable
        print(f"lifetimes venv: creating throwaway venv {venv}", flush=True)
        _run_logged([base, "-m", "venv", str(venv)])
    print("lifetimes venv: installing lifetimes and its pins (default package index)", flush=True)
    _run_logged([str(python), "-m", "pip", "install", "--disable-pip-version-check", *LIFETIMES_REQUIREMENTS])
    return python


def run_lifetimes_worker(python: Path, data: Path, repeats: int) -> dict:
    cmd = [str(python), str(WORKER), "--input", str(data), "--repeats", str(repeats), "--warmup"]
    print(f"lifetimes: fitting in the throwaway venv ({' '.join(cmd[1:])})", flush=True)
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------


def same_sig_digits(x: float, y: float, digits: int = SIG_DIGITS) -> bool:
    return math.isfinite(x) and math.isfinite(y) and float(f"{x:.{digits}g}") == float(f"{y:.{digits}g}")


def relative_difference(x: float, y: float) -> float:
    scale = max(abs(x), abs(y))
    return 0.0 if scale == 0 else abs(x - y) / scale


def compare_params(ours: dict, theirs: dict) -> list[dict]:
    true = {"r": TRUE_BGNBD.r, "alpha": TRUE_BGNBD.alpha, "a": TRUE_BGNBD.a, "b": TRUE_BGNBD.b,
            "p": TRUE_GAMMA_GAMMA.p, "q": TRUE_GAMMA_GAMMA.q, "gamma": TRUE_GAMMA_GAMMA.gamma}
    rows = []
    for name, lt_name, model in PARAMS:
        x, y = float(ours[name]), float(theirs.get(lt_name, float("nan")))
        sig, rel = same_sig_digits(x, y), relative_difference(x, y)
        rel_ok = bool(rel < REL_TOLERANCE)
        rows.append({
            "model": model, "param": name if name == lt_name else f"{name} (lifetimes {lt_name})",
            "project": x, "lifetimes": y, "true": true[name], "relative_difference": rel,
            "same_3_sig_digits": sig, "relative_difference_below_5e-4": rel_ok, "agree": sig or rel_ok,
            "criterion": "3 s.f. and rel" if sig and rel_ok else "3 s.f." if sig else "rel" if rel_ok else "none",
        })
    return rows


def log_likelihood_check(summary: pd.DataFrame, ours: dict, theirs: dict, worker: dict) -> dict:
    """Both parameter sets scored by the project's likelihood (total, days): the higher one is the better optimum."""
    x, tx, T, spend_x, spend_m = _project_inputs(summary)
    out: dict = {}
    try:
        bg_ours = float(bgnbd_log_likelihood(BgNbdParams(ours["r"], ours["alpha"], ours["a"], ours["b"]), x, tx, T).sum())
        bg_lt = float(bgnbd_log_likelihood(BgNbdParams(theirs["r"], theirs["alpha"], theirs["a"], theirs["b"]), x, tx, T).sum())
        out["bgnbd"] = {"project_params": bg_ours, "lifetimes_params": bg_lt, "project_minus_lifetimes": bg_ours - bg_lt}
    except (KeyError, ValueError) as exc:
        out["bgnbd"] = {"error": str(exc)}
    try:
        gg_ours = float(gamma_gamma_log_likelihood(GammaGammaParams(ours["p"], ours["q"], ours["gamma"]), spend_x, spend_m).sum())
        gg_lt = float(gamma_gamma_log_likelihood(GammaGammaParams(theirs["p"], theirs["q"], theirs["v"]), spend_x, spend_m).sum())
        out["gamma_gamma"] = {"project_params": gg_ours, "lifetimes_params": gg_lt, "project_minus_lifetimes": gg_ours - gg_lt}
    except (KeyError, ValueError) as exc:
        out["gamma_gamma"] = {"error": str(exc)}
    # lifetimes' own stored value, converted: mean NLL on time * scale -> total LL in days.
    conv = worker.get("convergence", {})
    nll_bg = conv.get("bgnbd", {}).get("negative_log_likelihood")
    if nll_bg is not None and "error" not in out["bgnbd"]:
        scale = conv["bgnbd"]["time_scale"]
        out["bgnbd"]["lifetimes_reported"] = -nll_bg * worker["n_customers"] + worker["sum_frequency"] * math.log(scale)
    nll_gg = conv.get("gamma_gamma", {}).get("negative_log_likelihood")
    if nll_gg is not None and "error" not in out["gamma_gamma"]:
        out["gamma_gamma"]["lifetimes_reported"] = -nll_gg * worker["n_gamma_gamma_customers"]
    return out


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


def run(customers: int = 1_000_000, repeats: int = 3, venv: Path | str | None = DEFAULT_VENV, *,
        lifetimes: bool = True, seed: int = SEED) -> dict:
    """Run the comparison and return every figure as a JSON-ready dict (see ``markdown``)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    load_before = os.getloadavg()
    result: dict = {
        "benchmark": "model_fit",
        "customers": customers,
        "repeats": repeats,
        "seed": seed,
        "true_params": {"r": TRUE_BGNBD.r, "alpha": TRUE_BGNBD.alpha, "a": TRUE_BGNBD.a, "b": TRUE_BGNBD.b,
                        "p": TRUE_GAMMA_GAMMA.p, "q": TRUE_GAMMA_GAMMA.q, "gamma": TRUE_GAMMA_GAMMA.gamma},
        "observation_days": OBSERVATION_DAYS,
        "target_ratio": TARGET_RATIO,
        "cpu_count": os.cpu_count(),
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "pandas": pd.__version__,
                     "scipy": __import__("scipy").__version__},
    }
    with tempfile.TemporaryDirectory(prefix="ca-model-fit-") as tmp:
        data = Path(tmp) / "summary.parquet"
        simulated_summary(customers, seed).to_parquet(data, index=False)
        summary = pd.read_parquet(data)  # fit exactly what lifetimes reads
        result["n_repeat_customers"] = int((summary["frequency"] > 0).sum())
        print(f"data: {customers:,} customers, {result['n_repeat_customers']:,} repeat buyers -> {data}", flush=True)

        print(f"project: fitting (warm-up + {repeats})", flush=True)
        project = time_project(summary, repeats)
        result["project"] = project

        if not lifetimes:
            result["lifetimes"] = None
            result["comparison"] = None
        else:
            python = ensure_lifetimes_venv(Path(venv if venv is not None else DEFAULT_VENV))
            worker = run_lifetimes_worker(python, data, repeats)
            result["lifetimes"] = worker
            figures = []
            for key, label in (("bgnbd", "BG/NBD fit"), ("gamma_gamma", "Gamma-Gamma fit"), ("total", "total (both fits)")):
                ours, theirs = project["seconds"][key], worker["seconds"][key]
                ratio = theirs / ours if ours > 0 else float("inf")
                figures.append({"figure": label, "key": key, "project_seconds": ours, "lifetimes_seconds": theirs,
                                "ratio": ratio, "target": TARGET_RATIO, "met": bool(ratio >= TARGET_RATIO)})
            params = compare_params(project["params"], worker["params"])
            result["comparison"] = {
                "figures": figures,
                "params": params,
                "log_likelihood": log_likelihood_check(summary, project["params"], worker["params"], worker),
                "speed_target_met_total": figures[-1]["met"],
                "speed_target_met_every_model": all(f["met"] for f in figures),
                "params_agree": all(p["agree"] for p in params),
                "params_agree_strict_3_sig_digits": all(p["same_3_sig_digits"] for p in params),
            }
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    return result


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.6g}"


def markdown(result: dict) -> str:
    lines = [f"### Model fit: project vs lifetimes, {result['customers']:,} customers "
             f"(median of {result['repeats']} after a warm-up; {result['cpu_count']} CPUs, "
             f"load {result['load_average']['before'][0]:.2f} -> {result['load_average']['after'][0]:.2f})", ""]
    project, comparison = result["project"], result["comparison"]
    if comparison is None:
        lines += ["| figure | project seconds |", "| --- | --- |"]
        for key, label in (("bgnbd", "BG/NBD fit"), ("gamma_gamma", "Gamma-Gamma fit"), ("total", "total (both fits)")):
            lines.append(f"| {label} | {project['seconds'][key]:.3f} |")
        lines += ["", "| param | project | true |", "| --- | --- | --- |"]
        for name, value in project["params"].items():
            lines.append(f"| {name} | {_fmt(value)} | {_fmt(result['true_params'][name])} |")
        lines += ["", "(lifetimes skipped)"]
        return "\n".join(lines)

    lines += ["| figure | project seconds | lifetimes seconds | ratio (lifetimes/project) | target | met? |",
              "| --- | --- | --- | --- | --- | --- |"]
    for f in comparison["figures"]:
        lines.append(f"| {f['figure']} | {f['project_seconds']:.3f} | {f['lifetimes_seconds']:.3f} | "
                     f"{f['ratio']:.1f}x | >= {f['target']:.0f}x | {'yes' if f['met'] else 'NO'} |")
    lines += ["", "| model | param | project | lifetimes | true (simulated) | rel. diff | same to 3 s.f. | rel < 5e-4 | agree (criterion) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in comparison["params"]:
        lines.append(f"| {p['model']} | {p['param']} | {_fmt(p['project'])} | {_fmt(p['lifetimes'])} | {_fmt(p['true'])} | "
                     f"{p['relative_difference']:.2e} | {'yes' if p['same_3_sig_digits'] else 'no'} | "
                     f"{'yes' if p['relative_difference_below_5e-4'] else 'no'} | "
                     f"{'yes' if p['agree'] else 'NO'} ({p['criterion']}) |")
    lines += ["", "| model | project LL at project params | project LL at lifetimes params | difference | lifetimes' own NLL, as LL |",
              "| --- | --- | --- | --- | --- |"]
    for model, ll in comparison["log_likelihood"].items():
        if "error" in ll:
            lines.append(f"| {model} | error: {ll['error']} | | | |")
            continue
        lines.append(f"| {model} | {ll['project_params']:.6f} | {ll['lifetimes_params']:.6f} | "
                     f"{ll['project_minus_lifetimes']:+.3e} | {ll.get('lifetimes_reported', float('nan')):.6f} |")
    lt = result["lifetimes"]
    lines += [""]
    for model in ("bgnbd", "gamma_gamma"):
        c, f = lt["convergence"][model], project["fits"][model]
        lines.append(f"- {model}: project converged={f['converged']} ({f['message']}); lifetimes {lt['versions']['lifetimes']} "
                     f"success={c['success']} ({c['message']}), nit={c['nit']}, max|grad|={c.get('max_abs_gradient', float('nan')):.2e} "
                     f"(tol {c['tol']}), stopped_early={c['stopped_early']}"
                     + (f", warnings={c['warnings']}" if c["warnings"] else "")
                     + (f", ConvergenceError: {c['convergence_error']}" if c["convergence_error"] else ""))
    per_model = ", ".join(f"{f['figure'].split(' fit')[0]} {'yes' if f['met'] else 'NO'}" for f in comparison["figures"][:-1])
    lines += ["", f"Speed target (>= {result['target_ratio']:.0f}x) on both fits together: "
                  f"{'yes' if comparison['speed_target_met_total'] else 'NO'} (per model: {per_model}); "
                  f"parameters agree to 3 s.f. (either criterion): {'yes' if comparison['params_agree'] else 'NO'} "
                  f"(strict rounding criterion: {'yes' if comparison['params_agree_strict_3_sig_digits'] else 'no'})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="throwaway venv for lifetimes (created if missing)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures as JSON")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--skip-lifetimes", action="store_true", help="time only the project's side")
    args = parser.parse_args(argv)
    result = run(args.customers, args.repeats, args.venv, lifetimes=not args.skip_lifetimes, seed=args.seed)
    print()
    print(markdown(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    main()
