"""Synthetic track: DDM against the analytic first-passage probability, seeding, batched fits, grid end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlpref.synthetic.__main__ import run_from_config
from rlpref.synthetic.ddm import simulate_ddm, upper_bound_probability
from rlpref.synthetic.grid import GridConfig, n_train_pairs, run_grid
from rlpref.synthetic.learners import (
    TrainConfig,
    _loss_inputs,
    fit_data,
    fit_single,
    fit_stacked,
    get_learner,
    init_learner,
    permutation_rng,
    predict_stacked,
)
from rlpref.synthetic.losses import hyperbolic_rt_target, rt_regression_hyperbolic_loss
from rlpref.synthetic.report import data_efficiency, summarise
from rlpref.synthetic.trials import DatasetSpec, generate_dataset

CONF = str(Path(__file__).resolve().parents[1] / "conf" / "synthetic")


def _compose(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


@pytest.mark.parametrize("drift", [-1.5, -0.3, 0.0, 0.8, 2.0])
def test_ddm_choice_probability_matches_first_passage_formula(drift):
    n = 4000
    res = simulate_ddm(np.full((1, n), drift), [np.random.default_rng(7)], start=0.6, bound=1.2, noise_sd=0.4)
    p_sim = res.upper.mean()
    p_true = float(upper_bound_probability(drift, 0.6, 1.2, 0.4))
    # Binomial error plus a small allowance for the Euler overshoot at dt = 1e-3.
    tol = 4 * np.sqrt(p_true * (1 - p_true) / n) + 0.01
    assert abs(p_sim - p_true) < tol, (drift, p_sim, p_true)


def test_ddm_formula_known_values_and_symmetry():
    assert upper_bound_probability(0.0, 0.6, 1.2, 0.4) == pytest.approx(0.5)
    assert upper_bound_probability(0.0, 0.3, 1.2, 0.4) == pytest.approx(0.25)
    # v = 1, z = a/2, sigma = 1: (1 - e^{-2 z}) / (1 - e^{-2 a}) with a = 1.2
    assert upper_bound_probability(1.0, 0.6, 1.2, 1.0) == pytest.approx((1 - np.exp(-1.2)) / (1 - np.exp(-2.4)))
    v = np.array([0.1, 0.7, 3.0, 50.0])
    up, down = upper_bound_probability(v, 0.6, 1.2, 0.4), upper_bound_probability(-v, 0.6, 1.2, 0.4)
    np.testing.assert_allclose(up + down, 1.0)  # symmetric start: P_up(v) = P_down(-v)
    assert np.all(np.isfinite(up)) and up[-1] == pytest.approx(1.0)


def test_ddm_block_size_changes_draws_not_distribution():
    drift = np.full((1, 3000), 0.5)
    a = simulate_ddm(drift, [np.random.default_rng(1)], block=1)
    b = simulate_ddm(drift, [np.random.default_rng(1)], block=256)
    assert abs(a.upper.mean() - b.upper.mean()) < 0.05
    assert abs(np.median(a.rt) - np.median(b.rt)) < 0.05 * np.median(a.rt)
    assert np.all(a.rt >= 0.3 + 1e-3) and np.all(a.steps >= 1)


def test_ddm_non_terminating_walkers_raise():
    with pytest.raises(RuntimeError, match="did not reach a bound within max_steps=50"):
        simulate_ddm(np.zeros((1, 5)), [np.random.default_rng(0)], noise_sd=0.0, max_steps=50)
    with pytest.raises(ValueError, match="one rng per trial"):
        simulate_ddm(np.zeros((2, 5)), [np.random.default_rng(0)])


def test_trial_depends_only_on_root_seed_and_trial_id():
    spec = DatasetSpec("ddm", "drift_diffusion")
    alone = generate_dataset(spec, 3, [4])
    together = generate_dataset(spec, 3, [2, 4, 9])
    for name in ("x1", "u1", "y", "rt", "stratum"):
        np.testing.assert_array_equal(getattr(alone, name)[0], getattr(together, name)[1])
    other_seed = generate_dataset(spec, 4, [4])
    assert not np.array_equal(alone.u1, other_seed.u1)
    # The true utility is scaled to unit SD over the trial's items.
    u = np.concatenate([alone.u1[0], alone.u2[0]])
    assert u.std() == pytest.approx(1.0)


def test_variability_multiplies_rts_per_stratum_only():
    base = generate_dataset(DatasetSpec("d", "deterministic", variability=0.0), 0, [0])
    var = generate_dataset(DatasetSpec("d", "deterministic", variability=3.0), 0, [0])
    np.testing.assert_array_equal(base.y, var.y)
    ratio = var.rt[0] / base.rt[0]
    for s in np.unique(base.stratum[0]):
        r = ratio[base.stratum[0] == s]
        assert np.allclose(r, r[0])  # one multiplier per stratum
    assert np.unique(np.round(ratio, 12)).size > 1
    # Deterministic rt = 10 / (|du| + 1) before the multiplier.
    np.testing.assert_allclose(base.rt[0], 10.0 / (np.abs(base.u1[0] - base.u2[0]) + 1.0))


def test_stacked_fits_equal_one_at_a_time_fits():
    cfg = TrainConfig(epochs=15, dtype=torch.float64)
    batch = generate_dataset(DatasetSpec("dd", "drift_diffusion"), 0, [0, 1, 2])
    names = ["bt", "rr", "rr_pooled", "rr_perm", "rt_regression", "rt_regression_std", "clf"]
    specs, data, inits = [], [], []
    for i in range(3):
        for name in names:
            lr = get_learner(name)
            perm = permutation_rng(0, i, 40) if lr.permute else None
            specs.append(lr)
            data.append(fit_data(lr, batch.x1[i, :40], batch.x2[i, :40], batch.y[i, :40], batch.rt[i, :40],
                                 batch.stratum[i, :40], perm))
            inits.append(init_learner(0, i, 20, cfg))
    stacked = fit_stacked(specs, data, inits, cfg)
    x = np.stack([np.concatenate([batch.x1[i // len(names), 40:], batch.x2[i // len(names), 40:]]) for i in range(len(specs))])
    pred = predict_stacked(stacked, x)
    for j in (0, 1, 4, 8, 10, 12, len(specs) - 1):
        single = fit_single(specs[j], data[j], inits[j], cfg)
        ref = predict_stacked([(w[None], b[None, None]) for w, b in single], x[j : j + 1])[0]
        # rt_regression's hyperbolic targets reach ~4e4 here (a rt shrunk by a small stratum multiplier):
        # bmm vs mm summation order differs at 1e-16 of those huge gradients and Adam's normalisation
        # carries it into the weights (measured ~3e-7 relative). A wrong reduction would differ by O(1).
        rtol = 1e-5 if specs[j].name == "rt_regression" else 1e-8
        np.testing.assert_allclose(pred[j], ref, rtol=rtol, atol=1e-10, err_msg=specs[j].name)


def test_grid_is_reproducible_and_trial_results_do_not_depend_on_batch():
    specs = [DatasetSpec("det", "deterministic")]
    train = TrainConfig(epochs=20)
    a, _ = run_grid(specs, GridConfig(learners=("bt", "rr"), fractions=(1.0,), n_trials=3), train, progress=False)
    b, _ = run_grid(specs, GridConfig(learners=("bt", "rr"), fractions=(1.0,), n_trials=3), train, progress=False)
    pd.testing.assert_frame_equal(a, b)
    c, _ = run_grid(specs, GridConfig(learners=("rr",), fractions=(1.0,), n_trials=1, first_trial=2), train, progress=False)
    row = a[(a.learner == "rr") & (a.trial == 2)].iloc[0]
    # Same data and init; only float32 rounding of a differently sized bmm differs (float64: exact, above).
    assert c.iloc[0]["pdc"] == pytest.approx(row["pdc"], rel=1e-3)


def test_small_grid_end_to_end_through_the_config(tmp_path):
    cfg = _compose("dataset=deterministic", "grid.n_trials=12", "grid.fractions=[0.5,1.0]",
                   "grid.learners=[bt,rr,rr_perm]", "progress=false", "threads=1")
    assert list(cfg["datasets"]) == ["deterministic"]
    res = run_from_config(cfg, tmp_path)
    for name in ("results.csv", "diagnostics.csv", "summary.csv", "report.md", "synthetic.png", "summary.json"):
        assert (tmp_path / name).is_file(), name
    results = pd.read_csv(tmp_path / "results.csv")
    assert len(results) == 12 * 2 * 3 and set(results["n_train"]) == {25, 50}
    full = res["summary"][res["summary"].fraction == 1.0].set_index("learner")
    # Learning happened, and the response times carry strength that only rr can use.
    assert full.loc["bt", "accuracy"] > 0.7
    assert full.loc["rr", "pdc"] > full.loc["bt", "pdc"] > full.loc["rr_perm", "pdc"]
    assert "| deterministic |" in (tmp_path / "report.md").read_text()


def test_all_preset_holds_six_datasets():
    cfg = _compose("dataset=all")
    assert sorted(cfg["datasets"]) == sorted(
        f"{g}{v}" for g in ("deterministic", "stochastic", "drift_diffusion") for v in ("", "_no_variability")
    )
    assert cfg["datasets"]["drift_diffusion"]["variability"] == 3.0
    assert cfg["datasets"]["drift_diffusion_no_variability"]["variability"] == 0.0


def test_data_efficiency_interpolates_known_values():
    summary = pd.DataFrame(
        [
            {"dataset": "d", "learner": "bt", "fraction": 0.5, "pdc": 0.3},
            {"dataset": "d", "learner": "bt", "fraction": 1.0, "pdc": 0.5},
            {"dataset": "d", "learner": "rr", "fraction": 0.5, "pdc": 0.4},
            {"dataset": "d", "learner": "rr", "fraction": 0.75, "pdc": 0.6},
            {"dataset": "d", "learner": "rr", "fraction": 1.0, "pdc": 0.7},
        ]
    )
    eff = data_efficiency(summary).iloc[0]
    assert eff["fraction_needed"] == pytest.approx(0.625) and not eff["at_or_below"]
    worse = summary.assign(pdc=np.where(summary.learner == "rr", 0.1, summary.pdc))
    assert np.isnan(data_efficiency(worse).iloc[0]["fraction_needed"])


def test_summarise_gives_t_intervals():
    df = pd.DataFrame({"dataset": "d", "learner": "bt", "fraction": 1.0, "trial": [0, 1, 2, 3],
                       "pdc": [0.1, 0.2, 0.3, 0.4], "accuracy": 0.5, "true_accuracy": 0.5})
    row = summarise(df).iloc[0]
    half = 3.182446305284263 * np.std([0.1, 0.2, 0.3, 0.4], ddof=1) / 2  # t(0.975, 3) · s / sqrt(4)
    assert row["pdc"] == pytest.approx(0.25) and row["pdc_hi"] - row["pdc"] == pytest.approx(half)


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="unknown learner 'nope'; choose one of: bt, rr"):
        GridConfig(learners=("nope",))
    with pytest.raises(ValueError, match="unknown trial generator 'ddm'; choose one of"):
        DatasetSpec("x", "ddm")
    with pytest.raises(ValueError, match="training fractions must lie in"):
        GridConfig(fractions=(0.0,))
    with pytest.raises(ValueError, match="leaves no pair"):
        n_train_pairs(0.01, 50)
    with pytest.raises(ValueError, match="unknown ddm keys"):
        generate_dataset(DatasetSpec("x", "drift_diffusion", ddm={"drift": 1}), 0, [0])
    with pytest.raises(ValueError, match="no datasets selected"):
        run_from_config({"datasets": {}, "grid": {}, "train": {}, "seed": 0}, Path("/nonexistent"))


def test_rt_regression_hyperbolic_known_values():
    # targets 10/rt - 1 = [1, 4]; d = [1, -0.5]; squared errors [0, 20.25]
    uc, ur = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.5])
    rt = torch.tensor([5.0, 2.0], dtype=torch.float64)
    assert rt_regression_hyperbolic_loss(uc, ur, rt).item() == pytest.approx(10.125)
    # rt_min = 1, rt_max = 11: targets 10/(rt - 1) - 1 = [1.5, 9]; errors [0.25, 90.25]
    assert rt_regression_hyperbolic_loss(uc, ur, rt, rt_min=1.0, rt_max=11.0).item() == pytest.approx(45.25)
    with pytest.raises(ValueError, match="every response time > rt_min=1"):
        hyperbolic_rt_target(torch.tensor([0.5, 2.0]), rt_min=1.0, rt_max=11.0)
    with pytest.raises(ValueError, match="needs `strength`"):
        rt_regression_hyperbolic_loss(uc, ur)
    # The learner gets the link from the train config.
    kw = _loss_inputs(get_learner("rt_regression"), np.array([2.0, 3.0]), np.zeros(2, dtype=np.int64), None,
                      TrainConfig(rt_min=0.5, rt_max=20.0))
    assert kw["rt_min"] == 0.5 and kw["rt_max"] == 20.0
    assert get_learner("rt_regression_std").spec.name == "rt_regression"  # the repository-wide loss


def test_hyperbolic_target_inverts_the_deterministic_rt():
    # Without variability the paper's rt baseline regresses onto the true |du| exactly.
    b = generate_dataset(DatasetSpec("d", "deterministic", variability=0.0), 0, [0, 1])
    target = hyperbolic_rt_target(torch.as_tensor(b.rt), 0.0, 10.0).numpy()
    np.testing.assert_allclose(target, np.abs(b.u1 - b.u2), rtol=1e-10, atol=1e-12)
    var = generate_dataset(DatasetSpec("d", "deterministic", variability=3.0), 0, [0])
    assert not np.allclose(hyperbolic_rt_target(torch.as_tensor(var.rt), 0.0, 10.0).numpy(), np.abs(var.u1 - var.u2))


def test_tied_rts_split_by_default_ordered_by_index_as_a_quirk():
    rt = np.array([2.0, 1.0, 2.0, 3.0, 1.5, 0.5])
    groups = np.array([0, 0, 0, 0, 1, 1])
    x = np.zeros((6, 3))
    y = np.ones(6, dtype=bool)
    split = fit_data(get_learner("rr"), x, x, y, rt, groups)
    assert len(np.unique(split.stratum)) == 3  # group 0 holds a tie (2.0 twice): dealt into two strata
    np.testing.assert_array_equal(split.strength, rt)
    quirk = fit_data(get_learner("rr"), x, x, y, rt, groups, ties="index")
    assert len(np.unique(quirk.stratum)) == 2  # strata kept whole
    # Tie-free rank key in rt order, the tie broken by pair index (pair 0 before pair 2).
    np.testing.assert_array_equal(quirk.strength, [3.0, 1.0, 4.0, 5.0, 2.0, 0.0])
    # Regression does not rank: its strength stays the rt itself.
    reg = fit_data(get_learner("rt_regression"), x, x, y, rt, groups, ties="index")
    np.testing.assert_array_equal(reg.strength, rt)
    with pytest.raises(ValueError, match="ties must be"):
        fit_data(get_learner("rr"), x, x, y, rt, groups, ties="random")


def test_reference_quirks_switch_changes_only_tied_ranking_fits():
    cfg = _compose("dataset=drift_diffusion")
    assert cfg["reference_quirks"] is False
    spec = DatasetSpec.from_mapping({"name": "drift_diffusion", **cfg["datasets"]["drift_diffusion"]})
    batch = generate_dataset(spec, 0, range(12))

    def split(t):  # a stratum of trial t holds tied rts, so the default path deals it into more strata
        d = fit_data(get_learner("rr"), batch.x1[t, :50], batch.x2[t, :50], batch.y[t, :50], batch.rt[t, :50],
                     batch.stratum[t, :50])
        return np.unique(d.stratum).size > np.unique(batch.stratum[t, :50]).size

    tied = [t for t in range(12) if split(t)]
    assert tied, "expected at least one of 12 drift-diffusion trials with tied rts inside a stratum"
    grid = {"learners": ("bt", "rr"), "fractions": (1.0,), "n_trials": 12}
    train = TrainConfig(epochs=20)
    off, _ = run_grid([spec], GridConfig(**grid), train, progress=False, batches=[batch])
    on, _ = run_grid([spec], GridConfig(**grid, reference_quirks=True), train, progress=False, batches=[batch])
    np.testing.assert_array_equal(off[off.learner == "bt"].pdc, on[on.learner == "bt"].pdc)
    rr_off = off[off.learner == "rr"].set_index("trial").pdc
    rr_on = on[on.learner == "rr"].set_index("trial").pdc
    untied = [t for t in range(12) if t not in tied]
    np.testing.assert_allclose(rr_off[untied], rr_on[untied], rtol=1e-6)
    assert not np.allclose(rr_off[tied], rr_on[tied], rtol=1e-6)


def test_paper_comparison_counts_cells_and_orders(tmp_path):
    import pandas as pd

    from rlpref.synthetic.paper import LEARNERS, PAPER, compare

    rows = []
    for learner, (pdc, acc) in zip(LEARNERS, PAPER["deterministic"]):
        rows.append({"dataset": "deterministic", "learner": learner, "fraction": 1.0, "pdc": pdc, "accuracy": acc})
    exact = pd.DataFrame(rows)
    text = compare(exact)
    assert "**12 of 12 cells within ±0.03" in text and "deterministic: same" in text
    off = exact.copy()
    off.loc[off["learner"] == "bt", "pdc"] = 0.900  # bt now first, and 0.365 off
    text = compare(off, efficiency=[{"dataset": "deterministic", "fraction_needed": 0.6, "at_or_below": False}])
    assert "**11 of 12 cells" in text and "+0.365 ✗" in text and "deterministic: differs" in text
    assert "| deterministic | 60.0 | 59.7 |" in text


def test_block_check_places_off_cells_and_efficiency_among_100_trial_blocks():
    """Fabricated per-trial results (test data): two blocks of 100 trials whose means are known exactly."""
    import pandas as pd

    from rlpref.synthetic.paper import block_check

    rows = []
    for trial in range(200):
        b, wiggle = trial // 100, 0.01 * (-1) ** trial  # wiggle averages to 0 in each block
        for learner, fraction, pdc in (("bt", 1.0, (.50, .54)[b]), ("rr", 0.5, (.40, .54)[b]), ("rr", 1.0, (.60, .64)[b])):
            rows.append({"dataset": "deterministic", "learner": learner, "fraction": fraction, "trial": trial,
                         "pdc": pdc + wiggle, "accuracy": .777, "true_accuracy": .777, "kendall_tau": .5})
    results = pd.DataFrame(rows)
    summary = pd.DataFrame([{"dataset": "deterministic", "learner": "bt", "fraction": 1.0, "pdc": .50, "accuracy": .777},
                            {"dataset": "deterministic", "learner": "rr", "fraction": 1.0, "pdc": .66, "accuracy": .821}])
    text = block_check(summary, results)
    # bt's PDC .500 is .035 below the paper's .535; the blocks' means are .50 and .54, so .535 lies inside
    # z = (.535 - .52) / (sd * sqrt(1/100 + 1/200)), sd of the 200 trials' values (.02 apart in mean, ±.01 wiggle)
    values = results[(results.learner == "bt")]["pdc"]
    z = (.535 - values.mean()) / (values.std(ddof=1) * np.sqrt(1 / 100 + 1 / 200))
    assert f"| deterministic | bt | pdc | 0.500 | 0.520 | 0.500–0.540 | 0.535 | yes | {z:+.2f} |" in text
    assert "| deterministic | rr |" not in text  # within ±0.03 (.66 vs .669, .821 vs .821)
    # efficiency: block 0 needs 75 % of the data, block 1 50 %, all 200 trials 66.7 %; the paper's 59.7 is inside
    assert "| deterministic | 66.7 | 50.0–75.0 | 59.7 | yes |" in text
    # A second run checked after the first names itself and leaves out the cells the first already listed.
    shown: set = set()
    first = block_check(summary, results, label="`run_a`: ", shown=shown)
    second = block_check(summary, results, label="`run_b`: ", shown=shown)
    assert first.count("| deterministic | bt | pdc |") == 1 and shown == {("deterministic", "bt", "pdc")}
    assert "| deterministic | bt | pdc |" not in second and "`run_b`: Data efficiency" in second
