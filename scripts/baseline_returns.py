"""True episode return of policies that learn nothing: uniform random actions, and (for discrete
action spaces) each constant action. This is the floor a trained agent's return is read against;
on merge-v0 a trained agent's first evaluation already sits far above it, so "learns" needs this floor.

Usage: python scripts/baseline_returns.py ENV_ID [EPISODES]      e.g. merge-v0 10
Prints one line per policy: mean, sd and each episode's return (episode seeds 1000, 1001, ...).
"""

from __future__ import annotations

import sys

import numpy as np

from envs import make_env


def episode_return(env_id: str, seed: int, action=None) -> float:
    """One episode's true return under ``action`` (a constant) or, if None, uniform random actions."""
    env = make_env(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample() if action is None else action)
        total, done = total + float(reward), terminated or truncated
    env.close()
    return total


def main(argv: list[str]) -> None:
    if not argv or len(argv) > 2:
        sys.exit(__doc__)
    env_id, episodes = argv[0], int(argv[1]) if len(argv) == 2 else 10
    policies: dict[str, object] = {"random": None}
    env = make_env(env_id)
    if hasattr(env.action_space, "n"):  # highway-env names its meta-actions (4: SLOWER)
        names = getattr(getattr(env.unwrapped, "action_type", None), "actions", {})
        policies.update({f"always {names.get(a, a)}": a for a in range(int(env.action_space.n))})
    env.close()
    for name, action in policies.items():
        returns = [episode_return(env_id, 1000 + i, action) for i in range(episodes)]
        print(f"{name:>17}: mean {np.mean(returns):.2f}, sd {np.std(returns):.2f}, "
              f"episodes {' '.join(f'{r:.1f}' for r in returns)}")


if __name__ == "__main__":
    main(sys.argv[1:])
