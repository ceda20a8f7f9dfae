"""rlpref.report on fabricated run dirs (TEST DATA written into tmp_path, never results).

The helper writes run dirs in the control track's contract format (results.json + curve.csv), with
returns chosen so the expected aggregates are known exactly.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlpref.report.__main__ import build_report
from rlpref.report.collect import collect
from rlpref.report.stats import compare_methods, iqm, iqm_interval, mean_with_ci, method_stream, probability_of_improvement
from rlpref.report.tables import against_bt_table, cell_table, return_table, to_latex, to_markdown


def write_fake_run(run_dir: Path, *, env="HalfCheetah-v4", loss="rr", seed=0, sigma=0.0, n_feedback=1000,
                   reward="learned", final=100.0, steps=(0, 1000, 2000, 3000), acc=0.9, agent_key=None,
                   online=None) -> Path:
    """A run dir in the contract format, filled with made-up numbers (test data)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    curve = np.linspace(final / 4, final, len(steps))
    pd.DataFrame({"step": steps, "true_return_mean": curve, "true_return_std": np.full(len(steps), 1.5),
                  "n_episodes": 5}).to_csv(run_dir / "curve.csv", index=False)
    res = {
        "env": env, "loss": loss, "seed": seed, "reward": reward, "n_feedback": n_feedback, "sigma": sigma,
        "noise": "range", "strength_source": "clean", "final_return": float(curve[-1]),
        "max_return": float(curve.max()) + 1.0, "auc": float(curve.mean()),
        "reward_model": None if reward == "oracle" else
        {"val_accuracy": acc, "val_loss": 0.3, "pearson": 0.8, "spearman": 0.7, "pdc": 0.5},
        "timings": {"source": 1.0, "segments": 0.5, "teacher": 0.1, "reward_model": 2.0, "agent": 3.0, "total": 6.6},
        "algo": "ppo", "gamma": 0.98, "config": {"env": {"id": env}, "loss": {"name": loss}, "seed": seed},
        "agent_steps": int(steps[-1]),
    }
    if agent_key is not None:
        res["artifacts"] = {"agent": agent_key}
    if online is not None:  # (rounds, n per round, schedule[, pairing[, scale[, refit[, noise[, keep_level[, epochs]]]]]])
        res["config"]["online"] = {"rounds": online[0], "n_feedback": online[1], "schedule": online[2]}
        if len(online) > 3:
            res["config"]["online"]["pairing"] = online[3]
        if len(online) > 4:
            res["config"]["online"]["scale"] = online[4]
        if len(online) > 5:
            res["config"]["online"]["refit"] = online[5]
        if len(online) > 6:
            res["config"]["online"]["action_noise"] = online[6]
        if len(online) > 7:
            res["config"]["online"]["keep_level"] = online[7]
        if len(online) > 8:
            res["config"]["online"]["refit_epochs"] = online[8]
        res["online_rounds"] = [{"round": i + 1, "n_new_pairs": online[1]} for i in range(online[0])]
    (run_dir / "results.json").write_text(json.dumps(res))
    return run_dir


def make_sweep(root: Path) -> Path:
    """2 envs x 2 losses x 2 sigmas x 3 budgets x 3 seeds, plus oracle runs and one unfinished run."""
    k = 0
    for env in ("HalfCheetah-v4", "Swimmer-v5"):
        for loss in ("bt", "rr"):
            for sigma in (0.0, 0.5):
                for nf in (250, 1000, 5000):
                    for seed in range(3):
                        # rr better than bt, more feedback better, noise worse; seed adds 0/1/2
                        final = 100 + (20 if loss == "rr" else 0) + 10 * np.log10(nf) - 30 * sigma + seed
                        write_fake_run(root / str(k), env=env, loss=loss, seed=seed, sigma=sigma, n_feedback=nf,
                                       final=final, acc=0.95 - 0.2 * sigma - (0.0 if loss == "rr" else 0.02))
                        k += 1
        for seed in range(2):
            write_fake_run(root / str(k), env=env, loss="bt", reward="oracle", seed=seed, final=200.0 + seed)
            k += 1
    unfinished = root / str(k)
    (unfinished / ".hydra").mkdir(parents=True)
    return root


