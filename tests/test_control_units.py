"""Unit tests of the control track's stages: teacher statistics, segments, reward wrapper, configs."""

from __future__ import annotations

import functools
import platform
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from envs import KNOWN_ENV_IDS, make_env
from rlpref.control.algos import build_model, hyperparams, make_train_env, resolve_algo
from rlpref.control.learned_reward import LearnedRewardVecEnv
from rlpref.control.pipeline import validate
from rlpref.control.records import Preferences, Segments
from rlpref.control.reward_net import (
    RewardModel,
    load_reward_model,
    one_hot_actions,
    save_reward_model,
    stratum_batches,
)
from rlpref.control.segments import cut_segments, discounted_returns, rollout_env_steps, rollout_plan
from rlpref.control.teacher import TeacherConfig, label_pairs

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@pytest.fixture
def new_segments(make_segments):
    """This module's synthetic segments: conftest's make_segments at this module's sizes."""
    return functools.partial(make_segments, m=400, length=10, batches=4, act_dim=2, reward="noise", shift=True)


def test_discounted_returns_known_value():
    r = np.array([[1.0, 2.0, 3.0]])
    assert discounted_returns(r, 0.5)[0] == pytest.approx(1 + 1 + 0.75)


def test_rollout_plan_matches_reference_formula():
    steps, n_seg = rollout_plan(n_feedback=1000, n_batches=5, length=50, oversample=1.5)
    assert steps == 1000 * 50 // 5
    assert n_seg == 600  # 1.5 x 2 x 200 comparisons per batch
    with pytest.raises(ValueError, match="n_feedback"):
        rollout_plan(1, 5, 50, 1.5)


def test_rollout_env_steps_counts_whole_env_streams():
    assert rollout_env_steps(17_600, 8, 50) == 17_600  # 8 envs x 2200
    assert rollout_env_steps(101, 8, 50) == 102  # 2 envs (each holds a 50-step clip) x 51
    assert rollout_env_steps(60, 8, 50) == 60  # 1 env
    assert rollout_env_steps(20, 8, 50) == 20  # shorter than a clip: still one env


def test_env_steps_record_sums_parts_and_says_when_one_is_unknown():
    """results.json's env steps: the parts' sum; None (not a silent undercount) when a cached stage or a round
    recorded no count."""
    from types import SimpleNamespace

    from rlpref.control.pipeline import _env_steps

    done = {"source": SimpleNamespace(manifest={"env_steps": 1000}), "segments": SimpleNamespace(manifest={"env_steps": 300})}
    rec = _env_steps(done, [{"env_steps": 40}, {"env_steps": 60}], 500)
    assert rec == {"env_steps": 1900, "env_steps_parts": {"agent": 500, "source": 1000, "segments": 300, "rounds": 100}}
    assert _env_steps(done, None, 500)["env_steps"] == 1800
    old_round = _env_steps(done, [{"env_steps": 40}, {}], 500)
    assert old_round["env_steps"] is None and old_round["env_steps_parts"]["rounds"] is None
    old_stage = _env_steps({"source": SimpleNamespace(manifest={})}, None, 500)
    assert old_stage == {"env_steps": None, "env_steps_parts": {"agent": 500, "source": None}}


def test_cut_segments_windows_are_contiguous():
    t = np.arange(30, dtype=np.float32)
    stream = {
        "obs": np.stack([t, t + 100])[:, :, None],
        "acts": np.stack([t + 1000, t + 1100])[:, :, None],
        "next_obs": np.stack([t + 1, t + 101])[:, :, None],
        "rewards": np.stack([t, t + 100]),
    }
    segs = cut_segments(stream, 50, 5, 1.0, batch=3, rng=np.random.default_rng(0))
    steps = np.diff(segs.obs[..., 0], axis=1)
    assert np.all(steps == 1)
    # every field comes from the same env and the same window as obs
    np.testing.assert_array_equal(segs.rewards, segs.obs[..., 0])
    np.testing.assert_array_equal(segs.acts[..., 0], segs.obs[..., 0] + 1000)
    np.testing.assert_array_equal(segs.next_obs, segs.obs + 1)
    assert np.all(segs.batch == 3)
    np.testing.assert_allclose(segs.returns, segs.rewards.sum(1))


