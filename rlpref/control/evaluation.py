"""True-return evaluation of a policy: what every reported number of the control track is measured by.

Evaluation always uses the environment's own reward, never the learned one, and runs each of its
episodes to the end, so short episodes cannot bias the mean.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import numpy as np

from envs import make_env
from rlpref.control.algos import ObsNorm

__all__ = ["BEHAVIOUR_INFO_KEYS", "evaluate_policy_true"]

#: Per-step info entries averaged into an evaluation's behaviour summary when the env reports them.
BEHAVIOUR_INFO_KEYS = ("x_velocity", "reward_ctrl", "reward_forward", "reward_run")  # v5 / v4 names


def evaluate_policy_true(
    policy: Callable[[np.ndarray], np.ndarray],
    env_cfg: Mapping[str, Any],
    n_episodes: int,
    seed: int,
    obs_norm: Optional[ObsNorm] = None,
    max_steps: Optional[int] = None,
    behaviour: Optional[dict] = None,
) -> np.ndarray:
    """True undiscounted returns of ``n_episodes`` episodes, all stepped together in one batch.

    ``policy`` maps a batch of (normalised) observations to actions. Each env runs exactly one
    episode, so the estimate is not biased toward short episodes. A ``behaviour`` dict is filled with
    per-step means over all episodes: ``abs_action`` and the env's :data:`BEHAVIOUR_INFO_KEYS` it reports
    (e.g. MuJoCo's ``x_velocity``), which tell a reward hack (flailing, flipping, running backwards)
    from honest progress when the return alone cannot.
    """
    envs = [
        make_env(env_cfg["id"], max_episode_steps=env_cfg.get("max_episode_steps"), env_kwargs=env_cfg.get("env_kwargs"))
        for _ in range(n_episodes)
    ]
    obs = np.stack([e.reset(seed=seed + 10_000 + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    returns = np.zeros(n_episodes)
    active = np.ones(n_episodes, dtype=bool)
    steps = 0
    sums: dict[str, float] = {}
    n_steps = 0
    while active.any():
        idx = np.flatnonzero(active)
        batch = obs[idx]
        actions = policy(obs_norm(batch) if obs_norm is not None else batch)
        for j, i in enumerate(idx):
            o, r, term, trunc, info = envs[i].step(actions[j])
            returns[i] += float(r)
            if behaviour is not None:
                n_steps += 1
                sums["abs_action"] = sums.get("abs_action", 0.0) + float(np.abs(np.asarray(actions[j], float)).mean())
                for key in BEHAVIOUR_INFO_KEYS:
                    if key in info:
                        sums[key] = sums.get(key, 0.0) + float(info[key])
            obs[i] = o
            if term or trunc:
                active[i] = False
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    for e in envs:
        e.close()
    if behaviour is not None:
        behaviour.update({k: v / max(n_steps, 1) for k, v in sums.items()})
    return returns
