"""Feedback rounds during agent training: batch-restricted labelling, fine-tuning with a fixed split, the rounds
(protocol=offline_rounds) and protocol=online end to end."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import rlpref.control.pipeline as run_mod
from rlpref.control.config import IterationConfig, OfflineRoundsConfig, OnlineConfig, due_steps, query_schedule
from rlpref.control.feedback import FeedbackState, label_new_batch
from rlpref.control.query import QueryConfig
from rlpref.control.policies import graded_noise_policy
from rlpref.control.records import Preferences, Segments
from rlpref.control.reward_net import (
    RewardModel,
    RewardTrainConfig,
    load_reward_model,
    segment_utilities,
    train_reward_model,
    validation_mask,
)
from rlpref.control.segments import discounted_returns
from rlpref.control.teacher import TeacherConfig, label_pairs
from rlpref.schema import build

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture
def new_segments(make_segments):
    """This module's synthetic segments: conftest's make_segments at this module's sizes."""
    return functools.partial(make_segments, m=240, length=6, batches=3, act_dim=2, reward="obs0", shift=True)


def test_labelling_one_batch_pairs_only_inside_it(new_segments):
    segs = new_segments()
    prefs = label_pairs(segs, 50, TeacherConfig(), 0.99, np.random.default_rng(0), batches=[2])
    assert len(prefs) == 50
    assert np.all(prefs.batch == 2)
    assert np.all(segs.batch[prefs.chosen] == 2) and np.all(segs.batch[prefs.rejected] == 2)
    with pytest.raises(ValueError, match=r"rollout batches \[7\] have no segments"):
        label_pairs(segs, 10, TeacherConfig(), 0.99, np.random.default_rng(0), batches=[7])


def test_non_strict_labelling_returns_what_exists_instead_of_raising(new_segments):
    segs = new_segments(m=12, batches=3)  # 4 segments per batch: at most 6 distinct pairs
    with pytest.raises(ValueError, match="distinct non-tied pairs"):
        label_pairs(segs, 30, TeacherConfig(near_tie=0.0), 0.99, np.random.default_rng(0), batches=[1])
    prefs = label_pairs(segs, 30, TeacherConfig(near_tie=0.0), 0.99, np.random.default_rng(0), batches=[1], strict=False)
    assert len(prefs) == 6 and np.all(prefs.batch == 1)


def _label_round(segs: Segments, pairing: str, n: int, rng, scale: str = "all", sigma: float = 0.0) -> Preferences:
    """A round's labels of the newest batch (2), after 30 offline pairs of batches 0 and 1."""
    prefs = label_pairs(segs, 30, TeacherConfig(), 0.99, np.random.default_rng(0), batches=[0, 1])
    label = label_new_batch(TeacherConfig(sigma=sigma), QueryConfig(), IterationConfig(pairing=pairing, scale=scale),
                            0.99)
    return label(FeedbackState(segs, prefs), n, rng, [])


@pytest.mark.parametrize("uniform", [False, True])
def test_online_pairing_within_across_mixed(new_segments, uniform):
    """A uniform agent's batch (every new segment the same return) yields no within-round pairs, since
    all are near-ties, but across pairs still tell the new behaviour apart from earlier segments."""
    segs = new_segments()
    if uniform:
        segs.obs[segs.batch == 2] = 0.5
        segs.rewards[segs.batch == 2] = 0.5
        segs.returns[segs.batch == 2] = discounted_returns(segs.rewards[segs.batch == 2], 0.99)
    new = segs.batch == 2
    counts = {}
    for pairing in ("within", "across", "mixed"):
        prefs = _label_round(segs, pairing, 40, np.random.default_rng(3))
        assert np.all(prefs.batch == 2)  # every pair sits in the round's stratum
        n_new = new[prefs.chosen].astype(int) + new[prefs.rejected]
        assert np.all(n_new >= 1)  # every pair involves the new behaviour
        counts[pairing] = (int(np.sum(n_new == 2)), int(np.sum(n_new == 1)))
        assert np.all(prefs.strength == -np.abs(prefs.return_chosen - prefs.return_rejected))
    assert counts["across"] == (0, 40)
    assert counts["within"] == ((0, 0) if uniform else (40, 0))
    assert counts["mixed"] == ((0, 20) if uniform else (20, 20))
    with pytest.raises(ValueError, match="protocol.iteration.pairing='both': must be one of: within, across, mixed"):
        IterationConfig(pairing="both")


