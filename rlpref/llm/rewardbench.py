"""RewardBench (``allenai/reward-bench``, split ``filtered``) loading and scoring.

Rows: ``prompt, chosen, chosen_model, rejected, rejected_model, subset, id``. A reward model is
right on a row when r(prompt, chosen) > r(prompt, rejected). Section scores here are the plain
mean of the per-subset accuracies of each section (the official leaderboard weights subsets by
size inside Chat/Chat Hard/Safety and averages math and code inside Reasoning; state which you
report). Needs the hub or a local ``.parquet``/``.jsonl`` copy; nothing here runs offline without one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["SECTIONS", "load_rewardbench", "score_rewardbench"]

SECTIONS: dict[str, tuple[str, ...]] = {
    "chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "chat_hard": (
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ),
    "safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond", "donotanswer"),
    "reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}
FIELDS = ("prompt", "chosen", "rejected", "subset")


def load_rewardbench(path: Optional[str] = None, *, hub_id: str = "allenai/reward-bench", split: str = "filtered") -> list[dict]:
    """Rows as dicts with ``prompt, chosen, rejected, subset`` from a local file or the hub."""
    import datasets

    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"RewardBench file not found: {p}")
        builder = "parquet" if p.suffix == ".parquet" else "json"
        ds = datasets.load_dataset(builder, data_files=str(p), split="train")
    else:
        ds = datasets.load_dataset(hub_id, split=split)
    missing = [f for f in FIELDS if f not in ds.column_names]
    if missing:
        raise ValueError(f"RewardBench data lacks fields {missing}; expected {', '.join(FIELDS)}")
    return [{f: r[f] for f in FIELDS} for r in ds]


def score_rewardbench(
    reward_fn: Callable[[Sequence[str], Sequence[str]], np.ndarray], rows: Sequence[dict], batch_size: int = 64
) -> dict:
    """Per-subset and per-section accuracy of ``reward_fn(prompts, completions) -> rewards``."""
    if not rows:
        raise ValueError("no RewardBench rows to score")
    correct_by_subset: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        prompts = [r["prompt"] for r in chunk]
        rc = np.asarray(reward_fn(prompts, [r["chosen"] for r in chunk]), dtype=np.float64)
        rr = np.asarray(reward_fn(prompts, [r["rejected"] for r in chunk]), dtype=np.float64)
        for r, ok in zip(chunk, rc > rr):
            correct_by_subset[r["subset"]].append(bool(ok))
    subsets = {k: float(np.mean(v)) for k, v in sorted(correct_by_subset.items())}
    out = {"subsets": subsets, "overall_rows": float(np.mean([x for v in correct_by_subset.values() for x in v]))}
    sections = {}
    for name, members in SECTIONS.items():
        vals = [subsets[s] for s in members if s in subsets]
        if vals:
            sections[name] = float(np.mean(vals))
    out["sections"] = sections
    if sections:
        out["score"] = float(np.mean(list(sections.values())))
    return out
