"""Copy the finished runs of a sweep folder into the repository, without weights or caches.

    python scripts/collect_runs.py /shared/paper_sigma25 docs/results/paper_sigma25

A sweep folder as ``scripts/slurm_paper_sigma25.sh submit DIR`` (or ``slurm_array.sh``) leaves it: ``DIR/rows.txt``,
``DIR/runs/<task>/`` and ``DIR/logs/task_<job>_<task>.out``. Only runs with a ``results.json`` are copied, and
of them only the small text files a report or a reader needs (``KEEP``), with their tasks' logs (every
submission's), each progress bar cut to its last state (tqdm rewrites a line with carriage returns, which
makes a log of megabytes). Rerun it as the sweep fills: files that did not change are left alone, so ``git
status`` shows only what is new. A file that cannot be read is reported and skipped (exit status 1).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rlpref.artifacts import atomic_path

KEEP = ("results.json", "curve.csv", "metrics.csv", "run.log", "row.txt", "reward_net.json", "history.json",
        "metrics.json", ".hydra/overrides.yaml")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def last_states(text: str) -> str:
    """Each line as a terminal would show it last: the text after its final carriage return."""
    return "\n".join(_ANSI.sub("", ln.rstrip("\r").rsplit("\r", 1)[-1]) for ln in text.split("\n"))


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    with atomic_path(path) as tmp:  # a reader never sees half a file
        tmp.write_bytes(data)
    return True


def collect(src: Path, dest: Path) -> dict:
    """Copy what is finished; returns counts {runs, files, logs} of what was written and the ``unreadable``
    files skipped."""
    if not (src / "runs").is_dir():
        raise SystemExit(f"collect_runs: {src}/runs not found: pass the sweep folder (the one holding rows.txt, "
                         "runs/ and logs/)")
    done = sorted(p.name for p in (src / "runs").iterdir() if (p / "results.json").is_file())
    counts = {"runs": len(done), "files": 0, "logs": 0, "unreadable": []}

    def copy(source: Path, target: Path, kind: str, transform=lambda b: b) -> None:
        try:
            counts[kind] += _write_if_changed(target, transform(source.read_bytes()))
        except OSError as err:
            counts["unreadable"].append(f"{source} ({err.strerror or err})")

    for run in done:
        for name in KEEP:
            if (src / "runs" / run / name).is_file():
                copy(src / "runs" / run / name, dest / "runs" / run / name, "files")
    if (src / "rows.txt").is_file():
        copy(src / "rows.txt", dest / "rows.txt", "files")
    finished = set(done)
    for log in sorted((src / "logs").glob("*.out")) if (src / "logs").is_dir() else []:
        task = log.stem.rsplit("_", 1)[-1]
        if task.isdigit() and task not in finished:
            continue  # a running or failed task's log changes on every pass: it comes with its run
        copy(log, dest / "logs" / (log.stem + ".log"), "logs",
             lambda b: last_states(b.decode(errors="replace")).encode())  # bytes: keep the \r
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="the sweep folder (rows.txt, runs/, logs/)")
    p.add_argument("dest", type=Path, help="where the copies go, e.g. docs/results/<name>")
    args = p.parse_args(argv)
    c = collect(args.src, args.dest)
    print(f"collect_runs: {c['runs']} finished runs in {args.src}; wrote {c['files']} files and {c['logs']} logs "
          f"to {args.dest}", file=sys.stderr)
    for path in c["unreadable"]:
        print(f"collect_runs: could not read {path}; skipped", file=sys.stderr)
    sys.exit(1 if c["unreadable"] else 0)


if __name__ == "__main__":
    main()