def test_round_scale_judges_a_narrow_batch_on_its_own_spread(new_segments):
    """A stumbling agent's round spans a sliver of the feedback's return range. Range noise sized by the
    whole range (scale=all) turns its pairs into near coin flips; sized by the round's own spread
    (scale=round) the teacher still tells its clips apart."""
    segs = new_segments()
    new = segs.batch == 2
    segs.rewards[new] = 0.5 + 0.05 * np.random.default_rng(9).normal(size=segs.rewards[new].shape)
    segs.returns[new] = discounted_returns(segs.rewards[new], 0.99)
    assert np.ptp(segs.returns[new]) < 0.05 * np.ptp(segs.returns)
    acc = {}
    for scale in ("all", "round"):
        prefs = _label_round(segs, "within", 60, np.random.default_rng(1), scale=scale, sigma=0.25)
        assert len(prefs) == 60 and np.all(new[prefs.chosen] & new[prefs.rejected])
        acc[scale] = prefs.label_accuracy()
        clean = _label_round(segs, "within", 60, np.random.default_rng(1), scale=scale)
        assert clean.label_accuracy() == 1.0  # the yardstick changes the noise, never a noise-free label
    assert acc["all"] < 0.75 and acc["round"] > 0.85, acc
    with pytest.raises(ValueError, match="protocol.iteration.scale='local': must be one of: all, round"):
        IterationConfig(scale="local")


def test_scope_scale_changes_nothing_without_a_batch_restriction_or_across_batches(new_segments):
    """Offline labelling (no batch restriction) and across-batch pairs always use every segment's scale."""
    segs = new_segments()
    for kw in ({"batches": None}, {"batches": [1]}):
        for pairing in (("within_batch", "across_batches", "random") if kw["batches"] is None else ("across_batches",)):
            a, b = (label_pairs(segs, 50, TeacherConfig(sigma=0.5, pairing=pairing, scale=scale), 0.99,
                                np.random.default_rng(4), **kw) for scale in ("all", "scope"))
            np.testing.assert_array_equal(a.chosen, b.chosen)
            np.testing.assert_array_equal(a.rejected, b.rejected)
    within = [label_pairs(segs, 50, TeacherConfig(sigma=0.5, scale=scale), 0.99, np.random.default_rng(4), batches=[1])
              for scale in ("all", "scope")]
    assert not np.array_equal(within[0].chosen, within[1].chosen)  # ... while a restricted batch does differ


