#!/usr/bin/env python
"""Time the commands the README quotes, one at a time, and append each to docs/results/timings.csv.

    python scripts/bench_timings.py smoke            # python -m rlpref.run env=Pendulum-v1 budget=smoke
    python scripts/bench_timings.py run              # python -m rlpref.run (the default budget: make run's job)
    python scripts/bench_timings.py paper            # python -m rlpref.run budget=paper (HalfCheetah-v4)
    python scripts/bench_timings.py test             # python -m pytest (the suite of make test)
    python scripts/bench_timings.py synthetic        # python -m rlpref.synthetic (the paper's full grid, 2 threads)
    python scripts/bench_timings.py run --note "with one other single-thread run on the second core"

Each run gets a fresh, empty artefact cache (so no stage is reused) unless ``--cache`` names one. A row
records the command, the wall seconds, the exit code, the machine's cores and CPU model, the commit and
the date: every time the README states comes from such a row. A pipeline run's ``results.json`` and
``run.log`` (per-stage seconds, the agent stage's parts, the return) are kept beside the CSV, in
``docs/results/timings/<name>-<date>/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlpref.artifacts import append_csv_row

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "timings.csv"
COMMANDS = {
    "smoke": [sys.executable, "-m", "rlpref.run", "env=Pendulum-v1", "budget=smoke"],
    "run": [sys.executable, "-m", "rlpref.run"],
    "paper": [sys.executable, "-m", "rlpref.run", "budget=paper"],
    "test": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
    "synthetic": [sys.executable, "-m", "rlpref.synthetic", "progress=false"],
}
FIELDS = ["name", "command", "wall_s", "exit_code", "cores", "cpu", "commit", "date", "note"]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(COMMANDS))
    ap.add_argument("extra", nargs="*", help="overrides appended to the command")
    ap.add_argument("--cache", default=None, help="artefact cache to use (default: a fresh temporary one)")
    ap.add_argument("--note", default="", help="e.g. what else shared the machine")
    args = ap.parse_args()
    cmd = COMMANDS[args.name] + list(args.extra)
    with tempfile.TemporaryDirectory(prefix="rlpref-timing-") as tmp:
        env = {**os.environ, "RLPREF_CACHE": args.cache or str(Path(tmp) / "cache")}
        if args.name != "test":
            cmd = cmd + [f"hydra.run.dir={Path(tmp) / 'run'}"]
        t0 = time.perf_counter()
        code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        wall = time.perf_counter() - t0
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
        for name in ("results.json", "run.log"):
            if (Path(tmp) / "run" / name).is_file():
                keep = OUT.parent / "timings" / f"{args.name}-{stamp}"
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(tmp) / "run" / name, keep / name)
    row = {"name": args.name, "command": " ".join(["python"] + cmd[1:]), "wall_s": f"{wall:.0f}", "exit_code": code,
           "cores": os.cpu_count(), "cpu": _cpu(), "commit": _commit(),
           "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "note": args.note}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    append_csv_row(OUT, FIELDS, row)
    print(f"{args.name}: {wall:.0f} s (exit {code}) -> {OUT}")
    return code


if __name__ == "__main__":
    sys.exit(main())
