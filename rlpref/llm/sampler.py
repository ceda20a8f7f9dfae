"""A batch sampler that never splits a stratum across batches.

ResponseRank ranks comparisons *within* a stratum, so all members of a stratum (one round-robin
partition of one annotator's comparisons) must meet in the same batch. The sampler shuffles the
strata each epoch and packs whole strata into batches of at most ``batch_size`` comparisons
(first fit in the shuffled order); a stratum larger than ``batch_size`` becomes a batch of its own.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
from torch.utils.data import Sampler

__all__ = ["StratumBatchSampler"]


class StratumBatchSampler(Sampler[list[int]]):
    def __init__(self, stratum, batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if hasattr(stratum, "detach"):
            stratum = stratum.detach().cpu().numpy()
        stratum = np.asarray(stratum)
        if stratum.ndim != 1 or stratum.size == 0:
            raise ValueError(f"stratum must be a non-empty 1-D array of ids, got shape {stratum.shape}")
        _, inverse = np.unique(stratum, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0, True])
        self._members = [order[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0
        self._n_batches: Optional[int] = None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle the next iteration uses (iteration also advances it)."""
        self.epoch = int(epoch)

    def _batches(self, epoch: int) -> list[list[int]]:
        n_strata = len(self._members)
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch]).permutation(n_strata)
        else:
            perm = np.arange(n_strata)
        batches: list[list[int]] = []
        current: list[int] = []
        for s in perm:
            m = self._members[s]
            if current and len(current) + len(m) > self.batch_size:
                batches.append(current)
                current = []
            current.extend(int(i) for i in m)
            if len(current) >= self.batch_size:
                batches.append(current)
                current = []
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches(self.epoch)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        # The count can vary by a batch between shuffles; report the current epoch's.
        return len(self._batches(self.epoch))
