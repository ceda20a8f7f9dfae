"""The reward-model fit's speed-ups (issue 38): in-place activations change no number, and
``reward_model.max_stratum`` (opt-in: +reward_fit=paper) cuts large strata into random parts of bounded size; ``reward_model.precision=bf16`` trains in bfloat16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import rlpref.control.reward_net as rn
from rlpref.control.config import RunSpec
from rlpref.control.reward_net import RewardTrainConfig, split_strata, train_reward_model
from rlpref.control.teacher import TeacherConfig, label_pairs

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture
def feedback(make_segments):
    """Segments from 3 rollout batches and 150 labelled pairs (3 strata of ~50 under strata=by_batch)."""
    segs = make_segments(m=120, length=5, batches=3, act_dim=1, reward="obs0", shift=False)
    return segs, label_pairs(segs, 150, TeacherConfig(), 0.99, np.random.default_rng(0))


def test_split_strata_cuts_only_large_strata_into_even_parts():
    stratum = np.repeat(np.array([7, 3, 9]), [10, 3, 4])  # sizes 10, 3, 4
    out = split_strata(stratum, 4, np.random.default_rng(0))
    parts = {int(p): np.flatnonzero(out == p) for p in np.unique(out)}
    assert len(parts) == 3 + 1 + 1  # 10 -> 4 + 3 + 3; 3 and 4 stay whole
    assert sorted(len(v) for v in parts.values()) == [3, 3, 3, 4, 4]
    for members in parts.values():
        assert np.unique(stratum[members]).size == 1  # a part never mixes strata
    # each epoch draws a new cut
    again = split_strata(stratum, 4, np.random.default_rng(1))
    assert not all(np.array_equal(np.sort(np.flatnonzero(again == again[i])), np.sort(np.flatnonzero(out == out[i])))
                   for i in range(10))


def test_in_place_relu_leaves_the_fit_unchanged(feedback, monkeypatch):
    """The in-place ReLU of _MLP gives the same weights, bit for bit, as the out-of-place one it replaced."""
    segs, prefs = feedback
    cfg = RewardTrainConfig(hidden=(16, 16), max_epochs=4, patience=10)
    new, res_new, hist_new = train_reward_model(segs, prefs, "rr", cfg, seed=3)
    monkeypatch.setattr(rn.nn, "ReLU", lambda inplace=False: torch.nn.modules.activation.ReLU(False))
    old, res_old, hist_old = train_reward_model(segs, prefs, "rr", cfg, seed=3)
    assert not any(m.inplace for m in old.modules() if isinstance(m, torch.nn.modules.activation.ReLU))
    for (name, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items()):
        assert torch.equal(a, b), name
    assert hist_new == hist_old and res_new == res_old


def test_max_stratum_bounds_every_training_stratum(feedback, monkeypatch):
    segs, prefs = feedback
    seen: list[int] = []
    real = rn._pair_loss

    def spy(model, data, prefs_, idx, stratum, loss_name, cfg):
        if torch.is_grad_enabled():  # training steps only; validation keeps whole strata
            seen.extend(np.bincount(np.unique(stratum[idx], return_inverse=True)[1]).tolist())
        return real(model, data, prefs_, idx, stratum, loss_name, cfg)

    monkeypatch.setattr(rn, "_pair_loss", spy)
    cfg = RewardTrainConfig(hidden=(8,), max_epochs=2, patience=10, batch_size=8, max_stratum=16)
    train_reward_model(segs, prefs, "rr", cfg, seed=0)
    assert seen and max(seen) <= 16 and min(seen) >= 10  # ~43 training pairs per stratum -> parts of 14-15
    seen.clear()
    train_reward_model(segs, prefs, "rr", RewardTrainConfig(hidden=(8,), max_epochs=1, batch_size=8), seed=0)
    assert max(seen) > 16  # without it, each rollout batch is one stratum


def _reward_train(*overrides: str) -> RewardTrainConfig:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)
    return RunSpec.from_config(cfg).reward_train


def test_max_stratum_is_opt_in_and_unset_keeps_old_cache_keys():
    assert _reward_train("budget=paper").max_stratum is None  # off: it cost bt validation accuracy
    assert _reward_train("budget=paper", "+reward_fit=paper").max_stratum == 64
    assert _reward_train("budget=paper", "+reward_fit=paper", "reward_model.max_stratum=32").max_stratum == 32
    default = _reward_train()
    assert default.max_stratum is None and "max_stratum" not in default.key("rr")
    assert _reward_train("+reward_model.max_stratum=32").key("rr")["max_stratum"] == 32


def test_evaluation_scores_only_the_segments_it_needs_with_the_same_numbers(feedback, monkeypatch):
    segs, prefs = feedback
    torch.manual_seed(0)
    model = rn.RewardModel(3, 1, (16,))
    val = prefs.subset(np.arange(20))
    u_all = rn.segment_utilities(model, segs)  # every segment, as evaluation did before
    sizes: list[int] = []
    real = rn.segment_utilities
    monkeypatch.setattr(rn, "segment_utilities", lambda m, s: sizes.append(len(s)) or real(m, s))
    got = rn.evaluate_reward_model(model, segs, val)
    used = np.unique(np.concatenate([val.chosen, val.rejected]))
    assert sizes == [used.size] and used.size < len(segs)
    uc, ur = u_all[val.chosen], u_all[val.rejected]
    assert got["val_accuracy"] == rn.metrics.choice_accuracy(uc, ur)
    assert got["spearman"] == pytest.approx(rn.metrics.spearman(u_all[used], segs.returns[used]), abs=1e-9)
    assert got["pearson"] == pytest.approx(rn.metrics.pearson(u_all[used], segs.returns[used]), abs=1e-9)


def test_max_stratum_must_be_positive():
    with pytest.raises(ValueError, match="max_stratum"):
        RewardTrainConfig(max_stratum=0)


@pytest.mark.skipif(not rn.bf16_native(), reason="this CPU has no native bfloat16 (AVX512-BF16 / AMX)")
def test_bf16_trains_in_bfloat16_and_learns_as_well_as_fp32(feedback, monkeypatch):
    segs, prefs = feedback
    dtypes: list[torch.dtype] = []
    real = rn._MLP.forward
    monkeypatch.setattr(rn._MLP, "forward", lambda self, x: dtypes.append(real(self, x).dtype) or real(self, x))
    fits = {p: train_reward_model(segs, prefs, "rr", RewardTrainConfig(hidden=(32, 32), max_epochs=30,
                                                                        precision=p), seed=1)
            for p in ("fp32", "bf16")}
    assert torch.bfloat16 in dtypes and torch.float32 in dtypes  # bf16 steps; fp32 fit and evaluation
    model, res, _ = fits["bf16"]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert res["val_accuracy"] >= 0.85 and res["spearman"] > 0.9  # it learned the obs0 reward
    assert abs(res["val_accuracy"] - fits["fp32"][1]["val_accuracy"]) <= 0.05
    assert res["val_loss"] == pytest.approx(fits["fp32"][1]["val_loss"], rel=0.02)  # same path, bf16 rounding


def test_bf16_is_refused_where_the_cpu_would_emulate_it_and_keys_only_when_set(monkeypatch):
    assert "precision" not in _reward_train().key("rr")  # fp32 default: cache keys as before the option
    if rn.bf16_native():
        assert _reward_train("budget=paper", "+reward_fit=bf16").precision == "bf16"
    else:
        with pytest.raises(ValueError, match="reward_model.precision=fp32"):
            _reward_train("budget=paper", "+reward_fit=bf16")
    monkeypatch.setattr(rn, "bf16_native", lambda: True)
    assert RewardTrainConfig(precision="bf16").key("rr")["precision"] == "bf16"
    monkeypatch.setattr(rn, "bf16_native", lambda: False)
    with pytest.raises(ValueError, match="reward_model.precision=fp32"):
        RewardTrainConfig(precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        RewardTrainConfig(precision="fp16")
