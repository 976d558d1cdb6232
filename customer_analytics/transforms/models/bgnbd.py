"""BG/NBD repeat-purchase model (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

Inputs per customer, all times in the same unit (days throughout this project):

* ``frequency`` x: number of repeat purchase days (distinct purchase dates minus one),
* ``recency`` t_x: last purchase date minus first purchase date,
* ``T``: observation end date minus first purchase date.

Parameters are in that time unit too: ``alpha`` in days, so ``r / alpha`` is the mean
purchase rate per day. Multiplying every time and ``alpha`` by a constant c leaves the
predictions unchanged and shifts the log-likelihood by ``-sum(x) * ln(c)``.

This module also holds the pieces shared with the Gamma-Gamma model: ``FitResult``,
row compression and the L-BFGS-B driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from .gamma_gamma import GammaGammaParams

__all__ = [
    "BgNbdParams",
    "FitResult",
    "bgnbd_log_likelihood",
    "expected_purchases",
    "fit_bgnbd",
    "probability_alive",
]


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD parameters: purchase rate ~ Gamma(shape r, rate alpha); dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class FitResult:
    """Outcome of a maximum-likelihood fit.

    ``log_likelihood`` is the weighted total over customers, with every constant term the
    papers include. When ``converged`` is False the params (and log_likelihood) are NaN;
    ``message`` says why and, if the optimizer ran, where it stopped.
    """

    params: BgNbdParams | GammaGammaParams
    log_likelihood: float
    converged: bool
    n_customers: int
    message: str


# ---------------------------------------------------------------------------------------
# Shared helpers (also used by gamma_gamma.py)
# ---------------------------------------------------------------------------------------

# Log-parameter search box. Estimates are made on rescaled data (times / mean T, spend /
# mean spend), where genuine optima are O(0.01..100). A log-parameter beyond _DIVERGED
# (a value above ~22,000 or below ~5e-5) is running off to a boundary of the parameter
# space, i.e. there is no interior MLE: e.g. a -> 0 (nobody drops out), r, alpha -> inf
# (no rate heterogeneity), q -> inf (all customers share one spend level).
_LOG_BOUND = 25.0
_DIVERGED = 10.0


def _dot(w: np.ndarray, v: np.ndarray) -> float:
    """Weighted sum sum(w * v).

    einsum instead of ``@`` on purpose: numpy and scipy wheels each ship their own
    OpenBLAS, and alternating numpy BLAS calls with L-BFGS-B's (scipy BLAS) made the two
    thread pools spin against each other, ~100x slower on a 2-core machine.
    """
    return float(np.einsum("i,i->", w, v))


def _as_1d(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _columns(names: tuple[str, ...], values: tuple[ArrayLike, ...]) -> list[np.ndarray]:
    """Coerce to float 1-D arrays of one common length (scalars broadcast)."""
    arrays = [_as_1d(n, v) for n, v in zip(names, values)]
    length = max(a.size for a in arrays)
    out = []
    for n, a in zip(names, arrays):
        if a.size == 1 and length != 1:
            a = np.full(length, a[0])
        elif a.size != length:
            raise ValueError(f"{n} has {a.size} values, expected {length}")
        out.append(a)
    return out


def _unique_rows(
    columns: list[np.ndarray], weights: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Distinct rows of equal-length columns: (unique columns, inverse index, summed weights).

    Rows are sorted by the first column, then the second, ... A lexsort is several times
    faster than ``np.unique(axis=0)`` at a million rows.
    """
    n = columns[0].size
    if n == 0:
        return [c[:0] for c in columns], np.zeros(0, dtype=np.intp), np.zeros(0)
    packed = _packed_unique_rows(columns, weights)
    if packed is not None:
        return packed
    order = np.lexsort(columns[::-1])
    sorted_cols = [c[order] for c in columns]
    starts = np.zeros(n, dtype=bool)
    starts[0] = True
    for c in sorted_cols:
        starts[1:] |= c[1:] != c[:-1]
    group = np.cumsum(starts) - 1
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = group
    w = np.ones(n) if weights is None else weights[order]
    return [c[starts] for c in sorted_cols], inverse, np.bincount(group, weights=w)


