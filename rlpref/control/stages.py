"""The control track's stages: each a function of the typed sections it reads, declared as a :class:`Stage`.

A :class:`Stage` holds its build function and the keyword arguments it will be called with; its cache
key is derived from exactly those arguments (:meth:`Stage.key`), so what a stage reads and what keys its
artefact are decided in one place and cannot drift. Inputs are earlier stages' artefacts, by name; their
keys are chained into this one's by the store. The protocols (:mod:`rlpref.control.protocols`) say which
stages a run has.

    source          PPO/SAC on the true reward, K checkpoints                  (train_source)
    segments        every checkpoint rolled out, clips cut                     -> Segments
    feedback        the teacher's labels (active queries: chunks)              -> Preferences
    reward_model    r_θ fitted on the feedback                                 -> RewardModel + metrics
    first_iteration protocol=online: a random policy's clips, labelled         -> Segments + Preferences
    agent           a fresh agent on r_θ (+ rounds), evaluated on the true return
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from envs import make_env
from rlpref.artifacts import Artifact, atomic_write_json, atomic_write_text, load_npz, save_npz
from rlpref.control.agent import AgentResult, train_agent
from rlpref.control.config import EnvConfig, IterationConfig, SegmentsConfig
from rlpref.control.feedback import (
    FeedbackState,
    RewardSetup,
    feedback_iteration,
    fit_each_chunk,
    iteration_seeds,
    label_all,
    label_new_batch,
)
from rlpref.control.online import OnlineCallback, OnlineFeedback
from rlpref.control.policies import random_policy
from rlpref.control.query import QueryConfig
from rlpref.control.records import Preferences, Segments, curve_csv
from rlpref.control.reward_net import (
    load_reward_model,
    save_reward_model,
    train_reward_model,
    validation_mask,
)
from rlpref.control.segments import collect_segments, rollout_batch, rollout_env_steps, rollout_plan
from rlpref.control.source import train_source
from rlpref.control.teacher import TeacherConfig
from rlpref.progress import advance_stage
from rlpref.schema import ConfigError

__all__ = [
    "AgentTraining", "RoundsPlan", "Stage", "feedback_stage", "first_iteration_stage", "offline_agent_stage",
    "online_agent_stage", "oracle_agent_stage", "reward_model_stage", "segments_stage", "source_stage",
]
log = logging.getLogger("rlpref")


def key_of(value: Any) -> Any:
    """The part of a stage argument that keys its artefact: a section's own ``key()`` where it has one (it
    leaves out what the section holds but does not change, e.g. an env's hyperparameters), else its fields,
    each keyed the same way."""
    if hasattr(value, "key") and callable(value.key):
        return value.key()
    if dataclasses.is_dataclass(value):
        return {f.name: key_of(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


@dataclass(frozen=True)
class Stage:
    """One stage of a run: ``build(out, [partial,] inputs, **args)`` writes the artefact into ``out``.

    ``args`` are the typed sections and values the build reads: the cache key is derived from them alone.
    ``hooks`` are passed too but do not change the artefact (progress, logging). ``resumable`` builds also
    get ``partial``, a folder that survives a kill. ``cost``: rough cost in agent-training steps (ETA).
    """

    name: str
    build: Callable[..., dict]
    args: Mapping[str, Any]
    inputs: tuple[str, ...] = ()
    resumable: bool = False
    cost: float = 1.0
    hooks: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> dict:
        return {name: key_of(value) for name, value in self.args.items()}


# -- the offline chain ---------------------------------------------------------------------------------------


def source_stage(out: Path, partial: Optional[Path], inputs: Mapping[str, Artifact], *, env: EnvConfig, algo: str,
                 hp: dict, steps: int, n_checkpoints: int, seed: int) -> dict:
    return train_source(env.mapping(), algo, hp, steps, n_checkpoints, seed, out, resume_dir=partial)


def segments_stage(out: Path, inputs: Mapping[str, Artifact], *, env: EnvConfig, algo: str, segments: SegmentsConfig,
                   n_feedback: int, n_checkpoints: int, gamma: float, seed: int) -> dict:
    """Every rollout batch: a uniformly random policy (batch 0) and each of the source's checkpoints."""
    ckpts = [inputs["source"].path / f"ckpt_{k + 1}" for k in range(n_checkpoints)]
    segs = collect_segments(env.mapping(), algo, ckpts, n_feedback=n_feedback, length=segments.length, gamma=gamma,
                            oversample=segments.oversample, n_envs=segments.n_envs,
                            deterministic=segments.deterministic, seed=seed)
    segs.save(out / "segments.npz")
    per_batch = [float(segs.returns[segs.batch == b].mean()) for b in np.unique(segs.batch)]
    steps = rollout_plan(n_feedback, n_checkpoints + 1, segments.length, segments.oversample)[0]
    return {"n_segments": len(segs), "mean_return_per_batch": per_batch,
            "env_steps": (n_checkpoints + 1) * rollout_env_steps(steps, segments.n_envs, segments.length)}


