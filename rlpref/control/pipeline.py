"""The control track's driver: a protocol's stages, run one after another through the artefact cache.

    spec     = RunSpec.from_config(cfg)          every section typed and checked before any work
    protocol = protocol_for(spec)                oracle | offline | offline_rounds | online (rlpref.control.protocols)
    for stage in protocol.stages(spec):          e.g. source → segments → feedback → reward_model → agent
        artefact = runner.run(stage, done)       reused from the cache, or built (resumable ones continue)
    results  = gather(...)                       -> the run folder, results.json

:class:`StageRunner` is the one wrapper around a stage: the artefact cache (key from the stage's arguments
and its inputs' keys, so ``loss=bt`` and ``loss=rr`` share what comes before the reward model and a
killed run resumes at its first missing stage), locks, timings and the run's progress line.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from rlpref.artifacts import Artifact, ArtifactStore, atomic_write_json
from rlpref.control.config import REWARDS, RunSpec
from rlpref.control.protocols import Protocol, protocol_for
from rlpref.control.records import Preferences, read_curve
from rlpref.control.stages import Stage
from rlpref.progress import RunProgress, format_seconds
from rlpref.provenance import code_version
from rlpref.runtime import configure_compute

__all__ = ["REWARDS", "RunSpec", "StageRunner", "run_pipeline", "stage_keys", "validate"]

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

    def run(self, stage: Stage, done: Mapping[str, Artifact]) -> Artifact:
        """Build ``stage`` (or reuse it) from the artefacts of the stages in ``done`` it takes as inputs;
        a resumable build also gets ``partial``, which keeps the progress of a killed build."""
        t0 = time.perf_counter()
        inputs = {n: done[n] for n in stage.inputs}
        config, chained = stage.key(), [a.key for a in inputs.values()]
        key = self.store.key(stage.name, config, chained)
        kwargs = {**stage.args, **stage.hooks}
        with self.progress.stage(stage.name, self.store.exists(stage.name, key)):
            if stage.resumable:
                partial = self.store.partial_path(stage.name, key)
                build: Callable[[Path], dict] = lambda d: stage.build(d, partial, inputs, **kwargs)  # noqa: E731
            else:
                build = lambda d: stage.build(d, inputs, **kwargs)  # noqa: E731
            art = self.store.get_or_build(stage.name, config, chained, build)
        self.timings[stage.name] = time.perf_counter() - t0 if art.built else float(art.manifest.get("seconds", 0.0))
        self.reused[stage.name] = not art.built
        return art


def stage_keys(spec: RunSpec) -> dict[str, str]:
    """Each stage's artefact key for this run, without building anything (what a cache would hold)."""
    keys: dict[str, str] = {}
    for stage in protocol_for(spec).stages(spec):
        keys[stage.name] = ArtifactStore.key(None, stage.name, stage.key(), [keys[n] for n in stage.inputs])
    return keys


# -- the driver ---------------------------------------------------------------------------------------


def run_pipeline(cfg: Mapping[str, Any], run_dir: Path, logger=None) -> dict:
    """Run (or resume) every stage of the run's protocol; write the results into ``run_dir``."""
    spec = RunSpec.from_config(cfg)
    configure_compute(spec.run.torch_threads)
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    protocol = protocol_for(spec)
    stages = protocol.stages(spec, _curve_logger(logger))
    runner = StageRunner(ArtifactStore(Path(cfg["cache_dir"])),
                         RunProgress([(s.name, s.cost) for s in stages], _PRIOR_SECONDS_PER_STEP[spec.agent.algo]))
    done: dict[str, Artifact] = {}
    for stage in stages:
        done[stage.name] = runner.run(stage, done)
        if "metrics" in done[stage.name].manifest:
            _log_reward_model(spec, done[stage.name].manifest["metrics"], logger)
    return _finish(spec, protocol, run_dir, runner, done, logger, t_start)


def _finish(spec: RunSpec, protocol: Protocol, run_dir: Path, runner: StageRunner, done: Mapping[str, Artifact],
            logger, t_start: float) -> dict:
    """Gather the run folder, write results.json, log the summary."""
    _gather(run_dir, done)
    runner.timings["total"] = time.perf_counter() - t_start
    results = _results(spec, protocol, done, runner, read_curve(run_dir / "curve.csv"))
    atomic_write_json(run_dir / "results.json", results)
    if logger is not None:
        for rnd in results["online_rounds"] or []:
            logger.log_metrics({f"online/{k}": v for k, v in rnd.items() if k not in ("round", "agent_step")},
                               int(rnd["agent_step"]))
        logger.log_summary(results)
    log.info("final true return %.1f (max %.1f) after %d agent steps; %s in all", results["final_return"],
             results["max_return"], results["agent_steps"], format_seconds(runner.timings["total"]))
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


