"""Both SLURM routes on a real single-node cluster on localhost (slurm-wlm + munge, started per test).

Route 1: ``scripts/slurm_array.sh`` (plain sbatch array over a sweep table). Route 2: Hydra's
``hydra/launcher=slurm`` (submitit). Each submits a 2-task array of tiny Pendulum pipelines that share
one artefact cache, so the shared stages must be built exactly once. ``make install`` installs slurm-wlm
and munge where it can (root + apt); under CI a missing SLURM is a failure, elsewhere a reported skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlpref.sweep import sweep_rows

ROOT = Path(__file__).resolve().parents[1]
TINY = ("env=Pendulum-v1 budget=smoke protocol=offline budget.source_steps=800 budget.agent_steps=600 budget.eval_every=300 "
        "budget.eval_episodes=2 budget.n_feedback=60 budget.n_checkpoints=2")


def _slurm_missing() -> str:
    if not all(shutil.which(b) or Path(f"/usr/sbin/{b}").exists() for b in ("slurmctld", "slurmd", "sbatch")):
        return "slurm-wlm is not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a local slurmd must run as root"
    return ""


@pytest.fixture
def cluster(tmp_path):
    reason = _slurm_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"SLURM test cannot run under CI: {reason}")
        pytest.skip(reason)
    script = ROOT / "scripts" / "slurm_local_test.sh"
    cdir = tmp_path / "cluster"
    started = subprocess.run(["bash", str(script), "start", str(cdir)], capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        env = {**os.environ, "SLURM_CONF": str(cdir / "slurm.conf"), "RLPREF_QUIET": "1", "PYTHON": sys.executable}
        yield env
    finally:
        subprocess.run(["bash", str(script), "stop", str(cdir)], capture_output=True, timeout=60)


def _check_runs(sweep: Path, cache: Path) -> list[dict]:
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert sorted(r["loss"] for r in results) == ["bt", "rr"], list(sweep.rglob("*"))
    # Source agent, segments and feedback are shared by the two tasks: built once.
    for stage in ("source", "segments", "feedback"):
        assert len(list((cache / stage).glob("*/manifest.json"))) == 1, stage
    assert len(list((cache / "reward_model").glob("*/manifest.json"))) == 2
    return results


@pytest.mark.slow
def test_sbatch_array_route(cluster, tmp_path):
    table = tmp_path / "rows.txt"
    table.write_text("".join(f"loss={loss} {TINY}\n" for loss in ("bt", "rr")))
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    export = f"ALL,RLPREF_SWEEP_TABLE={table},RLPREF_SWEEP_DIR={sweep},RLPREF_CACHE={cache}"
    out = subprocess.run(
        ["sbatch", "--wait", "--array=0-1", f"--output={tmp_path}/task_%a.out", f"--export={export}",
         str(ROOT / "scripts" / "slurm_array.sh")],
        env=cluster, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    logs = "".join(p.read_text() for p in tmp_path.glob("task_*.out"))
    assert out.returncode == 0, out.stdout + out.stderr + logs
    _check_runs(sweep, cache)
    assert "task 1 on" in logs


@pytest.mark.slow
def test_hydra_submitit_route(cluster, tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    out = subprocess.run(
        [sys.executable, "-m", "rlpref.run", "-m", "hydra/launcher=slurm", "loss=bt,rr", *TINY.split(),
         f"hydra.sweep.dir={sweep}", f"cache_dir={cache}"],
        env=cluster, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    _check_runs(sweep, cache)
    assert list(sweep.glob(".submitit/*"))  # submitted through submitit, not run in-process


def test_sweep_table_rows():
    rows = sweep_rows("smoke")
    assert rows == [f"sweep=smoke loss={l} seed={s}" for l in ("bt", "rr") for s in (0, 1)]
    paper = sweep_rows("paper", ["cache_dir=/shared"])
    assert len(paper) == 4 * 2 * 4 * 5 and all(r.startswith("sweep=paper cache_dir=/shared ") for r in paper)
    assert len(set(paper)) == len(paper)
    with pytest.raises(ValueError, match="unknown sweep preset 'nope'; choose one of: efficiency, paper, smoke, suite"):
        sweep_rows("nope")


def test_sweep_table_extra_override_replaces_an_axis():
    rows = sweep_rows("smoke", ["seed=5"])
    assert rows == ["sweep=smoke seed=5 loss=bt", "sweep=smoke seed=5 loss=rr"]


def test_sweep_table_list_override_resweeps_an_axis():
    rows = sweep_rows("smoke", ["seed=3,4"])  # replaces the preset's seeds, keeps the axis order
    assert rows == [f"sweep=smoke loss={l} seed={s}" for l in ("bt", "rr") for s in (3, 4)]
    rows = sweep_rows("smoke", ["seed=0", "teacher.sigma=0,0.25"])  # a new axis goes last
    assert rows == [f"sweep=smoke seed=0 loss={l} teacher.sigma={g}" for l in ("bt", "rr") for g in ("0", "0.25")]


def test_array_script_skips_finished_rows(tmp_path):
    """A rerun of the array skips a row whose run folder holds its results; a folder of another row is an
    error. No cluster needed: the task id comes from the environment, PYTHON=echo prints the run command."""
    table, sweep = tmp_path / "rows.txt", tmp_path / "sweep"
    table.write_text("loss=bt seed=0\nloss=rr seed=0\n")
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "RLPREF_SWEEP_TABLE": str(table), "RLPREF_SWEEP_DIR": str(sweep),
           "PYTHON": "echo"}
    script = ["bash", str(ROOT / "scripts" / "slurm_array.sh")]
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=20)
    assert first.returncode == 0 and f"-m rlpref.run loss=rr seed=0 hydra.run.dir={sweep}/1" in first.stdout
    assert (sweep / "1" / "row.txt").read_text() == "loss=rr seed=0\n"
    (sweep / "1" / "results.json").write_text("{}")
    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=20)
    assert again.returncode == 0 and "already finished" in again.stdout and "-m rlpref.run" not in again.stdout
    table.write_text("loss=bt seed=0\nloss=bt seed=1\n")  # the table changed under the sweep folder
    changed = subprocess.run(script, env=env, capture_output=True, text=True, timeout=20)
    assert changed.returncode == 2 and "holds the run of another row" in changed.stderr


def test_a_task_waiting_on_a_shared_stage_says_so(tmp_path, caplog):
    """What the array's logs show: the task that finds a stage's lock held waits, says how long, and reuses
    what the holder built."""
    import threading
    import time

    from filelock import FileLock

    from rlpref.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path)
    key = store.key("source", {"seed": 0})
    holder = FileLock(str(store.path("source", key)) + ".lock")
    (tmp_path / "source").mkdir()
    holder.acquire()
    got = {}
    with caplog.at_level("INFO", logger="rlpref"):
        waiter = threading.Thread(target=lambda: got.update(art=store.get_or_build("source", {"seed": 0}, [],
                                                                                   lambda d: {})))
        waiter.start()
        for _ in range(200):  # until the waiter is blocked on the lock
            if "waiting on its lock" in caplog.text:
                break
            time.sleep(0.02)
        (store.path("source", key)).mkdir()  # what the holder builds meanwhile
        (store.path("source", key) / "manifest.json").write_text('{"stage": "source"}')
        holder.release()
        waiter.join(timeout=10)
    assert not got["art"].built
    assert f"source {key}: another process is building it; waiting on its lock" in caplog.text
    assert f"source {key}: lock acquired after waiting" in caplog.text and "built by another process" in caplog.text


def test_collect_runs_copies_finished_runs_without_weights(tmp_path):
    """What goes into the repository from a sweep folder: finished runs' text files only, progress bars cut
    to their last state; a second pass writes nothing."""
    sweep, dest = tmp_path / "sweep", tmp_path / "docs"
    (sweep / "runs" / "0" / ".hydra").mkdir(parents=True)
    (sweep / "runs" / "1").mkdir(parents=True)
    (sweep / "logs").mkdir()
    (sweep / "rows.txt").write_text("loss=bt seed=0\nloss=rr seed=0\n")
    for name in ("results.json", "curve.csv", "row.txt", ".hydra/overrides.yaml"):
        (sweep / "runs" / "0" / name).write_text(name)
    (sweep / "runs" / "0" / "reward_net.pt").write_bytes(b"weights")
    (sweep / "runs" / "1" / "row.txt").write_text("loss=rr seed=0\n")  # unfinished: no results.json
    (sweep / "logs" / "task_5_0.out").write_text("start\nagent:  10%|#\ragent:  50%|#####\ragent: 100%|##########\r\ndone\n")
    (sweep / "logs" / "task_5_1.out").write_text("agent:  10%|#\r")  # the unfinished task's: not copied yet
    cmd = [sys.executable, str(ROOT / "scripts" / "collect_runs.py"), str(sweep), str(dest)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "1 finished runs" in first.stderr and "wrote 5 files and 1 logs" in first.stderr
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == ["logs/task_5_0.log", "rows.txt", "runs/0/.hydra/overrides.yaml", "runs/0/curve.csv",
                      "runs/0/results.json", "runs/0/row.txt"]
    assert (dest / "logs" / "task_5_0.log").read_text() == "start\nagent: 100%|##########\ndone\n"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert "wrote 0 files and 0 logs" in again.stderr and again.returncode == 0
    bad = subprocess.run([*cmd[:2], str(tmp_path / "nowhere"), str(dest)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "runs not found" in bad.stderr


def test_paper_array_rows_put_the_cheapest_env_first():
    """Issue 38's array: 70 distinct rows; Swimmer-v5's 25 (both sigmas, both losses, its true-reward runs)
    come first, so a small allocation finishes whole cells early; every env's oracle follows its cells. Then
    10 rows appended later: Walker2d-v5 with reward_norm=step, bt and rr seed by seed."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_paper_sigma25.sh"), "rows"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    rows, appended = out.stdout.splitlines()[:70], out.stdout.splitlines()[70:]
    assert len(rows) == len(set(rows)) == 70 and len(set(appended) - set(rows)) == len(appended) == 10
    assert [(r.split()[-2], r.split()[-1]) for r in appended] == [
        (f"loss={loss}", f"seed={k}") for k in range(5) for loss in ("bt", "rr")]
    assert all("env=Walker2d-v5" in r and "reward_norm=step" in r and "teacher.sigma=0.25" in r for r in appended)
    envs = [next(t.split("=")[1] for t in r.split() if t.startswith("env=")) for r in rows]
    assert envs[:25] == ["Swimmer-v5"] * 25 and set(envs[25:]) == {"HalfCheetah-v5", "Walker2d-v5", "merge-v0"}
    blocks = [(e, [r for r, x in zip(rows, envs) if x == e]) for e in dict.fromkeys(envs)]
    assert all(len(b) in (25, 15) and all("reward=oracle" in r for r in b[-5:])
               and not any("reward=oracle" in r for r in b[:-5]) for _, b in blocks), "each env's oracles last"
    assert sum("teacher.sigma=0 " in r + " " and "reward=oracle" not in r for r in rows) == 10
    first_rr = next(i for i, r in enumerate(rows) if "loss=rr" in r)
    assert all("loss=bt" in r for r in rows[:first_rr]) and first_rr == 10