def feedback_stage(out: Path, inputs: Mapping[str, Artifact], *, teacher: TeacherConfig, query: QueryConfig,
                   reward: Optional[RewardSetup], n_feedback: int, gamma: float, seed: int) -> dict:
    """The teacher's labels; with an active ``query`` rule in ``query.chunks`` feedback iterations: the first
    at random, each later one chosen among ``query.pool`` x as many candidates by r_θ fitted on the chunks
    before (``reward``: how; None under random queries, where no model is fitted)."""
    state = FeedbackState(Segments.load(inputs["segments"].path / "segments.npz"))
    rng = np.random.default_rng(seed + 7)
    sizes = [n_feedback] if not query.active else np.diff(np.linspace(0, n_feedback, query.chunks + 1).round()).astype(int)
    seconds_select = 0.0
    for c, size in enumerate(sizes):
        refit = fit_each_chunk(reward, seed + 1000 * (c + 1), last=c == len(sizes) - 1) if query.active else None
        seconds_select += feedback_iteration(state, int(size), rng, label=label_all(teacher, query, gamma),
                                             refit=refit)["seconds_select"]
    state.prefs.save(out / "preferences.npz")
    return {"n_pairs": len(state.prefs), "label_accuracy": state.prefs.label_accuracy(), "seconds_select": seconds_select}


def reward_model_stage(out: Path, inputs: Mapping[str, Artifact], *, reward: RewardSetup, seed: int) -> dict:
    """r_θ on the feedback; its validation split is stored (``split.npz``) for the rounds to keep."""
    segments = Segments.load(inputs["segments"].path / "segments.npz")
    prefs = Preferences.load(inputs["feedback"].path / "preferences.npz")
    val_mask = validation_mask(len(prefs), reward.train.val_fraction, np.random.default_rng(seed))
    model, metrics, history = train_reward_model(segments, prefs, reward.loss, reward.train, seed,
                                                 val_mask=val_mask, on_epoch=advance_stage)
    save_reward_model(model, out)
    save_npz(out / "split.npz", {"val_mask": val_mask})
    atomic_write_json(out / "history.json", history)
    atomic_write_json(out / "metrics.json", metrics)
    return {"metrics": metrics}


# -- protocol=online's first iteration -------------------------------------------------------------------------


def first_iteration_stage(out: Path, inputs: Mapping[str, Artifact], *, env: EnvConfig, n_envs: int, scale: str,
                          length: int, oversample: float, teacher: TeacherConfig, n_feedback: int, gamma: float,
                          seed: int) -> dict:
    """Feedback iteration 0 of ``protocol=online``: a uniformly random policy (the untrained agent's stand-in)
    rolled out as batch 0 over ``n_envs`` envs, ``n_feedback`` pairs labelled inside it on the yardstick
    ``scale``. No r_θ yet (so no query rule either): bt and rr share it."""
    rng, env_seed = iteration_seeds(seed, 0)
    steps, n_segments = rollout_plan(n_feedback, 1, length, oversample)
    made = make_env(env.id, env_kwargs=env.env_kwargs)
    policy = random_policy(made.action_space, seed)
    made.close()
    state = FeedbackState()

    def rollout() -> Segments:
        return rollout_batch(env.mapping(), policy, None, steps=steps, n_segments=n_segments, length=length,
                             gamma=gamma, n_envs=n_envs, batch=0, seed=env_seed, rng=rng,
                             desc="online protocol: first iteration")

    label = label_new_batch(teacher, QueryConfig(), IterationConfig(n_envs=n_envs, scale=scale), gamma)
    log = feedback_iteration(state, n_feedback, rng, rollout=rollout, label=label, refit=None)
    state.segments.save(out / "segments.npz")
    state.prefs.save(out / "preferences.npz")
    return {"n_pairs": len(state.prefs), "n_segments": len(state.segments), "log": log,
            "env_steps": rollout_env_steps(steps, n_envs, length)}


# -- the agent ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentTraining:
    """What trains and evaluates the agent: env, algorithm and hyperparameters, steps, evaluation and seed;
    ``reward_norm`` (how it sees r_θ) is None for the oracle, which trains on the true reward."""

    env: EnvConfig
    algo: str
    hp: dict
    steps: int
    eval_every: int
    eval_episodes: int
    seed: int
    reward_norm: Optional[str] = None



@dataclass(frozen=True)
class RoundsPlan:
    """The feedback rounds during agent training: comparisons per round, the agent steps after which each
    runs, how each runs, and the run's iteration index of the first (its seeds, see ``iteration_seeds``)."""

    counts: tuple[int, ...]
    due: tuple[int, ...]
    iteration: IterationConfig
    first_iteration: int
    teacher: TeacherConfig
    query: QueryConfig
    length: int  # steps per clip (segments.length) and clips cut per comparison asked (segments.oversample)
    oversample: float
    gamma: float


def oracle_agent_stage(out: Path, partial: Optional[Path], inputs: Mapping[str, Artifact], *,
                       training: AgentTraining, on_eval=None) -> dict:
    """The upper reference: the agent on the true reward."""
    return _train(out, partial, training, None, None, on_eval)