def _gather(run_dir: Path, done: Mapping[str, Artifact]) -> None:
    """Copy this run's outputs into its own folder (copies: the cache may be pruned independently)."""
    ag = done["agent"]
    shutil.copy2(ag.path / "curve.csv", run_dir / "curve.csv")
    if (run_dir / "agent").exists():
        shutil.rmtree(run_dir / "agent")
    shutil.copytree(ag.path / "agent", run_dir / "agent")
    if "reward_model" in done:
        for name in ("reward_net.pt", "reward_net.json", "history.json"):
            shutil.copy2(done["reward_model"].path / name, run_dir / name)
    if (ag.path / "online_reward").is_dir():  # the reward the agent ended on; reward_net.pt stays the offline fit
        shutil.copytree(ag.path / "online_reward", run_dir / "online_reward", dirs_exist_ok=True)


def _results(spec: RunSpec, protocol: Protocol, done: Mapping[str, Artifact], runner: StageRunner,
             curve: list[dict]) -> dict:
    ag, rm = done["agent"].manifest, done.get("reward_model")
    teacher, rounds = spec.teacher, ag.get("online_rounds")
    prefs = Preferences.load(done["feedback"].path / "preferences.npz") if "feedback" in done else None
    n_first = ag.get("initial_pairs", protocol.n_feedback_first(spec))
    return {
        "env": spec.env.id, "loss": spec.loss, "seed": spec.seed, "reward": spec.run.reward, "algo": spec.agent.algo,
        "gamma": spec.gamma, "budget": spec.budget.name, "protocol": protocol.recorded_name,
        "n_feedback": n_first, "n_feedback_total": n_first + sum(r["n_new_pairs"] for r in rounds or []),
        "sigma": teacher.sigma, "noise": teacher.noise, "strength_source": teacher.strength,
        "strata": spec.cfg.get("strata", {}).get("name", spec.reward_train.strata),
        "final_return": ag["final_return"], "max_return": ag["max_return"],
        "auc": ag["auc"], "agent_steps_per_second": ag["steps_per_second"],
        "agent_timings": ag.get("agent_timings"), "final_behaviour": ag.get("final_behaviour"),
        "reward_model": rm.manifest["metrics"] if rm is not None else None,
        "online_rounds": rounds,
        "feedback": {"n_pairs": len(prefs), "label_accuracy": prefs.label_accuracy()} if prefs is not None else None,
        "timings": runner.timings, "reused_stages": runner.reused, "resumed_stages": _resumed_stages(done),
        "artifacts": {name: art.key for name, art in done.items()},
        "n_eval_points": len(curve), "agent_steps": int(curve[-1]["step"]) if curve else 0,
        **_env_steps(done, rounds, int(curve[-1]["step"]) if curve else 0),
        "config": dict(spec.cfg), "code": code_version(),
    }


def _env_steps(done: Mapping[str, Artifact], rounds: Optional[list], agent_steps: int) -> dict:
    """The env steps the run trained and asked feedback on, by what took them (``env_steps_parts``): the
    agent's training, the source agent's, and the rollouts that made clips for feedback (evaluation
    episodes are not counted, as in imitation's bench). ``env_steps`` is None when a stage cached by an
    older version did not record its count (rerun without the cache to get it)."""
    parts = {"agent": agent_steps,
             **{name: done[name].manifest.get("env_steps") for name in ("source", "segments", "first_iteration")
                if name in done},
             **({"rounds": _sum_or_none(r.get("env_steps") for r in rounds)} if rounds else {})}
    return {"env_steps": _sum_or_none(parts.values()), "env_steps_parts": parts}


def _sum_or_none(values) -> Optional[int]:
    """The sum, or None when any value is unknown (None)."""
    values = list(values)
    return None if any(v is None for v in values) else int(sum(values))


def _resumed_stages(done: Mapping[str, Artifact]) -> dict:
    """{stage: step} of the stages whose build continued from saved state after a kill, this run's or, for a
    shared stage (a source agent), another task's: the report marks such runs (not bit-identical)."""
    steps = {name: art.manifest.get("resumed_at_step", (art.manifest.get("agent_timings") or {}).get("resumed_at_step"))
             for name, art in done.items()}
    return {name: int(step) for name, step in steps.items() if step is not None}
