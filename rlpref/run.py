"""Control track CLI: ``python -m rlpref.run env=HalfCheetah-v4 loss=rr`` (Hydra).

Composes and validates the config, names the run folder, runs :func:`rlpref.control.pipeline.run_pipeline`
(the protocol's stages: by default ``online``, the agent trained on r_θ fitted to labels of its own play;
``offline``, source agent → segments → teacher → reward model → agent; see :mod:`rlpref.control.protocols`),
optionally renders a video, and prints a summary.

A user's mistake (a bad value, an unknown key, group option or env id, a missing file) ends the command
with one line naming the key, the value and what is allowed, and exit status 2; ``HYDRA_FULL_ERROR=1``
shows the whole traceback instead.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from rlpref.artifacts import CorruptArtifactError
from rlpref.cli_errors import one_line_errors, task_errors
from rlpref.control.config import moved_key_message
from rlpref.control.pipeline import run_pipeline, validate
from rlpref.schema import ConfigError

__all__ = ["cli", "main", "run_pipeline"]

log = logging.getLogger("rlpref")


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


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "conf"), config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    with task_errors("rlpref.run", moved_key_message):
        return _run(cfg)


def _run(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig

    from rlpref.report.loggers import make_logger

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    try:
        validate(resolved)
    except (ValueError, TypeError) as exc:
        _discard_rejected_run_dir(run_dir)
        raise ConfigError(str(exc)) from exc
    log.info("run folder: %s", run_dir)
    if cfg.video:
        from rlpref.video import headless_gl

        headless_gl()  # before any env imports MuJoCo
    logger = make_logger(resolved["logger"], run_dir, resolved)
    try:
        try:
            results = run_pipeline(resolved, run_dir, logger)
        except CorruptArtifactError as exc:
            overrides = " ".join(HydraConfig.get().overrides.task)
            raise CorruptArtifactError(exc.path, exc.problems, rerun=f"python -m rlpref.run {overrides}".strip()) from None
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


def cli() -> None:
    """``python -m rlpref.run``: Hydra's entry point, with user errors in one line."""
    with one_line_errors("rlpref.run", moved_key_message):
        main()


if __name__ == "__main__":
    cli()
