"""Stage 3: a synthetic teacher labels pairs of segments from their returns.

Choice = the larger *noisy* return; strength = −|ΔR| (a rank key, lower = stronger), from the
clean or the noisy returns. Two noise models (DESIGN.md §8):

- ``range`` (the paper's offline runs): D = max R − min R over the feedback set; each comparison draws
  R̃ ~ N(R, (σ·D/4)²) truncated to ±2 sd and clipped to [min R, max R].
- ``relative`` (the reference's online oracle): R̃ = R + N(0, (σ·|R|)²).

B-Pref's irrational teachers are options on top: Boltzmann rationality β, myopic discount, mistake
probability ε, skip and equal thresholds (pairs the teacher would skip or call equal are dropped).

``pairing`` says which segments meet. ``random`` (default) draws both segments from the whole feedback
set, as the reference pipeline does: labels then compare random play with gaits and slow gaits with
fast ones, which anchors the reward's level across rollout batches. Each random pair is still filed
under one rollout batch (n_feedback split evenly), so by-batch strata become random strata of that
size. ``within_batch`` keeps both segments in one rollout batch: every stratum is local, but no label
relates one batch's level to another's (DESIGN.md §2's reading; the two are compared in the README).

``scale`` says which returns set the teacher's yardstick (D, the clip bounds, the near-tie gap and the
skip/equal thresholds): ``all`` segments, or only those in ``scope`` (the requested rollout batches;
across-batch pairs still use all, since their second segment lies outside the scope). ``scope`` is
a teacher who judges a batch of similar clips against each other rather than against the best and
worst behaviour ever shown: the online loop's default for its new batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from rlpref.control.records import Preferences, Segments
from rlpref.schema import Section, build, rule

__all__ = ["NOISE_MODELS", "PAIRINGS", "SCALES", "STRENGTH_SOURCES", "TeacherConfig", "label_pairs", "sample_pairs"]

NOISE_MODELS = ("range", "relative")
PAIRINGS = ("within_batch", "across_batches", "random")
STRENGTH_SOURCES = ("clean", "noisy")
SCALES = ("all", "scope")


@dataclass(frozen=True)
class TeacherConfig(Section):
    SECTION = "teacher"

    sigma: float = rule(0.0, ge=0.0)
    noise: str = rule("range", choices=NOISE_MODELS)
    strength: str = rule("clean", choices=STRENGTH_SOURCES)
    pairing: str = rule("random", choices=PAIRINGS)  # the reference pipeline draws pairs over the whole feedback set
    near_tie: float = rule(0.1, ge=0.0)  # pairs with |ΔR| <= near_tie·std(R) are not generated (0 disables)
    beta: Optional[float] = rule(None, gt=0.0)  # Boltzmann rationality; None = perfectly rational
    myopic_gamma: Optional[float] = rule(None, gt=0.0, le=1.0)  # weight γ^(L-1-t): recent steps count more; None = off
    eps_mistake: float = rule(0.0, ge=0.0, le=0.5)
    skip_threshold: float = rule(0.0, ge=0.0)  # skip pairs whose better return is below min R + skip·D
    equal_threshold: float = rule(0.0, ge=0.0)  # drop pairs with |ΔR| < equal·D (the teacher calls them equal)
    scale: str = rule("all", choices=SCALES)  # all: D and tie gap from every segment; scope: from the requested batches

    @classmethod
    def from_mapping(cls, cfg: Optional[Mapping[str, Any]]) -> "TeacherConfig":
        """Typed and checked (:func:`rlpref.schema.build`); a Hydra group's ``name`` is allowed and dropped."""
        return build(cls, cfg, ignore=("name",))


