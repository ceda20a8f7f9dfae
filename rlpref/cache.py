"""python -m rlpref.cache {ls,verify,clean} [PATH]: inspect, check and prune a stage cache.

``PATH`` is a cache root (default: ``$RLPREF_CACHE`` or ``.rlpref_cache``, as the runs use) or one
artefact folder (``<root>/<stage>/<key>``).

- ``ls``: artefacts per stage, their size, and leftovers of killed builds.
- ``verify``: every artefact file against the sha256 and size in its manifest; exit 1 if any differs.
- ``clean``: delete artefacts (``--stage NAME`` only that stage's, ``--corrupt`` only those that fail
  verification) and the leftovers of killed builds; ``--dry-run`` lists without deleting. A run that
  needs a deleted artefact rebuilds it; runs sharing its key rebuild it once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence

from filelock import FileLock, Timeout

from rlpref.artifacts import MANIFEST, verify_artifact

__all__ = ["artifact_dirs", "main"]


def default_root() -> Path:
    return Path(os.environ.get("RLPREF_CACHE", ".rlpref_cache"))


def _is_artifact(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def artifact_dirs(path: Path, stage: Optional[str] = None) -> Iterator[Path]:
    """Finished artefact folders under a cache root (or ``path`` itself when it is one)."""
    if _is_artifact(path):
        if stage is None or path.parent.name == stage:
            yield path
        return
    for stage_dir in sorted(p for p in path.iterdir() if p.is_dir() and (stage is None or p.name == stage)):
        for art in sorted(stage_dir.iterdir()):
            if art.is_dir() and not art.name.startswith(".") and _is_artifact(art):
                yield art


def leftovers(path: Path) -> list[Path]:
    """Folders of killed builds (``.<key>.building.*``) and artefact folders without a manifest."""
    if _is_artifact(path):
        return []
    out = []
    for stage_dir in (p for p in path.iterdir() if p.is_dir()):
        for p in stage_dir.iterdir():
            if p.is_dir() and (".building." in p.name or not _is_artifact(p)) and ".partial" not in p.name:
                out.append(p)
    return sorted(out)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def cmd_ls(root: Path) -> int:
    totals: dict[str, list[int]] = {}
    for art in artifact_dirs(root):
        totals.setdefault(art.parent.name, [0, 0])
        totals[art.parent.name][0] += 1
        totals[art.parent.name][1] += _size(art)
    for stage, (n, size) in sorted(totals.items()):
        print(f"{stage:<14} {n:>5} artefacts  {_mib(size):>12}")
    left = leftovers(root)
    if left:
        print(f"{len(left)} folder(s) of builds in progress or killed ({_mib(sum(_size(p) for p in left))}); "
              f"python -m rlpref.cache clean {root} removes the killed ones")
    return 0


def cmd_verify(root: Path, stage: Optional[str]) -> int:
    n_ok = n_bad = n_legacy = 0
    for art in artifact_dirs(root, stage):
        problems = verify_artifact(art)
        if problems is None:
            n_legacy += 1
            print(f"unverifiable  {art} (written before checksums; clean it to rebuild with them)")
        elif problems:
            n_bad += 1
            print(f"CORRUPT       {art}: " + "; ".join(problems))
        else:
            n_ok += 1
    print(f"{n_ok} ok, {n_bad} corrupt, {n_legacy} without checksums under {root}")
    if n_bad:
        print(f"delete the corrupt ones with: python -m rlpref.cache clean {root} --corrupt "
              "(the next run that needs one rebuilds it)")
    return 1 if n_bad else 0


def _lock_of(path: Path) -> Path:
    """The artefact lock a builder holds for ``path``: ``<key>.lock`` also for its ``.<key>.building.*`` folders."""
    if path.name.startswith(".") and ".building." in path.name:
        return path.parent / (path.name[1:].split(".building.")[0] + ".lock")
    return Path(str(path) + ".lock")


def _remove(art: Path, dry_run: bool) -> bool:
    """Delete ``art`` unless a process holds its lock (a build in progress); True if removed (or would be)."""
    try:
        with FileLock(str(_lock_of(art)), timeout=0):
            if not dry_run:
                shutil.rmtree(art, ignore_errors=True)
    except Timeout:
        print(f"skipped {art}: a process is building it right now")
        return False
    print(("would remove " if dry_run else "removed ") + str(art))
    return True


def cmd_clean(root: Path, stage: Optional[str], corrupt_only: bool, dry_run: bool) -> int:
    n, single = 0, _is_artifact(root)
    for art in list(artifact_dirs(root, stage)):
        if corrupt_only and not verify_artifact(art):
            continue
        n += _remove(art, dry_run)
    if not single:
        for p in leftovers(root):
            n += _remove(p, dry_run)
    print(f"{n} folder(s) {'to remove' if dry_run else 'removed'}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlpref.cache", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("ls", "artefacts per stage and their size"),
                        ("verify", "check every artefact file's checksum"),
                        ("clean", "delete artefacts and leftovers of killed builds")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("path", nargs="?", type=Path, default=None, help="cache root or artefact folder")
        if name != "ls":
            p.add_argument("--stage", default=None, help="only this stage (source, segments, feedback, ...)")
        if name == "clean":
            p.add_argument("--corrupt", action="store_true", help="only artefacts that fail verification")
            p.add_argument("--dry-run", action="store_true", help="list what would be removed")
    args = ap.parse_args(argv)
    root = args.path or default_root()
    if not root.is_dir():
        ap.error(f"no cache at {root}: pass the cache folder (cache_dir of your runs, or $RLPREF_CACHE)")
    stage = getattr(args, "stage", None)
    if stage is not None and not _is_artifact(root) and not (root / stage).is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        ap.error(f"no stage '{stage}' in {root}; present: {', '.join(present) or 'none'}")
    if args.command == "ls":
        return cmd_ls(root)
    if args.command == "verify":
        return cmd_verify(root, args.stage)
    return cmd_clean(root, args.stage, args.corrupt, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
