"""UKPConvArg1 (Habernal & Gurevych, ACL 2016): real crowd preferences between web arguments.

The published folder ``data/`` of ``UKPLab/acl2016-convincing-arguments`` (CC-BY 4.0) holds

- ``UKPConvArg1-full-XML/<debate>_<stance>.xml`` (required): 32 files, one per debate and stance.
  Each ``annotatedArgumentPair`` has ``id`` (``<arg1 id>_<arg2 id>``), ``arg1``/``arg2`` (``id``,
  ``stance``, ``text``), ``debateMetaData/title``, five ``mTurkAssignments/mTurkAssignment`` (``turkID``,
  ``hitID``, ``assignmentAcceptTime``/``SubmitTime`` of the whole HIT of 3 pairs, ``value`` a1 / a2 /
  equal, ``reason``, ``turkCompetence``) and usually a ``goldLabel``.
- ``UKPConvArg1Strict-XML`` (or ``-CSV``: ``#id label a1 a2``, tab-separated): the cleaned subset whose
  gold labels the published pair accuracies were measured on (optional).
- ``UKPConvArg1-Ranking-CSV``: ``#id rank argument`` per topic (optional): a PageRank score per
  argument over the graph of gold labels, whose edges point from the more to the less convincing
  argument (``Step7bConvArgRankProducer.buildGraphFromPairs`` in the same repository), so a HIGHER
  published score means LESS convincing (the Strict winner has the lower score in 92.7 % of Strict
  pairs: ``docs/results/llm_ukp/signals.json``). :attr:`UKPCorpus.convincingness` is its negation, the
  real utility behind Spearman and PDC.

This module reads those files into typed records, with a parser that refuses DTDs, entities and
external references (``defusedxml``), and maps them to the track's :class:`Comparison` records:
prompt = debate title + stance, completion A/B = the two arguments, one signed vote per worker
(a1 → +1, a2 → −1, equal → 0), so the track's agreement strength is the vote margin / number of votes
and the aggregated preference is the majority vote (ties stay ties). Matching across folders is by
pair and argument id, never by file name (one published full-XML file name has a typo).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from rlpref.llm.multipref import Comparison

log = logging.getLogger(__name__)

__all__ = [
    "FULL", "RANKING", "REPO", "STRICT_CSV", "STRICT_XML",
    "ArgumentPair", "LoadReport", "UKPCorpus", "UKPDataUnavailable", "UKPFormatError", "Vote",
    "download", "load_ukpconvarg1", "locate", "parse_pairs_xml", "read_ranking", "read_strict",
    "ranking_orientation", "time_signal", "to_comparisons", "worker_strata_sizes",
]  # fmt: skip

REPO = "UKPLab/acl2016-convincing-arguments"
FULL, STRICT_XML, STRICT_CSV, RANKING = (
    "UKPConvArg1-full-XML", "UKPConvArg1Strict-XML", "UKPConvArg1Strict-CSV", "UKPConvArg1-Ranking-CSV")
VOTE_SCORES = {"a1": 1.0, "a2": -1.0, "equal": 0.0}
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class UKPFormatError(ValueError):
    """A file or pair that does not have the published format (the message names the file and pair)."""


class UKPDataUnavailable(FileNotFoundError):
    """The corpus is neither at ``data.path`` nor in the cache, and could not be downloaded."""


@dataclass(frozen=True)
class Vote:
    """One worker's judgement of one pair. ``seconds`` is submit − accept time of the worker's whole HIT,
    which holds 3 pairs: it cannot be split between them."""

    worker: str
    value: str  # a1 | a2 | equal
    hit: str
    seconds: float


@dataclass(frozen=True)
class ArgumentPair:
    """One annotated pair of arguments with the same stance on the same debate."""

    pair_id: str
    topic: str  # the full-XML file stem: debate and stance
    debate: str  # debate title; both stances of a debate share it
    stance: str
    arg1_id: str
    arg2_id: str
    text1: str
    text2: str
    votes: tuple[Vote, ...]
    gold: Optional[str]  # the published goldLabel (a1 / a2 / equal), None where the file has none

    @property
    def margin(self) -> int:
        """Votes for a1 minus votes for a2 (sign = majority, 0 = tie)."""
        return sum(v.value == "a1" for v in self.votes) - sum(v.value == "a2" for v in self.votes)


@dataclass
class LoadReport:
    """What the loader read and what it set aside, with the reason; printed by every run."""

    files: int = 0
    pairs_read: int = 0
    votes_read: int = 0
    tied: int = 0  # majority tie (margin 0): kept, never a test label
    all_equal: int = 0  # every vote "equal": kept, cannot give a training label
    without_gold: int = 0
    strict_pairs: int = 0
    strict_not_in_full: int = 0
    ranked_arguments: int = 0
    ranked_not_in_full: int = 0
    skipped: dict = field(default_factory=dict)  # reason -> count

    def lines(self) -> list[str]:
        out = [f"UKPConvArg1: {self.pairs_read} pairs from {self.files} files, {self.votes_read} votes; "
               f"{self.tied} majority ties (kept as ties), {self.all_equal} with every vote 'equal', "
               f"{self.without_gold} without goldLabel"]
        if self.strict_pairs:
            out.append(f"Strict subset: {self.strict_pairs} pairs ({self.strict_not_in_full} not in the full XML)")
        if self.ranked_arguments:
            out.append(f"gold ranking: {self.ranked_arguments} arguments "
                       f"({self.ranked_not_in_full} not in the full XML)")
        out += [f"skipped {n}: {why}" for why, n in sorted(self.skipped.items())] or ["skipped: none"]
        return out


@dataclass
class UKPCorpus:
    """The parsed corpus: pairs of the full XML, the Strict gold labels and the gold argument scores."""

    folder: Path
    pairs: list[ArgumentPair]
    strict: Optional[dict[str, str]]  # pair id -> Strict goldLabel (a1 / a2)
    ranking: Optional[dict[str, float]]  # argument id -> published rank score (higher = LESS convincing)
    report: LoadReport

    @property
    def convincingness(self) -> Optional[dict[str, float]]:
        """Argument id -> gold convincingness, higher = more convincing (the negated published score)."""
        return None if self.ranking is None else {a: -s for a, s in self.ranking.items()}


# --------------------------------------------------------------------------------------------
# Parsing (defusedxml: no DTD, no entity, no external reference)
# --------------------------------------------------------------------------------------------


def _parse_xml(path: Path):
    """The root element of ``path``; hostile or broken XML raises :class:`UKPFormatError` naming the file."""
    try:
        from defusedxml import DefusedXmlException
        from defusedxml.ElementTree import ParseError, parse
    except ImportError as e:
        raise ImportError("reading UKPConvArg1 needs defusedxml: pip install 'rlpref[llm]'") from e
    try:
        return parse(str(path), forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
    except DefusedXmlException as e:
        raise UKPFormatError(f"{path}: refused unsafe XML ({type(e).__name__}: {e}); "
                             "the published files have no DTD or entity declarations") from None
    except ParseError as e:
        raise UKPFormatError(f"{path}: not well-formed XML ({e})") from None


def _text(node, tag: str, where: str) -> str:
    """The stripped text of child ``tag``; a missing or empty element is an error naming ``where``."""
    value = node.findtext(tag)
    if value is None or not value.strip():
        raise UKPFormatError(f"{where}: missing <{tag}>")
    return value.strip()


def _hit_seconds(node, where: str) -> float:
    """Submit − accept time of an assignment in seconds (``2016-02-22 21:40:51.0 UTC``)."""
    try:
        t0, t1 = (datetime.strptime(_text(node, tag, where)[:19], _TIME_FORMAT)
                  for tag in ("assignmentAcceptTime", "assignmentSubmitTime"))
    except ValueError as e:
        if isinstance(e, UKPFormatError):
            raise
        raise UKPFormatError(f"{where}: unreadable assignment time ({e})") from None
    return (t1 - t0).total_seconds()


def _votes(pair_node, where: str) -> tuple[Vote, ...]:
    """Every mTurkAssignment of a pair; a value other than a1 / a2 / equal is an error."""
    out = []
    for k, a in enumerate(pair_node.findall("mTurkAssignments/mTurkAssignment")):
        w = f"{where}, assignment {k}"
        value = _text(a, "value", w)
        if value not in VOTE_SCORES:
            raise UKPFormatError(f"{w}: value {value!r} is not one of a1, a2, equal")
        out.append(Vote(_text(a, "turkID", w), value, _text(a, "hitID", w), _hit_seconds(a, w)))
    if not out:
        raise UKPFormatError(f"{where}: no mTurkAssignments/mTurkAssignment")
    return tuple(out)


def _pair(node, path: Path, index: int) -> ArgumentPair:
    """One ``annotatedArgumentPair`` element as a record."""
    where = f"{path}, pair {index}"
    pid = _text(node, "id", where)
    where = f"{path}, pair {index} (id {pid})"
    gold = node.findtext("goldLabel")
    return ArgumentPair(
        pair_id=pid, topic=path.stem, debate=_text(node, "debateMetaData/title", where),
        stance=_text(node, "arg1/stance", where), arg1_id=_text(node, "arg1/id", where),
        arg2_id=_text(node, "arg2/id", where), text1=_text(node, "arg1/text", where),
        text2=_text(node, "arg2/text", where), votes=_votes(node, where),
        gold=gold.strip() if gold and gold.strip() else None)


def parse_pairs_xml(path: Path) -> list[ArgumentPair]:
    """Every pair of one published XML file (root ``list`` of ``annotatedArgumentPair``)."""
    path = Path(path)
    root = _parse_xml(path)
    if root.tag != "list":
        raise UKPFormatError(f"{path}: root element is <{root.tag}>, expected <list> of <annotatedArgumentPair>")
    pairs = []
    for i, node in enumerate(root):
        if node.tag != "annotatedArgumentPair":
            raise UKPFormatError(f"{path}, element {i}: <{node.tag}>, expected <annotatedArgumentPair>")
        pairs.append(_pair(node, path, i))
    return pairs


def _tsv_rows(path: Path, n_fields: int) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of a published tab-separated file; the first line is a ``#`` comment."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or (n == 1 and line.startswith("#")):
            continue
        parts = line.split("\t")
        if len(parts) < n_fields:
            raise UKPFormatError(f"{path}, line {n}: {len(parts)} tab-separated fields, expected {n_fields}")
        yield n, parts


def read_strict(folder: Path) -> Optional[dict[str, str]]:
    """Pair id -> gold label of the Strict subset from ``UKPConvArg1Strict-XML`` (else ``-CSV``); None if absent."""
    xml_dir, csv_dir = folder / STRICT_XML, folder / STRICT_CSV
    out: dict[str, str] = {}
    if xml_dir.is_dir():
        for p in sorted(xml_dir.glob("*.xml")):
            out.update((q.pair_id, q.gold) for q in parse_pairs_xml(p) if q.gold in ("a1", "a2"))
    elif csv_dir.is_dir():
        for p in sorted(csv_dir.glob("*.csv")):
            for n, parts in _tsv_rows(p, 2):
                if parts[1] not in ("a1", "a2"):
                    raise UKPFormatError(f"{p}, line {n}: label {parts[1]!r}, expected a1 or a2")
                out[parts[0]] = parts[1]
    else:
        return None
    return out


def read_ranking(folder: Path) -> Optional[dict[str, float]]:
    """Argument id -> gold convincingness score from ``UKPConvArg1-Ranking-CSV``; None if absent."""
    rank_dir = folder / RANKING
    if not rank_dir.is_dir():
        return None
    out: dict[str, float] = {}
    for p in sorted(rank_dir.glob("*.csv")):
        for n, parts in _tsv_rows(p, 2):
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                raise UKPFormatError(f"{p}, line {n}: rank {parts[1]!r} is not a number") from None
    return out


def _read_full(folder: Path, report: LoadReport) -> list[ArgumentPair]:
    """The pairs of every full-XML file; a repeated pair id is skipped and counted, never kept twice."""
    files = sorted((folder / FULL).glob("*.xml"))
    if not files:
        raise UKPDataUnavailable(f"{folder / FULL}: no .xml files (the full XML folder is required)")
    seen: set[str] = set()
    pairs: list[ArgumentPair] = []
    skipped: Counter = Counter()
    for p in files:
        for q in parse_pairs_xml(p):
            if q.pair_id in seen:
                skipped["repeated pair id (first occurrence kept)"] += 1
                continue
            seen.add(q.pair_id)
            pairs.append(q)
    report.files = len(files)
    report.skipped.update(skipped)
    return pairs


def load_ukpconvarg1(folder: Path) -> UKPCorpus:
    """Read the published folder (``UKPConvArg1-full-XML`` required; Strict and Ranking optional)."""
    folder = Path(folder).expanduser()
    report = LoadReport()
    pairs = _read_full(folder, report)
    report.pairs_read = len(pairs)
    report.votes_read = sum(len(q.votes) for q in pairs)
    report.tied = sum(q.margin == 0 for q in pairs)
    report.all_equal = sum(all(v.value == "equal" for v in q.votes) for q in pairs)
    report.without_gold = sum(q.gold is None for q in pairs)
    strict, ranking = read_strict(folder), read_ranking(folder)
    ids = {q.pair_id for q in pairs}
    if strict is not None:
        report.strict_pairs = len(strict)
        report.strict_not_in_full = sum(pid not in ids for pid in strict)
    if ranking is not None:
        args = {a for q in pairs for a in (q.arg1_id, q.arg2_id)}
        report.ranked_arguments = len(ranking)
        report.ranked_not_in_full = sum(a not in args for a in ranking)
    for line in report.lines():
        log.info(line)
    return UKPCorpus(folder, pairs, strict, ranking, report)


def to_comparisons(corpus: UKPCorpus) -> list[Comparison]:
    """The track's records: prompt = debate + stance, A/B = arguments 1/2, one signed vote per worker;
    the gold argument scores (when present) are the comparison's utilities (for PDC)."""
    rank = corpus.convincingness or {}
    out = []
    for q in corpus.pairs:
        ua, ub = rank.get(q.arg1_id), rank.get(q.arg2_id)
        out.append(Comparison(
            comparison_id=q.pair_id, prompt_id=q.topic, prompt=f"{q.debate} Stance: {q.stance}",
            completion_a=q.text1, completion_b=q.text2, annotators=[v.worker for v in q.votes],
            prefs=[VOTE_SCORES[v.value] for v in q.votes], times=[v.seconds for v in q.votes],
            utility_a=ua if ub is not None else None, utility_b=ub if ua is not None else None,
            source="ukpconvarg1"))
    return out


