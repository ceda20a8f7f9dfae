"""Aggregate statistics across seeds: IQM with stratified bootstrap CIs (rliable's estimator), mean with t CIs.

The interval estimators are rliable's (Agarwal et al. 2021): percentile bootstrap, runs resampled with
replacement independently within each task (= stratum), IQM = 25 %-trimmed mean of all runs and tasks.
They are implemented here vectorised (rliable calls scipy once per bootstrap sample: seconds per interval)
with a stream per method, so one method's interval is the same in every table and figure that shows it;
``tests/test_report.py`` checks them against rliable's own.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from scipy import stats as sps

__all__ = ["compare_methods", "iqm", "iqm_interval", "mean_with_ci", "method_stream", "probability_of_improvement"]


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of all values (25 % trimmed from each end), as rliable.metrics.aggregate_iqm."""
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(sps.trim_mean(x, 0.25, axis=None))


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