def test_one_hot_actions_for_discrete_space():
    import gymnasium as gym

    out = one_hot_actions(np.array([0, 2, 1]), gym.spaces.Discrete(3))
    np.testing.assert_array_equal(out, np.eye(3)[[0, 2, 1]])


def test_noise_free_teacher_is_always_right_and_strength_is_clean_gap(new_segments):
    segs = new_segments()
    prefs = label_pairs(segs, 200, TeacherConfig(sigma=0.0, pairing="within_batch"), 0.99, np.random.default_rng(1))
    assert len(prefs) == 200
    assert prefs.label_accuracy() == 1.0
    np.testing.assert_allclose(prefs.strength, -np.abs(prefs.return_chosen - prefs.return_rejected))
    # within_batch pairing: both segments from the pair's rollout batch; comparisons spread evenly
    assert np.all(segs.batch[prefs.chosen] == prefs.batch) and np.all(segs.batch[prefs.rejected] == prefs.batch)
    assert np.bincount(prefs.batch).tolist() == [50, 50, 50, 50]
    # near ties are not generated
    assert np.all(np.abs(prefs.return_chosen - prefs.return_rejected) > 0.1 * segs.returns.std())


def test_range_noise_error_rate_grows_with_sigma_and_matches_simulation(new_segments):
    segs = new_segments(m=800, batches=1)
    err = []
    for sigma in (0.0, 0.1, 0.25, 0.5):
        prefs = label_pairs(segs, 300, TeacherConfig(sigma=sigma, near_tie=0.0), 0.99, np.random.default_rng(2))
        err.append(1 - prefs.label_accuracy())
    assert err[0] == 0.0
    assert err[1] < err[2] < err[3]
    # Independent check of the noise model: flip probability of a pair with gap g under
    # R~N(R, sd^2) truncated at 2 sd (clipping aside) is about P(z1 - z2 > g / sd).
    d = segs.returns.max() - segs.returns.min()
    sd = 0.5 * d / 4
    prefs = label_pairs(segs, 300, TeacherConfig(sigma=0.5, near_tie=0.0), 0.99, np.random.default_rng(2))
    gaps = np.abs(prefs.return_chosen - prefs.return_rejected)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(200_000, 2))
    z = z[np.all(np.abs(z) <= 2, axis=1)]
    expected = np.mean([np.mean(z[:, 0] - z[:, 1] > g / sd) for g in gaps])
    assert err[3] == pytest.approx(expected, abs=0.06)


def test_relative_noise_and_noisy_strength(new_segments):
    segs = new_segments(m=400, batches=2)
    cfg = TeacherConfig(sigma=0.5, noise="relative", strength="noisy")
    prefs = label_pairs(segs, 200, cfg, 0.99, np.random.default_rng(0))
    clean = -np.abs(prefs.return_chosen - prefs.return_rejected)
    assert not np.allclose(prefs.strength, clean)  # strength comes from the noisy returns
    assert 0.55 < prefs.label_accuracy() < 1.0  # the error rate itself: tests/test_teacher.py


def test_bpref_mistake_teacher_flips_about_eps(new_segments):
    segs = new_segments(m=800, batches=1)
    prefs = label_pairs(segs, 400, TeacherConfig(eps_mistake=0.3), 0.99, np.random.default_rng(5))
    assert 1 - prefs.label_accuracy() == pytest.approx(0.3, abs=0.07)


def test_across_batches_pairing_mixes_batches(new_segments):
    segs = new_segments()
    prefs = label_pairs(segs, 100, TeacherConfig(pairing="across_batches"), 0.99, np.random.default_rng(0))
    assert np.all(segs.batch[prefs.chosen] != segs.batch[prefs.rejected])


@pytest.mark.parametrize(
    "bad, match",
    [({"sigma": -0.1}, "sigma"), ({"noise": "gauss"}, "range, relative"), ({"pairing": "x"}, "within_batch"),
     ({"eps_mistake": 0.7}, "eps_mistake"), ({"scale": "round"}, "all, scope"), ({"sigmaa": 0.1}, "unknown teacher keys")],
)
def test_teacher_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        TeacherConfig.from_mapping(bad)


