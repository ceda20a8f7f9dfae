"""The protocols: which stages a run has, and whose play its first feedback iteration labels.

    oracle          agent                                            no feedback: the true reward (reward=oracle)
    offline         source → segments → feedback → reward_model → agent
                    the paper's: every comparison labels the source agent's checkpoints (and a random policy)
    offline_rounds  offline's chain, then rounds during agent training on the agent's own play
    online          first_iteration → agent (with rounds)
                    imitation's PreferenceComparisons loop: no source agent; the first iteration labels a
                    uniformly random policy's play, every later one the training agent's

Every feedback iteration, offline chunks and rounds alike, is :func:`rlpref.control.feedback.feedback_iteration`;
every stage is a :class:`rlpref.control.stages.Stage` whose cache key is its arguments. This module is the only
place that tells the protocols apart.
"""

from __future__ import annotations

from typing import Callable, Optional

from rlpref.control.config import RunSpec
from rlpref.control.feedback import RewardSetup
from rlpref.control.stages import (
    AgentTraining,
    RoundsPlan,
    Stage,
    feedback_stage,
    first_iteration_stage,
    offline_agent_stage,
    online_agent_stage,
    oracle_agent_stage,
    reward_model_stage,
    segments_stage,
    source_stage,
)

__all__ = ["PROTOCOL_TYPES", "Offline", "OfflineRounds", "Online", "Oracle", "Protocol", "protocol_for"]

OnEval = Optional[Callable[[dict], None]]


class Protocol:
    """A named way of gathering feedback: ``stages(spec)`` in the order they run."""

    name: str = ""
    first_policy: str = ""  # whose play the first feedback iteration labels
    recorded_name: Optional[str] = ""  # results.json's "protocol" (the oracle has none)

    def stages(self, spec: RunSpec, on_eval: OnEval = None) -> list[Stage]:
        raise NotImplementedError

    def n_feedback_first(self, spec: RunSpec) -> int:
        """Comparisons labelled before the agent trains (the offline feedback, or the first iteration's)."""
        return spec.protocol.counts(spec.budget.n_feedback)[0]


class Oracle(Protocol):
    name, recorded_name = "oracle", None
    first_policy = "none: the agent trains on the true reward"

    def n_feedback_first(self, spec: RunSpec) -> int:
        return 0

    def stages(self, spec: RunSpec, on_eval: OnEval = None) -> list[Stage]:
        return [Stage("agent", oracle_agent_stage, {"training": _training(spec, learned=False)}, resumable=True,
                      cost=_agent_cost(spec, []), hooks={"on_eval": on_eval})]


class Offline(Protocol):
    name = recorded_name = "offline"
    first_policy = "the source agent's checkpoints, and a uniformly random policy (batch 0)"

    def rounds(self, spec: RunSpec) -> Optional[RoundsPlan]:
        return None

    def stages(self, spec: RunSpec, on_eval: OnEval = None) -> list[Stage]:
        b, n = spec.budget, self.n_feedback_first(spec)
        reward = RewardSetup(spec.loss, spec.reward_train)
        rounds = self.rounds(spec)
        agent_inputs = ("reward_model",) if rounds is None else ("reward_model", "feedback", "segments")
        return [
            Stage("source", source_stage, {"env": spec.env, "algo": spec.agent.algo, "hp": spec.agent.source_hp,
                                           "steps": b.source_steps, "n_checkpoints": b.n_checkpoints,
                                           "seed": spec.seed}, resumable=True, cost=float(b.source_steps)),
            Stage("segments", segments_stage, {"env": spec.env, "algo": spec.agent.algo, "segments": spec.segments,
                                               "n_feedback": n, "n_checkpoints": b.n_checkpoints,
                                               "gamma": spec.gamma, "seed": spec.seed},
                  inputs=("source",), cost=n * spec.segments.length / 10),
            Stage("feedback", feedback_stage, {"teacher": spec.teacher, "query": spec.query,
                                               "reward": reward if spec.query.active else None, "n_feedback": n,
                                               "gamma": spec.gamma, "seed": spec.seed}, inputs=("segments",)),
            Stage("reward_model", reward_model_stage, {"reward": reward, "seed": spec.seed},
                  inputs=("feedback", "segments"), cost=30.0 * n),
            Stage("agent", offline_agent_stage, {"training": _training(spec), "reward": reward, "rounds": rounds},
                  inputs=agent_inputs, resumable=True, cost=_agent_cost(spec, rounds.counts if rounds else [], n),
                  hooks={"on_eval": on_eval}),
        ]