# --------------------------------------------------------------------------------------------
# Finding the files: data.path, the cache, or one download into the cache
# --------------------------------------------------------------------------------------------


def _has_full(folder: Path) -> bool:
    return (folder / FULL).is_dir() and any((folder / FULL).glob("*.xml"))


def _where_message(cache: Path) -> str:
    return (f"UKPConvArg1 not found: put the data/ folder of https://github.com/{REPO} (at least {FULL}/; "
            f"optionally {STRICT_XML}/ and {RANKING}/) at {cache} or pass data.path=<that folder>")


def locate(path: Optional[str], cache_dir: str, allow_download: bool = True) -> Path:
    """The folder holding ``UKPConvArg1-full-XML``: ``path`` (or its ``data/`` child), else the cache,
    else one download into the cache. Failing all, :class:`UKPDataUnavailable` says where to put it."""
    if path:
        p = Path(path).expanduser()
        for cand in (p, p / "data"):
            if _has_full(cand):
                return cand
        raise UKPDataUnavailable(f"data.path={path}: no {FULL}/*.xml there or in its data/ folder; "
                                 f"it must hold the data/ folder of https://github.com/{REPO}")
    cache = Path(cache_dir).expanduser() / "ukpconvarg1"
    if _has_full(cache):
        return cache
    if allow_download:
        try:
            return download(cache)
        except OSError as e:  # URLError, timeouts, refused connections, full disks
            log.info("download of UKPConvArg1 failed: %s", e)
    raise UKPDataUnavailable(_where_message(cache))


