"""Stage 5: a fresh agent trained on the learned (or true, for the oracle) reward, evaluated on the true return.

Every ``eval_every`` env steps the deterministic policy plays ``eval_episodes`` episodes of an env
that keeps the true reward, with the training env's observation statistics; that curve is the
headline result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from rlpref.control.algos import (
    ALGOS,
    build_model,
    make_train_env,
    obs_norm_of,
    save_agent,
)
from rlpref.control.evaluation import evaluate_policy_true
from rlpref.control.learned_reward import LearnedRewardVecEnv, RolloutRelabel, find_learned_reward_env
from rlpref.control.policies import sb3_policy
from rlpref.control.resume import latest_state, load_state, save_state
from rlpref.control.reward_net import RewardModel
from rlpref.progress import StepProgress

__all__ = ["AgentResult", "train_agent"]
log = logging.getLogger("rlpref")


@dataclass
class AgentResult:
    curve: list[dict] = field(default_factory=list)  # step, true_return_mean, true_return_std, n_episodes
    train_episode_returns: list[tuple[int, float]] = field(default_factory=list)  # (step, true return)
    steps_per_second: float = 0.0
    behaviour: dict = field(default_factory=dict)  # per-step means of the last evaluation (abs_action, x_velocity, ...)
    timings: dict = field(default_factory=dict)  # seconds: total, training, evaluation, callbacks' own parts

    @property
    def final_return(self) -> float:
        return float(self.curve[-1]["true_return_mean"]) if self.curve else float("nan")

    @property
    def max_return(self) -> float:
        return float(max(p["true_return_mean"] for p in self.curve)) if self.curve else float("nan")

    @property
    def auc(self) -> float:
        """Mean true return over the evaluation points (area under the curve per step, normalised)."""
        return float(np.mean([p["true_return_mean"] for p in self.curve])) if self.curve else float("nan")


class _Evaluator(BaseCallback):
    """Evaluates on the true return every ``every`` steps; after each point ``after_point()`` (e.g. saving
    the training state to resume from) runs."""

    def __init__(self, env_cfg, every: int, episodes: int, seed: int, result: AgentResult, progress, on_point=None,
                 after_point=None):
        super().__init__()
        self.env_cfg, self.every, self.episodes, self.seed = env_cfg, every, episodes, seed
        self.result, self.progress, self.on_point, self.after_point = result, progress, on_point, after_point
        self.next_eval = every
        self.train_time = 0.0
        self.eval_time = 0.0
        self._t0 = 0.0
        self.elapsed_before = 0.0  # wall seconds of the processes before a resume (restored from the state)
        self._process_start = time.perf_counter()

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()

    def evaluate(self) -> None:
        t_eval = time.perf_counter()
        self.train_time += t_eval - self._t0
        behaviour: dict = {}
        returns = evaluate_policy_true(
            sb3_policy(self.model), self.env_cfg, self.episodes, self.seed, obs_norm_of(self.model.get_env()),
            behaviour=behaviour,
        )
        self.result.behaviour = behaviour
        point = {
            "step": int(self.num_timesteps),
            "true_return_mean": float(returns.mean()),
            "true_return_std": float(returns.std()),
            "n_episodes": int(returns.size),
        }
        self.result.curve.append(point)
        if self.on_point is not None:
            self.on_point(point)
        self._t0 = time.perf_counter()
        self.eval_time += self._t0 - t_eval

    def _on_step(self) -> bool:
        self.progress.update(self.num_timesteps)
        for info in self.locals.get("infos", []):
            if "episode" in info:  # Monitor's record: always the true return
                self.result.train_episode_returns.append((int(self.num_timesteps), float(info["episode"]["r"])))
        if self.num_timesteps >= self.next_eval:
            self.evaluate()
            while self.next_eval <= self.num_timesteps:
                self.next_eval += self.every
            if self.after_point is not None:
                self.after_point()
        return True

    def state(self) -> dict:
        return {"curve": self.result.curve, "train_episodes": self.result.train_episode_returns,
                "next_eval": self.next_eval, "train_time": self.train_time, "eval_time": self.eval_time,
                "elapsed_s": self.elapsed_before + time.perf_counter() - self._process_start}

    def restore(self, state: dict) -> None:
        self.result.curve = list(state["curve"])
        self.result.train_episode_returns = [tuple(x) for x in state["train_episodes"]]
        self.next_eval, self.train_time, self.eval_time = state["next_eval"], state["train_time"], state["eval_time"]
        self.elapsed_before = float(state.get("elapsed_s", float("nan")))  # nan: a state saved before it was kept


def train_agent(
    env_cfg: Mapping[str, Any],
    algo: str,
    hp: Mapping[str, Any],
    *,
    reward_model: Optional[RewardModel],
    total_steps: int,
    eval_every: int,
    eval_episodes: int,
    seed: int,
    out_dir: Optional[Path] = None,
    on_eval=None,
    callbacks: Sequence[BaseCallback] = (),
    resume_dir: Optional[Path] = None,
    reward_norm: str = "return",
) -> AgentResult:
    """Train on r_θ (``reward_model``) or on the true reward (``None``: the oracle upper bound), with the
    resolved hyperparameters ``hp`` (:func:`rlpref.control.algos.hyperparams`).

    ``callbacks`` run beside the evaluator (e.g. the online loop's, which refines r_θ mid-training); those
    with ``save_state``/``load_state`` are saved and restored with the agent. ``resume_dir``: the training
    state is saved there after every evaluation, and a rerun after a kill continues from the last one.
    ``reward_norm`` (learned reward only): ``return`` (running sd of the discounted return, VecNormalize's),
    ``step`` (running mean and sd of the per-step reward) or ``none``.
    """
    gamma = float(hp.get("gamma", 0.99))
    # On-policy agents score each rollout in one pass at its end (RolloutRelabel), which also takes over
    # VecNormalize's reward normalisation; off-policy agents train between steps, so they score per step.
    deferred = reward_model is not None and issubclass(ALGOS[algo], OnPolicyAlgorithm)
    venv = _train_env(env_cfg, seed, reward_model, deferred, gamma, reward_norm)
    if deferred:
        callbacks = [RolloutRelabel(gamma, mode=reward_norm), *callbacks]  # first: the others may read the relabelled rollout
    stateful = [c for c in callbacks if hasattr(c, "save_state")]
    state = latest_state(resume_dir)
    resumed_at = int(state.name.split("_")[1]) if state is not None else 0
    if state is not None:
        log.info("agent stage resumes from its saved state at step %d (%s)", resumed_at, state)
    result = AgentResult()
    label = "learned" if reward_model is not None else "oracle"
    t_start = time.perf_counter()
    with StepProgress(total_steps, f"agent {algo} on {label} reward", start=resumed_at) as progress:
        cb = _Evaluator(env_cfg, eval_every, eval_episodes, seed, result, progress, on_eval)
        if state is None:
            model = build_model(algo, venv, hp, seed)
        else:
            model = _resume(algo, state, venv, cb, stateful)
        if resume_dir is not None:
            cb.after_point = lambda: save_state(model, resume_dir, cb.state(),
                                                lambda d: [c.save_state(d) for c in stateful])
        model.learn(total_timesteps=total_steps - int(model.num_timesteps), reset_num_timesteps=state is None,
                    callback=CallbackList([cb, *callbacks]) if callbacks else cb)
        if not result.curve or result.curve[-1]["step"] < model.num_timesteps:
            cb.evaluate()  # the final policy is always evaluated
    _record_timings(result, cb, callbacks, int(model.num_timesteps), time.perf_counter() - t_start)
    if out_dir is not None:
        save_agent(model, obs_norm_of(venv), Path(out_dir))
    venv.close()
    result.timings["resumed_at_step"] = resumed_at if state is not None else None
    return result


def _record_timings(result: AgentResult, evaluator: _Evaluator, callbacks: Sequence[BaseCallback], steps: int,
                    total: float) -> None:
    """Seconds per part and the training throughput; time a callback spent outside training (e.g. the
    online feedback rounds) is not agent throughput."""
    busy = sum(float(getattr(c, "seconds_outside_training", 0.0)) for c in callbacks)
    result.steps_per_second = steps / max(evaluator.train_time - busy, 1e-9)
    result.timings = {"total": total, "training": evaluator.train_time - busy, "evaluation": evaluator.eval_time,
                      # this process plus the ones a resume continued (their time up to the state it resumed from)
                      "total_across_resumes": total + evaluator.elapsed_before}
    for c in callbacks:
        result.timings.update(getattr(c, "timings", {}))


def _train_env(env_cfg: Mapping[str, Any], seed: int, reward_model: Optional[RewardModel], deferred: bool,
               gamma: float, reward_norm: str = "return"):
    """The training env with the learned reward below VecNormalize (a learned reward has an arbitrary
    scale: by default its return is normalised, by VecNormalize or, when deferred, by RolloutRelabel)."""
    norm = env_cfg.get("normalize", {})
    learned = reward_model is not None
    wrapper = (lambda v: LearnedRewardVecEnv(v, reward_model, deferred=deferred,
                                             step_norm=reward_norm == "step" and not deferred)) if learned else None
    by_vecnormalize = (reward_norm == "return") if learned else bool(norm.get("reward", False))
    return make_train_env(env_cfg, seed, reward_wrapper=wrapper, norm_obs=bool(norm.get("obs", False)),
                          norm_reward=by_vecnormalize and not deferred, gamma=gamma)


def _resume(algo: str, state: Path, venv, evaluator: _Evaluator, stateful: Sequence[BaseCallback]):
    """The agent of a saved state, with its curve so far and the callbacks' state (e.g. the online loop's
    feedback and the r_θ it was serving) restored."""
    for c in stateful:
        served = c.load_state(state)
        if served is not None:
            find_learned_reward_env(venv).model = served
    model, info = load_state(algo, state, venv)
    evaluator.restore(info)
    return model