def test_explicit_validation_mask_reproduces_the_default_split_and_is_obeyed(new_segments):
    """The online loop rebuilds the offline split from the seed: it must be the very split training used."""
    segs = new_segments()
    prefs = label_pairs(segs, 120, TeacherConfig(), 0.99, np.random.default_rng(1))
    cfg = RewardTrainConfig(hidden=(16,), max_epochs=3)
    m_default, res_default, _ = train_reward_model(segs, prefs, "bt", cfg, seed=5)
    mask = validation_mask(len(prefs), cfg.val_fraction, np.random.default_rng(5))
    assert mask.sum() == round(0.15 * 120)
    m_mask, res_mask, _ = train_reward_model(segs, prefs, "bt", cfg, seed=5, val_mask=mask)
    for a, b in zip(m_default.state_dict().values(), m_mask.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert res_default == res_mask
    other = np.zeros(len(prefs), dtype=bool)
    other[:40] = True
    _, res_other, _ = train_reward_model(segs, prefs, "bt", cfg, seed=5, val_mask=other)
    assert res_other["n_val"] == 40 and res_other["n_train"] == 80
    with pytest.raises(ValueError, match="val_mask must be a bool array"):
        train_reward_model(segs, prefs, "bt", cfg, seed=5, val_mask=mask.astype(int))


def test_fine_tuning_starts_from_init_and_leaves_it_untouched(new_segments):
    segs = new_segments()
    prefs = label_pairs(segs, 120, TeacherConfig(), 0.99, np.random.default_rng(1))
    cfg = RewardTrainConfig(hidden=(16,), max_epochs=30, lr=1e-2)
    base, res_base, _ = train_reward_model(segs, prefs, "rr", cfg, seed=0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    more = Preferences.concat([prefs, label_pairs(segs, 60, TeacherConfig(), 0.99, np.random.default_rng(2), batches=[0])])
    tuned, res_tuned, hist = train_reward_model(segs, more, "rr", cfg, seed=1, init=base)
    for k, v in base.state_dict().items():  # the model the agent uses is never trained in place
        torch.testing.assert_close(v, before[k])
    # Input normalisation is inherited, not refitted, so the reward shifts only by training.
    torch.testing.assert_close(tuned.in_mean, base.in_mean)
    torch.testing.assert_close(tuned.in_std, base.in_std)
    assert res_tuned["val_accuracy"] > 0.8 and len(hist) >= 1
    # With a negligible learning rate fine-tuning returns the starting model (to float tolerance).
    frozen, _, _ = train_reward_model(segs, more, "rr", RewardTrainConfig(hidden=(16,), max_epochs=3, lr=1e-12),
                                      seed=1, init=base)
    for k, v in base.state_dict().items():
        torch.testing.assert_close(frozen.state_dict()[k], v)


def test_refit_trained_always_moves_the_model_and_balances_validation_by_batch(new_segments):
    segs = new_segments()
    prefs = label_pairs(segs, 120, TeacherConfig(), 0.99, np.random.default_rng(1))
    base, _, _ = train_reward_model(segs, prefs, "bt", RewardTrainConfig(hidden=(16,), max_epochs=30, lr=1e-2), seed=0)
    more = Preferences.concat([prefs, label_pairs(segs, 12, TeacherConfig(), 0.99, np.random.default_rng(2), batches=[0])])
    # A step this large only makes things worse: the gate keeps the start model, refit=trained does not.
    wild = RewardTrainConfig(hidden=(16,), max_epochs=2, patience=1, lr=5.0)
    gated, _, _ = train_reward_model(segs, more, "bt", wild, seed=1, init=base)
    moved, _, hist = train_reward_model(segs, more, "bt", wild, seed=1, init=base, keep_init=False, balance_val=True)
    for k, v in base.state_dict().items():
        torch.testing.assert_close(gated.state_dict()[k], v)
    assert any(not torch.equal(moved.state_dict()[k], v) for k, v in base.state_dict().items())
    # One epoch, no gate: the returned model is that epoch's, and its recorded validation loss is the mean of
    # the per-batch mean BT losses, not the mean over pairs (batch 0 holds 12 + its share of the offline pairs).
    mask = validation_mask(len(more), 0.15, np.random.default_rng(7))
    one = RewardTrainConfig(hidden=(16,), max_epochs=1, lr=1e-3)
    model, _, hist = train_reward_model(segs, more, "bt", one, seed=1, init=base, val_mask=mask, keep_init=False,
                                        balance_val=True)
    u = segment_utilities(model, segs)
    nll = -torch.nn.functional.logsigmoid(torch.as_tensor(u[more.chosen] - u[more.rejected])).numpy()
    per_batch = [nll[mask & (more.batch == b)].mean() for b in np.unique(more.batch[mask])]
    assert len(per_batch) >= 2 and not np.isclose(np.mean(per_batch), nll[mask].mean(), rtol=1e-3)
    np.testing.assert_allclose(hist[0]["val_loss"], np.mean(per_batch), rtol=1e-4)


def test_refit_replay_trains_each_epoch_on_the_new_pairs_and_a_fresh_sample_of_older_ones(new_segments, monkeypatch):
    import rlpref.control.reward_net as rn

    segs = new_segments()
    prefs = label_pairs(segs, 120, TeacherConfig(), 0.99, np.random.default_rng(1))
    new = label_pairs(segs, 20, TeacherConfig(), 0.99, np.random.default_rng(2), batches=[0])
    more = Preferences.concat([prefs, new])
    focus = np.arange(len(more)) >= len(prefs)
    mask = validation_mask(len(more), 0.15, np.random.default_rng(7))
    seen = []  # the comparisons each epoch trained on
    original = rn.stratum_batches
    monkeypatch.setattr(rn, "stratum_batches", lambda stratum, *a: seen.append(len(stratum)) or original(stratum, *a))
    cfg = RewardTrainConfig(hidden=(16,), max_epochs=3, patience=10, lr=1e-2)
    model, _, hist = train_reward_model(segs, more, "rr", cfg, seed=1, val_mask=mask, focus=focus, replay=2.0)
    n_focus = int((focus & ~mask).sum())
    assert len(hist) == 3 and seen == [n_focus + int(round(2.0 * n_focus))] * 3
    seen.clear()
    train_reward_model(segs, more, "rr", cfg, seed=1, val_mask=mask)  # without replay: every training pair
    assert seen == [int((~mask).sum())] * 3
    with pytest.raises(ValueError, match="replay needs focus"):
        train_reward_model(segs, more, "rr", cfg, seed=1, replay=1.0)


def test_keep_level_moves_the_served_reward_only_and_survives_save_and_load(new_segments, tmp_path):
    from rlpref.control.feedback import _set_level
    from rlpref.control.feedback import step_reward_stats as _step_reward_stats
    from rlpref.control.reward_net import save_reward_model

    segs = new_segments(m=30)
    torch.manual_seed(0)
    model = RewardModel(3, 2, (16,), ensemble=2)
    x = model.features(torch.as_tensor(segs.obs), torch.as_tensor(segs.acts))
    raw = model.member_rewards(x).detach().clone()
    u0 = segment_utilities(model, segs)
    _set_level(model, _step_reward_stats(model, segs), (3.0, 0.5))
    np.testing.assert_allclose(_step_reward_stats(model, segs), (3.0, 0.5), rtol=1e-4)
    _set_level(model, _step_reward_stats(model, segs), (-1.0, 2.0))  # composes with the level already set
    np.testing.assert_allclose(_step_reward_stats(model, segs), (-1.0, 2.0), rtol=1e-4)
    torch.testing.assert_close(model.member_rewards(x), raw)  # what the losses train on is untouched
    u1 = segment_utilities(model, segs)
    assert np.array_equal(np.argsort(u0), np.argsort(u1)) and not np.allclose(u0, u1)
    save_reward_model(model, tmp_path / "m")
    np.testing.assert_allclose(_step_reward_stats(load_reward_model(tmp_path / "m"), segs), (-1.0, 2.0), rtol=1e-4)
    # A model saved before the level existed (no out_* entries) loads with the identity level.
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("out_")}
    torch.save(state, tmp_path / "m" / "reward_net.pt")
    old = load_reward_model(tmp_path / "m")
    assert float(old.out_scale) == 1.0 and float(old.out_shift) == 0.0
    torch.testing.assert_close(old(torch.as_tensor(segs.obs), torch.as_tensor(segs.acts)), raw.mean(0))
    # A constant reward has no sd to match: only the mean moves.
    flat = RewardModel(3, 2, (4,))
    torch.nn.init.zeros_(flat.members[0].net[-1].weight)
    _set_level(flat, _step_reward_stats(flat, segs), (2.0, 1.0))
    assert float(flat.out_scale) == 1.0
    np.testing.assert_allclose(_step_reward_stats(flat, segs), (2.0, 0.0), atol=1e-6)


def test_relabel_replay_buffer_rescores_with_unscaled_actions():
    import gymnasium as gym
    from stable_baselines3.common.buffers import ReplayBuffer

    from rlpref.control.online import relabel_replay_buffer
    from rlpref.control.reward_net import RewardModel

    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    buf = ReplayBuffer(50, obs_space, act_space, device="cpu", n_envs=2)
    rng = np.random.default_rng(0)
    for _ in range(7):
        buf.add(rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.uniform(-1, 1, size=(2, 1)),
                np.zeros(2), np.zeros(2), [{}, {}])

    class _Policy:
        action_space = act_space

        def unscale_action(self, a):
            return -2.0 + 0.5 * (a + 1.0) * 4.0

    model = RewardModel(3, 1, (8,))
    relabel_replay_buffer(buf, model, _Policy(), chunk=5)
    obs, acts = buf.observations[:7].reshape(14, 3), buf.actions[:7].reshape(14, 1)
    expected = model.predict(obs, 2.0 * acts).reshape(7, 2)  # [-1, 1] -> [-2, 2]
    np.testing.assert_allclose(buf.rewards[:7], expected, rtol=1e-6)
    assert np.all(buf.rewards[7:] == 0)  # unused slots untouched


def test_protocol_configs_reject_bad_values():
    with pytest.raises(ValueError, match="protocol.rounds=0: must be an integer >= 1"):
        OfflineRoundsConfig(rounds=0)
    with pytest.raises(ValueError, match="unknown protocol keys round"):
        build(OfflineRoundsConfig, {"round": 2})
    with pytest.raises(ValueError, match="protocol.timing='late': must be one of: even, early"):
        OfflineRoundsConfig(timing="late")
    with pytest.raises(ValueError, match="protocol.query_schedule='linear': must be one of: constant, hyperbolic"):
        OnlineConfig(query_schedule="linear")
    with pytest.raises(ValueError, match="protocol.iteration.refit='always': must be one of: gated, trained"):
        IterationConfig(refit="always")
    with pytest.raises(ValueError, match="protocol.iteration.action_noise=-0.1: must be a number >= 0"):
        IterationConfig(action_noise=-0.1)
    with pytest.raises(ValueError, match="needs protocol.iteration.n_envs >= 2"):
        IterationConfig(action_noise=0.3, n_envs=1)
    with pytest.raises(ValueError, match="protocol.iteration.keep_level='yes': must be true or false"):
        IterationConfig(keep_level="yes")
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match=r"protocol.iteration.refit_epochs=.*: must be an integer >= 1 \(or null\)"):
            IterationConfig(refit_epochs=bad)
    for bad in (-1, "2", True):
        with pytest.raises(ValueError, match=r"protocol.iteration.refit_replay=.*: must be a number >= 0 \(or null\)"):
            IterationConfig(refit_replay=bad)
    with pytest.raises(ValueError, match=r"budget.n_feedback=100 leaves -440 offline comparisons"):
        OfflineRoundsConfig().counts(100)
    assert OfflineRoundsConfig().counts(1540) == [1000] + [60] * 9


