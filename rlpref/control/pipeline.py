"""The control track: each stage a named function, and the short driver that chains them.

    spec     = RunSpec.from_config(cfg)                       typed, every stage's config resolved
    source   = build_source(spec)                             PPO/SAC on the true reward, K checkpoints
    segments = build_segments(spec, checkpoints)              -> Segments
    prefs    = build_feedback(spec, segments)                 -> Preferences
    reward   = build_reward_model(spec, segments, prefs)      -> RewardModel + metrics
    agent    = build_agent(spec, reward, segments, prefs)     fresh agent on r_θ (+ online rounds), true-return curve
    results  = gather(...)                                    -> the run folder, results.json

:class:`StageRunner` is the one wrapper around a stage: the artefact cache (key from the stage's config and
its inputs' keys, so ``loss=bt`` and ``loss=rr`` share source and feedback and a killed run resumes at its
first missing stage), locks, timings and the run's progress line. Stage functions only build.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from envs import make_env
from rlpref.artifacts import (
    Artifact,
    ArtifactStore,
    atomic_write_json,
    atomic_write_text,
    load_npz,
    save_npz,
)
from rlpref.control.agent import AgentResult, train_agent
from rlpref.control.config import REWARDS, RunSpec
from rlpref.control.online import OnlineCallback, OnlineFeedback
from rlpref.control.policies import random_policy
from rlpref.control.query import make_selector
from rlpref.control.records import Preferences, Segments, curve_csv, read_curve
from rlpref.control.reward_net import (
    RewardModel,
    load_reward_model,
    save_reward_model,
    train_reward_model,
    validation_mask,
)
from rlpref.control.segments import collect_segments, rollout_batch, rollout_plan
from rlpref.control.source import train_source
from rlpref.control.teacher import label_pairs
from rlpref.progress import RunProgress, advance_stage, format_seconds
from rlpref.runtime import pin_threads

__all__ = ["REWARDS", "RunSpec", "StageRunner", "run_pipeline", "validate"]

log = logging.getLogger("rlpref")

#: Before a run has measured its own pace: seconds per training step of one core (laptop-class CPU).
_PRIOR_SECONDS_PER_STEP = {"ppo": 1 / 500, "sac": 1 / 100}


def validate(cfg: Mapping[str, Any]) -> RunSpec:
    """Fail early, before any compute, with the cause and the fix: resolve the run's :class:`RunSpec`."""
    return RunSpec.from_config(cfg)


@dataclass
class StageRunner:
    """Runs a stage through the artefact cache: reuses it when its key exists, else builds it under a lock;
    records each stage's seconds and whether it was reused, and drives the run's progress line."""

    store: ArtifactStore
    progress: RunProgress
    timings: dict = field(default_factory=dict)
    reused: dict = field(default_factory=dict)

    def run(self, name: str, config: Mapping[str, Any], inputs: list[str], build: Callable[..., dict],
            resumable: bool = False) -> Artifact:
        """``build(out)``, or ``build(out, partial)`` when ``resumable``: ``partial`` keeps the progress of a
        killed build (checkpoints, training state) for the next one to continue from."""
        t0 = time.perf_counter()
        key = self.store.key(name, config, inputs)
        with self.progress.stage(name, self.store.exists(name, key)):
            if resumable:
                partial = self.store.partial_path(name, key)
                art = self.store.get_or_build(name, config, inputs, lambda d: build(d, partial))
            else:
                art = self.store.get_or_build(name, config, inputs, build)
        self.timings[name] = time.perf_counter() - t0 if art.built else float(art.manifest.get("seconds", 0.0))
        self.reused[name] = not art.built
        return art


# -- the stages: config + input records -> output files and a manifest ---------------------------------


def build_source(spec: RunSpec, out: Path, partial: Optional[Path] = None) -> dict:
    return train_source(spec.env, spec.algo, spec.budget.source_steps, spec.budget.n_checkpoints,
                        spec.seed, out, resume_dir=partial)


def build_segments(spec: RunSpec, checkpoints: list[Path], out: Path) -> dict:
    s = spec.segments
    segs = collect_segments(spec.env, spec.algo, checkpoints, n_feedback=spec.n_feedback, length=s.length,
                            gamma=spec.gamma, oversample=s.oversample, n_envs=s.n_envs,
                            deterministic=s.deterministic, seed=spec.seed)
    segs.save(out / "segments.npz")
    per_batch = [float(segs.returns[segs.batch == b].mean()) for b in np.unique(segs.batch)]
    return {"n_segments": len(segs), "mean_return_per_batch": per_batch}


