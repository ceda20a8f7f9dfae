"""Edge cases of the stages around the learned reward: rollout streams, checkpoint spacing, the VecEnv wrapper, the model."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from rlpref.control.learned_reward import LearnedRewardVecEnv
from rlpref.control.reward_net import RewardModel, load_reward_model, save_reward_model
from rlpref.control.source import checkpoint_steps


def _venv(env_id: str, n: int = 2, horizon: int | None = None) -> DummyVecEnv:
    return DummyVecEnv([lambda: gym.make(env_id, max_episode_steps=horizon) for _ in range(n)])


def test_next_obs_reward_uses_the_terminal_observation_not_the_reset_one():
    torch.manual_seed(0)
    model = RewardModel(3, 1, (16,), use_next_obs=True)
    venv = LearnedRewardVecEnv(_venv("Pendulum-v1", horizon=3), model)
    venv.seed(0)
    obs = venv.reset()
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(7):
        act = rng.uniform(-2, 2, size=(2, 1)).astype(np.float32)
        nxt, rewards, dones, infos = venv.step(act)
        for i in range(2):
            target = infos[i]["terminal_observation"] if dones[i] else nxt[i]
            want = model.predict(obs[i : i + 1], act[i : i + 1], target[None])[0]
            assert rewards[i] == pytest.approx(want, rel=1e-5, abs=1e-6)
            if dones[i]:
                ends += 1
                wrong = model.predict(obs[i : i + 1], act[i : i + 1], nxt[i : i + 1])[0]
                assert rewards[i] != pytest.approx(wrong, rel=1e-5, abs=1e-6)  # the reset obs differs
        obs = nxt
    assert ends == 4  # episodes of 3 steps end at steps 3 and 6 in both envs


def test_discrete_actions_reach_the_model_one_hot():
    torch.manual_seed(1)
    model = RewardModel(4, 2, (16,))
    venv = LearnedRewardVecEnv(_venv("CartPole-v1"), model)
    venv.seed(0)
    obs = venv.reset()
    act = np.array([0, 1])
    _, rewards, _, _ = venv.step(act)
    want = model.predict(obs, np.eye(2, dtype=np.float32)[act])
    np.testing.assert_allclose(rewards, want, rtol=1e-5, atol=1e-6)


def test_wrapper_errors_name_the_cause():
    with pytest.raises(ValueError, match="trained on another environment"):
        LearnedRewardVecEnv(_venv("Pendulum-v1"), RewardModel(5, 1, (8,)))
    venv = LearnedRewardVecEnv(_venv("Pendulum-v1"), RewardModel(3, 1, (8,)))
    with pytest.raises(RuntimeError, match="step before reset"):
        venv.step(np.zeros((2, 1), np.float32))
    broken = RewardModel(3, 1, (8,))
    with torch.no_grad():
        broken.members[0].net[-1].bias.fill_(float("nan"))
    venv = LearnedRewardVecEnv(_venv("Pendulum-v1"), broken)
    venv.reset()
    with pytest.raises(FloatingPointError, match="NaN/inf"):
        venv.step(np.zeros((2, 1), np.float32))


def test_ensemble_reward_is_the_member_mean_and_features_are_obs_act_next(tmp_path):
    torch.manual_seed(2)
    model = RewardModel(3, 2, (8, 8), use_next_obs=True, ensemble=3)
    obs, act, nxt = torch.randn(5, 3), torch.randn(5, 2), torch.randn(5, 3)
    x = model.features(obs, act, nxt)
    torch.testing.assert_close(x, torch.cat([obs, act, nxt], dim=1))
    model.set_input_stats(torch.randn(100, 8) * 3 + 1)
    z = (x - model.in_mean) / model.in_std
    per_member = torch.stack([m(z) for m in model.members])
    assert per_member.shape[0] == 3 and not torch.allclose(per_member[0], per_member[1])
    torch.testing.assert_close(model(obs, act, nxt), per_member.mean(0))
    with pytest.raises(ValueError, match="pass next_obs"):
        model(obs, act)
    save_reward_model(model, tmp_path)
    loaded = load_reward_model(tmp_path)
    assert loaded.spec() == model.spec()
    torch.testing.assert_close(loaded(obs, act, nxt), model(obs, act, nxt))


def test_checkpoint_steps_are_even_and_end_at_the_budget():
    assert checkpoint_steps(1000, 3) == [333, 667, 1000]
    assert checkpoint_steps(250_000, 10) == list(range(25_000, 250_001, 25_000))
    assert checkpoint_steps(7, 1) == [7]
    with pytest.raises(ValueError, match="n_checkpoints"):
        checkpoint_steps(1000, 0)


def test_collect_stream_stores_raw_obs_and_true_terminal_next_obs():
    from envs import make_env
    from rlpref.control.segments import collect_stream

    seen = []
    rng = np.random.default_rng(0)

    def policy(obs):
        seen.append(obs.copy())
        return rng.uniform(-2, 2, size=(obs.shape[0], 1)).astype(np.float32)

    env_cfg = {"id": "Pendulum-v1", "max_episode_steps": 5}
    s = collect_stream(env_cfg, policy, n_steps=24, n_envs=2, seed=7, obs_norm=lambda o: 10 * o + 1)
    assert s["obs"].shape == (2, 12, 3) and s["acts"].shape == (2, 12, 1)
    np.testing.assert_allclose(np.stack(seen, 1), 10 * s["obs"] + 1, rtol=1e-6)  # policy saw normalised obs
    for i in range(2):  # replay each env with the recorded actions: the stream is the env's own
        env = make_env("Pendulum-v1", max_episode_steps=5)
        o, _ = env.reset(seed=7 + i)
        for t in range(12):
            np.testing.assert_allclose(s["obs"][i, t], o, rtol=1e-6)
            o, r, term, trunc, _ = env.step(s["acts"][i, t])
            np.testing.assert_allclose(s["next_obs"][i, t], o, rtol=1e-6)  # the terminal obs at t = 4, 9
            assert s["rewards"][i, t] == pytest.approx(r, rel=1e-5)
            if term or trunc:
                assert t in (4, 9) and not np.allclose(s["obs"][i, t + 1], o)
                o, _ = env.reset()


def test_agent_is_evaluated_at_each_interval_and_at_the_end():
    import yaml

    from rlpref.control.agent import train_agent

    conf = Path(__file__).resolve().parents[1] / "conf" / "env" / "Pendulum-v1.yaml"
    env_cfg = {**yaml.safe_load(conf.read_text()), "n_envs": 3}
    points = []
    hp = {**env_cfg["hyperparams"]["ppo"], "n_steps": 32, "batch_size": 48, "n_epochs": 1}
    res = train_agent(env_cfg, "ppo", hp, reward_model=None, total_steps=700, eval_every=250, eval_episodes=1, seed=0,
                      on_eval=points.append)
    # 3 envs advance 3 steps at a time: the first counts >= 250, 500 and 750, then the final policy
    # (PPO finishes its last rollout of 3 x 32 steps, at 768).
    assert [p["step"] for p in res.curve] == [252, 501, 750, 768]
    assert points == res.curve and all(p["n_episodes"] == 1 for p in points)
    assert res.final_return == res.curve[-1]["true_return_mean"]
    assert res.max_return == max(p["true_return_mean"] for p in res.curve)
    assert res.auc == pytest.approx(np.mean([p["true_return_mean"] for p in res.curve]))
    assert res.steps_per_second > 0 and len(res.train_episode_returns) >= 1


def _ppo_first_rollout(deferred: bool, use_next_obs: bool):
    """One 96-step PPO rollout (2 envs, 40-step episodes, so timeouts bootstrap) on a learned reward."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from rlpref.control.learned_reward import RolloutRelabel

    torch.manual_seed(0)
    model = RewardModel(3, 1, (32, 32), use_next_obs=use_next_obs)
    wrapped = LearnedRewardVecEnv(_venv("Pendulum-v1", horizon=40), model, deferred=deferred)
    venv = VecNormalize(wrapped, norm_obs=True, norm_reward=not deferred, gamma=0.9)
    agent = PPO("MlpPolicy", venv, n_steps=48, batch_size=48, n_epochs=1, gamma=0.9, seed=3, device="cpu",
                policy_kwargs={"net_arch": [16]})
    agent.learn(96, callback=RolloutRelabel(0.9) if deferred else None)  # two rollouts: statistics carry over
    buf = agent.rollout_buffer
    return buf.rewards.copy(), buf.returns.copy(), buf.advantages.copy()


