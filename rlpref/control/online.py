"""Rounds during agent training: label the agent's own behaviour and refine r_θ while it trains on it.

The offline protocol labels only the source agent's checkpoints, so r_θ is never told about behaviour
the source agent never showed (on HalfCheetah: running backwards, which a reward in |v_x| ranks as
well as running forwards). In ``protocol=offline_rounds`` (R = ``protocol.rounds``) and ``protocol=online`` (R = iterations − 1), at R
points of the agent's training (``timing=even``: after each (R+1)-th; ``early``: packed toward the start,
where a reward hack is still cheap to unlearn)
the current agent (stochastic, as it trains) is rolled out as a new rollout batch; the teacher
labels the round's pairs that involve that batch (a new stratum, as the paper's stratification by
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

Each round is one :func:`rlpref.control.feedback.feedback_iteration`; its settings are
``protocol.iteration.*`` (``pairing``, ``action_noise``, ``refit``, ``scale``, ``keep_level``, ...). This is the
iterative scheme of imitation's preference comparisons.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from rlpref.artifacts import atomic_write_json, load_npz, save_npz
from rlpref.control.algos import obs_norm_of
from rlpref.control.config import IterationConfig
from rlpref.control.feedback import (
    FeedbackState,
    RewardSetup,
    feedback_iteration,
    finetune,
    iteration_seeds,
    label_new_batch,
)
from rlpref.control.learned_reward import find_learned_reward_env
from rlpref.control.policies import graded_noise_policy, sb3_policy
from rlpref.control.query import QueryConfig
from rlpref.control.records import Preferences, Segments
from rlpref.control.reward_net import RewardModel, load_reward_model, save_reward_model
from rlpref.control.segments import rollout_batch, rollout_env_steps, rollout_plan
from rlpref.control.teacher import TeacherConfig

__all__ = ["OnlineCallback", "OnlineFeedback", "relabel_replay_buffer"]


@dataclass
class OnlineFeedback:
    """The rounds' shared state: the feedback so far (:class:`FeedbackState`) and what each round needs.

    ``counts[r]`` comparisons in round r; ``first_iteration``: the run's iteration index of round 0 (the
    seeds of iteration i are :func:`iteration_seeds`). ``rounds_log`` holds one dict per round (agent step,
    the new clips' mean true return, the refitted model's validation metrics), for ``results.json``.
    """

    env_cfg: Mapping[str, Any]
    it: IterationConfig
    teacher: TeacherConfig
    reward: RewardSetup
    query: QueryConfig
    length: int  # steps per clip
    oversample: float  # clips cut per comparison asked, over 2
    gamma: float
    seed: int
    state: FeedbackState
    counts: list[int]
    first_iteration: int = 1
    rounds_log: list[dict] = field(default_factory=list)

    @property
    def model(self) -> RewardModel:
        return self.state.model

    def round(self, agent, step: int) -> RewardModel:
        """Label the agent's current behaviour as a new rollout batch and refit r_θ on all feedback."""
        r = len(self.rounds_log)
        i = self.first_iteration + r
        rng, env_seed = iteration_seeds(self.seed, i)
        policy = sb3_policy(agent, deterministic=self.it.deterministic)
        if self.it.action_noise > 0:
            policy = graded_noise_policy(policy, agent.action_space, self.it.action_noise,
                                         np.random.default_rng([self.seed, i, 12]))
        steps, n_seg = rollout_plan(self.counts[r], 1, self.length, self.oversample)
        batch_id = int(self.state.segments.batch.max()) + 1

        def rollout() -> Segments:
            return rollout_batch(self.env_cfg, policy, obs_norm_of(agent.get_env()), steps=steps, n_segments=n_seg,
                                 length=self.length, gamma=self.gamma, n_envs=self.it.n_envs,
                                 batch=batch_id, seed=env_seed, rng=rng, desc=f"online round {r + 1}")

        log = feedback_iteration(self.state, self.counts[r], rng, rollout=rollout,
                                 label=label_new_batch(self.teacher, self.query, self.it, self.gamma),
                                 refit=finetune(self.reward, self.it, self.seed + 1 + r))
        self.rounds_log.append({"round": r + 1, "agent_step": int(step), **log,
                                "env_steps": rollout_env_steps(steps, self.it.n_envs, self.length)})
        return self.state.model

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


class OnlineCallback(BaseCallback):
    """Runs :meth:`OnlineFeedback.round` at evenly spaced agent steps, between rollouts, and swaps r_θ."""

    def __init__(self, loop: OnlineFeedback, due: list[int]):
        super().__init__()
        self.loop = loop
        self.due = list(due)  # agent steps after which each round runs
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
        new_segments, new_prefs = self.loop.state.added()
        new_segments.save(folder / "online_segments.npz")
        new_prefs.save(folder / "online_preferences.npz")
        save_reward_model(self.loop.model, folder / "online_reward")
        save_npz(folder / "online_split.npz", {"val_mask": self.loop.state.val_mask})
        atomic_write_json(folder / "online_state.json", {"rounds_log": self.loop.rounds_log, "due": self.due,
                                                         "seconds_outside_training": self.seconds_outside_training})

    def load_state(self, folder: Path) -> RewardModel:
        """Restore what :meth:`save_state` wrote onto the loop's starting feedback; returns the r_θ the agent
        was being trained on."""
        loop, st = self.loop, self.loop.state
        st.segments = Segments.concat([st.segments.subset(np.arange(st.n_start_segments)),
                                       Segments.load(folder / "online_segments.npz")])
        st.prefs = Preferences.concat([st.prefs.subset(np.arange(st.n_start_prefs)),
                                       Preferences.load(folder / "online_preferences.npz")])
        st.model = load_reward_model(folder / "online_reward").eval()
        st.val_mask = load_npz(folder / "online_split.npz", ["val_mask"])["val_mask"]
        if len(st.val_mask) != len(st.prefs):
            raise RuntimeError(f"resume state {folder} does not fit this run: {len(st.prefs)} comparisons but a "
                               f"split of {len(st.val_mask)}; delete the folder to start the stage over")
        info = json.loads((folder / "online_state.json").read_text())
        loop.rounds_log, self.due = info["rounds_log"], info["due"]
        self.seconds_outside_training = info["seconds_outside_training"]
        return st.model