def test_graded_noise_grows_across_envs_and_respects_the_action_space():
    box = gym.spaces.Box(-2.0, 2.0, shape=(3,), dtype=np.float32)
    mean = np.full((8, 3), 0.5, np.float32)
    act = graded_noise_policy(lambda obs: mean.copy(), box, 0.4, np.random.default_rng(0))
    draws = np.stack([act(np.zeros((8, 1))) for _ in range(4000)])  # [draw, env, dim]
    assert draws.dtype == np.float32 and draws.min() >= -2.0 and draws.max() <= 2.0
    np.testing.assert_array_equal(draws[:, 0], 0.5)  # env 0 acts as the policy does
    # sd grows linearly to 0.4 x the half-range (2.0); clipping at +-2 is rare at these scales
    np.testing.assert_allclose(draws.std(axis=(0, 2))[1:], 0.8 * np.arange(1, 8) / 7, rtol=0.05)
    disc = gym.spaces.Discrete(5)
    act = graded_noise_policy(lambda obs: np.zeros(4, np.int64), disc, 1.0, np.random.default_rng(1))
    draws = np.stack([act(np.zeros((4, 1))) for _ in range(4000)])
    assert np.all(draws[:, 0] == 0) and draws.max() == 4
    # the last env acts uniformly at random (P(action 0) = 1/5); env 1 keeps the policy's action 2/3 + 1/15
    np.testing.assert_allclose((draws == 0).mean(axis=0)[1:], [2 / 3 + 1 / 15, 1 / 3 + 2 / 15, 0.2], atol=0.03)
    column = graded_noise_policy(lambda obs: np.zeros((4, 1), np.int64), disc, 1.0, np.random.default_rng(1))
    assert column(np.zeros((4, 1))).shape == (4, 1)  # a policy's (n, 1) discrete actions keep their shape
    with pytest.raises(ValueError, match="bounded Box"):
        graded_noise_policy(lambda obs: obs, gym.spaces.Box(-np.inf, np.inf, shape=(2,)), 0.3, np.random.default_rng(0))


