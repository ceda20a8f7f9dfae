"""Figures of a sweep: sample efficiency, learning curves, reward-model accuracy vs teacher noise.

Every figure is a grid of panels (one per env, and per sigma / budget where those vary), one line
per method (the loss; ``oracle`` = agent trained on the true reward), with labelled axes, units and
a legend giving the number of seeds behind each line.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from rlpref.artifacts import atomic_path  # noqa: E402

from .stats import iqm_interval, mean_with_ci, method_stream  # noqa: E402

__all__ = ["sample_efficiency", "learning_curves", "rm_quality_vs_sigma", "method_style"]

_PALETTE = {
    "bt": "#1f77b4",
    "rr": "#d62728",
    "rr_pooled": "#ff7f0e",
    "rr_perm": "#9467bd",
    "clf": "#2ca02c",
    "rt_regression": "#8c564b",
    "oracle": "#222222",
}
_LABELS = {
    "bt": "BT (Bradley-Terry)",
    "rr": "RR (ResponseRank)",
    "rr_pooled": "RR pooled (one stratum)",
    "rr_perm": "RR, shuffled strength",
    "clf": "CLF (per-item classifier)",
    "rt_regression": "strength regression",
    "oracle": "oracle (true reward)",
}


_EXTRA = [c for c in plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
          if matplotlib.colors.to_hex(c) not in _PALETTE.values()]


def _base(method: str) -> str:
    """The loss a method label starts with: ``rr@online-...[query=dopt]`` -> ``rr``."""
    return re.split(r"[@\[+]", method)[0]


def method_style(method: str, methods: Sequence[str] = ()) -> dict:
    """Colour, line style and legend label of a method. A method outside the palette (a variant such as
    ``rr@online-...[query=dopt]``) keeps its loss's colour when it is the figure's only variant of that
    loss, and otherwise takes the next free colour in the order of ``methods`` (every method of the
    figure), so variants never share a colour; a bt variant is dash-dotted, other variants solid."""
    base = _base(method)
    colour = _PALETTE.get(method)
    if colour is None and base in _PALETTE and [_base(m) for m in methods].count(base) == 1:
        colour = _PALETTE[base]  # the figure's only variant of a known loss keeps that loss's colour
    if colour is None:
        unknown = [m for m in dict.fromkeys(methods) if m not in _PALETTE]
        i = unknown.index(method) if method in unknown else zlib.crc32(method.encode())
        colour = _EXTRA[i % len(_EXTRA)]
    linestyle = "--" if method == "oracle" else ("-." if base == "bt" and method != "bt" else "-")
    return {"color": colour, "linestyle": linestyle, "label": _LABELS.get(method, method)}


def _methods(df: pd.DataFrame) -> list[str]:
    order = list(_PALETTE)
    present = list(dict.fromkeys(df["method"]))
    return sorted(present, key=lambda m: (order.index(m) if m in order else len(order), m))


def _sigma_label(s: float) -> str:
    return f"σ = {s:g}"


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def _grid(n_rows: int, n_cols: int, w: float = 4.6, h: float = 3.4):
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols, h * n_rows + 0.8), squeeze=False,
                             layout="constrained")
    return fig, axes


def _legend(fig, axes) -> None:
    """One legend for the figure. A method whose panels rest on different seed counts reads "n=1–3
    seeds", so a panel with one seed never borrows the first panel's larger n."""
    handles, counts = {}, {}
    for ax in axes.ravel():
        for hnd, lab in zip(*ax.get_legend_handles_labels()):
            key, _, rest = lab.partition(" (n=")
            handles.setdefault(key, hnd)
            n = rest.split(" ", 1)[0]
            if n.isdigit():
                counts.setdefault(key, set()).add(int(n))
    labels = {}
    for key in handles:
        ns = sorted(counts.get(key, ()))
        labels[key] = key if not ns else f"{key} (n={ns[0]} seeds)" if len(ns) == 1 else f"{key} (n={ns[0]}–{ns[-1]} seeds)"
    if handles:
        # Below the panels: above them it would collide with the suptitle.
        fig.legend(list(handles.values()), list(labels.values()), loc="outside lower center",
                   ncol=min(2, len(handles)) if len(axes.ravel()) == 1 else min(4, len(handles)), frameon=False)


