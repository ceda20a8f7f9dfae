"""Collect every run under a sweep directory into tidy tables.

A run is any directory holding ``results.json`` (the control track's contract); its ``curve.csv``
(``step,true_return_mean,true_return_std,n_episodes``) gives the learning curve. Directories that
look like runs but have no ``results.json`` (still running, failed, preempted) are listed as
incomplete rather than silently dropped.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from rlpref.artifacts import atomic_path
from rlpref.report.loggers import flatten

__all__ = ["Collection", "collect", "find_run_dirs", "resumed_at", "write_tables", "RUN_KEYS"]

#: Columns that identify a configuration (everything but the seed).
RUN_KEYS = ("env", "loss", "reward", "n_feedback", "sigma", "noise", "strength_source")

_SKIP_DIRS = {".submitit", ".hydra", "wandb", "agent", "report", "__pycache__", ".rlpref_cache"}


@dataclass
class Collection:
    runs: pd.DataFrame  # one row per run
    curves: pd.DataFrame  # long: run_id, step, true_return_mean, true_return_std, n_episodes (+ run keys)
    incomplete: list[Path] = field(default_factory=list)  # run dirs without results.json
    errors: list[str] = field(default_factory=list)
    repeats: list[str] = field(default_factory=list)  # older runs of an experiment run again (left out)


def find_run_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """(dirs with results.json, dirs that look like runs but lack it), sorted."""
    root = Path(root)
    done: list[Path] = []
    incomplete: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        here = Path(dirpath)
        if "results.json" in filenames:
            done.append(here)
            dirnames[:] = []  # a run does not contain runs
        elif ".hydra" in os.listdir(here) or "curve.csv" in filenames or "metrics.csv" in filenames:
            incomplete.append(here)
    return sorted(done), sorted(incomplete)


def _float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def run_wall_seconds(res: dict) -> tuple[float, bool]:
    """Wall seconds a run cost, from its results.json, and whether its stages came from the cache.

    A resumed agent stage adds its earlier processes (nan: not recorded). A run whose stages came from
    the cache took ~0 s itself: it costs what its stages took to make."""
    timings, agent_t = res.get("timings") or {}, res.get("agent_timings") or {}
    wall = _float(timings.get("total", float("nan")))
    if agent_t.get("resumed_at_step") is not None:
        wall += _float(agent_t.get("total_across_resumes")) - _float(agent_t.get("total"))
    stages = sum(_float(v) for k, v in timings.items() if k != "total")
    return (stages, True) if stages > wall + 1.0 else (wall, False)


def resumed_stages(res: dict) -> dict:
    """{stage: step} of a run's stages that continued from saved state after a kill (empty if none).

    Reads the agent stage's ``agent_timings.resumed_at_step`` and, where a run records it,
    ``resumed_stages`` ({stage: step or null}, e.g. the source stage, which logs its resume)."""
    stages = dict(res.get("resumed_stages") or {})
    agent = (res.get("agent_timings") or {}).get("resumed_at_step")
    if agent is not None:
        stages.setdefault("agent", agent)
    return {stage: step for stage, step in stages.items() if step is not None}


def resumed_at(res: dict) -> str:
    """Which stages of a run continued from saved state after a kill, and from which step ("" if none):
    e.g. "agent from step 125000". Such a run's steps count as run (its agent_steps are the whole count,
    earlier processes included) and its wall adds the earlier processes where they were recorded."""
    return ", ".join(f"{stage} from step {int(step)}" for stage, step in sorted(resumed_stages(res).items()))


def _run_row(run_dir: Path, root: Path, res: dict) -> dict:
    rel = run_dir.relative_to(root).as_posix() if run_dir != root else "."
    row: dict[str, Any] = {
        "run_id": rel,
        "run_dir": str(run_dir),
        "env": res.get("env"),
        "loss": res.get("loss"),
        "seed": int(res.get("seed", -1)),
        "reward": res.get("reward", "learned"),
        # The comparisons the run used: offline ones plus what its online rounds labelled (below).
        "n_feedback": int(res["n_feedback"]) if res.get("n_feedback") is not None else -1,
        "sigma": _float(res.get("sigma", 0.0)),
        "noise": res.get("noise") or "",
        "strength_source": res.get("strength_source") or "",
        "algo": res.get("algo") or "",
        "gamma": _float(res.get("gamma")),
        "final_return": _float(res.get("final_return")),
        "max_return": _float(res.get("max_return")),
        "auc": _float(res.get("auc")),
    }
    rm = res.get("reward_model") or {}
    for k in ("val_accuracy", "val_loss", "pearson", "spearman", "pdc"):
        row[f"rm_{k}"] = _float(rm.get(k))
    for k, v in (res.get("timings") or {}).items():
        row[f"time_{k}"] = _float(v)
    row["code_commit"] = (res.get("code") or {}).get("commit") or ""  # "" for runs recorded before it existed
    row["resumed_at"] = resumed_at(res)
    row["resumed"] = bool(row["resumed_at"])
    row["agent_steps"] = int(res["agent_steps"]) if res.get("agent_steps") is not None else -1
    row["time_run"], row["from_cache"] = run_wall_seconds(res)
    rounds = res.get("online_rounds") or []
    row["online_rounds"] = len(rounds)
    # seconds spent choosing queries per round (active query selection; absent before it existed)
    selects = [r["seconds_select"] for r in rounds if r.get("seconds_select") is not None]
    random_queries = ((res.get("config") or {}).get("query") or {}).get("name", "random") == "random"
    row["select_s_per_round"] = float(np.mean(selects)) if selects and not random_queries else float("nan")
    row["n_feedback_offline"] = row["n_feedback"]
    if res.get("n_feedback_total") is not None:
        row["n_feedback"] = int(res["n_feedback_total"])
    else:  # results from before n_feedback_total: count what the rounds logged
        row["n_feedback"] = row["n_feedback_offline"] + sum(int(r.get("n_new_pairs", 0)) for r in rounds)
    row["n_feedback_used"] = row["n_feedback"]
    asked = _protocol_queries(res.get("config") or {})
    if row["reward"] == "oracle":  # the true reward asks for none; the budget it records must not split its seeds
        row["n_feedback"] = row["n_feedback_used"] = row["n_feedback_offline"] = 0
    elif asked is not None:  # protocol=online: a run sits at the comparisons it asked for (used: n_feedback_used)
        row["n_feedback"] = asked
    # "method" is what a plot legend shows: the loss for learned-reward runs, "oracle" otherwise. Runs
    # whose agent's own rollouts were labelled too get
    # "+online<R>x<n>[-schedule][-pairing][-allscale][-gated][-noise<s>][-keeplevel][-refit<k>ep][-replay<r>]",
    # so sweeps never average them with offline runs or with another online setting; any other config
    # value that differs between runs of one method is appended by _tag_variants.
    row["method"] = "oracle" if row["reward"] == "oracle" else str(row["loss"]) + _online_tag(res, len(rounds))
    row["agent_key"] = str(((res.get("artifacts") or {}).get("agent")) or "")
    return row


# Config leaves that name a run rather than an experiment, or that the grouping columns (env, sigma,
# n_feedback) and the method label (loss, reward, the online tag) already carry.
_ONLINE_TAGGED = ("rounds", "n_feedback", "schedule", "pairing", "scale", "refit", "action_noise", "keep_level",
                  "refit_epochs", "refit_replay")
_NOT_A_VARIANT = ("seed", "cache_dir", "video", "torch_threads", "reward", "env.id", "loss.name", "teacher.sigma",
                  "budget.n_feedback", "budget.online_rounds", "budget.online_feedback", "budget.online_schedule",
                  *(f"online.{k}" for k in _ONLINE_TAGGED))
_NOT_A_VARIANT_GROUPS = ("logger.", "render.", "hydra.", "sweep.", "protocol.")


@functools.lru_cache(maxsize=1)
def _default_refit_epochs() -> Optional[int]:
    """The typed iteration config's default: runs at it get no suffix (imported late: the report stays light)."""
    from rlpref.control.config import IterationConfig

    return IterationConfig().refit_epochs