def offline_agent_stage(out: Path, partial: Optional[Path], inputs: Mapping[str, Artifact], *,
                        training: AgentTraining, reward: RewardSetup, rounds: Optional[RoundsPlan],
                        on_eval=None) -> dict:
    """The agent on the offline r_θ; with ``rounds``, they start from the offline feedback and keep its
    validation split."""
    rm = inputs["reward_model"].path
    model = load_reward_model(rm)
    state = FeedbackState(model=model) if rounds is None else FeedbackState(
        Segments.load(inputs["segments"].path / "segments.npz"),
        Preferences.load(inputs["feedback"].path / "preferences.npz"),
        load_npz(rm / "split.npz", ["val_mask"])["val_mask"], model)
    return _train(out, partial, training, state, (reward, rounds), on_eval)


def online_agent_stage(out: Path, partial: Optional[Path], inputs: Mapping[str, Artifact], *,
                       training: AgentTraining, reward: RewardSetup, rounds: RoundsPlan, on_eval=None) -> dict:
    """``protocol=online``: r_θ fitted on the first iteration's feedback, then the agent with the rounds."""
    first = inputs["first_iteration"].path
    state = FeedbackState(Segments.load(first / "segments.npz"), Preferences.load(first / "preferences.npz"))
    if len(state.prefs) < 4:
        raise ConfigError(f"the first feedback iteration labelled {len(state.prefs)} pairs of the random policy's "
                          "clips, too few to fit r_θ: its clips barely differ in return. Lower teacher.near_tie "
                          "(0: label near-ties too), lengthen segments.length, or raise budget.n_feedback")
    state.val_mask = validation_mask(len(state.prefs), reward.train.val_fraction,
                                     np.random.default_rng(training.seed))
    state.model, metrics, _ = train_reward_model(state.segments, state.prefs, reward.loss, reward.train,
                                                 training.seed, val_mask=state.val_mask)
    manifest = _train(out, partial, training, state, (reward, rounds), on_eval)
    return {**manifest, "initial_pairs": state.n_start_prefs, "initial_reward_model": metrics,
            "query_counts": [state.n_start_prefs, *rounds.counts]}


def _train(out: Path, partial: Optional[Path], training: AgentTraining, state: Optional[FeedbackState],
           rounds: Optional[tuple[RewardSetup, Optional[RoundsPlan]]], on_eval) -> dict:
    """Train and evaluate the agent on ``state.model`` (None: the true reward), running the rounds if any."""
    loop, callbacks = None, []
    if rounds is not None and rounds[1] is not None:
        reward, plan = rounds
        loop = OnlineFeedback(env_cfg=training.env.mapping(), it=plan.iteration, teacher=plan.teacher, reward=reward,
                              query=plan.query, length=plan.length, oversample=plan.oversample, gamma=plan.gamma, seed=training.seed,
                              state=state, counts=list(plan.counts), first_iteration=plan.first_iteration)
        callbacks.append(OnlineCallback(loop, list(plan.due)))
    result = train_agent(training.env.mapping(), training.algo, training.hp,
                         reward_model=state.model if state is not None else None, total_steps=training.steps,
                         eval_every=training.eval_every, eval_episodes=training.eval_episodes,
                         seed=training.seed + 100, out_dir=out / "agent", on_eval=on_eval, callbacks=callbacks,
                         resume_dir=partial, reward_norm=training.reward_norm or "return")
    atomic_write_text(out / "curve.csv", curve_csv(result.curve))
    atomic_write_json(out / "train_episodes.json", result.train_episode_returns)
    manifest = _agent_manifest(result)
    if loop is not None:
        manifest["online_rounds"] = _save_rounds(loop, out)
    return manifest


def _agent_manifest(result: AgentResult) -> dict:
    return {"final_return": result.final_return, "max_return": result.max_return, "auc": result.auc,
            "steps_per_second": result.steps_per_second, "final_behaviour": result.behaviour,
            "agent_timings": result.timings}


def _save_rounds(loop: OnlineFeedback, out: Path) -> list[dict]:
    """The reward the agent finished on, and what the rounds added (the feedback they started from is an
    earlier stage's artefact)."""
    save_reward_model(loop.model, out / "online_reward")
    new_segments, new_prefs = loop.state.added()
    new_segments.save(out / "online_segments.npz")
    new_prefs.save(out / "online_preferences.npz")
    n_segments = loop.state.n_start_segments
    atomic_write_json(out / "online.json", {
        "rounds": loop.rounds_log, "rounds_planned": len(loop.counts),
        "index_note": "online_preferences index the earlier stage's segments "
                      f"({n_segments} of them) followed by online_segments",
        "n_offline_segments": n_segments,
    })
    if len(loop.rounds_log) < len(loop.counts):
        log.warning("only %d of %d feedback rounds ran: rounds fell less than one rollout apart or after the "
                    "last rollout; fewer rounds or more budget.agent_steps", len(loop.rounds_log), len(loop.counts))
    return loop.rounds_log
