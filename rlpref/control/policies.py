"""Policies as plain callables ``obs [n, ...] -> actions [n, ...]``, for rollouts and evaluation.

Rollouts step several envs at once, so a policy acts on a batch; wrapping SB3 models, random play and
graded exploration behind the same callable keeps the rollout code agnostic of where actions come from.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

__all__ = ["graded_noise_policy", "random_policy", "sb3_policy"]


def sb3_policy(model: BaseAlgorithm, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """The SB3 model's action for a batch of (already normalised) observations."""

    def act(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=deterministic)
        return action

    return act


def random_policy(action_space: gym.Space, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Uniform random actions (the source's untrained 'checkpoint 0'), seeded for reproducible segments."""
    space = action_space
    space.seed(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        return np.stack([space.sample() for _ in range(obs.shape[0])])

    return act


def graded_noise_policy(
    policy: Callable[[np.ndarray], np.ndarray], action_space: gym.Space, max_scale: float, rng: np.random.Generator
) -> Callable[[np.ndarray], np.ndarray]:
    """``policy`` with exploration that grows across the envs stepped together: env i of n gets scale
    ``max_scale · i/(n-1)``, so env 0 acts as ``policy`` does and the last is the most perturbed.

    Box actions get Gaussian noise of that scale times the action half-range, clipped to the bounds;
    discrete actions are replaced by uniform random ones with that probability. One batch thus spans
    the policy's own play and graded departures from it, which is what a teacher needs to say which
    way from the current behaviour is better.
    """
    if max_scale < 0:
        raise ValueError(f"action noise scale must be >= 0, got {max_scale}")
    discrete = isinstance(action_space, gym.spaces.Discrete)
    if not discrete and not (isinstance(action_space, gym.spaces.Box) and action_space.is_bounded()):
        raise ValueError(f"graded action noise needs a Discrete or bounded Box action space, got {action_space}")

    def act(obs: np.ndarray) -> np.ndarray:
        actions = np.asarray(policy(obs))
        n = actions.shape[0]
        scales = max_scale * np.arange(n) / max(n - 1, 1)
        if discrete:
            swap = rng.random(n) < scales
            out = actions.copy()
            out[swap] = rng.integers(0, int(action_space.n), size=(int(swap.sum()),) + out.shape[1:])
            return out
        half = (action_space.high - action_space.low) / 2.0
        noise = rng.standard_normal(actions.shape) * scales.reshape((n,) + (1,) * (actions.ndim - 1)) * half
        return np.clip(actions + noise, action_space.low, action_space.high).astype(actions.dtype)

    return act
