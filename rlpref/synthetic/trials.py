"""Datasets of simulated choices with response times, many trials at once.

A dataset preset (:class:`DatasetSpec`) says how a pair's choice and response time (rt) arise from the
true utilities u1, u2 of its two items; ``y = True`` means the first item was chosen. Generators:

- ``deterministic``: y = 1[u1 > u2]; rt = rt_max / (|Δu| + 1).
- ``stochastic``: P(y) = σ((u1 − u2) / temperature); rt log-normal with mean rt_max / (|Δu| + 1) and
  SD ``rt_sd`` (the SD of the rt itself, not of its log).
- ``drift_diffusion``: drift v = Δu / SD(Δu over the trial's pairs), walkers from ``start`` between 0 and
  ``bound`` (see :mod:`rlpref.synthetic.ddm`); y = upper bound; rt = decision time + non-decision time.

Every pair gets a random stratum in 0..S−1. With ``variability`` > 0 each stratum's rts are multiplied
by |N(1, variability)|, so rts are only comparable inside a stratum. The strength key of a pair is its
rt (lower = stronger). The first ``n_train`` pairs are for training, the rest for testing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from .ddm import simulate_ddm
from .items import generate_items
from .seeding import numpy_rng

__all__ = [
    "DatasetSpec",
    "TRIAL_GENERATORS",
    "TrialBatch",
    "generate_dataset",
    "kendall_tau_strength",
]


@dataclass(frozen=True)
class DatasetSpec:
    """A synthetic dataset preset (one YAML file of ``conf/synthetic/dataset``)."""

    name: str
    generator: str
    variability: float = 3.0
    n_pairs: int = 250
    n_train: int = 50
    n_strata: int = 5
    n_features: int = 20
    utility_hidden: tuple[int, ...] = (64, 64)
    utility_sd: float = 1.0
    rt_max: float = 10.0
    choice_temperature: float = 0.2
    rt_sd: float = 0.4
    ddm: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.generator not in TRIAL_GENERATORS:
            raise ValueError(
                f"dataset '{self.name}': unknown trial generator '{self.generator}'; "
                f"choose one of: {', '.join(TRIAL_GENERATORS)}"
            )
        if not 0 < self.n_train < self.n_pairs:
            raise ValueError(f"need 0 < n_train < n_pairs, got n_train={self.n_train}, n_pairs={self.n_pairs}")
        if self.n_strata < 1 or self.variability < 0:
            raise ValueError(f"need n_strata >= 1 and variability >= 0, got {self.n_strata}, {self.variability}")
        object.__setattr__(self, "utility_hidden", tuple(int(h) for h in self.utility_hidden))
        object.__setattr__(self, "ddm", dict(self.ddm))

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "DatasetSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown dataset keys {unknown}; known: {', '.join(sorted(known))}")
        return cls(**dict(cfg))


@dataclass(frozen=True)
class TrialBatch:
    """T trials of one dataset. Arrays are [T, P] (features [T, P, F]); ``trials`` [T] are the trial ids."""

    spec: DatasetSpec
    trials: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    u1: np.ndarray
    u2: np.ndarray
    y: np.ndarray
    rt: np.ndarray
    stratum: np.ndarray

    def select(self, index) -> "TrialBatch":
        """A sub-batch of trials (by position in this batch)."""
        idx = np.atleast_1d(np.asarray(index))
        return TrialBatch(
            self.spec, self.trials[idx], self.x1[idx], self.x2[idx], self.u1[idx], self.u2[idx],
            self.y[idx], self.rt[idx], self.stratum[idx],
        )


def _hyperbolic_rt(spec: DatasetSpec, du: np.ndarray) -> np.ndarray:
    return spec.rt_max / (np.abs(du) + 1.0)


def _deterministic(spec: DatasetSpec, u1, u2, rngs):
    return u1 > u2, _hyperbolic_rt(spec, u1 - u2)


def _stochastic(spec: DatasetSpec, u1, u2, rngs):
    if spec.choice_temperature <= 0 or spec.rt_sd <= 0:
        raise ValueError("stochastic trials need choice_temperature > 0 and rt_sd > 0")
    p_first = 1.0 / (1.0 + np.exp(-(u1 - u2) / spec.choice_temperature))
    mean = _hyperbolic_rt(spec, u1 - u2)
    # Log-normal with mean m and SD s: sigma² = log(1 + s²/m²), mu = log(m) − sigma²/2.
    log_var = np.log1p(spec.rt_sd**2 / mean**2)
    mu, sigma = np.log(mean) - 0.5 * log_var, np.sqrt(log_var)
    y = np.empty(u1.shape, dtype=bool)
    rt = np.empty(u1.shape)
    for t, rng in enumerate(rngs):
        y[t] = rng.random(u1.shape[1]) < p_first[t]
        rt[t] = rng.lognormal(mu[t], sigma[t])
    return y, rt


DDM_DEFAULTS = dict(start=0.6, bound=1.2, noise_sd=0.4, dt=1e-3, non_decision_time=0.3, max_steps=1_000_000, block=128)


def _drift_diffusion(spec: DatasetSpec, u1, u2, rngs):
    unknown = sorted(set(spec.ddm) - set(DDM_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown ddm keys {unknown}; known: {', '.join(DDM_DEFAULTS)}")
    params = {**DDM_DEFAULTS, **spec.ddm}
    du = u1 - u2
    sd = du.std(axis=1, keepdims=True)
    if not (sd > 0).all():
        raise ValueError("all utility differences of a trial are equal: cannot normalise the drift")
    res = simulate_ddm(du / sd, rngs, **params)
    return res.upper, res.rt


TRIAL_GENERATORS: dict[str, Callable] = {
    "deterministic": _deterministic,
    "stochastic": _stochastic,
    "drift_diffusion": _drift_diffusion,
}


def generate_dataset(spec: DatasetSpec, root_seed: int, trials: Sequence[int]) -> TrialBatch:
    """Generate the given trials of a dataset; each trial depends only on (root_seed, trial id)."""
    trials = np.asarray(list(trials), dtype=np.int64)
    if trials.size == 0:
        raise ValueError("no trials requested")
    items = [
        generate_items(root_seed, int(t), spec.n_pairs, spec.n_features, spec.utility_hidden, spec.utility_sd)
        for t in trials
    ]
    x1 = np.stack([it.x1 for it in items])
    x2 = np.stack([it.x2 for it in items])
    u1 = np.stack([it.u1 for it in items])
    u2 = np.stack([it.u2 for it in items])
    rngs = [numpy_rng(root_seed, int(t), "responses") for t in trials]
    y, rt = TRIAL_GENERATORS[spec.generator](spec, u1, u2, rngs)
    stratum = np.stack(
        [numpy_rng(root_seed, int(t), "strata").integers(0, spec.n_strata, spec.n_pairs) for t in trials]
    ).astype(np.int64)
    if spec.variability > 0:
        mult = np.abs(
            np.stack([numpy_rng(root_seed, int(t), "variability").normal(1.0, spec.variability, spec.n_strata) for t in trials])
        )
        rt = rt * np.take_along_axis(mult, stratum, axis=1)
    return TrialBatch(spec, trials, x1, x2, u1, u2, np.asarray(y, dtype=bool), np.asarray(rt, dtype=np.float64), stratum)


def kendall_tau_strength(batch: TrialBatch, part: str = "test") -> np.ndarray:
    """Per trial: Kendall τ between the strength (−rt, so higher = stronger) and the true |Δu|.

    A dataset diagnostic: how much preference strength the response times carry across the whole
    ``part`` ("train", "test" or "all") — the per-stratum multipliers of the variability datasets lower it.
    """
    n = batch.spec.n_train
    sl = {"train": slice(0, n), "test": slice(n, None), "all": slice(None)}
    if part not in sl:
        raise ValueError(f"unknown part '{part}'; choose one of: {', '.join(sl)}")
    s = sl[part]
    out = np.empty(len(batch.trials))
    for i in range(len(batch.trials)):
        out[i] = stats.kendalltau(-batch.rt[i, s], np.abs(batch.u1[i, s] - batch.u2[i, s])).statistic
    return out
