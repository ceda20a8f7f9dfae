"""LLM track: strength signals on hand-made annotations, strata, the batch sampler, the MultiPref loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlpref.llm import data as D
from rlpref.llm.sampler import StratumBatchSampler
from rlpref.llm.strength import agreement, consensus, strength_keys, vote_counts
from rlpref.llm.train import build_strata
from rlpref.losses import LOSSES


def test_agreement_and_consensus_known_values():
    # clearly A, slightly A, tie, slightly B: |(1 + .5·1) − (0 + .5·1)| / 4 = 1/4
    prefs = [1.0, 0.5, 0.0, -0.5]
    assert vote_counts(prefs) == (1, 1, 1, 1, 0)
    assert agreement(prefs) == pytest.approx(0.25)
    assert consensus(prefs, chosen_is_a=True) == pytest.approx(0.5)
    assert consensus(prefs, chosen_is_a=False) == pytest.approx(0.25)
    # unanimous "clearly B": agreement 1; two clearly A vs one clearly B: 1/3
    assert agreement([-1.0, -1.0, -1.0]) == 1.0
    assert agreement([1.0, 1.0, -1.0]) == pytest.approx(1 / 3)
    # ties count in the total: one slightly-A and three ties -> 0.5 / 4
    assert agreement([0.5, 0.0, 0.0, 0.0]) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="preference scores must be in"):
        agreement([0.7])


def test_strength_keys_lower_is_stronger():
    all_prefs = [[1.0, 1.0], [0.5, -0.5], [1.0, 0.5, 0.0]]
    label = [1.0, 0.5, 0.5]
    times = [10.0, 30.0, 20.0]
    np.testing.assert_allclose(strength_keys("agreement", all_prefs, label, times), [-1.0, 0.0, -0.5])
    np.testing.assert_allclose(strength_keys("consensus", all_prefs, label, times), [-1.0, -0.5, -2 / 3])
    np.testing.assert_allclose(strength_keys("stated", all_prefs, label, times), [-1.0, -0.5, -0.5])
    np.testing.assert_allclose(strength_keys("time", all_prefs, label, times), times)
    with pytest.raises(ValueError, match="unknown strength signal 'speed'"):
        strength_keys("speed", all_prefs, label, times)


def test_annotator_strata_are_tie_free_and_never_mix_annotators():
    rng = np.random.default_rng(0)
    annotator = rng.choice(["ann1", "ann2", "ann3"], size=300)
    key = -rng.choice([0.0, 0.25, 0.5, 1.0], size=300)  # agreement takes few values: many ties
    stratum = build_strata(key, annotator)
    for s in np.unique(stratum):
        members = stratum == s
        assert np.unique(annotator[members]).size == 1
        assert np.unique(key[members]).size == members.sum()  # no tied key inside a stratum
    # the rr loss accepts these strata (it raises on ties)
    n = key.size
    LOSSES["rr"](torch.randn(n), torch.randn(n), torch.as_tensor(key), torch.as_tensor(stratum))
    pooled = build_strata(key, annotator, "global")
    assert any(np.unique(annotator[pooled == s]).size > 1 for s in np.unique(pooled))


def test_sampler_keeps_each_stratum_whole_and_covers_every_index_once():
    rng = np.random.default_rng(1)
    stratum = rng.integers(0, 40, size=500)
    stratum[:70] = 99  # one stratum larger than a batch
    sampler = StratumBatchSampler(stratum, batch_size=32, seed=3)
    for _ in range(3):
        batches = list(sampler)
        seen = np.concatenate(batches)
        assert np.array_equal(np.sort(seen), np.arange(500))
        where = {}
        for b, batch in enumerate(batches):
            for s in np.unique(stratum[batch]):
                assert s not in where, f"stratum {s} split over batches {where[s]} and {b}"
                where[s] = b
            assert len(batch) <= 32 or np.unique(stratum[batch]).size == 1
    first, second = list(StratumBatchSampler(stratum, 32, seed=3)), list(StratumBatchSampler(stratum, 32, seed=3))
    assert [list(b) for b in first] == [list(b) for b in second]  # seeded
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        StratumBatchSampler(stratum, 0)


def _annotation(who, pref, seconds):
    return {"evaluator": who, "overall_pref": pref, "overall_confidence": "confident", "time_spent": seconds,
            "helpful_pref": pref, "truthful_pref": "Tie"}


FIXTURE = [
    {"comparison_id": "c1", "prompt_id": "p1", "text": "How do I sort a list?", "completion_a": "Use sorted().",
     "model_a": "m1", "completion_b": "You cannot.", "model_b": "m2", "source": "fixture", "category": "code",
     "normal_worker_annotations": [_annotation("n1", "A-is-clearly-better", 30), _annotation("n2", "A-is-slightly-better", 50)],
     "expert_worker_annotations": [_annotation("e1", "Tie", 90)]},
    {"comparison_id": "c2", "prompt_id": "p2", "text": "Capital of France?", "completion_a": "Berlin.",
     "model_a": "m2", "completion_b": "Paris.", "model_b": "m1", "source": "fixture", "category": "qa",
     "normal_worker_annotations": [_annotation("n1", "B-is-clearly-better", 12), _annotation("n3", "B-is-clearly-better", None)],
     "expert_worker_annotations": [_annotation("e1", "B-is-slightly-better", 40)]},
    {"comparison_id": "c3", "prompt_id": "p2", "text": "Capital of France?", "completion_a": "Paris.",
     "model_a": "m1", "completion_b": "Paris, France.", "model_b": "m3", "source": "fixture", "category": "qa",
     "normal_worker_annotations": [_annotation("n2", "Tie", 20)], "expert_worker_annotations": []},
]


def test_loader_reads_multipref_schema_from_a_local_file(tmp_path):
    path = tmp_path / "multipref.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in FIXTURE))
    comps = D.load_multipref(str(path))
    assert [c.comparison_id for c in comps] == ["c1", "c2", "c3"]
    c1 = comps[0]
    assert c1.annotators == ["n1", "n2", "e1"] and c1.prefs == [1.0, 0.5, 0.0] and c1.times == [30.0, 50.0, 90.0]
    assert np.isnan(comps[1].times[1])  # missing time_spent
    assert [c.annotators for c in D.load_multipref(str(path), annotators="expert")] == [["e1"], ["e1"]]
    # test labels from the aggregated preference; c3 (all ties) is dropped
    test = D.make_test_set(comps, [0, 1, 2])
    assert test.index.tolist() == [0, 1] and test.a_wins.tolist() == [True, False] and test.n_dropped_ties == 1
    # train labels: one non-tie annotation each; c3 has none and is dropped
    pairs = D.sample_train_pairs(comps, [0, 1, 2], seed=0)
    assert sorted(pairs.index.tolist()) == [0, 1] and pairs.n_dropped_ties == 1
    assert all(p != 0 for p in pairs.label_pref)
    assert pairs.chosen_is_a.tolist() == [comps[i].prefs[0] > 0 for i in pairs.index]  # non-tie labels agree here


def test_loader_names_bad_files_and_labels(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"comparison_id": "x", "text": "t"}) + "\n")
    with pytest.raises(ValueError, match="does not have MultiPref's schema"):
        D.load_multipref(str(bad))
    with pytest.raises(FileNotFoundError, match="MultiPref file not found"):
        D.load_multipref(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="unknown overall_pref label 'A-is-best'"):
        D.parse_pref("A-is-best")
    with pytest.raises(ValueError, match="unsupported MultiPref file type '.txt'"):
        (tmp_path / "x.txt").write_text("")
        D.load_multipref(str(tmp_path / "x.txt"))


def test_split_is_by_prompt_and_deterministic():
    comps = [D.Comparison(f"c{i}", f"p{i // 3}", "q", "a", "b", ["n"], [1.0], [1.0]) for i in range(300)]
    train, test = D.split_by_prompt(comps, 0.2)
    assert (train, test) == D.split_by_prompt(list(comps), 0.2)
    assert not {comps[i].prompt_id for i in train} & {comps[i].prompt_id for i in test}
    assert 0.1 < len(test) / 300 < 0.3


def test_training_fractions_are_nested_for_a_seed():
    rng = np.random.default_rng(0)
    comps = [D.Comparison(f"c{i}", f"p{i}", "q", "a", "b", ["x", "y"], list(rng.choice([1.0, -0.5], 2)), [1.0, 2.0])
             for i in range(200)]
    idx = list(range(200))
    small, full = D.sample_train_pairs(comps, idx, 5, 0.25), D.sample_train_pairs(comps, idx, 5, 1.0)
    assert set(small.index) <= set(full.index) and len(small) == 50
    label_full = dict(zip(full.index.tolist(), full.annotator.tolist()))
    assert all(label_full[i] == a for i, a in zip(small.index.tolist(), small.annotator.tolist()))


@pytest.mark.slow
def test_offline_default_runs_end_to_end_and_learns(tmp_path, monkeypatch):
    """The main command's path on a small simulated set: MiniLM from its PyPI package, no network."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rlpref.llm.train import prepare, run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    conf = str(Path(__file__).resolve().parents[1] / "conf" / "llm")
    cfgs = {}
    for exp in ("bt", "rr_agree"):
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            cfgs[exp] = OmegaConf.create(OmegaConf.to_container(compose("config", overrides=[
                f"experiment={exp}", "data.simulated.n_comparisons=400", "progress=false", "threads=1",
                f"cache_dir={tmp_path}"]), resolve=True))
    prepared = prepare(cfgs["bt"])
    assert prepared.dataset.startswith("SIMULATED")
    for exp, cfg in cfgs.items():
        res = run(cfg, prepared)
        assert res["simulated"] and res["loss"] == cfg.loss and res["n_train"] > 250
        # Learned something about the hidden utility (chance = 0.5).
        assert res["accuracy_true"] > 0.6, (exp, res["accuracy_true"])
        assert res["accuracy"] > 0.55, (exp, res["accuracy"])
    assert res["n_strata"] > 1 and res["strength"] == "agreement"


