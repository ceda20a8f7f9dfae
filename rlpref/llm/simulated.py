"""A simulated multi-annotator stand-in for MultiPref, so the LLM track runs (and is tested) offline.

When no MultiPref is available, :func:`simulated_dataset` builds (once, cached by its parameters)
a data set in MultiPref's schema (:mod:`rlpref.llm.multipref`): real English text (the Python
documentation shipped with the interpreter: ``pydoc_data.topics`` and standard-library
docstrings, :func:`text_corpus`), a hidden utility of each (prompt, completion) and several
simulated annotators with their own noise, bias, thresholds and speed
(:func:`build_simulated_rows`). Every row of it has ``source = "rlpref-simulated"`` and every
output of a run on it says SIMULATED.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from rlpref.llm.models import FrozenEncoder
from rlpref.llm.multipref import SIMULATED_SOURCE, write_jsonl_atomic
from rlpref.llm.splits import unit_hash

log = logging.getLogger(__name__)

__all__ = ["SIMULATED_SOURCE", "build_simulated_rows", "simulated_dataset", "text_corpus"]

#: Standard-library modules whose public docstrings serve as question/answer text.
_DOC_MODULES = (
    "argparse", "base64", "bisect", "calendar", "collections", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.utils", "enum", "fnmatch", "fractions", "functools", "glob",
    "gzip", "hashlib", "heapq", "html", "inspect", "ipaddress", "itertools", "json", "logging", "math",
    "operator", "os", "os.path", "pathlib", "pickle", "pprint", "queue", "random", "re", "secrets",
    "shlex", "shutil", "socket", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "time", "typing", "unittest", "urllib.parse", "uuid", "warnings", "zipfile",
)  # fmt: skip

# (prompt item, item of A, candidate of A, item of B, candidate of B)
Pair = tuple[int, int, int, int, int]


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


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


def _docstring_items(mod_name: str) -> list[dict]:
    """"What does … do?" items from the public functions and classes of one module."""
    try:
        mod = importlib.import_module(mod_name)
    except ImportError:
        return []
    items = []
    for name in sorted(getattr(mod, "__all__", None) or dir(mod)):
        if name.startswith("_"):
            continue
        obj = getattr(mod, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
            continue
        cands = _paragraphs(inspect.getdoc(obj) or "", 60, 700)
        if cands:
            items.append({"prompt": f"What does `{mod_name}.{name}` do in Python?", "family": mod_name, "candidates": cands})
    return items


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
    doc_items = [it for mod_name in _DOC_MODULES for it in _docstring_items(mod_name)]
    # A fixed, content-independent subset: order by a hash of the prompt.
    doc_items.sort(key=lambda it: unit_hash("corpus:" + it["prompt"]))
    items.extend(doc_items[:max_doc_items])
    if not items:
        raise RuntimeError("no documentation text found in this Python installation (pydoc_data missing?)")
    return items


# --------------------------------------------------------------------------------------------
# Comparisons, hidden utility and simulated annotators
# --------------------------------------------------------------------------------------------


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def _sample_pairs(rng: np.random.Generator, items: list[dict], n_comparisons: int) -> list[Pair]:
    """Distinct (prompt, A, B) triples: half the time both answers are the prompt's own candidates,
    otherwise B comes from the same family (mostly) or from anywhere."""
    families: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        families.setdefault(it["family"], []).append(i)
    pairs: list[Pair] = []
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
    return pairs


def _hidden_utility(
    rng: np.random.Generator, items: list[dict], pairs: list[Pair], embed: Callable[[list[str]], np.ndarray]
) -> dict[tuple[str, str], float]:
    """Utility of every (prompt, completion) that occurs (see :func:`build_simulated_rows`)."""
    prompts = sorted({items[p[0]]["prompt"] for p in pairs})
    completions = sorted({items[p[k]]["candidates"][p[k + 1]] for p in pairs for k in (1, 3)})
    e_p = dict(zip(prompts, embed(prompts)))
    e_c = dict(zip(completions, embed(completions)))
    dim = next(iter(e_c.values())).shape[0]
    w = rng.standard_normal(dim)
    w /= np.linalg.norm(w)
    pc = sorted({(items[p[0]]["prompt"], items[p[k]]["candidates"][p[k + 1]]) for p in pairs for k in (1, 3)})
    quality = np.array([e_c[c] @ w for _, c in pc])
    relevance = np.array([e_p[p] @ e_c[c] for p, c in pc])
    length = np.array([-abs(np.log(len(c) / 400.0)) for _, c in pc])
    u = _zscore(_zscore(quality) + 0.7 * _zscore(relevance) + 0.5 * _zscore(length))
    return dict(zip(pc, u))


def _annotator_pool(rng: np.random.Generator, kind: str, n: int, lo: float, hi: float) -> list[dict]:
    """``n`` simulated annotators with noise σ ∈ [lo, hi] and their own bias, thresholds and speed."""
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


def _annotate(rng: np.random.Generator, pool: list[dict], delta: float) -> list[dict]:
    """Two annotations of a comparison with utility difference ``delta`` by two annotators of ``pool``."""
    out = []
    for k in rng.choice(len(pool), size=2, replace=False):
        ann = pool[k]
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


def _row(prompt: str, family: str, text_a: str, text_b: str, ua: float, ub: float,
         normal: list[dict], expert: list[dict]) -> dict:
    """One comparison in MultiPref's schema, with the hidden utilities."""
    return {
        "comparison_id": hashlib.sha1(f"{prompt}\x00{text_a}\x00{text_b}".encode()).hexdigest()[:24],
        "prompt_id": hashlib.sha1(prompt.encode()).hexdigest()[:16],
        "text": prompt,
        "completion_a": text_a,
        "model_a": "python-docs",
        "completion_b": text_b,
        "model_b": "python-docs",
        "source": SIMULATED_SOURCE,
        "category": family,
        "subject_study": "Python",
        "highest_level_degree": None,
        "normal_worker_annotations": normal,
        "expert_worker_annotations": expert,
        "utility_a": ua,
        "utility_b": ub,
    }


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
    Experts have less noise (σ ∈ [0.25, 0.6] against [0.5, 1.2]). ``progress`` is accepted for
    symmetry with the encoder and unused. One seeded generator drives every draw, in a fixed order.
    """
    rng = np.random.default_rng([int(seed), 4242])
    items = corpus if corpus is not None else text_corpus(max_doc_items)
    pairs = _sample_pairs(rng, items, n_comparisons)
    utility = _hidden_utility(rng, items, pairs, embed)
    pools = {"normal": _annotator_pool(rng, "normal", n_normal, 0.5, 1.2),
             "expert": _annotator_pool(rng, "expert", n_expert, 0.25, 0.6)}
    rows = []
    for i, ia, ca, ib, cb in pairs:
        prompt = items[i]["prompt"]
        text_a, text_b = items[ia]["candidates"][ca], items[ib]["candidates"][cb]
        ua, ub = float(utility[(prompt, text_a)]), float(utility[(prompt, text_b)])
        normal = _annotate(rng, pools["normal"], ua - ub)
        expert = _annotate(rng, pools["expert"], ua - ub)
        rows.append(_row(prompt, items[i]["family"], text_a, text_b, ua, ub, normal, expert))
    return rows


def _hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def simulated_dataset(
    cache_dir: str,
    *,
    n_comparisons: int = 5000,
    n_normal: int = 16,
    n_expert: int = 8,
    seed: int = 0,
    max_doc_items: int = 600,
    progress: bool = True,
) -> Path:
    """Build (once) and return the simulated MultiPref-schema ``.jsonl`` in ``cache_dir``.

    The file name hashes the parameters and the corpus text, so a change of either builds a new file
    and parallel runs with the same parameters share one (written atomically).
    """
    params = {"n_comparisons": int(n_comparisons), "n_normal": int(n_normal), "n_expert": int(n_expert),
              "seed": int(seed), "max_doc_items": int(max_doc_items)}
    corpus = text_corpus(params["max_doc_items"])
    key = _hash_json({"params": params, "corpus": _hash_json(corpus), "v": 1})
    path = Path(cache_dir) / f"simulated-multipref-{key}.jsonl"
    if not path.is_file():
        log.info("building the simulated data set %s", path)
        encoder = FrozenEncoder("minilm", cache_dir=cache_dir, progress=progress)
        rows = build_simulated_rows(encoder, corpus=corpus, progress=progress, **params)
        write_jsonl_atomic(rows, path)
    return path
