"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves").

Per customer: ``frequency`` x = number of repeat purchases (dates) whose values are
averaged, ``monetary`` z-bar = their mean value (currency units). Transaction values are
Gamma(shape p, rate nu) around a customer-level nu ~ Gamma(shape q, rate gamma), so the
mean spend per transaction is p*nu^-1 with population mean p*gamma/(q-1).
``gamma`` is in currency units: scaling every value by c scales gamma by c.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import digamma, gammaln

from .bgnbd import FitResult, _columns, _dot, _failed, _prepare_weights, _run_lbfgsb

__all__ = [
    "GammaGammaParams",
    "expected_order_value",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
]


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma parameters: value ~ Gamma(p, nu) per transaction, nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    gamma: float


def _check_params(params: GammaGammaParams) -> tuple[float, float, float]:
    values = (params.p, params.q, params.gamma)
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"Gamma-Gamma parameters must be finite and positive, got {params}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, frequency: ArrayLike, monetary: ArrayLike
) -> np.ndarray:
    """Per-customer log density of the mean spend z-bar given x (FHL 2005, iso-value paper).

    ln[ Gamma(px+q) / (Gamma(px) Gamma(q)) * gamma^q z^(px-1) x^(px) / (gamma + x z)^(px+q) ].
    Only meaningful for x >= 1 and z > 0.
    """
    p, q, gamma = _check_params(params)
    x, z = _columns(("frequency", "monetary"), (frequency, monetary))
    px = p * x
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * np.log(z)
            + px * np.log(x)
            - (px + q) * np.log(gamma + x * z)
        )


class _GammaGammaObjective:
    """Mean negative log-likelihood and gradient w.r.t. log(p, q, gamma).

    gammaln/digamma terms are evaluated per distinct x, the z-only sums are precomputed;
    each call does a single log per row.
    """

    def __init__(self, x: np.ndarray, z: np.ndarray, w: np.ndarray):
        self.x, self.z, self.w = x, z, w
        self.total = w.sum()
        self.ux, index = np.unique(x, return_inverse=True)
        self.wx = np.bincount(index, weights=w, minlength=self.ux.size)
        log_z = np.log(z)
        self.s_log_z = _dot(w, log_z)
        self.s_x_log_xz = _dot(w, x * (log_z + np.log(x)))  # sum w x (ln z + ln x)
        self.xz = x * z

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, gamma = np.exp(theta)
        ux, wx, W, w = self.ux, self.wx, self.total, self.w
        pux = p * ux
        log_g = np.log(gamma + self.xz)
        px_q = p * self.x + q

        ll = (
            _dot(wx, gammaln(pux + q) - gammaln(pux))
            - W * (gammaln(q) - q * np.log(gamma))
            + p * self.s_x_log_xz
            - self.s_log_z
            - _dot(w, px_q * log_g)
        )
        psi = digamma(pux + q)
        d_p = _dot(wx, ux * (psi - digamma(pux))) + self.s_x_log_xz - _dot(w, self.x * log_g)
        d_q = _dot(wx, psi) - W * (digamma(q) - np.log(gamma)) - _dot(w, log_g)
        d_gamma = W * q / gamma - _dot(w, px_q / (gamma + self.xz))
        grad = np.array([p * d_p, q * d_q, gamma * d_gamma])
        return -ll / W, -grad / W


_NAN_GG = GammaGammaParams(float("nan"), float("nan"), float("nan"))


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    initial: GammaGammaParams | None = None,
    max_iter: int = 1000,
    min_customers: int = 10,
) -> FitResult:
    """Maximum-likelihood Gamma-Gamma fit (L-BFGS-B on log-parameters, analytic gradient).

    Rows with frequency 0 carry no spend information and are ignored (their monetary may
    be anything, including NaN); ``n_customers`` counts the rows used. Values are rescaled
    by their mean during the search.

    Data problems (non-finite values, monetary <= 0 with frequency > 0, too few customers,
    all spends identical) and optimizer failures give ``converged=False`` and NaN params
    instead of an exception.
    """
    x, z = _columns(("frequency", "monetary"), (frequency, monetary))
    w, werr = _prepare_weights(weights, x.size)
    if werr:
        return _failed(_NAN_GG, 0, werr)
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        return _failed(_NAN_GG, 0, "frequency must be finite and >= 0")
    used = x > 0
    if w is not None:
        used &= w > 0
    x, z = x[used], z[used]
    w = None if w is None else w[used]
    n_customers = x.size if w is None else int(round(w.sum()))

    if not np.all(np.isfinite(z)) or np.any(z <= 0):
        message = "monetary must be finite and > 0 for every customer with frequency > 0"
        return _failed(_NAN_GG, n_customers, message)
    if n_customers < min_customers:
        message = f"too few customers with frequency > 0 ({n_customers} < {min_customers})"
        return _failed(_NAN_GG, n_customers, message)
    # Spends are continuous, so rows are nearly all distinct: merging identical ones (as the
    # BG/NBD fit does) would cost a sort and save nothing.
    ux, uz, uw = x, z, (np.ones(x.size) if w is None else w)
    if uz.min() == uz.max():
        message = "all monetary values are identical: spend variation is not identified"
        return _failed(_NAN_GG, n_customers, message)

    scale = _dot(uw, uz) / float(uw.sum())
    objective = _GammaGammaObjective(ux, uz / scale, uw)
    if initial is None:
        # Population mean p*gamma/(q-1) = 1 on the rescaled data.
        start = np.array([2.0, 3.0, 1.0])
    else:
        start = np.array([initial.p, initial.q, initial.gamma / scale])
        if not np.all(np.isfinite(start)) or np.any(start <= 0):
            raise ValueError(f"initial parameters must be finite and positive, got {initial}")
    theta, converged, message = _run_lbfgsb(objective, np.log(start), ("p", "q", "gamma"), max_iter)
    p, q, gamma = np.exp(theta)
    params = GammaGammaParams(float(p), float(q), float(gamma * scale))
    if not converged:
        return _failed(_NAN_GG, n_customers, message + f" (last iterate: {params})")
    ll = _dot(uw, gamma_gamma_log_likelihood(params, ux, uz))
    if not np.isfinite(ll):
        return _failed(_NAN_GG, n_customers, f"non-finite log-likelihood at {params}")
    return FitResult(params, ll, True, n_customers, message)


def expected_order_value(
    params: GammaGammaParams, frequency: ArrayLike, monetary: ArrayLike
) -> np.ndarray:
    """Conditional expected mean transaction value E[M | x, z-bar] (currency units).

    p (gamma + x z-bar) / (p x + q - 1): a weighted average of the population mean
    p gamma/(q - 1) and the customer's own z-bar. For x == 0 it is the population mean
    (monetary is ignored there, so NaN is fine). Returns inf where the posterior mean does
    not exist (p x + q <= 1; for x == 0 that is q <= 1).
    """
    p, q, gamma = _check_params(params)
    x, z = _columns(("frequency", "monetary"), (frequency, monetary))
    with np.errstate(invalid="ignore"):
        if np.any(x < 0) or np.any((x > 0) & (z < 0)):
            raise ValueError("need frequency >= 0 and monetary >= 0")
    population = p * gamma / (q - 1) if q > 1 else np.inf
    denom = p * x + q - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(denom > 0, p * (gamma + x * z) / denom, np.inf)
    return np.where(x > 0, own, population)