def test_finetune_path_takes_optimiser_steps_on_cpu(tmp_path, monkeypatch):
    """model=finetune (any AutoModelForSequenceClassification; here MiniLM with a fresh head) trains with rr
    on a MultiPref-schema file. The same code path takes a hub id and device=cuda on a GPU machine."""
    import math

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rlpref.llm.train import run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    labels = ["A-is-clearly-better", "A-is-slightly-better", "B-is-slightly-better", "B-is-clearly-better"]
    rows = [
        {"comparison_id": f"c{i}", "prompt_id": f"p{i}", "text": f"Question number {i}?", "completion_a": f"Answer {i}a.",
         "completion_b": f"Reply {i}b.", "source": "fixture",
         "normal_worker_annotations": [_annotation(f"n{j}", labels[rng.integers(4)], 10.0 + j) for j in range(3)],
         "expert_worker_annotations": []}
        for i in range(30)
    ]
    path = tmp_path / "mp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    conf = str(Path(__file__).resolve().parents[1] / "conf" / "llm")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = OmegaConf.create(OmegaConf.to_container(compose("config", overrides=[
            "experiment=rr_agree", "model=finetune", "data.source=file", f"data.path={path}", "model.max_steps=3",
            "model.batch_size=4", "model.max_length=32", "progress=false", "threads=1", f"cache_dir={tmp_path}",
            "data.test_fraction=0.3"]), resolve=True))
    moved = []  # per optimiser step: total |change| of the parameters it updated
    step = torch.optim.AdamW.step

    def counting_step(self, *args, **kwargs):
        before = [p.detach().clone() for g in self.param_groups for p in g["params"]]
        out = step(self, *args, **kwargs)
        after = [p.detach() for g in self.param_groups for p in g["params"]]
        moved.append(sum(float((a - b).abs().sum()) for a, b in zip(after, before)))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    res = run(cfg)
    assert len(moved) == 3 and all(m > 0 for m in moved), moved
    assert res["steps"] == 3 and math.isfinite(res["final_loss"]) and res["model"] == "finetune:minilm"
    assert res["n_test"] > 0 and not res["simulated"]
    assert res["accuracy"] * res["n_test"] == pytest.approx(round(res["accuracy"] * res["n_test"]))  # a count
