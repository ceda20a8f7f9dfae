"""Tests of rlpref.strata: tie-free round-robin, spread-k, random partitions, relabelling, by-name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlpref.losses import make_rank_plan, rr_loss
from rlpref.strata import STRATIFIERS, from_groups, global_stratum, random_partitions, round_robin, stratify


def assert_contiguous_ids(ids: np.ndarray) -> None:
    assert ids.dtype == np.int64
    assert np.array_equal(np.unique(ids), np.arange(ids.max() + 1))


def assert_no_ties_inside(strata: np.ndarray, strength: np.ndarray) -> None:
    for s in np.unique(strata):
        vals = strength[strata == s]
        assert np.unique(vals).size == vals.size, f"stratum {s} holds tied strengths {np.sort(vals)}"


def assert_within_groups(strata: np.ndarray, groups: np.ndarray) -> None:
    for s in np.unique(strata):
        assert np.unique(groups[strata == s]).size == 1, f"stratum {s} crosses groups"


# ---------------------------------------------------------------- round robin, auto


@pytest.mark.parametrize("seed", range(8))
def test_round_robin_auto_never_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    strength = rng.integers(0, int(rng.integers(2, 15)), size=n).astype(float)  # many ties
    strata = round_robin(strength)
    assert strata.shape == (n,)
    assert_contiguous_ids(strata)
    assert_no_ties_inside(strata, strength)
    # auto uses exactly as many partitions as the largest multiplicity (the fewest possible)
    assert strata.max() + 1 == np.unique(strength, return_counts=True)[1].max()
    # and the loss accepts the result
    rr_loss(torch.randn(n), torch.randn(n), torch.as_tensor(strength), torch.as_tensor(strata))


@pytest.mark.parametrize("seed", range(8))
def test_round_robin_auto_with_groups(seed):
    rng = np.random.default_rng(100 + seed)
    n = 300
    groups = rng.integers(0, 12, size=n) * 3 + 5  # non-contiguous group ids
    strength = rng.integers(0, 6, size=n).astype(float)
    strata = round_robin(strength, groups)
    assert_contiguous_ids(strata)
    assert_no_ties_inside(strata, strength)
    assert_within_groups(strata, groups)
    # per group: exactly max multiplicity partitions
    for g in np.unique(groups):
        m = groups == g
        assert np.unique(strata[m]).size == np.unique(strength[m], return_counts=True)[1].max()


def test_round_robin_no_ties_keeps_group_whole():
    strength = np.array([0.3, 0.1, 0.2, 0.9])
    groups = np.array(["a", "b", "a", "b"])
    strata = round_robin(strength, groups)
    assert strata[0] == strata[2] and strata[1] == strata[3] and strata[0] != strata[1]


def test_round_robin_known_split():
    # sorted by strength: 1,1,2,2,3 -> ranks 0..4 dealt over P = 2 partitions
    strength = np.array([2.0, 1.0, 3.0, 1.0, 2.0])
    strata = round_robin(strength)
    # rank order (stable): idx1 (1.0), idx3 (1.0), idx0 (2.0), idx4 (2.0), idx2 (3.0)
    assert strata[1] != strata[3] and strata[0] != strata[4]
    assert sorted(np.bincount(strata).tolist()) == [2, 3]


def test_round_robin_accepts_torch_and_rejects_nan():
    assert round_robin(torch.tensor([1.0, 1.0, 2.0])).max() == 1
    with pytest.raises(ValueError, match="NaN"):
        round_robin([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        round_robin(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="groups has 2 entries"):
        round_robin([1.0, 2.0, 3.0], groups=[0, 1])
    with pytest.raises(ValueError, match="k must be >= 1"):
        round_robin([1.0, 2.0], k=0)


# ---------------------------------------------------------------- spread-k


@pytest.mark.parametrize("k", [4, 8, 16])
def test_spread_k_partitions_span_range(k):
    rng = np.random.default_rng(k)
    n = 200
    strength = rng.permutation(n).astype(float)  # distinct: 0..199
    strata = round_robin(strength, k=k)
    assert_contiguous_ids(strata)
    sizes = np.bincount(strata)
    assert sizes.size == -(-n // k)
    assert sizes.max() <= k and sizes.max() - sizes.min() <= 1
    # each partition spans (almost) the whole range, unlike contiguous chunks of the sorted keys
    for s in range(sizes.size):
        vals = np.sort(strength[strata == s])
        assert vals[0] < sizes.size and vals[-1] >= n - sizes.size
        assert np.all(np.diff(vals) == sizes.size)


def test_spread_k_with_ties_and_groups():
    rng = np.random.default_rng(5)
    n = 500
    groups = rng.integers(0, 7, size=n)
    strength = rng.integers(0, 20, size=n).astype(float)
    strata = round_robin(strength, groups, k=8)
    assert_no_ties_inside(strata, strength)
    assert_within_groups(strata, groups)
    for g in np.unique(groups):
        m = groups == g
        size, mult = m.sum(), np.unique(strength[m], return_counts=True)[1].max()
        assert np.unique(strata[m]).size == max(-(-size // 8), mult)


# ---------------------------------------------------------------- random partitions


@pytest.mark.parametrize("seed", range(5))
def test_random_partitions_sizes_and_groups(seed):
    rng = np.random.default_rng(seed)
    n, k = 333, 8
    groups = rng.integers(0, 9, size=n)
    strata = random_partitions(n, k, rng=seed, groups=groups)
    assert_contiguous_ids(strata)
    sizes = np.bincount(strata)
    assert sizes.max() <= k
    assert_within_groups(strata, groups)
    # at most one non-full partition per group
    for g in np.unique(groups):
        gs = np.bincount(strata[groups == g])
        gs = gs[gs > 0]
        assert (gs < k).sum() <= 1
        assert gs.size == -(-(groups == g).sum() // k)


def test_random_partitions_global_is_random_and_seeded():
    a = random_partitions(100, 10, rng=0)
    b = random_partitions(100, 10, rng=0)
    c = random_partitions(100, 10, rng=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(np.bincount(a), np.full(10, 10))
    # shuffled, not contiguous chunks
    assert not np.array_equal(a, np.arange(100) // 10)


def test_random_partitions_errors():
    with pytest.raises(ValueError, match="k must be >= 1"):
        random_partitions(10, 0)
    with pytest.raises(ValueError, match="expected n = 10"):
        random_partitions(10, 3, groups=[0, 1])


# ---------------------------------------------------------------- from_groups / global


def test_from_groups_relabels():
    ids = from_groups(np.array([10, -3, 10, 7, -3]))
    assert ids.tolist() == [2, 0, 2, 1, 0]
    assert from_groups(["b", "a", "b"]).tolist() == [1, 0, 1]
    assert_contiguous_ids(from_groups(np.random.default_rng(0).integers(-1000, 1000, 300)))


def test_global_stratum():
    assert global_stratum(4).tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="n must be >= 0"):
        global_stratum(-1)


# ---------------------------------------------------------------- stratify by name


def test_stratify_by_name():
    rng = np.random.default_rng(0)
    n = 120
    groups = rng.integers(0, 4, size=n)
    strength = rng.integers(0, 10, size=n).astype(float)

    by_group = stratify("by_group", n=n, groups=groups)
    assert np.array_equal(by_group, from_groups(groups))

    tie_free = stratify("by_group", n=n, groups=groups, strength=strength)
    assert_no_ties_inside(tie_free, strength)
    assert_within_groups(tie_free, groups)

    assert np.array_equal(stratify("global", n=n), np.zeros(n, dtype=np.int64))
    glob = stratify("global", n=n, strength=strength)
    assert_no_ties_inside(glob, strength)

    rk = stratify("random_k", n=n, k=8, rng=0, groups=groups)
    assert np.bincount(rk).max() <= 8
    assert_within_groups(rk, groups)
    rk_s = stratify("random_k", n=n, k=8, rng=0, strength=strength)
    assert_no_ties_inside(rk_s, strength)

    rr = stratify("round_robin", n=n, strength=strength, groups=groups, k=8)
    assert np.array_equal(rr, round_robin(strength, groups, k=8))
    # every result is usable by the loss without a tie error
    for s in (tie_free, glob, rk_s, rr):
        make_rank_plan(torch.as_tensor(strength), torch.as_tensor(s))


def test_stratify_errors():
    with pytest.raises(ValueError) as e:
        stratify("bogus", n=3)
    for name in STRATIFIERS:
        assert name in str(e.value)
    assert "bogus" in str(e.value)
    with pytest.raises(ValueError, match="needs group ids"):
        stratify("by_group", n=3)
    with pytest.raises(ValueError, match="needs k"):
        stratify("random_k", n=3)
    with pytest.raises(ValueError, match="needs strength"):
        stratify("round_robin", n=3)