def test_round_schedules():
    assert due_steps(250_000, 4, "even") == [50_000, 100_000, 150_000, 200_000]
    assert OnlineConfig(iterations=5).due(250_000) == [50_000, 100_000, 150_000, 200_000]
    early = OfflineRoundsConfig(rounds=9, timing="early").due(250_000)
    assert early[0] == 7906 and early[-1] == 213454  # 250k·(0.1)^1.5, 250k·(0.9)^1.5
    assert all(b > a for a, b in zip(early, early[1:]))
    gaps = np.diff([0, *early])
    assert gaps[0] < gaps[-1]  # denser at the start
    assert due_steps(1000, 0, "even") == []


@pytest.mark.slow
def test_online_loop_end_to_end_on_pendulum(tmp_path, monkeypatch):
    monkeypatch.setenv("RLPREF_QUIET", "1")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[
            "env=Pendulum-v1", "budget=smoke", "protocol=offline_rounds", f"cache_dir={tmp_path / 'cache'}", "loss=rr",
            "budget.source_steps=1500",
            "budget.agent_steps=1500", "budget.eval_every=500", "budget.eval_episodes=2", "budget.n_feedback=100",
            "budget.n_checkpoints=2", "protocol.rounds=2", "protocol.per_round=20", "protocol.timing=even",
            "protocol.iteration.refit_epochs=3", "protocol.iteration.refit_replay=1",
        ])
    res = run_mod.run_pipeline(OmegaConf.to_container(cfg, resolve=True), tmp_path / "run")
    rounds = res["online_rounds"]
    assert all(1 <= r["epochs"] <= 3 for r in rounds)  # refits capped at protocol.iteration.refit_epochs
    # Where the agent stage's time went, part by part: the parts fit inside the stage's own total.
    t = res["agent_timings"]
    assert t["online_refit"] > 0 and t["online_rollout"] > 0 and t["training"] > 0 and t["evaluation"] > 0
    assert t["training"] + t["evaluation"] + t["online_rounds"] <= t["total"] <= res["timings"]["agent"]
    assert t["online_rollout"] + t["online_label"] + t["online_refit"] <= t["online_rounds"] + 1e-6
    assert [r["round"] for r in rounds] == [1, 2]
    assert [r["batch"] for r in rounds] == [3, 4]  # after random (0) and 2 checkpoints
    assert [r["agent_step"] for r in rounds] == [500, 1000]  # evenly spaced, between rollouts
    assert all(r["n_new_pairs"] == 20 for r in rounds) and rounds[-1]["n_pairs_total"] == 60 + 40
    agent_dir = Path(cfg.cache_dir) / "agent" / res["artifacts"]["agent"]
    new_prefs = Preferences.load(agent_dir / "online_preferences.npz")
    assert sorted(set(new_prefs.batch.tolist())) == [3, 4]
    # The run's reward model is the refined one the agent finished on, not the offline one.
    offline = load_reward_model(Path(cfg.cache_dir) / "reward_model" / res["artifacts"]["reward_model"])
    final = load_reward_model(tmp_path / "run" / "online_reward")
    x = torch.randn(64, 3), torch.randn(64, 1)
    assert not torch.allclose(offline(*x), final(*x))
    # The offline stage's validation split is stored with its model; the rounds validate on those pairs.
    split = np.load(Path(cfg.cache_dir) / "reward_model" / res["artifacts"]["reward_model"] / "split.npz")["val_mask"]
    assert split.dtype == bool and split.shape == (60,) and split.sum() == round(0.15 * 60)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["online_rounds"] == rounds and saved["n_feedback_total"] == 100
    # Saved online pairs index the offline segments followed by the online ones.
    meta = json.loads((agent_dir / "online.json").read_text())
    segs_on = Segments.load(agent_dir / "online_segments.npz")
    local = new_prefs.chosen - meta["n_offline_segments"]
    assert local.min() >= 0 and local.max() < len(segs_on)
    np.testing.assert_allclose(segs_on.returns[local], new_prefs.return_chosen)
    # Each round logs the level of r_theta on its own clips before and after the refit: round 1 starts
    # from the offline model, the last round ends on the saved final one.
    def level(model, segs, batch):
        clips = segs.subset(segs.batch == batch)
        with torch.no_grad():
            r = model(torch.as_tensor(clips.obs), torch.as_tensor(clips.acts)).numpy()
        return [float(r.mean()), float(r.std())]

    def logged(rnd, when):
        return [rnd[f"reward_mean_{when}"], rnd[f"reward_sd_{when}"]]

    np.testing.assert_allclose(logged(rounds[0], "before"), level(offline, segs_on, 3), rtol=1e-5)
    np.testing.assert_allclose(logged(rounds[-1], "after"), level(final, segs_on, 4), rtol=1e-5)
    assert logged(rounds[-1], "before") != logged(rounds[-1], "after")  # the refit moved the reward on its clips
    # The same config again reuses the online agent; protocol=offline (no rounds) on the same 60 offline
    # comparisons reuses everything before the agent, whose artefact differs.
    again = run_mod.run_pipeline(OmegaConf.to_container(cfg, resolve=True), tmp_path / "run2")
    assert again["reused_stages"]["agent"] and again["online_rounds"] == rounds
    off = OmegaConf.to_container(cfg, resolve=True)
    off["protocol"], off["budget"]["n_feedback"] = {"name": "offline"}, 60
    off["budget"].update(agent_steps=300, eval_every=300, eval_episodes=1)  # the agent's steps key only the agent
    offline = run_mod.run_pipeline(off, tmp_path / "run3")
    assert offline["artifacts"]["agent"] != res["artifacts"]["agent"] and offline["online_rounds"] is None
    assert {s for s, reused in offline["reused_stages"].items() if reused} == {"source", "segments", "feedback",
                                                                              "reward_model"}
    # keep_level: a new agent artefact whose final reward is served, on the last round's clips, at the
    # level the agent saw before that refit, not at the level the refit left.
    keep = OmegaConf.to_container(cfg, resolve=True)
    keep["protocol"]["iteration"]["keep_level"] = True
    kept = run_mod.run_pipeline(keep, tmp_path / "run4")
    assert kept["artifacts"]["agent"] != res["artifacts"]["agent"]
    last = kept["online_rounds"][-1]
    kept_final = load_reward_model(tmp_path / "run4" / "online_reward")
    segs_kept = Segments.load(Path(cfg.cache_dir) / "agent" / kept["artifacts"]["agent"] / "online_segments.npz")
    served = level(kept_final, segs_kept, 4)
    np.testing.assert_allclose(served, logged(last, "before"), rtol=1e-4, atol=1e-6)
    assert not np.isclose(served[0], last["reward_mean_after"])


