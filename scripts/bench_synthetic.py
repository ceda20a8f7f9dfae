#!/usr/bin/env python
"""Speed of the synthetic grid: stacked fits (one tensor program) vs one fit at a time.

    python scripts/bench_synthetic.py [--trials 100] [--single 21] [--threads 1]

Times ``run_grid`` on one dataset (all learners, fraction 1.0, ``--trials`` trials: stacked) and
``fit_single`` on ``--single`` of the same fits, then prints seconds per fit for both, the speed-up,
and what the full grid (6 datasets x 6 fractions x 100 trials x 7 learners) would take each way.
"""

from __future__ import annotations

import argparse
import time

import torch

from rlpref.synthetic.grid import GridConfig, _Fit, _fit_input, run_grid
from rlpref.synthetic.learners import LEARNERS, TrainConfig, fit_single, init_learner
from rlpref.synthetic.trials import DatasetSpec, generate_dataset

FULL_GRID_FITS = 6 * 6 * 100 * len(LEARNERS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--single", type=int, default=21, help="fits timed one at a time")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = DatasetSpec("drift_diffusion", "drift_diffusion")
    train = TrainConfig()
    batch = generate_dataset(spec, 0, range(args.trials))
    grid = GridConfig(fractions=(1.0,), n_trials=args.trials)

    t0 = time.perf_counter()
    results, _ = run_grid([spec], grid, train, progress=False, batches=[batch])
    stacked = (time.perf_counter() - t0) / len(results)

    learners = list(LEARNERS.values())
    n = spec.n_train
    t0 = time.perf_counter()
    for i in range(args.single):
        lr, trial = learners[i % len(learners)], i // len(learners)
        data = _fit_input(_Fit(batch, trial, lr, 1.0, n), grid.seed)  # the very input the grid stacks
        fit_single(lr, data, init_learner(grid.seed, trial, spec.n_features, train), train)
    single = (time.perf_counter() - t0) / args.single

    print(f"threads={args.threads}; {len(results)} stacked fits, {args.single} single fits (200 epochs each)")
    print(f"seconds per fit: stacked {stacked * 1e3:.2f} ms, one at a time {single * 1e3:.1f} ms -> "
          f"speed-up {single / stacked:.0f}x")
    print(f"full grid ({FULL_GRID_FITS} fits): stacked ~{FULL_GRID_FITS * stacked / 60:.1f} min, "
          f"one at a time ~{FULL_GRID_FITS * single / 60:.0f} min")


if __name__ == "__main__":
    main()
