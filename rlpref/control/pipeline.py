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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from rlpref.artifacts import Artifact, ArtifactStore, atomic_write_json, atomic_write_text
from rlpref.control.agent import AgentResult, train_agent
from rlpref.control.algos import hyperparams, resolve_algo
from rlpref.control.online import OnlineCallback, OnlineConfig, OnlineFeedback
from rlpref.control.records import Preferences, Segments, curve_csv, read_curve
from rlpref.control.reward_net import (
    RewardModel,
    RewardTrainConfig,
    load_reward_model,
    save_reward_model,
    train_reward_model,
)
from rlpref.control.segments import collect_segments
from rlpref.control.source import train_source
from rlpref.control.teacher import TeacherConfig, label_pairs
from rlpref.losses import LOSSES
from rlpref.progress import RunProgress, advance_stage, format_seconds
from rlpref.runtime import pin_threads

__all__ = ["REWARDS", "RunSpec", "StageRunner", "run_pipeline", "validate"]

log = logging.getLogger("rlpref")

REWARDS = ("learned", "oracle")
# Online keys left out of the agent key at these values (artefacts from before each key existed stay valid).
_ONLINE_NEUTRAL = {"action_noise": 0.0, "refit": "gated", "keep_level": False, "refit_epochs": None,
                   "refit_replay": None}
#: Before a run has measured its own pace: seconds per training step of one core (laptop-class CPU).
_PRIOR_SECONDS_PER_STEP = {"ppo": 1 / 500, "sac": 1 / 100}


def _scaled_budget(budget: Mapping[str, Any], env_cfg: Mapping[str, Any]) -> dict:
    scale = float(env_cfg.get("steps_scale", 1.0))
    out = dict(budget)
    for key in ("source_steps", "agent_steps", "eval_every"):
        out[key] = max(1, int(round(int(budget[key]) * scale)))
    return out


def validate(cfg: Mapping[str, Any]) -> None:
    """Fail early, before any compute, with the cause and the fix (by resolving the run's :class:`RunSpec`)."""
    RunSpec.from_config(cfg)


def _check_names_and_budget(cfg: Mapping[str, Any]) -> None:
    """The checks the typed stage configs (teacher, reward model, online) do not make themselves."""
    if cfg["loss"]["name"] not in LOSSES:
        raise ValueError(f"unknown loss '{cfg['loss']['name']}'; choose one of: {', '.join(LOSSES)}")
    if cfg["reward"] not in REWARDS:
        raise ValueError(f"unknown reward '{cfg['reward']}'; choose one of: {', '.join(REWARDS)}")
    b = cfg["budget"]
    if int(b["n_feedback"]) < 2:
        raise ValueError(f"budget.n_feedback must be >= 2 comparisons, got {b['n_feedback']}")
    for key in ("source_steps", "agent_steps", "eval_every", "eval_episodes", "n_checkpoints"):
        if int(b[key]) < 1:
            raise ValueError(f"budget.{key} must be >= 1, got {b[key]}")
    max_len = cfg["env"].get("max_episode_steps")
    if max_len and int(cfg["segments"]["length"]) > int(max_len):
        raise ValueError(
            f"segments.length={cfg['segments']['length']} exceeds {cfg['env']['id']}'s episode limit of "
            f"{max_len} steps; set segments.length<={max_len}"
        )


