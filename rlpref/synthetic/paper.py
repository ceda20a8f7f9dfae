"""python -m rlpref.synthetic.paper <run dir> [--blocks RUN ...] [--results-md docs/results.md --section NAME]

Compares a synthetic grid's means at 100 % data with the ResponseRank paper's table (mean of 100 trials,
PDC / choice accuracy): each cell with its difference, the count within ``--tol`` (0.03), the learners'
PDC order per dataset, and data efficiency against the paper's. Prints the markdown; with
``--results-md`` also writes it into that file as a generated section.

``--blocks RUN [RUN ...]``: runs of more trials (e.g. ``grid.n_trials=500``) cut into blocks of the
paper's 100 trials. For every cell outside the tolerance it adds the mean over all trials and the
range of the block means, and says whether the paper's value lies inside that range (the same protocol
with other trials reaches it); for data efficiency likewise, from a run with all fractions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

__all__ = ["PAPER", "PAPER_EFFICIENCY", "block_check", "compare"]

LEARNERS = ("bt", "rt_regression", "rt_regression_perm", "rr", "rr_pooled", "rr_perm")
#: dataset -> the six learners' (PDC, choice accuracy) at 100 % data, in LEARNERS order.
PAPER = {
    "deterministic": ((.535, .777), (.229, .642), (.122, .565), (.669, .821), (.420, .733), (.271, .690)),
    "stochastic": ((.533, .769), (.244, .648), (.132, .579), (.678, .808), (.382, .710), (.261, .673)),
    "drift_diffusion": ((.504, .763), (.366, .714), (.249, .671), (.562, .777), (.331, .699), (.231, .672)),
    "deterministic_no_variability": ((.524, .772), (.700, .832), (.396, .730), (.662, .815), (.648, .812),
                                     (.300, .693)),
    "stochastic_no_variability": ((.498, .760), (.689, .818), (.371, .714), (.656, .807), (.642, .806),
                                  (.275, .683)),
    "drift_diffusion_no_variability": ((.498, .758), (.499, .763), (.377, .723), (.556, .780), (.498, .760),
                                       (.262, .684)),
}
#: dataset -> share of data (%) at which RR's mean PDC reaches BT's at 100 % (the paper's).
PAPER_EFFICIENCY = {"deterministic": 59.7, "stochastic": 58.6, "drift_diffusion": 77.4}


def compare(summary: pd.DataFrame, tol: float = 0.03, efficiency: Optional[Sequence[dict]] = None) -> str:
    """Markdown: per cell ours vs paper, the count within ``tol``, the PDC order, data efficiency."""
    full = summary[summary["fraction"] == summary["fraction"].max()].set_index(["dataset", "learner"])
    rows, hits, total, orders = [], 0, 0, []
    for dataset, cells in PAPER.items():
        if dataset not in full.index.get_level_values(0):
            continue
        for learner, (p_pdc, p_acc) in zip(LEARNERS, cells):
            ours = full.loc[(dataset, learner)]
            marks = []
            for value, paper in ((ours["pdc"], p_pdc), (ours["accuracy"], p_acc)):
                ok = abs(value - paper) <= tol
                hits, total = hits + ok, total + 1
                marks += [f"{value:.3f}", f"{paper:.3f}", f"{value - paper:+.3f}" + ("" if ok else " ✗")]
            rows.append(f"| {dataset} | {learner} | " + " | ".join(marks) + " |")
        ours_order = sorted(LEARNERS, key=lambda lr: -full.loc[(dataset, lr)]["pdc"])
        paper_order = [lr for _, lr in sorted(zip((-c[0] for c in cells), LEARNERS))]
        orders.append(f"- {dataset}: {'same' if ours_order == paper_order else 'differs'} "
                      f"(ours {' > '.join(ours_order)}; paper {' > '.join(paper_order)})")
    head = ["| dataset | learner | PDC ours | PDC paper | Δ | acc ours | acc paper | Δ |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    out = [f"**{hits} of {total} cells within ±{tol:g} of the paper** (✗: outside).", "", *head, *rows, "",
           "PDC order of the six learners:", *orders]
    if efficiency:
        out += ["", "| data efficiency (% of data for RR to reach BT at 100 %) | ours | paper |", "|---|---:|---:|"]
        for e in efficiency:
            if e["dataset"] in PAPER_EFFICIENCY and e.get("fraction_needed") is not None:
                ours = f"{100 * e['fraction_needed']:.1f}"
                if e.get("at_or_below"):
                    ours = f"≤ {ours} (the grid's smallest fraction: not resolved)"
                out.append(f"| {e['dataset']} | {ours} | {PAPER_EFFICIENCY[e['dataset']]} |")
    return "\n".join(out) + "\n"


def _gap_z(values: pd.Series, paper: float, block: int) -> float:
    """(paper − mean of ``values``) / sqrt(sd²/block + sd²/n): how far apart two means of one distribution are."""
    import math

    v = values.dropna().to_numpy(dtype=float)
    sd = float(v.std(ddof=1))
    return (paper - float(v.mean())) / (sd * math.sqrt(1 / block + 1 / len(v))) if sd > 0 else float("inf")


def _block_summaries(results: pd.DataFrame, block: int) -> list[pd.DataFrame]:
    from .report import summarise

    blocks = results["trial"] // block
    return [summarise(results[blocks == b]) for b in sorted(blocks.unique())
            if (results.loc[blocks == b, "trial"].nunique() == block)]


def block_check(summary: pd.DataFrame, results: pd.DataFrame, tol: float = 0.03, block: int = 100,
                label: str = "", shown: Optional[set] = None) -> str:
    """Markdown: each cell of ``summary`` outside ``tol`` against the blocks of ``results`` (see --blocks).

    ``label`` names the run the blocks come from; cells in ``shown`` (dataset, learner, metric), already
    checked against an earlier run, are left out, and the cells listed here are added to it."""
    shown = set() if shown is None else shown
    from .report import data_efficiency, summarise

    full = summary[summary["fraction"] == summary["fraction"].max()].set_index(["dataset", "learner"])
    top = results[results["fraction"] == results["fraction"].max()]
    overall = summarise(top).set_index(["dataset", "learner"])
    blocks = [b.set_index(["dataset", "learner"]) for b in _block_summaries(top, block)]
    rows = []
    for dataset, cells in PAPER.items():
        for learner, values in zip(LEARNERS, cells):
            if (dataset, learner) not in full.index or (dataset, learner) not in overall.index:
                continue
            for metric, paper in zip(("pdc", "accuracy"), values):
                if abs(full.loc[(dataset, learner), metric] - paper) <= tol or (dataset, learner, metric) in shown:
                    continue
                shown.add((dataset, learner, metric))
                means = [b.loc[(dataset, learner), metric] for b in blocks]
                inside = min(means) - 1e-9 <= paper <= max(means) + 1e-9
                z = _gap_z(top[(top["dataset"] == dataset) & (top["learner"] == learner)][metric], paper, block)
                rows.append(f"| {dataset} | {learner} | {metric} | {full.loc[(dataset, learner), metric]:.3f} | "
                            f"{overall.loc[(dataset, learner), metric]:.3f} | {min(means):.3f}–{max(means):.3f} | "
                            f"{paper:.3f} | {'yes' if inside else 'no'} | {z:+.2f} |")
    lines = []
    if len(overall.index.get_level_values(0).unique()) == len(PAPER):  # every dataset: the table over all trials
        text = compare(summarise(top), tol).splitlines()
        lines = [f"Over all {top['trial'].nunique()} trials: {text[0].split('**')[1]}; the PDC order of the six "
                 "learners:",
                 *text[text.index("PDC order of the six learners:") + 1:], ""]
    if rows:
        lines += [f"{label}Cells outside ±{tol:g}, against {top['trial'].nunique()} trials in {len(blocks)} blocks of {block} "
                 f"(z: the paper's value minus the mean over all trials, in standard errors of that difference when "
                 f"the paper's is a mean of {block} trials of the same distribution; |z| < 1.96: a sampling gap):",
                 "", f"| dataset | learner | metric | ours ({block}) | all trials | block means (min–max) | paper | "
                 "paper in block range | z |", "|---|---|---|---:|---:|---|---:|---|---:|", *rows]
    if results["fraction"].nunique() > 1:
        lines += [*([""] if lines else []), f"{label}Data efficiency over {results['trial'].nunique()} trials in blocks of "
                  f"{block}:", "", "| data efficiency (%) | all trials | block values (min–max) | paper | paper in range |",
                  "|---|---:|---|---:|---|"]
        per_block = [data_efficiency(b).set_index("dataset") for b in _block_summaries(results, block)]
        for dataset, row in data_efficiency(summarise(results)).set_index("dataset").iterrows():
            if dataset not in PAPER_EFFICIENCY:
                continue
            vals = [100 * b.loc[dataset, "fraction_needed"] for b in per_block]
            paper = PAPER_EFFICIENCY[dataset]
            inside = min(vals) <= paper <= max(vals)
            lines.append(f"| {dataset} | {100 * row['fraction_needed']:.1f} | {min(vals):.1f}–{max(vals):.1f} | "
                         f"{paper} | {'yes' if inside else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlpref.synthetic.paper", description=__doc__.split("\n\n")[1])
    ap.add_argument("run_dir", type=Path, help="a synthetic run folder (summary.csv, summary.json)")
    ap.add_argument("--tol", type=float, default=0.03)
    ap.add_argument("--blocks", type=Path, nargs="+", default=None,
                    help="runs of more trials (results.csv) to check the cells outside --tol against")
    ap.add_argument("--results-md", type=Path, default=None)
    ap.add_argument("--section", default=None)
    args = ap.parse_args(argv)
    if (args.results_md is None) != (args.section is None):
        ap.error("--results-md and --section go together")
    if not (args.run_dir / "summary.csv").is_file():
        ap.error(f"no summary.csv in {args.run_dir}: pass the folder of a `python -m rlpref.synthetic` run")
    meta = json.loads((args.run_dir / "summary.json").read_text()) if (args.run_dir / "summary.json").is_file() else {}
    summary = pd.read_csv(args.run_dir / "summary.csv")
    text = compare(summary, args.tol, meta.get("data_efficiency"))
    shown: set = set()  # a cell checked against one run is not listed again under the next
    for run in args.blocks or []:
        if not (run / "results.csv").is_file():
            ap.error(f"no results.csv in {run}: --blocks takes `python -m rlpref.synthetic` run folders")
        text += "\n" + block_check(summary, pd.read_csv(run / "results.csv"), args.tol, label=f"`{run.name}`: ",
                                    shown=shown)
    print(text)
    if args.results_md is not None:
        from rlpref.report.sections import write_section

        command = "python -m rlpref.synthetic.paper " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(args.results_md, args.section, text, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
