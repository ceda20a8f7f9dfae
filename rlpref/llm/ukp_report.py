"""Tables, figure and the generated docs section of the UKPConvArg1 data-efficiency grid.

Kept apart from the grid script so that the numbers in docs/results.md come from one function of
``results.csv`` (rerunnable without training) and the CI and efficiency rules are tested. CIs are
95 % Student-t intervals over the grid's (fold, seed) runs of a cell; a paired difference is taken
per (fold, seed), where both learners saw the same training labels, subset and batches.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from rlpref.report.stats import mean_with_ci
from rlpref.synthetic.report import data_efficiency

__all__ = ["FIELDS", "METRICS", "PUBLISHED", "efficiency_table", "markdown_section", "paired_table",
           "plot_grid", "summary_table"]

#: Columns of results.csv (numbers and names only: no corpus text).
FIELDS = ["experiment", "loss", "strength", "strength_shuffled", "strata", "fold", "seed", "fraction",
          "n_train", "n_train_dropped_ties", "n_strata", "steps", "epochs", "accuracy", "n_test",
          "n_test_dropped_ties", "accuracy_strict", "n_test_strict", "spearman", "spearman_topics", "pdc",
          "seconds"]
METRICS = {
    "accuracy": "pair accuracy vs the majority vote (held-out debates, majority ties left out)",
    "accuracy_strict": "pair accuracy vs the Strict gold label (held-out pairs of the Strict subset)",
    "spearman": "Spearman ρ of reward vs gold score, per held-out topic, averaged",
    "pdc": "PDC: Pearson r of |Δ gold score| vs |Δ reward| over held-out test pairs",
}
#: The ACL 2016 paper's cross-topic results (SVM / BiLSTM).
PUBLISHED = {"accuracy_strict": (0.76, 0.78), "spearman": (0.35, 0.40)}


def _ci(values: np.ndarray) -> tuple[float, float, float, int]:
    v = np.asarray(values, dtype=float)
    m, lo, hi = mean_with_ci(v)
    return m, lo, hi, int(np.isfinite(v).sum())


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (learner, fraction): mean and 95 % CI of every metric over the (fold, seed) runs."""
    rows = []
    for (exp, frac), g in results.groupby(["experiment", "fraction"], sort=False):
        row = {"dataset": "UKPConvArg1", "learner": exp, "fraction": float(frac), "runs": len(g)}
        for m in METRICS:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"], row[f"{m}_n"] = _ci(pd.to_numeric(g[m], errors="coerce"))
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["learner", "fraction"], kind="stable").reset_index(drop=True)


def paired_table(results: pd.DataFrame, baseline: str = "bt") -> pd.DataFrame:
    """Per (learner, fraction, metric): learner − baseline over matched (fold, seed) runs, mean, 95 % CI
    and the number of runs where the learner is higher."""
    key = ["fold", "seed", "fraction"]
    base = results[results.experiment == baseline].set_index(key)
    rows = []
    for exp, g in results[results.experiment != baseline].groupby("experiment", sort=False):
        joined = g.set_index(key).join(base, rsuffix="_base", how="inner")
        for frac, h in joined.groupby(level="fraction"):
            for m in METRICS:
                d = (pd.to_numeric(h[m], errors="coerce") - pd.to_numeric(h[f"{m}_base"], errors="coerce")).to_numpy()
                mean, lo, hi, n = _ci(d)
                rows.append({"learner": exp, "baseline": baseline, "fraction": float(frac), "metric": m,
                             "diff": mean, "lo": lo, "hi": hi, "n": n, "wins": int(np.sum(d > 0))})
    return pd.DataFrame(rows)