def test_collect_builds_tidy_tables(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    col = collect(root)
    assert len(col.runs) == 2 * 2 * 2 * 3 * 3 + 4
    assert col.incomplete == [root / str(len(col.runs))]
    assert set(col.runs["method"]) == {"bt", "rr", "oracle"}
    assert col.runs["rm_val_accuracy"].isna().sum() == 4  # the oracle runs have no reward model
    assert (col.runs["code_commit"] == "").all()  # recorded before results.json named its commit
    assert len(col.curves) == 4 * len(col.runs)
    # the curve rows carry the run keys, so a groupby reproduces a run's final return
    one = col.runs.iloc[0]
    last = col.curves[col.curves["run_id"] == one["run_id"]].sort_values("step")["true_return_mean"].iloc[-1]
    assert last == pytest.approx(one["final_return"])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # arch, under rliable, deprecates its RandomState argument
def test_iqm_interval_is_rliables_stratified_bootstrap():
    from rliable import library as rly_library
    from rliable import metrics as rly_metrics
    # 6 runs x 3 tasks of very different scales, skewed like returns: a bootstrap that pooled the runs of all
    # tasks instead of resampling within each (the stratification) would give a far wider interval
    scores = np.random.default_rng(3).gamma(2.0, 50.0, size=(6, 3)) + np.array([0.0, 300.0, 1000.0])
    point, lo, hi = iqm_interval(scores, reps=10000, stream=method_stream("m"))
    assert point == pytest.approx(rly_metrics.aggregate_iqm(scores))
    width = hi - lo  # the two draw different resamples: rliable's ends (3000 resamples) move up to ~3 % between its seeds
    for seed in range(3):
        _, rly_ci = rly_library.get_interval_estimates(
            {"m": scores}, lambda s: np.array([rly_metrics.aggregate_iqm(s)]), reps=3000,
            random_state=np.random.RandomState(seed))
        assert abs(lo - rly_ci["m"][0, 0]) < 0.1 * width and abs(hi - rly_ci["m"][1, 0]) < 0.1 * width, (lo, hi, rly_ci)


def test_stats_iqm_and_ci():
    x = np.array([0.0, 1, 2, 3, 4, 5, 6, 100])  # IQM drops the outlier: mean of 2..5
    assert iqm(x) == pytest.approx(3.5)
    point, lo, hi = iqm_interval(x, reps=500)
    assert point == pytest.approx(3.5)
    assert lo < point < hi and hi < 100
    m, lo, hi = mean_with_ci(np.array([1.0, 2.0, 3.0]))
    assert m == pytest.approx(2.0) and hi - m == pytest.approx(4.302653 / np.sqrt(3), rel=1e-4)
    assert mean_with_ci(np.array([5.0])) == (5.0, 5.0, 5.0)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # arch, under rliable, deprecates its RandomState argument
def test_probability_of_improvement_and_iqm_comparison_known_values():
    x, y = np.array([5.0, 6, 7, 8]), np.array([1.0, 2, 3, 6])
    # pairs (x > y): 5 > 1,2,3; 6 > 1,2,3 (tie with 6: 1/2); 7 and 8 > all four -> (3 + 3.5 + 4 + 4) / 16
    assert probability_of_improvement(x, y) == pytest.approx(14.5 / 16)
    assert probability_of_improvement(y, x) == pytest.approx(1.5 / 16)
    assert probability_of_improvement(x, x) == pytest.approx(0.5)
    from rliable import metrics as rly_metrics  # the estimator rliable defines
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 2)), rng.normal(0.5, size=(9, 2))
    assert probability_of_improvement(a, b) == pytest.approx(rly_metrics.probability_of_improvement(a, b))
    got = compare_methods(x, y, reps=500)
    d, r, p = got["difference"], got["ratio"], got["probability_of_improvement"]
    assert d[0] == pytest.approx(iqm(x) - iqm(y)) and d[1] <= d[0] <= d[2], d
    assert r[0] == pytest.approx(iqm(x) / iqm(y)) and r[1] <= r[0] <= r[2]
    assert p[0] == pytest.approx(14.5 / 16) and 0 <= p[1] <= p[0] <= p[2] <= 1
    assert d[1] > 0, "four runs a side this far apart: the difference's CI excludes 0"
    # the bootstrap is rliable's: its CI for P(X > Y) on the same data agrees within resampling noise
    from rliable import library as rly_library
    _, rly_ci = rly_library.get_interval_estimates({"p": [a, b]}, lambda u, v: np.array([rly_metrics.probability_of_improvement(u, v)]),
                                                  reps=500, random_state=np.random.RandomState(0))
    ours = compare_methods(a, b, reps=2000)["probability_of_improvement"]
    assert abs(ours[1] - rly_ci["p"][0, 0]) < 0.06 and abs(ours[2] - rly_ci["p"][1, 0]) < 0.06, (ours, rly_ci["p"])
    with pytest.raises(ValueError, match="2 runs a side"):
        compare_methods(x[:1], y)
    # a failed run (nan) is left out; a baseline's CI is the same whatever it is compared with; a ratio of
    # returns that can be negative is not given
    assert compare_methods(np.append(x, np.nan), y, reps=500)["difference"] == got["difference"]
    assert compare_methods(x + 1, y, reps=500)["iqm_y"] == got["iqm_y"]
    assert np.isnan(compare_methods(x - 7, y, reps=500)["ratio"]).all()


def test_against_bt_table_states_the_difference_its_ci_and_sign(tmp_path):
    col = collect(make_sweep(tmp_path / "sweep"))
    table = against_bt_table(col.runs, reps=300)
    rows = [r for r in table.splitlines() if r.startswith("| Swimmer-v5 | 0.5 | 1000 | rr |")]
    assert len(rows) == 1 and len([r for r in table.splitlines() if "| rr |" in r]) == 12  # 2 envs x 2 sigma x 3 budgets
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    # rr = bt + 20 at every seed (seeds add 0/1/2 on both sides): the difference is 20, P(rr > bt) = 1
    assert cells[4] == "3 / 3" and cells[7].startswith("20.0 [") and cells[8].startswith("1.00") and cells[9] == "above"
    same = col.runs[col.runs["method"] == "bt"].assign(method="rr_pooled", loss="rr_pooled")  # equal to bt
    rows = [r for r in against_bt_table(pd.concat([col.runs, same]), reps=300).splitlines() if "| rr_pooled |" in r]
    assert rows and all(r.rstrip(" |").endswith("inside the spread") and "| 0.50 [" in r for r in rows)
    # a method of another setting (label suffix) is held against the bt of that setting, not plain bt
    tagged = col.runs[col.runs["method"] != "oracle"].copy()
    tagged["method"] = tagged["method"] + "@online[x=1]"
    tagged.loc[tagged["loss"] == "bt", "final_return"] += 20  # that setting's bt equals its rr
    rows = [r for r in against_bt_table(tagged, reps=300).splitlines() if "| rr@online[x=1] |" in r]
    assert len(rows) == 12 and all(r.rstrip(" |").endswith("inside the spread") for r in rows)


