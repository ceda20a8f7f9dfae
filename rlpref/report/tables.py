"""The report's tables, as markdown (and LaTeX for the return table): per env x sigma (x comparisons) x method.

- ``return_table`` / ``to_markdown`` / ``to_latex``: final and max true return, mean ± sd over seeds.
- ``cell_table``: a cell of the paper's table: IQMs with 95 % CIs, reward-model accuracy, share of the oracle.
- ``against_bt_table``: each learned method against bt (IQM difference, P(improvement), the sign).
- ``oracle_ratio_table``, ``reach_table``, ``cost_table``, ``rm_table``: per-seed oracle shares, feedback
  efficiency, wall seconds, reward-model metrics.
Every table marks resumed runs (†) and footnotes them.
"""

from __future__ import annotations

import math
import re
from typing import Optional

import numpy as np
import pandas as pd

from .plots import _methods

__all__ = ["RESUMED_MARK", "against_bt_table", "cell_table", "cost_table", "oracle_ratio_table", "reach_table", "resumed_note", "return_table", "to_markdown",
           "to_latex"]


def return_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Long summary: one row per (env, sigma, n_feedback, method) with mean/sd/n of final and max return."""
    if runs.empty:
        return pd.DataFrame()
    keys = ["env", "sigma", "n_feedback", "method"]
    g = _with_resumes(runs).groupby(keys, dropna=False)
    out = g.agg(
        n_seeds=("seed", "nunique"),
        final_mean=("final_return", "mean"),
        final_sd=("final_return", "std"),
        max_mean=("max_return", "mean"),
        max_sd=("max_return", "std"),
        n_resumed=("resumed", "sum"),
        resumed_runs=("_resumed_label", lambda s: "; ".join(x for x in s if x)),
    ).reset_index()
    return out


def _with_resumes(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``resumed`` (bool) and ``_resumed_label`` ("run_id (agent from step N)" or ""), also for
    tables built from rows that predate the columns (no run then counts as resumed)."""
    runs = runs.copy()
    if "resumed" not in runs:
        runs["resumed"] = False
    where = runs["resumed_at"] if "resumed_at" in runs else pd.Series("", index=runs.index)
    runs["resumed"] = runs["resumed"].fillna(False).astype(bool)
    runs["_resumed_label"] = [f"{rid} ({at or 'resumed'})" if r else ""
                              for rid, at, r in zip(runs.get("run_id", runs.index.astype(str)), where.fillna(""),
                                                    runs["resumed"])]
    return runs


RESUMED_MARK = "†"


def resumed_note(labels) -> str:
    """The footnote every generated table carries when a run in it resumed: which runs, from where, and how
    they are counted (empty when none did)."""
    labels = sorted({x for x in labels if x})
    if not labels:
        return ""
    return (f"{RESUMED_MARK} resumed: continued from saved state after a kill (its steps count as run, in full; its "
            f"wall adds the earlier processes where they were recorded): " + "; ".join(labels) + ".")


def _digits(x: float) -> int:
    """Decimals a table shows for a number of this magnitude: 0 from 100, 1 from 10, else 2."""
    mag = abs(x)
    return 0 if mag >= 100 else (1 if mag >= 10 else 2)


