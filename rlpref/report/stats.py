"""Aggregate statistics across seeds: IQM with stratified bootstrap CIs (rliable), mean with t CIs.

``rliable`` (Agarwal et al. 2021) is used when it imports. rliable 1.2 imports ``arch`` 7.x, which
fails to import under pandas >= 3 (``deprecate_kwarg`` changed signature); pyproject pins pandas < 3.
If rliable cannot be imported, an equivalent numpy implementation of the same estimator is used
(percentile bootstrap, runs resampled with replacement independently within each task = stratum)
and ``BACKEND`` says so; the report prints it.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Mapping

import numpy as np
from scipy import stats as sps

__all__ = ["BACKEND", "iqm", "iqm_with_ci", "mean_with_ci"]

try:  # pragma: no cover - depends on the installed stack
    from rliable import library as _rly
    from rliable import metrics as _rly_metrics

    BACKEND = "rliable"
except Exception as _exc:  # noqa: BLE001 - any import failure means "use the fallback"
    _rly = None
    _rly_metrics = None
    BACKEND = f"numpy fallback (rliable unavailable: {type(_exc).__name__}: {str(_exc).splitlines()[0][:120]})"


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of all values (25 % trimmed from each end), as rliable.metrics.aggregate_iqm."""
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(sps.trim_mean(x, 0.25, axis=None))


def _stratified_bootstrap(scores: np.ndarray, func: Callable[[np.ndarray], float], reps: int, size: float,
                          rng: np.random.Generator) -> tuple[float, float]:
    n_runs, n_tasks = scores.shape
    idx = rng.integers(0, n_runs, size=(reps, n_runs, n_tasks))
    # gather column-wise: resample runs within each task (stratum)
    resampled = np.take_along_axis(scores[None, :, :].repeat(reps, axis=0), idx, axis=1)
    flat = resampled.reshape(reps, -1)
    k = int(math.floor(0.25 * flat.shape[1]))
    flat = np.sort(flat, axis=1)
    vals = flat[:, k: flat.shape[1] - k].mean(axis=1) if func is iqm else np.array([func(r) for r in resampled])
    alpha = (1 - size) / 2
    lo, hi = np.percentile(vals, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def iqm_with_ci(score_dict: Mapping[str, np.ndarray], reps: int = 2000, size: float = 0.95,
                seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """{method: (iqm, lo, hi)} for score arrays of shape [n_runs, n_tasks] (runs = seeds).

    With a single run the interval collapses to the point (nothing to resample).
    """
    out: dict[str, tuple[float, float, float]] = {}
    clean = {}
    for name, s in score_dict.items():
        s = np.asarray(s, dtype=float)
        if s.ndim == 1:
            s = s[:, None]
        if s.size == 0 or not np.all(np.isfinite(s)):
            s = s[np.all(np.isfinite(s), axis=1)]
        if s.shape[0] == 0:
            out[name] = (float("nan"),) * 3
        elif s.shape[0] == 1:
            v = iqm(s)
            out[name] = (v, v, v)
        else:
            clean[name] = s
    if not clean:
        return out
    if _rly is not None:
        with warnings.catch_warnings():  # arch (under rliable) deprecates the RandomState rliable passes
            warnings.simplefilter("ignore", FutureWarning)
            point, ci = _rly.get_interval_estimates(
                clean, lambda x: np.array([_rly_metrics.aggregate_iqm(x)]), reps=reps,
                confidence_interval_size=size, random_state=np.random.RandomState(seed),
            )
        for name in clean:
            out[name] = (float(point[name][0]), float(ci[name][0, 0]), float(ci[name][1, 0]))
    else:
        rng = np.random.default_rng(seed)
        for name, s in clean.items():
            lo, hi = _stratified_bootstrap(s, iqm, reps, size, rng)
            out[name] = (iqm(s), lo, hi)
    return out


def mean_with_ci(values: np.ndarray, size: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) with a Student-t interval across seeds; the interval is the point for n = 1."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    m = float(v.mean())
    if v.size == 1:
        return m, m, m
    half = float(sps.t.ppf(0.5 + size / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half