def test_paper_cost_takes_measured_stage_times_where_runs_exist(tmp_path, load_script):
    """slurm_paper_cost.py --runs: per env the median of each stage over the runs that built it in one go (a
    source reused from the cache is not a source's cost, nor a resumed stage's partial seconds), true-reward
    agents apart; envs without runs keep the estimate."""
    cost = load_script("slurm_paper_cost")
    runs = [("bt", "learned", {"source": 100, "segments": 10, "reward_model": 50, "agent": 300}, False, {}),
            ("bt", "learned", {"source": 140, "segments": 14, "reward_model": 70, "agent": 320}, False, {}),
            ("rr", "learned", {"source": 100, "segments": 10, "reward_model": 90, "agent": 310}, True, {}),
            ("bt", "oracle", {"agent": 200}, False, {}),
            # resumed after a kill: its agent's seconds cover only the last process, so they are left out
            ("rr", "learned", {"source": 100, "segments": 10, "reward_model": 90, "agent": 40}, True, {"agent": 9e5}),
            ("bt", "oracle", {"agent": 30}, False, {"agent": 9e5})]
    for i, (loss, reward, timings, reused, resumed) in enumerate(runs):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps({
            "env": "Swimmer-v5", "loss": loss, "reward": reward, "timings": timings, "resumed_stages": resumed,
            "reused_stages": {k: reused and k in ("source", "segments") for k in timings}}))
    measured = cost.measured_times([tmp_path])["Swimmer-v5"]
    assert measured["source"] == (120, 2) and measured["segments"] == (12, 2)  # the rr run reused them
    assert measured["agent"] == (310, 3) and measured["oracle"] == (200, 1)
    assert measured["reward_model:bt"] == (60, 2) and measured["reward_model:rr"] == (90, 2)
    fit = {"bt": 176.0, "rr": 493.0}
    t = cost.stage_seconds("Swimmer-v5", fit, {"Swimmer-v5": measured})
    assert (t["source"], t["agent"], t["oracle"], t["reward_model"]) == (120, 310, 200, {"bt": 60, "rr": 90})
    assert fit == {"bt": 176.0, "rr": 493.0}  # the caller's estimate is not modified
    assert cost.stage_seconds("Walker2d-v5", fit, {"Swimmer-v5": measured}) == cost.stage_seconds("Walker2d-v5", fit)
    busy_est = cost.simulate(4, fit, "item2")["busy"]
    assert cost.simulate(4, fit, "item2", measured={"Swimmer-v5": measured})["busy"] < busy_est