def _fmt(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "–"
    digits = _digits(mean)
    sd_s = f"{sd:.{digits}f}" if math.isfinite(sd) else "–"
    return f"{mean:.{digits}f} ± {sd_s}"


def _fmt_ci(v: tuple[float, float, float]) -> str:
    """"point [lo, hi]" with the point's decimals (:func:`_digits`)."""
    if not math.isfinite(v[0]):
        return "–"
    digits = _digits(v[0])
    return f"{v[0]:.{digits}f} [{v[1]:.{digits}f}, {v[2]:.{digits}f}]"


def _seed_range(n: pd.Series) -> str:
    """"3", or "2–3" when the rows of a column rest on different seed counts."""
    lo, hi = (int(n.min()), int(n.max())) if len(n) else (0, 0)
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _wide(summary: pd.DataFrame) -> tuple[list[str], list[list[str]], list[list[bool]], list[str], bool]:
    methods = _methods(summary)
    multi_budget = summary.loc[summary["method"] != "oracle", "n_feedback"].nunique() > 1
    row_keys = ["env", "sigma"] + (["n_feedback"] if multi_budget else [])
    oracle = summary[summary["method"] == "oracle"]
    learned = summary[summary["method"] != "oracle"]
    header = ["env", "σ"] + (["comparisons"] if multi_budget else [])
    for measure in ("final", "max"):
        for m in methods:
            header.append(f"{measure} {m} (n={_seed_range(summary.loc[summary['method'] == m, 'n_seeds'])})")
    body, bold = [], []
    # one row per learned-reward setting, plus one per env that has only true-reward runs
    only_oracle = oracle[~oracle["env"].isin(learned["env"])]
    base = pd.concat([learned, only_oracle]) if not learned.empty else summary
    for key, grp in base.groupby(row_keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        cells = [str(key[0]), f"{key[1]:g}"] + ([str(int(key[2]))] if multi_budget else [])
        flags = [False] * len(cells)
        for measure in ("final", "max"):
            means = []
            for m in methods:
                src = oracle[oracle["env"] == key[0]] if m == "oracle" else grp[grp["method"] == m]
                if src.empty:
                    means.append((float("nan"), float("nan"), 0))
                else:
                    means.append((float(src[f"{measure}_mean"].iloc[0]), float(src[f"{measure}_sd"].iloc[0]),
                                  int(src["n_resumed"].iloc[0]) if "n_resumed" in src else 0))
            learned_means = [mu for (mu, _, _), m in zip(means, methods) if m != "oracle" and math.isfinite(mu)]
            best = max(learned_means) if learned_means else None
            for (mu, sd, n_res), m in zip(means, methods):
                cells.append(_fmt(mu, sd) + (f" {RESUMED_MARK}{n_res}" if n_res else ""))
                flags.append(best is not None and m != "oracle" and len(learned_means) > 1 and mu == best)
        body.append(cells)
        bold.append(flags)
    return header, body, bold, methods, multi_budget


def to_markdown(summary: pd.DataFrame, title: Optional[str] = None) -> str:
    if summary.empty:
        return "(no finished runs)\n"
    header, body, bold, _, _ = _wide(summary)
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---"] * (len(header) - 2)) + "|")
    for cells, flags in zip(body, bold):
        lines.append("| " + " | ".join(f"**{c}**" if f else c for c, f in zip(cells, flags)) + " |")
    lines += ["", "Cells: mean ± sd of the true episode return over seeds (n = seeds); final = last evaluation, "
              "max = best evaluation during training; bold = best learned-reward method in the row."
              + (f" {RESUMED_MARK}k: k of the cell's runs resumed." if summary.get("n_resumed", pd.Series()).sum() else "")]
    note = resumed_note("; ".join(summary["resumed_runs"]).split("; ") if "resumed_runs" in summary else [])
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


_TEX_ESC = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def _tex(s: str) -> str:
    s = "".join(_TEX_ESC.get(ch, ch) for ch in s)
    return (s.replace("±", r"$\pm$").replace("σ", r"$\sigma$").replace("–", "--")
            .replace(RESUMED_MARK, r"$^\dagger$"))


def to_latex(summary: pd.DataFrame, caption: str = "True episode return (mean $\\pm$ sd over seeds).",
             label: str = "tab:returns") -> str:
    if summary.empty:
        return "% no finished runs\n"
    header, body, bold, methods, multi_budget = _wide(summary)
    n_key = 3 if multi_budget else 2
    n_m = len(methods)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}", rf"\label{{{label}}}",
             r"\begin{tabular}{" + "l" * n_key + "|" + "r" * n_m + "|" + "r" * n_m + "}", r"\toprule"]
    lines.append(" & " * n_key + rf"\multicolumn{{{n_m}}}{{c|}}{{final return}} & \multicolumn{{{n_m}}}{{c}}{{max return}} \\")
    lines.append(" & ".join(_tex(h.replace("final ", "").replace("max ", "")) for h in header) + r" \\")
    lines.append(r"\midrule")
    for cells, flags in zip(body, bold):
        lines.append(" & ".join(rf"\textbf{{{_tex(c)}}}" if f else _tex(c) for c, f in zip(cells, flags)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    note = resumed_note("; ".join(summary["resumed_runs"]).split("; ") if "resumed_runs" in summary else [])
    if note:  # the same footnote as the markdown table's
        lines.append(r"\par\footnotesize " + _tex(note))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def rm_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Reward-model metrics (mean over seeds) per env x sigma x n_feedback x method."""
    learned = runs[runs["method"] != "oracle"]
    cols = [c for c in ("rm_val_accuracy", "rm_val_loss", "rm_pearson", "rm_spearman", "rm_pdc") if c in learned]
    if learned.empty or not cols:
        return pd.DataFrame()
    return learned.groupby(["env", "sigma", "n_feedback", "method"])[cols].agg(
        lambda x: float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")).reset_index()


def cost_table(runs: pd.DataFrame) -> str:
    """Markdown: per env x comparisons x method, the runs' wall seconds (mean, min–max, over the runs whose
    whole time is known: a resumed run counts its earlier processes when it recorded them) and the query
    selection seconds per online round (– for random queries). A run whose stages came from the cache counts
    the seconds they took to make. What a method costs, next to its return."""
    if runs.empty or "time_total" not in runs:
        return ""
    runs = _with_resumes(runs)
    g = runs.groupby(["env", "n_feedback", "method"], dropna=False)
    lines = ["| env | comparisons | method | runs (timed) | wall s, mean (min–max) | selection s per round |",
             "|---|---|---|---|---|---|"]
    for (env, n_feedback, method), grp in g:
        wall = grp["time_run"].dropna()
        wall_s = f"{wall.mean():.0f} ({wall.min():.0f}–{wall.max():.0f})" if len(wall) else "–"
        sel = grp["select_s_per_round"].dropna()
        sel_s = f"{sel.mean():.2f}" if len(sel) else "–"
        comps = "–" if method == "oracle" else str(int(n_feedback))
        n_res = int(grp["resumed"].sum())
        mark = f" {RESUMED_MARK}{n_res}" if n_res else ""
        lines.append(f"| {env} | {comps} | {method} | {len(grp)}{mark} ({len(wall)}) | {wall_s} | {sel_s} |")
    note = resumed_note(runs["_resumed_label"])
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")


def reach_table(runs: pd.DataFrame) -> str:
    """Markdown: feedback efficiency between learned-reward methods measured at several budgets.

    For each env x sigma and each method R with >= 2 budgets: R's best mean final return over its budgets
    (the target) and, for every method M, the fewest comparisons at which M's mean reaches it ("not
    reached" with M's best otherwise). Means over seeds, so read it next to the figure's intervals.
    """
    learned = _with_resumes(runs[runs["method"] != "oracle"])
    if learned.empty:
        return ""
    means = learned.groupby(["env", "sigma", "method", "n_feedback"])["final_return"].mean()
    resumed = learned.groupby(["env", "sigma", "method", "n_feedback"])["resumed"].sum()
    labels: list[str] = []
    lines = ["| env | σ | target: best mean of | target | method | fewest comparisons reaching it | mean there |",
             "|---|---|---|---|---|---|---|"]
    for (env, sigma), grp in means.groupby(level=["env", "sigma"]):
        per = {m: g.droplevel(["env", "sigma", "method"]).sort_index() for m, g in grp.groupby(level="method")}
        if not any(len(c) > 1 for c in per.values()):
            continue
        for ref, ref_curve in per.items():
            if len(ref_curve) < 2:
                continue
            target, at = float(ref_curve.max()), int(ref_curve.idxmax())
            mark = lambda m, n: f" {RESUMED_MARK}{int(resumed[(env, sigma, m, n)])}" if resumed[(env, sigma, m, n)] else ""  # noqa: E731
            for m, curve in per.items():
                if m == ref:
                    continue
                hit = curve[curve >= target]
                cell = (f"{int(hit.index[0])} | {hit.iloc[0]:.0f}{mark(m, hit.index[0])}" if len(hit)
                        else f"not reached | best {curve.max():.0f}{mark(m, curve.idxmax())} at {int(curve.idxmax())}")
                lines.append(f"| {env} | {sigma:g} | {ref} (at {at}) | {target:.0f}{mark(ref, at)} | {m} | {cell} |")
            labels += list(learned.loc[(learned["env"] == env) & (learned["sigma"] == sigma), "_resumed_label"])
    note = resumed_note(labels)
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "") if len(lines) > 2 else ""


def _oracle_shares(runs: pd.DataFrame) -> dict[tuple, pd.Series]:
    """{(env, sigma, n_feedback, method): final return as % of the same-seed true-reward agent's, per seed}
    (the seed fixes the agent's initialisation and env stream, so the pair shares its luck). Seeds without a
    true-reward run, or whose true-reward return is not positive, are left out; so are cells with none."""
    oracle = runs[runs["method"] == "oracle"].groupby(["env", "seed"])["final_return"].mean()
    out = {}
    for key, grp in runs[runs["method"] != "oracle"].groupby(["env", "sigma", "n_feedback", "method"]):
        per = grp.groupby("seed")["final_return"].mean()
        ref = pd.Series([oracle.get((key[0], seed), np.nan) for seed in per.index], index=per.index)
        ok = np.isfinite(per) & np.isfinite(ref) & (ref > 0)
        if ok.any():
            out[key] = 100.0 * per[ok] / ref[ok]
    return out


def oracle_ratio_table(runs: pd.DataFrame) -> str:
    """Markdown: each learned-reward cell's final return as % of the same-seed true-reward agent's
    (:func:`_oracle_shares`), per env x sigma x comparisons x method: the per-seed values and their mean."""
    runs = _with_resumes(runs)
    shares = _oracle_shares(runs)
    labels: list[str] = []
    lines = ["| env | σ | comparisons | method | % of same-seed true-reward agent, per seed | mean % |",
             "|---|---|---|---|---|---|"]
    for (env, sigma, n_feedback, method), per in shares.items():
        cells = []
        for seed, value in per.items():
            runs_of_seed = runs[(runs["env"] == env) & (runs["seed"] == seed)
                                & (((runs["method"] == method) & (runs["sigma"] == sigma)
                                    & (runs["n_feedback"] == n_feedback)) | (runs["method"] == "oracle"))]
            resumed = bool(runs_of_seed["resumed"].any())  # the learned run(s) or the run they are divided by
            labels += list(runs_of_seed["_resumed_label"]) if resumed else []
            cells.append(f"{value:.0f} (s{int(seed)}{RESUMED_MARK if resumed else ''})")
        lines.append(f"| {env} | {sigma:g} | {int(n_feedback)} | {method} | {' / '.join(cells)} | {per.mean():.0f} |")
    note = resumed_note(labels)
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "") if len(lines) > 2 else ""


def against_bt_table(runs: pd.DataFrame, reps: int = 2000, expect: Optional[dict] = None) -> str:
    """Markdown: per env x sigma x comparisons, each learned method against bt on final true return: both
    IQMs with stratified-bootstrap 95 % CIs, the CI of the IQM difference and the probability of improvement
    (:func:`rlpref.report.stats.compare_methods`), and the sign the data support: "above"/"below" where the
    difference's CI excludes 0, else "inside the spread". A method's bt is the bt run of its own setting: the
    method label with its loss replaced by bt (``rr@online…[x=1]`` against ``bt@online…[x=1]``). Cells with
    fewer than 2 seeds a side are left out. ``expect`` ({(env, σ, method): Expectation}, from
    :func:`rlpref.report.expect.load_expectations`) adds the published direction and whether the runs agree."""
    from .expect import cell_key, verdict
    from .stats import compare_methods, method_stream

    runs = _with_resumes(runs[runs["method"] != "oracle"])
    lines = ["| env | σ | comparisons | method | seeds (method / bt) | IQM method [95 % CI] | IQM bt [95 % CI] | "
             "method − bt [95 % CI] | P(method > bt) [95 % CI] | sign |", "|---|---|---|---|---|---|---|---|---|---|"]
    if expect is not None:
        lines = [lines[0] + " paper | agrees? |", lines[1] + "---|---|"]
    labels: list[str] = []
    shown: set[tuple] = set()
    for (env, sigma, n_feedback), cell in runs.groupby(["env", "sigma", "n_feedback"]):
        for method, grp in cell.groupby("method"):
            base = _bt_label(method, str(grp["loss"].iloc[0]) if "loss" in grp else method)
            bt = cell[cell["method"] == base]
            if base == method or min(len(grp), len(bt)) < 2:
                continue
            x, y = grp["final_return"].to_numpy(float), bt["final_return"].to_numpy(float)
            cmp = compare_methods(x, y, reps=reps, streams=(method_stream(method), method_stream(base)))
            d, p = cmp["difference"], cmp["probability_of_improvement"]
            sign = "above" if d[1] > 0 else "below" if d[2] < 0 else "inside the spread"
            n_res = int(grp["resumed"].sum() + bt["resumed"].sum())
            mark = f" {RESUMED_MARK}{n_res}" if n_res else ""
            labels += list(grp["_resumed_label"]) + list(bt["_resumed_label"])
            lines.append(f"| {env} | {sigma:g} | {int(n_feedback)} | {method} | {len(grp)} / {len(bt)}{mark} | "
                         + " | ".join(_fmt_ci(v) for v in (cmp["iqm_x"], cmp["iqm_y"], d))
                         + f" | {p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}] | {sign} |")
            if expect is not None:
                key = cell_key(env, sigma, method)
                shown.add(key)
                claim = expect.get(key)
                lines[-1] += " – | – |" if claim is None else f" {claim.paper} | {verdict(sign, claim.expected)} |"
    notes = [resumed_note(labels)] + ([_unshown_claims(expect, shown, runs)] if expect else [])
    notes = "".join(f"\n{n}\n" for n in notes if n)
    return "\n".join(lines) + "\n" + notes if len(lines) > 2 else notes.lstrip("\n")


def _bt_label(method: str, loss: str) -> str:
    """The bt method of a method's own setting: its label with the loss replaced (``rr[x=1]`` -> ``bt[x=1]``)."""
    return "bt" + method[len(loss):] if method.startswith(loss) else "bt"


def _unshown_claims(expect: dict, shown: set, runs: pd.DataFrame) -> str:
    """One line naming the published directions that no row above holds, each with why (a cell needs two
    seeds a side), so a claim never vanishes from the table unremarked."""
    missing = []
    for (env, sigma, method), claim in sorted(expect.items()):
        if (env, sigma, method) in shown:
            continue
        cell = runs[(runs["env"] == env) & (runs["sigma"].astype(float).round(6) == sigma)]  # cell_key's rounding
        mine = cell[cell["method"] == method]
        loss = str(mine["loss"].iloc[0]) if len(mine) and "loss" in mine else re.match(r"[^@\[+]*", method).group(0)
        bt = _bt_label(method, loss)
        n_m, n_bt = len(mine), int((cell["method"] == bt).sum())
        why = "no runs yet" if n_m + n_bt == 0 else f"{n_m} / {n_bt} seeds ({method} / {bt}), two a side needed"
        missing.append(f"{env} σ = {sigma:g} {method} ({claim.paper}): {why}")
    return ("Published directions without a row yet: " + "; ".join(missing) + ".") if missing else ""


def cell_table(runs: pd.DataFrame, reps: int = 2000) -> str:
    """Markdown, one row per env x sigma x comparisons x learned method (a cell of the paper's table) and one
    true-reward row per env: seeds; final and max true return as IQM with stratified-bootstrap 95 % CIs; the
    reward model's validation accuracy (mean ± sd over seeds); the agent steps (one number when every run
    trained the same); and the final return as % of the same-seed
    true-reward agent's (per seed, as :func:`oracle_ratio_table`; IQM [95 % CI] over the seeds with one)."""
    from .stats import iqm_interval, method_stream

    if runs.empty:
        return ""
    runs = _with_resumes(runs)
    shares = _oracle_shares(runs)
    lines = ["| env | σ | comparisons | method | seeds | agent steps | final IQM [95 % CI] | max IQM [95 % CI] | "
             "r̂ val accuracy | % of same-seed true-reward agent, IQM [95 % CI] |", "|---|---|---|---|---|---|---|---|---|---|"]
    rank = {m: i for i, m in enumerate(_methods(runs))}
    learned, oracle = runs[runs["method"] != "oracle"], runs[runs["method"] == "oracle"]
    rows = [((env, False, sigma, n, rank[m]), (env, sigma, n, m), grp)
            for (env, sigma, n, m), grp in learned.groupby(["env", "sigma", "n_feedback", "method"])]
    rows += [((env, True, 0, 0, 0), (env, None, None, "oracle"), grp) for env, grp in oracle.groupby("env")]
    for _, (env, sigma, n_feedback, method), grp in sorted(rows, key=lambda r: r[0]):
        n_res = int(grp["resumed"].sum())
        mark = f" {RESUMED_MARK}{n_res}" if n_res else ""
        final, best = (_fmt_ci(iqm_interval(grp[c].to_numpy(float), reps=reps, stream=method_stream(method)))
                       for c in ("final_return", "max_return"))
        if method == "oracle":
            sigma_s, comps, acc, pct = "–", "–", "–", "100"
        else:
            sigma_s, comps = f"{sigma:g}", str(int(n_feedback))
            a = grp["rm_val_accuracy"].dropna() if "rm_val_accuracy" in grp else pd.Series(dtype=float)
            acc = "–" if a.empty else f"{a.mean():.3f}" + (f" ± {a.std():.3f}" if len(a) > 1 else "")
            per_seed = shares.get((env, sigma, n_feedback, method), pd.Series(dtype=float))
            pct = _fmt_ci(iqm_interval(per_seed.to_numpy(float), reps=reps, stream=method_stream(method)))
            if 0 < len(per_seed) < grp["seed"].nunique():
                pct += f" ({len(per_seed)} of {grp['seed'].nunique()} seeds)"
        steps = grp["agent_steps"][grp["agent_steps"] >= 0] if "agent_steps" in grp else pd.Series(dtype=float)
        steps_s = "–" if steps.empty else (f"{int(steps.min()):,}" if steps.min() == steps.max()
                                           else f"{int(steps.min()):,}–{int(steps.max()):,}")
        lines.append(f"| {env} | {sigma_s} | {comps} | {method} | {grp['seed'].nunique()}{mark} | {steps_s} | {final} | "
                     f"{best} | {acc} | {pct} |")
    note = resumed_note(runs["_resumed_label"])
    return "\n".join(lines) + "\n" + (f"\n{note}\n" if note else "")