def build_feedback(spec: RunSpec, segments: Segments, out: Path) -> dict:
    """The teacher's labels; with an active ``query`` rule, in ``query.chunks`` chunks: the first at random,
    each later one chosen among ``query.pool`` × as many candidates by r_θ fitted on the chunks before."""
    rng = np.random.default_rng(spec.seed + 7)
    q = spec.query
    sizes = [spec.n_feedback] if not q.active else np.diff(np.linspace(0, spec.n_feedback, q.chunks + 1).round()).astype(int)
    prefs = label_pairs(segments, int(sizes[0]), spec.teacher, spec.gamma, rng)
    timer: list[float] = []
    for c, size in enumerate(sizes[1:], start=1):
        model, _, _ = train_reward_model(segments, prefs, spec.loss, spec.reward_train, spec.seed + 1000 * c)
        select = make_selector(q, model, segments, past=prefs, timer=timer)
        more = label_pairs(segments, int(size), spec.teacher, spec.gamma, rng, select=select, pool=q.pool,
                           exclude=prefs.pairs)
        prefs = Preferences.concat([prefs, more])
    prefs.save(out / "preferences.npz")
    return {"n_pairs": len(prefs), "label_accuracy": prefs.label_accuracy(), "seconds_select": sum(timer)}


def build_reward_model(spec: RunSpec, segments: Segments, prefs: Preferences, out: Path) -> dict:
    """r_θ on the feedback; its validation split is stored (``split.npz``) for the online rounds to keep."""
    val_mask = validation_mask(len(prefs), spec.reward_train.val_fraction, np.random.default_rng(spec.seed))
    model, metrics, history = train_reward_model(segments, prefs, spec.loss, spec.reward_train, spec.seed,
                                                 val_mask=val_mask, on_epoch=advance_stage)
    save_reward_model(model, out)
    save_npz(out / "split.npz", {"val_mask": val_mask})
    atomic_write_json(out / "history.json", history)
    atomic_write_json(out / "metrics.json", metrics)
    return {"metrics": metrics}


def build_agent(spec: RunSpec, model: Optional[RewardModel], segments: Optional[Segments],
                prefs: Optional[Preferences], val_mask: Optional[np.ndarray], out: Path,
                on_eval: Optional[Callable[[dict], None]] = None, partial: Optional[Path] = None,
                counts: Optional[list[int]] = None) -> dict:
    """A fresh agent on r_θ (``model``; None = the true reward), with the online rounds when configured
    (they extend ``segments``/``prefs`` and keep the reward model's validation split ``val_mask``;
    ``counts``: comparisons per round, else ``online.n_feedback`` each)."""
    loop = None
    callbacks = []
    if spec.online_rounds:
        loop = OnlineFeedback(env_cfg=spec.env, cfg=spec.rounds_config(), teacher=spec.teacher,
                              reward_cfg=spec.reward_train, loss_name=spec.loss, gamma=spec.gamma,
                              length=spec.segments.length, oversample=spec.segments.oversample, seed=spec.seed,
                              segments=segments, prefs=prefs, model=model, val_mask=val_mask, counts=counts,
                              query=spec.query)
        callbacks.append(OnlineCallback(loop, spec.budget.agent_steps))
    result = train_agent(spec.env, spec.algo, reward_model=model, total_steps=spec.budget.agent_steps,
                         eval_every=spec.budget.eval_every, eval_episodes=spec.budget.eval_episodes,
                         seed=spec.seed + 100, out_dir=out / "agent", hp_overrides=spec.cfg["agent"].get("overrides"),
                         on_eval=on_eval, callbacks=callbacks, resume_dir=partial, reward_norm=spec.run.reward_norm)
    atomic_write_text(out / "curve.csv", curve_csv(result.curve))
    atomic_write_json(out / "train_episodes.json", result.train_episode_returns)
    manifest = _agent_manifest(result)
    if loop is not None:
        manifest["online_rounds"] = _save_online(loop, spec, out)
    return manifest


