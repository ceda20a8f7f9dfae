"""Benchmark of the reward-model fit (issue 38 item 1): seconds, validation accuracy and Spearman per fit.

    # 1. the feedback to fit: source, segments and teacher stages of a run, built through the run's own
    #    stage cache (same keys as ``python -m rlpref.run`` with these overrides would use)
    python scripts/bench_reward_fit.py prepare --cache /tmp/rf/cache -- env=HalfCheetah-v5 protocol=offline \\
        budget=paper budget.source_steps=250000 teacher.sigma=0.25 seed=0
    # 2. fits, one child process each (pinned to one thread), for several checkouts of rlpref:
    git clone /work/main /tmp/before && git -C /tmp/before checkout <commit>
    python scripts/bench_reward_fit.py fits --cache /tmp/rf/cache --code before=/tmp/before --code after=. \\
        --losses bt rr --seeds 0 1 2 --out docs/results/reward_fit -- env=HalfCheetah-v5 protocol=offline \\
        budget=paper budget.source_steps=250000 teacher.sigma=0.25

Each fit calls that checkout's ``train_reward_model`` exactly as its pipeline's reward-model stage does (its
own ``conf/`` composed with the overrides, the stored validation split), in a child process so one fit's
allocations never slow the next. Per fit ``<out>/fits/<label>-<loss>-seed<s>.json`` (skipped when it
exists, so a killed batch resumes); ``fits.csv`` and ``fits.json`` gather them. A benchmark, not a test: its
numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
FIELDS = ("label", "loss", "seed", "seconds", "cpu_seconds", "epochs", "val_accuracy", "val_true_accuracy", "spearman",
          "pearson", "val_loss", "n_train", "commit", "overrides")


def _compose(code: Path, overrides: list[str]) -> dict:
    """The resolved run config of checkout ``code`` (its own conf/) with ``overrides``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(code / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)


def prepare(cache: Path, overrides: list[str]) -> dict:
    """Build (or reuse) the stages before the reward model (source, segments, feedback) into ``cache``; return
    their files. The run's own protocol stages and keys (:func:`rlpref.control.pipeline.run_pipeline`), so a
    later run with ``cache_dir=<cache>`` and the same overrides reuses them."""
    from rlpref.artifacts import ArtifactStore
    from rlpref.control import pipeline as pl
    from rlpref.control.protocols import protocol_for
    from rlpref.progress import RunProgress
    from rlpref.runtime import configure_compute

    spec = pl.RunSpec.from_config(_compose(HERE, [*overrides, f"cache_dir={cache}"]))
    configure_compute(spec.run.torch_threads)
    stages = protocol_for(spec).stages(spec)
    runner = pl.StageRunner(ArtifactStore(cache), RunProgress([(s.name, s.cost) for s in stages],
                                                              pl._PRIOR_SECONDS_PER_STEP[spec.agent.algo]))
    done: dict = {}
    for stage in stages:
        if stage.name == "reward_model":
            break
        done[stage.name] = runner.run(stage, done)
    out = {"segments": str(done["segments"].path / "segments.npz"),
           "preferences": str(done["feedback"].path / "preferences.npz"),
           "timings": runner.timings, "reused": runner.reused}
    print(json.dumps(out, indent=1))
    return out


def fit_one(code: Path, cache: Path, overrides: list[str], loss: str, seed: int) -> dict:
    """One fit with checkout ``code``'s rlpref, as its reward-model stage runs it; returns the numbers."""
    code = Path(code).resolve()  # Hydra composes from an absolute conf dir
    sys.path.insert(0, str(code))  # this checkout's rlpref, before any other on the path
    import numpy as np
    import rlpref

    from rlpref.control.config import RunSpec
    from rlpref.control.records import Preferences, Segments
    from rlpref.control.reward_net import train_reward_model, validation_mask
    try:
        from rlpref.runtime import configure_compute
    except ImportError:  # checkouts before configure_compute (no denormal flush there)
        from rlpref.runtime import pin_threads as configure_compute

    if Path(rlpref.__file__).resolve().parents[1] != code.resolve():
        raise RuntimeError(f"imported rlpref from {rlpref.__file__}, not from {code}")
    spec = RunSpec.from_config(_compose(code, [*overrides, f"loss={loss}", f"seed={seed}", f"cache_dir={cache}"]))
    configure_compute(1)
    files = prepare_paths(cache, overrides)
    segments, prefs = Segments.load(Path(files["segments"])), Preferences.load(Path(files["preferences"]))
    val_mask = validation_mask(len(prefs), spec.reward_train.val_fraction, np.random.default_rng(seed))
    t0, c0 = time.perf_counter(), time.process_time()
    _, metrics, history = train_reward_model(segments, prefs, loss, spec.reward_train, seed, val_mask=val_mask)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0  # CPU: less sensitive to sharing
    commit = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "loadavg_at_end": os.getloadavg(), "epochs": len(history),
            "history": history, "reward_model": spec.reward_train.__dict__,
            "commit": commit, "n_pairs": len(prefs), "n_segments": len(segments), **metrics}


