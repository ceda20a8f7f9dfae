"""Stage 1: a source agent trained on the true reward, saved at K evenly spaced checkpoints.

The checkpoints (plus a uniformly random policy as batch 0) are the rollout batches whose segments
span poor to expert play.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from stable_baselines3.common.callbacks import BaseCallback

from rlpref.control.algos import (
    build_model,
    hyperparams,
    make_train_env,
    obs_norm_of,
    save_agent,
)
from rlpref.progress import StepProgress

__all__ = ["checkpoint_steps", "train_source"]


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """K evenly spaced step counts, the last one equal to ``total_steps``."""
    if n_checkpoints < 1:
        raise ValueError(f"n_checkpoints must be >= 1, got {n_checkpoints}")
    return [round(total_steps * (k + 1) / n_checkpoints) for k in range(n_checkpoints)]


class _Checkpointer(BaseCallback):
    def __init__(self, steps: list[int], out_dir: Path, progress: StepProgress):
        super().__init__()
        self.pending = list(steps)
        self.out_dir = out_dir
        self.progress = progress
        self.saved: list[int] = []

    def _on_step(self) -> bool:
        self.progress.update(self.num_timesteps)
        while self.pending and self.num_timesteps >= self.pending[0]:
            k = len(self.saved) + 1
            save_agent(self.model, obs_norm_of(self.model.get_env()), self.out_dir / f"ckpt_{k}")
            self.saved.append(self.num_timesteps)
            self.pending.pop(0)
        return True


def train_source(
    env_cfg: Mapping[str, Any], algo: str, total_steps: int, n_checkpoints: int, seed: int, out_dir: Path
) -> dict:
    """Train on the true reward and write ``ckpt_1 … ckpt_K`` (each ``model.zip`` + ``obs_norm.npz``)."""
    hp = hyperparams(env_cfg, algo)
    norm = env_cfg.get("normalize", {})
    venv = make_train_env(
        env_cfg,
        seed,
        norm_obs=bool(norm.get("obs", False)),
        norm_reward=bool(norm.get("reward", False)),
        gamma=float(hp.get("gamma", 0.99)),
    )
    model = build_model(algo, venv, hp, seed)
    steps = checkpoint_steps(total_steps, n_checkpoints)
    with StepProgress(total_steps, f"source {algo} {env_cfg['id']}") as progress:
        cb = _Checkpointer(steps, Path(out_dir), progress)
        model.learn(total_timesteps=total_steps, callback=cb)
    # The final save can be missed if learn() stops a few steps short of a PPO rollout boundary.
    while len(cb.saved) < n_checkpoints:
        save_agent(model, obs_norm_of(venv), Path(out_dir) / f"ckpt_{len(cb.saved) + 1}")
        cb.saved.append(model.num_timesteps)
    venv.close()
    return {"algo": algo, "checkpoint_steps": cb.saved, "gamma": float(hp.get("gamma", 0.99))}
