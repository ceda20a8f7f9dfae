"""rlpref against imitation's PreferenceComparisons at the same agent steps and comparisons.

    python scripts/bench_imitation.py --seeds 0 1 2                       # HalfCheetah-v4, default budget
    python scripts/bench_imitation.py --add-rlpref-runs RUN_DIR ...       # rlpref runs made elsewhere, same budget
    python scripts/bench_imitation.py --env Swimmer-v5 --steps 250000 --comparisons 1540 \\
        --rlpref "protocol=online loss=rr" --rlpref "protocol=online loss=bt"

Each (tool, seed) runs in its own process on one thread, so wall times compare. imitation's side is its
documented setup: a state-only ``BasicRewardNet`` (32 x 32) with running input normalisation wrapped in
a ``NormalizedRewardNet`` (running output normalisation), the cross-entropy (Bradley–Terry) loss, a
Boltzmann ``SyntheticGatherer``, the hyperbolic query schedule, 10 iterations, 10 % of the comparisons
up front, 50-step fragments, and rlpref's tuned PPO hyperparameters for the env (obs normalised by
VecNormalize as rlpref does). Both final agents are scored the same way: ``--episodes`` deterministic
episodes of the true reward (``rlpref.control.evaluation.evaluate_policy_true``).

Rows are appended to ``<out>/runs.csv`` (a rerun skips rows that exist) and ``<out>/table.md`` is
rewritten: mean ± sd of the final true return and wall time per tool. imitation is optional
(``pip install --no-deps imitation==1.0.1``); only this script needs it.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rlpref.artifacts import append_csv_row, atomic_write_text
from rlpref.report.collect import run_wall_seconds

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["env", "tool", "seed", "steps", "comparisons", "final_return", "wall_s", "command"]


def imitation_run(env_id: str, seed: int, steps: int, comparisons: int, episodes: int) -> dict:
    """One imitation PreferenceComparisons run; returns its final true return."""
    import torch
    from hydra import compose, initialize_config_dir
    from imitation.algorithms import preference_comparisons as pc
    from imitation.rewards.reward_nets import BasicRewardNet, NormalizedRewardNet
    from imitation.util.networks import RunningNorm
    from omegaconf import OmegaConf
    from stable_baselines3.common.vec_env import VecNormalize

    from rlpref.control.algos import build_model, hyperparams, make_train_env, obs_norm_of
    from rlpref.control.evaluation import evaluate_policy_true
    from rlpref.control.policies import sb3_policy
    from rlpref.runtime import pin_threads

    pin_threads(1)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        env_cfg = OmegaConf.to_container(compose("config", overrides=[f"env={env_id}"]), resolve=True)["env"]
    hp = hyperparams(env_cfg, "ppo")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    venv = make_train_env(env_cfg, seed, norm_obs=bool(env_cfg["normalize"]["obs"]), norm_reward=False,
                          gamma=float(hp.get("gamma", 0.99)))
    net = NormalizedRewardNet(BasicRewardNet(venv.observation_space, venv.action_space, use_action=False,
                                             hid_sizes=(32, 32), normalize_input_layer=RunningNorm), RunningNorm)
    agent = build_model("ppo", venv, hp, seed)
    trainer = pc.BasicRewardTrainer(pc.PreferenceModel(net), pc.CrossEntropyRewardLoss(), rng=rng, epochs=3)
    loop = pc.PreferenceComparisons(
        pc.AgentTrainer(agent, net, venv, rng=rng, exploration_frac=0.0), net, num_iterations=10,
        fragmenter=pc.RandomFragmenter(rng=rng, warning_threshold=0),
        preference_gatherer=pc.SyntheticGatherer(rng=rng), reward_trainer=trainer, fragment_length=50,
        transition_oversampling=1, initial_comparison_frac=0.1, query_schedule="hyperbolic")
    loop.train(total_timesteps=steps, total_comparisons=comparisons)
    norm = obs_norm_of(venv) if isinstance(venv, VecNormalize) else None
    returns = evaluate_policy_true(sb3_policy(agent), env_cfg, episodes, seed + 100, norm)
    return {"final_return": float(returns.mean()), "agent_steps": int(agent.num_timesteps)}


def rlpref_run(env_id: str, seed: int, steps: int, comparisons: int, overrides: str, out: Path) -> dict:
    run_dir = out / "runs" / f"{env_id}-{overrides.replace(' ', '_').replace('=', '')}-seed{seed}"
    cmd = [sys.executable, "-m", "rlpref.run", f"env={env_id}", f"seed={seed}", f"budget.agent_steps={steps}",
           f"budget.n_feedback={comparisons}" if "protocol=offline" in overrides else f"protocol.n_feedback={comparisons}",
           *overrides.split(), f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((run_dir / "results.json").read_text())


def add_rlpref_run(run_dir: Path, env_id: str, steps: int, comparisons: int, rows_csv: Path) -> None:
    """One finished rlpref run as a table row, labelled as this script labels its own rlpref runs (their
    overrides, e.g. ``protocol=online loss=rr``), so the two never split one experiment; refuses a run of
    another budget. Its wall time counts the processes before a resume and cached stages' making."""
    res = json.loads((Path(run_dir) / "results.json").read_text())
    cfg = res["config"]
    got = (res["env"], int(cfg["budget"]["agent_steps"]), int(res.get("n_feedback_total") or -1))
    if got != (env_id, steps, comparisons):
        raise SystemExit(f"{run_dir}: env, agent steps and comparisons are {got}, not {(env_id, steps, comparisons)}")
    protocol = cfg.get("protocol", {}).get("name", "offline")
    tool = f"protocol={protocol} loss={res['loss']}"
    if (env_id, tool, str(res["seed"]), str(steps), str(comparisons)) in _done(rows_csv):
        return  # already in the table
    wall, _ = run_wall_seconds(res)  # the report's rule: earlier processes of a resume, cached stages
    row = dict(zip(FIELDS, [env_id, tool, res["seed"], steps, comparisons, res["final_return"], round(float(wall), 1),
                            f"python -m rlpref.run (results of {Path(run_dir).name})"]))
    append_csv_row(rows_csv, FIELDS, row)