def profile(cache: Path, overrides: list[str], loss: str, epochs: int, to: Path) -> None:
    """cProfile of ``epochs`` epochs of one fit (this checkout, one thread, no early stop): where the time goes."""
    import cProfile
    import dataclasses
    import io
    import pstats

    import numpy as np

    from rlpref.control.config import RunSpec
    from rlpref.control.records import Preferences, Segments
    from rlpref.control.reward_net import train_reward_model, validation_mask
    from rlpref.runtime import configure_compute

    spec = RunSpec.from_config(_compose(HERE, [*overrides, f"loss={loss}", f"cache_dir={cache}"]))
    configure_compute(1)
    files = prepare_paths(cache, overrides)
    segments, prefs = Segments.load(Path(files["segments"])), Preferences.load(Path(files["preferences"]))
    cfg = dataclasses.replace(spec.reward_train, max_epochs=epochs, patience=epochs + 1)
    val_mask = validation_mask(len(prefs), cfg.val_fraction, np.random.default_rng(0))
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(train_reward_model, segments, prefs, loss, cfg, 0, val_mask=val_mask)
    text = io.StringIO()
    print(f"{loss}, {epochs} epochs, reward_model={cfg}: {time.perf_counter() - t0:.1f} s", file=text)
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(20)
    to.write_text(text.getvalue())
    print(text.getvalue())


def prepare_paths(cache: Path, overrides: list[str]) -> dict:
    """The files :func:`prepare` wrote (recorded beside the cache, so fits need not rebuild the stages)."""
    return json.loads((cache / _stamp(overrides)).read_text())


def _stamp(overrides: list[str]) -> str:
    import hashlib

    data = [o for o in overrides if not o.lstrip("+").startswith(("reward_model.", "reward_fit="))]  # same feedback
    return "bench_reward_fit-" + hashlib.sha256(" ".join(data).encode()).hexdigest()[:12] + ".json"