def _split_evenly(total: int, parts: int) -> np.ndarray:
    base = np.full(parts, total // parts)
    base[: total % parts] += 1
    return base


def _candidate_pairs(pool_a: np.ndarray, pool_b: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random index pairs [n, 2] with a from pool_a, b from pool_b, a != b."""
    a = pool_a[rng.integers(0, pool_a.size, size=n)]
    b = pool_b[rng.integers(0, pool_b.size, size=n)]
    keep = a != b
    return np.stack([a[keep], b[keep]], axis=1)


def _yardstick(segments: Segments, cfg: TeacherConfig, batches: Optional[Sequence[int]]) -> np.ndarray:
    """Indices of the segments whose returns set D, the clip bounds and the tie gap (see ``scale``)."""
    if cfg.scale == "all" or batches is None or cfg.pairing == "across_batches":
        return np.arange(len(segments))
    return np.flatnonzero(np.isin(segments.batch, np.asarray(batches, dtype=np.int64)))


def sample_pairs(
    segments: Segments,
    n_feedback: int,
    cfg: TeacherConfig,
    rng: np.random.Generator,
    batches: Optional[Sequence[int]] = None,
    strict: bool = True,
    exclude: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n_feedback distinct pairs spread evenly over rollout batches; returns (pairs [P, 2], batch [P]).

    ``batches`` restricts the pairs to those rollout batches (the online loop labels only its new
    batch); the tie gap and thresholds use the returns of all segments, or of the requested batches
    only under ``cfg.scale="scope"``. ``strict=False`` returns fewer pairs where a batch has too few distinct
    non-tied ones (a converged agent's batch can be nearly uniform) instead of raising. ``exclude``
    (pairs [P, 2]): pairs already asked, never drawn again (in either order).
    """
    if n_feedback < 2:
        raise ValueError(f"n_feedback must be >= 2, got {n_feedback}")
    batches, in_scope = _requested(segments, batches)
    yard = segments.returns[_yardstick(segments, cfg, batches)]
    gate = _PairGate(segments.returns, cfg, float(yard.min()), float(yard.max() - yard.min()), cfg.near_tie * float(yard.std()))
    out_pairs, out_batch = [], []
    # pairs of earlier batches (and excluded ones) as lo*M + hi: across/random pools overlap
    taken = np.zeros(0, dtype=np.int64) if exclude is None else _codes(np.asarray(exclude), len(segments))
    for b, need in zip(batches, _split_evenly(n_feedback, batches.size)):
        pool_a, pool_b = _pools(segments, cfg.pairing, b, in_scope)
        chosen = _draw_distinct(pool_a, pool_b, int(need), gate, taken, len(segments), rng)
        if len(chosen) < need and strict:
            raise ValueError(
                f"rollout batch {b}: only {len(chosen)} of {need} distinct non-tied pairs exist; lower "
                "n_feedback, raise segments.oversample, or relax teacher.near_tie / skip / equal thresholds"
            )
        taken = np.concatenate([taken, _codes(chosen, len(segments))])
        out_pairs.append(chosen)
        out_batch.append(np.full(len(chosen), b, dtype=np.int64))
    return np.concatenate(out_pairs), np.concatenate(out_batch)


def _codes(pairs: np.ndarray, m: int) -> np.ndarray:
    """One integer per unordered pair [P, 2] of segment indices < m."""
    canon = np.sort(pairs.reshape(-1, 2), axis=1).astype(np.int64)
    return canon[:, 0] * m + canon[:, 1]


def _selected_pairs(segments: Segments, n_feedback: int, cfg: TeacherConfig, rng: np.random.Generator,
                    batches: Optional[Sequence[int]], strict: bool, select, pool: int,
                    exclude: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``pool`` × as many candidates as asked, per rollout batch; ``select(cand, n)`` keeps n of each
    batch's, so every stratum keeps its share of the comparisons."""
    cand, cand_batch = sample_pairs(segments, n_feedback * pool, cfg, rng, batches, strict=False, exclude=exclude)
    requested = _requested(segments, batches)[0]
    keep = [np.zeros(0, dtype=np.int64)]
    for b, need in zip(requested, _split_evenly(n_feedback, requested.size)):
        idx = np.flatnonzero(cand_batch == b)
        if idx.size < need and strict:
            raise ValueError(f"rollout batch {b}: only {idx.size} candidate pairs for {need} queries; lower "
                             "query.pool or n_feedback, or relax teacher.near_tie")
        if idx.size:
            keep.append(idx[select(cand[idx], int(min(need, idx.size)))])
    keep = np.concatenate(keep)
    return cand[keep], cand_batch[keep]


def _requested(segments: Segments, batches: Optional[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(the rollout batches to label, the indices of their segments); every batch by default."""
    present = np.unique(segments.batch)
    if batches is None:
        return present, np.arange(len(segments))
    batches = np.unique(np.asarray(batches, dtype=np.int64))
    missing = np.setdiff1d(batches, present)
    if missing.size:
        raise ValueError(f"rollout batches {missing.tolist()} have no segments; present: {present.tolist()}")
    return batches, np.flatnonzero(np.isin(segments.batch, batches))


def _pools(segments: Segments, pairing: str, b: int, in_scope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where batch ``b``'s pairs draw their two segments from, by ``pairing``."""
    own = np.flatnonzero(segments.batch == b)
    if pairing == "within_batch":
        pool_a, pool_b = own, own
    elif pairing == "across_batches":
        pool_a, pool_b = own, np.flatnonzero(segments.batch != b)
    else:  # random pairing, among the requested batches only
        pool_a, pool_b = in_scope, in_scope
    if pool_a.size < 1 or pool_b.size < 1 or (pool_a.size < 2 and pairing == "within_batch"):
        raise ValueError(f"rollout batch {b} has too few segments to form pairs")
    return pool_a, pool_b


@dataclass(frozen=True)
class _PairGate:
    """Which candidate pairs the teacher answers: not near-tied, and past the B-Pref skip/equal thresholds."""

    returns: np.ndarray
    cfg: TeacherConfig
    r_min: float
    d_range: float
    tie_gap: float

    def keep(self, cand: np.ndarray) -> np.ndarray:
        r0, r1 = self.returns[cand[:, 0]], self.returns[cand[:, 1]]
        gap = np.abs(r0 - r1)
        keep = gap > self.tie_gap
        if self.cfg.skip_threshold > 0:
            keep &= np.maximum(r0, r1) >= self.r_min + self.cfg.skip_threshold * self.d_range
        if self.cfg.equal_threshold > 0:
            keep &= gap >= self.cfg.equal_threshold * self.d_range
        return keep


def _draw_distinct(pool_a: np.ndarray, pool_b: np.ndarray, need: int, gate: _PairGate, taken: np.ndarray, m: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Up to ``need`` distinct pairs [n, 2] the gate keeps and no earlier batch took, in draw order
    (at most 20 rounds of oversampled candidates)."""
    chosen: np.ndarray = np.zeros((0, 2), dtype=np.int64)
    for _ in range(20):
        cand = _candidate_pairs(pool_a, pool_b, 4 * need + 16, rng)
        cand = np.concatenate([chosen, cand[gate.keep(cand)]])
        code = _codes(cand, m)
        _, first = np.unique(code, return_index=True)
        first = np.sort(first)
        first = first[~np.isin(code[first], taken)]
        chosen = cand[first][:need]
        if len(chosen) >= need:
            break
    return chosen


def _noisy_returns(r: np.ndarray, cfg: TeacherConfig, d_range: float, lo: float, hi: float, rng) -> np.ndarray:
    if cfg.sigma == 0:
        return r.copy()
    if cfg.noise == "relative":
        return r + rng.normal(size=r.shape) * cfg.sigma * np.abs(r)
    sd = cfg.sigma * d_range / 4.0
    z = rng.normal(size=r.shape)
    bad = np.abs(z) > 2.0
    while bad.any():  # truncated normal by rejection: redraw the few beyond ±2 sd
        z[bad] = rng.normal(size=int(bad.sum()))
        bad = np.abs(z) > 2.0
    return np.clip(r + z * sd, lo, hi)


def teacher_returns(segments: Segments, cfg: TeacherConfig, gamma: float) -> np.ndarray:
    """The returns the teacher judges by: the segment's return, or a myopic re-weighting of its rewards."""
    if cfg.myopic_gamma is None:
        return segments.returns
    length = segments.length
    weights = cfg.myopic_gamma ** np.arange(length - 1, -1, -1, dtype=np.float64)
    return segments.rewards.astype(np.float64) @ weights


def label_pairs(
    segments: Segments,
    n_feedback: int,
    cfg: TeacherConfig,
    gamma: float,
    rng: np.random.Generator,
    batches: Optional[Sequence[int]] = None,
    strict: bool = True,
    select=None,
    pool: int = 1,
    exclude: Optional[np.ndarray] = None,
) -> Preferences:
    """Sample pairs and label them: choice, strength rank key, and the clean returns for oracle metrics.

    ``batches``: only pair segments of these rollout batches (default: all); the range noise model's
    D spans every segment, or only these batches under ``cfg.scale="scope"``. ``select(cand, n)``
    (:mod:`rlpref.control.query`): draw ``pool`` × as many candidates and ask about the n it picks in
    each batch. ``exclude`` (pairs [P, 2]): pairs asked before, not drawn again.
    """
    if select is None:
        pairs, batch = sample_pairs(segments, n_feedback, cfg, rng, batches, strict, exclude=exclude)
    else:
        pairs, batch = _selected_pairs(segments, n_feedback, cfg, rng, batches, strict, select, pool, exclude)
    r_true = segments.returns
    r_judge = teacher_returns(segments, cfg, gamma)
    yard = r_judge[_yardstick(segments, cfg, batches)]
    lo, hi = float(yard.min()), float(yard.max())
    noisy = _noisy_returns(r_judge[pairs], cfg, hi - lo, lo, hi, rng)  # [P, 2], independent per pair
    diff = noisy[:, 0] - noisy[:, 1]
    if cfg.beta is None:
        first_wins = np.where(diff == 0, rng.random(diff.shape) < 0.5, diff > 0)
    else:
        first_wins = rng.random(diff.shape) < 1.0 / (1.0 + np.exp(-cfg.beta * diff))
    if cfg.eps_mistake > 0:
        first_wins ^= rng.random(diff.shape) < cfg.eps_mistake
    chosen = np.where(first_wins, pairs[:, 0], pairs[:, 1])
    rejected = np.where(first_wins, pairs[:, 1], pairs[:, 0])
    if cfg.strength == "clean":
        strength = -np.abs(r_true[pairs[:, 0]] - r_true[pairs[:, 1]])
    else:
        strength = -np.abs(diff)
    return Preferences(
        chosen=chosen.astype(np.int64),
        rejected=rejected.astype(np.int64),
        strength=strength.astype(np.float64),
        batch=batch,
        return_chosen=r_true[chosen].astype(np.float64),
        return_rejected=r_true[rejected].astype(np.float64),
    )
