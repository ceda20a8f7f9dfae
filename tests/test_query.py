"""Active query selection (rlpref.control.query): each rule's choice on known inputs, and its plumbing."""

from __future__ import annotations

import numpy as np
import pytest

from rlpref.control.query import QueryConfig, make_selector, select_pairs
from rlpref.control.reward_net import RewardModel
from rlpref.control.teacher import TeacherConfig, label_pairs


def test_entropy_asks_the_pairs_the_model_cannot_tell_apart():
    u = np.array([[0.0, 0.1, 3.0, -2.0, 0.05]])  # one member, 5 segments
    cand = np.array([[0, 2], [0, 1], [2, 3], [0, 4], [1, 3]])
    assert select_pairs("entropy", cand, 2, u, np.zeros((5, 1))).tolist() == [3, 1]  # |ΔU| 0.05, then 0.1


def test_disagreement_asks_where_members_differ_and_needs_an_ensemble():
    u = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.3]])
    cand = np.array([[0, 2], [0, 1], [0, 3]])
    assert select_pairs("disagreement", cand, 1, u, np.zeros((4, 1))).tolist() == [1]
    with pytest.raises(ValueError, match="reward_model.ensemble >= 2"):
        select_pairs("disagreement", cand, 1, u[:1], np.zeros((4, 1)))


def _naive_greedy_logdet(x, w, n, ridge, past=None):
    a = ridge * np.eye(x.shape[1]) if past is None else past
    chosen = []
    for _ in range(n):
        best = max((j for j in range(len(x)) if j not in chosen),
                   key=lambda j: np.linalg.slogdet(a + w[j] * np.outer(x[j], x[j]))[1])
        chosen.append(best)
        a = a + w[best] * np.outer(x[best], x[best])
    return chosen


def test_dopt_rank_one_updates_equal_the_naive_greedy_log_det():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(30, 4))
    u = rng.normal(size=(1, 30))
    cand = rng.integers(0, 30, size=(40, 2))
    cand = cand[cand[:, 0] != cand[:, 1]]
    got = select_pairs("dopt", cand, 6, u, phi, ridge=0.1)
    x = phi[cand[:, 0]] - phi[cand[:, 1]]
    p = 1 / (1 + np.exp(-(u[0, cand[:, 0]] - u[0, cand[:, 1]])))
    assert got.tolist() == _naive_greedy_logdet(x, p * (1 - p), 6, 0.1)
    assert len(set(got.tolist())) == 6


def test_dopt_past_avoids_directions_already_asked():
    phi = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.1, 0.0], [0.0, 0.9]])
    u = np.zeros((1, 5))  # p = 0.5 everywhere: the design is about the features only
    cand = np.array([[1, 0], [3, 0], [2, 0], [4, 0]])  # two along x, two along y
    past = np.array([[1, 0], [3, 0]] * 5)  # x is well known already
    fresh = select_pairs("dopt", cand, 1, u, phi, ridge=1e-3)
    informed = select_pairs("dopt_past", cand, 1, u, phi, past=past, ridge=1e-3)
    assert cand[fresh[0]].tolist() == [3, 0]  # the longest difference first when nothing is known
    assert cand[informed[0]].tolist() == [2, 0]  # then the unexplored direction


def test_selection_keeps_each_strata_share_and_never_repeats_a_pair(make_segments):
    segs = make_segments(200, 5, 4)
    model = RewardModel(3, 2, (16,), ensemble=2)
    first = label_pairs(segs, 40, TeacherConfig(), 0.99, np.random.default_rng(0))
    asked = np.stack([first.chosen, first.rejected], axis=1)
    seen = []
    for name in ("entropy", "disagreement", "dopt", "dopt_past"):
        timer = []
        select = make_selector(QueryConfig(name=name, pool=5), model, segs, past=first, timer=timer)

        def spy(cand, n, select=select):
            seen.append(np.unique(segs.batch[cand]).size)
            return select(cand, n)

        more = label_pairs(segs, 40, TeacherConfig(pairing="within_batch"), 0.99, np.random.default_rng(1),
                           select=spy, pool=5, exclude=asked)
        assert np.bincount(more.batch).tolist() == [10, 10, 10, 10], name
        new = {tuple(sorted(p)) for p in zip(more.chosen.tolist(), more.rejected.tolist())}
        assert len(new) == 40 and not new & {tuple(sorted(p)) for p in asked.tolist()}, name
        assert len(timer) >= 2 and sum(timer) >= 0
    assert seen == [1] * 16  # once per rollout batch and rule, among that batch's candidates only (one stratum)
    assert make_selector(QueryConfig(), model, segs) is None  # random: the teacher's own draw


def test_active_queries_end_to_end_offline_chunks_and_online_rounds(compose_config, tmp_path, monkeypatch):
    import rlpref.control.pipeline as pipeline

    monkeypatch.setenv("RLPREF_QUIET", "1")
    cfg = compose_config(["env=Pendulum-v1", "budget=smoke", "protocol=offline_rounds", f"cache_dir={tmp_path / 'cache'}", "query=dopt",
                          "query.chunks=2", "query.pool=4", "budget.source_steps=600", "budget.n_checkpoints=2",
                          "budget.agent_steps=600", "budget.eval_every=300", "budget.eval_episodes=1",
                          "budget.n_feedback=70", "protocol.rounds=1", "protocol.per_round=10",
                          "reward_model.max_epochs=3"])
    res = pipeline.run_pipeline(cfg, tmp_path / "run")
    feedback = next((tmp_path / "cache" / "feedback").glob("*/manifest.json"))
    import json

    manifest = json.loads(feedback.read_text())
    assert manifest["n_pairs"] == 60 and manifest["seconds_select"] > 0
    assert res["online_rounds"][0]["n_new_pairs"] == 10 and res["online_rounds"][0]["seconds_select"] > 0
