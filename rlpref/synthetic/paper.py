"""python -m rlpref.synthetic.paper <run dir> [--results-md docs/results.md --section NAME]

Compares a synthetic grid's means at 100 % data with the ResponseRank paper's table (mean of 100 trials,
PDC / choice accuracy): each cell with its difference, the count within ``--tol`` (0.03), the learners'
PDC order per dataset, and data efficiency against the paper's. Prints the markdown; with
``--results-md`` also writes it into that file as a generated section.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

__all__ = ["PAPER", "PAPER_EFFICIENCY", "compare"]

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlpref.synthetic.paper", description=__doc__.split("\n\n")[1])
    ap.add_argument("run_dir", type=Path, help="a synthetic run folder (summary.csv, summary.json)")
    ap.add_argument("--tol", type=float, default=0.03)
    ap.add_argument("--results-md", type=Path, default=None)
    ap.add_argument("--section", default=None)
    args = ap.parse_args(argv)
    if (args.results_md is None) != (args.section is None):
        ap.error("--results-md and --section go together")
    if not (args.run_dir / "summary.csv").is_file():
        ap.error(f"no summary.csv in {args.run_dir}: pass the folder of a `python -m rlpref.synthetic` run")
    meta = json.loads((args.run_dir / "summary.json").read_text()) if (args.run_dir / "summary.json").is_file() else {}
    text = compare(pd.read_csv(args.run_dir / "summary.csv"), args.tol, meta.get("data_efficiency"))
    print(text)
    if args.results_md is not None:
        from rlpref.report.sections import write_section

        command = "python -m rlpref.synthetic.paper " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(args.results_md, args.section, text, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