def test_cell_table_gives_each_cell_its_iqms_accuracy_and_share_of_the_oracle(tmp_path):
    col = collect(make_sweep(tmp_path / "sweep"))
    lines = cell_table(col.runs, reps=300).splitlines()
    row = next(r for r in lines if r.startswith("| Swimmer-v5 | 0.5 | 1000 | rr |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # finals 135/136/137 (IQM of 3 = their mean); accuracy 0.95 - 0.2 * 0.5; seeds 0-1 have a true-reward run
    # (200, 201): 135/200 and 136/201 -> 67.6 %
    assert cells[4] == "3" and cells[5] == "3,000" and cells[6].startswith("136 [135, 137]") and cells[8] == "0.850 ± 0.000"
    assert cells[9].startswith("67.6 [") and cells[9].endswith("(2 of 3 seeds)")
    swimmer = [r for r in lines if r.startswith("| Swimmer-v5 |")]
    assert len(swimmer) == 2 * 2 * 3 + 1 and swimmer[-1].startswith("| Swimmer-v5 | – | – | oracle | 2 |")
    assert swimmer[0].startswith("| Swimmer-v5 | 0 | 250 | bt |") and swimmer[1].startswith("| Swimmer-v5 | 0 | 250 | rr |")
    # one method's interval is the same in every table that shows it: bt here and in the against-bt table
    bt_cell = [c.strip() for c in next(r for r in lines if r.startswith("| Swimmer-v5 | 0.5 | 1000 | bt |")).split("|")]
    versus = [c.strip() for c in next(r for r in against_bt_table(col.runs, reps=300).splitlines()
                                      if r.startswith("| Swimmer-v5 | 0.5 | 1000 | rr |")).split("|")]
    assert bt_cell[7] == versus[7] and cells[6] == versus[6]
    x, y = np.array([3.0, 1, 4, 1, 5, 9]), np.array([2.0, 7, 1, 8])
    got = compare_methods(x, y, reps=400, streams=(method_stream("a"), method_stream("b")))
    assert iqm_interval(x, reps=400, stream=method_stream("a")) == pytest.approx(got["iqm_x"])
    assert iqm_interval(y, reps=400, stream=method_stream("b")) == pytest.approx(got["iqm_y"])
    assert iqm_interval(np.array([5.0])) == (5.0, 5.0, 5.0)


def test_tables_values_and_formats(tmp_path):
    col = collect(make_sweep(tmp_path / "sweep"))
    summary = return_table(col.runs)
    row = summary[(summary.env == "Swimmer-v5") & (summary.method == "rr") & (summary.sigma == 0.5)
                  & (summary.n_feedback == 1000)].iloc[0]
    # seeds 0, 1, 2 add 0, 1, 2 to 100 + 20 + 30 - 15
    assert row.final_mean == pytest.approx(136.0) and row.final_sd == pytest.approx(1.0) and row.n_seeds == 3
    md = to_markdown(summary)
    assert "| Swimmer-v5 | 0.5 | 1000 |" in md and "**136 ± 1**" in md  # rr beats bt: bold
    assert "oracle" in md
    tex = to_latex(summary)
    assert r"\begin{tabular}" in tex and r"\textbf{136 $\pm$ 1}" in tex and "_" not in tex.replace(r"\_", "")


def test_report_cli_end_to_end(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    proc = subprocess.run([sys.executable, "-m", "rlpref.report", str(root), "--reps", "200"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    out = root / "report"
    for name in ("runs.csv", "runs.parquet", "curves.csv", "curves.parquet", "returns.md", "returns.tex",
                 "reward_models.csv", "sample_efficiency.png", "learning_curves.png", "rm_quality_vs_sigma.png"):
        assert (out / name).stat().st_size > 0, name
    assert pd.read_parquet(out / "runs.parquet").shape[0] == 76
    assert "without results.json" in proc.stderr
    import matplotlib.image as mpimg

    img = mpimg.imread(out / "sample_efficiency.png")
    assert img.shape[0] > 500 and img.shape[1] > 800 and img[..., :3].std() > 0.05  # not blank


def test_results_md_section_is_generated_and_replaced_in_place(tmp_path):
    from rlpref.report.__main__ import main

    root = make_sweep(tmp_path / "sweep")
    md = tmp_path / "docs" / "results.md"
    md.parent.mkdir()
    md.write_text("# Measured results\n\nHand-written intro.\n")
    args = [str(root), "--reps", "50", "--quiet", "--results-md", str(md), "--section", "Sweep A"]
    assert main(args) == 0
    first = md.read_text()
    table = (root / "report" / "returns.md").read_text().strip()
    assert first.startswith("# Measured results\n\nHand-written intro.\n\n## Sweep A\n")
    assert table in first and "Generated by `python -m rlpref.report " in first and "--section Sweep A`" in first
    assert "](../sweep/report/sample_efficiency.png)" in first
    md.write_text(first + "\nA later hand-written note.\n")
    assert main(args) == 0  # a rerun replaces the block and keeps the text around it
    again = md.read_text()
    assert again.count("<!-- rlpref.report:Sweep A -->") == 1 and again.endswith("A later hand-written note.\n")
    assert "Comparisons needed to reach" not in again  # the reach table joins the section only when asked
    assert main(args + ["--reach"]) == 0
    reach = (root / "report" / "reach.md").read_text().strip()
    assert reach in md.read_text() and "| HalfCheetah-v4 | 0 | bt (at 5000) |" in reach
    with pytest.raises(SystemExit):
        main([str(root), "--results-md", str(md)])  # --section missing


def test_report_single_budget_and_no_runs(tmp_path):
    root = tmp_path / "smoke"
    for k, (loss, seed) in enumerate([(a, b) for a in ("bt", "rr") for b in (0, 1)]):
        write_fake_run(root / str(k), env="Pendulum-v1", loss=loss, seed=seed, n_feedback=300, final=-1000.0 + 50 * k)
    outputs = build_report(root, reps=100, quiet=True)
    assert {"sample_efficiency", "learning_curves", "rm_quality_vs_sigma", "returns_md"} <= set(outputs)
    for name, path in outputs.items():
        assert Path(path).stat().st_size > 0, name
    with pytest.raises(SystemExit, match="no results.json"):
        build_report(tmp_path / "empty_dir_that_exists" if (tmp_path / "empty_dir_that_exists").mkdir() is None
                     else None, quiet=True)


def test_wandb_logger_runs_offline_and_writes_the_same_local_files(tmp_path, monkeypatch):
    """logger=wandb needs no account or network: an offline run beside the csv logger's files."""
    from rlpref.report.loggers import make_logger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "")  # no credentials anywhere
    logger = make_logger({"name": "wandb", "mode": "offline", "project": "rlpref-test", "dir": "."}, tmp_path,
                         {"env": {"id": "Pendulum-v1"}, "loss": {"name": "rr"}})
    logger.log_metrics({"reward_model/val_accuracy": 0.9}, 0)
    for step, mean in ((100, -900.0), (200, -400.0)):
        logger.log_curve_point(step, mean, 10.0, 5)
    logger.log_summary({"final_return": -400.0, "reward_model": {"pdc": 0.8}, "agent_steps": 200})
    logger.close()
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb")), list(tmp_path.rglob("*"))
    curve = (tmp_path / "curve.csv").read_text().splitlines()
    assert curve[0] == "step,true_return_mean,true_return_std,n_episodes" and len(curve) == 3
    assert json.loads((tmp_path / "summary.json").read_text())["reward_model/pdc"] == 0.8
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert rows and all(r["step"].isdigit() for r in rows)  # every row has its step
    assert {r["step"] for r in rows if r["key"].startswith("summary/")} == {"200"}


def test_rerun_of_the_same_experiment_counts_once_newest_wins(tmp_path):
    import os

    old = write_fake_run(tmp_path / "old", seed=0, final=100.0, agent_key="k0")
    new = write_fake_run(tmp_path / "new", seed=0, final=300.0, agent_key="k0")
    write_fake_run(tmp_path / "other", seed=1, final=200.0, agent_key="k1")
    os.utime(old / "results.json", (1_000, 1_000))
    os.utime(new / "results.json", (2_000, 2_000))
    col = collect(tmp_path)
    assert col.repeats == ["old"]
    assert sorted(col.runs["run_id"]) == ["new", "other"]
    assert set(col.curves["run_id"]) == {"new", "other"}
    row = return_table(col.runs).iloc[0]
    assert row["n_seeds"] == 2 and row["final_mean"] == pytest.approx(250.0)


def test_true_reward_runs_count_no_comparisons_so_their_recorded_budgets_never_split_seeds(tmp_path):
    # an oracle run from the offline protocol records n_feedback 1000, one from protocol=online 1540
    write_fake_run(tmp_path / "o0", reward="oracle", seed=0, n_feedback=1000, final=100.0)
    d = write_fake_run(tmp_path / "o1", reward="oracle", seed=1, n_feedback=1000, final=300.0)
    res = json.loads((d / "results.json").read_text())
    res["config"]["protocol"] = {"name": "online", "n_feedback": 1540}
    (d / "results.json").write_text(json.dumps(res))
    runs = collect(tmp_path).runs
    assert runs["n_feedback"].tolist() == [0, 0]
    row = return_table(runs).iloc[0]
    assert len(return_table(runs)) == 1 and row["n_seeds"] == 2 and row["final_mean"] == pytest.approx(200.0)


def test_runs_differing_in_another_config_value_are_separate_methods(tmp_path):
    def run(name, seed, sigma, strata, final, agent_steps=250_000, extra=None):
        d = write_fake_run(tmp_path / name, loss="rr", seed=seed, sigma=sigma, final=final)
        res = json.loads((d / "results.json").read_text())
        res["config"].update({"strata": strata, "budget": {"name": "default", "agent_steps": agent_steps},
                              "cache_dir": f"/tmp/{name}", "teacher": {"sigma": sigma}, **(extra or {})})
        (d / "results.json").write_text(json.dumps(res))

    by_batch, rr8 = {"name": "by_batch", "k": None}, {"name": "round_robin", "k": 8}
    run("a", 0, 0.0, by_batch, 100.0)
    run("b", 1, 0.25, by_batch, 200.0)
    run("c", 0, 0.0, rr8, 300.0)
    run("d", 1, 0.25, rr8, 500.0, extra={"logger": {"name": "wandb"}})  # how a run logs is no variant
    col = collect(tmp_path)
    methods = dict(zip(col.runs["run_id"], col.runs["method"]))
    tag = {"a": "[strata.k=None,strata=by_batch]", "c": "[strata.k=8,strata=round_robin]"}
    assert methods == {"a": "rr" + tag["a"], "b": "rr" + tag["a"], "c": "rr" + tag["c"], "d": "rr" + tag["c"]}
    table = return_table(col.runs).set_index(["sigma", "method"])["final_mean"]
    assert table[(0.25, "rr" + tag["c"])] == pytest.approx(500.0)  # never averaged with the by_batch run
    # Seeds, sigmas and cache dirs alone never split a method; a value only some runs record does not either.
    for name in "abcd":
        shutil.rmtree(tmp_path / name)
    run("e", 0, 0.0, rr8, 100.0)
    run("f", 1, 0.25, rr8, 100.0, extra={"new_knob": 1})
    run("g", 2, 0.0, rr8, 100.0, agent_steps=400_000)
    runs = collect(tmp_path).runs
    methods = dict(zip(runs["run_id"], runs["method"]))
    assert methods == {"e": "rr[budget.agent_steps=250000]", "f": "rr[budget.agent_steps=250000]",
                       "g": "rr[budget.agent_steps=400000]"}
    # list values are labelled compactly: layer widths as count x width
    for name in "efg":
        shutil.rmtree(tmp_path / name)
    run("h", 0, 0.0, rr8, 100.0, extra={"reward_model": {"hidden": [256] * 5}})
    run("i", 0, 0.0, rr8, 100.0, extra={"reward_model": {"hidden": [32, 64]}})
    methods = dict(zip(collect(tmp_path).runs["run_id"], collect(tmp_path).runs["method"]))
    assert methods == {"h": "rr[reward_model.hidden=5x256]", "i": "rr[reward_model.hidden=32x64]"}


def test_online_settings_are_separate_methods(tmp_path):
    write_fake_run(tmp_path / "a", loss="rr", final=100.0, online=(9, 60, "early"))
    write_fake_run(tmp_path / "b", loss="rr", final=300.0, online=(4, 100, "even"))
    write_fake_run(tmp_path / "c", loss="rr", final=500.0)
    write_fake_run(tmp_path / "d", loss="rr", final=200.0, online=(9, 60, "early", "across"))
    write_fake_run(tmp_path / "e", loss="rr", final=200.0, online=(9, 60, "early", "within"))
    write_fake_run(tmp_path / "f", loss="rr", final=200.0, online=(9, 60, "early", "within", "round"))
    write_fake_run(tmp_path / "g", loss="rr", final=200.0, online=(9, 60, "early", "within", "all"))
    write_fake_run(tmp_path / "h", loss="rr", final=200.0, online=(9, 60, "early", "within", "round", "trained"))
    write_fake_run(tmp_path / "i", loss="rr", final=200.0, online=(9, 60, "early", "within", "round", "trained", 0.4))
    write_fake_run(tmp_path / "j", loss="rr", final=200.0,
                   online=(9, 60, "early", "within", "round", "trained", 0.0, True))
    write_fake_run(tmp_path / "k", loss="rr", final=200.0,
                   online=(9, 60, "early", "within", "round", "trained", 0.0, False, 2))
    methods = dict(zip(collect(tmp_path).runs["run_id"], collect(tmp_path).runs["method"]))
    # Runs without online.scale predate it and judged on every segment's scale, runs without online.refit kept
    # r_θ unless validation improved: neither is the default.
    # Runs without online.refit_epochs predate it and refitted until early stopping: not the default (2) either.
    assert methods == {"a": "rr+online9x60-early-allscale-gated-refitallep", "b": "rr+online4x100-allscale-gated-refitallep",
                       "c": "rr", "d": "rr+online9x60-early-across-allscale-gated-refitallep",
                       "e": "rr+online9x60-early-allscale-gated-refitallep", "f": "rr+online9x60-early-gated-refitallep",
                       "g": "rr+online9x60-early-allscale-gated-refitallep", "h": "rr+online9x60-early-refitallep",
                       "i": "rr+online9x60-early-noise0.4-refitallep", "j": "rr+online9x60-early-keeplevel-refitallep",
                       "k": "rr+online9x60-early"}
    # Each online run sits at the comparisons it used: 1000 offline plus its rounds' pairs.
    used = dict(zip(collect(tmp_path).runs["run_id"], collect(tmp_path).runs["n_feedback"]))
    assert used["a"] == 1000 + 9 * 60 and used["b"] == 1000 + 4 * 100 and used["c"] == 1000


def test_online_protocol_runs_get_their_own_method_label(tmp_path):
    """An online-protocol run is labelled by its protocol, not its comparison count, so runs at several
    budgets form one line of the sample-efficiency figure; each sits at the comparisons it asked for."""
    from rlpref.report.collect import _online_tag

    config = {"online": {"rounds": 9, "n_feedback": 60, "schedule": "early", "pairing": "within", "scale": "round",
                         "refit": "trained", "refit_epochs": 2},
              "budget": {"n_feedback": 1000, "online_rounds": 9, "online_feedback": 60},
              "protocol": {"name": "online", "iterations": 10, "schedule": "hyperbolic", "n_feedback": None}}
    assert _online_tag({"config": config}, 9) == "@online-protocol10-hyperbolic"
    for name, asked, got in (("a", None, 1531), ("b", 770, 770)):
        run = write_fake_run(tmp_path / name, loss="rr", online=(9, 60, "early"))
        res = json.loads((run / "results.json").read_text())
        res["config"].update({k: dict(v) for k, v in config.items()})
        res["config"]["protocol"]["n_feedback"] = asked
        res["n_feedback_total"] = got
        (run / "results.json").write_text(json.dumps(res))
    runs = collect(tmp_path).runs.set_index("run_id")
    assert set(runs["method"]) == {"rr@online-protocol10-hyperbolic"}
    # the budget a run asked for (1000 + 9 x 60 by default) places it; what it got is kept beside
    assert runs.loc["a", "n_feedback"] == 1540 and runs.loc["a", "n_feedback_used"] == 1531
    assert runs.loc["b", "n_feedback"] == 770
    config["protocol"] = {"name": "offline"}
    assert _online_tag({"config": config}, 9) == "+online9x60-early"

def test_envs_with_only_true_reward_runs_still_get_a_row():
    from rlpref.report.tables import return_table, to_markdown

    runs = pd.DataFrame([
        {"env": "Swimmer-v5", "sigma": 0.0, "n_feedback": 1000, "method": "oracle", "seed": s, "final_return": r,
         "max_return": r} for s, r in ((0, 340.0), (1, 290.0))] + [
        {"env": "Walker2d-v5", "sigma": 0.0, "n_feedback": 1000, "method": "rr", "seed": 0, "final_return": 400.0,
         "max_return": 600.0}])
    text = to_markdown(return_table(runs))
    assert "| Swimmer-v5 | 0 | – | 315 ± 35 | – | 315 ± 35 |" in text and "| Walker2d-v5 | 0 | 400 ± – | – |" in text
    assert "| env | σ | final rr (n=1) | final oracle (n=2) | max rr (n=1) | max oracle (n=2) |" in text
    more = pd.concat([runs, pd.DataFrame([{"env": "Walker2d-v5", "sigma": 0.0, "n_feedback": 1000, "method": "oracle",
                                           "seed": 0, "final_return": 900.0, "max_return": 900.0}])])
    assert "final oracle (n=1–2)" in to_markdown(return_table(more))  # seed counts differ between rows: the range


def test_a_key_added_later_counts_at_its_old_default_when_tagging_variants():
    from rlpref.report.collect import _tag_variants

    rows = [{"env": "E", "method": "rr"} for _ in range(3)]
    configs = [{"seed": 0}, {"seed": 1, "reward_norm": "return"}, {"seed": 0, "reward_norm": "step"}]
    _tag_variants(rows, configs)
    assert [r["method"] for r in rows] == ["rr[reward_norm=return]", "rr[reward_norm=return]", "rr[reward_norm=step]"]


def test_cost_table_reports_wall_time_and_selection_seconds_per_method(tmp_path):
    from rlpref.report.tables import cost_table

    root = tmp_path / "sweep"
    for seed, (total, selects) in enumerate([(100.0, [0.5, 1.5]), (300.0, [1.0, 2.0])]):
        run = write_fake_run(root / f"dopt{seed}", loss="rr", seed=seed, online=(2, 10, "even"))
        res = json.loads((run / "results.json").read_text())
        res["timings"]["total"] = total
        res["config"]["query"] = {"name": "dopt"}
        for rnd, sec in zip(res["online_rounds"], selects):
            rnd["seconds_select"] = sec
        (run / "results.json").write_text(json.dumps(res))
    write_fake_run(root / "oracle", loss="bt", reward="oracle")  # total 6.6 s, no rounds
    text = cost_table(collect(root).runs)
    assert "| HalfCheetah-v4 | 1020 | rr+online2x10-allscale-gated-refitallep | 2 (2) | 200 (100–300) | 1.25 |" in text
    assert "| HalfCheetah-v4 | – | oracle | 1 (1) | 7 (7–7) | – |" in text
    # a resumed run adds its earlier processes' seconds; one that did not record them is left out of the mean
    for name, before in (("resumed_known", 50.0), ("resumed_unknown", None)):
        run = write_fake_run(root / name, loss="bt", seed=5)
        res = json.loads((run / "results.json").read_text())
        res["agent_timings"] = {"resumed_at_step": 1000, "total": 3.0,
                                **({} if before is None else {"total_across_resumes": 3.0 + before})}
        (run / "results.json").write_text(json.dumps(res))
        text = cost_table(collect(root).runs)
    assert "| HalfCheetah-v4 | 1000 | bt | 2 †2 (1) | 57 (57–57) | – |" in text  # both marked resumed
    # a rerun served from the cache takes ~0 s itself and counts what its stages took to make
    run = write_fake_run(root / "cached", loss="bt", reward="oracle", seed=7)
    res = json.loads((run / "results.json").read_text())
    res["timings"] = {"agent": 700.0, "total": 0.004}
    (run / "results.json").write_text(json.dumps(res))
    text = cost_table(collect(root).runs)
    assert "| HalfCheetah-v4 | – | oracle | 2 (2) | 353 (7–700) | – |" in text
    outputs = build_report(root, reps=20, quiet=True)
    assert outputs["cost_md"].read_text().endswith(text)


def test_reach_table_finds_the_fewest_comparisons_reaching_another_methods_best_mean():
    from rlpref.report.tables import reach_table

    # bt: 250 -> 1000, 500 -> 2000, 1000 -> 3000 (best); rr: 250 -> 1500, 500 -> 3100, 1000 -> 2900
    means = {("bt", 250): 1000.0, ("bt", 500): 2000.0, ("bt", 1000): 3000.0,
             ("rr", 250): 1500.0, ("rr", 500): 3100.0, ("rr", 1000): 2900.0}
    runs = pd.DataFrame([{"env": "E", "sigma": 0.0, "method": m, "n_feedback": n, "seed": s,
                          "final_return": v + (s - 1) * 100.0}  # seeds -100 / 0 / +100: the mean is v
                         for (m, n), v in means.items() for s in range(3)]
                        + [{"env": "E", "sigma": 0.0, "method": "oracle", "n_feedback": 1000, "seed": 0,
                            "final_return": 9999.0}])
    text = reach_table(runs)
    assert "| E | 0 | bt (at 1000) | 3000 | rr | 500 | 3100 |" in text
    assert "| E | 0 | rr (at 500) | 3100 | bt | not reached | best 3000 at 1000 |" in text
    assert "oracle" not in text  # the true-reward agent is no feedback method
    assert reach_table(runs[runs["n_feedback"] == 1000]) == ""  # one budget each: nothing to compare


def test_oracle_ratio_pairs_each_learned_run_with_the_true_reward_run_of_its_seed():
    from rlpref.report.tables import oracle_ratio_table

    rows = [{"env": "E", "sigma": 0.0, "n_feedback": 1000, "method": "oracle", "seed": s, "final_return": r}
            for s, r in ((0, 200.0), (1, 400.0), (3, -5.0))]
    rows += [{"env": "E", "sigma": sg, "n_feedback": 500, "method": "rr", "seed": s, "final_return": r}
             for sg, s, r in ((0.0, 0, 100.0), (0.0, 1, 100.0), (0.0, 2, 999.0), (0.0, 3, 1.0), (0.25, 1, 440.0))]
    text = oracle_ratio_table(pd.DataFrame(rows))
    # seed 2 has no true-reward run and seed 3's is not positive: both left out; 50 % and 25 % -> 38 (37.5)
    assert "| E | 0 | 500 | rr | 50 (s0) / 25 (s1) | 38 |" in text
    assert "| E | 0.25 | 500 | rr | 110 (s1) | 110 |" in text
    assert oracle_ratio_table(pd.DataFrame(rows[:3])) == ""


def test_figure_legend_gives_the_range_of_seed_counts_when_panels_differ():
    import matplotlib.pyplot as plt

    from rlpref.report.plots import _legend

    fig, axes = plt.subplots(1, 2, squeeze=False)
    axes[0, 0].plot([0], [0], label="rr (n=3 seeds)")
    axes[0, 0].plot([0], [0], label="oracle (n=3 seeds)")
    axes[0, 1].plot([0], [0], label="rr (n=1 seeds)")
    axes[0, 1].plot([0], [0], label="oracle (n=3 seeds)")
    _legend(fig, axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["rr (n=1–3 seeds)", "oracle (n=3 seeds)"]
    plt.close(fig)


def test_variants_in_one_figure_never_share_a_colour_and_keep_it_across_calls():
    from rlpref.report.plots import _PALETTE, method_style

    variants = [f"{loss}@online-protocol10-hyperbolic[query={q}]" for loss in ("bt", "rr")
                for q in ("random", "dopt", "disagreement", "entropy")]
    styles = [method_style(m, variants) for m in variants]
    from matplotlib.colors import to_hex

    colours = [to_hex(st["color"]) for st in styles]
    assert len(set(colours)) == len(variants) and not set(colours) & set(_PALETTE.values())
    assert [st["linestyle"] for st in styles] == ["-."] * 4 + ["-"] * 4  # bt variants dash-dotted
    assert method_style(variants[5], variants) == styles[5]
    assert method_style("rr")["color"] == _PALETTE["rr"] and method_style("oracle")["linestyle"] == "--"
    alone = ["bt@online-protocol10-hyperbolic", "rr@online-protocol10-hyperbolic", "oracle"]
    assert [to_hex(method_style(m, alone)["color"]) for m in alone] == [_PALETTE["bt"], _PALETTE["rr"], _PALETTE["oracle"]]


def test_every_generated_table_marks_a_resumed_run_and_names_it(tmp_path):
    """A run that continued from saved state after a kill is marked († and a footnote naming it and the step)
    in the return (markdown and LaTeX), cost, same-seed-oracle and reach tables; its steps count in full."""
    from rlpref.report.tables import cost_table, oracle_ratio_table, reach_table

    root = tmp_path / "sweep"
    for loss in ("bt", "rr"):
        for nf in (500, 1000):
            for seed in range(2):
                write_fake_run(root / f"{loss}_{nf}_s{seed}", loss=loss, seed=seed, n_feedback=nf,
                               final=100.0 + nf / 10 + (20 if loss == "rr" else 0))
    for seed in range(2):
        write_fake_run(root / f"oracle_s{seed}", loss="bt", reward="oracle", seed=seed, final=400.0)
    run = root / "rr_500_s0"
    res = json.loads((run / "results.json").read_text())
    res.update(agent_steps=250_440, agent_timings={"resumed_at_step": 125_000, "total": 3.0, "total_across_resumes": 9.0})
    (run / "results.json").write_text(json.dumps(res))
    run = root / "bt_1000_s1"  # a source-stage resume, where a run records it
    res = json.loads((run / "results.json").read_text())
    res["resumed_stages"] = {"source": 50_000, "agent": None}
    (run / "results.json").write_text(json.dumps(res))

    runs = collect(root).runs
    row = runs.set_index("run_id").loc["rr_500_s0"]
    assert bool(row["resumed"]) and row["resumed_at"] == "agent from step 125000" and row["agent_steps"] == 250_440
    assert runs.set_index("run_id").loc["bt_1000_s1", "resumed_at"] == "source from step 50000"
    assert int(runs["resumed"].sum()) == 2
    md = to_markdown(return_table(runs))
    assert "170 ± 0 †1" in md  # rr at 500: 2 seeds, one resumed (final and max cells)
    assert "rr_500_s0 (agent from step 125000)" in md and "bt_1000_s1 (source from step 50000)" in md
    tex = to_latex(return_table(runs))
    assert r"$^\dagger$1" in tex and r"rr\_500\_s0" in tex
    cost = cost_table(runs)
    assert "| HalfCheetah-v4 | 500 | rr | 2 †1 (2) |" in cost and "rr_500_s0 (agent from step 125000)" in cost
    ratio = oracle_ratio_table(runs)
    assert "(s0†)" in ratio and "rr_500_s0 (agent from step 125000)" in ratio
    reach = reach_table(runs)
    assert "†" in reach and "resumed:" in reach
    clean = runs[~runs["resumed"]]
    for text in (to_markdown(return_table(clean)), cost_table(clean), oracle_ratio_table(clean), reach_table(clean)):
        assert "†" not in text and "resumed:" not in text  # no resume, no mark


def test_a_claim_without_a_row_counts_the_bt_of_its_own_setting():
    """A variant's claim (rr[x=1]) is held against bt[x=1], so the line saying why it has no row yet counts
    that bt's seeds, not plain bt's."""
    import pandas as pd

    from rlpref.report.expect import Expectation
    from rlpref.report.tables import _unshown_claims

    runs = pd.DataFrame({"env": ["W"] * 4, "sigma": [0.25] * 4, "loss": ["bt", "bt", "bt", "rr"],
                         "method": ["bt[x=1]", "bt[x=1]", "bt[x=1]", "rr[x=1]"]})
    expect = {("W", 0.25, "rr[x=1]"): Expectation("RR < BT", "below"), ("W", 0.25, "rr@o[x=2]"): Expectation("?", "above")}
    line = _unshown_claims(expect, set(), runs)
    assert "W σ = 0.25 rr[x=1] (RR < BT): 1 / 3 seeds (rr[x=1] / bt[x=1]), two a side needed" in line
    assert "rr@o[x=2] (?): no runs yet" in line


def test_against_bt_table_holds_each_cell_against_a_published_direction(tmp_path, capsys):
    from rlpref.report.expect import load_expectations, verdict

    assert [verdict(s, "above") for s in ("above", "inside the spread", "below")] == ["agrees", "not shown", "disagrees"]
    assert [verdict(s, "below") for s in ("above", "inside the spread", "below")] == ["disagrees", "not shown", "agrees"]
    assert [verdict(s, "not_below") for s in ("above", "inside the spread", "below")] == ["agrees", "agrees", "disagrees"]
    claims = tmp_path / "claims.csv"
    claims.write_text("\ufeffenv,sigma,method,paper,expected\nSwimmer-v5,0.5,rr,RR < BT,below\n\n"  # a BOM, a blank line
                      "Swimmer-v5, 0 ,rr,RR ≥ BT,not_below\nWalker2d-v5,0.25,rr,RR < BT,below\n", encoding="utf-8")
    expect = load_expectations(claims)
    col = collect(make_sweep(tmp_path / "sweep"))
    lines = against_bt_table(col.runs, reps=300, expect=expect).splitlines()
    assert lines[0].endswith("| sign | paper | agrees? |")
    row = next(r for r in lines if r.startswith("| Swimmer-v5 | 0.5 | 1000 | rr |"))  # rr = bt + 20: above
    assert row.endswith("| above | RR < BT | disagrees |")
    assert next(r for r in lines if r.startswith("| Swimmer-v5 | 0 | 1000 | rr |")).endswith("| above | RR ≥ BT | agrees |")
    assert next(r for r in lines if r.startswith("| HalfCheetah")).endswith("| above | – | – |")  # no claim
    assert lines[-1] == "Published directions without a row yet: Walker2d-v5 σ = 0.25 rr (RR < BT): no runs yet."
    for text, match in (("env,sigma,method,paper,expected\nA,0,rr,x,bigger\n", "line 2: expected is 'bigger'"),
                        ("env,sigma,method,paper,expected\n\n\nA,zero,rr,x,above\n", "line 4: sigma 'zero' is not a finite"),
                        ("env,sigma,method,paper,expected\nA,nan,rr,x,above\n", "sigma 'nan' is not a finite"),
                        ("env,sigma,method,paper,expected\nA,0,rr,x\n", "line 2: 4 fields, need 5"),
                        ("env,sigma,method,paper\n", "header must be"),
                        ("env,sigma,method,paper,expected\nA,0,rr,x,above\nA,0.0,rr,y,below\n", "line 3: a second row")):
        claims.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_expectations(claims)
    with pytest.raises(ValueError, match="no such file"):
        load_expectations(tmp_path / "none.csv")
    from rlpref.report.__main__ import main as report_main
    with pytest.raises(SystemExit) as exit_:  # the CLI refuses a bad file before collecting anything
        report_main([str(tmp_path / "sweep"), "--expect", str(claims), "--out", str(tmp_path / "rep")])
    assert exit_.value.code == 2 and "a second row" in capsys.readouterr().err and not (tmp_path / "rep").exists()
