"""End-to-end control pipeline on Pendulum-v1 (budget=smoke): learning happens, runs resume, stages are shared."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import rlpref.control.pipeline as run_mod
import rlpref.control.stages as stages_mod
from envs import make_env
from rlpref.artifacts import ArtifactStore
from rlpref.control.evaluation import evaluate_policy_true
from rlpref.control.policies import random_policy

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _cfg(tmp_path: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "config", overrides=["env=Pendulum-v1", "budget=smoke", "protocol=offline", f"cache_dir={tmp_path / 'cache'}", *overrides]
        )
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.slow
def test_smoke_pipeline_learns_on_pendulum(tmp_path, monkeypatch):
    monkeypatch.setenv("RLPREF_QUIET", "1")
    # A 2k-step source (checkpoints at 667, 1333, 2000 steps: random to early play) gives clips enough for the
    # reward model; what must learn is the agent on r_θ, with the smoke budget's 6k steps.
    cfg = _cfg(tmp_path, "loss=rr", "seed=0", "budget.source_steps=2000")
    res = run_mod.run_pipeline(cfg, tmp_path / "run")
    rm = res["reward_model"]
    # The reward model recovered the return ordering of held-out segments.
    assert rm["pearson"] > 0.5, rm
    assert rm["val_true_accuracy"] > 0.75, rm
    # The agent trained on the *learned* reward beats a random policy on the *true* return.
    env_cfg = cfg["env"]
    rand = evaluate_policy_true(random_policy(make_env("Pendulum-v1").action_space, 0), env_cfg, 10, seed=123)
    assert res["final_return"] > rand.mean() + 200, (res["final_return"], rand.mean())
    out = tmp_path / "run"
    for name in ("results.json", "curve.csv", "agent/model.zip", "reward_net.pt", "reward_net.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["final_return"] == res["final_return"] and saved["reward"] == "learned"
    assert 0 < saved["final_behaviour"]["abs_action"] <= 2.0  # Pendulum torques lie in [-2, 2]
    built = [s for s, reused in saved["reused_stages"].items() if not reused]
    assert set(built) == {"source", "segments", "feedback", "reward_model", "agent"}  # a fresh cache
    assert saved["timings"]["total"] >= sum(saved["timings"][s] for s in built) > 0

    # The final policy renders to an mp4 that decodes and shows motion, with both returns in its name.
    import imageio.v2 as imageio

    from rlpref.video import render_run

    (video,) = render_run(out, max_steps=40, width=160, height=120)
    assert video.suffix == ".mp4" and "_true" in video.name and "_learned" in video.name, video.name
    assert video.name.endswith("_first40steps.mp4"), video.name  # a cut episode says so in its name
    frames = imageio.mimread(video)
    assert len(frames) == 41 and frames[0].ndim == 3
    assert np.abs(frames[-1].astype(float) - frames[0].astype(float)).mean() > 1.0  # the pendulum moved

    # bt with the same env/seed/teacher reuses the source agent, segments and feedback. (Its own reward model
    # and agent are kept short: only the reuse is checked here, learning was above.)
    res_bt = run_mod.run_pipeline(_cfg(tmp_path, "loss=bt", "seed=0", "budget.source_steps=2000", "reward_model.max_epochs=2",
                                       "budget.agent_steps=400", "budget.eval_every=400", "budget.eval_episodes=1"),
                                  tmp_path / "run_bt")
    assert res_bt["reused_stages"] == {
        "source": True, "segments": True, "feedback": True, "reward_model": False, "agent": False
    }


def test_resume_after_interrupt_recomputes_nothing_done(tmp_path, monkeypatch):
    monkeypatch.setenv("RLPREF_QUIET", "1")
    cfg = _cfg(tmp_path, "budget.source_steps=800", "budget.agent_steps=600", "budget.eval_every=300",
               "budget.eval_episodes=2", "budget.n_feedback=60", "budget.n_checkpoints=2")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill during the agent stage")

    monkeypatch.setattr(stages_mod, "train_agent", killed)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run_pipeline(cfg, tmp_path / "run")
    store = ArtifactStore(tmp_path / "cache")
    assert not list((tmp_path / "cache" / "agent").glob("*/manifest.json"))  # no half-written agent
    built_before = {p.parent.name for p in (tmp_path / "cache").glob("*/*/manifest.json")}
    assert len(built_before) == 4  # source, segments, feedback, reward_model

    monkeypatch.undo()
    monkeypatch.setenv("RLPREF_QUIET", "1")
    calls = []
    original = stages_mod.train_source
    monkeypatch.setattr(stages_mod, "train_source", lambda *a, **k: calls.append(1) or original(*a, **k))
    res = run_mod.run_pipeline(cfg, tmp_path / "run")
    assert not calls, "source agent was retrained"
    assert res["reused_stages"] == {"source": True, "segments": True, "feedback": True,
                                    "reward_model": True, "agent": False}
    # env steps by part, the cached stages' counts included: 3 rollout batches of 60 comparisons x 50 steps / 3
    # = 1000 steps each (8 envs x 125)
    parts = res["env_steps_parts"]
    assert parts["agent"] == res["agent_steps"] and parts["source"] >= 800 and parts["segments"] == 3 * 1000
    assert res["env_steps"] == sum(parts.values())
    from rlpref.provenance import code_version
    assert res["code"] == code_version()  # which code made it
    # A second full rerun reuses everything and reproduces the same numbers.
    again = run_mod.run_pipeline(cfg, tmp_path / "run2")
    assert all(again["reused_stages"].values())
    assert again["final_return"] == res["final_return"]
    assert again["reward_model"] == res["reward_model"]
    assert store.exists("agent", again["artifacts"]["agent"])


def _build_slowly(root: str, out: str) -> None:
    import time

    store = ArtifactStore(Path(root))

    def build(d: Path) -> dict:
        with open(out, "a") as f:
            f.write("built\n")
        time.sleep(0.5)
        (d / "x.txt").write_text("payload")
        return {}

    store.get_or_build("stage", {"a": 1}, [], build)


def test_concurrent_processes_build_an_artifact_once(tmp_path):
    log = tmp_path / "log.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_build_slowly, args=(str(tmp_path / "store"), str(log))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert log.read_text().count("built") == 1
    art = next((tmp_path / "store" / "stage").glob("*/x.txt"))
    assert art.read_text() == "payload"


def test_failed_build_leaves_no_artifact_and_corrupt_manifest_names_file(tmp_path):
    store = ArtifactStore(tmp_path)

    def boom(d: Path) -> dict:
        (d / "partial").write_text("x")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        store.get_or_build("s", {"k": 1}, [], boom)
    assert not list(tmp_path.glob("s/*/manifest.json")) and not list(tmp_path.glob("s/.*building*"))
    art = store.get_or_build("s", {"k": 1}, [], lambda d: {"ok": True})
    assert art.built and art.manifest["ok"]
    (art.path / "manifest.json").write_text("{broken")
    with pytest.raises(RuntimeError, match="corrupt artefact .*manifest.json is not valid JSON"):
        store.get_or_build("s", {"k": 1}, [], lambda d: {})


def test_stage_keys_depend_only_on_own_config():
    store = ArtifactStore(Path("/nonexistent"))
    assert store.key("s", {"a": 1, "b": 2.0}) == store.key("s", {"b": 2, "a": 1})
    assert store.key("s", {"a": 1}) != store.key("s", {"a": 2})
    assert store.key("s", {"a": 1}, ["x"]) != store.key("s", {"a": 1}, ["y"])


def test_artifacts_are_readable_by_the_group_and_stale_builds_are_cleared(tmp_path):
    import os
    import stat

    from rlpref.artifacts import atomic_write_text, save_npz

    old = os.umask(0o002)
    try:
        store = ArtifactStore(tmp_path / "cache")
        stale = tmp_path / "cache" / "s" / f".{store.key('s', {'a': 1})}.building.x1"
        stale.mkdir(parents=True)  # what a SIGKILLed build leaves behind
        art = store.get_or_build("s", {"a": 1}, [], lambda d: save_npz(d / "x.npz", {"x": np.arange(3)}))
        assert not stale.exists()
        assert stat.S_IMODE(art.path.stat().st_mode) == 0o775
        assert stat.S_IMODE((art.path / "x.npz").stat().st_mode) == 0o664
        atomic_write_text(tmp_path / "r.md", "x")
        assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_oracle_runs_only_the_agent_stage_and_is_shared_between_losses(tmp_path, monkeypatch):
    """reward=oracle: the true-reward agent alone (the upper reference), whose artefact any loss reuses."""
    monkeypatch.setenv("RLPREF_QUIET", "1")
    small = ("reward=oracle", "budget.agent_steps=600", "budget.eval_every=300", "budget.eval_episodes=2")
    res = run_mod.run_pipeline(_cfg(tmp_path, "loss=rr", *small), tmp_path / "rr")
    assert res["reused_stages"] == {"agent": False} and res["reward_model"] is None
    assert [p["step"] for p in csv_rows(tmp_path / "rr" / "curve.csv")] == ["300", "600"]
    assert np.isfinite(res["final_return"]) and not (tmp_path / "rr" / "reward_net.pt").exists()
    again = run_mod.run_pipeline(_cfg(tmp_path, "loss=bt", *small), tmp_path / "bt")
    assert again["reused_stages"] == {"agent": True} and again["final_return"] == res["final_return"]


def csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))
