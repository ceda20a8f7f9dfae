"""Control track entry point: ``python -m rlpref.run env=HalfCheetah-v4 loss=rr``.

config → source agent → segments → teacher → reward model → agent on learned reward → true-return
evaluation → results. Each stage is an artefact keyed by its own config and its inputs (see
:mod:`rlpref.artifacts`), so runs that differ only in the loss share source agent and feedback, and a
killed run resumes at the first missing stage.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Optional

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from rlpref.artifacts import ArtifactStore, atomic_write_json, atomic_write_text
from rlpref.control.agent import train_agent
from rlpref.control.algos import hyperparams, resolve_algo
from rlpref.control.online import OnlineCallback, OnlineConfig, OnlineFeedback
from rlpref.control.records import Preferences, Segments
from rlpref.control.reward_net import (
    RewardTrainConfig,
    load_reward_model,
    save_reward_model,
    train_reward_model,
)
from rlpref.control.segments import collect_segments
from rlpref.control.source import train_source
from rlpref.control.teacher import TeacherConfig, label_pairs
from rlpref.losses import LOSSES
from rlpref.progress import RunProgress, format_seconds
from rlpref.runtime import pin_threads

__all__ = ["main", "run_pipeline"]

log = logging.getLogger(__name__)

REWARDS = ("learned", "oracle")
# Online keys left out of the agent key at these values (artefacts from before each key existed stay valid).
_ONLINE_NEUTRAL = {"action_noise": 0.0, "refit": "gated", "keep_level": False, "refit_epochs": None,
                   "refit_replay": None}


def _scaled_budget(budget: Mapping[str, Any], env_cfg: Mapping[str, Any]) -> dict:
    scale = float(env_cfg.get("steps_scale", 1.0))
    out = dict(budget)
    for key in ("source_steps", "agent_steps", "eval_every"):
        out[key] = max(1, int(round(int(budget[key]) * scale)))
    return out


def validate(cfg: Mapping[str, Any]) -> None:
    """Fail early, before any compute, with the cause and the fix."""
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
    TeacherConfig.from_mapping(cfg["teacher"])
    RewardTrainConfig.from_mapping(cfg["reward_model"])
    OnlineConfig.from_mapping(cfg.get("online"))
    max_len = cfg["env"].get("max_episode_steps")
    if max_len and int(cfg["segments"]["length"]) > int(max_len):
        raise ValueError(
            f"segments.length={cfg['segments']['length']} exceeds {cfg['env']['id']}'s episode limit of "
            f"{max_len} steps; set segments.length<={max_len}"
        )


#: Before a run has measured its own pace: seconds per training step of one core (laptop-class CPU).
_PRIOR_SECONDS_PER_STEP = {"ppo": 1 / 500, "sac": 1 / 100}


def _stage_costs(cfg: Mapping[str, Any], budget: Mapping[str, Any], env_cfg: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Each stage's rough cost in agent-training steps, for the run's ETA (measured ratios on
    HalfCheetah-v4: a rollout step costs ~1/10 of a PPO training step, fitting the reward model ~30
    steps per comparison, an online round ~3 steps per comparison held, an evaluation step ~1/10)."""
    episode = int(env_cfg.get("max_episode_steps") or 1000)
    n_fb = int(budget["n_feedback"])
    rounds, per_round = int(budget.get("online_rounds", 0)), int(budget.get("online_feedback", 0))
    evals = budget["agent_steps"] / budget["eval_every"] + 1
    agent = (budget["agent_steps"] * 1.1 + evals * int(budget["eval_episodes"]) * episode / 10
             + rounds * (per_round * 50 / 10 + 3 * (n_fb + rounds * per_round / 2)))
    if cfg["reward"] != "learned":
        return [("agent", agent)]
    rollout = n_fb * int(cfg["segments"]["length"]) * 1.0
    return [("source", float(budget["source_steps"])), ("segments", rollout / 10), ("feedback", 1.0),
            ("reward_model", 30.0 * n_fb), ("agent", agent)]


def _write_curve(path: Path, curve: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "true_return_mean", "true_return_std", "n_episodes"])
    writer.writeheader()
    writer.writerows(curve)
    atomic_write_text(path, buf.getvalue())


def _read_curve(path: Path) -> list[dict]:
    with open(path) as f:
        return [
            {
                "step": int(r["step"]),
                "true_return_mean": float(r["true_return_mean"]),
                "true_return_std": float(r["true_return_std"]),
                "n_episodes": int(r["n_episodes"]),
            }
            for r in csv.DictReader(f)
        ]


