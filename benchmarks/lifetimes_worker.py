"""Fit the `lifetimes` library's BG/NBD and Gamma-Gamma models on a customer summary and time them.

Runs inside a THROWAWAY virtualenv holding lifetimes 0.11.3, ``pandas<3`` and ``setuptools<82``
(see ``benchmarks/model_fit.py``, which creates it and calls this script); it deliberately
imports nothing from ``customer_analytics`` (only the standard library, numpy, pandas and
lifetimes).

    python benchmarks/lifetimes_worker.py --input summary.parquet [--repeats 3] [--warmup]

The input (Parquet or CSV) has the columns frequency, recency, T (days), spend_frequency and
spend_monetary. ``BetaGeoFitter(penalizer_coef=0.0)`` is fitted on frequency/recency/T and
``GammaGammaFitter(penalizer_coef=0.0)`` on the rows with spend_frequency > 0, each with
lifetimes' default convergence settings (``fit()`` called without tol/initial_params/options:
tol=1e-7, scipy's default method, which is BFGS since no bounds are given, start 0.1 for every
log-parameter). The time of a model is that of its whole ``fit()`` call, as a user pays it
(input checks, the optimisation and lifetimes' autograd Hessian / standard errors); the part
spent inside ``scipy.optimize.minimize`` is reported separately.

Prints one JSON object on stdout: params (r, alpha, a, b, p, q, v), seconds per model (median
of --repeats, after one untimed warm-up fit per model with --warmup) and the raw samples, the
lifetimes/numpy/scipy/pandas versions, and per model how the optimiser stopped: success flag
and message, iterations, the negative log-likelihood lifetimes stores
(``fitter._negative_log_likelihood_``, per customer, BG/NBD on lifetimes' scaled time
T / max T), the largest |gradient| component at the returned point, and any warnings. If
lifetimes' defaults make it stop early (BFGS "precision loss" -> lifetimes raises
ConvergenceError, or a gradient above its tolerance), ``stopped_early`` is true and the last
iterate is reported instead of an exception.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings
from collections import Counter

import numpy as np
import pandas as pd

import lifetimes
import lifetimes.fitters as lifetimes_base
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import ConvergenceError

DEFAULT_TOL = 1e-7  # lifetimes 0.11.3 fit(tol=1e-7); we never pass it, this is only reported


class _RecordingMinimize:
    """Pass-through wrapper of the ``scipy.optimize.minimize`` that lifetimes' BaseFitter calls.

    Arguments and result are untouched; it only keeps the last OptimizeResult (message,
    iterations, end point, which lifetimes itself throws away) and the objective + its args,
    so the gradient at the end point can be checked after the timed section.
    """

    def __init__(self, minimize):
        self._minimize = minimize
        self.last: dict | None = None

    def __call__(self, fun, *args, **kwargs):
        started = time.perf_counter()
        result = self._minimize(fun, *args, **kwargs)
        self.last = {
            "result": result,
            "fun": fun,
            "args": kwargs.get("args", ()),
            "method": kwargs.get("method"),
            "tol": kwargs.get("tol"),
            "bounds": kwargs.get("bounds"),
            "options": dict(kwargs.get("options") or {}),
            "seconds": time.perf_counter() - started,
        }
        return result


_recorder = _RecordingMinimize(lifetimes_base.minimize)
lifetimes_base.minimize = _recorder


def read_summary(path: str) -> pd.DataFrame:
    if path.endswith(".csv"):
        return pd.read_csv(path)
    return pd.read_parquet(path)


def _fit_once(fit):
    """Run one fit; return (fitter or None, seconds, ConvergenceError text or None, warnings, optimizer record)."""
    _recorder.last = None
    caught_error = None
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("always")
        started = time.perf_counter()
        try:
            fitter = fit()
        except ConvergenceError as exc:  # lifetimes prints the OptimizeResult (sent to stderr) and raises
            fitter, caught_error = None, " ".join(str(exc).split())
        seconds = time.perf_counter() - started
    messages = Counter(f"{w.category.__name__}: {w.message}" for w in caught)
    return fitter, seconds, caught_error, messages, _recorder.last


def _diagnostics(fitter, error, messages, record, names, back_transform) -> dict:
    result = record["result"] if record else None
    out: dict = {
        "method": (record or {}).get("method") or "scipy default (BFGS: no bounds given)",
        "tol": (record or {}).get("tol"),
        "options": (record or {}).get("options"),
        "bounds": (record or {}).get("bounds"),
        "success": bool(result.success) if result is not None else None,
        "message": str(result.message) if result is not None else None,
        "nit": int(getattr(result, "nit", -1)) if result is not None else None,
        "nfev": int(getattr(result, "nfev", -1)) if result is not None else None,
        "optimizer_seconds": (record or {}).get("seconds"),
        "convergence_error": error,
        "warnings": dict(messages),
    }
    if result is not None:
        # Gradient of lifetimes' own objective (autograd) at the returned log-parameters.
        value, grad = record["fun"](np.asarray(result.x, dtype=float), *record["args"])
        out["negative_log_likelihood_at_end"] = float(value)
        out["max_abs_gradient"] = float(np.max(np.abs(grad)))
        out["last_iterate"] = dict(zip(names, back_transform(np.exp(np.asarray(result.x, dtype=float)))))
    if fitter is not None:
        out["negative_log_likelihood"] = float(fitter._negative_log_likelihood_)
    tol = out["tol"] if out["tol"] is not None else DEFAULT_TOL
    out["stopped_early"] = bool(
        fitter is None
        or result is None
        or not result.success
        or not np.isfinite(out.get("max_abs_gradient", np.nan))
        or out["max_abs_gradient"] > tol
    )
    return out


def _time_model(fit, repeats: int, warmup: bool):
    if warmup:
        _fit_once(fit)
    samples, last = [], None
    for _ in range(repeats):
        fitter, seconds, error, messages, record = _fit_once(fit)
        samples.append(seconds)
        last = (fitter, error, messages, record)
    return samples, last


def run(path: str, repeats: int = 3, warmup: bool = False) -> dict:
    summary = read_summary(path)
    frequency = summary["frequency"].to_numpy()
    recency = summary["recency"].to_numpy()
    T = summary["T"].to_numpy()
    spenders = summary["spend_frequency"].to_numpy() > 0
    spend_frequency = summary["spend_frequency"].to_numpy()[spenders]
    spend_monetary = summary["spend_monetary"].to_numpy()[spenders]

    bg_samples, (bg, bg_error, bg_warn, bg_record) = _time_model(
        lambda: BetaGeoFitter(penalizer_coef=0.0).fit(frequency, recency, T), repeats, warmup)
    gg_samples, (gg, gg_error, gg_warn, gg_record) = _time_model(
        lambda: GammaGammaFitter(penalizer_coef=0.0).fit(spend_frequency, spend_monetary), repeats, warmup)

    scale = 1.0 / T.max()  # lifetimes' _scale_time: alpha is estimated on T / max T, then divided back

    def bg_back(values):
        r, alpha, a, b = (float(v) for v in values)
        return [r, alpha / scale, a, b]

    bg_diag = _diagnostics(bg, bg_error, bg_warn, bg_record, ("r", "alpha", "a", "b"), bg_back)
    gg_diag = _diagnostics(gg, gg_error, gg_warn, gg_record, ("p", "q", "v"), lambda v: [float(x) for x in v])
    bg_diag["time_scale"] = scale

    params = {}
    params.update({k: float(v) for k, v in bg.params_.items()} if bg is not None else bg_diag.get("last_iterate", {}))
    params.update({k: float(v) for k, v in gg.params_.items()} if gg is not None else gg_diag.get("last_iterate", {}))
    totals = [b + g for b, g in zip(bg_samples, gg_samples)]
    return {
        "library": "lifetimes",
        "versions": {
            "lifetimes": lifetimes.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scipy": __import__("scipy").__version__,
            "python": sys.version.split()[0],
        },
        "n_customers": int(len(summary)),
        "n_gamma_gamma_customers": int(spenders.sum()),
        "sum_frequency": float(frequency.sum()),
        "repeats": repeats,
        "warmup": warmup,
        "params": params,
        "params_are_last_iterate": {"bgnbd": bg is None, "gamma_gamma": gg is None},
        "seconds": {
            "bgnbd": statistics.median(bg_samples),
            "gamma_gamma": statistics.median(gg_samples),
            "total": statistics.median(totals),
        },
        "samples": {"bgnbd": bg_samples, "gamma_gamma": gg_samples, "total": totals},
        "convergence": {"bgnbd": bg_diag, "gamma_gamma": gg_diag},
        "stopped_early": bg_diag["stopped_early"] or gg_diag["stopped_early"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="Parquet (or .csv) customer summary")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per model; the median is reported")
    parser.add_argument("--warmup", action="store_true", help="one untimed fit per model first")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    print(json.dumps(run(args.input, args.repeats, args.warmup), default=float))


if __name__ == "__main__":
    main()