@dataclass(frozen=True)
class RunSpec:
    """One run's resolved configuration, and the configs that key each stage's artefact."""

    cfg: Mapping[str, Any]  # the whole resolved config, recorded in results.json
    env: dict
    algo: str
    hp: dict
    gamma: float
    budget: dict  # scaled by env.steps_scale
    seed: int
    loss: str
    teacher: TeacherConfig
    reward_train: RewardTrainConfig
    online: OnlineConfig

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "RunSpec":
        _check_names_and_budget(cfg)
        teacher = TeacherConfig.from_mapping(cfg["teacher"])
        online = OnlineConfig.from_mapping(cfg.get("online"))
        env = dict(cfg["env"])
        algo = resolve_algo(cfg["agent"]["name"], env)
        hp = hyperparams(env, algo, cfg["agent"].get("overrides"))
        return cls(cfg=cfg, env=env, algo=algo, hp=hp, gamma=float(hp.get("gamma", 0.99)),
                   budget=_scaled_budget(cfg["budget"], env), seed=int(cfg["seed"]), loss=cfg["loss"]["name"],
                   teacher=teacher, reward_train=RewardTrainConfig.from_mapping(cls._reward_map(cfg)),
                   online=online)

    @staticmethod
    def _reward_map(cfg: Mapping[str, Any]) -> dict:
        return {**dict(cfg["reward_model"]), "strata": cfg["strata"]["kind"], "strata_k": cfg["strata"]["k"]}

    @property
    def learned(self) -> bool:
        return self.cfg["reward"] == "learned"

    @property
    def online_rounds(self) -> bool:
        return self.learned and self.online.rounds > 0

    @property
    def n_feedback(self) -> int:
        return int(self.budget["n_feedback"])

    # -- what keys each artefact ---------------------------------------------------------------
    def source_key(self) -> dict:
        return {"env": self.env, "algo": self.algo, "hyperparams": self.hp, "steps": self.budget["source_steps"],
                "n_checkpoints": int(self.budget["n_checkpoints"]), "seed": self.seed}

    def segments_key(self) -> dict:
        return {**dict(self.cfg["segments"]), "n_feedback": self.n_feedback, "gamma": self.gamma, "seed": self.seed}

    def feedback_key(self) -> dict:
        return {**{k: v for k, v in self.cfg["teacher"].items() if k != "name"}, "n_feedback": self.n_feedback,
                "gamma": self.gamma, "seed": self.seed}

    def reward_key(self) -> dict:
        return {"loss": self.loss, **self._reward_map(self.cfg), "seed": self.seed}

    def agent_key(self) -> dict:
        key = {"env": self.env, "algo": self.algo, "hyperparams": self.hp, "steps": self.budget["agent_steps"],
               "eval_every": self.budget["eval_every"], "eval_episodes": int(self.budget["eval_episodes"]),
               "reward": self.cfg["reward"], "seed": self.seed}
        if self.online_rounds:
            # The rounds label and refit inside the agent stage, so everything they use keys the agent.
            # Knobs added after artefacts existed stay out of the key at their neutral value.
            online = {k: v for k, v in asdict(self.online).items()
                      if not (k in _ONLINE_NEUTRAL and v == _ONLINE_NEUTRAL[k])}
            key["online"] = {**online, "teacher": self.feedback_key(), "reward_model": self._reward_map(self.cfg),
                             "loss": self.loss, "segments": self.segments_key()}
        return key

    def stage_costs(self) -> list[tuple[str, float]]:
        """Each stage's rough cost in agent-training steps, for the run's ETA (measured ratios on
        HalfCheetah-v4: a rollout step costs ~1/10 of a PPO training step, fitting the reward model ~30
        steps per comparison, an online round ~3 steps per comparison held, an evaluation step ~1/10)."""
        b = self.budget
        episode = int(self.env.get("max_episode_steps") or 1000)
        rounds, per_round = int(b.get("online_rounds", 0)), int(b.get("online_feedback", 0))
        evals = b["agent_steps"] / b["eval_every"] + 1
        agent = (b["agent_steps"] * 1.1 + evals * int(b["eval_episodes"]) * episode / 10
                 + rounds * (per_round * 50 / 10 + 3 * (self.n_feedback + rounds * per_round / 2)))
        if not self.learned:
            return [("agent", agent)]
        rollout = self.n_feedback * int(self.cfg["segments"]["length"])
        return [("source", float(b["source_steps"])), ("segments", rollout / 10), ("feedback", 1.0),
                ("reward_model", 30.0 * self.n_feedback), ("agent", agent)]