def run_pipeline(cfg: Mapping[str, Any], run_dir: Path, logger=None) -> dict:
    """Run (or resume) every stage for one resolved config; write results into ``run_dir``."""
    validate(cfg)
    pin_threads(int(cfg.get("torch_threads", 1)))
    t_start = time.perf_counter()
    env_cfg = {k: v for k, v in cfg["env"].items()}
    algo = resolve_algo(cfg["agent"]["name"], env_cfg)
    hp = hyperparams(env_cfg, algo, cfg["agent"].get("overrides"))
    gamma = float(hp.get("gamma", 0.99))
    budget = _scaled_budget(cfg["budget"], env_cfg)
    seed = int(cfg["seed"])
    store = ArtifactStore(Path(cfg["cache_dir"]))
    timings: dict[str, float] = {}
    reused: dict[str, bool] = {}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    progress = RunProgress(_stage_costs(cfg, budget, env_cfg), seconds_per_unit=_PRIOR_SECONDS_PER_STEP[algo])

    def stage(name: str, config: Mapping[str, Any], inputs: list[str], build):
        t0 = time.perf_counter()
        cached = store.exists(name, store.key(name, config, inputs))
        with progress.stage(name, cached):
            art = store.get_or_build(name, config, inputs, build)
        timings[name] = time.perf_counter() - t0 if art.built else float(art.manifest.get("seconds", 0.0))
        reused[name] = not art.built
        return art

    learned = cfg["reward"] == "learned"
    reward_metrics: Optional[dict] = None
    feedback_info: dict = {}
    reward_key: list[str] = []
    if learned:
        source_cfg = {"env": env_cfg, "algo": algo, "hyperparams": hp, "steps": budget["source_steps"],
                      "n_checkpoints": int(budget["n_checkpoints"]), "seed": seed}
        src = stage("source", source_cfg, [],
                    lambda d: train_source(env_cfg, algo, budget["source_steps"], int(budget["n_checkpoints"]), seed, d))
        ckpts = [src.path / f"ckpt_{k + 1}" for k in range(int(budget["n_checkpoints"]))]

        seg_cfg = {**dict(cfg["segments"]), "n_feedback": int(budget["n_feedback"]), "gamma": gamma, "seed": seed}

        def build_segments(d: Path) -> dict:
            segs = collect_segments(
                env_cfg, algo, ckpts, n_feedback=int(budget["n_feedback"]), length=int(cfg["segments"]["length"]),
                gamma=gamma, oversample=float(cfg["segments"]["oversample"]), n_envs=int(cfg["segments"]["n_envs"]),
                deterministic=bool(cfg["segments"]["deterministic"]), seed=seed,
            )
            segs.save(d / "segments.npz")
            per_batch = [float(segs.returns[segs.batch == b].mean()) for b in np.unique(segs.batch)]
            return {"n_segments": len(segs), "mean_return_per_batch": per_batch}

        seg = stage("segments", seg_cfg, [src.key], build_segments)
        segments = Segments.load(seg.path / "segments.npz")

        teacher_cfg = TeacherConfig.from_mapping(cfg["teacher"])
        fb_cfg = {**{k: v for k, v in cfg["teacher"].items() if k != "name"}, "n_feedback": int(budget["n_feedback"]),
                  "gamma": gamma, "seed": seed}

        def build_feedback(d: Path) -> dict:
            prefs = label_pairs(segments, int(budget["n_feedback"]), teacher_cfg, gamma, np.random.default_rng(seed + 7))
            prefs.save(d / "preferences.npz")
            return {"n_pairs": len(prefs), "label_accuracy": prefs.label_accuracy()}

        fb = stage("feedback", fb_cfg, [seg.key], build_feedback)
        prefs = Preferences.load(fb.path / "preferences.npz")
        feedback_info = {"n_pairs": len(prefs), "label_accuracy": prefs.label_accuracy()}

        rm_cfg_map = {**dict(cfg["reward_model"]), "strata": cfg["strata"]["kind"], "strata_k": cfg["strata"]["k"]}
        rm_cfg = RewardTrainConfig.from_mapping(rm_cfg_map)
        loss_name = cfg["loss"]["name"]

        def build_reward(d: Path) -> dict:
            model, result, history = train_reward_model(segments, prefs, loss_name, rm_cfg, seed)
            save_reward_model(model, d)
            atomic_write_json(d / "history.json", history)
            atomic_write_json(d / "metrics.json", result)
            return {"metrics": result}

        rm = stage("reward_model", {"loss": loss_name, **rm_cfg_map, "seed": seed}, [fb.key, seg.key], build_reward)
        reward_metrics = rm.manifest["metrics"]
        reward_key = [rm.key]
        if logger is not None:
            logger.log_metrics({f"reward_model/{k}": v for k, v in reward_metrics.items() if v is not None}, 0)
        log.info("reward model (%s): val accuracy %.3f, Spearman %.3f with the true return", loss_name,
                 reward_metrics.get("val_accuracy") or float("nan"), reward_metrics.get("spearman") or float("nan"))

    agent_cfg = {"env": env_cfg, "algo": algo, "hyperparams": hp, "steps": budget["agent_steps"],
                 "eval_every": budget["eval_every"], "eval_episodes": int(budget["eval_episodes"]),
                 "reward": cfg["reward"], "seed": seed}
    online_cfg = OnlineConfig.from_mapping(cfg.get("online"))
    online = learned and online_cfg.rounds > 0
    if online:
        # The loop labels and refits inside the agent stage, so everything it uses keys the agent artefact.
        # Knobs added after artefacts existed stay out of the key at their neutral value, so those stay valid.
        online_key = {k: v for k, v in asdict(online_cfg).items()
                      if not (k in _ONLINE_NEUTRAL and v == _ONLINE_NEUTRAL[k])}
        agent_cfg["online"] = {**online_key, "teacher": fb_cfg, "reward_model": rm_cfg_map, "loss": loss_name,
                               "segments": seg_cfg}

    def on_eval(point: dict) -> None:
        if logger is not None:
            logger.log_curve_point(point["step"], point["true_return_mean"], point["true_return_std"],
                                   point["n_episodes"])

    def build_agent(d: Path) -> dict:
        model = load_reward_model(store.path("reward_model", reward_key[0])) if learned else None
        callbacks, loop = [], None
        if online:
            loop = OnlineFeedback(
                env_cfg=env_cfg, cfg=online_cfg, teacher=teacher_cfg, reward_cfg=rm_cfg, loss_name=loss_name,
                gamma=gamma, length=int(cfg["segments"]["length"]), oversample=float(cfg["segments"]["oversample"]),
                seed=seed, segments=segments, prefs=prefs, model=model,
            )
            callbacks.append(OnlineCallback(loop, budget["agent_steps"]))
        result = train_agent(
            env_cfg, algo, reward_model=model, total_steps=budget["agent_steps"], eval_every=budget["eval_every"],
            eval_episodes=int(budget["eval_episodes"]), seed=seed + 100, out_dir=d / "agent",
            hp_overrides=cfg["agent"].get("overrides"), on_eval=on_eval, callbacks=callbacks,
        )
        _write_curve(d / "curve.csv", result.curve)
        atomic_write_json(d / "train_episodes.json", result.train_episode_returns)
        out = {"final_return": result.final_return, "max_return": result.max_return, "auc": result.auc,
               "steps_per_second": result.steps_per_second, "final_behaviour": result.behaviour,
               "agent_timings": result.timings}
        if loop is not None:
            # The reward the agent finished on, and what each round added (new batches only; the
            # offline segments and pairs are the earlier stages' artefacts).
            save_reward_model(loop.model, d / "online_reward")
            n_off = len(segments)
            loop.segments.subset(np.arange(n_off, len(loop.segments))).save(d / "online_segments.npz")
            loop.prefs.subset(np.arange(len(prefs), len(loop.prefs))).save(d / "online_preferences.npz")
            atomic_write_json(d / "online.json", {
                "rounds": loop.rounds_log, "rounds_planned": online_cfg.rounds,
                "index_note": "online_preferences index the offline segments (segments stage, "
                              f"{n_off} of them) followed by online_segments",
                "n_offline_segments": n_off,
            })
            if len(loop.rounds_log) < online_cfg.rounds:
                log.warning("only %d of %d online rounds ran: rounds fell less than one rollout apart or after the "
                            "last rollout; lower online.rounds or raise budget.agent_steps",
                            len(loop.rounds_log), online_cfg.rounds)
            out["online_rounds"] = loop.rounds_log
        return out

    ag = stage("agent", agent_cfg, reward_key, build_agent)

    # Gather this run's outputs in its own folder (copies: the cache may be pruned independently).
    shutil.copy2(ag.path / "curve.csv", run_dir / "curve.csv")
    if (run_dir / "agent").exists():
        shutil.rmtree(run_dir / "agent")
    shutil.copytree(ag.path / "agent", run_dir / "agent")
    if learned:
        for name in ("reward_net.pt", "reward_net.json", "history.json"):
            shutil.copy2(store.path("reward_model", reward_key[0]) / name, run_dir / name)
        if online:  # the reward the agent ended on; reward_net.pt and the metrics stay the offline model's
            shutil.copytree(ag.path / "online_reward", run_dir / "online_reward", dirs_exist_ok=True)
    timings["total"] = time.perf_counter() - t_start
    curve = _read_curve(run_dir / "curve.csv")
    teacher = cfg["teacher"]
    results = {
        "env": env_cfg["id"],
        "loss": cfg["loss"]["name"],
        "seed": seed,
        "reward": cfg["reward"],
        "algo": algo,
        "gamma": gamma,
        "budget": cfg["budget"]["name"],
        "n_feedback": int(budget["n_feedback"]),
        "n_feedback_total": int(budget["n_feedback"]) + sum(r["n_new_pairs"] for r in ag.manifest.get("online_rounds") or []),
        "sigma": float(teacher["sigma"]),
        "noise": teacher["noise"],
        "strength_source": teacher["strength"],
        "strata": cfg["strata"]["name"],
        "final_return": ag.manifest["final_return"],
        "max_return": ag.manifest["max_return"],
        "auc": ag.manifest["auc"],
        "agent_steps_per_second": ag.manifest["steps_per_second"],
        "agent_timings": ag.manifest.get("agent_timings"),
        "final_behaviour": ag.manifest.get("final_behaviour"),
        "reward_model": reward_metrics,
        "online_rounds": ag.manifest.get("online_rounds"),
        "feedback": feedback_info or None,
        "timings": timings,
        "reused_stages": reused,
        "artifacts": {"agent": ag.key, **({"reward_model": reward_key[0]} if learned else {})},
        "n_eval_points": len(curve),
        "agent_steps": int(curve[-1]["step"]) if curve else 0,
        "config": dict(cfg),
    }
    atomic_write_json(run_dir / "results.json", results)
    if logger is not None:
        for rnd in results["online_rounds"] or []:
            logger.log_metrics({f"online/{k}": v for k, v in rnd.items() if k not in ("round", "agent_step")},
                               int(rnd["agent_step"]))
        logger.log_summary(results)
    log.info("final true return %.1f (max %.1f) after %d agent steps; %s in all", results["final_return"],
             results["max_return"], results["agent_steps"], format_seconds(timings["total"]))
    return results