class OfflineRounds(Offline):
    name = recorded_name = "offline_rounds"
    first_policy = Offline.first_policy + "; each round the training agent's own play"

    def rounds(self, spec: RunSpec) -> RoundsPlan:
        p = spec.protocol
        return _rounds_plan(spec, p.counts(spec.budget.n_feedback)[1:], p.due(spec.budget.agent_steps))


class Online(Protocol):
    name = recorded_name = "online"
    first_policy = "a uniformly random policy (the untrained agent's stand-in); later iterations the training agent"

    def stages(self, spec: RunSpec, on_eval: OnEval = None) -> list[Stage]:
        p = spec.protocol
        counts = p.counts(spec.budget.n_feedback)
        rounds = _rounds_plan(spec, counts[1:], p.due(spec.budget.agent_steps))
        return [
            Stage("first_iteration", first_iteration_stage, {
                "env": spec.env, "n_envs": p.iteration.n_envs, "scale": p.iteration.scale,
                "length": spec.segments.length, "oversample": spec.segments.oversample, "teacher": spec.teacher,
                "n_feedback": counts[0], "gamma": spec.gamma, "seed": spec.seed},
                cost=counts[0] * spec.segments.length / 10),
            Stage("agent", online_agent_stage, {"training": _training(spec),
                                                "reward": RewardSetup(spec.loss, spec.reward_train), "rounds": rounds},
                  inputs=("first_iteration",), resumable=True, cost=_agent_cost(spec, counts[1:], counts[0]),
                  hooks={"on_eval": on_eval}),
        ]


PROTOCOL_TYPES = {p.name: p for p in (Offline(), OfflineRounds(), Online())}
ORACLE = Oracle()


def protocol_for(spec: RunSpec) -> Protocol:
    """``reward=oracle`` is the oracle; otherwise ``protocol=<name>``."""
    return ORACLE if spec.run.reward == "oracle" else PROTOCOL_TYPES[spec.protocol.name]


def _training(spec: RunSpec, learned: bool = True) -> AgentTraining:
    b = spec.budget
    return AgentTraining(env=spec.env, algo=spec.agent.algo, hp=spec.agent.hp, steps=b.agent_steps,
                         eval_every=b.eval_every, eval_episodes=b.eval_episodes, seed=spec.seed,
                         reward_norm=spec.run.reward_norm if learned else None)


def _rounds_plan(spec: RunSpec, counts: list[int], due: list[int]) -> RoundsPlan:
    return RoundsPlan(counts=tuple(counts), due=tuple(due), iteration=spec.protocol.iteration, first_iteration=1,
                      teacher=spec.teacher, query=spec.query, length=spec.segments.length,
                      oversample=spec.segments.oversample, gamma=spec.gamma)


def _agent_cost(spec: RunSpec, round_counts: list[int], n_before: int = 0) -> float:
    """The agent stage's rough cost in training steps (measured on HalfCheetah-v4: an evaluation step ~1/10 of
    a PPO training step, a round's rollout step ~1/10, its refit ~3 steps per comparison held)."""
    b = spec.budget
    episode = int(spec.env.max_episode_steps or 1000)
    evals = b.agent_steps / b.eval_every + 1
    held = n_before + sum(round_counts) / 2
    per_round = sum(round_counts) / max(len(round_counts), 1)
    return (b.agent_steps * 1.1 + evals * b.eval_episodes * episode / 10
            + len(round_counts) * (per_round * spec.segments.length / 10 + 3 * held))