class _StubLoop:
    """Stands in for OnlineFeedback: records when rounds run and hands out prepared reward models."""

    def __init__(self, models, draw_random: bool):
        self.models, self.draw_random = list(models), draw_random
        self.calls, self.rounds_log = [], []

    def round(self, agent, step):
        if self.draw_random:  # fine-tuning seeds and draws from torch's global stream
            torch.manual_seed(123)
            torch.rand(1000)
        self.calls.append(step)
        self.rounds_log.append({"agent_step": step})
        return self.models[len(self.calls) - 1]


def _ppo_with_stub_rounds(draw_random: bool):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlpref.control.learned_reward import LearnedRewardVecEnv
    from rlpref.control.online import OnlineCallback

    torch.manual_seed(0)
    models = [RewardModel(3, 1, (8,)) for _ in range(3)]
    venv = LearnedRewardVecEnv(DummyVecEnv([lambda: gym.make("Pendulum-v1") for _ in range(2)]), models[0])
    agent = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]})
    loop = _StubLoop(models[1:], draw_random)
    agent.learn(1024, callback=OnlineCallback(loop, [100, 110, 500]))  # 100 and 110 fall in one rollout
    params = torch.cat([p.detach().flatten() for p in agent.policy.parameters()])
    return loop, venv, models, params


