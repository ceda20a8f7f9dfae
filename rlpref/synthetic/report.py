"""Summaries of a synthetic grid: mean ± 95 % CI per cell, data efficiency, a markdown table and a plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from rlpref.artifacts import atomic_path
from rlpref.report.stats import mean_with_ci

__all__ = ["data_efficiency", "markdown_report", "plot_summary", "summarise"]

METRICS = ("pdc", "accuracy", "true_accuracy")
METRIC_LABELS = {"pdc": "PDC (Pearson r of |Δu|)", "accuracy": "choice accuracy (test)", "true_accuracy": "accuracy vs true utility"}


def summarise(results: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """One row per dataset × learner × fraction: ``<metric>``, ``<metric>_lo``, ``<metric>_hi`` (t-interval
    across trials) and ``n_trials``."""
    rows = []
    for (dataset, learner, fraction), g in results.groupby(["dataset", "learner", "fraction"], sort=False):
        finite = np.isfinite(g[list(metrics)].to_numpy(dtype=float)).all(axis=1)
        row = {"dataset": dataset, "learner": learner, "fraction": float(fraction), "n_trials": int(finite.sum())}
        for m in metrics:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean_with_ci(g[m].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def data_efficiency(summary: pd.DataFrame, learner: str = "rr", baseline: str = "bt", metric: str = "pdc") -> pd.DataFrame:
    """Per dataset: the smallest training fraction at which ``learner``'s mean reaches ``baseline``'s
    mean at the largest fraction, linearly interpolated between grid fractions.

    ``fraction_needed`` is NaN when the learner never reaches it; when it already does at the smallest
    fraction, that fraction is reported and ``at_or_below`` is True (the grid cannot resolve further).
    """
    rows = []
    for dataset, g in summary.groupby("dataset", sort=False):
        base = g[g.learner == baseline].sort_values("fraction")
        cand = g[g.learner == learner].sort_values("fraction")
        if base.empty or cand.empty:
            continue
        target = float(base[metric].iloc[-1])
        f, v = cand["fraction"].to_numpy(), cand[metric].to_numpy()
        needed, below = float("nan"), False
        if v[0] >= target:
            needed, below = float(f[0]), True
        else:
            for i in range(1, len(f)):
                if v[i] >= target:
                    needed = float(f[i - 1] + (target - v[i - 1]) * (f[i] - f[i - 1]) / (v[i] - v[i - 1]))
                    break
        rows.append({"dataset": dataset, "metric": metric, "baseline": baseline, "learner": learner,
                     "baseline_at_full": target, "fraction_needed": needed, "at_or_below": below})
    return pd.DataFrame(rows)


def _cell(row: pd.Series, metric: str) -> str:
    m, lo, hi = row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"]
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.3f} ± {(hi - lo) / 2:.3f}" if math.isfinite(hi - lo) else f"{m:.3f}"


def markdown_report(summary: pd.DataFrame, efficiency: Optional[pd.DataFrame] = None,
                    learners: Optional[Sequence[str]] = None, diagnostics: Optional[pd.DataFrame] = None) -> str:
    """Tables at the largest fraction (rows: datasets, columns: learners, mean ± 95 % CI half-width),
    one per metric, then data efficiency and the Kendall τ diagnostic."""
    learners = list(learners or dict.fromkeys(summary["learner"]))
    full = summary[summary["fraction"] == summary["fraction"].max()]
    n = int(full["n_trials"].min()) if len(full) else 0
    out = [f"# Synthetic utility recovery ({n} trials per cell, fraction {full['fraction'].max():g} of the training pairs)", ""]
    for metric in METRICS:
        out += [f"## {METRIC_LABELS[metric]}: mean ± 95 % CI", "", "| dataset | " + " | ".join(learners) + " |",
                "|---|" + "---:|" * len(learners)]
        for dataset, g in full.groupby("dataset", sort=False):
            by = g.set_index("learner")
            out.append(f"| {dataset} | " + " | ".join(_cell(by.loc[lr], metric) if lr in by.index else "" for lr in learners) + " |")
        out.append("")
    if efficiency is not None and len(efficiency):
        e0 = efficiency.iloc[0]
        out += [f"## Data efficiency: fraction at which {e0['learner']} reaches {e0['baseline']}'s {e0['metric']} at 100 %", "",
                f"| dataset | {e0['baseline']} at 100 % | fraction needed |", "|---|---:|---:|"]
        for _, r in efficiency.iterrows():
            frac = "never" if not math.isfinite(r["fraction_needed"]) else (
                f"≤ {r['fraction_needed']:.2f}" if r["at_or_below"] else f"{r['fraction_needed']:.2f}")
            out.append(f"| {r['dataset']} | {r['baseline_at_full']:.3f} | {frac} |")
        out.append("")
    if diagnostics is not None and len(diagnostics):
        out += ["## Diagnostic: Kendall τ between strength (−rt) and true |Δu| on test pairs", "", "| dataset | τ (mean ± 95 % CI) |", "|---|---:|"]
        for dataset, g in diagnostics.groupby("dataset", sort=False):
            m, lo, hi = mean_with_ci(g["kendall_tau"].to_numpy())
            out.append(f"| {dataset} | {m:.3f} ± {(hi - lo) / 2:.3f} |")
        out.append("")
    return "\n".join(out)


def plot_summary(summary: pd.DataFrame, path: Path, metrics: Sequence[str] = ("pdc", "accuracy")) -> Path:
    """A grid of panels (rows: metrics, columns: datasets), one line per learner with its 95 % CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(summary["dataset"]))
    learners = list(dict.fromkeys(summary["learner"]))
    fig, axes = plt.subplots(len(metrics), len(datasets), figsize=(3.6 * len(datasets), 3.0 * len(metrics)),
                             squeeze=False, sharex=True)
    colors = {lr: plt.cm.tab10(i % 10) for i, lr in enumerate(learners)}
    for r, metric in enumerate(metrics):
        for c, dataset in enumerate(datasets):
            ax = axes[r, c]
            for lr in learners:
                g = summary[(summary.dataset == dataset) & (summary.learner == lr)].sort_values("fraction")
                if g.empty:
                    continue
                x = 100 * g["fraction"].to_numpy()
                ax.plot(x, g[metric], marker="o", ms=3, color=colors[lr], label=lr,
                        lw=2.2 if lr in ("bt", "rr") else 1.2)
                ax.fill_between(x, g[f"{metric}_lo"], g[f"{metric}_hi"], color=colors[lr], alpha=0.15, lw=0)
            if r == 0:
                ax.set_title(dataset.replace("_", " "), fontsize=10)
            if c == 0:
                ax.set_ylabel(METRIC_LABELS[metric])
            if r == len(metrics) - 1:
                ax.set_xlabel("training data used (% of the training pairs)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(learners), frameon=False)
    fig.suptitle("Synthetic utility recovery: mean and 95 % CI over trials")
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
