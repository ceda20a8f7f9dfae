"""Environment registration and wrappers shared by every stage that builds an env.

``make_env(env_id)`` is the one way the project creates environments, so training, evaluation and
video all see the same observation format (highway-env observations are flattened to float32
vectors for the MLP reward model and policies).
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

import gymnasium as gym
import numpy as np

__all__ = ["HIGHWAY_IDS", "KNOWN_ENV_IDS", "make_env", "is_highway"]

#: Environments with a config in conf/env/ (any other registered Gymnasium id also works).
KNOWN_ENV_IDS = (
    "HalfCheetah-v4",
    "HalfCheetah-v5",
    "Walker2d-v5",
    "Swimmer-v5",
    "Hopper-v5",
    "Ant-v5",
    "merge-v0",
    "Pendulum-v1",
)
HIGHWAY_IDS = ("merge-v0", "merge-v1", "highway-v0", "highway-fast-v0", "roundabout-v0", "intersection-v0")

_registered_highway = False
_quieted = False

#: MuJoCo warnings about the shipped model files that users cannot act on (Gymnasium's v4 XMLs use
#: ``settotalmass``; every env built printed it once). Any other MuJoCo warning still reaches stderr.
_MUJOCO_KNOWN_NOISE = ("compiler attribute 'settotalmass' is deprecated",)


def _quiet_known_noise() -> None:
    """Filter third-party deprecation noise at its source, once per process, and nothing else.

    The configs pin some older env versions on purpose (HalfCheetah-v4 for comparison with published
    runs, merge-v0), so Gymnasium's "is out of date" notice is dropped for those ids only; MuJoCo's
    warning handler passes every message except :data:`_MUJOCO_KNOWN_NOISE` to stderr as before.
    """
    global _quieted
    if _quieted:
        return
    _quieted = True
    import sys
    import warnings

    for env_id in KNOWN_ENV_IDS:
        warnings.filterwarnings("ignore", message=rf".*environment {env_id} is out of date", category=DeprecationWarning)
    try:
        import mujoco
    except ImportError:
        return
    if mujoco.get_mju_user_warning() is not None:  # someone installed their own handler: leave it
        return

    def _warn(message: str) -> None:
        if not any(noise in message for noise in _MUJOCO_KNOWN_NOISE):
            sys.stderr.write(f"WARNING: {message}\n")

    mujoco.set_mju_user_warning(_warn)


def is_highway(env_id: str) -> bool:
    return env_id in HIGHWAY_IDS


def _register_highway() -> None:
    global _registered_highway
    if not _registered_highway:
        import highway_env

        gym.register_envs(highway_env)
        _registered_highway = True


class FlattenFloat32(gym.ObservationWrapper):
    """Flatten array observations to a float32 vector (highway-env's Kinematics is [vehicles, features])."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"FlattenFloat32 needs a Box observation space, got {space}")
        self.observation_space = gym.spaces.Box(
            low=np.asarray(space.low, dtype=np.float32).ravel(),
            high=np.asarray(space.high, dtype=np.float32).ravel(),
            dtype=np.float32,
        )

    def observation(self, observation):
        return np.asarray(observation, dtype=np.float32).ravel()


def make_env(
    env_id: str,
    *,
    render_mode: Optional[str] = None,
    max_episode_steps: Optional[int] = None,
    env_kwargs: Optional[dict[str, Any]] = None,
) -> gym.Env:
    """Build one environment by id; unknown ids list the configured choices. ``module:EnvId`` imports the
    module first, for envs that register themselves on import (Gymnasium's own spelling)."""
    _quiet_known_noise()
    env_kwargs = dict(env_kwargs or {})
    if ":" in env_id:
        module, _, env_id = env_id.rpartition(":")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"cannot import module '{module}' of env id '{module}:{env_id}': {exc}") from None
    if is_highway(env_id):
        _register_highway()
        config = env_kwargs.pop("config", None)
        env = gym.make(env_id, render_mode=render_mode, **env_kwargs)
        if config:
            env.unwrapped.configure(dict(config))
            env.reset()
        env = FlattenFloat32(env)
        if max_episode_steps:
            env = gym.wrappers.TimeLimit(env, max_episode_steps)
        return env
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(
            f"unknown environment '{env_id}': {exc}. Configured environments: {', '.join(KNOWN_ENV_IDS)} "
            "(any registered Gymnasium id also works)"
        ) from None
    kwargs = dict(render_mode=render_mode, **env_kwargs)
    if max_episode_steps:
        kwargs["max_episode_steps"] = max_episode_steps
    return gym.make(spec.id, **kwargs)
