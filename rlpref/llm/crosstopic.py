"""Cross-topic evaluation of UKPConvArg1, as published: whole debates are held out.

A fold holds out every pair of some debates, both stances together (an argument for one stance is
never compared with the other stance, but the two stances share a topic's vocabulary, so keeping one
of them in training would leak the topic). Debates go to folds by a hash of their title, so the folds
do not depend on file order, seeds or the training fraction.

Metrics of one fold (all on held-out debates only):

- ``accuracy``: pair accuracy against the majority vote (majority ties carry no label), from
  :func:`rlpref.llm.evaluate.evaluate_rewards`; with gold scores also its ``pdc``.
- ``accuracy_strict``: pair accuracy against the Strict subset's gold label, on the held-out pairs
  of that subset: the published comparison (0.76–0.78 cross-topic).
- ``spearman``: Spearman ρ between the reward of each argument and its gold convincingness score,
  per held-out topic (debate + stance), averaged over those topics: the published ranking measure
  (0.35–0.40). It replaces the pooled Spearman of :func:`evaluate_rewards`, which would mix topics
  and count an argument once per pair it appears in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rlpref import metrics
from rlpref.llm.multipref import Comparison
from rlpref.llm.splits import TestSet, make_test_set, unit_hash

__all__ = ["CrossTopicEval", "Fold", "debate_folds", "make_fold"]

#: comparison indices -> (rewards of argument 1, rewards of argument 2)
RewardsOf = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def debate_folds(debates: Sequence[str], k: int, salt: str = "rlpref-ukp") -> dict[str, int]:
    """Debate -> fold in 0..k-1: debates ordered by a hash of their title, dealt round-robin (k = number
    of debates is leave-one-debate-out)."""
    uniq = sorted(set(debates), key=lambda d: (unit_hash(f"{salt}:{d}"), d))
    if not 2 <= k <= len(uniq):
        raise ValueError(f"folds={k}: need 2 <= folds <= number of debates ({len(uniq)})")
    return {d: i % k for i, d in enumerate(uniq)}


@dataclass
class CrossTopicEval:
    """What the held-out side needs beyond the majority-vote test set."""

    topic: np.ndarray  # per held-out comparison (aligned with ``index``): its topic
    index: np.ndarray  # held-out comparison indices
    strict_index: np.ndarray  # held-out comparisons of the Strict subset
    strict_a_wins: np.ndarray  # their Strict gold label is a1
    arg_ids: list  # per held-out comparison: (argument 1 id, argument 2 id)
    gold: dict  # argument id -> gold score (empty without the Ranking folder)

    def __call__(self, rewards_of: RewardsOf) -> dict:
        """The fold's Strict accuracy and per-topic Spearman from a model's rewards."""
        out: dict = {}
        if self.strict_index.size:
            r1, r2 = rewards_of(self.strict_index)
            chosen, rejected = np.where(self.strict_a_wins, r1, r2), np.where(self.strict_a_wins, r2, r1)
            out["accuracy_strict"] = metrics.choice_accuracy(chosen, rejected)
            out["n_test_strict"] = int(self.strict_index.size)
        if self.gold:
            out.update(self._spearman(*rewards_of(self.index)))
        return out

    def _spearman(self, r1: np.ndarray, r2: np.ndarray) -> dict:
        """Mean over held-out topics of Spearman(reward, gold score) over the topic's distinct arguments."""
        per_topic: dict[str, dict[str, float]] = {}
        for t, (a1, a2), x1, x2 in zip(self.topic, self.arg_ids, r1, r2):
            per_topic.setdefault(t, {}).update({a1: float(x1), a2: float(x2)})
        rhos = []
        for args in per_topic.values():
            ids = [a for a in args if a in self.gold]
            if len(ids) >= 3:
                rhos.append(metrics.spearman([args[a] for a in ids], [self.gold[a] for a in ids]))
        return {"spearman": float(np.nanmean(rhos)) if rhos else float("nan"), "spearman_topics": len(rhos)}


@dataclass
class Fold:
    """One cross-topic split: training indices, the majority-vote test set and the extra evaluation."""

    fold: int
    heldout_debates: list
    train_index: list
    test: TestSet
    extra: CrossTopicEval


def make_fold(comps: Sequence[Comparison], debate: Sequence[str], arg_ids: Sequence[tuple[str, str]],
              fold: int, k: int, strict: dict | None = None, gold: dict | None = None) -> Fold:
    """Split ``comps`` (with their debate and argument ids) into fold ``fold`` of ``k`` over debates."""
    assign = debate_folds(debate, k)
    if not 0 <= fold < k:
        raise ValueError(f"fold={fold}: must be in 0..{k - 1}")
    held = sorted(d for d, f in assign.items() if f == fold)
    test_idx = np.array([i for i, d in enumerate(debate) if assign[d] == fold], dtype=np.int64)
    train_idx = [i for i, d in enumerate(debate) if assign[d] != fold]
    strict = strict or {}
    s_idx = np.array([i for i in test_idx if comps[i].comparison_id in strict], dtype=np.int64)
    extra = CrossTopicEval(
        topic=np.array([comps[i].prompt_id for i in test_idx]), index=test_idx, strict_index=s_idx,
        strict_a_wins=np.array([strict[comps[i].comparison_id] == "a1" for i in s_idx], dtype=bool),
        arg_ids=[arg_ids[i] for i in test_idx], gold=dict(gold or {}))
    return Fold(fold, held, train_idx, make_test_set(comps, test_idx), extra)