def _title(fig, text: str) -> None:
    fig.suptitle(text, fontsize="medium", wrap=True)


_STEPS = FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if abs(v) >= 1e6 else (f"{v / 1e3:g}k" if abs(v) >= 1e3 else f"{v:g}"))


def sample_efficiency(runs: pd.DataFrame, out: Path, reps: int = 2000) -> Optional[Path]:
    """Final true return vs number of comparisons; IQM over seeds with 95 % stratified-bootstrap CIs (the
    tables' intervals: the same stream per method)."""
    if runs.empty:
        return None
    envs = sorted(runs["env"].unique())
    every = _methods(runs)
    sigmas = sorted(runs.loc[runs["method"] != "oracle", "sigma"].unique()) or sorted(runs["sigma"].unique())
    fig, axes = _grid(len(envs), len(sigmas))
    for i, env in enumerate(envs):
        for j, sigma in enumerate(sigmas):
            ax = axes[i, j]
            sub = runs[(runs["env"] == env)]
            learned = sub[(sub["method"] != "oracle") & (sub["sigma"] == sigma)]
            xs_all = sorted(learned["n_feedback"].unique())
            for method in _methods(learned):
                m = learned[learned["method"] == method]
                pts = []
                for nf in xs_all:
                    scores = m.loc[m["n_feedback"] == nf, "final_return"].to_numpy()
                    if scores.size:
                        point, lo, hi = iqm_interval(scores, reps=reps, stream=method_stream(method))
                        pts.append((nf, point, lo, hi))
                if not pts:
                    continue
                x, y, lo, hi = map(np.asarray, zip(*pts))
                st = method_style(method, every)
                n_seeds = int(m.groupby("n_feedback")["seed"].nunique().min())
                ax.plot(x, y, marker="o", color=st["color"], linestyle=st["linestyle"],
                        label=f"{st['label']} (n={n_seeds} seeds)")
                ax.fill_between(x, lo, hi, color=st["color"], alpha=0.2, linewidth=0)
                if len(x) == 1:  # a single budget: show the interval as an error bar too
                    ax.errorbar(x, y, yerr=[y - lo, hi - y], color=st["color"], capsize=4, linestyle="none")
            oracle = sub[sub["method"] == "oracle"]["final_return"].to_numpy()
            if oracle.size:
                point, lo, hi = iqm_interval(oracle, reps=reps, stream=method_stream("oracle"))
                st = method_style("oracle")
                ax.axhline(point, color=st["color"], linestyle="--", label=f"{st['label']} (n={oracle.size} seeds)")
                ax.axhspan(lo, hi, color=st["color"], alpha=0.08, linewidth=0)
            if len(xs_all) > 1 and xs_all[-1] / max(xs_all[0], 1) >= 4:
                ax.set_xscale("log")
                ax.set_xticks(xs_all)
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            elif xs_all:
                ax.set_xticks(xs_all)
            ax.set_title(f"{env}, {_sigma_label(sigma)}")
            ax.set_xlabel("number of comparisons (labelled pairs)")
            ax.set_ylabel("final true return (IQM, 95 % CI)")
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    _title(fig, "Sample efficiency: final true episode return vs feedback budget")
    return _save(fig, Path(out))


