"""What code made a result: recorded in every run's ``results.json``, so a table that mixes runs of several
commits (a long array filled over sessions) can say which ran what."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch

__all__ = ["code_version"]

_ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """{commit, dirty, torch, python}: the checkout's git commit and whether tracked files differ from it
    (None for both outside a git checkout, e.g. an installed wheel), and the torch and Python versions."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "torch": torch.__version__, "python": platform.python_version()}