def test_paper_cost_prices_the_submitted_item2_table_and_its_appended_variant_rows(tmp_path, monkeypatch, load_script):
    """The item-2 price comes from the table the array ran (docs/results/paper_sigma25/rows.txt), the 10
    appended reward_norm=step rows included: each shares its cell's source, segments and reward model and
    adds an agent stage of its own."""
    cost = load_script("slurm_paper_cost")
    table = cost.ITEM2_TABLE.read_text().splitlines()
    item2 = cost.rows("item2")
    assert len(item2) == len(table) == 80
    assert all(set(cost.overrides(r).split()) == set(line.split()) for r, line in zip(item2, table))
    step = [r for r in item2 if r[4]]
    assert len(step) == 10 and {r[4] for r in step} == {("reward_norm=step",)} and {r[0] for r in step} == {"Walker2d-v5"}
    fit = {"bt": 176.0, "rr": 493.0}
    t = cost.stage_seconds("Walker2d-v5", fit)
    plain = cost.task_plan(step[0][:4] + ((),), t)
    variant = cost.task_plan(step[0], t)
    assert [k for k, _ in variant[:4]] == [k for k, _ in plain[:4]] and variant[4][0] != plain[4][0]
    with_step = cost.simulate(4, fit, "item2")["busy"]
    (tmp_path / "rows.txt").write_text("\n".join(table[:70]) + "\n")  # as first submitted
    monkeypatch.setattr(cost, "ITEM2_TABLE", tmp_path / "rows.txt")
    assert with_step - cost.simulate(4, fit, "item2")["busy"] == pytest.approx(10 * t["agent"])


