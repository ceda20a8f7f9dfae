"""python -m rlpref.report <sweep dir> [--out DIR] [--reps N]

Collects every run under the sweep directory (any directory with results.json) into
``<out>/runs.{csv,parquet}`` and ``<out>/curves.{csv,parquet}``, draws
``sample_efficiency.png``, ``learning_curves.png`` and ``rm_quality_vs_sigma.png``, and writes
``returns.md`` / ``returns.tex`` (final and max return per env x sigma x method), ``cells.md`` (per cell: IQMs
with 95 % CIs, reward-model accuracy, % of the same-seed true-reward agent), ``against_bt.md``,
``reward_models.csv`` and ``cost.md`` (wall seconds and query-selection seconds per method). ``<out>`` defaults to ``<sweep dir>/report``. Reads local files only.
``--expect FILE`` (CSV of published directions per cell, :mod:`rlpref.report.expect`) adds to the
against-bt table the paper's claim and whether the runs agree with it.

``--results-md docs/results.md --section NAME`` also writes the return table, with the command that
made it and links to the figures, into that file between ``<!-- rlpref.report:NAME -->`` markers
(replacing the section's previous text, or appending it), so measured results are generated, not typed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from rlpref.artifacts import atomic_path, atomic_write_text

from .collect import collect, write_tables
from .expect import load_expectations
from .plots import learning_curves, rm_quality_vs_sigma, sample_efficiency
from .sections import write_section
from .tables import against_bt_table, cell_table, cost_table, oracle_ratio_table, reach_table, return_table, rm_table, to_latex, to_markdown


def build_report(sweep_dir: Path, out_dir: Optional[Path] = None, reps: int = 2000, quiet: bool = False,
                 expect: Optional[dict] = None) -> dict:
    """Every table and figure of a sweep into ``out_dir``; ``expect``: published directions per cell
    (:func:`rlpref.report.expect.load_expectations`) for the against-bt table. Returns {name: path}."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir else sweep_dir / "report"
    col = collect(sweep_dir)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    say(f"rlpref.report: {len(col.runs)} finished runs under {sweep_dir}")
    if col.incomplete:
        say(f"  {len(col.incomplete)} run dirs without results.json (running, failed or preempted):")
        for p in col.incomplete[:20]:
            say(f"    {p}")
    for e in col.errors:
        say(f"  unreadable: {e}")
    if col.repeats:
        say(f"  {len(col.repeats)} older run(s) of an experiment that was run again (same agent artefact key), "
            f"left out in favour of the newest: {', '.join(col.repeats[:10])}")
    if len(col.runs) and col.runs["resumed"].any():
        resumed = col.runs[col.runs["resumed"]]
        say(f"  {len(resumed)} resumed run(s), marked † in every table: "
            + "; ".join(f"{r} ({a})" for r, a in zip(resumed["run_id"], resumed["resumed_at"])))
    if col.runs.empty:
        raise SystemExit(f"rlpref.report: no results.json under {sweep_dir}")
    outputs: dict[str, Path] = dict(write_tables(col, out_dir))
    summary = return_table(col.runs)
    atomic_write_text(out_dir / "returns.md", to_markdown(summary, title=f"True return — {sweep_dir.name}"))
    atomic_write_text(out_dir / "returns.tex", to_latex(summary))
    outputs["returns_md"], outputs["returns_tex"] = out_dir / "returns.md", out_dir / "returns.tex"
    cost = cost_table(col.runs)
    if cost:
        atomic_write_text(out_dir / "cost.md", "### Cost — wall seconds per run\n\n" + cost)
        outputs["cost_md"] = out_dir / "cost.md"
    ratio = oracle_ratio_table(col.runs)
    if ratio:
        atomic_write_text(out_dir / "oracle_ratio.md", "### Learned-reward return as % of the same-seed true-reward agent\n\n" + ratio)
        outputs["oracle_ratio_md"] = out_dir / "oracle_ratio.md"
    cells = cell_table(col.runs, reps=reps)
    if cells:
        atomic_write_text(out_dir / "cells.md", "### Per cell: IQM of final and max true return, reward-model accuracy, "
                          "% of the same-seed true-reward agent\n\n" + cells)
        outputs["cells_md"] = out_dir / "cells.md"
    versus = against_bt_table(col.runs, reps=reps, expect=expect)
    if versus:
        atomic_write_text(out_dir / "against_bt.md", "### Each method against bt: IQM difference and probability of "
                          "improvement\n\n" + versus)
        outputs["against_bt_md"] = out_dir / "against_bt.md"
    reach = reach_table(col.runs)
    if reach:
        atomic_write_text(out_dir / "reach.md", "### Comparisons needed to reach a method's best mean return\n\n" + reach)
        outputs["reach_md"] = out_dir / "reach.md"
    rm = rm_table(col.runs)
    if not rm.empty:
        with atomic_path(out_dir / "reward_models.csv") as tmp:
            rm.to_csv(tmp, index=False)
        outputs["reward_models_csv"] = out_dir / "reward_models.csv"
    for name, fn in (
        ("sample_efficiency", lambda p: sample_efficiency(col.runs, p, reps=reps)),
        ("learning_curves", lambda p: learning_curves(col.curves, p)),
        ("rm_quality_vs_sigma", lambda p: rm_quality_vs_sigma(col.runs, p)),
    ):
        path = fn(out_dir / f"{name}.png")
        if path is not None:
            outputs[name] = path
    for k, p in outputs.items():
        say(f"  {k:>20}: {p}")
    return outputs