def fits(args) -> None:
    """Every (checkout, loss, seed) fit in its own child process; then the CSV and JSON summaries."""
    out = Path(args.out)
    (out / "fits").mkdir(parents=True, exist_ok=True)
    for label, code in (c.split("=", 1) for c in args.code):
        for seed in args.seeds:
            for loss in args.losses:
                path = out / "fits" / f"{label}-{loss}-seed{seed}.json"
                if path.exists():
                    continue
                cmd = [sys.executable, __file__, "fit-one", "--cache", args.cache, "--code", code, "--loss", loss,
                       "--seed", str(seed), "--label", label, "--to", str(path), "--", *args.overrides]
                cmd = (["oncore"] if args.oncore else []) + cmd  # one CPU slot per fit, released between fits
                print(" ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
    summarise(out)


def summarise(out: Path) -> None:
    """fits.csv (one row per fit) and fits.json (rows plus the machine) from the per-fit files."""
    from rlpref.artifacts import atomic_write_json, atomic_write_text

    rows = [json.loads(p.read_text()) for p in sorted((out / "fits").glob("*.json"))]
    lines = [",".join(FIELDS)] + [",".join(_cell(r.get(k)) for k in FIELDS) for r in rows]
    atomic_write_text(out / "fits.csv", "\n".join(lines) + "\n")
    atomic_write_json(out / "fits.json", {"machine": _machine(), "fits": [{k: r.get(k) for k in FIELDS} for r in rows]})


def table(out: Path) -> str:
    """Markdown table of fits.json: one row per loss and seed, before and after side by side."""
    rows = json.loads((out / "fits.json").read_text())["fits"]
    by = {(r["label"], r["loss"], r["seed"]): r for r in rows}
    labels = sorted({r["label"] for r in rows}, reverse=True)  # "before" first
    head = ["loss", "seed"] + [f"{lab} {m}" for lab in labels for m in ("wall s", "CPU s", "epochs", "val acc", "Spearman")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for loss, seed in sorted({(r["loss"], r["seed"]) for r in rows}):
        cells = [loss, str(seed)]
        for lab in labels:
            r = by.get((lab, loss, seed))
            cells += ["–"] * 5 if r is None else [
                f"{r['seconds']:.0f}", "–" if r.get("cpu_seconds") is None else f"{r['cpu_seconds']:.0f}",
                str(r["epochs"]), f"{r['val_accuracy']:.3f}", f"{r['spearman']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairs(out: Path, base: list[str], other: str, limit: float = 120.0) -> str:
    """Markdown: per loss, ``other`` against the base fits of the same seeds (the first of the ``base`` labels
    that has the seed: e.g. ``before`` for seeds 0-2 and ``fp32`` for later ones, the same computation at two
    commits). Paired differences of validation accuracy and Spearman, mean with a 95 % Student-t CI over seeds
    (the project's interval for means over seeds; fits of one seed share the data, split and initialisation),
    and how many fits took <= ``limit`` CPU s."""
    import numpy as np

    from rlpref.report.stats import mean_with_ci

    rows = json.loads((out / "fits.json").read_text())["fits"]
    by = {(r["label"], r["loss"], r["seed"]): r for r in rows}
    head = ["loss", "seeds", f"{other} CPU s", "base CPU s", f"{other} <= {limit:g} s", f"{other} val acc",
            "base val acc", "Δ val acc, pp [95 % CI]", "Δ Spearman [95 % CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for loss in sorted({r["loss"] for r in rows if r["label"] == other}):
        matched = []
        for seed in sorted(r["seed"] for r in rows if r["label"] == other and r["loss"] == loss):
            b = next((by[(lab, loss, seed)] for lab in base if (lab, loss, seed) in by), None)
            if b is not None:
                matched.append((seed, by[(other, loss, seed)], b))
        if not matched:
            continue
        seeds = [m[0] for m in matched]
        o_cpu = [m[1].get("cpu_seconds") for m in matched]
        b_cpu = [m[2].get("cpu_seconds") for m in matched]
        cells = [loss, f"{len(seeds)} ({min(seeds)}–{max(seeds)})", _span(o_cpu), _span(b_cpu),
                 f"{sum(c is not None and c <= limit for c in o_cpu)} of {len(o_cpu)}",
                 f"{np.mean([m[1]['val_accuracy'] for m in matched]):.4f}",
                 f"{np.mean([m[2]['val_accuracy'] for m in matched]):.4f}"]
        for key, scale, digits in (("val_accuracy", 100.0, 2), ("spearman", 1.0, 4)):
            mean, lo, hi = mean_with_ci(np.array([(m[1][key] - m[2][key]) * scale for m in matched]))
            cells.append(f"{mean:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replay(out: Path, label: str, deltas: list[float]) -> str:
    """Markdown: where early stopping would have stopped each ``label`` fit if patience counted only gains of
    at least ``delta`` (relative) in validation loss, the weights still saved at every gain as today (so the
    fit keeps the best epoch seen), replayed from the fit's recorded per-epoch losses with its recorded
    patience. The trajectory up to the stop is the same, so epochs and best loss are exact; accuracy is not
    recorded per epoch. CPU seconds are scaled by the share of epochs kept. A fit whose threshold-0 replay
    does not stop where it did is refused (its history or patience is not what the rule saw)."""
    lines = ["| fit | epochs | CPU s | best val loss | " + " | ".join(f"≥ {d:g}: epochs / ~CPU s / best" for d in deltas) + " |",
             "|" + "---|" * (4 + len(deltas))]
    paths = sorted(p for p in (out / "fits").glob(f"{label}-*.json") if p.stem.split("-")[0] == label)
    if not paths:
        raise SystemExit(f"replay: no fits labelled '{label}' in {out / 'fits'}")
    for path in paths:
        fit = json.loads(path.read_text())
        losses = [h["val_loss"] for h in fit["history"]]
        rm = fit.get("reward_model") or {}
        patience, max_epochs = int(rm.get("patience", 5)), int(rm.get("max_epochs", 100))
        own = _replay_stop(losses, 0.0, patience)
        if own[0] != len(losses) or own[2] != (len(losses) < max_epochs):
            raise SystemExit(f"replay: {path} ran {len(losses)} of {max_epochs} epochs, but its losses with "
                             f"patience {patience} give {own[0]} ({'stopped' if own[2] else 'not stopped'})")
        cpu = fit.get("cpu_seconds") or fit["seconds"]
        cells = [path.stem, str(len(losses)), f"{cpu:.0f}", f"{fit.get('val_loss', min(losses)):.4f}"]
        for delta in deltas:
            stop, best, _ = _replay_stop(losses, delta, patience)
            cells.append(f"{stop} / {cpu * stop / len(losses):.0f} / {best:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _replay_stop(losses: list[float], delta: float, patience: int) -> tuple[int, float, bool]:
    """(epochs run, best validation loss kept, stopped early): weights are kept at every gain > 1e-6 (the fit's rule), but
    patience resets only on a relative gain >= ``delta`` over the last reset; delta 0 is the fit's own rule
    (``rlpref.control.reward_net._fit``)."""
    best = ref = float("inf")
    bad = 0
    for epoch, loss in enumerate(losses):
        if loss < best - 1e-6:
            best = loss
        if loss < ref * (1 - delta) - 1e-6:
            ref, bad = loss, 0
        else:
            bad += 1
        if bad >= patience:
            return epoch + 1, best, True
    return len(losses), best, False


def _span(values) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "–"
    return f"{min(known):.0f}–{max(known):.0f}" + ("" if len(known) == len(values) else f" ({len(known)} recorded)")


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return '"' + " ".join(v) + '"' if isinstance(v, list) else str(v)


def _machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "threads": 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--cache", required=True)
    pf = sub.add_parser("fits")
    pf.add_argument("--cache", required=True)
    pf.add_argument("--code", action="append", required=True, help="label=checkout (repeatable)")
    pf.add_argument("--losses", nargs="+", default=["bt", "rr"])
    pf.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    pf.add_argument("--out", default=str(HERE / "docs/results/reward_fit"))
    pf.add_argument("--oncore", action="store_true", help="run each fit through oncore (shared machines)")
    pt = sub.add_parser("table")
    pt.add_argument("--out", default=str(HERE / "docs/results/reward_fit"))
    pq = sub.add_parser("pairs", help="one label against base labels, paired by seed (markdown)")
    pq.add_argument("--out", default=str(HERE / "docs/results/reward_fit"))
    pq.add_argument("--base", nargs="+", required=True, help="labels of the reference fits, first match wins")
    pq.add_argument("--other", required=True)
    pq.add_argument("--limit", type=float, default=120.0, help="CPU-second target")
    pl = sub.add_parser("replay", help="early stopping with a relative threshold, replayed from recorded fits")
    pl.add_argument("--out", default=str(HERE / "docs/results/reward_fit"))
    pl.add_argument("--label", required=True)
    pl.add_argument("--min-delta", nargs="+", type=float, default=[0.0, 0.005, 0.01])
    pr = sub.add_parser("profile")
    for a in ("--cache", "--loss", "--to"):
        pr.add_argument(a, required=True)
    pr.add_argument("--epochs", type=int, default=3)
    po = sub.add_parser("fit-one")
    for a in ("--cache", "--code", "--loss", "--label", "--to"):
        po.add_argument(a, required=True)
    po.add_argument("--seed", type=int, required=True)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:split])
    args.overrides = argv[split + 1:]
    if args.cmd == "prepare":
        sys.path.insert(0, str(HERE))
        files = prepare(Path(args.cache), args.overrides)
        stamp = Path(args.cache) / _stamp(args.overrides)
        stamp.with_suffix(".tmp").write_text(json.dumps(files))
        os.replace(stamp.with_suffix(".tmp"), stamp)
    elif args.cmd == "table":
        sys.path.insert(0, str(HERE))
        summarise(Path(args.out))
        print(table(Path(args.out)))
    elif args.cmd == "pairs":
        sys.path.insert(0, str(HERE))
        summarise(Path(args.out))
        print(pairs(Path(args.out), args.base, args.other, args.limit))
    elif args.cmd == "replay":
        print(replay(Path(args.out), args.label, args.min_delta))
    elif args.cmd == "profile":
        sys.path.insert(0, str(HERE))
        profile(Path(args.cache), args.overrides, args.loss, args.epochs, Path(args.to))
    elif args.cmd == "fits":
        sys.path.insert(0, str(HERE))
        fits(args)
    else:
        res = fit_one(Path(args.code), Path(args.cache), args.overrides, args.loss, args.seed)
        res.update(label=args.label, loss=args.loss, seed=args.seed, overrides=args.overrides)
        tmp = Path(args.to + ".tmp")
        tmp.write_text(json.dumps(res, indent=1, default=str))
        os.replace(tmp, args.to)  # atomic: a killed fit leaves no half-written result
        print({k: res[k] for k in ("label", "loss", "seed", "seconds", "epochs", "val_accuracy", "spearman")})


if __name__ == "__main__":
    main()
