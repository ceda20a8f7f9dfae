"""What the paper's whole control matrix costs as one SLURM array: core-hours and wall time (issue 38 item 4).

    python scripts/slurm_paper_cost.py [--cores 64] [--reward-fit whole|max64|SECONDS] [--runs DIR ...]

Inputs (docs/results.md, "The paper's table as one SLURM array", says where each comes from):
- the stage times of one ``budget=paper`` run, HalfCheetah-v4 (README, docs/results/timings.csv, e74fe65:
  source 1582 s, segments 19 s, reward model 733 s, agent 1632 s; one core, another job on the second);
- the reward fit at 5000 comparisons per loss, one-core CPU seconds on HalfCheetah-v5 feedback (docs/results.md,
  "Reward-model fit at 5000 comparisons"): whole strata (today's default) or max_stratum=64 (+reward_fit=paper);
- per env, a factor: its true-reward agent stage at the default budget (median over the committed runs of
  docs/results/suite*/runs) over HalfCheetah-v4's (docs/results/profile_before and the suite's oracles),
  which scales the PPO stages (source, agent); merge-v0's segments are set apart (its env steps are slow).

``--runs DIR`` (repeatable; e.g. docs/results/paper_sigma25/runs, the item-2 array's finished runs) replaces
the estimates by measured stage times where runs exist: per env the median over runs of ``timings`` in
``results.json`` for the source and segments stages (only runs that built them, not reused them from the
cache; stages resumed after a kill are left out), the learned-reward agent stage (likewise), the true-reward agent and, per (env, loss), the reward fit (over
every σ measured; σ = 0 fits run longer, so with only some σ measured this is an estimate for the others).

The ``item2`` matrix is the table issue 38's array ran (docs/results/paper_sigma25/rows.txt), rows appended
later included (Walker2d-v5 ``reward_norm=step``: each shares its cell's reward model, trains its own agent;
an appended row's other overrides key the stage they first change, :data:`VARIANT_STAGE`).

Stages shared in the cache are counted once: per (env, seed) one source and one segments stage; per
(env, seed, σ) one feedback stage (the teacher's noise keys it); per (env, seed, σ, loss) a reward model
and an agent; per (env, seed) one true-reward agent. The array's wall time comes from list scheduling the
rows in the order ``python -m rlpref.sweep paper`` prints them on ``cores`` slots, a task that needs a
shared stage another task is building waiting on its lock (holding its slot) as the real tasks do.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import statistics
from pathlib import Path

from rlpref.sweep import lead_rows

HC_V4_PAPER = {"source": 1582.0, "segments": 19.0, "reward_model": 733.0, "agent": 1632.0}
HC_V4_DEFAULT_ORACLE = 402.0  # s, median agent stage of the 3 HalfCheetah-v4 true-reward runs at the default budget
DEFAULT_ORACLE = {"HalfCheetah-v5": 294.0, "Walker2d-v5": 629.0, "Swimmer-v5": 62.0, "merge-v0": 431.0}
#: one-core CPU seconds of a reward fit at 5000 comparisons, whole strata (today's default), mean of the 3 seeds
#: with CPU time recorded in docs/results.md "Reward-model fit at 5000 comparisons": bt 235/147/145, rr 473/512
FIT_WHOLE_STRATA = {"bt": 176.0, "rr": 493.0}
FIT_MAX_STRATUM_64 = {"bt": 94.0, "rr": 168.0}  # the same with +reward_fit=paper: bt 117/56/109, rr 116/220
MERGE_SEGMENTS = 2900.0  # s, estimate: 750k env steps (5000 pairs x 2 x 1.5 clips x 50 steps) at ~260 steps/s
ENVS, SIGMAS, LOSSES, SEEDS = list(DEFAULT_ORACLE), (0, 0.1, 0.25, 0.5), ("bt", "rr"), range(5)


def stage_seconds(env: str, reward_fit: dict[str, float], measured: dict | None = None) -> dict[str, float]:
    """One core's seconds per stage of one ``budget=paper`` run of ``env`` (scaled from HalfCheetah-v4);
    ``reward_model`` is {loss: seconds} (the fit's time does not depend on the env's speed); ``oracle`` is
    the true-reward run's agent stage. ``measured`` ({env: {stage: (seconds, n)}}, :func:`measured_times`)
    replaces each estimate it has."""
    f = DEFAULT_ORACLE[env] / HC_V4_DEFAULT_ORACLE
    segments = MERGE_SEGMENTS if env == "merge-v0" else HC_V4_PAPER["segments"] * f
    out = {"source": HC_V4_PAPER["source"] * f, "segments": segments, "feedback": 0.0,
           "reward_model": dict(reward_fit), "agent": HC_V4_PAPER["agent"] * f, "oracle": HC_V4_PAPER["agent"] * f}
    for stage, (seconds, _) in ((measured or {}).get(env) or {}).items():
        if stage.startswith("reward_model:"):
            out["reward_model"][stage.split(":", 1)[1]] = seconds
        else:
            out[stage] = seconds
    return out


def measured_times(dirs: list[Path]) -> dict[str, dict[str, tuple[float, int]]]:
    """{env: {stage: (median seconds, runs)}} from the ``results.json`` of finished runs under ``dirs``:
    ``source`` / ``segments`` from runs that built them, ``agent`` from learned-reward runs, ``oracle`` from
    true-reward runs, ``reward_model:<loss>`` per loss; a stage resumed after a kill is left out."""
    from rlpref.report.collect import resumed_stages

    samples: dict[str, dict[str, list[float]]] = {}
    for path in sorted(p for d in dirs for p in Path(d).glob("*/results.json")):
        res = json.loads(path.read_text())
        timings, reused, resumed = res.get("timings") or {}, res.get("reused_stages") or {}, resumed_stages(res)
        env = samples.setdefault(res["env"], {})
        if res.get("reward") == "oracle":
            if "agent" not in resumed:
                env.setdefault("oracle", []).append(timings["agent"])
            continue
        for stage in ("source", "segments", "agent", "reward_model"):
            # a stage's cost: only where this run built it, in one go (a resumed stage's seconds are partial; a
            # reused stage's are its builder's); results without the record count as building only their agent
            if stage in timings and stage not in resumed and not reused.get(stage, stage != "agent"):
                key = f"reward_model:{res['loss']}" if stage == "reward_model" else stage
                env.setdefault(key, []).append(timings[stage])
    return {e: {k: (statistics.median(v), len(v)) for k, v in st.items()} for e, st in samples.items()}


#: (envs, σ values, seeds) blocks of learned-reward cells; each (env, seed) also gets a true-reward run
PAPER = [(ENVS, SIGMAS, SEEDS)]  # the paper's whole table: 4 envs x 4 σ x 2 losses x 5 seeds
#: issue 38 item 2 is priced from the table its array ran (scripts/slurm_paper_sigma25.sh rows, as submitted),
#: appended rows included, in the array's order
ITEM2_TABLE = Path(__file__).resolve().parents[1] / "docs" / "results" / "paper_sigma25" / "rows.txt"
MATRICES = ("paper", "item2")
#: keys a row names that do not make it another (env, loss, σ, seed) cell; any other key is the row's variant
_CELL_KEYS = ("sweep", "env", "loss", "teacher.sigma", "seed", "reward")
#: a task's stages in order; a variant key joins the cache key of the stage it first changes and of every later one
STAGES = ("source", "segments", "feedback", "rm", "agent")
#: the first stage each of rlpref.sweep.DOWNSTREAM's key prefixes changes (``loss=`` is a cell key); a key outside
#: DOWNSTREAM may change the source (as the sweep assumes when it splits groups), so it keys every stage
VARIANT_STAGE = {"teacher.": "feedback", "reward_model.": "rm", "+reward_model.": "rm", "reward_fit=": "rm",
                 "+reward_fit=": "rm", "reward_norm=": "agent"}


def parse_row(line: str) -> tuple:
    """A sweep-table row as (env, loss, σ, seed, variant): loss ``oracle`` (σ None) for a true-reward row;
    ``variant`` the row's other overrides (e.g. ``("reward_norm=step",)``), each keying the stage it first changes."""
    kv = dict(t.split("=", 1) for t in line.split())
    env, seed = kv["env"], int(kv["seed"])
    variant = tuple(sorted(t for t in line.split() if t.split("=", 1)[0] not in _CELL_KEYS))
    if kv.get("reward") == "oracle":
        return (env, "oracle", None, seed, variant)
    return (env, kv["loss"], float(kv["teacher.sigma"]), seed, variant)