def test_records_roundtrip_without_pickle(new_segments, tmp_path):
    segs = new_segments(m=8, batches=2)
    segs.save(tmp_path / "s.npz")
    back = Segments.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.obs, segs.obs)
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(RuntimeError, match="bad.npz"):
        Preferences.load(tmp_path / "bad.npz")


def test_stratum_batches_keep_strata_whole():
    stratum = np.repeat(np.arange(10), np.arange(1, 11))
    batches = stratum_batches(stratum, 12, np.random.default_rng(0))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(stratum.size))
    for b in batches:
        for s in np.unique(stratum[b]):
            assert np.sum(stratum[b] == s) == np.sum(stratum == s)


def test_learned_reward_wrapper_equals_unbatched_reward(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.manual_seed(0)
    model = RewardModel(3, 1, [16, 16])
    save_reward_model(model, tmp_path)
    model = load_reward_model(tmp_path)
    venv = LearnedRewardVecEnv(DummyVecEnv([lambda: make_env("Pendulum-v1") for _ in range(3)]), model)
    venv.seed(0)
    obs = venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.uniform(-2, 2, size=(3, 1)).astype(np.float32)
        next_obs, rewards, _, infos = venv.step(actions)
        for i in range(3):
            single = model(torch.as_tensor(obs[i : i + 1]), torch.as_tensor(actions[i : i + 1])).item()
            assert rewards[i] == pytest.approx(single, rel=1e-5, abs=1e-6)
            assert "true_reward" in infos[i] and infos[i]["true_reward"] <= 0  # Pendulum's true reward
        obs = next_obs


def test_reward_model_load_reports_corrupt_file(tmp_path):
    save_reward_model(RewardModel(3, 1, [8]), tmp_path)
    (tmp_path / "reward_net.pt").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="corrupt or mismatched reward model"):
        load_reward_model(tmp_path)


@pytest.mark.parametrize("env_name", KNOWN_ENV_IDS)
def test_config_composes_and_validates_for_every_env(env_name):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"env={env_name}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    validate(resolved)
    algo = resolve_algo(resolved["agent"]["name"], resolved["env"])
    assert algo in resolved["env"]["hyperparams"]
    env = make_env(resolved["env"]["id"])
    obs, _ = env.reset(seed=0)
    assert obs.ndim == 1 and np.all(np.isfinite(obs))
    env.close()
    # Hyperparameters key stage artefacts, so they must be plain JSON (an activation stays a name),
    # and SB3 must accept them once build_model has turned names into objects.
    hp = hyperparams(resolved["env"], algo, {"buffer_size": 1000} if algo == "sac" else None)
    json.dumps(hp)
    venv = make_train_env(resolved["env"], 0, norm_obs=False, norm_reward=False, gamma=0.99)
    model = build_model(algo, venv, hp, 0)
    act = hp.get("policy_kwargs", {}).get("activation_fn")
    if act is not None:
        assert model.policy.activation_fn.__name__.lower() == act.replace("_", "")
    venv.close()


def test_bad_inputs_name_cause_and_fix():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=["env=Pendulum-v1"]), resolve=True)
    with pytest.raises(ValueError, match="unknown environment 'Nope-v0'.*HalfCheetah-v4"):
        make_env("Nope-v0")
    with pytest.raises(ValueError, match="SAC needs continuous actions"):
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            merge = OmegaConf.to_container(compose("config", overrides=["env=merge-v0"]), resolve=True)
        resolve_algo("sac", merge["env"])
    with pytest.raises(ValueError, match="unknown agent 'dqn'"):
        resolve_algo("dqn", cfg["env"])
    for path, value, match in [
        (("loss", "name"), "hinge", "unknown loss 'hinge'.*bt"),
        (("budget", "n_feedback"), 1, r"budget.n_feedback=1: must be an integer >= 2"),
        (("teacher", "sigma"), -1.0, "sigma"),
        (("segments", "length"), 500, "exceeds Pendulum-v1's episode limit of 200"),
        (("reward",), "true", "reward='true': must be one of: learned, oracle"),
    ]:
        bad = OmegaConf.to_container(OmegaConf.create(cfg))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ValueError, match=match):
            validate(bad)