def _protocol_queries(config: dict) -> Optional[int]:
    """The comparisons a ``protocol=online`` run asked for (None for the offline protocol)."""
    protocol = config.get("protocol") or {}
    if protocol.get("name") != "online":
        return None
    budget = config.get("budget") or {}
    return int(protocol.get("n_feedback") or (int(budget.get("n_feedback", 0)) + int(budget.get("online_rounds", 0))
                                              * int(budget.get("online_feedback", 0))))


def _round_settings(config: dict, rounds_run: int) -> tuple[str, dict]:
    """(the label's protocol part, the rounds' knobs) of a run's config, in the layout of its version: the
    rounds and their knobs under ``protocol`` (``protocol=offline_rounds`` or ``online``, with
    ``protocol.iteration``), or, in runs written before that, under ``online.*`` and ``budget.online_*``."""
    protocol = config.get("protocol") or {}
    if "iteration" in protocol:
        knobs = dict(protocol["iteration"])
        if protocol.get("name") == "online":
            return f"@online-protocol{protocol.get('iterations')}-{protocol.get('query_schedule')}", knobs
        return f"+online{protocol.get('rounds')}x{protocol.get('per_round')}", {**knobs, "schedule": protocol.get("timing")}
    online = config.get("online") or {}
    if protocol.get("name") == "online":  # no source stage: the iterations are the protocol's, not online.rounds
        return f"@online-protocol{protocol.get('iterations')}-{protocol.get('schedule')}", {**online, "schedule": "even"}
    planned, per_round = online.get("rounds", rounds_run), online.get("n_feedback")
    return f"+online{planned}" + (f"x{per_round}" if per_round is not None else ""), online