def _get(url: str, timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "rlpref"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (fixed https URLs)
        return r.read()


def download(cache: Path, folders: Sequence[str] = (FULL, STRICT_XML, RANKING), timeout: float = 10.0) -> Path:
    """Download the published folders once into ``cache`` (through a temporary folder, renamed when
    complete, so an interrupted download leaves nothing that looks like data)."""
    api = f"https://api.github.com/repos/{REPO}/contents/data"
    tmp = Path(tempfile.mkdtemp(prefix=".ukpconvarg1-", dir=_mkdir(cache.parent)))
    try:
        for sub in folders:
            (tmp / sub).mkdir()
            for entry in json.loads(_get(f"{api}/{sub}", timeout)):
                name = Path(str(entry["name"])).name  # no path components from the listing
                (tmp / sub / name).write_bytes(_get(str(entry["download_url"]), timeout))
        if cache.exists():
            shutil.rmtree(cache)
        tmp.rename(cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("downloaded UKPConvArg1 into %s", cache)
    return cache


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# --------------------------------------------------------------------------------------------
# Does HIT time carry strength? (measured before offering strength=time)
# --------------------------------------------------------------------------------------------


def time_signal(pairs: Sequence[ArgumentPair]) -> dict:
    """Spearman ρ between a worker's HIT time and the mean |vote margin| of that HIT's pairs, over all
    (worker, HIT) assignments and within worker (both sides centred on the worker's median / mean).

    A HIT times its 3 pairs together, so time can only speak for the HIT; if quick HITs held clearer
    pairs, ρ would be clearly negative.
    """
    from scipy.stats import spearmanr

    per: dict[tuple[str, str], list] = {}
    for q in pairs:
        for v in q.votes:
            per.setdefault((v.worker, v.hit), [v.seconds, []])[1].append(abs(q.margin))
    keys = list(per)
    t = np.array([per[k][0] for k in keys], dtype=float)
    m = np.array([np.mean(per[k][1]) for k in keys], dtype=float)
    workers = np.array([k[0] for k in keys])
    _, inv, counts = np.unique(workers, return_inverse=True, return_counts=True)
    tz, mz = t.copy(), m.copy()
    for w in np.flatnonzero(counts >= 3):
        sel = inv == w
        tz[sel] -= np.median(t[sel])
        mz[sel] -= m[sel].mean()
    within = counts[inv] >= 3
    return {"assignments": len(keys), "spearman_time_margin": float(spearmanr(t, m)[0]),
            "within_worker_assignments": int(within.sum()),
            "spearman_time_margin_within_worker": float(spearmanr(tz[within], mz[within])[0])}


def ranking_orientation(corpus: UKPCorpus) -> dict:
    """Share of Strict pairs (and of majority-decided pairs) whose winner has the higher / lower published
    rank score: the evidence for reading a lower score as more convincing."""
    out = {}
    r = corpus.ranking or {}
    for name, labels in (("strict", corpus.strict or {}),
                         ("majority", {q.pair_id: "a1" if q.margin > 0 else "a2" for q in corpus.pairs if q.margin})):
        sign = [np.sign(r[q.arg1_id] - r[q.arg2_id]) * (1 if labels[q.pair_id] == "a1" else -1)
                for q in corpus.pairs if q.pair_id in labels and q.arg1_id in r and q.arg2_id in r]
        sign = np.asarray(sign)
        out[name] = {"pairs": int(sign.size), "winner_higher": float(np.mean(sign > 0)) if sign.size else None,
                     "winner_lower": float(np.mean(sign < 0)) if sign.size else None}
    return out


def worker_strata_sizes(corpus: UKPCorpus, fractions: Sequence[float] = (1.0, 0.1), seed: int = 0) -> dict:
    """How many training pairs each worker would label when one random non-tie vote labels a pair (the
    track's training label) over all pairs: the size of per-worker strata before any fold split."""
    from rlpref.llm.splits import sample_train_pairs

    comps = to_comparisons(corpus)
    out = {}
    for f in fractions:
        pairs = sample_train_pairs(comps, range(len(comps)), seed, f)
        _, counts = np.unique(pairs.annotator, return_counts=True)
        out[f"fraction_{f:g}"] = {"workers": int(counts.size), "median": float(np.median(counts)),
                                  "mean": float(counts.mean()), "max": int(counts.max()),
                                  "pairs_in_singleton_strata": float(np.sum(counts == 1) / counts.sum())}
    return out


def _cli(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m rlpref.llm.ukpconvarg1 <folder> [--out signals.json]``: the loader report and the
    HIT-time measurement behind refusing ``strength=time``."""
    import argparse

    ap = argparse.ArgumentParser(description=_cli.__doc__)
    ap.add_argument("folder", help="the published data/ folder (holding UKPConvArg1-full-XML)")
    ap.add_argument("--out", help="write the report and the measurement as JSON here")
    args = ap.parse_args(argv)
    try:
        corpus = load_ukpconvarg1(locate(args.folder, "", allow_download=False))
    except (UKPDataUnavailable, UKPFormatError) as e:
        print(f"error: {e}")
        return 2
    import sys

    report = {"command": "python -m rlpref.llm.ukpconvarg1 " + " ".join(argv if argv is not None else sys.argv[1:]),
              "load_report": corpus.report.__dict__, "time_signal": time_signal(corpus.pairs),
              "worker_strata": worker_strata_sizes(corpus), "ranking_orientation": ranking_orientation(corpus),
              "workers": len({v.worker for q in corpus.pairs for v in q.votes}),
              "margin_counts": dict(sorted(Counter(abs(q.margin) for q in corpus.pairs).items()))}
    print("\n".join(corpus.report.lines()))
    print(json.dumps({k: report[k] for k in ("time_signal", "worker_strata", "ranking_orientation", "workers",
                                             "margin_counts")}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_cli())
