"""Drift-diffusion simulation, vectorised over every walker of every trial of a dataset.

Euler scheme: x += v·dt + √dt·N(0, σ²) from x0 = ``start`` until x <= 0 or x >= ``bound``; the choice is
the upper bound, the response time is (steps·dt) + non-decision time.

All unfinished walkers are advanced together in blocks of ``block`` Euler steps: one
[n_active, block] noise array, a cumulative sum along the steps and a vectorised first-crossing
search; walkers that finished drop out of the active set before the next block. ``block=1`` is the
literal one-step-at-a-time scheme; a larger block draws the same Gaussian increments in another order
(walker-major inside a block), so individual walks differ between block sizes while their
distribution does not: ``block`` is part of a dataset's config for reproducibility. Noise comes from one numpy Generator
per trial, drawn only for that trial's still-active walkers, so a trial's result does not depend on
which other trials are simulated with it. Walkers still inside the bounds after ``max_steps`` steps
raise an error instead of looping forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["DDMResult", "simulate_ddm", "upper_bound_probability"]


@dataclass(frozen=True)
class DDMResult:
    """``upper`` bool [T, P]: the walker ended at the upper bound; ``steps`` int64 [T, P]: Euler steps
    taken (the crossing step included); ``rt`` float64 [T, P] = steps·dt + non_decision_time."""

    upper: np.ndarray
    steps: np.ndarray
    rt: np.ndarray


def simulate_ddm(
    drift: np.ndarray,
    rngs: Sequence[np.random.Generator],
    *,
    start: float = 0.6,
    bound: float = 1.2,
    noise_sd: float = 0.4,
    dt: float = 1e-3,
    non_decision_time: float = 0.3,
    max_steps: int = 1_000_000,
    block: int = 128,
) -> DDMResult:
    """Simulate one walker per entry of ``drift`` [T, P]; ``rngs[t]`` supplies trial t's noise."""
    drift = np.asarray(drift, dtype=np.float64)
    if drift.ndim == 1:
        drift = drift[None, :]
    if drift.ndim != 2:
        raise ValueError(f"drift must be [trials, pairs], got shape {drift.shape}")
    n_trials, n_pairs = drift.shape
    if len(rngs) != n_trials:
        raise ValueError(f"need one rng per trial: {n_trials} trials, {len(rngs)} rngs")
    if not np.isfinite(drift).all():
        raise ValueError("drift contains NaN or inf")
    if not (bound > 0 and 0 < start < bound):
        raise ValueError(f"need 0 < start < bound, got start={start}, bound={bound}")
    if not (dt > 0 and noise_sd >= 0 and max_steps >= 1 and block >= 1):
        raise ValueError(f"need dt > 0, noise_sd >= 0, max_steps >= 1, block >= 1; got {dt}, {noise_sd}, {max_steps}, {block}")

    flat_drift = drift.reshape(-1) * dt
    scale = np.sqrt(dt) * noise_sd
    n = flat_drift.size
    x = np.full(n, float(start))
    steps = np.zeros(n, dtype=np.int64)
    upper = np.zeros(n, dtype=bool)
    active = np.arange(n)  # sorted global ids t*P + p: grouped by trial, in pair order
    taken = 0
    while active.size:
        if taken >= max_steps:
            raise RuntimeError(
                f"{active.size} of {n} drift-diffusion walkers did not reach a bound within max_steps={max_steps} "
                f"Euler steps ({max_steps * dt:g} s simulated; drift range [{drift.min():.3g}, {drift.max():.3g}], "
                f"noise_sd={noise_sd}, bounds 0 and {bound}). Raise max_steps or check the parameters "
                "(e.g. noise_sd = 0 with a near-zero drift never terminates)."
            )
        k = int(min(block, max_steps - taken))
        counts = np.bincount(active // n_pairs, minlength=n_trials)
        noise = np.concatenate([rngs[t].standard_normal((int(c), k)) for t, c in enumerate(counts) if c])
        path = np.cumsum(noise * scale + flat_drift[active, None], axis=1)
        path += x[active, None]
        crossed = (path <= 0.0) | (path >= bound)
        hit = crossed.any(axis=1)
        first = crossed.argmax(axis=1)
        done = active[hit]
        steps[done] = taken + first[hit] + 1
        upper[done] = path[hit, first[hit]] >= bound
        x[active[~hit]] = path[~hit, -1]
        active = active[~hit]
        taken += k
    steps = steps.reshape(n_trials, n_pairs)
    return DDMResult(upper=upper.reshape(n_trials, n_pairs), steps=steps, rt=steps * dt + non_decision_time)


def upper_bound_probability(drift, start: float, bound: float, noise_sd: float) -> np.ndarray:
    """Analytic probability that Brownian motion with constant drift, started at ``start``, leaves
    [0, bound] through the upper bound: (1 − e^{−2vz/σ²}) / (1 − e^{−2va/σ²}); z/a for v = 0."""
    v = np.asarray(drift, dtype=np.float64)
    if not (noise_sd > 0 and 0 < start < bound):
        raise ValueError(f"need noise_sd > 0 and 0 < start < bound, got {noise_sd}, {start}, {bound}")

    def towards(speed, z):  # speed >= 0: both expm1 terms lie in (-1, 0], no overflow
        c = 2.0 * speed / noise_sd**2
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(speed > 0, np.expm1(-c * z) / np.expm1(-c * bound), z / bound)

    return np.where(v >= 0, towards(np.abs(v), start), 1.0 - towards(np.abs(v), bound - start))
