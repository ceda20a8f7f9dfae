"""Fault injection: kills, corrupt artefacts, bad numbers, degenerate feedback, failing writes.

In every case the run either fails with an error that names the cause and the fix, or recovers as
documented; no partial artefact is ever visible to a later run and nothing is reported that was not
computed. The pipeline runs here are tiny (Pendulum-v1, a few hundred steps): they test plumbing,
not learning.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rlpref.control.agent as agent_mod
import rlpref.control.pipeline as pipeline
import rlpref.control.protocols as protocols
import rlpref.control.source as source_mod
from rlpref.artifacts import ArtifactStore, CorruptArtifactError
from rlpref.cache import main as cache_main
from rlpref.control.records import Segments
from rlpref.control.teacher import TeacherConfig, label_pairs

TINY = ["env=Pendulum-v1", "budget=smoke", "budget.source_steps=600", "budget.n_checkpoints=2",
        "budget.agent_steps=600", "budget.eval_every=300", "budget.eval_episodes=1"]
# 40 offline comparisons and one round of 10; OFFLINE: the same 40 comparisons without the round
ROUNDS = ["protocol=offline_rounds", "protocol.rounds=1", "protocol.per_round=10", "budget.n_feedback=50"]
OFFLINE = ["protocol=offline", "budget.n_feedback=40"]


@pytest.fixture
def tiny(compose_config, tmp_path, monkeypatch):
    """tiny(*overrides, rounds=True) -> the resolved config of a seconds-long run with its own cache under
    tmp_path: protocol=offline_rounds, or protocol=offline on the same offline feedback (rounds=False)."""
    monkeypatch.setenv("RLPREF_QUIET", "1")
    return lambda *extra, rounds=True: compose_config([*TINY, *(ROUNDS if rounds else OFFLINE),
                                                       f"cache_dir={tmp_path / 'cache'}", *extra])


def _manifests(cache: Path) -> set[str]:
    return {p.parent.parent.name for p in cache.glob("*/*/manifest.json")}


def _kill_after(monkeypatch, obj, name: str, calls: int) -> None:
    """Make ``obj.name`` raise KeyboardInterrupt (a kill) on its ``calls``-th call, after doing its work."""
    original, seen = getattr(obj, name), []

    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(1)
        if len(seen) == calls:
            raise KeyboardInterrupt(f"simulated kill after {name} #{calls}")
        return out

    monkeypatch.setattr(obj, name, wrapped)


@pytest.mark.parametrize("stage", ["source", "segments", "feedback", "reward_model", "agent"])
def test_kill_at_each_stage_then_rerun(tiny, tmp_path, monkeypatch, caplog, stage):
    cfg = tiny()
    cache = tmp_path / "cache"
    if stage == "source":  # mid-training, after its first checkpoint
        _kill_after(monkeypatch, source_mod._Checkpointer, "save", 1)
    elif stage == "agent":  # mid-training, at its second evaluation (the state saved after the first is kept)
        _kill_after(monkeypatch, agent_mod._Evaluator, "evaluate", 2)
    else:
        _kill_after(monkeypatch, protocols, f"{stage}_stage", 1)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(cfg, tmp_path / "run")
    assert stage not in _manifests(cache), "a killed stage must not leave a finished-looking artefact"
    assert not (tmp_path / "run" / "results.json").exists()
    monkeypatch.undo()
    monkeypatch.setenv("RLPREF_QUIET", "1")
    with caplog.at_level("INFO", logger="rlpref"):
        res = pipeline.run_pipeline(cfg, tmp_path / "run")
    assert _manifests(cache) == {"source", "segments", "feedback", "reward_model", "agent"}
    assert res["n_eval_points"] >= 2 and np.isfinite(res["final_return"])
    assert not list(cache.glob("*/.*.partial")), "a finished stage removes its resume state"
    if stage not in ("source", "agent"):
        assert "resumes from its saved state" not in caplog.text
        assert res["resumed_stages"] == {}
    if stage == "source":  # continued from the saved checkpoint instead of starting over
        manifest = json.loads(next((cache / "source").glob("*/manifest.json")).read_text())
        assert manifest["resumed_at_step"] == manifest["checkpoint_steps"][0] > 0
        assert f"source stage resumes from its saved state at step {manifest['resumed_at_step']} " in caplog.text
        assert res["resumed_stages"] == {"source": manifest["resumed_at_step"]}  # the report marks the run
    if stage == "agent":
        assert res["agent_timings"]["resumed_at_step"] == 300 and res["resumed_stages"] == {"agent": 300}
        assert "agent stage resumes from its saved state at step 300 " in caplog.text  # the user sees the resume
        assert [p["step"] for p in pipeline.read_curve(tmp_path / "run" / "curve.csv")][:2] == [300, 600]
        # the killed process's seconds up to its saved state count in the stage's time across resumes
        assert res["agent_timings"]["total_across_resumes"] > res["agent_timings"]["total"] > 0


def test_resume_state_of_another_format_is_ignored_and_the_stage_starts_over(tiny, tmp_path, monkeypatch, caplog):
    """A state saved by an older rlpref (unmarked format: the online loop then saved all its feedback, not
    what its rounds added) must not be read as today's format: the agent stage starts over instead."""
    cfg = tiny()
    _kill_after(monkeypatch, agent_mod._Evaluator, "evaluate", 2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(cfg, tmp_path / "run")
    monkeypatch.undo()
    monkeypatch.setenv("RLPREF_QUIET", "1")
    (marker,) = (tmp_path / "cache").glob("agent/.*.partial/state_*/state.json")
    info = json.loads(marker.read_text())
    assert info.pop("format") == 2
    marker.write_text(json.dumps(info))
    with caplog.at_level("WARNING", logger="rlpref"):
        res = pipeline.run_pipeline(cfg, tmp_path / "run")
    assert "in format 1, this rlpref reads format 2" in caplog.text
    assert res["agent_timings"]["resumed_at_step"] is None
    assert [p["step"] for p in pipeline.read_curve(tmp_path / "run" / "curve.csv")][:2] == [300, 600]


CORRUPTIONS = {  # stage, file pattern, how the file is damaged
    "npz": ("segments", "segments.npz", "truncate"),
    "zip": ("source", "ckpt_1/model.zip", "flip"),
    "json": ("reward_model", "reward_net.json", "edit"),
    "csv": ("agent", "curve.csv", "empty"),
    "pt": ("reward_model", "reward_net.pt", "flip"),
}


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif how == "edit":
        path.write_text(path.read_text().replace("1", "2", 1))
    else:
        path.write_text("step,true_return_mean,true_return_std,n_episodes\n")


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_artefact_file_is_named_and_the_printed_command_rebuilds_it(tiny, tmp_path, kind):
    cfg = tiny()
    first = pipeline.run_pipeline(cfg, tmp_path / "run")
    stage, rel, how = CORRUPTIONS[kind]
    art = next((tmp_path / "cache" / stage).glob("*/manifest.json")).parent
    _damage(art / rel, how)
    with pytest.raises(CorruptArtifactError) as err:
        pipeline.run_pipeline(cfg, tmp_path / "run2")
    msg = str(err.value)
    assert rel in msg and f"python -m rlpref.cache clean {art}" in msg
    assert not (tmp_path / "run2" / "results.json").exists(), "nothing reported from a corrupt artefact"
    assert cache_main(["verify", str(tmp_path / "cache")]) == 1
    assert cache_main(["clean", str(art)]) == 0  # the command the error printed
    again = pipeline.run_pipeline(cfg, tmp_path / "run2")
    assert cache_main(["verify", str(tmp_path / "cache")]) == 0
    assert again["reused_stages"][stage] is False
    if stage != "source":  # deterministic stages rebuild to the same numbers
        assert again["final_return"] == first["final_return"]


def test_corrupt_artefact_through_the_cli_prints_the_exact_commands(tmp_path):
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "rlpref.run", *TINY, *OFFLINE, f"cache_dir={cache}",
            f"hydra.run.dir={tmp_path / 'run'}"]
    import os

    env = {**os.environ, "RLPREF_QUIET": "1"}
    assert subprocess.run(args, capture_output=True, text=True, timeout=300, env=env).returncode == 0
    feedback = next((cache / "feedback").glob("*/manifest.json")).parent
    _damage(feedback / "preferences.npz", "flip")
    bad = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode != 0
    rebuild = f"python -m rlpref.cache clean {feedback} && python -m rlpref.run "
    assert rebuild in bad.stderr and "preferences.npz" in bad.stderr
    clean = subprocess.run([sys.executable, "-m", "rlpref.cache", "clean", str(feedback)], capture_output=True,
                           text=True, timeout=60, env=env)
    assert clean.returncode == 0 and "removed" in clean.stdout
    assert subprocess.run(args, capture_output=True, text=True, timeout=300, env=env).returncode == 0