def _done(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    with open(path) as f:
        return {(r["env"], r["tool"], r["seed"], r["steps"], r["comparisons"]) for r in csv.DictReader(f)}


def write_table(rows_csv: Path, table: Path) -> None:
    with open(rows_csv) as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["env"], r["tool"], r["steps"], r["comparisons"]), []).append(r)
    lines = ["| env | tool | agent steps | comparisons | seeds | final true return (mean ± sd) | per seed | wall (mean) |",
             "|---|---|---|---|---|---|---|---|"]
    for (env, tool, steps, comps), rs in sorted(groups.items()):
        ret = np.array([float(r["final_return"]) for r in rs])
        per = ", ".join(f"{float(r['final_return']):.0f}" for r in sorted(rs, key=lambda r: int(r["seed"])))
        wall = np.mean([float(r["wall_s"]) for r in rs]) / 60
        sd = ret.std(ddof=1) if len(ret) > 1 else float("nan")
        lines.append(f"| {env} | {tool} | {steps} | {comps} | {len(rs)} | {ret.mean():.0f} ± {sd:.0f} | "
                     f"{per} | {wall:.1f} min |")
    lines.append("")
    lines.append("final true return: mean ± sd over seeds (sample sd, as in `python -m rlpref.report`).")
    atomic_write_text(table, "\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="HalfCheetah-v4")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=250_000)
    ap.add_argument("--comparisons", type=int, default=1540)
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--rlpref", action="append", default=None, help="overrides of one rlpref variant (repeatable)")
    ap.add_argument("--skip-imitation", action="store_true")
    ap.add_argument("--skip-rlpref", action="store_true", help="imitation's runs only (rlpref's run elsewhere)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "imitation_bench")
    ap.add_argument("--add-rlpref-runs", type=Path, nargs="+", default=None, metavar="RUN_DIR",
                    help="add finished `python -m rlpref.run` folders (results.json) as rlpref rows, e.g. runs made "
                         "by a sweep; each must match --env, --steps and --comparisons")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one imitation run
    args = ap.parse_args()
    if args.child:
        print(json.dumps(imitation_run(args.env, args.seeds[0], args.steps, args.comparisons, args.episodes)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    rows_csv = args.out / "runs.csv"
    if args.add_rlpref_runs:
        for run_dir in args.add_rlpref_runs:
            add_rlpref_run(run_dir, args.env, args.steps, args.comparisons, rows_csv)
        write_table(rows_csv, args.out / "table.md")
        print((args.out / "table.md").read_text())
        return 0
    done = _done(rows_csv)
    variants = ([] if args.skip_imitation else ["imitation"]) + (
        [] if args.skip_rlpref else (args.rlpref or ["protocol=online loss=rr"]))
    for seed in args.seeds:
        for tool in variants:
            key = (args.env, tool, str(seed), str(args.steps), str(args.comparisons))
            if key in done:
                continue
            t0 = time.perf_counter()
            if tool == "imitation":
                cmd = [sys.executable, __file__, "--child", "1", "--env", args.env, "--seeds", str(seed),
                       "--steps", str(args.steps), "--comparisons", str(args.comparisons), "--episodes", str(args.episodes)]
                res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            else:
                res = rlpref_run(args.env, seed, args.steps, args.comparisons, tool, args.out)
            row = dict(zip(FIELDS, [args.env, tool, seed, args.steps, args.comparisons, res["final_return"],
                                    round(time.perf_counter() - t0, 1), " ".join(sys.argv)]))
            append_csv_row(rows_csv, FIELDS, row)
            print(f"{tool} seed {seed}: final true return {res['final_return']:.1f} in {row['wall_s']} s", flush=True)
    write_table(rows_csv, args.out / "table.md")
    print((args.out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
