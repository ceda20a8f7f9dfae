"""The MultiPref record format: one place that knows its schema, reads it and writes it.

MultiPref (``allenai/multipref``, config ``default``, split ``train``) has one row per comparison::

    comparison_id, prompt_id, text (the prompt), completion_a, model_a, completion_b, model_b,
    source, category, subject_study, highest_level_degree,
    normal_worker_annotations, expert_worker_annotations   # list[dict] each

and each annotation dict holds (among other aspects) ``evaluator`` (annotator id),
``overall_pref`` (one of :data:`PREF_SCORES`), ``overall_confidence`` and ``time_spent`` (seconds).
:func:`load_multipref` reads it from the hub or from a local ``.jsonl``/``.json``/``.parquet`` file
with the same schema and turns the rows into :class:`Comparison` records, the form every later
stage (splits, strength, training) works on. Rows may carry ``utility_a``/``utility_b`` (the
simulated set's hidden utility, :mod:`rlpref.llm.simulated`); real MultiPref has none.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from rlpref.artifacts import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_FIELDS",
    "ANNOTATOR_POOLS",
    "PREF_SCORES",
    "SIMULATED_SOURCE",
    "Comparison",
    "hub_reachable",
    "load_multipref",
    "parse_pref",
    "rows_to_comparisons",
    "write_jsonl_atomic",
]

#: MultiPref's 5-point overall preference → signed score (A positive).
PREF_SCORES: dict[str, float] = {
    "A-is-clearly-better": 1.0,
    "A-is-slightly-better": 0.5,
    "Tie": 0.0,
    "B-is-slightly-better": -0.5,
    "B-is-clearly-better": -1.0,
}
ANNOTATION_FIELDS = {"normal": "normal_worker_annotations", "expert": "expert_worker_annotations"}
#: Choices of the ``annotators`` argument (and the ``data.annotators`` config key).
ANNOTATOR_POOLS = ("all", *ANNOTATION_FIELDS)
#: ``source`` of every row of the simulated stand-in (:mod:`rlpref.llm.simulated`).
SIMULATED_SOURCE = "rlpref-simulated"
REQUIRED_FIELDS = ("comparison_id", "prompt_id", "text", "completion_a", "completion_b")


def parse_pref(label: Any) -> Optional[float]:
    """Signed score of an ``overall_pref`` label; ``None`` for a missing label; error for unknown ones."""
    if label is None or (isinstance(label, str) and not label.strip()):
        return None
    try:
        return PREF_SCORES[str(label).strip()]
    except KeyError:
        raise ValueError(
            f"unknown overall_pref label {label!r}; MultiPref uses: {', '.join(PREF_SCORES)}"
        ) from None


@dataclass
class Comparison:
    """One prompt with two completions and its annotations (parallel lists)."""

    comparison_id: str
    prompt_id: str
    prompt: str
    completion_a: str
    completion_b: str
    annotators: list[str]
    prefs: list[float]  # signed scores, see PREF_SCORES
    times: list[float]  # seconds, NaN where missing
    utility_a: Optional[float] = None
    utility_b: Optional[float] = None
    source: str = ""


def _as_list(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):  # a single annotation stored unwrapped
        return [x]
    return list(x)


def _float_or_nan(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v if np.isfinite(v) else float("nan")


def _annotation_fields(annotators: str) -> list[str]:
    if annotators == "all":
        return list(ANNOTATION_FIELDS.values())
    if annotators in ANNOTATION_FIELDS:
        return [ANNOTATION_FIELDS[annotators]]
    raise ValueError(f"unknown annotator pool '{annotators}'; choose one of: {', '.join(ANNOTATOR_POOLS)}")


def _row_annotations(i: int, row: dict, fields: Sequence[str]) -> tuple[list[str], list[float], list[float], int]:
    """(annotator ids, signed scores, times, number skipped for a missing label) of one row."""
    names, prefs, times = [], [], []
    skipped = 0
    for f in fields:
        for ann in _as_list(row.get(f)):
            score = parse_pref(ann.get("overall_pref"))
            if score is None:
                skipped += 1
                continue
            who = ann.get("evaluator")
            if who is None or str(who) == "":
                raise ValueError(f"row {i} ({row['comparison_id']}): annotation without 'evaluator' id")
            names.append(str(who))
            prefs.append(score)
            times.append(_float_or_nan(ann.get("time_spent")))
    return names, prefs, times, skipped


def rows_to_comparisons(rows: Iterable[dict], annotators: str = "all") -> list[Comparison]:
    """Turn MultiPref rows (dicts) into :class:`Comparison` records.

    ``annotators``: ``all`` (normal and expert workers), ``normal`` or ``expert``. Annotations
    without an ``overall_pref`` are skipped; comparisons left with no annotation are dropped.
    """
    fields = _annotation_fields(annotators)
    out: list[Comparison] = []
    skipped = 0
    for i, row in enumerate(rows):
        missing = [f for f in REQUIRED_FIELDS if f not in row]
        if missing or not any(f in row for f in fields):
            raise ValueError(
                f"row {i} does not have MultiPref's schema: missing {missing or fields}; "
                f"expected fields {', '.join(REQUIRED_FIELDS)} and {', '.join(ANNOTATION_FIELDS.values())}"
            )
        names, prefs, times, n_skipped = _row_annotations(i, row, fields)
        skipped += n_skipped
        if not prefs:
            continue
        ua, ub = row.get("utility_a"), row.get("utility_b")
        out.append(
            Comparison(
                comparison_id=str(row["comparison_id"]),
                prompt_id=str(row["prompt_id"]),
                prompt=str(row["text"]),
                completion_a=str(row["completion_a"]),
                completion_b=str(row["completion_b"]),
                annotators=names,
                prefs=prefs,
                times=times,
                utility_a=None if ua is None else float(ua),
                utility_b=None if ub is None else float(ub),
                source=str(row.get("source") or ""),
            )
        )
    if skipped:
        log.info("skipped %d annotations without overall_pref", skipped)
    if not out:
        raise ValueError("no comparison with at least one overall_pref annotation")
    return out


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """False when offline mode is set or the hub host cannot be reached within ``timeout``."""
    if any(os.environ.get(v, "0") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_file_rows(path: Path):
    import datasets

    if not path.is_file():
        raise FileNotFoundError(f"MultiPref file not found: {path}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    builder = {".jsonl": "json", ".json": "json", ".jsonl.gz": "json", ".parquet": "parquet"}.get(suffix)
    if builder is None:
        raise ValueError(f"unsupported MultiPref file type '{suffix}' ({path}); use .jsonl, .json or .parquet")
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def load_multipref(
    path: Optional[str] = None,
    *,
    hub_id: str = "allenai/multipref",
    hub_config: str = "default",
    split: str = "train",
    annotators: str = "all",
) -> list[Comparison]:
    """Load MultiPref from a local file (``path``) or, without a path, from the Hugging Face hub."""
    if path:
        ds = _load_file_rows(Path(path).expanduser())
    else:
        import datasets

        ds = datasets.load_dataset(hub_id, hub_config, split=split)
    return rows_to_comparisons(ds, annotators=annotators)


def write_jsonl_atomic(rows: Sequence[dict], path: Path) -> Path:
    """Write MultiPref rows as JSON lines (the format :func:`load_multipref` reads) via an atomic rename,
    so a parallel run never reads a half-written file."""
    path = Path(path)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path
