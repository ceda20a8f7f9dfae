"""ResponseRank inside imitation's PreferenceComparisons loop (rlpref.interop.imitation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from imitation.algorithms import preference_comparisons as pc  # make install installs it (--no-deps)
from imitation.data.types import TrajectoryWithRew
from imitation.rewards.reward_nets import BasicRewardNet

from rlpref.interop.imitation import ResponseRankRewardLoss, RoundTagger
from rlpref.losses import rr_loss


class _Fixed(pc.PreferenceGatherer):
    """Hands out prepared preferences, one array per call."""

    def __init__(self, batches):
        super().__init__()
        self.batches = list(batches)

    def __call__(self, fragment_pairs):
        return np.asarray(self.batches.pop(0), dtype=np.float32)


def _fragment(rng, rews) -> TrajectoryWithRew:
    n = len(rews)
    return TrajectoryWithRew(obs=rng.normal(size=(n + 1, 3)).astype(np.float32),
                             acts=rng.normal(size=(n, 1)).astype(np.float32), infos=None, terminal=False,
                             rews=np.asarray(rews, np.float32))


def test_loss_is_rr_with_true_return_strength_and_gathering_rounds_as_strata():
    import gymnasium as gym

    rng = np.random.default_rng(0)
    env = gym.make("Pendulum-v1")
    torch.manual_seed(0)
    net = BasicRewardNet(env.observation_space, env.action_space, use_action=True, use_next_state=False)
    model = pc.PreferenceModel(net, discount_factor=0.9)
    tagger = RoundTagger(_Fixed([[1.0, 0.0, 0.5], [0.0, 1.0]]))
    round0 = [(_fragment(rng, [1, 2, 3]), _fragment(rng, [0, 0, 1])), (_fragment(rng, [0, 1, 0]), _fragment(rng, [3, 3, 3])),
              (_fragment(rng, [1, 1, 1]), _fragment(rng, [1, 1, 1]))]  # the last is a tie (0.5): skipped
    round1 = [(_fragment(rng, [0, 0, 0]), _fragment(rng, [5, 0, 0])), (_fragment(rng, [2, 2, 2]), _fragment(rng, [0, 1, 2]))]
    prefs = np.concatenate([tagger(round0), tagger(round1)])
    pairs = round0 + round1
    loss_fn = ResponseRankRewardLoss(tagger)
    out = loss_fn(pairs, prefs, model)

    def utility(f):
        from imitation.data import rollout

        r = model.rewards(rollout.flatten_trajectories([f]))
        return (r * 0.9 ** torch.arange(len(r), dtype=r.dtype)).sum()

    def true_return(f):
        return float(np.sum(f.rews * 0.9 ** np.arange(len(f.rews))))

    kept = [0, 1, 3, 4]
    uc = torch.stack([utility(pairs[i][0] if prefs[i] > 0.5 else pairs[i][1]) for i in kept])
    ur = torch.stack([utility(pairs[i][1] if prefs[i] > 0.5 else pairs[i][0]) for i in kept])
    strength = torch.tensor([-abs(true_return(pairs[i][0]) - true_return(pairs[i][1])) for i in kept], dtype=uc.dtype)
    expected = rr_loss(uc, ur, strength, torch.tensor([0, 0, 1, 1]))
    torch.testing.assert_close(out.loss, expected)
    assert float(out.metrics["n_strata"]) == 2.0
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    with pytest.raises(KeyError, match="did not gather"):
        loss_fn([(_fragment(rng, [0, 1]), _fragment(rng, [1, 0]))], np.array([1.0]), model)


def test_imitation_loop_trains_with_responserank_on_pendulum():
    """A few iterations of imitation's own loop with the rr loss: every round is a stratum of the loss."""
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO

    rng = np.random.default_rng(0)
    venv = make_vec_env("Pendulum-v1", rng=rng, n_envs=1)
    torch.manual_seed(0)
    net = BasicRewardNet(venv.observation_space, venv.action_space)
    before = [p.detach().clone() for p in net.parameters()]
    tagger = RoundTagger(pc.SyntheticGatherer(rng=rng))
    loss = ResponseRankRewardLoss(tagger)
    seen_strata = []
    original = loss.forward

    def spy(*args):
        out = original(*args)
        seen_strata.append(float(out.metrics["n_strata"]))
        return out

    loss.forward = spy
    trainer = pc.BasicRewardTrainer(pc.PreferenceModel(net), loss, rng=rng, epochs=1, batch_size=16)
    agent = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]})
    gen = pc.AgentTrainer(agent, net, venv, rng=rng, exploration_frac=0.0)
    loop = pc.PreferenceComparisons(gen, net, num_iterations=3, fragmenter=pc.RandomFragmenter(rng=rng),
                                    preference_gatherer=tagger, reward_trainer=trainer, fragment_length=10,
                                    initial_comparison_frac=0.25, initial_epoch_multiplier=1.0)
    stats = loop.train(total_timesteps=768, total_comparisons=48)
    venv.close()
    assert tagger.n_rounds == 4  # the initial gathering plus one per iteration
    assert max(seen_strata) >= 2  # batches mix rounds, each its own stratum
    assert np.isfinite(stats["reward_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_step_plan_runs_rlpref_rollout_count_over_imitations_rounds():
    from rlpref.interop.imitation_bench import step_plan

    plan = step_plan(250_000, 11, 512)
    assert sum(plan) == 250_368 == 489 * 512  # what rlpref's agent runs for budget.agent_steps=250000
    assert set(plan) == {44 * 512, 45 * 512} and plan == sorted(plan)  # even, the extra rollouts last


def test_bench_run_on_pendulum_counts_real_steps_and_keeps_rlprefs_eval_points():
    """A tiny imitation run as the bench makes it: the counts are the run's own, the curve rlpref's schedule."""
    from rlpref.interop.imitation_bench import imitation_run

    res = imitation_run("Pendulum-v1", 0, teacher="deterministic", steps=2000, comparisons=20, eval_every=1000,
                        episodes=1)
    assert res["agent_steps"] == 2048 == sum(res["agent_steps_per_round"])  # 2 PPO rollouts of 1024, not 2000
    assert res["n_feedback_total"] == 20
    # every training env step: the agent's plus the clips sampled for feedback (at least the initial round's)
    assert res["env_steps"] >= res["agent_steps"] + 2 * 2 * 50
    assert [p["step"] for p in res["curve"]] == [1000, 2000, 2048]  # every 1000 steps, then the final policy
    assert res["final_return"] == res["curve"][-1]["true_return_mean"]
    assert res["setup"]["temperature"] == 0.0 and res["setup"]["gatherer_discount"] == 0.9  # Pendulum PPO's gamma


def test_bench_batch_skips_finished_runs_and_restarts_a_killed_one(tmp_path, monkeypatch, load_script):
    import json
    import sys

    bench = load_script("bench_imitation")
    assert bench.parse_seeds(["0-2", "5", "1"]) == [0, 1, 2, 5]
    runs = tmp_path / "runs"
    done = runs / bench.run_name("Pendulum-v1", "deterministic", 20, 0)
    done.mkdir(parents=True)
    finished = {"tool": "imitation", "env": "Pendulum-v1", "seed": 0, "teacher": "deterministic", "final_return": -900.0,
                "agent_steps": 2048, "env_steps": 2448, "n_feedback_total": 20, "wall_s": 10.0, "restarts": 0}
    (done / "results.json").write_text(json.dumps(finished))
    killed = runs / bench.run_name("Pendulum-v1", "deterministic", 20, 1)
    killed.mkdir()
    (killed / "run.log").write_text("an attempt that was killed\n")
    launched = []
    real_run = bench.subprocess.run  # the module is shared: platform's own calls must still run

    def fake_child(cmd, **kwargs):  # what the child would write, without running imitation
        if "--child" not in cmd:
            return real_run(cmd, **kwargs)
        seed = int(cmd[cmd.index("--seeds") + 1])
        launched.append(seed)
        out = dict(finished, seed=seed, final_return=-800.0, curve=[{"step": 2048, "true_return_mean": -800.0,
                                                                      "true_return_std": 0.0, "n_episodes": 1}])
        (killed / "child.json").write_text(json.dumps(out))
        return type("Done", (), {"returncode": 0})()

    rlpref_run = runs / "Pendulum-v1-rlpref-rr-deterministic-c20-seed0"  # rlpref's side, named as its batch names it
    rlpref_run.mkdir()
    (rlpref_run / "results.json").write_text(json.dumps(
        {"env": "Pendulum-v1", "loss": "rr", "protocol": "online", "seed": 0, "final_return": -700.0, "agent_steps": 2048,
         "n_feedback_total": 20, "timings": {"total": 30.0}, "agent_timings": {"resumed_at_step": 1024, "total": 20.0}}))
    second = runs / "Pendulum-v1-rlpref-rr-deterministic-c20-seed1"
    second.mkdir()
    (second / "results.json").write_text(json.dumps(
        {"env": "Pendulum-v1", "loss": "rr", "protocol": "online", "seed": 1, "final_return": -650.0, "agent_steps": 2048,
         "n_feedback_total": 20, "timings": {"total": 30.0}, "agent_timings": {"total": 20.0}}))
    monkeypatch.setattr(bench.subprocess, "run", fake_child)
    monkeypatch.setattr(sys, "argv", ["bench_imitation.py", "--env", "Pendulum-v1", "--seeds", "0-1", "--comparisons", "20",
                                      "--out", str(tmp_path)])
    assert bench.main() == 0
    assert launched == [1]  # seed 0 was finished: skipped
    res = json.loads((killed / "results.json").read_text())
    assert res["restarts"] == 1 and (killed / "run.killed-1.log").read_text() == "an attempt that was killed\n"
    assert (killed / "curve.csv").is_file() and not (killed / "child.json").exists()
    table = (tmp_path / "table.md").read_text()
    assert "0: -900, 1: -800 (restarted)" in table and "| 2 |" in table
    assert "| Pendulum-v1 | deterministic | rlpref online rr | 2 | -675 ± 35 |" in table and "0: -700 (resumed)" in table
    # rlpref against imitation: IQMs of two runs are their means (-675, -850); rlpref's runs both end above
    # imitation's, so P(rlpref > imitation) = 1; wall: rlpref's timed run (30 s; the resumed one's earlier
    # process is unknown) over imitation's mean (10 s and the restarted seed's measured wall)
    row = next(r for r in table.splitlines() if r.startswith("| Pendulum-v1 | deterministic | rlpref online rr | 20 vs 20 |"))
    ratio = 30.0 / ((10.0 + res["wall_s"]) / 2)
    assert "| 2 / 2 | -675 [" in row and "| 175 [" in row and "| 1.00 [1.00, 1.00] |" in row
    assert row.endswith(f"| {ratio:.2f} / {ratio:.2f} |"), row
