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
import zlib
from typing import Callable, Mapping

import numpy as np
from scipy import stats as sps

__all__ = ["BACKEND", "compare_methods", "iqm", "iqm_interval", "iqm_with_ci", "mean_with_ci", "method_stream",
           "probability_of_improvement"]

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


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) of one run of each method (ties count ½), averaged over tasks: rliable's estimator (the
    Mann-Whitney U statistic over all pairs of runs). x, y: [n_runs, n_tasks] or [n_runs]."""
    x, y = _runs_by_tasks(x), _runs_by_tasks(y)
    greater = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * ties))


def _runs_by_tasks(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=float)
    return s[:, None] if s.ndim == 1 else s


def _iqm_rows(s: np.ndarray) -> np.ndarray:
    """IQM of each bootstrap sample: s [reps, runs, tasks] -> [reps] (all runs and tasks pooled, as iqm)."""
    flat = np.sort(s.reshape(len(s), -1), axis=1)
    k = int(math.floor(0.25 * flat.shape[1]))
    return flat[:, k: flat.shape[1] - k].mean(axis=1)


def _poi_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """probability_of_improvement of each bootstrap sample: x [reps, nx, tasks], y [reps, ny, tasks] -> [reps]."""
    gt = (x[:, :, None, :] > y[:, None, :, :]).mean(axis=(1, 2))
    eq = (x[:, :, None, :] == y[:, None, :, :]).mean(axis=(1, 2))
    return (gt + 0.5 * eq).mean(axis=1)


def method_stream(name: str) -> int:
    """A bootstrap stream id for a method, stable across runs and tables: every interval drawn for one method
    from the same runs is then the same interval, whichever table shows it."""
    return zlib.crc32(name.encode())


def _bootstrap_runs(s: np.ndarray, reps: int, seed: int, stream: int) -> np.ndarray:
    """[reps, runs, tasks]: ``s``'s runs resampled with replacement within each task, from stream [seed, stream]."""
    idx = np.random.default_rng([seed, stream]).integers(0, len(s), (reps, *s.shape))
    return np.take_along_axis(s[None], idx, axis=1)


def _finite_runs(s: np.ndarray) -> np.ndarray:
    s = _runs_by_tasks(s)
    return s[np.all(np.isfinite(s), axis=1)]


def compare_methods(x: np.ndarray, y: np.ndarray, reps: int = 2000, size: float = 0.95,
                    seed: int = 0, streams: tuple[int, int] = (0, 1)) -> dict[str, tuple[float, float, float]]:
    """X against Y from their runs' scores ([n_runs] or [n_runs, n_tasks]; the runs of X and Y need not pair):
    {iqm_x, iqm_y, difference: IQM(X) − IQM(Y), ratio: IQM(X) / IQM(Y) (nan unless every bootstrap IQM of both
    sides is positive), probability_of_improvement: P(X > Y)}, each as
    (point, lo, hi) with a percentile stratified-bootstrap CI that resamples X's and Y's runs independently
    within each task: rliable's bootstrap and estimators, vectorised here (rliable calls scipy once per
    sample, seconds per comparison). Runs with a non-finite score are left out; needs two runs a side.
    ``streams``: each side's bootstrap stream (e.g. :func:`method_stream` of its name), so a side's CI is
    the same in every comparison it is part of, and equal to its :func:`iqm_interval`."""
    x, y = _finite_runs(x), _finite_runs(y)  # drop failed runs
    if min(len(x), len(y)) < 2:
        raise ValueError(f"compare_methods needs >= 2 runs a side, got {len(x)} and {len(y)}")
    bx, by = _bootstrap_runs(x, reps, seed, streams[0]), _bootstrap_runs(y, reps, seed, streams[1])
    ix, iy = _iqm_rows(bx), _iqm_rows(by)
    samples = {"iqm_x": ix, "iqm_y": iy, "difference": ix - iy, "probability_of_improvement": _poi_rows(bx, by)}
    points = {"iqm_x": iqm(x), "iqm_y": iqm(y), "difference": iqm(x) - iqm(y),
              "probability_of_improvement": probability_of_improvement(x, y)}
    alpha = 100 * (1 - size) / 2
    out = {name: (float(points[name]), *map(float, np.percentile(samples[name], [alpha, 100 - alpha])))
           for name in points}
    # a ratio of IQMs means something only where both are positive in every bootstrap sample (returns can be < 0)
    out["ratio"] = ((points["iqm_x"] / points["iqm_y"], *map(float, np.percentile(ix / iy, [alpha, 100 - alpha])))
                    if min(ix.min(), iy.min()) > 0 else (float("nan"),) * 3)
    return out


def iqm_interval(x: np.ndarray, reps: int = 2000, size: float = 0.95, seed: int = 0,
                 stream: int = 0) -> tuple[float, float, float]:
    """(IQM, lo, hi) of one method's runs ([n_runs] or [n_runs, n_tasks]) with :func:`compare_methods`'s
    bootstrap (the same ``stream`` gives the same interval); non-finite runs are left out; the interval is
    the point for one run, nan for none."""
    x = _finite_runs(x)
    if len(x) < 2:
        v = iqm(x) if len(x) else float("nan")
        return v, v, v
    alpha = 100 * (1 - size) / 2
    return (iqm(x), *map(float, np.percentile(_iqm_rows(_bootstrap_runs(x, reps, seed, stream)), [alpha, 100 - alpha])))


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
