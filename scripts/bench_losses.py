#!/usr/bin/env python
"""Time forward+backward of the preference losses (bt, rr, clf) on CPU.

Not a test: prints a table (median time per forward+backward) and the rr/bt ratio. ``rr+plan`` uses a
precomputed :func:`rlpref.losses.make_rank_plan`, as a training loop does (strength and strata are
fixed across epochs), so it measures the loss alone; ``rr`` also builds the plan on every call. ``rr+plan`` runs whatever a user gets by default: the
compiled CPU kernel when ``python -m rlpref.kernels build`` has run, else the eager path, which is
also timed on its own as ``rr eager``.

    nice -n 10 python scripts/bench_losses.py [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from rlpref import kernels
from rlpref.losses import LOSSES, make_rank_plan, rr_loss


def make_inputs(n: int, k: int, seed: int = 0):
    """N comparisons in shuffled strata of k, distinct strength keys (like the paper's random_k)."""
    g = torch.Generator().manual_seed(seed)
    uc = torch.randn(n, generator=g).requires_grad_()
    ur = torch.randn(n, generator=g).requires_grad_()
    strength = torch.randperm(n, generator=g).float()
    stratum = (torch.arange(n) // k)[torch.randperm(n, generator=g)]
    return uc, ur, strength, stratum


def time_fn(fn, uc, ur, min_block_s: float, repeats: int) -> float:
    """Median seconds per call; each sample times a block of calls lasting at least min_block_s."""

    def step():
        uc.grad = ur.grad = None
        fn().backward()

    for _ in range(3):  # warm-up (allocator, lazy init)
        step()
    t0 = time.perf_counter()
    step()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_block_s / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            step()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--strata", type=int, nargs="+", default=[8, 64], help="stratum sizes")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--block", type=float, default=0.05, help="min seconds per timed sample")
    ap.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for n in args.sizes:
        for k in args.strata:
            uc, ur, strength, stratum = make_inputs(n, k)
            plan = make_rank_plan(strength, stratum)
            fns = {
                "bt": lambda: LOSSES["bt"](uc, ur),
                "rr": lambda: rr_loss(uc, ur, strength, stratum),
                "rr+plan": lambda: rr_loss(uc, ur, plan=plan),
                "rr_eager": lambda: rr_loss(uc, ur, plan=plan, use_kernel=False),
                "clf": lambda: LOSSES["clf"](uc, ur),
            }
            t = {name: time_fn(fn, uc, ur, args.block, args.repeats) for name, fn in fns.items()}
            t0 = time.perf_counter()
            for _ in range(5):
                make_rank_plan(strength, stratum)
            t["plan_only"] = (time.perf_counter() - t0) / 5
            rows.append({"n": n, "k": k, **{f"{name}_s": v for name, v in t.items()},
                         "rr/bt": t["rr"] / t["bt"], "rr+plan/bt": t["rr+plan"] / t["bt"],
                         "rr_eager/bt": t["rr_eager"] / t["bt"]})

    kernel = "compiled CPU kernel" if kernels.load() is not None else "eager (kernel not built)"
    head = (f"{'N':>7} {'k':>3} | {'bt':>9} {'rr':>9} {'rr+plan':>9} {'rr eager':>9} {'clf':>9} {'plan':>9} | "
            f"{'rr/bt':>6} {'rr+plan/bt':>10} {'eager/bt':>8}")
    print(f"forward+backward, median of {args.repeats}, torch {torch.__version__}, threads={args.threads}, "
          f"{platform.processor() or platform.machine()}; times in microseconds; rr path: {kernel}")
    print(head)
    print("-" * len(head))
    for r in rows:
        us = lambda key: f"{r[key] * 1e6:9.1f}"  # noqa: E731
        print(f"{r['n']:>7} {r['k']:>3} | {us('bt_s')} {us('rr_s')} {us('rr+plan_s')} {us('rr_eager_s')} {us('clf_s')} "
              f"{us('plan_only_s')} | {r['rr/bt']:6.2f} {r['rr+plan/bt']:10.2f} {r['rr_eager/bt']:8.2f}")
    target = [r for r in rows if r["n"] == 10_000]
    if target:
        worst = max(r["rr+plan/bt"] for r in target)
        print(f"target rr+plan <= 1.5x bt at N=10k: worst {worst:.2f}x -> {'met' if worst <= 1.5 else 'NOT met'}")
    if args.json:
        meta = {"torch": torch.__version__, "threads": args.threads, "repeats": args.repeats, "rr_path": kernel,
                "machine": platform.machine(), "units": "seconds per forward+backward"}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