def rows(matrix: str) -> list[tuple]:
    """``paper``: the cells in ``python -m rlpref.sweep paper``'s order (env, loss, σ, seed), then the oracles;
    ``item2``: the rows of the submitted item-2 table (:data:`ITEM2_TABLE`)."""
    if matrix == "item2":
        return [parse_row(line) for line in ITEM2_TABLE.read_text().splitlines() if line.strip()]
    out: list[tuple] = []
    for envs, sigmas, seeds in PAPER:
        out += [(e, l, s, k, ()) for e, l, s, k in itertools.product(envs, LOSSES, sigmas, seeds)]
    envs = list(dict.fromkeys(e for block in PAPER for e in block[0]))
    return out + [(e, "oracle", None, k, ()) for e in envs for k in SEEDS]


def overrides(row: tuple) -> str:
    """A row as the sweep table writes it, so :func:`rlpref.sweep.lead_rows` can pick the first wave."""
    env, loss, sigma, seed, variant = row
    if loss == "oracle":
        return " ".join(["sweep=paper reward=oracle loss=bt teacher.sigma=0", f"env={env}", *variant, f"seed={seed}"])
    return " ".join(["sweep=paper", f"env={env}", f"teacher.sigma={sigma:g}", *variant, f"loss={loss}", f"seed={seed}"])