def build_online_protocol(spec: RunSpec, out: Path, on_eval: Optional[Callable[[dict], None]] = None,
                          partial: Optional[Path] = None) -> dict:
    """``protocol=online``: the first iteration's feedback from the untrained (random) policy, r_θ fitted on
    it, then :func:`build_agent` with the remaining iterations as online rounds. No source stage."""
    counts = spec.query_counts()
    steps, n_segments = rollout_plan(counts[0], 1, spec.segments.length, spec.segments.oversample)
    rng = np.random.default_rng([spec.seed, 0, 11])
    env = make_env(spec.env["id"], env_kwargs=spec.env.get("env_kwargs"))
    segments = rollout_batch(spec.env, random_policy(env.action_space, spec.seed), None, steps=steps,
                             n_segments=n_segments, length=spec.segments.length, gamma=spec.gamma,
                             n_envs=spec.online.n_envs, batch=0, seed=spec.seed + 50_000, rng=rng,
                             desc="online protocol: first iteration")
    env.close()
    teacher = replace(spec.teacher, pairing="within_batch", scale="scope" if spec.online.scale == "round" else "all")
    prefs = label_pairs(segments, counts[0], teacher, spec.gamma, rng, batches=[0], strict=False)
    val_mask = validation_mask(len(prefs), spec.reward_train.val_fraction, np.random.default_rng(spec.seed))
    model, metrics, _ = train_reward_model(segments, prefs, spec.loss, spec.reward_train, spec.seed, val_mask=val_mask)
    manifest = build_agent(spec, model, segments, prefs, val_mask, out, on_eval, partial, counts=counts[1:])
    segments.save(out / "initial_segments.npz")  # the later iterations' are online_segments.npz
    prefs.save(out / "initial_preferences.npz")
    return {**manifest, "initial_pairs": len(prefs), "initial_reward_model": metrics, "query_counts": counts}


def _agent_manifest(result: AgentResult) -> dict:
    return {"final_return": result.final_return, "max_return": result.max_return, "auc": result.auc,
            "steps_per_second": result.steps_per_second, "final_behaviour": result.behaviour,
            "agent_timings": result.timings}


def _save_online(loop: OnlineFeedback, spec: RunSpec, out: Path) -> list[dict]:
    """The reward the agent finished on, and what the rounds added (new batches only: the offline segments
    and pairs are the earlier stages' artefacts)."""
    save_reward_model(loop.model, out / "online_reward")
    new_segments, new_prefs = loop.added()
    new_segments.save(out / "online_segments.npz")
    new_prefs.save(out / "online_preferences.npz")
    n_segments = loop.n_start_segments
    atomic_write_json(out / "online.json", {
        "rounds": loop.rounds_log, "rounds_planned": spec.rounds_config().rounds,
        "index_note": "online_preferences index the offline segments (segments stage, "
                      f"{n_segments} of them) followed by online_segments",
        "n_offline_segments": n_segments,
    })
    if len(loop.rounds_log) < spec.rounds_config().rounds:
        log.warning("only %d of %d online rounds ran: rounds fell less than one rollout apart or after the "
                    "last rollout; lower online.rounds or raise budget.agent_steps",
                    len(loop.rounds_log), spec.rounds_config().rounds)
    return loop.rounds_log


# -- the driver ---------------------------------------------------------------------------------------


def run_pipeline(cfg: Mapping[str, Any], run_dir: Path, logger=None) -> dict:
    """Run (or resume) every stage for one resolved config; write the results into ``run_dir``."""
    spec = RunSpec.from_config(cfg)
    pin_threads(spec.run.torch_threads)
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = ArtifactStore(Path(cfg["cache_dir"]))
    stages = StageRunner(store, RunProgress(spec.stage_costs(), _PRIOR_SECONDS_PER_STEP[spec.algo]))

    segments = prefs = rm = fb = None
    if spec.online_protocol:
        ag = stages.run("agent", spec.agent_key(), [],
                        lambda d, p: build_online_protocol(spec, d, _curve_logger(logger), p), resumable=True)
        return _finish(spec, run_dir, stages, ag, None, None, logger, t_start)
    if spec.learned:
        src = stages.run("source", spec.source_key(), [], lambda d, p: build_source(spec, d, p), resumable=True)
        ckpts = [src.path / f"ckpt_{k + 1}" for k in range(spec.budget.n_checkpoints)]
        seg = stages.run("segments", spec.segments_key(), [src.key], lambda d: build_segments(spec, ckpts, d))
        segments = Segments.load(seg.path / "segments.npz")
        fb = stages.run("feedback", spec.feedback_key(), [seg.key], lambda d: build_feedback(spec, segments, d))
        prefs = Preferences.load(fb.path / "preferences.npz")
        rm = stages.run("reward_model", spec.reward_key(), [fb.key, seg.key],
                        lambda d: build_reward_model(spec, segments, prefs, d))
        _log_reward_model(spec, rm.manifest["metrics"], logger)

    def build(d: Path, partial: Path) -> dict:
        served = load_reward_model(rm.path) if rm is not None else None
        val_mask = load_npz(rm.path / "split.npz", ["val_mask"])["val_mask"] if rm is not None else None
        return build_agent(spec, served, segments, prefs, val_mask, d, _curve_logger(logger), partial)

    ag = stages.run("agent", spec.agent_key(), [rm.key] if rm is not None else [], build, resumable=True)
    return _finish(spec, run_dir, stages, ag, rm, prefs, logger, t_start)