@dataclass
class StageRunner:
    """Runs a stage through the artefact cache: reuses it when its key exists, else builds it under a lock;
    records each stage's seconds and whether it was reused, and drives the run's progress line."""

    store: ArtifactStore
    progress: RunProgress
    timings: dict = field(default_factory=dict)
    reused: dict = field(default_factory=dict)

    def run(self, name: str, config: Mapping[str, Any], inputs: list[str], build: Callable[[Path], dict]) -> Artifact:
        t0 = time.perf_counter()
        cached = self.store.exists(name, self.store.key(name, config, inputs))
        with self.progress.stage(name, cached):
            art = self.store.get_or_build(name, config, inputs, build)
        self.timings[name] = time.perf_counter() - t0 if art.built else float(art.manifest.get("seconds", 0.0))
        self.reused[name] = not art.built
        return art


# -- the stages: config + input records -> output files and a manifest ---------------------------------


def build_source(spec: RunSpec, out: Path) -> dict:
    return train_source(spec.env, spec.algo, spec.budget["source_steps"], int(spec.budget["n_checkpoints"]),
                        spec.seed, out)


def build_segments(spec: RunSpec, checkpoints: list[Path], out: Path) -> dict:
    s = spec.cfg["segments"]
    segs = collect_segments(spec.env, spec.algo, checkpoints, n_feedback=spec.n_feedback, length=int(s["length"]),
                            gamma=spec.gamma, oversample=float(s["oversample"]), n_envs=int(s["n_envs"]),
                            deterministic=bool(s["deterministic"]), seed=spec.seed)
    segs.save(out / "segments.npz")
    per_batch = [float(segs.returns[segs.batch == b].mean()) for b in np.unique(segs.batch)]
    return {"n_segments": len(segs), "mean_return_per_batch": per_batch}


def build_feedback(spec: RunSpec, segments: Segments, out: Path) -> dict:
    prefs = label_pairs(segments, spec.n_feedback, spec.teacher, spec.gamma, np.random.default_rng(spec.seed + 7))
    prefs.save(out / "preferences.npz")
    return {"n_pairs": len(prefs), "label_accuracy": prefs.label_accuracy()}


def build_reward_model(spec: RunSpec, segments: Segments, prefs: Preferences, out: Path) -> dict:
    model, metrics, history = train_reward_model(segments, prefs, spec.loss, spec.reward_train, spec.seed,
                                                 on_epoch=advance_stage)
    save_reward_model(model, out)
    atomic_write_json(out / "history.json", history)
    atomic_write_json(out / "metrics.json", metrics)
    return {"metrics": metrics}


def build_agent(spec: RunSpec, model: Optional[RewardModel], segments: Optional[Segments],
                prefs: Optional[Preferences], out: Path, on_eval: Optional[Callable[[dict], None]] = None) -> dict:
    """A fresh agent on r_θ (``model``; None = the true reward), with the online rounds when configured."""
    loop = None
    callbacks = []
    if spec.online_rounds:
        s = spec.cfg["segments"]
        loop = OnlineFeedback(env_cfg=spec.env, cfg=spec.online, teacher=spec.teacher, reward_cfg=spec.reward_train,
                              loss_name=spec.loss, gamma=spec.gamma, length=int(s["length"]),
                              oversample=float(s["oversample"]), seed=spec.seed, segments=segments, prefs=prefs,
                              model=model)
        callbacks.append(OnlineCallback(loop, spec.budget["agent_steps"]))
    result = train_agent(spec.env, spec.algo, reward_model=model, total_steps=spec.budget["agent_steps"],
                         eval_every=spec.budget["eval_every"], eval_episodes=int(spec.budget["eval_episodes"]),
                         seed=spec.seed + 100, out_dir=out / "agent", hp_overrides=spec.cfg["agent"].get("overrides"),
                         on_eval=on_eval, callbacks=callbacks)
    atomic_write_text(out / "curve.csv", curve_csv(result.curve))
    atomic_write_json(out / "train_episodes.json", result.train_episode_returns)
    manifest = _agent_manifest(result)
    if loop is not None:
        manifest["online_rounds"] = _save_online(loop, spec, len(segments), len(prefs), out)
    return manifest


