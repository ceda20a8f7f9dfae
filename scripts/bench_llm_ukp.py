#!/usr/bin/env python
"""Data-efficiency grid of the LLM track on UKPConvArg1 (real crowd votes), cross-topic.

    oncore2 python scripts/bench_llm_ukp.py --path ~/.cache/rlpref/ukpconvarg1/data \\
        --seeds 5 --folds 4 --workers 2 [-- extra hydra overrides]

Learners bt, rr_agree (vote margin as strength), rr_perm (the same margins shuffled across pairs: the
control) and clf × training fractions × seeds × every cross-topic fold (debates held out, both stances
together). The corpus is read and embedded once (the embedding cache is keyed by text and model);
the folds share the features; for one (fold, seed) all learners see the same labels, subset and
batches, so differences are paired. ``--workers`` processes (forked, one torch thread each) run the
grid. Writes to ``--out`` (default docs/results/llm_ukp): ``results.csv`` (one row per run, no corpus
text), ``summary.csv``, ``paired.csv``, ``efficiency.csv``, ``run.json`` (command, timing, machine),
``ukp_grid.png``; and, unless ``--no-results-md``, the generated section ``llm_ukp`` of docs/results.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlpref.llm.train import LLMRunConfig, prepare_ukp_folds, run  # noqa: E402
from rlpref.llm.ukp_report import (  # noqa: E402
    FIELDS, METRICS, efficiency_table, markdown_section, paired_table, plot_grid, summary_table,
)

_PREPARED: list = []  # set in the parent before forking; the workers read it
_CFGS: dict = {}


def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf" / "llm"), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def _one(task: tuple[int, int, float, str]) -> dict:
    """One run of the grid in a worker: (fold position, seed, fraction, experiment) -> results row."""
    import torch

    torch.set_num_threads(1)
    pos, seed, frac, exp = task
    r = run(dataclasses.replace(_CFGS[exp], seed=seed, fraction=frac), _PREPARED[pos])
    r.pop("_model", None)
    r["experiment"] = exp
    return {k: r.get(k, "") for k in FIELDS}


def _machine(workers: int) -> dict:
    return {"cpus": os.cpu_count(), "workers": workers, "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(), "platform": platform.platform()}


def _run_grid(tasks: list, workers: int, out: Path) -> list[dict]:
    """The grid's rows, written to results.csv as they finish."""
    rows = []
    ctx = mp.get_context("fork")
    with open(out / "results.csv", "w", newline="") as fh, ctx.Pool(workers) as pool:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for i, row in enumerate(pool.imap_unordered(_one, tasks, chunksize=1), 1):
            rows.append(row)
            w.writerow(row)
            fh.flush()
            if i % 20 == 0 or i == len(tasks):
                print(f"{i}/{len(tasks)} runs", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", help="folder holding UKPConvArg1-full-XML (the published data/); "
                                   "required unless --report-only")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--folds", type=int, default=8, help="k-fold over the 16 debates (16 = leave-one-debate-out)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    ap.add_argument("--experiments", nargs="+", default=["bt", "rr_agree", "rr_perm", "clf"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "llm_ukp"))
    ap.add_argument("--no-results-md", action="store_true", help="do not write the section of docs/results.md")
    ap.add_argument("--note", default="", help="what else ran on the machine (goes into run.json and the doc)")
    ap.add_argument("--report-only", action="store_true",
                    help="no training: rebuild the tables, figure and section from --out's results.csv and run.json")
    ap.add_argument("--merge", nargs="*", default=[],
                    help="with --report-only: results.csv files of other grids (same folds and seeds) to add, "
                         "e.g. the main grid's bt runs as the paired baseline of an ablation")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.hidden=0")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        meta = json.loads((out / "run.json").read_text())
        df = pd.concat([pd.read_csv(f) for f in [out / "results.csv", *args.merge]], ignore_index=True)
        df = df[df.experiment.isin(args.experiments)].drop_duplicates(["experiment", "fold", "seed", "fraction"])
        if args.merge:
            meta = {**meta, "runs": len(df), "merged": list(args.merge)}
        return _report(df, meta, out, args.experiments, not args.no_results_md)
    if not args.path:
        ap.error("--path is required (the folder holding UKPConvArg1-full-XML)")
    command = "python scripts/bench_llm_ukp.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    base = ["data=ukpconvarg1", f"data.path={args.path}", f"data.ukp.folds={args.folds}", "threads=1",
            "progress=false", *args.overrides]
    machine = _machine(args.workers)
    t0 = time.perf_counter()
    _PREPARED[:] = prepare_ukp_folds(compose(base), folds=range(args.folds))
    t_prep = time.perf_counter() - t0
    print(f"{_PREPARED[0].dataset}\nprepared {args.folds} folds in {t_prep:.1f}s", flush=True)
    _CFGS.update({e: LLMRunConfig.from_config(compose([f"experiment={e}", *base])) for e in args.experiments})
    tasks = [(p, s, f, e) for p in range(args.folds) for s in range(args.seeds)
             for f in args.fractions for e in args.experiments]
    rows = _run_grid(tasks, args.workers, out)
    wall = time.perf_counter() - t0
    machine["load_average_at_end"] = os.getloadavg()
    meta = {"command": command, "overrides": base, "runs": len(rows), "wall_seconds": round(wall, 1),
            "prepare_seconds": round(t_prep, 1), "machine": machine, "note": args.note,
            "load_report": _PREPARED[0].info["load_report"], "metrics": list(METRICS)}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return _report(pd.DataFrame(rows), meta, out, args.experiments, not args.no_results_md)


def _report(df: pd.DataFrame, meta: dict, out: Path, experiments: list, results_md: bool) -> int:
    """Tables, figure and (``results_md``) the docs section of a finished grid; bt's own row in the
    efficiency table shows where bt itself reaches its full-data mean."""
    summary, paired = summary_table(df), paired_table(df, baseline="bt")
    eff = efficiency_table(summary, learners=[e for e in experiments if e in set(df.experiment)])
    summary.to_csv(out / "summary.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    eff.to_csv(out / "efficiency.csv", index=False)
    plot_grid(summary, out / "ukp_grid.png")
    section = markdown_section(summary, paired, eff, meta, figure=os.path.relpath(out / "ukp_grid.png", ROOT / "docs"))
    print(section)
    if results_md:
        from rlpref.report.sections import write_section

        write_section(ROOT / "docs" / "results.md", "llm_ukp", section, meta["command"])
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