def test_linear_schedules_decay_to_zero_and_a_bad_one_fails_at_validation():
    """``lin_<start>`` (rl-zoo3's spelling) anneals PPO's learning rate or clip range from start to 0 over
    training, as CleanRL does; a typo is refused when the config is validated, naming key and fix."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=[
            "env=Pendulum-v1", "agent=ppo", "+agent.overrides.learning_rate=lin_1e-3",
            "+agent.overrides.clip_range=lin_0.2"]), resolve=True)
    hp = validate(cfg).agent.hp
    assert hp["learning_rate"] == "lin_1e-3"  # plain data: it keys the stage artefacts
    model = build_model("ppo", make_train_env(cfg["env"], 0, norm_obs=False, norm_reward=False, gamma=0.9), hp, 0)
    assert [model.lr_schedule(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([1e-3, 5e-4, 0.0])
    assert model.clip_range(0.25) == pytest.approx(0.05)
    assert build_model("ppo", model.get_env(), {**hp, "learning_rate": "3e-4", "clip_range": 0.2}, 0).lr_schedule(0.1) \
        == pytest.approx(3e-4)  # a number written as a string stays constant
    for bad in ("lin_x", "lin_-1e-3", "cos_1e-3"):
        cfg["agent"]["overrides"]["learning_rate"] = bad
        with pytest.raises(ValueError, match=f"hyperparams.learning_rate='{bad}' is not a positive number.*lin_3e-4"):
            validate(cfg)


def test_unknown_group_choice_lists_options():
    from hydra.errors import MissingConfigException

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        with pytest.raises(MissingConfigException, match="Available options"):
            compose("config", overrides=["loss=hinge"])


def test_rr_pooled_tolerates_equal_strengths_across_rollout_batches(naive_rr):
    from rlpref.control.reward_net import RewardTrainConfig, _Data, _pair_loss
    from rlpref.strata import round_robin

    rng = np.random.default_rng(0)
    m, length = 8, 3
    segs = Segments(
        obs=rng.normal(size=(m, length, 2)).astype(np.float32), acts=rng.normal(size=(m, length, 1)).astype(np.float32),
        next_obs=rng.normal(size=(m, length, 2)).astype(np.float32), rewards=np.zeros((m, length), np.float32),
        returns=np.arange(m, dtype=np.float64), batch=np.repeat([0, 1], 4),
    )
    prefs = Preferences(
        chosen=np.array([1, 3, 5, 7]), rejected=np.array([0, 2, 4, 6]),
        strength=np.array([-1.0, -2.0, -1.0, -2.0]),  # ties only across rollout batches
        batch=np.array([0, 0, 1, 1]), return_chosen=np.ones(4), return_rejected=np.zeros(4),
    )
    model = RewardModel(2, 1, (8,))
    data, idx, stratum = _Data(model, segs), np.arange(4), prefs.batch.copy()
    cfg = RewardTrainConfig(hidden=(8,))
    pooled = _pair_loss(model, data, prefs, idx, stratum, "rr_pooled", cfg)
    by_batch = _pair_loss(model, data, prefs, idx, stratum, "rr", cfg)
    with torch.no_grad():
        u = model(torch.as_tensor(segs.obs).reshape(-1, 2), torch.as_tensor(segs.acts).reshape(-1, 1))
        u = u.reshape(m, length).sum(1).double()
    d = u[prefs.chosen] - u[prefs.rejected]
    # pooled: the mini-batch is one stratum; its cross-batch ties are dealt round-robin into tie-free parts
    split = torch.as_tensor(round_robin(prefs.strength))
    assert split.unique().numel() == 2
    torch.testing.assert_close(pooled.detach().double(), naive_rr(d, torch.tensor(prefs.strength), split),
                               rtol=1e-5, atol=1e-6)
    expected = naive_rr(d, torch.tensor(prefs.strength), torch.tensor(prefs.batch))
    torch.testing.assert_close(by_batch.detach().double(), expected, rtol=1e-5, atol=1e-6)
    pooled.backward()


def test_state_only_reward_ignores_actions_and_roundtrips(tmp_path):
    model = RewardModel(3, 2, (8,), use_actions=False)
    obs = torch.randn(5, 3)
    a1, a2 = torch.randn(5, 2), torch.randn(5, 2)
    torch.testing.assert_close(model(obs, a1), model(obs, a2))
    save_reward_model(model, tmp_path)
    back = load_reward_model(tmp_path)
    assert not back.use_actions and back.members[0].net[0].in_features == 3
    torch.testing.assert_close(back(obs, a1), model(obs, a1))


def test_evaluation_behaviour_summary_known_values():
    """A constant action of 0.5 on HalfCheetah: |a| = 0.5 and ctrl reward -0.1 * 6 * 0.25 per step, exactly."""
    from rlpref.control.evaluation import evaluate_policy_true

    behaviour: dict = {}
    returns = evaluate_policy_true(lambda obs: np.full((obs.shape[0], 6), 0.5), {"id": "HalfCheetah-v4"}, 3, seed=0,
                                   max_steps=20, behaviour=behaviour)
    assert returns.shape == (3,)
    assert behaviour["abs_action"] == pytest.approx(0.5)
    assert behaviour["reward_ctrl"] == pytest.approx(-0.15)
    assert np.isfinite(behaviour["x_velocity"])
    # the true return is the forward term plus the ctrl term, summed over the 20 steps
    assert returns.mean() / 20 == pytest.approx(behaviour["reward_run"] + behaviour["reward_ctrl"], rel=1e-6)  # v4 name


@pytest.mark.parametrize("env_name", KNOWN_ENV_IDS)
def test_default_budget_rounds_fall_in_distinct_rollouts_and_paper_stays_offline(env_name):
    """The rounds of protocol=offline_rounds and the iterations of protocol=online (the default) must each get
    their own rollout boundary at the default budget (a round due within the same PPO rollout as the previous
    one is silently merged into it); budget=paper is the paper's offline protocol, without rounds."""
    def _compose(*overrides):
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            return OmegaConf.to_container(compose("config", overrides=[f"env={env_name}", *overrides]), resolve=True)

    assert _compose()["protocol"]["name"] == "online"
    paper = _compose("budget=paper")
    assert paper["protocol"] == {"name": "offline"} and _compose("budget=paper", "protocol=online")["protocol"]["name"] == "online"
    for spec in (validate(_compose("protocol=offline_rounds")), validate(_compose())):
        steps = spec.budget.agent_steps
        rollout = spec.agent.hp["n_steps"] * spec.env.n_envs if spec.agent.algo == "ppo" else 1
        due = spec.protocol.due(steps)
        assert len(due) == len(spec.protocol.counts(spec.budget.n_feedback)) - 1 > 0 and due[-1] < steps
        gaps = np.diff([0, *due])
        assert gaps.min() >= rollout, f"rounds {due} closer than one rollout ({rollout} steps) of {steps}"