def test_online_callback_runs_due_rounds_between_rollouts_swaps_the_reward_and_spares_the_agent_rng():
    loop, venv, models, params = _ppo_with_stub_rounds(draw_random=True)
    assert loop.calls == [128, 512]  # rollouts of 2 x 64 steps; rounds due within one rollout run once
    assert venv.model is models[2]
    _, _, _, params_quiet = _ppo_with_stub_rounds(draw_random=False)
    torch.testing.assert_close(params, params_quiet, rtol=0, atol=0)  # the round's torch draws are invisible


def test_query_schedule_splits_the_total_like_imitation():
    hyper = query_schedule(1540, 10, 0.1, "hyperbolic")
    assert sum(hyper) == 1540 and len(hyper) == 10
    rest = np.array(hyper[1:], float)
    assert np.all(np.diff(rest) <= 0) and rest[0] / rest[-1] == pytest.approx((1 + 1) / (1 + 1 / 9), rel=0.02)
    assert hyper[0] - 154 == pytest.approx(rest[0] * (1 + 1 / 9), abs=1.5)  # 10 % up front, on top of share 0
    const = query_schedule(770, 10, 0.1, "constant")
    assert sum(const) == 770 and set(const[1:]) <= {69, 70} and const[0] - 77 in (69, 70)
    with pytest.raises(ValueError, match="choose one of: constant, hyperbolic"):
        query_schedule(100, 4, 0.1, "linear")