def task_plan(row: tuple, t: dict[str, float]) -> list[tuple]:
    """(stage key, seconds) a row's task runs in order; keys shared with other rows are built once. A variant
    key keys the stage it first changes and the later ones (:data:`VARIANT_STAGE`): reward_norm=step shares
    its cell's reward model and trains its own agent, +reward_fit=... fits its own reward model."""
    env, loss, sigma, seed, variant = row
    if loss == "oracle":
        return [(("oracle", env, seed, variant), t["oracle"])]

    def upto(stage: str) -> tuple:  # the variant tokens that reach ``stage``
        level = STAGES.index(stage)
        return tuple(v for v in variant if STAGES.index(variant_stage(v)) <= level)

    return [(("source", env, seed, upto("source")), t["source"]),
            (("segments", env, seed, upto("segments")), t["segments"]),
            (("feedback", env, seed, sigma, upto("feedback")), t["feedback"]),
            (("rm", row[:4], upto("rm")), t["reward_model"][loss]), (("agent", row), t["agent"])]


def variant_stage(token: str) -> str:
    """The first stage a variant override (``key=value``) changes: by its DOWNSTREAM prefix, else the source."""
    return next((stage for prefix, stage in VARIANT_STAGE.items() if token.startswith(prefix)), "source")


def simulate(cores: int, reward_fit: dict[str, float], matrix: str = "paper",
             two_phase: bool = False, measured: dict | None = None) -> dict[str, float]:
    """List-schedule the rows on ``cores`` slots; returns wall, busy and held core-seconds. ``two_phase``: first
    an array of one learned row per (env, seed) and the oracles, then (afterok) an array of the rest."""
    times = {e: stage_seconds(e, reward_fit, measured) for e in ENVS}
    table = rows(matrix)
    phases = [table]
    if two_phase:  # the rows `WAVES=2 scripts/slurm_paper_sigma25.sh` puts in its first array
        lead = set(lead_rows([overrides(r) for r in table]))
        phases = [[r for i, r in enumerate(table) if i in lead], [r for i, r in enumerate(table) if i not in lead]]
    finish: dict = {}  # stage key -> when its artefact exists
    busy = held = wall = 0.0
    for phase in phases:
        slots = [wall] * cores
        for row in phase:
            start = now = heapq.heappop(slots)
            for key, seconds in task_plan(row, times[row[0]]):
                if key in finish:  # built, or being built by another task: wait on its lock
                    now = max(now, finish[key])
                else:
                    finish[key] = now = now + seconds
                    busy += seconds
            held += now - start
            heapq.heappush(slots, now)
        wall = max(slots)
    return {"wall": wall, "busy": busy, "held": held, "tasks": len(table)}


def unshared_seconds(matrix: str, reward_fit: dict[str, float], measured: dict | None = None) -> float:
    """Core-seconds if every run built its own stages (no shared cache), for comparison."""
    times = {e: stage_seconds(e, reward_fit, measured) for e in ENVS}
    return sum(sec for row in rows(matrix) for _, sec in task_plan(row, times[row[0]]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=64)
    ap.add_argument("--reward-fit", default="whole",
                    help="whole (today's default fit), max64 (+reward_fit=paper) or seconds for every fit (733)")
    ap.add_argument("--runs", action="append", default=[], type=Path,
                    help="folder of finished budget=paper runs (*/results.json): measured stage times (repeatable)")
    args = ap.parse_args()
    named = {"whole": FIT_WHOLE_STRATA, "max64": FIT_MAX_STRATUM_64}
    fit = named.get(args.reward_fit) or {loss: float(args.reward_fit) for loss in LOSSES}
    for d in args.runs:
        if not d.is_dir():
            ap.error(f"--runs {d}: no such folder (give the folder holding the run folders, e.g. "
                     f"docs/results/paper_sigma25/runs)")
    measured = measured_times(args.runs)
    print("| env | factor | source s | segments s | agent s | true-reward agent s | reward fit bt / rr s |")
    print("|---|---|---|---|---|---|---|")
    for env in ENVS:
        t, m = stage_seconds(env, fit, measured), measured.get(env, {})

        def cell(stage: str, seconds: float) -> str:
            return f"{seconds:.0f}" + (f" (measured, n={m[stage][1]})" if stage in m else "")
        fits = " / ".join(cell(f"reward_model:{loss}", t["reward_model"][loss]) for loss in LOSSES)
        print(f"| {env} | {DEFAULT_ORACLE[env] / HC_V4_DEFAULT_ORACLE:.2f} | {cell('source', t['source'])} | "
              f"{cell('segments', t['segments'])} | {cell('agent', t['agent'])} | {cell('oracle', t['oracle'])} | "
              f"{fits} |")
    for matrix, two_phase in itertools.product(MATRICES, (False, True)):
        sim = simulate(args.cores, fit, matrix, two_phase, measured)
        print(f"{matrix}{' (two arrays)' if two_phase else ''}: {sim['tasks']} tasks; compute "
              f"{sim['busy'] / 3600:.1f} core-h (shared stages once); cores held {sim['held'] / 3600:.1f} core-h "
              f"(waits on locks included); wall {sim['wall'] / 3600:.2f} h on {args.cores} cores")
    for matrix in MATRICES:
        print(f"{matrix} without the shared cache: {unshared_seconds(matrix, fit, measured) / 3600:.1f} core-h")


if __name__ == "__main__":
    main()