def test_paper_cost_keys_each_variant_override_at_the_stage_it_first_changes(load_script):
    """A +reward_fit= row fits its own reward model on the cell's feedback, a teacher.* row labels its own
    feedback on the cell's segments, a key outside rlpref.sweep.DOWNSTREAM (an agent knob) builds everything."""
    from rlpref.sweep import DOWNSTREAM

    cost = load_script("slurm_paper_cost")
    assert set(cost.VARIANT_STAGE) | {"loss="} == set(DOWNSTREAM)
    t = cost.stage_seconds("Walker2d-v5", {"bt": 176.0, "rr": 493.0})
    base = [k for k, _ in cost.task_plan(("Walker2d-v5", "rr", 0.25, 1, ()), t)]
    for token, first in [("reward_norm=step", "agent"), ("+reward_fit=paper", "rm"),
                         ("teacher.beta=2", "feedback"), ("agent.n_steps=1024", "source")]:
        keys = [k for k, _ in cost.task_plan(("Walker2d-v5", "rr", 0.25, 1, (token,)), t)]
        shared = [a == b for a, b in zip(keys, base)]
        assert shared == [s < cost.STAGES.index(first) for s in range(len(cost.STAGES))], token


def test_lead_rows_pick_one_stage_builder_per_source_and_every_true_reward_row():
    from rlpref.sweep import index_spec, lead_rows

    rows = [f"sweep=paper env={e} loss={l} teacher.sigma={s} seed={k}"
            for e in ("A", "B") for l in ("bt", "rr") for s in (0, 0.25) for k in (0, 1)]
    rows += ["sweep=paper reward=oracle loss=bt teacher.sigma=0 env=A seed=0"]
    lead = lead_rows(rows)
    # per (env, seed) the first row (bt, sigma 0) builds the source; loss and sigma do not split a group
    assert [rows[i] for i in lead] == [rows[0], rows[1], rows[8], rows[9], rows[16]]
    assert lead_rows([r + " +reward_fit=bf16" for r in rows[:4]]) == [0, 1]  # a fit setting shares the source
    assert lead_rows([rows[0], rows[0] + " reward_norm=step"]) == [0]  # so does the agent's reward normalisation
    assert lead_rows(["env=A seed=0 budget.source_steps=10", "env=A seed=0"]) == [0, 1]  # another source
    assert index_spec([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and index_spec([]) == ""


def test_paper_array_in_two_waves_makes_the_rest_wait_on_the_stage_builders(tmp_path):
    """WAVES=2: two sbatch calls over one table; the second array (the rows that reuse a source) depends
    (afterany) on the first, which holds each (env, seed)'s first learned row and the true-reward rows.
    A stand-in sbatch on PATH records its arguments (no cluster needed)."""
    bindir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bindir.mkdir()
    (bindir / "sbatch").write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\necho "$((100 + $(grep -c "" {calls})));cluster"\n')  # --parsable: id;cluster
    (bindir / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHON": sys.executable, "WAVES": "2", "PARALLEL": "8"}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_paper_sigma25.sh"), "submit", str(tmp_path / "a"),
                          "seed=0"], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "a" / "rows.txt").read_text().splitlines()
    first, second = calls.read_text().splitlines()
    # Walker2d-v5's reward_norm=step rows reuse the source of its first row (reward_norm is the agent's key)
    lead = [i for i, r in enumerate(rows) if "reward=oracle" in r
            or ("loss=bt" in r and "teacher.sigma=0.25" in r and "reward_norm" not in r)]
    from rlpref.sweep import index_spec
    assert len(rows) == 16 and f"--array={index_spec(lead)}%8 " in first and "--dependency" not in first
    rest = sorted(set(range(len(rows))) - set(lead))
    assert f"--array={index_spec(rest)}%8 " in second and "--dependency=afterany:101 --export" in second
    assert out.stdout.split() == ["101;cluster", "102;cluster"]
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_paper_sigma25.sh"), "submit", str(tmp_path / "a"),
                          "seed=0"], capture_output=True, text=True, timeout=180, env={**env, "WAVES": "3"})
    assert bad.returncode == 2 and "WAVES=3" in bad.stderr and len(calls.read_text().splitlines()) == 2
    fresh = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_paper_sigma25.sh"), "submit", str(tmp_path / "b")],
                           capture_output=True, text=True, timeout=60, env={**env, "WAVES": "x"})
    assert fresh.returncode == 2 and not (tmp_path / "b" / "rows.txt").exists()  # refused before writing the table