def write_results_section(results_md: Path, section: str, outputs: dict, command: str, reach: bool = False) -> None:
    """The return, against-bt, same-seed-oracle and cost tables (and with ``reach`` the comparisons-to-reach table) and the figures
    (linked relative to the markdown file) as section ``section``."""
    results_md = Path(results_md)
    table = Path(outputs["returns_md"]).read_text().strip()
    for extra in ("cells_md", "against_bt_md", "oracle_ratio_md") + (("reach_md",) if reach else ()) + ("cost_md",):
        if outputs.get(extra) is not None:
            table += "\n\n" + Path(outputs[extra]).read_text().strip()
    figures = [f"![{k}]({_relative(Path(outputs[k]), results_md.parent)})"
               for k in ("sample_efficiency", "learning_curves") if k in outputs]
    write_section(results_md, section, "\n".join([table, "", *figures]), command)


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlpref.report", description=__doc__.split("\n\n")[1])
    ap.add_argument("sweep_dir", type=Path, help="a Hydra multirun dir (or any dir containing run dirs)")
    ap.add_argument("--out", type=Path, default=None, help="output dir (default: <sweep dir>/report)")
    ap.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the IQM CIs")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--results-md", type=Path, default=None, help="also write the table into this markdown file")
    ap.add_argument("--section", default=None, help="the generated section's name in --results-md")
    ap.add_argument("--expect", type=Path, default=None,
                    help="CSV env,sigma,method,paper,expected (above|below|not_below): published directions; the "
                         "against-bt table then says per cell whether the runs agree")
    ap.add_argument("--reach", action="store_true",
                    help="also put the comparisons-to-reach table (report/reach.md) into the section")
    args = ap.parse_args(argv)
    if (args.results_md is None) != (args.section is None):
        ap.error("--results-md and --section go together")
    try:  # a bad --expect file fails before any work, naming the file, line and fix
        claims = load_expectations(args.expect) if args.expect is not None else None
    except ValueError as exc:
        ap.error(str(exc))
    outputs = build_report(args.sweep_dir, args.out, reps=args.reps, quiet=args.quiet, expect=claims)
    if args.results_md is not None:
        command = "python -m rlpref.report " + " ".join(argv if argv is not None else sys.argv[1:])
        write_results_section(args.results_md, args.section, outputs, command, reach=args.reach)
    md = outputs.get("returns_md")
    if md is not None and not args.quiet:
        print(Path(md).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
