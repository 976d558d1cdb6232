"""Probabilistic customer-base models: BG/NBD purchases, Gamma-Gamma spend, discounted CLV.

Pure NumPy/SciPy, vectorized over customers; times in days, money in currency units.
"""

from .bgnbd import (
    BgNbdParams,
    FitResult,
    bgnbd_log_likelihood,
    expected_purchases,
    fit_bgnbd,
    probability_alive,
)
from .clv import SimulatedCustomers, discounted_clv, simulate_bgnbd_gamma_gamma
from .gamma_gamma import (
    GammaGammaParams,
    expected_order_value,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
)

__all__ = [
    "BgNbdParams",
    "FitResult",
    "GammaGammaParams",
    "SimulatedCustomers",
    "bgnbd_log_likelihood",
    "discounted_clv",
    "expected_order_value",
    "expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "probability_alive",
    "simulate_bgnbd_gamma_gamma",
]
