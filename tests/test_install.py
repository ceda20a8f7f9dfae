"""The installed stack fits together: imitation 1.0.1 (installed --no-deps) on gymnasium >= 1.0, SB3 >= 2.4."""

from __future__ import annotations

import re

import numpy as np
import pytest


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def test_versions_in_range():
    import gymnasium
    import stable_baselines3
    import torch

    # ranges from pyproject.toml
    assert (1, 0) <= _version(gymnasium.__version__) < (1, 3), gymnasium.__version__
    assert (2, 4) <= _version(stable_baselines3.__version__) < (3,), stable_baselines3.__version__
    assert (2, 2) <= _version(torch.__version__) < (2, 15), torch.__version__


def test_imitation_imports():
    import imitation
    from imitation.data import rollout  # noqa: F401
    from imitation.rewards import reward_nets  # noqa: F401

    assert _version(imitation.__version__) >= (1, 0)


def test_imitation_reward_net_on_pendulum():
    import gymnasium as gym
    import torch
    from imitation.rewards.reward_nets import BasicRewardNet

    env = gym.make("Pendulum-v1")
    try:
        env.observation_space.seed(0)
        env.action_space.seed(0)
        net = BasicRewardNet(env.observation_space, env.action_space)
        obs = np.stack([env.observation_space.sample() for _ in range(5)])
        acts = np.stack([env.action_space.sample() for _ in range(5)])
        rew = net.predict(obs, acts, obs, np.zeros(5, dtype=bool))
        assert rew.shape == (5,) and np.isfinite(rew).all()
        # the underlying torch forward is differentiable (what reward learning needs)
        t_obs, t_acts, t_next, t_done = net.preprocess(obs, acts, obs, np.zeros(5, dtype=bool))
        out = net(t_obs, t_acts, t_next, t_done)
        out.sum().backward()
        assert any(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    finally:
        env.close()


def test_imitation_rollout_on_gymnasium_vec_env():
    from imitation.data import rollout
    from imitation.util.util import make_vec_env

    venv = make_vec_env("Pendulum-v1", rng=np.random.default_rng(0), n_envs=1)
    try:
        trajs = rollout.generate_trajectories(
            None, venv, rollout.make_min_timesteps(10), rng=np.random.default_rng(0)
        )
    finally:
        venv.close()
    assert len(trajs) >= 1
    tr = trajs[0]
    assert tr.obs.shape[1:] == (3,) and tr.acts.shape[1:] == (1,)
    assert tr.obs.shape[0] == tr.acts.shape[0] + 1


@pytest.mark.parametrize(
    "module, names",
    [("rlpref.losses", {"LOSSES", "bt_loss", "rr_loss", "get_loss"}),
     ("rlpref.strata", {"STRATIFIERS", "round_robin", "stratify"}),
     ("rlpref.metrics", {"pdc", "pearson", "spearman"})],
)
def test_public_api_is_exported(module, names):
    import importlib

    mod = importlib.import_module(module)
    assert names <= set(mod.__all__), names - set(mod.__all__)
    assert [n for n in mod.__all__ if not hasattr(mod, n)] == []  # no stale names in __all__
