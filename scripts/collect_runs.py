"""Copy the finished runs of a sweep folder into the repository, without weights or caches.

    python scripts/collect_runs.py /shared/paper_sigma25 docs/results/paper_sigma25

A sweep folder as ``scripts/slurm_paper_sigma25.sh submit DIR`` (or ``slurm_array.sh``) leaves it: ``DIR/rows.txt``,
``DIR/runs/<task>/`` and ``DIR/logs/*.out``. Only runs with a ``results.json`` are copied, and of them only
the small text files a report or a reader needs (``KEEP``); task logs are copied with each progress bar cut
to its last state (tqdm rewrites a line with carriage returns, which makes a log of megabytes). Rerun it
as the sweep fills: files that did not change are left alone, so ``git status`` shows only what is new.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

KEEP = ("results.json", "curve.csv", "metrics.csv", "run.log", "row.txt", "reward_net.json", "history.json",
        "metrics.json", ".hydra/overrides.yaml")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def last_states(text: str) -> str:
    """Each line as a terminal would show it last: the text after its final carriage return."""
    return "\n".join(_ANSI.sub("", ln.rstrip("\r").rsplit("\r", 1)[-1]) for ln in text.split("\n"))


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return True


def collect(src: Path, dest: Path) -> dict:
    """Copy what is finished; returns counts {runs, files, logs} of what was written."""
    if not (src / "runs").is_dir():
        raise SystemExit(f"collect_runs: {src}/runs not found: pass the sweep folder (the one holding rows.txt, "
                         "runs/ and logs/)")
    done = sorted((p for p in (src / "runs").iterdir() if (p / "results.json").is_file()), key=lambda p: p.name)
    counts = {"runs": len(done), "files": 0, "logs": 0}
    if (src / "rows.txt").is_file():
        counts["files"] += _write_if_changed(dest / "rows.txt", (src / "rows.txt").read_bytes())
    for run in done:
        for name in KEEP:
            if (run / name).is_file():
                counts["files"] += _write_if_changed(dest / "runs" / run.name / name, (run / name).read_bytes())
    for log in sorted((src / "logs").glob("*.out")) if (src / "logs").is_dir() else []:
        text = last_states(log.read_bytes().decode(errors="replace"))  # bytes: keep the \r
        counts["logs"] += _write_if_changed(dest / "logs" / (log.stem + ".log"), text.encode())
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="the sweep folder (rows.txt, runs/, logs/)")
    p.add_argument("dest", type=Path, help="where the copies go, e.g. docs/results/<name>")
    args = p.parse_args(argv)
    c = collect(args.src, args.dest)
    print(f"collect_runs: {c['runs']} finished runs in {args.src}; wrote {c['files']} run files and {c['logs']} logs "
          f"to {args.dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