def _agent_manifest(result: AgentResult) -> dict:
    return {"final_return": result.final_return, "max_return": result.max_return, "auc": result.auc,
            "steps_per_second": result.steps_per_second, "final_behaviour": result.behaviour,
            "agent_timings": result.timings}


def _save_online(loop: OnlineFeedback, spec: RunSpec, n_segments: int, n_prefs: int, out: Path) -> list[dict]:
    """The reward the agent finished on, and what the rounds added (new batches only: the offline segments
    and pairs are the earlier stages' artefacts)."""
    save_reward_model(loop.model, out / "online_reward")
    loop.segments.subset(np.arange(n_segments, len(loop.segments))).save(out / "online_segments.npz")
    loop.prefs.subset(np.arange(n_prefs, len(loop.prefs))).save(out / "online_preferences.npz")
    atomic_write_json(out / "online.json", {
        "rounds": loop.rounds_log, "rounds_planned": spec.online.rounds,
        "index_note": "online_preferences index the offline segments (segments stage, "
                      f"{n_segments} of them) followed by online_segments",
        "n_offline_segments": n_segments,
    })
    if len(loop.rounds_log) < spec.online.rounds:
        log.warning("only %d of %d online rounds ran: rounds fell less than one rollout apart or after the "
                    "last rollout; lower online.rounds or raise budget.agent_steps",
                    len(loop.rounds_log), spec.online.rounds)
    return loop.rounds_log


# -- the driver ---------------------------------------------------------------------------------------


def run_pipeline(cfg: Mapping[str, Any], run_dir: Path, logger=None) -> dict:
    """Run (or resume) every stage for one resolved config; write the results into ``run_dir``."""
    spec = RunSpec.from_config(cfg)
    pin_threads(int(cfg.get("torch_threads", 1)))
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = ArtifactStore(Path(cfg["cache_dir"]))
    stages = StageRunner(store, RunProgress(spec.stage_costs(), _PRIOR_SECONDS_PER_STEP[spec.algo]))

    model = segments = prefs = rm = fb = None
    if spec.learned:
        src = stages.run("source", spec.source_key(), [], lambda d: build_source(spec, d))
        ckpts = [src.path / f"ckpt_{k + 1}" for k in range(int(spec.budget["n_checkpoints"]))]
        seg = stages.run("segments", spec.segments_key(), [src.key], lambda d: build_segments(spec, ckpts, d))
        segments = Segments.load(seg.path / "segments.npz")
        fb = stages.run("feedback", spec.feedback_key(), [seg.key], lambda d: build_feedback(spec, segments, d))
        prefs = Preferences.load(fb.path / "preferences.npz")
        rm = stages.run("reward_model", spec.reward_key(), [fb.key, seg.key],
                        lambda d: build_reward_model(spec, segments, prefs, d))
        _log_reward_model(spec, rm.manifest["metrics"], logger)

    def build(d: Path) -> dict:
        served = load_reward_model(rm.path) if rm is not None else None
        return build_agent(spec, served, segments, prefs, d, _curve_logger(logger))

    ag = stages.run("agent", spec.agent_key(), [rm.key] if rm is not None else [], build)
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
    teacher, rounds = spec.cfg["teacher"], ag.manifest.get("online_rounds")
    return {
        "env": spec.env["id"], "loss": spec.loss, "seed": spec.seed, "reward": spec.cfg["reward"], "algo": spec.algo,
        "gamma": spec.gamma, "budget": spec.cfg["budget"]["name"], "n_feedback": spec.n_feedback,
        "n_feedback_total": spec.n_feedback + sum(r["n_new_pairs"] for r in rounds or []),
        "sigma": float(teacher["sigma"]), "noise": teacher["noise"], "strength_source": teacher["strength"],
        "strata": spec.cfg["strata"]["name"],
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