def _packed_unique_rows(
    columns: list[np.ndarray], weights: np.ndarray | None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray] | None:
    """`_unique_rows` of columns of small whole numbers (counts and days) or of one value (a
    horizon), or None for any other columns.

    Each row is packed into one 64-bit key, so one sort of integers replaces the lexsort of
    every column: at a million customers (frequency, recency, T) 0.05 s against 0.19-0.25 s.
    """
    ranges = [(c.min(), c.max()) for c in columns]
    varying = [i for i, (low, high) in enumerate(ranges) if low != high]
    bits = 63 // max(len(varying), 1)
    for i in varying:
        low, high = ranges[i]
        if not (0 <= low and high < 2**bits) or not np.array_equal(columns[i], np.floor(columns[i])):
            return None  # fractions, negatives, NaN or values too large to pack
    key = np.zeros(columns[0].size, dtype=np.int64)
    for i in varying:
        key = (key << bits) | columns[i].astype(np.int64)
    keys, inverse = np.unique(key, return_inverse=True)
    unique = [np.full(keys.size, ranges[i][0], dtype=c.dtype) for i, c in enumerate(columns)]
    for position, i in enumerate(varying):
        shift = bits * (len(varying) - 1 - position)
        unique[i] = ((keys >> shift) & (2**bits - 1)).astype(columns[i].dtype)
    counts = np.bincount(inverse, weights=weights, minlength=keys.size).astype(float, copy=False)
    return unique, inverse.astype(np.intp, copy=False), counts


