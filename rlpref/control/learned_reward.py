"""A VecEnv wrapper that replaces the env's reward by the learned reward r_θ(s, a[, s']).

It sits *below* VecNormalize, so it sees raw observations (what the reward model was trained on)
and its output is normalised by VecNormalize's running return statistics. All envs' rewards are
computed in one batched forward pass per step. The true reward stays available in
``info["true_reward"]`` (and Monitor, beneath, still records true episode returns).
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rlpref.control.reward_net import RewardModel
from rlpref.control.segments import one_hot_actions

__all__ = ["LearnedRewardVecEnv"]


class LearnedRewardVecEnv(VecEnvWrapper):
    def __init__(self, venv: VecEnv, model: RewardModel):
        super().__init__(venv)
        expected_obs = int(np.prod(venv.observation_space.shape))
        if model.obs_dim != expected_obs:
            raise ValueError(
                f"reward model expects {model.obs_dim}-dim observations but the env gives {expected_obs}: "
                "it was trained on another environment"
            )
        self.model = model.eval()
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        self._obs = self.venv.reset()
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        if self._obs is None:  # before the env's own error: the reward needs the pre-step observation
            raise RuntimeError("step before reset: call reset() first; the learned reward needs the current obs")
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self):
        obs, true_rewards, dones, infos = self.venv.step_wait()
        if self._obs is None or self._actions is None:
            raise RuntimeError("step before reset: call reset() first; the learned reward needs the current obs")
        act = one_hot_actions(np.asarray(self._actions).reshape(self.num_envs, -1), self.action_space)
        if self.model.use_next_obs:
            nxt = obs.copy()
            for i, done in enumerate(dones):
                if done and "terminal_observation" in infos[i]:
                    nxt[i] = infos[i]["terminal_observation"]
        else:
            nxt = None
        rewards = self.model.predict(self._obs.reshape(self.num_envs, -1), act, nxt)
        if not np.all(np.isfinite(rewards)):
            raise FloatingPointError(
                "the learned reward is NaN/inf for some inputs; the reward model diverged or the observations "
                "are out of its training range. Retrain it (e.g. lower reward_model.lr)."
            )
        for i, info in enumerate(infos):
            info["true_reward"] = float(true_rewards[i])
        self._obs = obs
        return obs, rewards.astype(np.float32), dones, infos

