"""Stage 2: roll out every rollout batch (random policy + each checkpoint) and cut fixed-length segments.

As in the reference pipeline, a batch is one long stream of steps (episodes back to back, several
envs stepped together) and segments start at random indices of that stream, so a segment may span an
episode boundary — this is what makes 50-step segments possible on short-episode envs like merge-v0.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from envs import make_env
from rlpref.control.algos import ObsNorm
from rlpref.control.policies import random_policy, sb3_policy
from rlpref.control.records import Segments
from rlpref.control.reward_net import one_hot_actions
from rlpref.progress import progress_enabled, progress_note

__all__ = ["collect_stream", "cut_segments", "discounted_returns", "rollout_batch", "rollout_env_steps", "rollout_plan"]

Policy = Callable[[np.ndarray], np.ndarray]


def rollout_plan(n_feedback: int, n_batches: int, length: int, oversample: float) -> tuple[int, int]:
    """(steps to roll out per batch, segments to cut per batch) for n_feedback comparisons.

    Steps: n_feedback·L/(K+1) as in the reference; segments: oversample × the 2 per comparison.
    """
    if n_feedback < 2:
        raise ValueError(f"n_feedback must be >= 2 comparisons, got {n_feedback}")
    pairs = math.ceil(n_feedback / n_batches)
    steps = max(length, math.ceil(n_feedback * length / n_batches))
    return steps, max(2, math.ceil(oversample * 2 * pairs))


def collect_stream(
    env_cfg: Mapping[str, Any],
    policy: Policy,
    n_steps: int,
    n_envs: int,
    seed: int,
    obs_norm: Optional[ObsNorm] = None,
    desc: str = "rollout",
) -> dict[str, np.ndarray]:
    """Step ``n_envs`` envs together for ``ceil(n_steps/n_envs)`` steps each.

    Returns raw (un-normalised) arrays [n_envs, T, ...]: obs, acts (one-hot if discrete), next_obs
    (the true terminal observation at episode ends), rewards.
    """
    envs = [
        make_env(env_cfg["id"], max_episode_steps=env_cfg.get("max_episode_steps"), env_kwargs=env_cfg.get("env_kwargs"))
        for _ in range(n_envs)
    ]
    t_len = math.ceil(n_steps / n_envs)
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    obs_buf = np.zeros((n_envs, t_len) + obs.shape[1:], np.float32)
    next_buf = np.zeros_like(obs_buf)
    rew_buf = np.zeros((n_envs, t_len), np.float32)
    act_list = []
    for t in tqdm(range(t_len), desc=desc, unit="step", disable=not progress_enabled(), mininterval=1.0, leave=False):
        actions = policy(obs_norm(obs) if obs_norm is not None else obs)
        obs_buf[:, t] = obs
        act_list.append(np.asarray(actions))
        progress_note(f"{desc}: rolled out {t}/{t_len} steps of {n_envs} envs")
        for i, env in enumerate(envs):
            o, r, term, trunc, _ = env.step(actions[i])
            if not np.all(np.isfinite(o)):
                raise FloatingPointError(
                    f"{env_cfg['id']} returned a non-finite observation at step {t}; the simulation diverged "
                    "(check the env config or the policy's actions)"
                )
            rew_buf[i, t] = r
            next_buf[i, t] = o
            if term or trunc:
                o, _ = env.reset()
            obs[i] = o
    for e in envs:
        e.close()
    acts = np.stack(act_list, axis=1)  # [n_envs, T, ...]
    space = envs[0].action_space
    acts_vec = one_hot_actions(acts.reshape(n_envs * t_len, -1), space).reshape(n_envs, t_len, -1)
    return {"obs": obs_buf, "acts": acts_vec, "next_obs": next_buf, "rewards": rew_buf}


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Σ_t γ^t r_t over the last axis, float64."""
    weights = gamma ** np.arange(rewards.shape[-1], dtype=np.float64)
    return rewards.astype(np.float64) @ weights