def test_failing_write_leaves_no_artefact_and_a_rerun_recovers(tiny, tmp_path, monkeypatch):
    cfg = tiny()
    import rlpref.control.records as records

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    monkeypatch.setattr(records, "save_npz", disk_full)
    with pytest.raises(OSError, match="No space left"):
        pipeline.run_pipeline(cfg, tmp_path / "run")
    assert _manifests(tmp_path / "cache") == {"source"}  # segments failed to write: no segments artefact
    assert not list((tmp_path / "cache" / "segments").glob(".*building*")), "the half-built folder is removed"
    monkeypatch.undo()
    monkeypatch.setenv("RLPREF_QUIET", "1")
    assert pipeline.run_pipeline(cfg, tmp_path / "run")["reused_stages"]["source"] is True


def test_nan_or_inf_from_an_env_is_refused_with_its_place():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(4, 3, 2)).astype(np.float32)
    rewards = rng.normal(size=(4, 3)).astype(np.float32)
    good = dict(obs=obs, acts=np.zeros((4, 3, 1), np.float32), next_obs=obs, rewards=rewards,
                returns=rewards.sum(1).astype(np.float64), batch=np.array([0, 0, 1, 1]))
    Segments(**good)
    for field, value in (("obs", np.nan), ("rewards", np.inf), ("next_obs", -np.inf)):
        bad = {k: v.copy() for k, v in good.items()}
        bad[field][(2, 1) + (0,) * (bad[field].ndim - 2)] = value
        with pytest.raises(ValueError, match=rf"Segments.{field} holds 1 NaN/inf value\(s\), first in segment 2 "
                                             r"\(rollout batch 1\)"):
            Segments(**bad)


