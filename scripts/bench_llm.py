#!/usr/bin/env python
"""Acceptance grid of the LLM track: experiments × training fractions × seeds → CSV + markdown.

    HF_HUB_OFFLINE=1 nice -n 10 python scripts/bench_llm.py --seeds 6 \
        --experiments bt rr_agree clf --fractions 0.1 0.25 0.5 1.0 [-- extra hydra overrides]

Data, split and frozen embeddings are prepared once and shared by every run; for one seed all
experiments see the same training labels, subset and batches, so differences are paired.
Writes ``results.csv`` (one row per run, appended as runs finish) and ``table.md`` with mean ± 95 %
t-interval over seeds and the paired difference of each experiment to ``--baseline``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlpref.llm.train import LLMRunConfig, prepare, run  # noqa: E402
from rlpref.report.stats import mean_with_ci  # noqa: E402

FIELDS = [
    "experiment", "loss", "strength", "strata", "seed", "fraction", "n_train", "n_strata", "steps",
    "accuracy", "accuracy_true", "pdc", "n_test", "seconds", "dataset",
]  # fmt: skip


def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf" / "llm"), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def _fmt(mean: float, half: float, scale: float = 100.0) -> str:
    if mean != mean:
        return "–"
    return f"{scale * mean:.1f} ± {scale * half:.1f}" if half == half else f"{scale * mean:.1f}"


def mean_ci(values) -> tuple[float, float]:
    """Mean and 95 % t-interval half-width (NaN for fewer than two values)."""
    m, lo, hi = mean_with_ci(np.asarray(values, dtype=float))
    return m, ((hi - lo) / 2 if len(values) > 1 else float("nan"))


def markdown(rows: list[dict], experiments, fractions, baseline: str) -> str:
    by = {}
    for r in rows:
        by.setdefault((r["experiment"], float(r["fraction"])), {})[int(r["seed"])] = r
    seeds = sorted({int(r["seed"]) for r in rows})
    out = [f"Dataset: {rows[0]['dataset']}", "", f"Seeds: {len(seeds)} ({seeds[0]}–{seeds[-1]}); cells: mean ± 95 % t-CI over seeds, in %.", ""]
    metrics = [("accuracy_true", "Test accuracy against the hidden utility"), ("accuracy", "Test accuracy against the aggregated annotator preference")]
    if all(r.get("accuracy_true") in ("", None) for r in rows):
        metrics = metrics[1:]
    for metric, title in metrics:
        out += [f"### {title}", "", "| experiment | " + " | ".join(f"frac {f:g}" for f in fractions) + " |", "|---" * (len(fractions) + 1) + "|"]
        for e in experiments:
            cells = [_fmt(*mean_ci([float(r[metric]) for r in by.get((e, f), {}).values()])) for f in fractions]
            out.append(f"| {e} | " + " | ".join(cells) + " |")
        out.append("")
        out += [
            f"Paired difference to {baseline} (pp, mean ± 95 % CI; wins = seeds where it is higher):",
            "",
            "| experiment | " + " | ".join(f"frac {f:g}" for f in fractions) + " |",
            "|---" * (len(fractions) + 1) + "|",
        ]
        for e in experiments:
            if e == baseline:
                continue
            cells = []
            for f in fractions:
                a, b = by.get((e, f), {}), by.get((baseline, f), {})
                common = sorted(set(a) & set(b))
                d = [float(a[s][metric]) - float(b[s][metric]) for s in common]
                m, h = mean_ci(d)
                wins = sum(x > 0 for x in d)
                cells.append(f"{_fmt(m, h)} ({wins}/{len(d)})" if d else "–")
            out.append(f"| {e} − {baseline} | " + " | ".join(cells) + " |")
        out.append("")
    secs = [float(r["seconds"]) for r in rows]
    out.append(f"Runs: {len(rows)}; seconds per run: mean {np.mean(secs):.2f}, max {np.max(secs):.2f}.")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    ap.add_argument("--experiments", nargs="+", default=["bt", "rr_agree", "clf"])
    ap.add_argument("--baseline", default="bt")
    ap.add_argument("--out", default=None, help="output folder (default outputs/llm_bench/<time>)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.hidden=0")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error("--seeds must be >= 1")
    out = Path(args.out or ROOT / "outputs" / "llm_bench" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    base = [f"threads={args.threads}", "progress=false", *args.overrides]
    t0 = time.perf_counter()
    prep = prepare(compose(base))
    print(f"dataset: {prep.dataset}\nprepared in {time.perf_counter() - t0:.1f}s; output {out}", flush=True)
    # Unknown experiments and bad keys fail here, before the first run.
    cfgs = {e: LLMRunConfig.from_config(compose([f"experiment={e}", *base])) for e in args.experiments}
    rows = []
    grid = [(s, f, e) for s in range(args.seeds) for f in args.fractions for e in args.experiments]
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for seed, frac, exp in tqdm(grid, desc="grid"):
            r = run(dataclasses.replace(cfgs[exp], seed=seed, fraction=frac), prep)
            r.pop("_model", None)
            r["experiment"] = exp
            rows.append(r)
            writer.writerow(r)
            fh.flush()
    table = markdown(rows, args.experiments, args.fractions, args.baseline)
    table += f"Total wall time: {time.perf_counter() - t0:.0f}s.\n"
    (out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
