"""True episode return of policies that learn nothing: uniform random actions, and (for discrete
action spaces) each constant action. This is the floor a trained agent's return is read against;
on merge-v0 a trained agent's first evaluation already sits far above it, so "learns" needs this floor.

Usage: python scripts/baseline_returns.py ENV_ID [EPISODES] [SEEDS]      e.g. merge-v0 5 0,1,2

The env is built from ``conf/env/ENV_ID.yaml`` and each policy is measured by the pipeline's own
``evaluate_policy_true``: at seed s its EPISODES episodes (default 5, budget=default's eval_episodes)
start exactly where a run with ``seed=s`` evaluates its agent, so the numbers sit next to a run's
final return episode for episode. Prints one line per policy: the mean over all episodes, its sd,
and the mean at each seed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
from omegaconf import OmegaConf

from envs import make_env
from rlpref.control.evaluation import evaluate_policy_true
from rlpref.control.policies import random_policy

CONF_ENV = Path(__file__).resolve().parents[1] / "conf" / "env"


def env_config(env_id: str) -> dict:
    """The env group's config as a plain dict; exits naming the folder when ``env_id`` has none."""
    path = CONF_ENV / f"{env_id}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONF_ENV.glob("*.yaml")))
        sys.exit(f"no env config {path}; pick one of: {known}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def constant_policy(action: int) -> Callable[[np.ndarray], np.ndarray]:
    """The same discrete action for every observation in the batch."""
    return lambda obs: np.full(obs.shape[0], action, dtype=np.int64)


def policies(env_cfg: dict, seed: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Random play, plus each constant action when the action space is discrete (named if the env names them)."""
    env = make_env(env_cfg["id"], max_episode_steps=env_cfg.get("max_episode_steps"), env_kwargs=env_cfg.get("env_kwargs"))
    out = {"random": random_policy(env.action_space, seed)}
    if hasattr(env.action_space, "n"):  # highway-env names its meta-actions (4: SLOWER)
        names = getattr(getattr(env.unwrapped, "action_type", None), "actions", {})
        out.update({f"always {names.get(a, a)}": constant_policy(a) for a in range(int(env.action_space.n))})
    env.close()
    return out


def main(argv: list[str]) -> None:
    if not argv or len(argv) > 3:
        sys.exit(__doc__)
    env_cfg = env_config(argv[0])
    episodes = int(argv[1]) if len(argv) > 1 else 5
    seeds = [int(s) for s in argv[2].split(",")] if len(argv) > 2 else [0, 1, 2]
    per_seed: dict[str, list[np.ndarray]] = {}
    for s in seeds:
        for name, policy in policies(env_cfg, s).items():
            per_seed.setdefault(name, []).append(evaluate_policy_true(policy, env_cfg, episodes, s))
    for name, returns in per_seed.items():
        every = np.concatenate(returns)
        print(f"{name:>17}: mean {every.mean():.2f}, sd {every.std():.2f} over {every.size} episodes; "
              + ", ".join(f"seed {s} {r.mean():.2f}" for s, r in zip(seeds, returns)))


if __name__ == "__main__":
    main(sys.argv[1:])
