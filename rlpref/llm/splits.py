"""Which comparisons train and which test, and with which labels: deterministic and seed-nested.

Kept apart from loading and training because every experiment of a grid must see the same split
(decided by a hash of the prompt id, never by a seed or row order), the same test labels (the
aggregated preference) and, for one seed, the same nested training subsets and labels (one random
non-tie annotation per comparison), so that differences between losses are paired.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from rlpref.llm.multipref import Comparison

__all__ = ["TestSet", "TrainPairs", "make_test_set", "sample_train_pairs", "split_by_prompt", "unit_hash"]


def unit_hash(text: str) -> float:
    """A fixed pseudo-random number in [0, 1) of a string (SHA-256), the same on every machine."""
    h = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def split_by_prompt(
    comparisons: Sequence[Comparison], test_fraction: float = 0.2, salt: str = "rlpref-llm"
) -> tuple[list[int], list[int]]:
    """Deterministic train/test indices: a prompt (``prompt_id``) and all its comparisons go to one side,
    decided by a hash of the id, so the split does not depend on row order or on any seed."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train, test = [], []
    for i, c in enumerate(comparisons):
        (test if unit_hash(f"{salt}:{c.prompt_id}") < test_fraction else train).append(i)
    if not train or not test:
        raise ValueError(
            f"split by prompt left an empty side ({len(train)} train, {len(test)} test comparisons); "
            "use more data or another test_fraction"
        )
    return train, test


@dataclass
class TestSet:
    """Test comparisons labelled by the aggregated preference (sum of all signed scores; ties dropped)."""

    __test__ = False  # not a pytest test class

    index: np.ndarray  # into the comparison list
    a_wins: np.ndarray  # bool: aggregated preference says A
    utility_a: Optional[np.ndarray] = None  # hidden utilities (simulated data only)
    utility_b: Optional[np.ndarray] = None
    n_dropped_ties: int = 0


def make_test_set(comparisons: Sequence[Comparison], index: Sequence[int]) -> TestSet:
    """Label each test comparison by the sign of its summed scores; aggregated ties carry no label."""
    keep, a_wins = [], []
    for i in index:
        total = float(np.sum(comparisons[i].prefs))
        if total == 0.0:
            continue
        keep.append(i)
        a_wins.append(total > 0)
    if not keep:
        raise ValueError("every test comparison is an aggregated tie; no test labels")
    has_u = all(comparisons[i].utility_a is not None and comparisons[i].utility_b is not None for i in keep)
    ua = np.array([comparisons[i].utility_a for i in keep], dtype=np.float64) if has_u else None
    ub = np.array([comparisons[i].utility_b for i in keep], dtype=np.float64) if has_u else None
    return TestSet(np.asarray(keep, dtype=np.int64), np.asarray(a_wins, dtype=bool), ua, ub, len(index) - len(keep))


@dataclass
class TrainPairs:
    """Training comparisons with a label from one random annotation each."""

    index: np.ndarray  # into the comparison list
    chosen_is_a: np.ndarray  # bool
    annotator: np.ndarray  # str ids of the labelling annotator
    label_pref: np.ndarray  # that annotation's signed score (never 0)
    label_time: np.ndarray  # its time spent (NaN if missing)
    all_prefs: list = field(default_factory=list)  # every annotation's score, per comparison
    n_dropped_ties: int = 0

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def subset(self, keep: np.ndarray) -> "TrainPairs":
        """The pairs selected by a boolean mask or an index array (tie count kept)."""
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return TrainPairs(
            self.index[idx],
            self.chosen_is_a[idx],
            self.annotator[idx],
            self.label_pref[idx],
            self.label_time[idx],
            [self.all_prefs[j] for j in idx],
            self.n_dropped_ties,
        )


def sample_train_pairs(
    comparisons: Sequence[Comparison], index: Sequence[int], seed: int, fraction: float = 1.0
) -> TrainPairs:
    """Take the first ``fraction`` of a seeded permutation of ``index`` (so fractions are nested for
    one seed) and label each comparison with one uniformly chosen non-tie annotation. Comparisons
    whose annotations are all ties are dropped. The choice of annotation does not depend on
    ``fraction``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"training fraction must be in (0, 1], got {fraction}")
    index = np.asarray(index, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 7919])
    order = rng.permutation(index.shape[0])
    pick_u = rng.random(index.shape[0])  # one draw per comparison, before subsetting
    k = max(1, int(round(fraction * index.shape[0])))
    rows: dict[str, list] = dict(idx=[], a=[], who=[], pref=[], time=[], prefs=[])
    dropped = 0
    for pos in order[:k]:
        c = comparisons[index[pos]]
        nontie = [j for j, p in enumerate(c.prefs) if p != 0.0]
        if not nontie:
            dropped += 1
            continue
        j = nontie[min(int(pick_u[pos] * len(nontie)), len(nontie) - 1)]
        rows["idx"].append(index[pos])
        rows["a"].append(c.prefs[j] > 0)
        rows["who"].append(c.annotators[j])
        rows["pref"].append(c.prefs[j])
        rows["time"].append(c.times[j])
        rows["prefs"].append(list(c.prefs))
    if not rows["idx"]:
        raise ValueError("no training comparison left after dropping ties")
    return TrainPairs(
        np.asarray(rows["idx"], dtype=np.int64),
        np.asarray(rows["a"], dtype=bool),
        np.asarray(rows["who"], dtype=str),
        np.asarray(rows["pref"], dtype=np.float64),
        np.asarray(rows["time"], dtype=np.float64),
        rows["prefs"],
        dropped,
    )
