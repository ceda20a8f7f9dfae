"""MultiPref loading, a simulated multi-annotator stand-in, deterministic splits and label sampling.

MultiPref (``allenai/multipref``, config ``default``, split ``train``) has one row per comparison::

    comparison_id, prompt_id, text (the prompt), completion_a, model_a, completion_b, model_b,
    source, category, subject_study, highest_level_degree,
    normal_worker_annotations, expert_worker_annotations   # list[dict] each

and each annotation dict holds (among other aspects) ``evaluator`` (annotator id),
``overall_pref`` (one of :data:`PREF_SCORES`), ``overall_confidence`` and ``time_spent`` (seconds).
:func:`load_multipref` reads it from the hub or from a local ``.jsonl``/``.json``/``.parquet`` file
with the same schema. Rows may carry ``utility_a``/``utility_b`` (the simulated set's hidden
utility); real MultiPref has none.

When no MultiPref is available offline, :func:`build_simulated_rows` writes a **simulated**
data set in the same schema: real English text (the Python documentation shipped with the
interpreter: ``pydoc_data.topics`` and standard-library docstrings), a hidden utility of each
(prompt, completion) and several simulated annotators with their own noise, bias, thresholds and
speed. Every row of it has ``source = "rlpref-simulated"``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from rlpref.artifacts import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_FIELDS",
    "PREF_SCORES",
    "SIMULATED_SOURCE",
    "Comparison",
    "TestSet",
    "TrainPairs",
    "build_simulated_rows",
    "hub_reachable",
    "load_multipref",
    "make_test_set",
    "parse_pref",
    "rows_to_comparisons",
    "sample_train_pairs",
    "split_by_prompt",
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
SIMULATED_SOURCE = "rlpref-simulated"
REQUIRED_FIELDS = ("comparison_id", "prompt_id", "text", "completion_a", "completion_b")


def parse_pref(label) -> Optional[float]:
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


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):  # a single annotation stored unwrapped
        return [x]
    return list(x)


def _float_or_nan(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v if np.isfinite(v) else float("nan")


def rows_to_comparisons(rows, annotators: str = "all") -> list[Comparison]:
    """Turn MultiPref rows (dicts) into :class:`Comparison` records.

    ``annotators``: ``all`` (normal and expert workers), ``normal`` or ``expert``. Annotations
    without an ``overall_pref`` are skipped; comparisons left with no annotation are dropped.
    """
    if annotators == "all":
        fields = list(ANNOTATION_FIELDS.values())
    elif annotators in ANNOTATION_FIELDS:
        fields = [ANNOTATION_FIELDS[annotators]]
    else:
        raise ValueError(f"unknown annotator pool '{annotators}'; choose one of: all, normal, expert")
    out: list[Comparison] = []
    skipped = 0
    for i, row in enumerate(rows):
        missing = [f for f in REQUIRED_FIELDS if f not in row]
        if missing or not any(f in row for f in fields):
            raise ValueError(
                f"row {i} does not have MultiPref's schema: missing {missing or fields}; "
                f"expected fields {', '.join(REQUIRED_FIELDS)} and {', '.join(ANNOTATION_FIELDS.values())}"
            )
        names, prefs, times = [], [], []
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
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("HF_DATASETS_OFFLINE", "0") not in (
        "",
        "0",
    ):
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


# --------------------------------------------------------------------------------------------
# Deterministic split, test labels and training-label sampling
# --------------------------------------------------------------------------------------------


def _unit_hash(text: str) -> float:
    h = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def split_by_prompt(
    comparisons: Sequence[Comparison], test_fraction: float = 0.2, salt: str = "rlpref-llm"
) -> tuple[list[int], list[int]]:
    """Deterministic train/test indices: a prompt (``prompt_id``) and all its comparisons go to one side,
    decided by a hash of the id, so the split does not depend on row order or on any seed."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train, test = [], []
    for i, c in enumerate(comparisons):
        (test if _unit_hash(f"{salt}:{c.prompt_id}") < test_fraction else train).append(i)
    if not train or not test:
        raise ValueError(
            f"split by prompt left an empty side ({len(train)} train, {len(test)} test comparisons); "
            "use more data or another test_fraction"
        )
    return train, test


