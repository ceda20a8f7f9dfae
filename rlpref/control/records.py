"""Typed records that cross stage boundaries of the control track, stored as ``.npz`` (no pickle)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np

from rlpref.artifacts import load_npz, save_npz

__all__ = ["CURVE_COLUMNS", "Preferences", "Segments", "curve_csv", "read_curve"]

R = TypeVar("R", bound="_ArrayRecord")


class _ArrayRecord:
    """A frozen dataclass of numpy arrays sharing a leading axis: row selection, concatenation, npz I/O."""

    def subset(self: R, idx: np.ndarray) -> R:
        return type(self)(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @classmethod
    def concat(cls: type[R], parts: Sequence[R]) -> R:
        """The parts' rows one after another (indices they hold, e.g. into segments, are not shifted)."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def save(self, path: Path) -> None:
        save_npz(path, {f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls: type[R], path: Path) -> R:
        names = tuple(f.name for f in fields(cls))
        arrays = load_npz(path, names)
        return cls(**{k: arrays[k] for k in names})


@dataclass(frozen=True)
class Segments(_ArrayRecord):
    """Fixed-length pieces of rollouts, M segments of L steps.

    obs: float32 [M, L, obs_dim]; acts: float32 [M, L, act_dim] (discrete actions one-hot);
    next_obs: float32 [M, L, obs_dim]; rewards: float32 [M, L], the true per-step rewards;
    returns: float64 [M], discounted true return Σ_t γ^t r_t; batch: int64 [M], the rollout batch
    (0 = uniform-random policy, k = k-th checkpoint, or the round of the online loop).
    """

    obs: np.ndarray
    acts: np.ndarray
    next_obs: np.ndarray
    rewards: np.ndarray
    returns: np.ndarray
    batch: np.ndarray

    def __post_init__(self) -> None:
        m, length = self.rewards.shape
        for name, arr, dims in (("obs", self.obs, 3), ("acts", self.acts, 3), ("next_obs", self.next_obs, 3)):
            if arr.ndim != dims or arr.shape[:2] != (m, length):
                raise ValueError(f"Segments.{name} must be [M={m}, L={length}, ...], got {arr.shape}")
        if self.returns.shape != (m,) or self.batch.shape != (m,):
            raise ValueError("Segments.returns and Segments.batch must be [M]")
        for name in ("obs", "acts", "next_obs", "rewards", "returns"):
            bad = ~np.isfinite(getattr(self, name))
            if bad.any():
                seg = int(np.argwhere(bad)[0][0])
                raise ValueError(
                    f"Segments.{name} holds {int(bad.sum())} NaN/inf value(s), first in segment {seg} (rollout batch "
                    f"{int(self.batch[seg])}): the environment or policy produced them. A preference over such a "
                    "segment means nothing, so no feedback is built from it; fix the env (or its observation bounds)."
                )

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def length(self) -> int:
        return int(self.rewards.shape[1])


@dataclass(frozen=True)
class Preferences(_ArrayRecord):
    """P labelled comparisons between segments (indices into a :class:`Segments`).

    chosen, rejected: int64 [P]; strength: float64 [P], rank key, lower = stronger (−|ΔR|);
    batch: int64 [P], rollout batch of the pair (of the chosen segment for cross-batch pairs);
    return_chosen, return_rejected: float64 [P], the *true* (noise-free) returns, kept for oracle metrics.
    """

    chosen: np.ndarray
    rejected: np.ndarray
    strength: np.ndarray
    batch: np.ndarray
    return_chosen: np.ndarray
    return_rejected: np.ndarray

    def __post_init__(self) -> None:
        p = self.chosen.shape[0]
        for f in fields(self):
            if getattr(self, f.name).shape != (p,):
                raise ValueError(f"Preferences.{f.name} must be [P={p}], got {getattr(self, f.name).shape}")

    def __len__(self) -> int:
        return int(self.chosen.shape[0])

    @property
    def pairs(self) -> np.ndarray:
        """The asked pairs [P, 2] as (chosen, rejected) segment indices."""
        return np.stack([self.chosen, self.rejected], axis=1)

    def label_accuracy(self) -> float:
        """Fraction of labels that agree with the true returns (1.0 for a noise-free teacher)."""
        return float(np.mean(self.return_chosen >= self.return_rejected))


#: The one schema of a learning curve (``curve.csv``): agent env steps vs the true return of an evaluation.
CURVE_COLUMNS = ("step", "true_return_mean", "true_return_std", "n_episodes")


def curve_csv(points: Sequence[dict]) -> str:
    """CSV text of curve points (dicts with :data:`CURVE_COLUMNS`), floats written exactly (repr)."""
    rows = [",".join(CURVE_COLUMNS)]
    rows += [f"{int(p['step'])},{float(p['true_return_mean'])!r},{float(p['true_return_std'])!r},{int(p['n_episodes'])}"
             for p in points]
    return "\n".join(rows) + "\n"


def read_curve(path: Path) -> list[dict]:
    """The points of a ``curve.csv`` written by :func:`curve_csv`."""
    import csv

    with open(path) as f:
        return [{"step": int(r["step"]), "true_return_mean": float(r["true_return_mean"]),
                 "true_return_std": float(r["true_return_std"]), "n_episodes": int(r["n_episodes"])}
                for r in csv.DictReader(f)]