def _summary_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rlpref: {results['env']} · loss={results['loss']} · reward={results['reward']} · seed={results['seed']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("final true return", f"{results['final_return']:.1f}")
    table.add_row("max true return", f"{results['max_return']:.1f}")
    for key, value in (results.get("final_behaviour") or {}).items():  # per step, final evaluation
        table.add_row(f"final mean {key}", f"{value:.3f}")
    rm = results.get("reward_model") or {}
    for key in ("val_accuracy", "val_true_accuracy", "pearson", "spearman", "pdc"):
        if key in rm and rm[key] is not None and not (isinstance(rm[key], float) and math.isnan(rm[key])):
            table.add_row(f"reward model {key}", f"{rm[key]:.3f}")
    rounds = results.get("online_rounds") or []
    if rounds:
        last = rounds[-1]
        table.add_row("online rounds (pairs in all)", f"{len(rounds)} ({last['n_pairs_total']})")
        if "val_accuracy" in last:
            table.add_row("online reward val_accuracy", f"{last['val_accuracy']:.3f}")
    for stage_name, sec in results["timings"].items():
        tag = " (cached)" if results["reused_stages"].get(stage_name) else ""
        table.add_row(f"time {stage_name}{tag}", f"{sec:.1f} s")
    table.add_row("agent steps/s", f"{results['agent_steps_per_second']:.0f}")
    Console(stderr=True).print(table)


def _discard_rejected_run_dir(run_dir: Path) -> None:
    """Remove the folder Hydra made for a run whose config was rejected (it holds only Hydra's own files),
    and its parents that are left empty, so no report ever lists a run that never started."""
    if not run_dir.is_dir() or any(p.name not in (".hydra", "run.log") for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    parent = run_dir.parent
    cwd = Path.cwd().resolve()
    while parent.resolve() != cwd and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig

    from rlpref.report.loggers import make_logger

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    try:
        validate(resolved)
    except (ValueError, TypeError):
        _discard_rejected_run_dir(run_dir)
        raise
    log.info("run folder: %s", run_dir)
    if cfg.video:
        from rlpref.video import headless_gl

        headless_gl()  # before any env imports MuJoCo
    logger = make_logger(resolved["logger"], run_dir, resolved)
    try:
        results = run_pipeline(resolved, run_dir, logger)
        if cfg.video:
            from rlpref.video import render_run

            for path in render_run(run_dir, **resolved["render"]):
                logger.log_video(path)
                log.info("video: %s", path)
    finally:
        logger.close()
    _summary_table(results)
    log.info("run folder: %s (results.json, curve.csv, metrics.csv, run.log)", run_dir)
    return float(results["final_return"])


if __name__ == "__main__":
    main()