def test_paper_array_table_may_grow_at_its_end_and_only_submits_a_subset(tmp_path):
    """A submitted table may gain rows at its end (finished rows keep their folders), never change a row;
    ONLY=INDICES submits those rows alone, refuses WAVES=2 and indices past the table. A stand-in sbatch records its arguments."""
    bindir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bindir.mkdir()
    (bindir / "sbatch").write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\necho "7;cluster"\n')
    (bindir / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHON": sys.executable, "PARALLEL": "2"}
    script, sweep = str(ROOT / "scripts" / "slurm_paper_sigma25.sh"), tmp_path / "s"
    rows = subprocess.run(["bash", script, "rows", "seed=0"], capture_output=True, text=True, timeout=120,
                          env=env).stdout.splitlines()
    sweep.mkdir()
    (sweep / "rows.txt").write_text("\n".join(rows[:-2]) + "\n")  # as submitted before the last rows existed
    grown = subprocess.run(["bash", script, "submit", str(sweep), "seed=0"], capture_output=True, text=True,
                           timeout=180, env={**env, "ONLY": f"{len(rows) - 2}-{len(rows) - 1}"})
    assert grown.returncode == 0, grown.stderr
    assert (sweep / "rows.txt").read_text().splitlines() == rows
    assert f"--array={len(rows) - 2}-{len(rows) - 1}%2 " in calls.read_text()
    (sweep / "rows.txt").write_text("\n".join(["loss=bt seed=9"] + rows[1:]) + "\n")  # a row changed
    changed = subprocess.run(["bash", script, "submit", str(sweep), "seed=0"], capture_output=True, text=True,
                             timeout=180, env=env)
    assert changed.returncode == 2 and "holds another table" in changed.stderr
    both = subprocess.run(["bash", script, "submit", str(tmp_path / "t"), "seed=0"], capture_output=True, text=True,
                          timeout=60, env={**env, "ONLY": "0", "WAVES": "2"})
    assert both.returncode == 2 and "ONLY" in both.stderr and len(calls.read_text().splitlines()) == 1
    (sweep / "rows.txt").write_text("\n".join(rows) + "\n")
    for spec, why in ((f"0,{len(rows)}", f"outside {sweep / 'rows.txt'}'s rows 0-{len(rows) - 1}"),
                      ("3-1", "outside"), ("1-2%4", "not a row index or range")):
        past = subprocess.run(["bash", script, "submit", str(sweep), "seed=0"], capture_output=True, text=True,
                              timeout=180, env={**env, "ONLY": spec})
        assert past.returncode == 2 and why in past.stderr, (spec, past.stderr)
    assert len(calls.read_text().splitlines()) == 1  # refused before sbatch
