"""Stratifiers: which comparisons' strength values may be ranked against each other.

Each function returns ``int64`` stratum ids, an array [N] with values 0..S-1 (numpy), ready for
``torch.as_tensor`` and the ``stratum`` argument of :mod:`rlpref.losses`.

- :func:`from_groups`: one stratum per given group (e.g. the rollout batch a pair came from).
- :func:`global_stratum`: everything in one stratum (the "pooled" ablation).
- :func:`random_partitions`: random partitions of about k comparisons (the paper's RL runs: k = 8).
- :func:`round_robin`: split each group by strength rank so that no stratum holds tied strengths.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

ArrayLike = Union[np.ndarray, "list[int]", "list[float]"]

__all__ = ["STRATIFIERS", "from_groups", "global_stratum", "random_partitions", "round_robin", "stratify"]


def _as_1d(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {arr.shape}")
    return arr


def from_groups(groups: ArrayLike) -> np.ndarray:
    """Relabel arbitrary group ids (ints or strings) [N] to contiguous stratum ids 0..S-1."""
    groups = _as_1d(groups, "groups")
    _, ids = np.unique(groups, return_inverse=True)
    return ids.astype(np.int64)


def global_stratum(n: int) -> np.ndarray:
    """All n comparisons in one stratum."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return np.zeros(n, dtype=np.int64)


def random_partitions(
    n: int,
    k: int,
    rng: Union[np.random.Generator, int, None] = None,
    groups: Optional[ArrayLike] = None,
) -> np.ndarray:
    """Shuffle and cut into partitions of k comparisons (the last one of each group may be smaller).

    With ``groups`` the partitions are made inside each group, never across groups.
    """
    if k < 1:
        raise ValueError(f"partition size k must be >= 1, got {k}")
    rng = np.random.default_rng(rng)
    groups_ids = global_stratum(n) if groups is None else from_groups(groups)
    if groups_ids.shape[0] != n:
        raise ValueError(f"groups has {groups_ids.shape[0]} entries, expected n = {n}")
    perm = rng.permutation(n)
    # Stable sort by group keeps the random order inside each group.
    order = perm[np.argsort(groups_ids[perm], kind="stable")]
    g_sorted = groups_ids[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank_in_group = np.arange(n) - np.repeat(starts, sizes)
    parts_per_group = -(-sizes // k)
    offset = np.repeat(np.cumsum(parts_per_group) - parts_per_group, sizes)
    out = np.empty(n, dtype=np.int64)
    out[order] = offset + rank_in_group // k
    return out


def round_robin(strength: ArrayLike, groups: Optional[ArrayLike] = None, k: Optional[int] = None) -> np.ndarray:
    """Split each group by strength rank, dealing ranks round-robin over P partitions.

    ``k=None`` ("auto"): P is the largest multiplicity of any strength value in the group, the fewest
    partitions that keep tied values apart (tied values are adjacent in rank order, so dealing
    them round-robin over P ≥ multiplicity partitions separates them).
    ``k`` given ("spread-k"): P = ceil(size / k) (at least the multiplicity), so each partition has
    about k comparisons spread across the group's whole strength range.
    """
    strength = _as_1d(strength, "strength").astype(np.float64)
    n = strength.shape[0]
    if not np.isfinite(strength).all():
        raise ValueError("strength contains NaN or inf")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 (or None for auto), got {k}")
    groups_ids = global_stratum(n) if groups is None else from_groups(groups)
    if groups_ids.shape[0] != n:
        raise ValueError(f"groups has {groups_ids.shape[0]} entries, strength has {n}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((strength, groups_ids))
    g_sorted, s_sorted = groups_ids[order], strength[order]
    g_starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    g_sizes = np.diff(np.r_[g_starts, n])
    # Multiplicity of each run of equal (group, strength) values.
    run_starts = np.flatnonzero(np.r_[True, (g_sorted[1:] != g_sorted[:-1]) | (s_sorted[1:] != s_sorted[:-1])])
    run_sizes = np.diff(np.r_[run_starts, n])
    run_group = g_sorted[run_starts]
    max_mult = np.zeros(g_starts.shape[0], dtype=np.int64)
    np.maximum.at(max_mult, np.searchsorted(g_sorted[g_starts], run_group), run_sizes)
    if k is None:
        parts = max_mult
    else:
        parts = np.maximum(-(-g_sizes // k), max_mult)
    rank = np.arange(n) - np.repeat(g_starts, g_sizes)
    offset = np.repeat(np.cumsum(parts) - parts, g_sizes)
    out = np.empty(n, dtype=np.int64)
    out[order] = offset + rank % np.repeat(parts, g_sizes)
    return out


STRATIFIERS = ("by_group", "global", "random_k", "round_robin")


def stratify(
    kind: str,
    *,
    n: int,
    groups: Optional[ArrayLike] = None,
    strength: Optional[ArrayLike] = None,
    k: Optional[int] = None,
    rng: Union[np.random.Generator, int, None] = None,
) -> np.ndarray:
    """Build stratum ids by name, so configs can choose the stratifier (``strata=...``).

    ``by_group``: one stratum per group; ``global``: one stratum; ``random_k``: random partitions of
    size k inside each group (or globally without groups); ``round_robin``: tie-free split of each
    group (auto, or spread-k with ``k``). ``by_group`` and ``global`` fall back to a round-robin
    split of each stratum when ``strength`` is given and has ties, so the ranking is well defined.
    """
    if kind == "by_group":
        if groups is None:
            raise ValueError("strata 'by_group' needs group ids (e.g. the rollout batch of each pair)")
        base = from_groups(groups)
    elif kind == "global":
        base = global_stratum(n)
    elif kind == "random_k":
        if k is None:
            raise ValueError("strata 'random_k' needs k (partition size), e.g. k=8")
        base = random_partitions(n, k, rng, groups)
    elif kind == "round_robin":
        if strength is None:
            raise ValueError("strata 'round_robin' needs strength values")
        return round_robin(strength, groups, k)
    else:
        raise ValueError(f"unknown stratifier '{kind}'; choose one of: {', '.join(STRATIFIERS)}")
    if strength is not None:
        return round_robin(strength, base)
    return base
