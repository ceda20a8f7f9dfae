"""Optional online loop: while the agent trains on r_θ, label its own behaviour and refine r_θ.

The offline protocol labels only the source agent's checkpoints, so r_θ is never told about behaviour
the source agent never showed (on HalfCheetah: running backwards, which a reward in |v_x| ranks as
well as running forwards). With ``rounds`` R > 0, at R points of the agent's training (``schedule=even``:
after each (R+1)-th; ``early``: packed toward the start, where a reward hack is still cheap to unlearn)
the current agent (stochastic, as it trains) is rolled out as a new rollout batch; the teacher
labels ``n_feedback`` pairs that involve that batch (a new stratum, as the paper's stratification by
rollout batch asks); r_θ is fine-tuned on all feedback so far; and the agent continues on the
refined reward.

``pairing`` picks each round's pairs: ``within`` pairs new segments with each other; ``across``
pairs each with an earlier segment (offline or an earlier round); ``mixed`` does half of each.
Within-round pairs alone say little when the agent's behaviour is uniform (all segments near one
return): the near-tie filter drops most of them, and under range noise, whose sd is set by the whole
feedback set's spread, the rest are close to coin flips. An earlier segment is usually far away in
return, so the teacher can say "this new behaviour is worse than that known gait".

``action_noise`` widens a round's batch: the envs it is rolled out on get exploration noise graded
from none (the agent as it is) to ``action_noise`` (see :func:`graded_noise_policy`). An agent whose
play has settled yields near-uniform clips that the teacher can hardly tell apart; graded departures
from that play give within-round pairs that say which way from the current behaviour is better.

``refit`` decides what a round's fine-tuning may return. ``gated`` keeps r_θ unless an epoch lowers
the validation loss over all feedback; since the offline pairs outnumber a round's about 17 to 1,
that gate kept r_θ unchanged in 2-7 of 9 rounds of the default budget's runs (6.3 of 9 on average at
σ = .25), so most online feedback never reached the agent. ``trained`` returns the best trained
epoch, judged by a validation loss that weighs every rollout batch equally, so each round moves r_θ
(the default: on HalfCheetah-v4 at σ = .25 it lifted the mean final return from 65 % and 63 % of the
oracle, bt and rr, to 80 % and 88 %).

``scale`` picks the teacher's yardstick for within-round pairs: ``round`` (default) judges them on the
round's own spread (D, clip bounds and near-tie gap from the new batch's returns), so a stumbling
agent's clips are told apart by how they differ from each other, which is the local comparison
ResponseRank is built on; ``all`` on the scale of every segment so far, as the offline stage does,
which left early rounds with 0-19 of 60 pairs and, under range noise, labels 62-75 % right.

``keep_level`` serves each refitted r_θ at the level the agent already knew: an affine map chosen so
that the round's clips get the same mean and sd of per-step reward as before the refit. Preference
losses fix r_θ only up to an offset (and loosely in scale): over 54 refits of six HalfCheetah-v4 runs
the mean per-step reward on the round's clips moved by 0.42 of its sd (median; 90th percentile 1.6,
max 3.5) and its sd by a factor 0.67-1.49, and the agent's value function and VecNormalize's running
return statistics (weighted by all steps so far) lag behind such jumps. Every ranking, and so every
preference metric, is unchanged by the map. Measured so far it is no better than leaving the level
free (README), so it is off by default.

This is the iterative scheme of imitation's preference comparisons, grafted onto the offline
feedback of the earlier stages.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from rlpref.artifacts import atomic_write_json, load_npz, save_npz
from rlpref.control.algos import obs_norm_of
from rlpref.control.learned_reward import find_learned_reward_env
from rlpref.control.policies import graded_noise_policy, sb3_policy
from rlpref.control.query import QueryConfig, make_selector
from rlpref.control.records import Preferences, Segments
from rlpref.control.reward_net import (
    RewardModel,
    RewardTrainConfig,
    load_reward_model,
    save_reward_model,
    train_reward_model,
    validation_mask,
)
from rlpref.control.segments import rollout_batch, rollout_plan
from rlpref.control.teacher import TeacherConfig, label_pairs
from rlpref.schema import Section, build, rule

__all__ = [
    "OnlineCallback", "OnlineConfig", "OnlineFeedback", "PAIRINGS", "REFITS", "SCALES", "SCHEDULES", "relabel_replay_buffer",
]

SCHEDULES = ("even", "early")
PAIRINGS = ("within", "across", "mixed")
SCALES = ("all", "round")
REFITS = ("gated", "trained")


@dataclass(frozen=True)
class OnlineConfig(Section):
    SECTION = "online"

    rounds: int = rule(0, ge=0)  # 0: the offline protocol; R > 0: R feedback rounds during agent training
    n_feedback: int = rule(100, ge=2)  # comparisons labelled per round
    deterministic: bool = False  # roll the agent out as it trains (stochastic) or with its mean action
    n_envs: int = rule(8, ge=1)
    schedule: str = rule("even", choices=SCHEDULES)  # even: after each (R+1)-th of training; early: at T·(i/(R+1))^1.5
    pairing: str = rule("within", choices=PAIRINGS)  # within: new x new segments; across: new x earlier; mixed: half each
    scale: str = rule("round", choices=SCALES)  # the teacher's yardstick for within pairs: the round's returns, or all
    action_noise: float = rule(0.0, ge=0.0)  # extra exploration in a round's rollout, graded 0..this across its envs
    refit: str = rule("trained", choices=REFITS)  # trained: always take a trained epoch; gated: keep r_θ unless val loss drops
    keep_level: bool = False  # after a refit, serve r_θ at the mean and sd the agent saw on the round's clips
    refit_epochs: Optional[int] = rule(2, ge=1)  # at most this many epochs per refit (None: reward_model.max_epochs)
    refit_replay: Optional[float] = rule(None, ge=0.0)  # refit epochs: the round's pairs + this many times as many older ones (None: all)

    def due_steps(self, total_steps: int) -> list[int]:
        """Agent steps after which each round runs."""
        power = 1.0 if self.schedule == "even" else 1.5
        return [int(round(total_steps * ((i + 1) / (self.rounds + 1)) ** power)) for i in range(self.rounds)]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.action_noise > 0 and self.n_envs < 2:
            raise ValueError("online.action_noise grades noise across a round's envs, so it needs online.n_envs >= 2 "
                             f"(got {self.n_envs}); env 0 always acts without noise")

    @classmethod
    def from_mapping(cls, cfg: Optional[Mapping[str, Any]]) -> "OnlineConfig":
        """Typed and checked (:func:`rlpref.schema.build`)."""
        return build(cls, cfg)

    def key(self) -> Optional[dict]:
        """What changes the rounds (None when there are none: the offline protocol)."""
        return asdict(self) if self.rounds else None


@dataclass
class OnlineFeedback:
    """State of the loop: all segments and preferences so far, the fixed validation split, the model.

    ``rounds_log`` holds one dict per round (agent step, new segments' mean true return, the
    fine-tuned model's validation metrics), for ``results.json``.
    """

    env_cfg: Mapping[str, Any]
    cfg: OnlineConfig
    teacher: TeacherConfig
    reward_cfg: RewardTrainConfig
    loss_name: str
    gamma: float
    length: int
    oversample: float
    seed: int
    segments: Segments
    prefs: Preferences
    model: RewardModel
    val_mask: np.ndarray  # bool [P]: the reward-model stage's stored split, so its validation pairs stay unseen
    counts: Optional[list[int]] = None  # comparisons per round (None: cfg.n_feedback each), e.g. a query schedule
    query: QueryConfig = field(default_factory=QueryConfig)  # which of the round's candidate pairs are asked
    seconds_select: float = field(default=0.0, init=False)  # the last round's query selection
    n_start_segments: int = field(default=0, init=False)  # the feedback the loop started with (set on init)
    n_start_prefs: int = field(default=0, init=False)
    rounds_log: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.val_mask.dtype != bool or self.val_mask.shape != (len(self.prefs),):
            raise ValueError(f"val_mask must be bool [{len(self.prefs)}] (one per offline comparison), "
                             f"got {self.val_mask.dtype} {self.val_mask.shape}")
        self.n_start_segments, self.n_start_prefs = len(self.segments), len(self.prefs)

    def added(self) -> tuple[Segments, Preferences]:
        """What the rounds added to the feedback it started with (the starting feedback is stored elsewhere)."""
        return (self.segments.subset(np.arange(self.n_start_segments, len(self.segments))),
                self.prefs.subset(np.arange(self.n_start_prefs, len(self.prefs))))

    def round(self, agent, step: int) -> RewardModel:
        """Label the agent's current behaviour as a new rollout batch and fine-tune r_θ on all feedback."""
        r = len(self.rounds_log)
        t0 = time.perf_counter()
        batch_id = int(self.segments.batch.max()) + 1
        n = self.counts[r] if self.counts is not None else self.cfg.n_feedback
        steps, n_seg = rollout_plan(n, 1, self.length, self.oversample)
        rng = np.random.default_rng([self.seed, r, 11])
        policy = sb3_policy(agent, deterministic=self.cfg.deterministic)
        if self.cfg.action_noise > 0:
            policy = graded_noise_policy(policy, agent.action_space, self.cfg.action_noise,
                                         np.random.default_rng([self.seed, r, 12]))
        new = rollout_batch(self.env_cfg, policy,
                            obs_norm_of(agent.get_env()), steps=steps, n_segments=n_seg, length=self.length,
                            gamma=self.gamma, n_envs=self.cfg.n_envs, batch=batch_id, seed=self.seed + 50_000 + 1000 * r,
                            rng=rng, desc=f"online round {r + 1}")
        self.segments = Segments.concat([self.segments, new])
        t_rollout = time.perf_counter()
        labelled = self._label(batch_id, rng, n)
        t_label = time.perf_counter()
        log = {"round": r + 1, "agent_step": int(step), "batch": batch_id, "n_new_segments": len(new),
               "n_new_pairs": len(labelled), "new_segments_mean_return": float(new.returns.mean()),
               "new_segments_min_return": float(new.returns.min())}
        if len(labelled) >= 2:
            before = _step_reward_stats(self.model, new)
            self.prefs = Preferences.concat([self.prefs, labelled])
            new_val = validation_mask(len(labelled), self.reward_cfg.val_fraction, rng)
            self.val_mask = np.concatenate([self.val_mask, new_val])
            refit_cfg = (self.reward_cfg if self.cfg.refit_epochs is None
                         else replace(self.reward_cfg, max_epochs=self.cfg.refit_epochs))
            self.model, metrics, history = train_reward_model(
                self.segments, self.prefs, self.loss_name, refit_cfg, self.seed + 1 + r,
                init=self.model, val_mask=self.val_mask, keep_init=self.cfg.refit == "gated",
                balance_val=self.cfg.refit == "trained", replay=self.cfg.refit_replay,
                focus=np.arange(len(self.prefs)) >= len(self.prefs) - len(labelled),
            )
            after = _step_reward_stats(self.model, new)
            if self.cfg.keep_level:
                _set_level(self.model, after, before)
            log.update({"epochs": len(history), **{k: metrics[k] for k in ("val_accuracy", "val_true_accuracy",
                                                                            "pearson", "spearman") if k in metrics},
                        "reward_mean_before": before[0], "reward_sd_before": before[1],
                        "reward_mean_after": after[0], "reward_sd_after": after[1]})
        log["n_pairs_total"] = len(self.prefs)
        log["seconds_rollout"] = t_rollout - t0
        log["seconds_label"] = t_label - t_rollout
        log["seconds_select"] = self.seconds_select
        log["seconds_refit"] = time.perf_counter() - t_label
        self.rounds_log.append(log)
        return self.model

    def _label(self, batch_id: int, rng: np.random.Generator, n: int) -> Preferences:
        """The round's ``n`` pairs, all in stratum ``batch_id``. A nearly converged agent's batch may hold
        fewer distinct non-tied pairs than asked: take what exists (strict=False)."""
        split = {"within": (n, 0), "across": (0, n), "mixed": (n - n // 2, n // 2)}[self.cfg.pairing]
        parts, timer = [], []
        select = make_selector(self.query, self.model, self.segments, past=self.prefs, timer=timer)
        for pairing, count in zip(("within_batch", "across_batches"), split):
            if count:
                teacher = replace(self.teacher, pairing=pairing,
                                  scale="scope" if self.cfg.scale == "round" else "all")
                parts.append(label_pairs(self.segments, count, teacher, self.gamma, rng, batches=[batch_id],
                                         strict=False, select=select, pool=self.query.pool,
                                         exclude=self.prefs.pairs if select is not None else None))
        self.seconds_select = float(sum(timer))
        return parts[0] if len(parts) == 1 else Preferences.concat(parts)


def _step_reward_stats(model: RewardModel, segments: Segments) -> tuple[float, float]:
    """Mean and sd of r_θ over every step of ``segments``: logged before and after a refit, because the
    preference losses pin r_θ down only up to an offset (and loosely in scale), so a refit can move the
    level of the reward the agent is being trained on while leaving every ranking intact."""
    obs, acts, nxt = (a.reshape(-1, a.shape[-1]) for a in (segments.obs, segments.acts, segments.next_obs))
    r = model.predict(obs, acts, nxt if model.use_next_obs else None)
    return float(r.mean()), float(r.std())


@torch.no_grad()
def _set_level(model: RewardModel, current: tuple[float, float], target: tuple[float, float]) -> None:
    """Compose the model's served affine level so that (mean, sd) ``current`` becomes ``target``.
    A constant reward (sd 0) on either side keeps the scale and matches only the mean."""
    c = target[1] / current[1] if current[1] > 0 and target[1] > 0 else 1.0
    model.out_scale.mul_(c)
    model.out_shift.mul_(c).add_(target[0] - c * current[0])


@torch.no_grad()
def relabel_replay_buffer(buffer, model: RewardModel, policy, chunk: int = 4096) -> None:
    """Re-score every stored transition with the new r_θ (off-policy agents keep old rewards otherwise).

    SB3 stores raw observations (before VecNormalize) and the raw wrapper reward, but actions of a Box
    space scaled to [-1, 1]; r_θ was trained on env actions, so they are unscaled first.
    """
    size = buffer.buffer_size if buffer.full else buffer.pos
    if size == 0:
        return
    obs = buffer.observations[:size].reshape(size * buffer.n_envs, -1)
    nxt = (buffer.next_observations if not buffer.optimize_memory_usage
           else np.roll(buffer.observations, -1, axis=0))[:size].reshape(size * buffer.n_envs, -1)
    acts = buffer.actions[:size].reshape(size * buffer.n_envs, -1)
    if isinstance(policy.action_space, gym.spaces.Box):  # off-policy SB3 always stores scaled Box actions
        acts = policy.unscale_action(acts)
    out = np.empty(size * buffer.n_envs, dtype=np.float32)
    for start in range(0, out.size, chunk):
        sl = slice(start, start + chunk)
        out[sl] = model.predict_env(obs[sl], acts[sl], nxt[sl], policy.action_space)
    buffer.rewards[:size] = out.reshape(size, buffer.n_envs)


def query_schedule(total: int, iterations: int, initial_fraction: float, schedule: str) -> list[int]:
    """Comparisons per feedback iteration: ``initial_fraction`` of ``total`` up front (added to the first
    iteration), the rest shared by ``schedule`` over ``iterations`` evenly spaced points t ∈ [0, 1] of
    training: ``constant`` equally, ``hyperbolic`` ∝ 1/(1 + t) (more queries early, as imitation's
    PreferenceComparisons does). Shares are rounded so that they sum to ``total``."""
    if schedule not in QUERY_SCHEDULES:
        raise ValueError(f"unknown query schedule '{schedule}'; choose one of: {', '.join(QUERY_SCHEDULES)}")
    initial = int(total * initial_fraction)
    t = np.linspace(0.0, 1.0, iterations)
    weight = np.ones(iterations) if schedule == "constant" else 1.0 / (1.0 + t)
    raw = weight / weight.sum() * (total - initial)
    shares = np.floor(raw).astype(int)
    shares[np.argsort(shares - raw)[: (total - initial) - shares.sum()]] += 1  # largest remainders first
    shares[0] += initial
    return shares.tolist()


QUERY_SCHEDULES = ("constant", "hyperbolic")


class OnlineCallback(BaseCallback):
    """Runs :meth:`OnlineFeedback.round` at evenly spaced agent steps, between rollouts, and swaps r_θ."""

    def __init__(self, loop: OnlineFeedback, total_steps: int):
        super().__init__()
        self.loop = loop
        self.due = loop.cfg.due_steps(total_steps)
        self.seconds_outside_training = 0.0

    @property
    def timings(self) -> dict:
        """Seconds the rounds took in all, and per part (rollout, labelling, refit), for results.json."""
        logs = self.loop.rounds_log
        out = {"online_rounds": self.seconds_outside_training}
        for part in ("rollout", "label", "refit"):
            out[f"online_{part}"] = float(sum(r.get(f"seconds_{part}", 0.0) for r in logs))
        return out

    def _on_rollout_start(self) -> None:
        # Between rollouts, so PPO's rollout buffer never mixes rewards from two models.
        if not self.due or self.num_timesteps < self.due[0]:
            return
        while self.due and self.num_timesteps >= self.due[0]:  # rounds due within one rollout run once
            self.due.pop(0)
        t0 = time.perf_counter()
        # The round seeds torch for its fine-tuning; the agent's own random stream must not notice.
        with torch.random.fork_rng():
            model = self.loop.round(self.model, self.num_timesteps).eval()
        find_learned_reward_env(self.model.get_env()).model = model
        replay = getattr(self.model, "replay_buffer", None)
        if replay is not None:
            relabel_replay_buffer(replay, model, self.model.policy)
        seconds = time.perf_counter() - t0
        self.seconds_outside_training += seconds
        self.loop.rounds_log[-1]["seconds"] = seconds

    def _on_step(self) -> bool:
        return True

    def save_state(self, folder: Path) -> None:
        """The loop's state (the feedback the rounds added, the served r_θ, the split, the rounds still due)."""
        new_segments, new_prefs = self.loop.added()
        new_segments.save(folder / "online_segments.npz")
        new_prefs.save(folder / "online_preferences.npz")
        save_reward_model(self.loop.model, folder / "online_reward")
        save_npz(folder / "online_split.npz", {"val_mask": self.loop.val_mask})
        atomic_write_json(folder / "online_state.json", {"rounds_log": self.loop.rounds_log, "due": self.due,
                                                         "seconds_outside_training": self.seconds_outside_training})

    def load_state(self, folder: Path) -> RewardModel:
        """Restore what :meth:`save_state` wrote onto the loop's starting feedback; returns the r_θ the agent
        was being trained on."""
        loop = self.loop
        loop.segments = Segments.concat([loop.segments.subset(np.arange(loop.n_start_segments)),
                                         Segments.load(folder / "online_segments.npz")])
        loop.prefs = Preferences.concat([loop.prefs.subset(np.arange(loop.n_start_prefs)),
                                         Preferences.load(folder / "online_preferences.npz")])
        loop.model = load_reward_model(folder / "online_reward").eval()
        loop.val_mask = load_npz(folder / "online_split.npz", ["val_mask"])["val_mask"]
        if len(loop.val_mask) != len(loop.prefs):
            raise RuntimeError(f"resume state {folder} does not fit this run: {len(loop.prefs)} comparisons but a "
                               f"split of {len(loop.val_mask)}; delete the folder to start the stage over")
        info = json.loads((folder / "online_state.json").read_text())
        loop.rounds_log, self.due = info["rounds_log"], info["due"]
        self.seconds_outside_training = info["seconds_outside_training"]
        return loop.model
