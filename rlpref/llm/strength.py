"""Preference-strength signals of multi-annotator text comparisons.

Every signal is returned as a *rank key*: lower = stronger preference, the convention of
:mod:`rlpref.losses`. The signals (DESIGN.md §6):

- ``agreement``: |(cA + s·sA) − (cB + s·sB)| / total over all annotations of the comparison
  (c = "clearly", s = "slightly" counts per side, s = 0.5, ties counted in ``total``);
  rank key −agreement.
- ``consensus``: the fraction of all annotations (ties included) that prefer the side of the
  training label; rank key −consensus. Unlike agreement it ignores clearly/slightly.
- ``stated``: the strength the sampled annotator stated: "clearly" → key −1, "slightly" → key −0.5.
- ``time``: the sampled annotator's time spent (seconds); a quicker decision is read as a
  stronger preference, so the key is the time itself. Only comparable within one annotator,
  which is why strata are per annotator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["STRENGTHS", "SLIGHT_WEIGHT", "agreement", "consensus", "strength_keys", "vote_counts"]

#: Weight of a "slightly better" vote relative to "clearly better" in the agreement score.
SLIGHT_WEIGHT = 0.5

STRENGTHS = ("agreement", "consensus", "stated", "time")


def vote_counts(prefs: Sequence[float]) -> tuple[int, int, int, int, int]:
    """Counts (clearly A, slightly A, tie, slightly B, clearly B) of signed preference scores.

    Scores follow :data:`rlpref.llm.multipref.PREF_SCORES`: +1 / +0.5 / 0 / −0.5 / −1 for
    A clearly / A slightly / tie / B slightly / B clearly.
    """
    p = np.asarray(prefs, dtype=np.float64)
    bad = ~np.isin(p, (-1.0, -0.5, 0.0, 0.5, 1.0))
    if bad.any():
        raise ValueError(f"preference scores must be in {{-1, -0.5, 0, 0.5, 1}}, got {p[bad].tolist()}")
    return (
        int(np.sum(p == 1.0)),
        int(np.sum(p == 0.5)),
        int(np.sum(p == 0.0)),
        int(np.sum(p == -0.5)),
        int(np.sum(p == -1.0)),
    )


_SCORES = np.array([1.0, 0.5, 0.0, -0.5, -1.0])


def _vote_count_matrix(all_prefs: Sequence[Sequence[float]]) -> np.ndarray:
    """[N, 5] counts (clearly A, slightly A, tie, slightly B, clearly B) of N comparisons in one pass,
    the vectorised :func:`vote_counts` (a grid computes keys for every run: a per-row loop cost ~1 s)."""
    lengths = np.fromiter((len(p) for p in all_prefs), dtype=np.int64, count=len(all_prefs))
    flat = np.fromiter((x for p in all_prefs for x in p), dtype=np.float64, count=int(lengths.sum()))
    col = np.argmax(flat[:, None] == _SCORES[None, :], axis=1)
    bad = ~np.isin(flat, _SCORES)
    if bad.any():
        raise ValueError(f"preference scores must be in {{-1, -0.5, 0, 0.5, 1}}, got {flat[bad].tolist()}")
    out = np.zeros((len(all_prefs), 5), dtype=np.float64)
    np.add.at(out, (np.repeat(np.arange(len(all_prefs)), lengths), col), 1.0)
    return out


def agreement(prefs: Sequence[float], slight_weight: float = SLIGHT_WEIGHT) -> float:
    """|(cA + s·sA) − (cB + s·sB)| / total, in [0, 1]; 1 = everyone says the same side clearly."""
    c_a, s_a, tie, s_b, c_b = vote_counts(prefs)
    total = c_a + s_a + tie + s_b + c_b
    if total == 0:
        raise ValueError("agreement of a comparison with no annotations is undefined")
    return abs((c_a + slight_weight * s_a) - (c_b + slight_weight * s_b)) / total


def consensus(prefs: Sequence[float], chosen_is_a: bool) -> float:
    """Fraction of all annotations (ties included) that prefer the chosen side."""
    c_a, s_a, tie, s_b, c_b = vote_counts(prefs)
    total = c_a + s_a + tie + s_b + c_b
    if total == 0:
        raise ValueError("consensus of a comparison with no annotations is undefined")
    return ((c_a + s_a) if chosen_is_a else (c_b + s_b)) / total


def strength_keys(
    kind: str,
    all_prefs: Sequence[Sequence[float]],
    label_pref: Sequence[float],
    label_time: Sequence[float],
) -> np.ndarray:
    """Rank keys [N] (lower = stronger) of one signal for N training comparisons.

    ``all_prefs[i]``: every annotation's signed score of comparison i; ``label_pref[i]``: the score
    of the annotation used as the training label (never 0); ``label_time[i]``: its time spent.
    """
    n = len(label_pref)
    if len(all_prefs) != n or len(label_time) != n:
        raise ValueError("all_prefs, label_pref and label_time must have one entry per comparison")
    lp = np.asarray(label_pref, dtype=np.float64)
    if kind in ("agreement", "consensus"):
        counts = _vote_count_matrix(all_prefs)
        c_a, s_a, _, s_b, c_b = counts.T
        total = counts.sum(axis=1)
        if n and total.min() == 0:
            raise ValueError(f"{kind} of a comparison with no annotations is undefined")
        if kind == "agreement":
            return -np.abs((c_a + SLIGHT_WEIGHT * s_a) - (c_b + SLIGHT_WEIGHT * s_b)) / total
        return -np.where(lp > 0, c_a + s_a, c_b + s_b) / total
    if kind == "stated":
        if np.any(lp == 0):
            raise ValueError("a training label cannot be a tie")
        return -np.abs(lp)
    if kind == "time":
        t = np.asarray(label_time, dtype=np.float64)
        if not np.isfinite(t).all() or np.any(t < 0):
            raise ValueError("time spent must be finite and >= 0 for strength 'time'; drop such annotations")
        return t
    raise ValueError(f"unknown strength signal '{kind}'; choose one of: {', '.join(STRENGTHS)}")