@pytest.mark.parametrize("use_next_obs", [False, True])
def test_rollout_relabel_gives_the_per_step_rewards_advantages_and_returns(use_next_obs):
    """Scoring a whole rollout at its end reproduces per-step scoring under VecNormalize: the normalised
    rewards (with SB3's timeout bootstrap), returns and advantages of the second rollout, whose running
    return statistics carry over from the first."""
    per_step = _ppo_first_rollout(False, use_next_obs)
    batched = _ppo_first_rollout(True, use_next_obs)
    assert np.abs(per_step[0]).max() > 0.1  # a real reward signal, not zeros on both sides
    for a, b in zip(per_step, batched):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-5)


def test_predict_env_scores_raw_transitions_of_any_leading_shape_and_refuses_nan():
    torch.manual_seed(2)
    model = RewardModel(4, 2, (8,), use_next_obs=True)
    space = gym.spaces.Discrete(2)
    rng = np.random.default_rng(0)
    obs, nxt = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    ids = rng.integers(0, 2, size=(3, 5))
    got = model.predict_env(obs, ids, nxt, space)
    want = model.predict(obs.reshape(15, 4), np.eye(2, dtype=np.float32)[ids.ravel()], nxt.reshape(15, 4))
    assert got.shape == (3, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got.ravel(), want, rtol=1e-6)
    with pytest.raises(FloatingPointError, match="diverged"):
        model.predict_env(np.full((2, 4), np.nan), np.zeros(2, int), nxt[0, :2], space)