def cut_segments(
    stream: dict[str, np.ndarray], n_segments: int, length: int, gamma: float, batch: int, rng: np.random.Generator
) -> Segments:
    """Cut segments of ``length`` steps at uniformly random (env, start) positions of a stream."""
    n_envs, t_len = stream["rewards"].shape
    if t_len < length:
        raise ValueError(f"rollout of {t_len} steps per env is shorter than the segment length {length}")
    env_idx = rng.integers(0, n_envs, size=n_segments)
    start = rng.integers(0, t_len - length + 1, size=n_segments)
    window = start[:, None] + np.arange(length)[None, :]
    take = {k: v[env_idx[:, None], window] for k, v in stream.items()}
    return Segments(
        obs=take["obs"],
        acts=take["acts"],
        next_obs=take["next_obs"],
        rewards=take["rewards"],
        returns=discounted_returns(take["rewards"], gamma),
        batch=np.full(n_segments, batch, dtype=np.int64),
    )


def rollout_env_steps(steps: int, n_envs: int, length: int) -> int:
    """Env steps one rollout batch of ``steps`` really takes: every env (at most ``n_envs``, each holding a
    whole segment) steps ``ceil(steps / envs)`` times. The run's ``env_steps`` count sums these."""
    envs = _rollout_envs(steps, n_envs, length)
    return envs * math.ceil(steps / envs)


def _rollout_envs(steps: int, n_envs: int, length: int) -> int:
    return max(1, min(n_envs, steps // length))  # every env's stream must hold a whole segment


def rollout_batch(
    env_cfg: Mapping[str, Any],
    policy: Policy,
    obs_norm: Optional[ObsNorm],
    *,
    steps: int,
    n_segments: int,
    length: int,
    gamma: float,
    n_envs: int,
    batch: int,
    seed: int,
    rng: np.random.Generator,
    desc: str,
) -> Segments:
    """One rollout batch: ``steps`` steps of ``policy`` over up to ``n_envs`` envs, cut into ``n_segments``."""
    n_envs = _rollout_envs(steps, n_envs, length)
    stream = collect_stream(env_cfg, policy, steps, n_envs, seed, obs_norm, desc=desc)
    return cut_segments(stream, n_segments, length, gamma, batch, rng)


def policy_for_batch(batch: int, algo: str, ckpt_dirs: list, action_space: gym.Space, seed: int, deterministic: bool):
    """Batch 0 is the uniformly random policy, batch k the k-th checkpoint."""
    from rlpref.control.algos import load_agent

    if batch == 0:
        return random_policy(action_space, seed), None
    model, obs_norm = load_agent(algo, ckpt_dirs[batch - 1])
    return sb3_policy(model, deterministic=deterministic), obs_norm


def collect_segments(
    env_cfg: Mapping[str, Any],
    algo: str,
    ckpt_dirs: list,
    *,
    n_feedback: int,
    length: int,
    gamma: float,
    oversample: float,
    n_envs: int,
    deterministic: bool,
    seed: int,
) -> Segments:
    """Segments from every rollout batch: random policy (batch 0) plus each checkpoint (1..K)."""
    max_len = env_cfg.get("max_episode_steps")
    if max_len and length > max_len:
        raise ValueError(
            f"segment length {length} exceeds {env_cfg['id']}'s episode limit of {max_len} steps; "
            f"set segments.length <= {max_len}"
        )
    n_batches = len(ckpt_dirs) + 1
    steps, n_seg = rollout_plan(n_feedback, n_batches, length, oversample)
    rng = np.random.default_rng(seed)
    action_space = make_env(env_cfg["id"], env_kwargs=env_cfg.get("env_kwargs")).action_space
    parts = []
    for b in range(n_batches):
        policy, obs_norm = policy_for_batch(b, algo, ckpt_dirs, action_space, seed + b, deterministic)
        parts.append(rollout_batch(env_cfg, policy, obs_norm, steps=steps, n_segments=n_seg, length=length, gamma=gamma,
                                   n_envs=n_envs, batch=b, seed=seed + 1000 * b, rng=rng, desc=f"rollout batch {b}"))
    return Segments.concat(parts)