def test_run_progress_eta_uses_the_runs_own_pace(monkeypatch, caplog):
    """The overall line: stage k/n, elapsed, and an ETA from the run's measured seconds per unit of cost;
    a cached stage leaves the plan and does not bend the pace."""
    import logging

    import rlpref.progress as progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    run = progress.RunProgress([("source", 100.0), ("segments", 10.0), ("agent", 200.0)], seconds_per_unit=1.0,
                               every=30.0)
    assert run.eta() == 310.0  # the prior: one second per unit
    with caplog.at_level(logging.INFO, logger="rlpref"):
        with run.stage("source"):
            now[0] = 50.0
            run.advance(0.25)  # its own pace: 50 s for a quarter -> 150 s left, then 210 units at the prior
            assert run.eta() == pytest.approx(150.0 + 210.0)
            now[0] = 200.0
        assert run.eta() == pytest.approx(210 * 2.0)  # 100 units took 200 s: 2 s per unit from now on
        with run.stage("segments", cached=True):
            now[0] = 201.0
        assert run.eta() == pytest.approx(200 * 2.0)  # reused: out of the plan, pace unchanged
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "stage 1/3 source — elapsed 0:00, ETA 5:10 for the whole run (a guess until 5 % is done)"
    assert "stage 1/3 source — elapsed 0:50, ETA 6:00 for the whole run" in lines  # due after 30 s
    assert "stage 2/3 segments — reused from the cache" in lines
    # a stage of nominal cost (labelling: cost 1, built in 3 s of loading) does not set the pace of the rest
    run = progress.RunProgress([("feedback", 1.0), ("agent", 1000.0)], seconds_per_unit=0.5)
    with run.stage("feedback"):
        now[0] += 3.0
    assert run.eta() == pytest.approx(1000 * 0.5)  # the prior, not 3 s per unit (3000 s)