def test_reward_norm_modes_step_and_none():
    """``step`` serves r_θ at the running mean and sd of its per-step values (imitation's normalised reward
    net), ``none`` as it is; ``return`` is VecNormalize's (tested above)."""
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    from rlpref.control.learned_reward import RolloutRelabel

    rng = np.random.default_rng(0)
    a, b = rng.normal(3.0, 2.0, size=(5, 2)), rng.normal(3.0, 2.0, size=(5, 2))
    dones = np.zeros((5, 2), bool)
    step = RolloutRelabel(0.99, mode="step")
    ref = RunningMeanStd(shape=())
    for chunk in (a, b):
        ref.update(chunk.reshape(-1))
        np.testing.assert_allclose(step.normalise(chunk, dones), (chunk - ref.mean) / np.sqrt(ref.var + 1e-8))
    assert abs(step.normalise(b, dones).mean()) < 0.5  # centred, unlike the return normalisation
    np.testing.assert_array_equal(RolloutRelabel(0.99, mode="none").normalise(a, dones), a)
    with pytest.raises(ValueError, match="return, step, none"):
        RolloutRelabel(0.99, mode="per_step")


def test_per_step_scoring_with_step_norm_centres_the_served_reward():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from envs import make_env
    from rlpref.control.learned_reward import LearnedRewardVecEnv
    from rlpref.control.reward_net import RewardModel

    torch.manual_seed(0)
    model = RewardModel(3, 1, (8,))
    with torch.no_grad():
        model.out_shift.fill_(5.0)  # a reward far from zero
    venv = LearnedRewardVecEnv(DummyVecEnv([lambda: make_env("Pendulum-v1")] * 2), model, step_norm=True)
    venv.reset()
    served = [venv.step(np.zeros((2, 1), np.float32))[1] for _ in range(200)]
    assert venv.step_rms.mean > 2.0 and abs(np.mean(served[100:])) < 0.5  # raw level ~3.7, served ~0