def efficiency_table(summary: pd.DataFrame, learners: Sequence[str] = ("rr_agree",), baseline: str = "bt",
                     metrics: Sequence[str] = ("accuracy", "accuracy_strict", "spearman")) -> pd.DataFrame:
    """The share of the training pairs at which each learner's mean reaches the baseline's mean at the
    largest fraction (linear interpolation between grid fractions; NaN = never reached)."""
    frames = [data_efficiency(summary, learner=lr, baseline=baseline, metric=m) for lr in learners for m in metrics]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _cell(mean: float, lo: float, hi: float, scale: float = 1.0, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    half = (hi - lo) / 2 if math.isfinite(hi - lo) else float("nan")
    text = f"{scale * mean:.{digits}f}"
    return f"{text} ± {scale * half:.{digits}f}" if math.isfinite(half) else text


def _metric_table(summary: pd.DataFrame, metric: str, fractions: list, learners: list) -> list[str]:
    out = [f"**{METRICS[metric]}** (mean ± 95 % CI half-width)", "",
           "| learner | " + " | ".join(f"{f:g}" for f in fractions) + " |", "|---|" + "---:|" * len(fractions)]
    for lr in learners:
        cells = []
        for f in fractions:
            r = summary[(summary.learner == lr) & (summary.fraction == f)]
            cells.append(_cell(*(r[[metric, f"{metric}_lo", f"{metric}_hi"]].iloc[0])) if len(r) else "–")
        out.append(f"| {lr} | " + " | ".join(cells) + " |")
    return out + [""]


def _paired_lines(paired: pd.DataFrame, fractions: list) -> list[str]:
    out = ["**Paired difference to bt** (percentage points, mean ± 95 % CI; wins = runs where higher / runs)", "",
           "| learner − bt | metric | " + " | ".join(f"{f:g}" for f in fractions) + " |",
           "|---|---|" + "---:|" * len(fractions)]
    for (lr, m), g in paired.groupby(["learner", "metric"], sort=False):
        if m == "pdc":
            continue
        cells = []
        for f in fractions:
            r = g[g.fraction == f]
            if not len(r):
                cells.append("–")
                continue
            r = r.iloc[0]
            cells.append(f"{_cell(r['diff'], r.lo, r.hi, 100, 1)} ({r.wins}/{r.n})")
        out.append(f"| {lr} | {m} | " + " | ".join(cells) + " |")
    return out + [""]


def _efficiency_lines(eff: pd.DataFrame) -> list[str]:
    out = ["**Data efficiency**: share of the training pairs at which a learner's mean reaches bt's mean at 100 %", ""]
    for _, r in eff.iterrows():
        need = r.fraction_needed
        if not math.isfinite(need):
            txt = "not reached at any fraction"
        else:
            txt = f"{'≤ ' if r.at_or_below else ''}{need:.2f}"
        out.append(f"- {r.learner}, {r.metric} (bt at 100 %: {r.baseline_at_full:.3f}): {txt}")
    return out + [""]


def _target_lines(summary: pd.DataFrame) -> list[str]:
    full = summary[summary.fraction == summary.fraction.max()]
    out = ["**Against the published cross-topic results** (best learner at 100 %):", ""]
    for m, (lo, hi) in PUBLISHED.items():
        if full[m].notna().any():
            best = full.loc[full[m].idxmax()]
            verdict = "meets" if best[m] >= hi else f"misses by {hi - best[m]:.3f}"
            out.append(f"- {m}: {best.learner} {_cell(best[m], best[f'{m}_lo'], best[f'{m}_hi'])}; "
                       f"published {lo:.2f}–{hi:.2f}; target {hi:.2f}: {verdict}")
    return out + [""]


def markdown_section(summary: pd.DataFrame, paired: pd.DataFrame, eff: pd.DataFrame, meta: dict,
                     figure: str = "") -> str:
    """The generated section of docs/results.md from the grid's tables and its run.json."""
    fractions = sorted(summary.fraction.unique())
    learners = list(dict.fromkeys(summary.learner))
    m = meta["machine"]
    rep = meta["load_report"]
    out = [f"UKPConvArg1, cross-topic: {meta['overrides']}. {meta['runs']} runs "
           f"({len(learners)} learners × {len(fractions)} fractions × seeds × folds) "
           f"in {meta['wall_seconds']:.0f} s wall "
           f"(reading and embedding {meta['prepare_seconds']:.0f} s) with {m['workers']} worker processes on a "
           f"{m['cpus']}-CPU machine; load average {m['load_average_at_start'][0]:.1f} at start, "
           f"{m['load_average_at_end'][0]:.1f} at end. {meta.get('note', '')}".strip(), "",
           f"Loader: {rep['pairs_read']} pairs from {rep['files']} files, {rep['votes_read']} votes, "
           f"{rep['tied']} majority ties, {rep['all_equal']} all-'equal', {rep['without_gold']} without goldLabel; "
           f"Strict {rep['strict_pairs']} pairs; gold ranking {rep['ranked_arguments']} arguments; skipped: "
           f"{rep['skipped'] or 'none'}.", ""]
    for metric in METRICS:
        out += _metric_table(summary, metric, fractions, learners)
    out += _paired_lines(paired, fractions) + _efficiency_lines(eff) + _target_lines(summary)
    if figure:
        out.append(f"![UKPConvArg1 data efficiency]({figure})")
    return "\n".join(out)


def plot_grid(summary: pd.DataFrame, path: Path) -> Path:
    """One panel per metric: mean and 95 % CI band against the training fraction, one line per learner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, metric in zip(axes, METRICS):
        for lr, g in summary.groupby("learner", sort=False):
            g = g.sort_values("fraction")
            ax.plot(g.fraction, g[metric], marker="o", label=lr)
            ax.fill_between(g.fraction, g[f"{metric}_lo"], g[f"{metric}_hi"], alpha=0.2)
        if metric in PUBLISHED:
            ax.axhspan(*PUBLISHED[metric], color="grey", alpha=0.15, label="published")
        ax.set_xscale("log")
        ax.set_xticks(sorted(summary.fraction.unique()), [f"{f:g}" for f in sorted(summary.fraction.unique())])
        ax.set_xlabel("fraction of training pairs")
        ax.set_title(metric)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
