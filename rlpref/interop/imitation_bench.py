"""One run of imitation's ``PreferenceComparisons`` set up as imitation documents it, measured as rlpref measures.

Used by ``scripts/bench_imitation.py`` (one run per child process). The setup follows imitation 1.0.1's
``train_preference_comparisons`` script and its tutorial, and changes only what a fair comparison needs:

- **reward net**: imitation's default ``BasicRewardNet`` (state and action, 32 × 32) with its own input
  normalisation (``RunningNorm``), wrapped in ``NormalizedRewardNet`` (``RunningNorm`` on the output);
  cross-entropy (Bradley–Terry) loss, ``BasicRewardTrainer`` with the script's 3 epochs, the class's
  default ``initial_epoch_multiplier`` (200), ``RandomFragmenter(warning_threshold=0)``, hyperbolic query
  schedule, 10 % of the comparisons up front, ``transition_oversampling=1``, no exploration.
- **observations** (where the env config normalises them, as HalfCheetah's does): for the *policy only*:
  ``VecNormalize(norm_obs=True, norm_reward=False)``
  sits outermost, above imitation's reward wrapper and its trajectory buffer, so the reward net and the
  teacher see raw observations and true rewards (imitation's scripts normalise inside the policy; rlpref's
  tuned PPO hyperparameters expect VecNormalize statistics, and the evaluation reuses them).
- **agent**: rlpref's tuned PPO for the env (the same agent as rlpref's side).
- **what rlpref fixes to match its own side** (say so wherever a number is quoted): 50-step fragments,
  10 iterations; the gatherer's returns discounted with the agent's γ, as rlpref's teacher discounts a
  segment's return; ``teacher="deterministic"`` (temperature 0: the larger return wins, an exact tie
  is labelled 0.5) or ``"boltzmann"`` (imitation's default temperature 1: P(first) = σ(ΔR / 1));
  and the agent steps (:func:`step_plan`).

The curve is the true return at rlpref's evaluation points (``eval_every`` env steps, ``episodes``
deterministic episodes from reset seeds ``seed + 100 + 10_000 + i``, the final policy always), by the
same function rlpref's agent stage uses (:func:`rlpref.control.evaluation.evaluate_policy_true`).
imitation must be installed (``pip install --no-deps imitation==1.0.1``).
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping, Optional

import numpy as np
import torch
from imitation.algorithms import preference_comparisons as pc
from imitation.rewards.reward_nets import BasicRewardNet, NormalizedRewardNet
from imitation.util import logger as imit_logger
from imitation.util.networks import RunningNorm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize

from rlpref.control.algos import build_model, hyperparams, make_train_env, obs_norm_of
from rlpref.control.evaluation import evaluate_policy_true
from rlpref.control.policies import sb3_policy

__all__ = ["TEACHERS", "StepCounter", "imitation_run", "step_plan"]

#: teacher name -> SyntheticGatherer temperature (0: deterministic; 1: imitation's default Boltzmann).
TEACHERS = {"deterministic": 0.0, "boltzmann": 1.0}


def step_plan(total_steps: int, rounds: int, rollout: int) -> list[int]:
    """Agent steps per training round, so the rounds add up to what rlpref's agent runs for ``total_steps``.

    SB3 collects whole rollouts, so rlpref's single ``learn(total_steps)`` runs ceil(total / rollout)
    rollouts (250,000 -> 489 × 512 = 250,368). imitation's loop trains ``rounds`` (= iterations + 1)
    times for ``total // iterations`` steps each, each rounded up to whole rollouts (250,000 -> 11 × 49 ×
    512 = 275,968). Here the same number of rollouts as rlpref's is split over imitation's rounds as evenly
    as whole rollouts allow, the extra ones in the last rounds (where imitation puts its remainder too).
    """
    n_rollouts = math.ceil(total_steps / rollout)
    base, extra = divmod(n_rollouts, rounds)
    return [rollout * (base + (1 if i >= rounds - extra else 0)) for i in range(rounds)]


class StepCounter(VecEnvWrapper):
    """Counts every env step taken (agent training and feedback rollouts alike); evaluation runs elsewhere."""

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.steps = 0

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        out = self.venv.step_wait()
        self.steps += self.num_envs
        return out


class CurveRecorder(BaseCallback):
    """rlpref's evaluation schedule inside imitation's agent training: a point every ``every`` steps."""

    def __init__(self, env_cfg: Mapping[str, Any], every: int, episodes: int, seed: int,
                 norm: Optional[VecNormalize]):
        super().__init__()
        self.env_cfg, self.every, self.episodes, self.seed, self.norm = env_cfg, every, episodes, seed, norm
        self.next_eval = every
        self.curve: list[dict] = []
        self.eval_seconds = 0.0

    def evaluate(self, step: int) -> None:
        t0 = time.perf_counter()
        returns = evaluate_policy_true(sb3_policy(self.model), self.env_cfg, self.episodes, self.seed,
                                       obs_norm_of(self.norm) if self.norm is not None else None)
        self.curve.append({"step": int(step), "true_return_mean": float(returns.mean()),
                           "true_return_std": float(returns.std()), "n_episodes": int(returns.size)})
        self.eval_seconds += time.perf_counter() - t0

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.evaluate(self.num_timesteps)
            while self.next_eval <= self.num_timesteps:
                self.next_eval += self.every
        return True


class PlannedAgentTrainer(pc.AgentTrainer):
    """imitation's AgentTrainer whose rounds train the planned steps (:func:`step_plan`) and record the curve.

    Only ``train`` differs: it ignores the per-round step count imitation asks for and runs the next
    entry of ``plan`` instead, with the curve recorder beside imitation's own logging callback."""

    def __init__(self, *args, plan: list[int], recorder: CurveRecorder, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan, self.recorder, self.rounds_done = list(plan), recorder, 0

    def train(self, steps: int, **kwargs) -> None:
        if self.rounds_done >= len(self.plan):
            raise RuntimeError(f"imitation asked for training round {self.rounds_done + 1}; planned {len(self.plan)}")
        n_left = self.buffering_wrapper.n_transitions
        if n_left:
            raise RuntimeError(f"{n_left} transitions left in the buffer; call sample() first")
        self.algorithm.learn(total_timesteps=self.plan[self.rounds_done], reset_num_timesteps=False,
                             callback=[self.log_callback, self.recorder], **kwargs)
        self.rounds_done += 1


def env_config(env_id: str) -> dict:
    """The env's rlpref config (conf/env/<env_id>.yaml through Hydra), so both sides run the same env and PPO."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=[f"env={env_id}"]), resolve=True)["env"]


def _build(env_cfg: Mapping[str, Any], seed: int, *, teacher: str, steps: int, iterations: int, fragment_length: int,
           eval_every: int, episodes: int, log_folder: str, hp_overrides: Optional[Mapping[str, Any]] = None):
    """imitation's loop, wired as the module docstring says; returns (loop, agent, counter, recorder, plan)."""
    hp = hyperparams(env_cfg, "ppo", hp_overrides)
    gamma = float(hp.get("gamma", 0.99))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    counter = StepCounter(make_train_env(env_cfg, seed, norm_obs=False, norm_reward=False, gamma=gamma))
    net = NormalizedRewardNet(BasicRewardNet(counter.observation_space, counter.action_space,
                                             normalize_input_layer=RunningNorm), RunningNorm)
    agent = build_model("ppo", counter, hp, seed)
    logger = imit_logger.configure(folder=log_folder, format_strs=["stdout"])
    rollout = int(hp.get("n_steps", 2048)) * counter.num_envs
    plan = step_plan(steps, iterations + 1, rollout)
    recorder = CurveRecorder(env_cfg, eval_every, episodes, seed + 100, norm=None)  # norm set below
    trainer = PlannedAgentTrainer(agent, net, counter, rng=rng, exploration_frac=0.0, custom_logger=logger,
                                  plan=plan, recorder=recorder)
    if env_cfg["normalize"]["obs"]:  # policy-only observation normalisation, outermost: the buffer and
        recorder.norm = VecNormalize(trainer.venv, norm_obs=True, norm_reward=False, gamma=gamma)  # reward net
        agent.set_env(recorder.norm)  # below it see raw observations
    gatherer = pc.SyntheticGatherer(temperature=TEACHERS[teacher], discount_factor=gamma, rng=rng,
                                    custom_logger=logger)
    reward_trainer = pc.BasicRewardTrainer(pc.PreferenceModel(net), pc.CrossEntropyRewardLoss(), rng=rng, epochs=3,
                                           custom_logger=logger)
    loop = pc.PreferenceComparisons(
        trainer, net, num_iterations=iterations, fragmenter=pc.RandomFragmenter(rng=rng, warning_threshold=0,
                                                                                 custom_logger=logger),
        preference_gatherer=gatherer, reward_trainer=reward_trainer, fragment_length=fragment_length,
        transition_oversampling=1, initial_comparison_frac=0.1, query_schedule="hyperbolic", custom_logger=logger)
    return loop, agent, counter, recorder, plan


def imitation_run(env_id: str, seed: int, *, teacher: str, steps: int, comparisons: int, iterations: int = 10,
                  fragment_length: int = 50, eval_every: int = 25_000, episodes: int = 5,
                  hp_overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """One run; returns what ``results.json`` records (the caller adds wall time and the command).

    ``agent_steps`` is the agent's own count after training (not ``steps``), ``env_steps`` every training
    env step (feedback rollouts included, evaluation excluded), ``n_feedback_total`` the comparisons in
    imitation's dataset (ties included: the deterministic teacher labels an exact tie 0.5)."""
    import tempfile

    from rlpref.runtime import configure_compute

    configure_compute(1)
    if teacher not in TEACHERS:
        raise ValueError(f"teacher must be one of {sorted(TEACHERS)}, got {teacher!r}")
    env_cfg = env_config(env_id)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as log_folder:
        loop, agent, counter, recorder, plan = _build(
            env_cfg, seed, teacher=teacher, steps=steps, iterations=iterations, fragment_length=fragment_length,
            eval_every=eval_every, episodes=episodes, log_folder=log_folder, hp_overrides=hp_overrides)
        stats = loop.train(total_timesteps=steps, total_comparisons=comparisons)
    if not recorder.curve or recorder.curve[-1]["step"] < agent.num_timesteps:
        recorder.evaluate(agent.num_timesteps)  # the final policy is always evaluated, as rlpref does
    seconds = time.perf_counter() - t0
    prefs = np.asarray(loop.dataset.preferences, dtype=np.float64)
    return {
        "tool": "imitation", "env": env_id, "seed": seed, "teacher": teacher, "steps_requested": steps,
        "agent_steps": int(agent.num_timesteps), "env_steps": int(counter.steps),
        "n_feedback_total": int(len(loop.dataset)), "n_ties": int(np.sum(prefs == 0.5)),
        "final_return": recorder.curve[-1]["true_return_mean"], "curve": recorder.curve,
        "agent_steps_per_round": plan, "reward_loss": float(stats["reward_loss"]),
        "reward_accuracy": float(stats["reward_accuracy"]),
        "timings": {"run": seconds, "evaluation": recorder.eval_seconds},
        "setup": {"iterations": iterations, "fragment_length": fragment_length, "eval_every": eval_every,
                  "eval_episodes": episodes, "eval_seed": seed + 100, "temperature": TEACHERS[teacher],
                  "gatherer_discount": float(hyperparams(env_cfg, "ppo", hp_overrides).get("gamma", 0.99)),
                  "reward_net": "NormalizedRewardNet(BasicRewardNet(obs+act, 32x32, RunningNorm input), RunningNorm)",
                  "reward_trainer": "BasicRewardTrainer(CrossEntropyRewardLoss, epochs=3, lr=1e-3, batch 32)",
                  "initial_epoch_multiplier": 200, "query_schedule": "hyperbolic", "initial_comparison_frac": 0.1,
                  "obs_norm": ("VecNormalize(norm_obs=True, norm_reward=False) outermost, policy only"
                               if env_cfg["normalize"]["obs"] else "none (the env's config)")},
    }
