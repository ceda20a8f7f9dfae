"""Metrics of reward models: choice accuracy, PDC, Pearson/Spearman of utilities.

All functions take array-likes (numpy or torch) and return Python floats.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

__all__ = ["choice_accuracy", "order_accuracy", "pdc", "pearson", "spearman"]


def _np(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _pair(a, b, na: str, nb: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _np(a, na), _np(b, nb)
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError(f"{na} and {nb} are empty")
    return a, b


def choice_accuracy(u_chosen, u_rejected) -> float:
    """Fraction of comparisons where the model ranks the chosen item strictly higher (ties are wrong)."""
    a, b = _pair(u_chosen, u_rejected, "u_chosen", "u_rejected")
    return float(np.mean(a > b))


def order_accuracy(true_1, true_2, pred_1, pred_2) -> float:
    """Agreement of the predicted order with the true utility order; pairs tied in truth are skipped,
    predicted ties count as wrong."""
    t1, t2 = _pair(true_1, true_2, "true_1", "true_2")
    p1, p2 = _pair(pred_1, pred_2, "pred_1", "pred_2")
    if p1.shape != t1.shape:
        raise ValueError("true and predicted utilities must have the same shape")
    dt, dp = t1 - t2, p1 - p2
    keep = dt != 0
    if not keep.any():
        raise ValueError("all pairs are tied in the true utilities; order accuracy is undefined")
    return float(np.mean(np.sign(dp[keep]) == np.sign(dt[keep])))


def _corr(a, b, na: str, nb: str, fn) -> float:
    a, b = _pair(a, b, na, nb)
    if a.size < 2:
        raise ValueError(f"correlation needs at least 2 values, got {a.size}")
    for arr, name in ((a, na), (b, nb)):
        if np.ptp(arr) == 0:
            warnings.warn(f"{name} is constant: correlation is undefined, returning NaN", RuntimeWarning, stacklevel=3)
            return float("nan")
    return float(fn(a, b)[0])


def pearson(x, y) -> float:
    """Pearson r; NaN with a warning when either side is constant."""
    return _corr(x, y, "x", "y", stats.pearsonr)


def spearman(x, y) -> float:
    """Spearman ρ; NaN with a warning when either side is constant."""
    return _corr(x, y, "x", "y", stats.spearmanr)


def pdc(delta_true, delta_pred) -> float:
    """Pearson Distance Correlation: Pearson r between |Δu_true| and |Δu_pred| over test pairs.

    Measures whether the model recovers *how strongly* items differ, not only the order.
    NaN with a warning when the predicted differences are constant (e.g. a collapsed model).
    """
    t, p = _pair(delta_true, delta_pred, "delta_true", "delta_pred")
    return _corr(np.abs(t), np.abs(p), "|delta_true|", "|delta_pred|", stats.pearsonr)