def test_online_protocol_end_to_end_on_pendulum(compose_config, tmp_path, monkeypatch):
    """protocol=online: no source stage; the iterations label the agent's own play on the query schedule,
    one stratum each, and the reward model they fit ranks the true returns."""
    import rlpref.control.online as online_mod
    import rlpref.control.segments as segments_mod
    import rlpref.control.stages as stages_mod

    monkeypatch.setenv("RLPREF_QUIET", "1")
    cfg = compose_config(["env=Pendulum-v1", "budget=smoke", f"cache_dir={tmp_path / 'cache'}", "protocol=online",
                          "protocol.iterations=4", "budget.agent_steps=2000", "budget.eval_every=1000",
                          "budget.eval_episodes=2", "budget.n_feedback=120"])
    seen = []  # each iteration's env reset seed and the state of its random stream as the rollout starts

    def recording(original):
        def rollout(*args, **kwargs):
            seen.append((kwargs["seed"], kwargs["rng"].bit_generator.state["state"]["state"]))
            return original(*args, **kwargs)
        return rollout

    for mod in (stages_mod, online_mod):
        monkeypatch.setattr(mod, "rollout_batch", recording(mod.rollout_batch))
    stepped = []  # env steps each feedback rollout really took (envs x steps of its stream)
    original_stream = segments_mod.collect_stream
    monkeypatch.setattr(segments_mod, "collect_stream",
                        lambda *a, **k: (lambda s: stepped.append(s["rewards"].size) or s)(original_stream(*a, **k)))
    res = run_mod.run_pipeline(cfg, tmp_path / "run")
    # The run's env-step count is the agent's plus what the feedback rollouts stepped, by part.
    parts = res["env_steps_parts"]
    assert parts["agent"] == res["agent_steps"] and parts["first_iteration"] == stepped[0]
    assert parts["rounds"] == sum(stepped[1:]) and res["env_steps"] == res["agent_steps"] + sum(stepped)
    # No two iterations replay the same episodes (reset seeds) or the same random draws (cuts, pairs, noise).
    assert len(seen) == 4 and len({s for s, _ in seen}) == 4 and len({d for _, d in seen}) == 4, seen
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["agent", "first_iteration"]  # no source stage
    counts = OnlineConfig(iterations=4).counts(120)
    assert res["protocol"] == "online" and res["n_feedback"] == counts[0] and res["n_feedback_total"] <= 120
    rounds = res["online_rounds"]
    assert [r["agent_step"] for r in rounds] == [500, 1000, 1500] and [r["batch"] for r in rounds] == [1, 2, 3]
    assert all(r["n_new_pairs"] <= c for r, c in zip(rounds, counts[1:]))
    first = Segments.load(tmp_path / "cache" / "first_iteration" / res["artifacts"]["first_iteration"] / "segments.npz")
    assert set(first.batch.tolist()) == {0}
    assert rounds[-1]["spearman"] > 0.5, "the online reward model should rank the true returns of the clips"