def _online_tag(res: dict, rounds_run: int) -> str:
    """The online knobs of ``_ONLINE_TAGGED`` as a method suffix (keep the two in step)."""
    if not rounds_run:
        return ""
    tag, online = _round_settings(res.get("config") or {}, rounds_run)
    schedule, pairing = online.get("schedule", "even"), online.get("pairing", "within")
    scale = online.get("scale", "all")  # runs from before online.scale judged on every segment's scale
    refit = online.get("refit", "gated")  # runs from before online.refit kept r_θ unless validation improved
    noise = float(online.get("action_noise", 0.0))
    keep_level = bool(online.get("keep_level", False))
    # runs from before online.refit_epochs refitted until early stopping ("-refitallep")
    refit_epochs, replay = online.get("refit_epochs"), online.get("refit_replay")
    return (tag + ("" if schedule == "even" else f"-{schedule}") + ("" if pairing == "within" else f"-{pairing}")
            + ("" if scale == "round" else f"-{scale}scale") + ("" if refit == "trained" else f"-{refit}")
            + (f"-noise{noise:g}" if noise else "") + ("-keeplevel" if keep_level else "")
            + ("" if refit_epochs == _default_refit_epochs() else f"-refit{refit_epochs or 'all'}ep")
            + (f"-replay{replay:g}" if replay is not None else ""))


#: Keys added after results existed, at the value every earlier run effectively had.
_KEYS_ADDED_LATER = {"reward_norm": "return", "query.name": "random"}


def _tag_variants(rows: list[dict], configs: list[dict]) -> None:
    """Append ``[key=value,...]`` to the method of runs that share an env and a method label but differ in
    some other config value (a swept strata, budget, teacher or reward-model knob), so tables and plots
    never average two experiments as one. Only keys that every such run records are compared, so results
    written before a key existed are not split off by its absence."""
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((row["env"], row["method"]), []).append(i)
    for idx in groups.values():
        flats = [{**_KEYS_ADDED_LATER, **flatten(configs[i], sep=".")} for i in idx]
        shared = set.intersection(*(set(f) for f in flats))
        varying = sorted(k for k in shared if k not in _NOT_A_VARIANT and not k.startswith(_NOT_A_VARIANT_GROUPS)
                         and len({repr(f[k]) for f in flats}) > 1)
        if varying:
            for i, flat in zip(idx, flats):
                rows[i]["method"] += "[" + ",".join(f"{_group(k)}={_short(flat[k])}" for k in varying) + "]"


def _group(key: str) -> str:
    """A config group's choice as the user types it on the command line: ``query.name`` -> ``query``."""
    return key[: -len(".name")] if key.endswith(".name") else key


