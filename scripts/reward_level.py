"""Where does a learned reward put its zero? Per rollout batch of a run's own segments: the mean per-step
learned reward and the mean per-step true reward.

Preference losses fit r_θ only up to an added constant (segments of equal length: the constant cancels in
every comparison). On an env that ends an episode early (Walker2d-v5, Hopper-v5 when the body falls;
merge-v0 on a crash) that constant is not harmless: where r_θ is below zero on the states an agent visits,
ending the episode sooner pays, and a fresh agent learns to fall. This prints, per batch (0 = the uniformly
random policy, k = the k-th source checkpoint), both means, and the least-squares line r_θ ≈ a·r + b over
the batches, whose b / a is r_θ's zero in true-reward units per step.

    python scripts/reward_level.py --cache CACHE RUN_DIR [RUN_DIR ...]

RUN_DIR is a finished run folder (its ``results.json`` names the segments artefact; its ``reward_net.*``
hold r_θ) or a reward-model artefact in the cache (``CACHE/reward_model/KEY``: its manifest's inputs lead to
the segments), which exists as soon as the fit ends, so a run can be checked before its agent is trained;
CACHE is the stage cache the run used (``RLPREF_CACHE``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rlpref.artifacts import load_npz
from rlpref.control.reward_net import load_reward_model


def segments_key(run: Path, cache: Path) -> str | None:
    """The segments artefact ``run`` was fitted on: a run folder's ``results.json`` names it; a cached
    reward model's manifest lists its inputs (the feedback, whose own inputs hold the segments)."""
    if (run / "results.json").is_file():
        return (json.loads((run / "results.json").read_text()).get("artifacts") or {}).get("segments")
    todo = [run / "manifest.json"]
    while todo:
        manifest = todo.pop()
        if not manifest.is_file():
            continue
        for key in json.loads(manifest.read_text()).get("inputs") or []:
            if (cache / "segments" / key).is_dir():
                return key
            todo += [cache / stage / key / "manifest.json" for stage in ("feedback", "reward_model")]
    return None


def batch_levels(run: Path, cache: Path) -> list[tuple[int, float, float]]:
    """(batch, mean learned per-step reward, mean true per-step reward) for each rollout batch."""
    if not (run / "results.json").is_file() and not (run / "manifest.json").is_file():
        raise SystemExit(f"reward_level: {run} is neither a finished run folder (results.json) nor a cached "
                         f"reward model (CACHE/reward_model/KEY with manifest.json)")
    key = segments_key(run, cache)
    seg_file = cache / "segments" / str(key) / "segments.npz"
    if not key or not seg_file.is_file():
        raise SystemExit(f"reward_level: {seg_file} not found: pass the cache the run used (--cache)")
    seg = load_npz(seg_file, ("obs", "acts", "next_obs", "rewards", "batch"))
    model = load_reward_model(run)
    n, length = seg["rewards"].shape
    nxt = seg["next_obs"].reshape(n * length, -1) if model.use_next_obs else None
    learned = model.predict(seg["obs"].reshape(n * length, -1), seg["acts"].reshape(n * length, -1), nxt)
    learned = learned.reshape(n, length)
    return [(int(b), float(learned[seg["batch"] == b].mean()), float(seg["rewards"][seg["batch"] == b].mean()))
            for b in np.unique(seg["batch"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("runs", type=Path, nargs="+")
    args = ap.parse_args()
    for run in args.runs:
        levels = batch_levels(run, args.cache)
        _, learned, true = map(np.array, zip(*levels))
        a, b = np.polyfit(true, learned, 1)
        if (run / "results.json").is_file():
            res = json.loads((run / "results.json").read_text())
            print(f"{run}: {res['env']} {res['loss']} σ {res['sigma']} seed {res['seed']}, final return "
                  f"{res['final_return']:.1f}")
        else:
            metrics = json.loads((run / "manifest.json").read_text()).get("metrics") or {}
            print(f"{run}: cached reward model, validation accuracy {metrics.get('val_accuracy', float('nan')):.3f}")
        print("  batch  learned/step  true/step")
        for batch, lv, tv in levels:
            print(f"  {batch:5d}  {lv:+12.4f}  {tv:+9.4f}")
        print(f"  r_θ ≈ {a:.4f}·r {b:+.4f}: r_θ's zero at true reward {-b / a:+.3f} per step; random batch "
              f"learned {learned[0]:+.4f}/step")


if __name__ == "__main__":
    main()