@dataclass
class TestSet:
    """Test comparisons labelled by the aggregated preference (sum of all signed scores; ties dropped)."""

    index: np.ndarray  # into the comparison list
    a_wins: np.ndarray  # bool: aggregated preference says A
    utility_a: Optional[np.ndarray] = None  # hidden utilities (simulated data only)
    utility_b: Optional[np.ndarray] = None
    n_dropped_ties: int = 0


def make_test_set(comparisons: Sequence[Comparison], index: Sequence[int]) -> TestSet:
    keep, a_wins = [], []
    for i in index:
        total = float(np.sum(comparisons[i].prefs))
        if total == 0.0:
            continue
        keep.append(i)
        a_wins.append(total > 0)
    keep_arr = np.asarray(keep, dtype=np.int64)
    has_u = all(comparisons[i].utility_a is not None and comparisons[i].utility_b is not None for i in keep)
    ua = np.array([comparisons[i].utility_a for i in keep], dtype=np.float64) if has_u and keep else None
    ub = np.array([comparisons[i].utility_b for i in keep], dtype=np.float64) if has_u and keep else None
    if not keep:
        raise ValueError("every test comparison is an aggregated tie; no test labels")
    return TestSet(keep_arr, np.asarray(a_wins, dtype=bool), ua, ub, len(index) - len(keep))


@dataclass
class TrainPairs:
    """Training comparisons with a label from one random annotation each."""

    index: np.ndarray  # into the comparison list
    chosen_is_a: np.ndarray  # bool
    annotator: np.ndarray  # str ids of the labelling annotator
    label_pref: np.ndarray  # that annotation's signed score (never 0)
    label_time: np.ndarray  # its time spent (NaN if missing)
    all_prefs: list = field(default_factory=list)  # every annotation's score, per comparison
    n_dropped_ties: int = 0

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def subset(self, keep: np.ndarray) -> "TrainPairs":
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return TrainPairs(
            self.index[idx],
            self.chosen_is_a[idx],
            self.annotator[idx],
            self.label_pref[idx],
            self.label_time[idx],
            [self.all_prefs[j] for j in idx],
            self.n_dropped_ties,
        )


