"""Stage 1: a source agent trained on the true reward, saved at K evenly spaced checkpoints.

The checkpoints (plus a uniformly random policy as batch 0) are the rollout batches whose segments
span poor to expert play.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from stable_baselines3.common.callbacks import BaseCallback

from rlpref.control.algos import (
    build_model,
    make_train_env,
    obs_norm_of,
    save_agent,
)
from rlpref.control.resume import latest_state, load_state, save_state
from rlpref.progress import StepProgress

__all__ = ["checkpoint_steps", "train_source"]
log = logging.getLogger("rlpref")


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """K evenly spaced step counts, the last one equal to ``total_steps``."""
    if n_checkpoints < 1:
        raise ValueError(f"n_checkpoints must be >= 1, got {n_checkpoints}")
    return [round(total_steps * (k + 1) / n_checkpoints) for k in range(n_checkpoints)]


class _Checkpointer(BaseCallback):
    """Saves ``ckpt_k`` at each checkpoint step, and the training state beside them to resume from."""

    def __init__(self, steps: list[int], ckpt_dir: Path, progress: StepProgress, saved: Sequence[int] = ()):
        super().__init__()
        self.saved = list(saved)  # the step count of each checkpoint written so far
        self.pending = list(steps[len(self.saved):])
        self.ckpt_dir = ckpt_dir
        self.progress = progress

    def _on_step(self) -> bool:
        self.progress.update(self.num_timesteps)
        while self.pending and self.num_timesteps >= self.pending[0]:
            self.save()
            self.pending.pop(0)
        return True

    def save(self) -> None:
        self.saved.append(int(self.model.num_timesteps))
        save_agent(self.model, obs_norm_of(self.model.get_env()), self.ckpt_dir / f"ckpt_{len(self.saved)}")
        save_state(self.model, self.ckpt_dir, {"checkpoint_steps": self.saved})


def train_source(
    env_cfg: Mapping[str, Any], algo: str, hp: Mapping[str, Any], total_steps: int, n_checkpoints: int, seed: int,
    out_dir: Path, resume_dir: Optional[Path] = None,
) -> dict:
    """Train on the true reward with hyperparameters ``hp`` and write ``ckpt_1 … ckpt_K`` (each ``model.zip``
    + ``obs_norm.npz``).

    ``resume_dir``: where checkpoints and the training state are kept while training; a rerun after a
    kill continues from its last checkpoint instead of from scratch (None: no resumption).
    """
    norm = env_cfg.get("normalize", {})
    venv = make_train_env(env_cfg, seed, norm_obs=bool(norm.get("obs", False)),
                          norm_reward=bool(norm.get("reward", False)), gamma=float(hp.get("gamma", 0.99)))
    ckpt_dir = Path(resume_dir) if resume_dir is not None else Path(out_dir)
    state = latest_state(resume_dir)
    if state is not None:
        model, info = load_state(algo, state, venv)
        saved = info["checkpoint_steps"]
    else:
        model, saved = build_model(algo, venv, hp, seed), []
    resumed_at = int(model.num_timesteps) if state is not None else None
    if resumed_at is not None:
        log.info("source stage resumes from its saved state at step %d (%s)", resumed_at, state)
    with StepProgress(total_steps, f"source {algo} {env_cfg['id']}", start=resumed_at or 0) as progress:
        cb = _Checkpointer(checkpoint_steps(total_steps, n_checkpoints), ckpt_dir, progress, saved)
        model.learn(total_timesteps=total_steps - int(model.num_timesteps), callback=cb,
                    reset_num_timesteps=state is None)
        while len(cb.saved) < n_checkpoints:  # learn() can stop a few steps short of the last checkpoint
            cb.save()
    venv.close()
    if ckpt_dir != Path(out_dir):
        for k in range(1, n_checkpoints + 1):
            shutil.copytree(ckpt_dir / f"ckpt_{k}", Path(out_dir) / f"ckpt_{k}")
    else:
        for state_dir in ckpt_dir.glob("state_*"):
            shutil.rmtree(state_dir)
    return {"algo": algo, "checkpoint_steps": cb.saved, "gamma": float(hp.get("gamma", 0.99)),
            "resumed_at_step": resumed_at, "env_steps": int(model.num_timesteps)}
