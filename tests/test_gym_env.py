"""``env=gym env.id=<id>``: any registered Gymnasium env runs on generic defaults, the algorithm picked from
its action space (PPO for discrete actions, SAC for continuous ones), ``module:EnvId`` included."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import rlpref.control.pipeline as pipeline
from rlpref.control.records import Segments
from rlpref.schema import ConfigError


class ToyDiscrete(gym.Env):
    """A 2-d state the three actions push left, nowhere or right; reward −|x₀|: keep it near 0. Registered
    when this module is imported, so ``env.id=test_gym_env:ToyDiscrete-v0`` finds it (the module route)."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.x[0] = np.clip(self.x[0] + 0.2 * (int(action) - 1) + 0.05 * self.np_random.normal(), -10, 10)
        return self.x.copy(), -abs(float(self.x[0])), False, False, {}


if "ToyDiscrete-v0" not in gym.registry:
    gym.register("ToyDiscrete-v0", entry_point=ToyDiscrete, max_episode_steps=50)

TINY = ["budget=smoke", "budget.agent_steps=512", "budget.eval_every=256", "budget.eval_episodes=1",
        "budget.n_feedback=40", "protocol.iterations=2", "segments.length=10", "protocol.iteration.n_envs=2"]


@pytest.mark.parametrize("env_id, algo, act_dim, limit, extra", [
    (f"{__name__}:ToyDiscrete-v0", "ppo", 3, 50, ["+agent.overrides.n_steps=128"]),  # one-hot actions in the clips
    ("Pendulum-v1", "sac", 1, 200, ["+agent.overrides.buffer_size=2000", "+agent.overrides.learning_starts=64",
                                    "+agent.overrides.train_freq=4", "+agent.overrides.policy_kwargs.net_arch=[32,32]"]),
])
def test_generic_env_runs_end_to_end_with_the_algorithm_its_action_space_asks_for(
        compose_config, tmp_path, monkeypatch, env_id, algo, act_dim, limit, extra):
    monkeypatch.setenv("RLPREF_QUIET", "1")
    cfg = compose_config(["env=gym", f"env.id={env_id}", *TINY, *extra, f"cache_dir={tmp_path / 'cache'}"])
    spec = pipeline.validate(cfg)
    assert spec.agent.algo == algo and spec.env.discrete == (algo == "ppo")
    assert spec.env.max_episode_steps == limit  # the registered limit
    res = pipeline.run_pipeline(cfg, tmp_path / "run")
    assert res["algo"] == algo and res["agent_steps"] >= 512 and math.isfinite(res["final_return"])
    assert res["online_rounds"] and res["online_rounds"][0]["n_new_pairs"] > 0
    first = Segments.load(next((tmp_path / "cache" / "first_iteration").glob("*/segments.npz")))
    assert first.acts.shape[1:] == (10, act_dim)
    if algo == "ppo":
        assert set(np.unique(first.acts).tolist()) == {0.0, 1.0} and np.all(first.acts.sum(-1) == 1)  # one-hot


def test_a_first_iteration_without_usable_pairs_says_why_and_what_to_change(compose_config, tmp_path, monkeypatch):
    """CartPole pays 1 a step: every clip of a random policy has the same return, so no pair is worth asking."""
    monkeypatch.setenv("RLPREF_QUIET", "1")
    cfg = compose_config(["env=gym", "env.id=CartPole-v1", *TINY, "+agent.overrides.n_steps=128",
                          f"cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ConfigError, match="teacher.near_tie"):
        pipeline.run_pipeline(cfg, tmp_path / "run")
