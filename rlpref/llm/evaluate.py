"""Test metrics of a text reward model."""

from __future__ import annotations

import numpy as np

from rlpref import metrics
from rlpref.llm.splits import TestSet

__all__ = ["evaluate_rewards"]


def evaluate_rewards(r_a: np.ndarray, r_b: np.ndarray, test: TestSet) -> dict:
    """Accuracy of the rewards of completions A and B of the test comparisons.

    ``accuracy``: r_chosen > r_rejected with chosen = the aggregated human (or simulated) preference.
    With hidden utilities (simulated data) also ``accuracy_true`` (order of the hidden utility),
    ``pdc`` and ``spearman`` of reward vs hidden utility.
    """
    r_a, r_b = np.asarray(r_a, dtype=np.float64), np.asarray(r_b, dtype=np.float64)
    if r_a.shape != (test.index.shape[0],) or r_b.shape != r_a.shape:
        raise ValueError(f"need one reward per test comparison ({test.index.shape[0]}), got {r_a.shape}, {r_b.shape}")
    r_chosen = np.where(test.a_wins, r_a, r_b)
    r_rejected = np.where(test.a_wins, r_b, r_a)
    out = {"accuracy": metrics.choice_accuracy(r_chosen, r_rejected), "n_test": int(r_a.shape[0])}
    if test.utility_a is not None:
        out["accuracy_true"] = metrics.order_accuracy(test.utility_a, test.utility_b, r_a, r_b)
        out["pdc"] = metrics.pdc(test.utility_a - test.utility_b, r_a - r_b)
        out["spearman"] = metrics.spearman(np.r_[test.utility_a, test.utility_b], np.r_[r_a, r_b])
    return out