def _finish(spec: RunSpec, run_dir: Path, stages: StageRunner, ag: Artifact, rm: Optional[Artifact],
            prefs: Optional[Preferences], logger, t_start: float) -> dict:
    """Gather the run folder, write results.json, log the summary."""
    _gather(run_dir, ag, rm, spec)
    stages.timings["total"] = time.perf_counter() - t_start
    results = _results(spec, ag, rm, prefs, stages, read_curve(run_dir / "curve.csv"))
    atomic_write_json(run_dir / "results.json", results)
    if logger is not None:
        for rnd in results["online_rounds"] or []:
            logger.log_metrics({f"online/{k}": v for k, v in rnd.items() if k not in ("round", "agent_step")},
                               int(rnd["agent_step"]))
        logger.log_summary(results)
    log.info("final true return %.1f (max %.1f) after %d agent steps; %s in all", results["final_return"],
             results["max_return"], results["agent_steps"], format_seconds(stages.timings["total"]))
    return results


def _log_reward_model(spec: RunSpec, metrics: dict, logger) -> None:
    if logger is not None:
        logger.log_metrics({f"reward_model/{k}": v for k, v in metrics.items() if v is not None}, 0)
    log.info("reward model (%s): val accuracy %.3f, Spearman %.3f with the true return", spec.loss,
             metrics.get("val_accuracy") or float("nan"), metrics.get("spearman") or float("nan"))


def _curve_logger(logger) -> Optional[Callable[[dict], None]]:
    if logger is None:
        return None
    return lambda p: logger.log_curve_point(p["step"], p["true_return_mean"], p["true_return_std"], p["n_episodes"])


def _gather(run_dir: Path, ag: Artifact, rm: Optional[Artifact], spec: RunSpec) -> None:
    """Copy this run's outputs into its own folder (copies: the cache may be pruned independently)."""
    shutil.copy2(ag.path / "curve.csv", run_dir / "curve.csv")
    if (run_dir / "agent").exists():
        shutil.rmtree(run_dir / "agent")
    shutil.copytree(ag.path / "agent", run_dir / "agent")
    if rm is not None:
        for name in ("reward_net.pt", "reward_net.json", "history.json"):
            shutil.copy2(rm.path / name, run_dir / name)
    if spec.online_rounds:  # the reward the agent ended on; reward_net.pt and the metrics stay the offline model's
        shutil.copytree(ag.path / "online_reward", run_dir / "online_reward", dirs_exist_ok=True)


def _results(spec: RunSpec, ag: Artifact, rm: Optional[Artifact], prefs: Optional[Preferences],
             stages: StageRunner, curve: list[dict]) -> dict:
    teacher, rounds = spec.teacher, ag.manifest.get("online_rounds")
    return {
        "env": spec.env["id"], "loss": spec.loss, "seed": spec.seed, "reward": spec.run.reward, "algo": spec.algo,
        "gamma": spec.gamma, "budget": spec.budget.name, "protocol": spec.protocol.name if spec.learned else None,
        "n_feedback": ag.manifest.get("initial_pairs", spec.n_feedback),
        "n_feedback_total": ag.manifest.get("initial_pairs", spec.n_feedback)
        + sum(r["n_new_pairs"] for r in rounds or []),
        "sigma": teacher.sigma, "noise": teacher.noise, "strength_source": teacher.strength,
        "strata": spec.cfg.get("strata", {}).get("name", spec.reward_train.strata),
        "final_return": ag.manifest["final_return"], "max_return": ag.manifest["max_return"],
        "auc": ag.manifest["auc"], "agent_steps_per_second": ag.manifest["steps_per_second"],
        "agent_timings": ag.manifest.get("agent_timings"), "final_behaviour": ag.manifest.get("final_behaviour"),
        "reward_model": rm.manifest["metrics"] if rm is not None else None,
        "online_rounds": rounds,
        "feedback": {"n_pairs": len(prefs), "label_accuracy": prefs.label_accuracy()} if prefs is not None else None,
        "timings": stages.timings, "reused_stages": stages.reused,
        "artifacts": {"agent": ag.key, **({"reward_model": rm.key} if rm is not None else {})},
        "n_eval_points": len(curve), "agent_steps": int(curve[-1]["step"]) if curve else 0,
        "config": dict(spec.cfg),
    }