def test_an_env_that_emits_nan_stops_the_segments_stage_with_a_clear_error(tiny, tmp_path, monkeypatch):
    import gymnasium as gym

    import rlpref.control.segments as segments_mod
    from envs import make_env

    class NanReward(gym.Wrapper):
        def step(self, action):
            obs, reward, term, trunc, info = self.env.step(action)
            return obs, float("nan"), term, trunc, info

    monkeypatch.setattr(segments_mod, "make_env", lambda *a, **k: NanReward(make_env(*a, **k)))
    with pytest.raises(ValueError, match="Segments.rewards holds .* NaN/inf value"):
        pipeline.run_pipeline(tiny(rounds=False), tmp_path / "run")
    assert _manifests(tmp_path / "cache") == {"source"} and not (tmp_path / "run" / "results.json").exists()


def test_all_tie_feedback_and_empty_strata_fail_clearly(make_segments):
    segs = make_segments(40, 4, 2)
    tied = Segments(obs=segs.obs, acts=segs.acts, next_obs=segs.next_obs, rewards=np.zeros_like(segs.rewards),
                    returns=np.zeros(len(segs)), batch=segs.batch)
    with pytest.raises(ValueError, match="only 0 of .* distinct non-tied pairs exist; lower n_feedback"):
        label_pairs(tied, 20, TeacherConfig(), 0.99, np.random.default_rng(0))
    # near_tie=0 turns the filter off: every pair is then a tie, and an all-tie set still has no pair to rank
    with pytest.raises(ValueError, match="distinct non-tied pairs"):
        label_pairs(tied, 20, TeacherConfig(near_tie=0.0), 0.99, np.random.default_rng(0))
    import torch

    from rlpref.losses import LOSS_SPECS

    for name, spec in LOSS_SPECS.items():  # an empty mini-batch or stratum never reaches a loss silently
        with pytest.raises(ValueError, match="no comparisons"):
            spec.fn(torch.zeros(0), torch.zeros(0), strength=torch.zeros(0), stratum=torch.zeros(0, dtype=torch.long))


def test_cache_cli_lists_verifies_and_cleans_by_stage(tiny, tmp_path, capsys):
    pipeline.run_pipeline(tiny(rounds=False), tmp_path / "run")
    cache = tmp_path / "cache"
    (cache / "source" / ".deadbeef.building.x").mkdir()  # a killed build's leftover
    assert cache_main(["ls", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "reward_model" in out and "1 folder(s) of builds in progress or killed" in out
    assert cache_main(["verify", str(cache)]) == 0 and "5 ok, 0 corrupt" in capsys.readouterr().out
    assert cache_main(["clean", str(cache), "--stage", "agent", "--dry-run"]) == 0
    assert "agent" in _manifests(cache)
    assert cache_main(["clean", str(cache), "--stage", "agent"]) == 0
    assert _manifests(cache) == {"source", "segments", "feedback", "reward_model"}
    assert not (cache / "source" / ".deadbeef.building.x").exists()
    with pytest.raises(SystemExit):
        cache_main(["clean", str(cache), "--stage", "nope"])


def test_store_verifies_reused_artefacts_and_can_be_told_not_to(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.get_or_build("s", {"a": 1}, [], lambda d: (d / "x.txt").write_text("payload") and {})
    assert art.manifest["files"]["x.txt"]["size"] == 7
    (art.path / "x.txt").write_text("PAYLOAD")  # same size, other content
    with pytest.raises(CorruptArtifactError, match="x.txt differs from what the build wrote"):
        store.get_or_build("s", {"a": 1}, [], lambda d: {})
    (art.path / "extra.txt").write_text("?")
    (art.path / "x.txt").write_text("payload")
    with pytest.raises(CorruptArtifactError, match="extra.txt was added after the build"):
        store.get_or_build("s", {"a": 1}, [], lambda d: {})
    assert not ArtifactStore(tmp_path, verify=False).get_or_build("s", {"a": 1}, [], lambda d: {}).built


def test_cache_clean_skips_a_build_in_progress(tmp_path, capsys):
    from filelock import FileLock

    building = tmp_path / "source" / ".abc123.building.xyz"
    building.mkdir(parents=True)
    killed = tmp_path / "source" / ".def456.building.uvw"
    killed.mkdir()
    with FileLock(str(tmp_path / "source" / "abc123.lock")):  # its builder is alive
        assert cache_main(["clean", str(tmp_path)]) == 0
    assert building.exists() and not killed.exists()
    assert "a process is building it right now" in capsys.readouterr().out
