"""Reward-model training details: early stopping, the validation split, strata, label smoothing, metrics."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import rlpref.control.reward_net as rn
from rlpref.control.records import Preferences, Segments
from rlpref.control.reward_net import (
    RewardModel,
    RewardTrainConfig,
    _Data,
    _pair_loss,
    _strata_for,
    evaluate_reward_model,
    train_reward_model,
    validation_mask,
)
from rlpref.control.teacher import TeacherConfig, label_pairs
from rlpref.losses import bt_loss


@pytest.fixture
def new_segments(make_segments):
    """This module's synthetic segments: conftest's make_segments at this module's sizes."""
    return functools.partial(make_segments, m=160, length=5, batches=4, act_dim=1, reward="obs0", shift=False)


def test_validation_mask_sizes():
    rng = np.random.default_rng(0)
    assert validation_mask(3, 0.5, rng).sum() == 0  # too few to hold any out
    assert validation_mask(10, 0.15, rng).sum() == 2  # round(1.5)
    assert validation_mask(100, 0.001, rng).sum() == 1  # at least one


def test_all_held_out_is_an_error(new_segments):
    segs = new_segments()
    prefs = label_pairs(segs, 40, TeacherConfig(), 0.99, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no training comparisons"):
        train_reward_model(segs, prefs, "bt", RewardTrainConfig(hidden=(8,)), 0, val_mask=np.ones(len(prefs), bool))


def test_early_stopping_returns_the_best_epoch_not_the_last(new_segments):
    # 30 % label mistakes and a wide net: validation loss turns up long before max_epochs.
    segs = new_segments()
    prefs = label_pairs(segs, 200, TeacherConfig(eps_mistake=0.3), 0.99, np.random.default_rng(1))
    cfg = RewardTrainConfig(hidden=(64, 64), lr=3e-3, max_epochs=300, patience=4, val_fraction=0.3)
    model, res, history = train_reward_model(segs, prefs, "bt", cfg, seed=0)
    vals = [h["val_loss"] for h in history]
    best = int(np.argmin(vals))
    assert len(history) < cfg.max_epochs and len(history) == best + 1 + cfg.patience
    assert res["val_loss"] == pytest.approx(vals[best]) and vals[-1] > vals[best]
    # the returned weights are the best epoch's: recomputing its validation loss gives that number
    val_idx = np.flatnonzero(validation_mask(len(prefs), cfg.val_fraction, np.random.default_rng(0)))
    stratum = np.zeros(len(prefs), np.int64)
    with torch.no_grad():
        again = _pair_loss(model, _Data(model, segs), prefs, val_idx, stratum, "bt", cfg).item()
    assert again == pytest.approx(vals[best], rel=1e-5)


def test_strata_follow_rollout_batches_unless_random_k_or_global(new_segments):
    segs = new_segments(batches=4)
    prefs = label_pairs(segs, 120, TeacherConfig(), 0.99, np.random.default_rng(2))
    idx = np.arange(len(prefs))
    by_batch = _strata_for(prefs, idx, "rr", RewardTrainConfig(), np.random.default_rng(0))
    for s in np.unique(by_batch):
        assert np.unique(prefs.batch[by_batch == s]).size == 1
    rk = _strata_for(prefs, idx, "rr", RewardTrainConfig(strata="random_k", strata_k=8), np.random.default_rng(0))
    sizes = np.bincount(rk)
    assert sizes.max() == 8 and np.sum(sizes == 8) >= len(prefs) // 8 - 1
    assert any(np.unique(prefs.batch[rk == s]).size > 1 for s in np.unique(rk))  # partitions span batches
    glob = _strata_for(prefs, idx, "rr", RewardTrainConfig(strata="global"), np.random.default_rng(0))
    assert np.unique(glob).size == 1


def test_label_smoothing_reaches_the_bt_loss(new_segments):
    segs = new_segments()
    prefs = label_pairs(segs, 40, TeacherConfig(), 0.99, np.random.default_rng(3))
    torch.manual_seed(0)
    model = RewardModel(3, 1, (8,))
    data, idx, stratum = _Data(model, segs), np.arange(len(prefs)), np.zeros(len(prefs), np.int64)
    u = data.utilities(model, torch.arange(len(segs)))[0]
    uc, ur = u[torch.as_tensor(prefs.chosen)], u[torch.as_tensor(prefs.rejected)]
    for eps in (0.0, 0.2):
        got = _pair_loss(model, data, prefs, idx, stratum, "bt", RewardTrainConfig(label_smoothing=eps))
        torch.testing.assert_close(got, bt_loss(uc, ur, label_smoothing=eps))


def test_evaluation_scores_labels_and_true_order_separately(new_segments, monkeypatch):
    m = 6
    segs = new_segments(m=m, batches=1)
    segs = Segments(obs=segs.obs, acts=segs.acts, next_obs=segs.next_obs, rewards=segs.rewards,
                    returns=np.arange(m, dtype=np.float64), batch=segs.batch)
    # Three pairs; the teacher got the second one wrong (chose the lower true return).
    prefs = Preferences(chosen=np.array([2, 1, 5]), rejected=np.array([0, 3, 4]), strength=-np.ones(3),
                        batch=np.zeros(3, np.int64), return_chosen=np.array([2.0, 1.0, 5.0]),
                        return_rejected=np.array([0.0, 3.0, 4.0]))
    monkeypatch.setattr(rn, "segment_utilities", lambda model, segments: np.arange(m, dtype=np.float64) * 2)
    res = evaluate_reward_model(None, segs, prefs)  # utilities follow the true return exactly
    assert res["val_true_accuracy"] == 1.0
    assert res["val_accuracy"] == pytest.approx(2 / 3)  # agrees with 2 of the 3 labels
    assert res["pearson"] == pytest.approx(1.0) and res["spearman"] == pytest.approx(1.0)
    assert res["pdc"] == pytest.approx(1.0)  # utility gaps are twice the true gaps
    assert res["n_val"] == 3


def test_too_few_validation_pairs_leave_correlations_uncomputed(new_segments):
    segs = new_segments()
    prefs = label_pairs(segs, 20, TeacherConfig(), 0.99, np.random.default_rng(0))
    model = RewardModel(3, 1, (8,))
    one = evaluate_reward_model(model, segs, prefs.subset(np.array([0])))
    assert one["pearson"] is None and one["spearman"] is None and one["pdc"] is None and one["n_val"] == 1
    assert one["val_accuracy"] in (0.0, 1.0)
    many = evaluate_reward_model(model, segs, prefs)
    assert all(isinstance(many[k], float) for k in ("pearson", "spearman", "pdc"))