def _curve_band(curves: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Mean and 95 % t-CI across seeds of per-seed curves (interpolated onto a common step grid)."""
    per_run = {rid: g.sort_values("step") for rid, g in curves.groupby("run_id")}
    lo_step = max(g["step"].min() for g in per_run.values())
    hi_step = min(g["step"].max() for g in per_run.values())
    grid = np.array(sorted({s for g in per_run.values() for s in g["step"] if lo_step <= s <= hi_step}), dtype=float)
    if grid.size == 0:
        return (np.array([]),) * 4 + (0,)
    ys = np.stack([np.interp(grid, g["step"].to_numpy(float), g["true_return_mean"].to_numpy(float))
                   for g in per_run.values()])
    stats = np.array([mean_with_ci(ys[:, k]) for k in range(grid.size)])
    return grid, stats[:, 0], stats[:, 1], stats[:, 2], len(per_run)


def learning_curves(curves: pd.DataFrame, out: Path) -> Optional[Path]:
    """True return vs agent env steps; mean over seeds with 95 % CI; one panel per env x sigma x budget."""
    if curves.empty:
        return None
    envs = sorted(curves["env"].unique())
    every = _methods(curves)
    cond = curves.loc[curves["method"] != "oracle", ["sigma", "n_feedback"]].drop_duplicates()
    if cond.empty:
        cond = curves[["sigma", "n_feedback"]].drop_duplicates()
    cond = cond.sort_values(["sigma", "n_feedback"]).to_records(index=False).tolist()
    multi_budget = len({c[1] for c in cond}) > 1
    panels = [(env, sigma, nf) for env in envs for (sigma, nf) in cond]
    n_cols = min(4, len(cond)) if len(cond) > 1 else min(4, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig, axes = _grid(n_rows, n_cols)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for k, (env, sigma, nf) in enumerate(panels):
        if True:
            ax = axes.ravel()[k]
            sub = curves[curves["env"] == env]
            for method in _methods(sub):
                if method == "oracle":
                    m = sub[sub["method"] == "oracle"]
                else:
                    m = sub[(sub["method"] == method) & (sub["sigma"] == sigma) & (sub["n_feedback"] == nf)]
                if m.empty:
                    continue
                x, y, lo, hi, n = _curve_band(m)
                if x.size == 0:
                    continue
                st = method_style(method, every)
                ax.plot(x, y, color=st["color"], linestyle=st["linestyle"], label=f"{st['label']} (n={n} seeds)",
                        marker="." if x.size < 30 else None)
                ax.fill_between(x, lo, hi, color=st["color"], alpha=0.2, linewidth=0)
            title = f"{env}, {_sigma_label(sigma)}"
            if multi_budget:
                title += f", {nf} comparisons"
            ax.set_title(title)
            ax.set_xlabel("agent environment steps")
            ax.set_ylabel("true episode return (mean, 95 % CI)")
            ax.xaxis.set_major_formatter(_STEPS)
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    _title(fig, "Learning curves of agents trained on the learned reward, evaluated on the true reward")
    return _save(fig, Path(out))


def rm_quality_vs_sigma(runs: pd.DataFrame, out: Path) -> Optional[Path]:
    """Reward-model validation accuracy (top) and PDC (bottom) vs teacher noise sigma, per env."""
    learned = runs[(runs["method"] != "oracle") & runs["rm_val_accuracy"].notna()]
    if learned.empty:
        return None
    envs = sorted(learned["env"].unique())
    every = _methods(learned)
    rows = [("rm_val_accuracy", "validation accuracy (%)", 100.0), ("rm_pdc", "PDC (Pearson r of |ΔU|)", 1.0)]
    fig, axes = _grid(len(rows), len(envs))
    for j, env in enumerate(envs):
        sub = learned[learned["env"] == env]
        nf = int(sub["n_feedback"].max())
        sub = sub[sub["n_feedback"] == nf]
        for i, (col, ylabel, scale) in enumerate(rows):
            ax = axes[i, j]
            for method in _methods(sub):
                m = sub[sub["method"] == method]
                pts = [(s, *mean_with_ci(g[col].to_numpy() * scale)) for s, g in m.groupby("sigma")]
                if not pts:
                    continue
                x, y, lo, hi = map(np.asarray, zip(*pts))
                st = method_style(method, every)
                n = int(m.groupby("sigma")["seed"].nunique().min())
                ax.errorbar(x, y, yerr=[y - lo, hi - y], color=st["color"], linestyle=st["linestyle"],
                            marker="o", capsize=4, label=f"{st['label']} (n={n} seeds)")
            ax.set_title(f"{env}, {nf} comparisons")
            ax.set_xlabel("teacher noise σ")
            ax.set_ylabel(ylabel + " (mean, 95 % CI)")
            ax.set_xticks(sorted(sub["sigma"].unique()))
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    _title(fig, "Reward-model quality on held-out comparisons vs teacher noise")
    return _save(fig, Path(out))