def sample_train_pairs(
    comparisons: Sequence[Comparison], index: Sequence[int], seed: int, fraction: float = 1.0
) -> TrainPairs:
    """Take the first ``fraction`` of a seeded permutation of ``index`` (so fractions are nested for
    one seed) and label each comparison with one uniformly chosen non-tie annotation. Comparisons
    whose annotations are all ties are dropped. The choice of annotation does not depend on
    ``fraction``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"training fraction must be in (0, 1], got {fraction}")
    index = np.asarray(index, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 7919])
    order = rng.permutation(index.shape[0])
    pick_u = rng.random(index.shape[0])  # one draw per comparison, before subsetting
    k = max(1, int(round(fraction * index.shape[0])))
    rows = dict(idx=[], a=[], who=[], pref=[], time=[], prefs=[])
    dropped = 0
    for pos in order[:k]:
        c = comparisons[index[pos]]
        nontie = [j for j, p in enumerate(c.prefs) if p != 0.0]
        if not nontie:
            dropped += 1
            continue
        j = nontie[min(int(pick_u[pos] * len(nontie)), len(nontie) - 1)]
        rows["idx"].append(index[pos])
        rows["a"].append(c.prefs[j] > 0)
        rows["who"].append(c.annotators[j])
        rows["pref"].append(c.prefs[j])
        rows["time"].append(c.times[j])
        rows["prefs"].append(list(c.prefs))
    if not rows["idx"]:
        raise ValueError("no training comparison left after dropping ties")
    return TrainPairs(
        np.asarray(rows["idx"], dtype=np.int64),
        np.asarray(rows["a"], dtype=bool),
        np.asarray(rows["who"], dtype=str),
        np.asarray(rows["pref"], dtype=np.float64),
        np.asarray(rows["time"], dtype=np.float64),
        rows["prefs"],
        dropped,
    )


# --------------------------------------------------------------------------------------------
# Simulated multi-annotator data over real text
# --------------------------------------------------------------------------------------------

#: Standard-library modules whose public docstrings serve as question/answer text.
_DOC_MODULES = (
    "argparse", "base64", "bisect", "calendar", "collections", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.utils", "enum", "fnmatch", "fractions", "functools", "glob",
    "gzip", "hashlib", "heapq", "html", "inspect", "ipaddress", "itertools", "json", "logging", "math",
    "operator", "os", "os.path", "pathlib", "pickle", "pprint", "queue", "random", "re", "secrets",
    "shlex", "shutil", "socket", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "time", "typing", "unittest", "urllib.parse", "uuid", "warnings", "zipfile",
)  # fmt: skip


def _paragraphs(text: str, min_len: int, max_len: int) -> list[str]:
    out = []
    for p in re.split(r"\n\s*\n", text):
        p = re.sub(r"\s+", " ", p).strip()
        if len(p) < min_len or p.startswith(">>>") or p.count("|") > 4:
            continue
        if len(p) > max_len:  # cut at the last sentence end that fits
            cut = p[:max_len]
            end = cut.rfind(". ")
            p = cut[: end + 1] if end > min_len else cut
        out.append(p)
    return out


def text_corpus(max_doc_items: int = 600) -> list[dict]:
    """Prompts with candidate answers, from documentation that ships with Python.

    Items: ``{"prompt", "family", "candidates"}``. Language-reference topics
    (``pydoc_data.topics``) give "Explain …" prompts with many candidate paragraphs; public
    functions and classes of :data:`_DOC_MODULES` give "What does … do?" prompts answered by
    paragraphs of their docstrings.
    """
    import pydoc_data.topics

    items = []
    for key in sorted(pydoc_data.topics.topics):
        cands = _paragraphs(pydoc_data.topics.topics[key], 120, 700)
        if len(cands) >= 2:
            items.append({"prompt": f"Explain '{key.replace('-', ' ')}' in Python.", "family": "reference", "candidates": cands})
    doc_items = []
    for mod_name in _DOC_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        for name in sorted(getattr(mod, "__all__", None) or dir(mod)):
            if name.startswith("_"):
                continue
            obj = getattr(mod, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue
            doc = inspect.getdoc(obj) or ""
            cands = _paragraphs(doc, 60, 700)
            if cands:
                doc_items.append({"prompt": f"What does `{mod_name}.{name}` do in Python?", "family": mod_name, "candidates": cands})
    # A fixed, content-independent subset: order by a hash of the prompt.
    doc_items.sort(key=lambda it: _unit_hash("corpus:" + it["prompt"]))
    items.extend(doc_items[:max_doc_items])
    if not items:
        raise RuntimeError("no documentation text found in this Python installation (pydoc_data missing?)")
    return items


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def build_simulated_rows(
    embed: Callable[[list[str]], np.ndarray],
    *,
    n_comparisons: int = 5000,
    n_normal: int = 16,
    n_expert: int = 8,
    seed: int = 0,
    max_doc_items: int = 600,
    corpus: Optional[list[dict]] = None,
    progress: bool = True,
) -> list[dict]:
    """A **simulated** MultiPref-schema data set over real text with a hidden utility.

    Hidden utility of completion c for prompt p, from unit-norm sentence embeddings e(·)::

        u = z(w·e(c)) + 0.7·z(e(p)·e(c)) + 0.5·z(−|log(len(c)/400)|), rescaled to unit SD,

    with w a fixed random unit vector (a hidden "quality" direction), the prompt–answer relevance
    and a preference for answers of moderate length. Each comparison gets 2 annotations from
    normal and 2 from expert simulated annotators. Annotator k perceives
    Δ = u_a − u_b + bias_k + σ_k·ε, says Tie when |Δ| < tie_k, "slightly" when |Δ| < clear_k and
    "clearly" otherwise, and takes time ∝ speed_k·(0.5 + 1.5·exp(−|Δ|))·LogNormal(0, 0.3).
    Experts have less noise (σ ∈ [0.25, 0.6] against [0.5, 1.2]).
    """
    rng = np.random.default_rng([int(seed), 4242])
    items = corpus if corpus is not None else text_corpus(max_doc_items)
    families: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        families.setdefault(it["family"], []).append(i)

    pairs: list[tuple[int, int, int, int, int]] = []  # (prompt item, item a, cand a, item b, cand b)
    seen = set()
    attempts = 0
    while len(pairs) < n_comparisons and attempts < 20 * n_comparisons:
        attempts += 1
        i = int(rng.integers(len(items)))
        ca = int(rng.integers(len(items[i]["candidates"])))
        r = rng.random()
        if len(items[i]["candidates"]) >= 2 and r < 0.5:
            j = i
            cb = int(rng.integers(len(items[i]["candidates"])))
        else:
            pool = families[items[i]["family"]] if r < 0.8 and len(families[items[i]["family"]]) > 1 else range(len(items))
            j = int(rng.choice(np.asarray(pool)))
            cb = int(rng.integers(len(items[j]["candidates"])))
        if (j, cb) == (i, ca):
            continue
        a, b = (i, ca), (j, cb)
        if rng.random() < 0.5:  # the prompt's own answer is not always A
            a, b = b, a
        key = (i, min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        pairs.append((i, a[0], a[1], b[0], b[1]))
    if len(pairs) < n_comparisons:
        log.warning("simulated set: only %d distinct pairs available (asked for %d)", len(pairs), n_comparisons)

    prompts = sorted({items[p[0]]["prompt"] for p in pairs})
    completions = sorted({items[p[k]]["candidates"][p[k + 1]] for p in pairs for k in (1, 3)})
    e_p = dict(zip(prompts, embed(prompts)))
    e_c = dict(zip(completions, embed(completions)))
    dim = next(iter(e_c.values())).shape[0]
    w = rng.standard_normal(dim)
    w /= np.linalg.norm(w)

    # Utility of every (prompt, completion) that occurs.
    pc = sorted({(items[p[0]]["prompt"], items[p[k]]["candidates"][p[k + 1]]) for p in pairs for k in (1, 3)})
    quality = np.array([e_c[c] @ w for _, c in pc])
    relevance = np.array([e_p[p] @ e_c[c] for p, c in pc])
    length = np.array([-abs(np.log(len(c) / 400.0)) for _, c in pc])
    u = _zscore(_zscore(quality) + 0.7 * _zscore(relevance) + 0.5 * _zscore(length))
    utility = dict(zip(pc, u))

    def annotator_pool(kind: str, n: int, lo: float, hi: float) -> list[dict]:
        return [
            {
                "id": f"sim-{kind}-{k:02d}",
                "sigma": rng.uniform(lo, hi),
                "bias": rng.normal(0.0, 0.1),
                "tie": rng.uniform(0.05, 0.25),
                "clear": rng.uniform(0.6, 1.2),
                "speed": 90.0 * np.exp(rng.normal(0.0, 0.4)),
            }
            for k in range(n)
        ]

    pools = {"normal": annotator_pool("normal", n_normal, 0.5, 1.2), "expert": annotator_pool("expert", n_expert, 0.25, 0.6)}

    def annotate(kind: str, delta: float) -> list[dict]:
        out = []
        for k in rng.choice(len(pools[kind]), size=2, replace=False):
            ann = pools[kind][k]
            seen_delta = delta + ann["bias"] + ann["sigma"] * rng.standard_normal()
            mag = abs(seen_delta)
            if mag < ann["tie"]:
                label = "Tie"
            else:
                side = "A" if seen_delta > 0 else "B"
                label = f"{side}-is-{'clearly' if mag >= ann['clear'] else 'slightly'}-better"
            t = ann["speed"] * (0.5 + 1.5 * np.exp(-mag)) * np.exp(rng.normal(0.0, 0.3))
            out.append({"evaluator": ann["id"], "overall_pref": label, "time_spent": int(round(t)), "timestamp": None})
        return out

    rows = []
    for i, ia, ca, ib, cb in pairs:
        prompt = items[i]["prompt"]
        text_a, text_b = items[ia]["candidates"][ca], items[ib]["candidates"][cb]
        ua, ub = float(utility[(prompt, text_a)]), float(utility[(prompt, text_b)])
        pid = hashlib.sha1(prompt.encode()).hexdigest()[:16]
        rows.append(
            {
                "comparison_id": hashlib.sha1(f"{prompt}\x00{text_a}\x00{text_b}".encode()).hexdigest()[:24],
                "prompt_id": pid,
                "text": prompt,
                "completion_a": text_a,
                "model_a": "python-docs",
                "completion_b": text_b,
                "model_b": "python-docs",
                "source": SIMULATED_SOURCE,
                "category": items[i]["family"],
                "subject_study": "Python",
                "highest_level_degree": None,
                "normal_worker_annotations": annotate("normal", ua - ub),
                "expert_worker_annotations": annotate("expert", ua - ub),
                "utility_a": ua,
                "utility_b": ub,
            }
        )
    return rows


def write_jsonl_atomic(rows: Sequence[dict], path: Path) -> Path:
    """Write rows as JSON lines to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path
