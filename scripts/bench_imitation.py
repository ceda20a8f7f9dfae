"""imitation's PreferenceComparisons at rlpref's budget, one folder per run, as a resumable batch.

    python scripts/bench_imitation.py --seeds 0-9                          # row (a): deterministic teacher
    python scripts/bench_imitation.py --seeds 0-4 --teacher boltzmann      # row (b): imitation's Boltzmann gatherer
    python scripts/bench_imitation.py --table                              # rewrite table.md from the folders
    python scripts/bench_imitation.py --add-rlpref-runs RUN_DIR ...        # file finished rlpref runs beside them

Each run is one child process on one thread (``oncore`` gives it a core), set up as
:mod:`rlpref.interop.imitation_bench` documents (imitation's documented setup; what rlpref fixes to match
its own side is listed there). Its folder ``<out>/runs/<env>-imitation-<teacher>-c<comparisons>-seed<s>/``
holds ``run.log`` (the child's output), ``curve.csv`` (true return at rlpref's evaluation points) and,
written last and atomically, ``results.json`` (``agent_steps`` as the agent counted them, ``env_steps``
with the feedback rollouts, ``n_feedback_total``, ``wall_s``, ``final_return``, the curve, the command).

Resumable: a run whose ``results.json`` exists is skipped, so rerunning a killed batch continues at the
first unfinished run. An unfinished run restarts from its beginning (imitation's loop keeps no state that
could be saved without pickling); the killed attempt's log is kept as ``run.killed-<n>.log`` and
``results.json`` counts it in ``restarts``. imitation is optional (``pip install --no-deps imitation==1.0.1``);
only this script and :mod:`rlpref.interop` need it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: rlpref and envs import from the checkout

from rlpref.artifacts import atomic_write_json, atomic_write_text  # noqa: E402
from rlpref.control.records import curve_csv  # noqa: E402

OUT = ROOT / "docs" / "results" / "imitation_bench"


def parse_seeds(text: list[str]) -> list[int]:
    """``0-9``, ``0 1 2`` or ``0-4 7``: the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in text:
        lo, _, hi = part.partition("-")
        for s in range(int(lo), int(hi or lo) + 1):
            if s not in seeds:
                seeds.append(s)
    return seeds


def run_name(env: str, teacher: str, comparisons: int, seed: int) -> str:
    return f"{env}-imitation-{teacher}-c{comparisons}-seed{seed}"


def _machine() -> dict:
    """Where a wall time was measured: a number means little without the machine and its load (what ran
    beside it is not visible from here; the 1-minute load average is)."""
    return {"host_cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch_threads": 1, "loadavg_1min": round(os.getloadavg()[0], 2)}