def _short(value: Any) -> str:
    """A config value for a method label: layer widths [256, 256, 256] as 3x256, other lists as 32x64."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return f"{len(value)}x{value[0]}" if len(set(value)) == 1 else "x".join(map(str, value))
    return str(value)


def _drop_repeats(runs: pd.DataFrame, mtimes: dict[str, float]) -> tuple[pd.DataFrame, list[str]]:
    """Keep the newest of runs that share an agent artefact key (the same experiment run again, e.g. after
    the cache was cleared); otherwise a seed would count twice in a mean while n counts it once."""
    keyed = runs["agent_key"] != ""
    order = runs.assign(_mtime=runs["run_id"].map(mtimes)).sort_values("_mtime", kind="stable")
    dup = keyed.loc[order.index] & order.duplicated("agent_key", keep="last")
    dropped = sorted(order.loc[dup, "run_id"])
    return runs.drop(index=order.index[dup]), dropped


def _read_curve(path: Path) -> Optional[pd.DataFrame]:
    if not path.exists():
        return None
    df = pd.read_csv(path)
    missing = {"step", "true_return_mean"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    for c, default in (("true_return_std", np.nan), ("n_episodes", np.nan)):
        if c not in df.columns:
            df[c] = default
    df = df[["step", "true_return_mean", "true_return_std", "n_episodes"]].copy()
    # a resumed run may re-log a step: keep the last value
    return df.drop_duplicates("step", keep="last").sort_values("step")


def collect(root: Path) -> Collection:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory {root} does not exist")
    done, incomplete = find_run_dirs(root)
    rows, configs, curves, errors, mtimes = [], [], [], [], {}
    for run_dir in done:
        try:
            res = json.loads((run_dir / "results.json").read_text())
            row = _run_row(run_dir, root, res)
            curve = _read_curve(run_dir / "curve.csv")
            mtimes[row["run_id"]] = (run_dir / "results.json").stat().st_mtime
        except (ValueError, KeyError, OSError) as exc:
            errors.append(f"{run_dir}: {exc}")
            continue
        rows.append(row)
        configs.append(res.get("config") or {})
        if curve is not None and len(curve):
            curve.insert(0, "run_id", row["run_id"])
            curves.append(curve)
    _tag_variants(rows, configs)
    runs = pd.DataFrame(rows)
    repeats: list[str] = []
    if len(runs):
        runs, repeats = _drop_repeats(runs, mtimes)
        left_out = set(repeats)
        curves = [c for c in curves if c["run_id"].iat[0] not in left_out]
        runs = runs.sort_values(["env", "method", "sigma", "n_feedback", "seed", "run_id"], kind="stable")
        runs = runs.reset_index(drop=True)
    if curves:
        curve_df = pd.concat(curves, ignore_index=True)
        keys = ["run_id", "env", "method", "loss", "reward", "n_feedback", "sigma", "seed"]
        curve_df = curve_df.merge(runs[keys], on="run_id", how="left")
    else:
        curve_df = pd.DataFrame(
            columns=["run_id", "step", "true_return_mean", "true_return_std", "n_episodes", "env", "method",
                     "loss", "reward", "n_feedback", "sigma", "seed"]
        )
    for e in errors:
        warnings.warn(f"skipped unreadable run {e}", stacklevel=2)
    return Collection(runs=runs, curves=curve_df, incomplete=incomplete, errors=errors, repeats=repeats)


def write_tables(col: Collection, out_dir: Path) -> dict[str, Path]:
    """runs.csv/.parquet and curves.csv/.parquet in out_dir (atomic writes)."""
    out_dir = Path(out_dir)
    paths = {}
    for name, df in (("runs", col.runs), ("curves", col.curves)):
        csv_p, pq_p = out_dir / f"{name}.csv", out_dir / f"{name}.parquet"
        with atomic_path(csv_p) as tmp:
            df.to_csv(tmp, index=False)
        with atomic_path(pq_p) as tmp:
            df.to_parquet(tmp, index=False)
        paths[f"{name}_csv"], paths[f"{name}_parquet"] = csv_p, pq_p
    return paths