def _prepare_weights(weights: ArrayLike | None, n: int) -> tuple[np.ndarray | None, str]:
    """Validated float weights (or None for all ones) and an error message ('' if fine)."""
    if weights is None:
        return None, ""
    w = _as_1d("weights", weights)
    if w.size == 1 and n != 1:
        w = np.full(n, w[0])
    if w.size != n:
        raise ValueError(f"weights has {w.size} values, expected {n}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        return w, "weights must be finite and non-negative"
    return w, ""


def _failed(params: object, n_customers: int, message: str) -> FitResult:
    return FitResult(params, float("nan"), False, n_customers, message)


def _run_lbfgsb(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
    theta0: np.ndarray,
    names: tuple[str, ...],
    max_iter: int,
) -> tuple[np.ndarray, bool, str]:
    """Minimise a mean negative log-likelihood over log-parameters.

    Returns (log-params, converged, message). Never raises on numerical trouble.
    """

    def safe(theta: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            f, g = objective(theta)
        if not np.isfinite(f) or not np.all(np.isfinite(g)):
            # Steer the line search back instead of aborting the fit.
            return 1e300, np.zeros_like(theta)
        return f, g

    try:
        # A 3–4 parameter problem: BLAS threads only contend with each other (measured 2× slower on 2 cores).
        with threadpool_limits(limits=1, user_api="blas"):
            res = minimize(
                safe,
                theta0,
                jac=True,
                method="L-BFGS-B",
                bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(theta0),
                options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-9},
            )
    except (ValueError, FloatingPointError, ArithmeticError) as exc:  # pragma: no cover
        return np.full(len(theta0), np.nan), False, f"optimizer error: {exc}"

    theta = np.asarray(res.x, dtype=float)
    message = str(res.message)
    if not np.all(np.isfinite(theta)) or not np.isfinite(res.fun) or res.fun >= 1e300:
        return theta, False, f"non-finite likelihood at the optimizer's end point ({message})"
    diverged = [n for n, t in zip(names, theta) if abs(t) > _DIVERGED]
    if diverged:
        return theta, False, (
            f"estimate of {', '.join(diverged)} ran off towards 0 or infinity: the likelihood "
            "has no interior maximum for these data (degenerate sample or model limit)"
        )
    if res.success:
        return theta, True, message
    # L-BFGS-B sometimes stops on a failed line search when already at the optimum to
    # machine precision; accept that only if the gradient is negligible.
    _, grad = safe(theta)
    if np.max(np.abs(grad)) < 1e-6:
        return theta, True, f"{message} (gradient negligible; accepted)"
    return theta, False, f"optimizer did not converge: {message}"


# ---------------------------------------------------------------------------------------
# Likelihood
# ---------------------------------------------------------------------------------------


def _check_params(params: BgNbdParams) -> tuple[float, float, float, float]:
    values = (params.r, params.alpha, params.a, params.b)
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"BG/NBD parameters must be finite and positive, got {params}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def bgnbd_log_likelihood(
    params: BgNbdParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood ln L(r, alpha, a, b | x, t_x, T).

    Fader, Hardie & Lee (2005), in the log-sum-exp form of Hardie's note
    "Implementing the BG/NBD model": ln A1 + ln A2 + ln(exp(ln A3) + delta(x>0) exp(ln A4)).
    """
    r, alpha, a, b = _check_params(params)
    x, tx, T = _columns(("frequency", "recency", "T"), (frequency, recency, T))
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        ln_a2 = betaln(a, b + x) - betaln(a, b)
        ln_a3 = -(r + x) * np.log(alpha + T)
        ln_a4 = np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + tx)
        tail = np.where(x > 0, np.logaddexp(ln_a3, ln_a4), ln_a3)
    return ln_a1 + ln_a2 + tail


class _BgNbdObjective:
    """Mean negative log-likelihood and its gradient w.r.t. log-params, on compressed rows.

    Terms that depend on x only (gammaln, betaln, digamma) are evaluated once per distinct
    x; customers with x = 0 need no log-sum-exp. Only repeat buyers' distinct
    (x, t_x, T) rows pay for per-row work.
    """

    def __init__(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray):
        self.total = w.sum()
        self.ux, x_index = np.unique(x, return_inverse=True)
        self.wx = np.bincount(x_index, weights=w, minlength=self.ux.size)
        zero = x == 0
        self.T0, self.w0 = T[zero], w[zero]
        rep = ~zero
        self.x1, self.tx1, self.T1, self.w1 = x[rep], tx[rep], T[rep], w[rep]
        self.x1_index = x_index[rep]

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(theta)
        ux, wx, W = self.ux, self.wx, self.total

        # Per distinct x: ln A1 + ln A2 (without the per-row parts).
        ll = _dot(wx, gammaln(r + ux) + betaln(a, b + ux)) - W * (
            gammaln(r) + betaln(a, b) - r * np.log(alpha)
        )
        psi_abx = digamma(a + b + ux)
        d_r = _dot(wx, digamma(r + ux)) - W * (digamma(r) - np.log(alpha))
        d_alpha = W * r / alpha
        d_a = W * digamma(a + b) - _dot(wx, psi_abx)
        d_b = _dot(wx, digamma(b + ux) - psi_abx) + W * (digamma(a + b) - digamma(b))

        # x = 0: ln A3 only.
        log_T0 = np.log(alpha + self.T0)
        ll -= r * _dot(self.w0, log_T0)
        d_r -= _dot(self.w0, log_T0)
        d_alpha -= r * _dot(self.w0, 1.0 / (alpha + self.T0))

        # x > 0: ln(A3 + A4) by log-sum-exp.
        if self.x1.size:
            with np.errstate(divide="ignore"):
                inv_b = 1.0 / (b + ux - 1)  # only gathered where x >= 1
            inv_b_row = inv_b[self.x1_index]
            rx = r + self.x1
            log_T = np.log(alpha + self.T1)
            log_tx = np.log(alpha + self.tx1)
            ln_a3 = -rx * log_T
            ln_a4 = np.log(a) + np.log(inv_b_row) - rx * log_tx
            lse = np.logaddexp(ln_a3, ln_a4)
            w_alive = np.exp(ln_a3 - lse)  # share of the likelihood from "still alive"
            w_dead = np.exp(ln_a4 - lse)
            w1 = self.w1
            ll += _dot(w1, lse)
            d_r -= _dot(w1, w_alive * log_T + w_dead * log_tx)
            d_alpha -= _dot(w1, rx * (w_alive / (alpha + self.T1) + w_dead / (alpha + self.tx1)))
            d_a += _dot(w1, w_dead) / a
            d_b -= _dot(w1, w_dead * inv_b_row)

        grad = np.array([r * d_r, alpha * d_alpha, a * d_a, b * d_b])
        return -ll / W, -grad / W


# ---------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------

_NAN_BGNBD = BgNbdParams(float("nan"), float("nan"), float("nan"), float("nan"))


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    initial: BgNbdParams | None = None,
    max_iter: int = 1000,
    min_customers: int = 10,
) -> FitResult:
    """Maximum-likelihood BG/NBD fit (L-BFGS-B on log-parameters, analytic gradient).

    ``weights`` are per-row multiplicities (e.g. counts of identical customers). Identical
    (x, t_x, T) rows are merged internally anyway (their weights summed): with dates at
    day granularity a million customers collapse to far fewer distinct rows, which is what
    makes large fits fast. Times are rescaled by their mean T during the search (alpha is
    scaled back), which keeps the problem well conditioned in any time unit.

    Data problems (NaN, negative values, recency > T, too few customers, no repeat buyers,
    identical customers) and optimizer failures give ``converged=False`` with a message
    instead of an exception; params are then NaN. Inputs of unequal length raise ValueError.
    """
    x, tx, TT = _columns(("frequency", "recency", "T"), (frequency, recency, T))
    w, werr = _prepare_weights(weights, x.size)
    n_customers = int(round(w.sum())) if w is not None and not werr else x.size
    if werr:
        return _failed(_NAN_BGNBD, n_customers, werr)
    if w is not None:
        keep = w > 0
        x, tx, TT, w = x[keep], tx[keep], TT[keep], w[keep]

    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(tx)) and np.all(np.isfinite(TT))):
        message = "frequency, recency and T must be finite (NaN/inf found)"
        return _failed(_NAN_BGNBD, n_customers, message)
    if np.any(x < 0) or np.any(tx < 0) or np.any(tx > TT) or np.any((x > 0) & (tx <= 0)):
        message = (
            "invalid rows: need frequency >= 0, 0 <= recency <= T, "
            "and recency > 0 when frequency > 0"
        )
        return _failed(_NAN_BGNBD, n_customers, message)
    if x.size == 0 or n_customers < min_customers:
        message = f"too few customers to fit ({n_customers} < {min_customers})"
        return _failed(_NAN_BGNBD, n_customers, message)
    if not np.any(x > 0):
        message = "no repeat buyers (all frequency == 0): BG/NBD is not identified"
        return _failed(_NAN_BGNBD, n_customers, message)

    tx = np.where(x > 0, tx, 0.0)  # recency carries no information when x == 0
    (ux, utx, uT), _, uw = _unique_rows([x, tx, TT], w)
    if ux.size == 1:
        message = "all customers have identical (frequency, recency, T)"
        return _failed(_NAN_BGNBD, n_customers, message)

    scale = _dot(uw, uT) / float(uw.sum())
    if not scale > 0:
        return _failed(_NAN_BGNBD, n_customers, "all T are zero")
    objective = _BgNbdObjective(ux, utx / scale, uT / scale, uw)

    if initial is None:
        # Gamma mean r/alpha ~ observed repeat rate; BG dropout starts neutral.
        rate = _dot(uw, ux) / _dot(uw, uT / scale)
        start = np.array([1.0, 1.0 / max(rate, 1e-6), 1.0, 1.0])
    else:
        start = np.array([initial.r, initial.alpha / scale, initial.a, initial.b])
        if not np.all(np.isfinite(start)) or np.any(start <= 0):
            raise ValueError(f"initial parameters must be finite and positive, got {initial}")
    theta, converged, message = _run_lbfgsb(
        objective, np.log(start), ("r", "alpha", "a", "b"), max_iter
    )
    r, alpha, a, b = np.exp(theta)
    params = BgNbdParams(float(r), float(alpha * scale), float(a), float(b))
    if not converged:
        return _failed(_NAN_BGNBD, n_customers, message + f" (last iterate: {params})")
    ll = _dot(uw, bgnbd_log_likelihood(params, ux, utx, uT))
    if not np.isfinite(ll):
        return _failed(_NAN_BGNBD, n_customers, f"non-finite log-likelihood at {params}")
    return FitResult(params, ll, True, n_customers, message)


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------


def _check_rfm(x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> None:
    # NaN rows pass through (and score NaN); finite nonsense is a caller bug.
    with np.errstate(invalid="ignore"):
        bad = (x < 0) | (tx < 0) | (tx > T)
    if np.any(bad):
        raise ValueError("need frequency >= 0 and 0 <= recency <= T for every customer")


def _log_odds_dead(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """ln(P(dead)/P(alive)) = ln[a/(b+x-1)] + (r+x) ln[(alpha+T)/(alpha+t_x)], -inf when x == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
    return np.where(x == 0, -np.inf, out)


def probability_alive(
    params: BgNbdParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """P(customer still active at T | x, t_x, T) under BG/NBD.

    1 / (1 + delta(x>0) a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), computed in log space.
    """
    r, alpha, a, b = _check_params(params)
    x, tx, TT = _columns(("frequency", "recency", "T"), (frequency, recency, T))
    _check_rfm(x, tx, TT)
    return expit(-_log_odds_dead(r, alpha, a, b, x, tx, TT))


def _hyp2f1(A: float, B: float, C: np.ndarray, z: np.ndarray) -> np.ndarray:
    """scipy's 2F1 with a patch for its NaN when C - A - B is an integer and z > 0.9.

    That case (hit e.g. whenever r - a is an integer) sits on a removable singularity of
    the z -> 1 - z connection formula scipy switches to. 2F1 is smooth in A, so the mean of
    the values at A -+ 1e-9 (accurate to ~1e-15 relative) replaces the NaN.
    """
    out = hyp2f1(A, B, C, z)
    bad = ~np.isfinite(out) & np.isfinite(z) & np.isfinite(C)
    if np.any(bad):
        h = 1e-9 * max(1.0, abs(A))
        cb, zb = np.broadcast_to(C, out.shape)[bad], np.broadcast_to(z, out.shape)[bad]
        out = out.copy()
        out[bad] = 0.5 * (hyp2f1(A - h, B, cb, zb) + hyp2f1(A + h, B, cb, zb))
    return out


# Below this z the 2F1 is summed as a series (see _alive_series); above it scipy's hyp2f1.
_SERIES_MAX_Z = 0.1


def _expected_if_alive(
    r: float, alpha: float, a: float, b: float, t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E[Y(t) | alive at T, x, T]: the bracket in the numerator of FHL (2005) eq. 10.

    (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],
    z = t/(alpha+T+t). Euler's transformation 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A,C-B;C;z)
    cancels the power in front exactly, leaving

        c/(a-1) * [1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z)],   c = a+b+x-1.

    The original 2F1 grows like (1-z)^-(r+x) and overflows / loses all precision for large
    x and T; the transformed one has small, x-free upper parameters and stays O(1).
    ``t``, ``x`` and ``T`` are equal-length arrays.
    """
    c = a + b + x - 1
    z = t / (alpha + T + t)
    log1m_z = -np.log1p(t / (alpha + T))  # ln(1 - z), accurate for tiny z
    out = np.empty(z.shape)
    todo = ~(z < _SERIES_MAX_Z)  # NaN goes to hyp2f1 and stays NaN
    small = np.flatnonzero(~todo)
    if small.size:
        value, ok = _alive_series(r, a, b, c[small], z[small], log1m_z[small])
        out[small] = value
        todo[small[~ok]] = True
    if np.any(todo):
        out[todo] = _alive_hyp2f1(r, a, b, c[todo], z[todo], log1m_z[todo])
    return out


def _alive_series(
    r: float, a: float, b: float, c: np.ndarray, z: np.ndarray, log1m_z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The bracket for small z, free of cancellation; returns (value, converged mask).

    With G = 2F1(A, a-1; c; z), A = a+b-1-r:
        c/(a-1) [1 - (1-z)^(a-1) G] = c (-expm1((a-1) ln(1-z))/(a-1)) - (1-z)^(a-1) S,
        S = c (G-1)/(a-1) = sum_{n>=1} (A)_n (a)_{n-1} / ((c+1)_{n-1} n!) z^n.
    Summing S directly keeps full relative precision as t -> 0 (where 1 - (...) G
    cancels) and at a == 1 (where (G-1)/(a-1) is 0/0), and needs no special case at c == 0.
    """
    A = a + b - 1 - r
    first = -log1m_z if a == 1 else -np.expm1((a - 1) * log1m_z) / (a - 1)
    term = A * z
    total = term.copy()
    ok = np.zeros(z.shape, dtype=bool)
    for n in range(1, 400):
        factor = (A + n) * (a + n - 1) / ((c + n) * (n + 1)) * z
        term = term * factor
        total += term
        ok = (np.abs(term) <= 1e-17 * np.abs(total)) & (np.abs(factor) < 1)
        if ok.all():
            break
    return c * first - np.exp((a - 1) * log1m_z) * total, ok


def _alive_hyp2f1(
    r: float, a: float, b: float, c: np.ndarray, z: np.ndarray, log1m_z: np.ndarray
) -> np.ndarray:
    """The bracket via scipy's hyp2f1 (used for z >= _SERIES_MAX_Z).

    At a == 1 it is 0/0 (the limit is finite and smooth in a) and close to 1 the division
    amplifies rounding, so within 1e-5 of 1 we interpolate linearly between a = 1 -+ 2e-5.
    """
    if abs(a - 1.0) < 1e-5:
        lo, hi = 1.0 - 2e-5, 1.0 + 2e-5
        c_lo, c_hi = c - a + lo, c - a + hi
        f_lo = _alive_hyp2f1(r, lo, b, c_lo, z, log1m_z)
        f_hi = _alive_hyp2f1(r, hi, b, c_hi, z, log1m_z)
        return f_lo + (a - lo) / (hi - lo) * (f_hi - f_lo)
    pow_1m_z = np.exp((a - 1) * log1m_z)
    with np.errstate(invalid="ignore", divide="ignore"):
        general = c / (a - 1) * (1.0 - pow_1m_z * _hyp2f1(a + b - 1 - r, a - 1, c, z))
    if np.any(c == 0):
        # x == 0 and a + b == 1 exactly: c * 2F1(.; c; z) -> its c -> 0 limit.
        limit = r * z * pow_1m_z * _hyp2f1(1 - r, a, np.full_like(z, 2.0), z)
        general = np.where(c == 0, limit, general)
    return general


def expected_purchases(
    params: BgNbdParams, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """Conditional expected number of repeat purchases in (T, T + t], E[Y(t) | x, t_x, T].

    FHL (2005) eq. 10 = P(alive) * E[Y(t) | alive]; ``t`` in the same unit as T and alpha,
    scalar or one value per customer. The hypergeometric part depends on (t, x, T) only and
    is evaluated once per distinct combination.
    """
    r, alpha, a, b = _check_params(params)
    tt, x, tx, TT = _columns(("t", "frequency", "recency", "T"), (t, frequency, recency, T))
    _check_rfm(x, tx, TT)
    if np.any(tt < 0):
        raise ValueError("t must be >= 0")
    (ut, ux, uT), inverse, _ = _unique_rows([tt, x, TT])
    alive_part = _expected_if_alive(r, alpha, a, b, ut, ux, uT)[inverse]
    return alive_part * expit(-_log_odds_dead(r, alpha, a, b, x, tx, TT))