def test_run_progress_of_a_resumed_stage_counts_its_pace_from_where_it_restarted(monkeypatch, caplog):
    """A stage resumed at 70 % that does 10 % more in 60 s has 20 % (120 s) left, not 60/0.8*0.2 = 15 s;
    a rollout between steps keeps the line coming and says what it is doing."""
    import logging

    import rlpref.progress as progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    run = progress.RunProgress([("agent", 100.0)], seconds_per_unit=1.0, every=30.0)
    with caplog.at_level(logging.INFO, logger="rlpref"):
        with run.stage("agent"):
            bar = progress.StepProgress(1000, "agent", start=700)
            assert run.fraction == run.start_fraction == 0.7
            assert run.eta() == pytest.approx(30.0)  # not paced yet: the prior for the 30 % left
            now[0] = 60.0
            bar.update(800)
            assert run.eta() == pytest.approx(120.0)
            now[0] = 100.0
            progress.progress_note("online round 3: rolled out 5/10 steps of 8 envs")
            bar.update(800)  # no step moved, and the line was just logged: nothing new
            bar.bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-2] == "stage 1/1 agent — elapsed 1:00, ETA 2:00 for the whole run"
    assert lines[-1] == ("stage 1/1 agent — elapsed 1:40, ETA 3:20 for the whole run; "  # 100 s for 10 %
                         "online round 3: rolled out 5/10 steps of 8 envs")


def test_code_version_names_the_checkout_commit():
    import subprocess

    from rlpref.provenance import _ROOT, code_version

    got = code_version()
    head = subprocess.run(["git", "-C", str(_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout (the repository, CI's clone)
        assert got["commit"] == head.stdout.strip() and isinstance(got["dirty"], bool)
    else:  # an installed copy: nothing to name, and it says so
        assert got["commit"] is None and got["dirty"] is None
    assert got["torch"] == torch.__version__


def test_configure_compute_sets_torch_and_refuses_nonsense():
    from rlpref.runtime import configure_compute

    before = torch.get_num_threads()
    try:
        assert configure_compute(2) == 2 and torch.get_num_threads() == 2
    finally:
        configure_compute(before)
    # denormals are flushed (x86 has the flag; a product below ~1.2e-38 is 0, not a slow denormal)
    tiny = torch.tensor([1e-30]) * torch.tensor([1e-10])
    if platform.machine() in ("x86_64", "AMD64"):
        assert tiny.item() == 0.0
    torch.set_flush_denormal(False)
    try:
        assert (torch.tensor([1e-30]) * torch.tensor([1e-10])).item() > 0  # the slow path the flag avoids
    finally:
        configure_compute(before)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="thread count must be a positive integer"):
            configure_compute(bad)


def test_known_mujoco_noise_is_filtered_and_other_warnings_pass(capfd):
    import mujoco

    make_env("HalfCheetah-v4").reset(seed=0)  # Gymnasium's v4 XML sets the deprecated settotalmass
    err = capfd.readouterr()
    assert "settotalmass" not in err.out + err.err and "out of date" not in err.err
    mujoco.get_mju_user_warning()("Nan, Inf or huge value in QACC at DOF 0.")
    assert "QACC" in capfd.readouterr().err


def test_a_rejected_config_leaves_no_run_folder(tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "runs" / "x"
    proc = subprocess.run([sys.executable, "-m", "rlpref.run", "segments.length=5000", f"hydra.run.dir={run_dir}"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "segments.length=5000 exceeds" in proc.stderr
    assert not run_dir.exists() and not (tmp_path / "runs").exists()
