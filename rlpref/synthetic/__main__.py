"""``python -m rlpref.synthetic dataset=drift_diffusion`` (or ``dataset=all``, the paper's table).

Writes into the Hydra run folder: ``results.csv`` (one row per dataset × learner × fraction × trial),
``diagnostics.csv`` (Kendall τ per dataset × trial), ``summary.csv`` (mean and 95 % CI per cell),
``report.md``, ``synthetic.png`` and ``summary.json`` (timings, data efficiency).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from rlpref.artifacts import atomic_write_json, atomic_write_text
from rlpref.runtime import configure_compute

from .grid import GridConfig, run_grid
from .learners import TrainConfig
from .report import data_efficiency, markdown_report, plot_summary, summarise
from .trials import DatasetSpec

__all__ = ["main", "run_from_config"]


def _csv(df) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()


def run_from_config(cfg: Mapping[str, Any], out_dir: Path) -> dict:
    """Run the grid of a resolved config and write every output into ``out_dir``."""
    datasets = cfg.get("datasets") or {}
    if not datasets:
        raise ValueError("no datasets selected; pass dataset=<name> (see conf/synthetic/dataset/) or dataset=all")
    specs = [DatasetSpec.from_mapping({"name": name, **dict(spec)}) for name, spec in datasets.items()]
    grid = GridConfig(**dict(cfg["grid"]), seed=int(cfg["seed"]), reference_quirks=bool(cfg.get("reference_quirks", False)))
    train = TrainConfig(**dict(cfg["train"]))
    configure_compute(int(cfg.get("threads", 2)))
    t0 = time.perf_counter()
    results, diagnostics = run_grid(specs, grid, train, progress=bool(cfg.get("progress", True)))
    seconds = time.perf_counter() - t0
    summary = summarise(results)
    rep = cfg.get("report", {})
    eff = data_efficiency(summary, rep.get("learner", "rr"), rep.get("baseline", "bt"), rep.get("metric", "pdc"))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "results.csv", _csv(results))
    atomic_write_text(out_dir / "diagnostics.csv", _csv(diagnostics))
    atomic_write_text(out_dir / "summary.csv", _csv(summary))
    atomic_write_text(out_dir / "report.md", markdown_report(summary, eff, grid.learners, diagnostics))
    plot_summary(summary, out_dir / "synthetic.png")
    info = {
        "seconds": seconds,
        "n_fits": int(len(results)),
        "datasets": [s.name for s in specs],
        "data_efficiency": eff.to_dict(orient="records"),
        "torch_threads": torch.get_num_threads(),
        "reference_quirks": grid.reference_quirks,
    }
    atomic_write_json(out_dir / "summary.json", info)
    return {"results": results, "summary": summary, "efficiency": eff, **info}


def main() -> None:
    import hydra

    from rlpref.cli_errors import one_line_errors, task_errors
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    @hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[2] / "conf" / "synthetic"), config_name="config")
    def _main(cfg: DictConfig) -> None:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        with task_errors("rlpref.synthetic"):
            res = run_from_config(OmegaConf.to_container(cfg, resolve=True), out_dir)
        print(markdown_report(res["summary"], res["efficiency"], list(cfg.grid.learners)))
        print(f"{res['n_fits']} fits in {res['seconds']:.1f} s -> {out_dir}")

    with one_line_errors("rlpref.synthetic"):
        _main()


if __name__ == "__main__":
    main()