def run_one(args: argparse.Namespace, seed: int) -> Path:
    """One imitation run in a child process; its folder gets the log as it runs and results.json at the end."""
    run_dir = args.out / "runs" / run_name(args.env, args.teacher, args.comparisons, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    restarts = len(list(run_dir.glob("run.killed-*.log")))
    if (run_dir / "run.log").exists():  # a killed attempt: keep its log, start again
        restarts += 1
        (run_dir / "run.log").rename(run_dir / f"run.killed-{restarts}.log")
    child = [sys.executable, str(Path(__file__).resolve()), "--child", "--env", args.env, "--seeds", str(seed),
             "--teacher", args.teacher, "--steps", str(args.steps), "--comparisons", str(args.comparisons),
             "--episodes", str(args.episodes), "--eval-every", str(args.eval_every), "--result", str(run_dir / "child.json")]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = _machine()
    t0 = time.perf_counter()
    with open(run_dir / "run.log", "w") as log:
        log.write(f"# {' '.join(child)}\n# started {started}\n")
        log.flush()
        proc = subprocess.run(child, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: the child failed (exit {proc.returncode}); see {run_dir / 'run.log'}")
    res = json.loads((run_dir / "child.json").read_text())
    res.update(wall_s=round(wall, 1), started_utc=started, restarts=restarts, machine=machine | {"loadavg_1min_end": round(os.getloadavg()[0], 2)},
               command=" ".join(["python", "scripts/bench_imitation.py", *sys.argv[1:]]))
    atomic_write_text(run_dir / "curve.csv", curve_csv(res["curve"]))
    atomic_write_json(run_dir / "results.json", res)
    (run_dir / "child.json").unlink()
    return run_dir


def child(args: argparse.Namespace) -> int:
    from rlpref.interop.imitation_bench import imitation_run

    res = imitation_run(args.env, args.seeds[0], teacher=args.teacher, steps=args.steps, comparisons=args.comparisons,
                        eval_every=args.eval_every, episodes=args.episodes)
    atomic_write_json(args.result, res)
    print(f"agent_steps {res['agent_steps']} env_steps {res['env_steps']} comparisons {res['n_feedback_total']} "
          f"final_return {res['final_return']:.1f}", flush=True)
    return 0


def add_rlpref_run(run_dir: Path, args: argparse.Namespace) -> Path:
    """File a finished ``python -m rlpref.run`` folder beside imitation's runs (results.json, curve.csv, logs;
    no weights), under the row ``--teacher`` names; refuses a run of another env or comparison budget."""
    res = json.loads((run_dir / "results.json").read_text())
    got = (res["env"], int(res.get("n_feedback_total") or -1))
    if got != (args.env, args.comparisons):
        raise SystemExit(f"{run_dir}: env and comparisons are {got}, not {(args.env, args.comparisons)}")
    dest = args.out / "runs" / f"{args.env}-rlpref-{res['loss']}-{args.teacher}-c{args.comparisons}-seed{res['seed']}"
    dest.mkdir(parents=True, exist_ok=True)
    for f in [run_dir / "results.json", run_dir / "curve.csv", *sorted(run_dir.glob("*.log"))]:
        if f.is_file():
            shutil.copyfile(f, dest / f.name)
    atomic_write_json(dest / "source.json", {"copied_from": str(run_dir), "row": args.teacher})
    return dest


def _row(res: dict) -> dict:
    """One run's table fields, from either tool's results.json; a resumed or restarted run is flagged."""
    if res.get("tool") == "imitation":
        tool, wall, flag = "imitation", res["wall_s"], ("restarted" if res.get("restarts") else "")
    else:
        tool = f"rlpref {res.get('protocol', '')} {res['loss']}{_variant(res.get('config') or {})}".replace("  ", " ")
        from rlpref.report.collect import run_wall_seconds

        wall = run_wall_seconds(res)[0]  # the report's rule: a resume adds its earlier processes where recorded
        flag = "resumed" if (res.get("agent_timings") or {}).get("resumed_at_step") is not None else ""
    env_steps = res.get("env_steps")
    if env_steps is None and tool != "imitation":
        env_steps = _online_env_steps(res)
    budget = ((res.get("config") or {}).get("budget") or {}).get("n_feedback")  # asked; labelled may be fewer
    return {"tool": tool, "seed": int(res["seed"]), "final": float(res["final_return"]), "agent": res.get("agent_steps"),
            "env": env_steps, "n": res.get("n_feedback_total"), "budget": int(budget or res.get("n_feedback_total") or 0),
            "wall": float(wall), "flag": flag}


def _variant(cfg: dict) -> str:
    """What sets an rlpref run apart from the default reward model and query rule (the default candidates)."""
    k = int((cfg.get("reward_model") or {}).get("ensemble", 1))
    query = (cfg.get("query") or {}).get("name", "random")
    return (f" ensemble={k}" if k > 1 else "") + (f" query={query}" if query != "random" else "")


def _online_env_steps(res: dict) -> Optional[int]:
    """env_steps of an online rlpref run recorded before results.json carried it: the agent's steps plus each
    feedback rollout's, recomputed by the rule the rollouts use (``rollout_env_steps``) from the comparisons
    each iteration asked (the run's own query schedule); None for other protocols."""
    cfg = res.get("config") or {}
    if res.get("protocol") != "online" or "segments" not in cfg:
        return None
    from rlpref.control.config import OnlineConfig
    from rlpref.control.segments import rollout_env_steps, rollout_plan

    seg, proto = cfg["segments"], cfg["protocol"]
    asked = OnlineConfig(iterations=proto["iterations"], initial_fraction=proto["initial_fraction"],
                         query_schedule=proto["query_schedule"]).counts(cfg["budget"]["n_feedback"])
    n_envs = proto["iteration"]["n_envs"]
    return int(res["agent_steps"]) + sum(
        rollout_env_steps(rollout_plan(n, 1, seg["length"], seg["oversample"])[0], n_envs, seg["length"]) for n in asked)


def _teacher_row(run_dir: Path, res: dict) -> str:
    """Which row a run belongs to: imitation's own record, a filed rlpref run's source.json, or the folder
    name (``<env>-rlpref-<loss>-<row>-c<comparisons>-seed<s>``, as rlpref's side of the bench names them)."""
    if res.get("teacher"):
        return str(res["teacher"])
    if (run_dir / "source.json").is_file():
        return json.loads((run_dir / "source.json").read_text())["row"]
    return next((row for row in ("deterministic", "boltzmann") if f"-{row}-" in run_dir.name), "?")


def write_table(out: Path) -> str:
    """table.md: per tool and row, every seed's final true return with its steps, comparisons and wall."""
    from rlpref.report.stats import iqm

    groups: dict[tuple, list[dict]] = {}
    for path in sorted((out / "runs").glob("*/results.json")):
        if path.parent.name.startswith("."):  # a run still being made (moved into place when done)
            continue
        res = json.loads(path.read_text())
        row = _row(res)  # grouped by the comparisons asked (a near-tie teacher can label fewer on some seeds)
        groups.setdefault((res["env"], _teacher_row(path.parent, res), row["tool"], row["budget"]), []).append(row)
    lines = ["| env | teacher row | tool | seeds | final true return mean ± sd | IQM | per seed (final) | agent steps | "
             "env steps (mean) | comparisons | wall (mean) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (env, row, tool, _), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["seed"])
        ret = np.array([r["final"] for r in rs])
        sd = f"{ret.std(ddof=1):.0f}" if len(ret) > 1 else "–"
        per = ", ".join(f"{r['seed']}: {r['final']:.0f}{' (' + r['flag'] + ')' if r['flag'] else ''}" for r in rs)
        agent = "/".join(sorted({str(r["agent"]) for r in rs}))
        envs = [r["env"] for r in rs if r["env"] is not None]
        env_steps = f"{np.mean(envs):.0f}" if envs else "not recorded"
        comps = "/".join(sorted({str(r["n"]) for r in rs}))
        lines.append(f"| {env} | {row} | {tool} | {len(rs)} | {ret.mean():.0f} ± {sd} | {iqm(ret):.0f} | {per} | {agent} | "
                     f"{env_steps} | {comps} | {np.mean([r['wall'] for r in rs]) / 60:.1f} min |")
    lines += ["", "sd is the sample sd; IQM the interquartile mean. `restarted`: the run was killed and rerun from "
              "its start (imitation keeps no resumable state); `resumed`: an rlpref run continued from saved "
              "state (its steps count as run; its wall adds the earlier processes where they were recorded).", "",
              "Against imitation:", "", *_comparisons(groups, "imitation"), "",
              f"Against rlpref's default (`{DEFAULT_TOOL}`: one reward net, random queries):", "",
              *_comparisons(groups, DEFAULT_TOOL), "", COMPARISON_NOTE, "", *_per_run(groups)]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", "Generated by `python scripts/bench_imitation.py --table` from "
                      "`runs/*/results.json`.\n\n" + text)
    return text


DEFAULT_TOOL = "rlpref online rr"  # rlpref's default reward model and query rule, as _row names it


def _comparisons(groups: dict[tuple, list[dict]], base_tool: str) -> list[str]:
    """Markdown lines: every other setting against ``base_tool`` (at its largest comparison budget) in the same
    env and teacher row: IQMs with stratified-bootstrap 95 % CIs, the CI of the IQM difference and ratio, the
    probability of improvement (rliable's estimators, :mod:`rlpref.report.stats`) and the wall-time ratio."""
    from rlpref.report.stats import compare_methods, method_stream

    lines = [f"| env | teacher row | setting | comparisons | seeds (setting / {base_tool}) | IQM setting [95 % CI] | "
             f"IQM {base_tool} [95 % CI] | IQM difference [95 % CI] | IQM ratio [95 % CI] | P(setting > {base_tool}) "
             "[95 % CI] | wall ratio (means / medians) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    base: dict[tuple, tuple[int, list[dict]]] = {}  # (env, row) -> the baseline at its largest comparison budget
    for (env, row, tool, n), rs in groups.items():
        if tool == base_tool and n > base.get((env, row), (-1, []))[0]:
            base[(env, row)] = (n, rs)
    for (env, row, tool, n), rs in sorted(groups.items()):
        n_ref, ref = base.get((env, row), (None, None))
        if tool == "imitation" or (tool == base_tool and n == n_ref) or ref is None or min(len(rs), len(ref)) < 2:
            continue
        # one bootstrap stream per (setting, budget): its CI is the same in every row that shows it
        cmp = compare_methods(np.array([r["final"] for r in rs]), np.array([r["final"] for r in ref]),
                              streams=(method_stream(f"{tool}@{n}"), method_stream(f"{base_tool}@{n_ref}")))
        fmt = [f"{v[0]:.0f} [{v[1]:.0f}, {v[2]:.0f}]" for v in (cmp["iqm_x"], cmp["iqm_y"], cmp["difference"])]
        ratio, poi = cmp["ratio"], cmp["probability_of_improvement"]
        ratio_s = f"{ratio[0]:.2f} [{ratio[1]:.2f}, {ratio[2]:.2f}]" if np.isfinite(ratio[0]) else "–"
        walls = [np.array([r["wall"] for r in side]) for side in (rs, ref)]
        wall = (f"{np.nanmean(walls[0]) / np.nanmean(walls[1]):.2f} / {np.nanmedian(walls[0]) / np.nanmedian(walls[1]):.2f}"
                if all(np.isfinite(w).any() for w in walls) else "–")  # a resumed run whose earlier wall is unknown: left out
        lines.append(f"| {env} | {row} | {tool} | {n} vs {n_ref} | {len(rs)} / {len(ref)} | {' | '.join(fmt)} | "
                     f"{ratio_s} | {poi[0]:.2f} [{poi[1]:.2f}, {poi[2]:.2f}] | {wall} |")
    return lines if len(lines) > 2 else ["(no setting with >= 2 seeds a side yet)"]


COMPARISON_NOTE = (
    "Final true return; every CI is a percentile bootstrap that resamples each side's seeds (2000 samples; "
    "rliable's estimators, `rlpref.report.stats.compare_methods`). P(setting > baseline): the probability that a "
    "run of the setting ends above a run of the baseline (ties ½). Wall ratio: wall per run, setting over "
    "baseline (ratio of the means, of the medians), all measured on this machine with another single-thread run "
    "beside each (`machine` in imitation's results.json has the load average).")


def _per_run(groups: dict[tuple, list[dict]]) -> list[str]:
    """Markdown lines: one row per run, with what it measured (the issue's per-run record)."""
    lines = ["| env | teacher row | tool | seed | final true return | agent steps | env steps | comparisons | wall s | |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (env, row, tool, _), rs in sorted(groups.items()):
        for r in sorted(rs, key=lambda r: r["seed"]):
            env_steps = r["env"] if r["env"] is not None else "not recorded"
            lines.append(f"| {env} | {row} | {tool} | {r['seed']} | {r['final']:.0f} | {r['agent']} | {env_steps} | "
                         f"{r['n']} | {r['wall']:.0f} | {r['flag']} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="HalfCheetah-v4")
    ap.add_argument("--seeds", nargs="+", default=["0-9"], help="e.g. 0-9, or 0 1 2")
    ap.add_argument("--teacher", choices=("deterministic", "boltzmann"), default="deterministic",
                    help="deterministic: row (a), against rlpref sigma=0; boltzmann: row (b), against teacher=boltzmann")
    ap.add_argument("--steps", type=int, default=250_000, help="rlpref's budget.agent_steps; both sides run "
                    "ceil(steps / rollout) PPO rollouts (250,368 agent steps at 250,000)")
    ap.add_argument("--comparisons", type=int, default=1540)
    ap.add_argument("--episodes", type=int, default=5, help="evaluation episodes per point (rlpref's budget.eval_episodes)")
    ap.add_argument("--eval-every", type=int, default=25_000, help="rlpref's budget.eval_every")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--table", action="store_true", help="only rewrite table.md from the run folders")
    ap.add_argument("--results-md", type=Path, default=None, help="also write the tables into this markdown file "
                    "as the generated section --section (rlpref.report.sections)")
    ap.add_argument("--section", default="imitation_bench")
    ap.add_argument("--add-rlpref-runs", type=Path, nargs="+", default=None, metavar="RUN_DIR")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # internal: one run
    ap.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.seeds = parse_seeds(args.seeds)
    if args.child:
        return child(args)
    if args.add_rlpref_runs:
        for run_dir in args.add_rlpref_runs:
            print(f"filed {add_rlpref_run(run_dir, args)}")
    elif not args.table:
        for seed in args.seeds:
            run_dir = args.out / "runs" / run_name(args.env, args.teacher, args.comparisons, seed)
            if (run_dir / "results.json").is_file():
                print(f"seed {seed}: done before ({run_dir}), skipped", flush=True)
                continue
            res = json.loads((run_one(args, seed) / "results.json").read_text())
            print(f"seed {seed}: final true return {res['final_return']:.1f}, agent steps {res['agent_steps']}, env steps "
                  f"{res['env_steps']}, comparisons {res['n_feedback_total']}, {res['wall_s']} s", flush=True)
    text = write_table(args.out)
    print(text)
    if args.results_md is not None:
        from rlpref.report.sections import write_section

        write_section(args.results_md, args.section, text, "python scripts/bench_imitation.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
