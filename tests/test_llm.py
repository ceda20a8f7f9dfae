"""LLM track: strength signals on hand-made annotations, strata, the batch sampler, the MultiPref loader,
the typed config, and the trainer's use of the loss registry."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from rlpref.llm.config import MODEL_KINDS, LLMConfigError, LLMRunConfig
from rlpref.llm.multipref import Comparison, load_multipref, parse_pref
from rlpref.llm.sampler import StratumBatchSampler
from rlpref.llm.splits import make_test_set, sample_train_pairs, split_by_prompt
from rlpref.llm.strength import agreement, consensus, strength_keys, vote_counts
from rlpref.llm.train import TRAINERS, Prepared, build_strata
from rlpref.losses import LOSS_SPECS, LOSSES, LossSpec, RankPlan, bt_loss

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "llm"


@pytest.fixture
def compose_llm():
    """compose_llm(*overrides) -> the resolved ``conf/llm`` config as the CLI composes it (a DictConfig)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return OmegaConf.create(OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True))

    return _compose


@pytest.fixture
def tiny_prepared() -> Prepared:
    """A hand-made :class:`Prepared` (no encoder): 160 comparisons by 4 annotators over random 8-d features
    whose first coordinate carries the utility; agreement keys take few values, so they tie across annotators."""
    rng = np.random.default_rng(0)
    n, dim = 160, 8
    feat_a = rng.standard_normal((n, dim)).astype(np.float32)
    feat_b = rng.standard_normal((n, dim)).astype(np.float32)
    scores = np.array([-1.0, -0.5, 0.5, 1.0])
    comps = []
    for i in range(n):
        delta = float(feat_a[i, 0] - feat_b[i, 0])
        who = [f"ann{j}" for j in rng.choice(4, size=3, replace=False)]
        prefs = [float(scores[np.clip(np.digitize(delta + rng.normal(0, 0.5), [-1, 0, 1]), 0, 3)]) for _ in who]
        comps.append(Comparison(f"c{i}", f"p{i}", f"q{i}", f"a{i}", f"b{i}", who, prefs,
                                list(rng.uniform(5, 60, size=3)), float(feat_a[i, 0]), float(feat_b[i, 0])))
    train, test = split_by_prompt(comps, 0.25)
    return Prepared(comps, "hand-made fixture", train, make_test_set(comps, test), feat_a, feat_b)


def _nested(dotted: str, value) -> dict:
    """{"model": {"lr": value}} from "model.lr"."""
    out: dict = {}
    cur = out
    *parents, last = dotted.split(".")
    for p in parents:
        cur = cur.setdefault(p, {})
    cur[last] = value
    return out


def _run_cfg(loss: str, tmp_path: Path, **model) -> dict:
    """A plain-dict config of a few optimiser steps on :func:`tiny_prepared`."""
    return {"loss": loss, "progress": False, "threads": 1, "cache_dir": str(tmp_path),
            "model": {"batch_size": 16, "max_steps": 6, "hidden": 8, **model}}


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


def _annotation(who, pref, seconds) -> dict:
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
    comps = load_multipref(str(path))
    assert [c.comparison_id for c in comps] == ["c1", "c2", "c3"]
    c1 = comps[0]
    assert c1.annotators == ["n1", "n2", "e1"] and c1.prefs == [1.0, 0.5, 0.0] and c1.times == [30.0, 50.0, 90.0]
    assert np.isnan(comps[1].times[1])  # missing time_spent
    assert [c.annotators for c in load_multipref(str(path), annotators="expert")] == [["e1"], ["e1"]]
    # test labels from the aggregated preference; c3 (all ties) is dropped
    test = make_test_set(comps, [0, 1, 2])
    assert test.index.tolist() == [0, 1] and test.a_wins.tolist() == [True, False] and test.n_dropped_ties == 1
    # train labels: one non-tie annotation each; c3 has none and is dropped
    pairs = sample_train_pairs(comps, [0, 1, 2], seed=0)
    assert sorted(pairs.index.tolist()) == [0, 1] and pairs.n_dropped_ties == 1
    assert all(p != 0 for p in pairs.label_pref)
    assert pairs.chosen_is_a.tolist() == [comps[i].prefs[0] > 0 for i in pairs.index]  # non-tie labels agree here


def test_loader_names_bad_files_and_labels(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"comparison_id": "x", "text": "t"}) + "\n")
    with pytest.raises(ValueError, match="does not have MultiPref's schema"):
        load_multipref(str(bad))
    with pytest.raises(FileNotFoundError, match="MultiPref file not found"):
        load_multipref(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="unknown overall_pref label 'A-is-best'"):
        parse_pref("A-is-best")
    with pytest.raises(ValueError, match="unsupported MultiPref file type '.txt'"):
        (tmp_path / "x.txt").write_text("")
        load_multipref(str(tmp_path / "x.txt"))


def test_split_is_by_prompt_and_deterministic():
    comps = [Comparison(f"c{i}", f"p{i // 3}", "q", "a", "b", ["n"], [1.0], [1.0]) for i in range(300)]
    train, test = split_by_prompt(comps, 0.2)
    assert (train, test) == split_by_prompt(list(comps), 0.2)
    assert not {comps[i].prompt_id for i in train} & {comps[i].prompt_id for i in test}
    assert 0.1 < len(test) / 300 < 0.3


def test_training_fractions_are_nested_for_a_seed():
    rng = np.random.default_rng(0)
    comps = [Comparison(f"c{i}", f"p{i}", "q", "a", "b", ["x", "y"], list(rng.choice([1.0, -0.5], 2)), [1.0, 2.0])
             for i in range(200)]
    idx = list(range(200))
    small, full = sample_train_pairs(comps, idx, 5, 0.25), sample_train_pairs(comps, idx, 5, 1.0)
    assert set(small.index) <= set(full.index) and len(small) == 50
    label_full = dict(zip(full.index.tolist(), full.annotator.tolist()))
    assert all(label_full[i] == a for i, a in zip(small.index.tolist(), small.annotator.tolist()))


@pytest.mark.slow
def test_offline_default_runs_end_to_end_and_learns(tmp_path, monkeypatch, compose_llm):
    """The main command's path on a small simulated set: MiniLM from its PyPI package, no network."""
    from rlpref.llm.train import prepare, run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfgs = {exp: compose_llm(f"experiment={exp}", "data.simulated.n_comparisons=400", "progress=false", "threads=1",
                             f"cache_dir={tmp_path}") for exp in ("bt", "rr_agree")}
    prepared = prepare(cfgs["bt"])
    assert prepared.dataset.startswith("SIMULATED")
    for exp, cfg in cfgs.items():
        res = run(cfg, prepared)
        assert res["simulated"] and res["loss"] == cfg.loss and res["n_train"] > 250
        # Learned something about the hidden utility (chance = 0.5).
        assert res["accuracy_true"] > 0.6, (exp, res["accuracy_true"])
        assert res["accuracy"] > 0.55, (exp, res["accuracy"])
    assert res["n_strata"] > 1 and res["strength"] == "agreement"


def test_finetune_path_takes_optimiser_steps_on_cpu(tmp_path, monkeypatch, compose_llm):
    """model=finetune (any AutoModelForSequenceClassification; here MiniLM with a fresh head) trains with rr
    on a MultiPref-schema file. The same code path takes a hub id and device=cuda on a GPU machine."""
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
    cfg = compose_llm("experiment=rr_agree", "model=finetune", "data.source=file", f"data.path={path}",
                      "model.max_steps=3", "model.batch_size=4", "model.max_length=32", "progress=false", "threads=1",
                      f"cache_dir={tmp_path}", "data.test_fraction=0.3")
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


# --------------------------------------------------------------------------------------------
# Typed config
# --------------------------------------------------------------------------------------------

#: The fallbacks the trainer always used for a missing key where the yaml groups set another value.
DEFAULTS_OVERRIDDEN_BY_YAML = {"name", "model.epochs", "model.min_steps", "model.weight_decay", "model.grad_clip"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _numeric_keys(cls=LLMRunConfig, prefix: str = "") -> set[str]:
    """Dotted keys of every int/float field (optional or not) of the config tree."""
    keys = set()
    for name, tp in typing.get_type_hints(cls).items():
        if name.startswith("_"):
            continue
        base = [a for a in typing.get_args(tp) if a is not type(None)][0] if typing.get_args(tp) else tp
        if dataclasses.is_dataclass(base):
            keys |= _numeric_keys(base, f"{prefix}{name}.")
        elif base in (int, float):
            keys.add(prefix + name)
    return keys


def test_config_defaults_equal_the_default_composition(compose_llm):
    defaults = _flat(LLMRunConfig().to_dict())
    composed = _flat(LLMRunConfig.from_config(compose_llm()).to_dict())
    assert defaults.keys() == composed.keys()
    differ = {k for k in defaults if defaults[k] != composed[k]}
    assert differ == DEFAULTS_OVERRIDDEN_BY_YAML, {k: (defaults[k], composed[k]) for k in differ}


@pytest.mark.parametrize("model", ["frozen", "finetune"])
def test_every_experiment_composes_into_typed_yaml_values(compose_llm, model):
    from omegaconf import OmegaConf

    model_yaml = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml"))
    for exp_file in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        exp_yaml = OmegaConf.to_container(OmegaConf.load(exp_file))
        rc = LLMRunConfig.from_config(compose_llm(f"experiment={exp_file.stem}", f"model={model}"))
        assert (rc.experiment, rc.loss, rc.strength, rc.shuffle_strength) == (
            exp_yaml["name"], exp_yaml["loss"], exp_yaml["strength"], exp_yaml["shuffle_strength"])
        assert rc.strata.kind == exp_yaml.get("strata", {}).get("kind", "annotator")
        for key, value in model_yaml.items():
            assert getattr(rc.model, key) == value, (exp_file.stem, key)
        assert type(rc.model.lr) is float and type(rc.model.batch_size) is int


def test_null_keys_take_their_defaults_and_optional_keys_stay_null():
    rc = LLMRunConfig.from_config({"model": {"min_steps": None, "grad_clip": None, "max_steps": None},
                                   "strata": {"k": None}, "data": {"simulated": None}, "threads": None})
    assert (rc.model.min_steps, rc.model.grad_clip, rc.model.max_steps, rc.strata.k, rc.threads) == (0, 0.0, None, None, 2)
    assert rc.data.simulated.n_comparisons == 5000


@pytest.mark.parametrize("cfg, section, key, a_valid_key", [
    ({"lossx": "bt"}, "top-level", "lossx", "loss"),
    ({"model": {"hiden": 64}}, "model", "hiden", "hidden"),
    ({"data": {"simulated": {"n_comparison": 5}}}, "data.simulated", "n_comparison", "n_comparisons"),
    ({"strata": {"size": 8}}, "strata", "size", "k"),
    ({"eval": {"rewardbenh": True}}, "eval", "rewardbenh", "rewardbench"),
])
def test_config_rejects_unknown_keys_naming_them(cfg, section, key, a_valid_key):
    with pytest.raises(LLMConfigError, match=rf"^unknown llm {re.escape(section)} keys {key}; valid keys: ") as err:
        LLMRunConfig.from_config(cfg)
    assert a_valid_key in str(err.value).split("valid keys: ")[1].split(", ")


LOSS_CHOICES = "one of: " + ", ".join(sorted(LOSS_SPECS))

WRONG_TYPE = [
    ("model.lr", "abc", "a number > 0"),
    ("model.lr", True, "a number > 0"),
    ("seed", "0", "an integer >= 0"),
    ("seed", 1.5, "an integer >= 0"),
    ("threads", True, "an integer >= 1"),
    ("progress", "yes", "true or false"),
    ("save_model", 1, "true or false"),
    ("shuffle_strength", "false", "true or false"),
    ("data.simulated.n_normal", 2.5, "an integer >= 2"),
    ("strata.k", "auto", "an integer >= 1 (or null)"),
    ("device", ["cpu"], "a string"),
    ("data.path", 1.5, "a string (or null)"),
    ("loss", "rank", LOSS_CHOICES),
    ("strength", "speed", "one of: agreement, consensus, stated, time"),
    ("model.kind", "lora", "one of: frozen, finetune"),
    ("strata.kind", "pooled", "one of: annotator, prompt, global"),
    ("data.source", "web", "one of: auto, file, hub, simulated, ukpconvarg1"),
    ("data.annotators", "crowd", "one of: all, normal, expert"),
    ("model.dtype", "float8", "a torch dtype name such as bfloat16, float16 or float32 (or null)"),
]

OUT_OF_RANGE = [
    ("seed", -1, "an integer >= 0"),
    ("fraction", 0.0, "a number > 0 and <= 1"),
    ("fraction", 1.5, "a number > 0 and <= 1"),
    ("threads", 0, "an integer >= 1"),
    ("data.test_fraction", 0.0, "a number > 0 and < 1"),
    ("data.test_fraction", 1.0, "a number > 0 and < 1"),
    ("data.simulated.n_comparisons", 0, "an integer >= 1"),
    ("data.simulated.n_normal", 1, "an integer >= 2"),
    ("data.simulated.n_expert", 1, "an integer >= 2"),
    ("data.simulated.seed", -1, "an integer >= 0"),
    ("data.simulated.max_doc_items", -1, "an integer >= 0"),
    ("data.ukp.folds", 1, "an integer >= 2 and <= 16"),
    ("data.ukp.folds", 17, "an integer >= 2 and <= 16"),
    ("data.ukp.fold", -1, "an integer >= 0 and <= 15"),
    ("model.batch_size", 0, "an integer >= 1"),
    ("model.epochs", 0, "an integer >= 1"),
    ("model.min_steps", -1, "an integer >= 0"),
    ("model.max_steps", 0, "an integer >= 1 (or null)"),
    ("model.lr", 0.0, "a number > 0"),
    ("model.lr", float("inf"), "a number > 0"),
    ("model.weight_decay", -0.01, "a number >= 0"),
    ("model.grad_clip", -1.0, "a number >= 0"),
    ("model.max_seq_length", 0, "an integer >= 1"),
    ("model.encode_batch_size", 0, "an integer >= 1"),
    ("model.hidden", -1, "an integer >= 0"),
    ("model.dropout", 1.0, "a number >= 0 and < 1"),
    ("model.dropout", -0.1, "a number >= 0 and < 1"),
    ("model.max_length", 0, "an integer >= 1"),
    ("model.eval_batch_size", 0, "an integer >= 1"),
    ("strata.k", 0, "an integer >= 1 (or null)"),
]

#: Values at the edge of each range that must pass (a bound one step too strict fails here).
EDGE_VALID = [("seed", 0), ("fraction", 1.0), ("data.simulated.n_normal", 2), ("data.simulated.max_doc_items", 0),
              ("model.min_steps", 0), ("model.max_steps", 1), ("model.weight_decay", 0.0), ("model.grad_clip", 0.0),
              ("model.hidden", 0), ("model.dropout", 0.0), ("strata.k", 1), ("model.lr", 1e-9),
              ("model.dtype", "bfloat16")]


@pytest.mark.parametrize("key, value, allowed", WRONG_TYPE + OUT_OF_RANGE, ids=lambda x: repr(x)[:30])
def test_config_error_names_key_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(LLMConfigError) as err:
        LLMRunConfig.from_config(_nested(key, value))
    assert str(err.value) == f"llm {key}={value!r}: must be {allowed}"


def test_every_numeric_key_has_an_out_of_range_case():
    assert {key for key, _, _ in OUT_OF_RANGE} == _numeric_keys()


@pytest.mark.parametrize("key, value", EDGE_VALID)
def test_values_at_the_edge_of_a_range_pass(key, value):
    obj = LLMRunConfig.from_config(_nested(key, value))
    *sections, name = key.split(".")
    for part in sections:
        obj = getattr(obj, part)
    assert getattr(obj, name) == value


def test_config_sections_must_be_mappings_and_file_source_needs_a_path():
    with pytest.raises(LLMConfigError, match=r"^llm model='frozen': must be a mapping with keys .*\blr\b"):
        LLMRunConfig.from_config({"model": "frozen"})
    with pytest.raises(LLMConfigError, match=r"^llm top-level=\['loss=bt'\]: must be a mapping with keys "):
        LLMRunConfig.from_config(["loss=bt"])
    with pytest.raises(LLMConfigError, match=r"data.source=file needs data.path="):
        LLMRunConfig.from_config({"data": {"source": "file"}})


def test_typed_config_is_frozen_and_checked_on_every_construction():
    rc = LLMRunConfig.from_config({"model": {"lr": 1, "epochs": 3.0}, "data": {"split_salt": 7}})
    assert (rc.model.lr, type(rc.model.lr), rc.model.epochs, rc.data.split_salt) == (1.0, float, 3, "7")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rc.model.lr = 0.5
    with pytest.raises(LLMConfigError, match=r"^llm fraction=2.0: must be a number > 0 and <= 1$"):
        dataclasses.replace(rc, fraction=2.0)
    with pytest.raises(LLMConfigError, match=r"^llm model.hidden=-3: must be an integer >= 0$"):
        type(rc.model)(hidden=-3)
    assert LLMRunConfig.from_config(rc) is rc
    assert LLMRunConfig.from_config({"loss": "bt"}).experiment == "bt"  # unnamed: the loss names it


# --------------------------------------------------------------------------------------------
# The trainer consults the loss registry
# --------------------------------------------------------------------------------------------


def test_trainers_cover_every_model_kind():
    assert set(TRAINERS) == set(MODEL_KINDS)


def test_trainer_passes_each_batch_what_the_loss_spec_asks(monkeypatch, tiny_prepared, tmp_path):
    """A loss added to the registry trains without any change to the trainer; its spec alone decides the
    inputs: nothing, the batch's strength and strata, a rank plan of those strata, or a pooled plan."""
    from rlpref.llm.train import run
    from rlpref.losses import make_rank_plan, pooled_rank_plan

    calls: dict[str, list] = {}

    def recorder(name):
        def fn(u_chosen, u_rejected, **kwargs):
            calls.setdefault(name, []).append((u_chosen.shape[0], kwargs))
            return bt_loss(u_chosen, u_rejected)
        return fn

    specs = [LossSpec("probe_plain", recorder("probe_plain"), "no strength"),
             LossSpec("probe_strength", recorder("probe_strength"), "strength", uses_strength=True),
             LossSpec("probe_rank", recorder("probe_rank"), "ranking", uses_strength=True, ranks=True),
             LossSpec("probe_pooled", recorder("probe_pooled"), "pooled", uses_strength=True, pooled=True, ranks=True)]
    for spec in specs:
        monkeypatch.setitem(LOSS_SPECS, spec.name, spec)
        res = run(_run_cfg(spec.name, tmp_path), tiny_prepared)
        assert res["loss"] == spec.name and res["steps"] == 6 and len(calls[spec.name]) == 6
    assert all(kw == {} for _, kw in calls["probe_plain"])
    for (n, kw), (_, rank), (_, pooled) in zip(calls["probe_strength"], calls["probe_rank"], calls["probe_pooled"]):
        assert set(kw) == {"strength", "stratum"} and kw["strength"].shape == kw["stratum"].shape == (n,)
        assert kw["strength"].dtype == torch.float64 and kw["stratum"].dtype == torch.long
        assert bool(((kw["strength"] <= 0) & (kw["strength"] >= -1)).all())  # -agreement keys
        # Same seed, same batches: the plans are those of this batch's keys (rank: its strata; pooled: one pool).
        assert set(rank) == {"plan"} and isinstance(rank["plan"], RankPlan)
        assert torch.equal(rank["plan"].index, make_rank_plan(kw["strength"], kw["stratum"]).index)
        assert torch.equal(pooled["plan"].index, pooled_rank_plan(kw["strength"]).index)


@pytest.mark.parametrize("loss", sorted(LOSS_SPECS))
def test_run_takes_raw_or_typed_config_alike_for_every_registered_loss(loss, tiny_prepared, tmp_path):
    from rlpref.llm.train import run

    raw = run(_run_cfg(loss, tmp_path), tiny_prepared)
    typed = run(LLMRunConfig.from_config(_run_cfg(loss, tmp_path)), tiny_prepared)
    for r in (raw, typed):
        r.pop("seconds")
        assert isinstance(r.pop("_model"), torch.nn.Module)
    assert raw == typed
    assert raw["steps"] == 6 and math.isfinite(raw["final_loss"]) and (raw["loss"], raw["experiment"]) == (loss, loss)
    assert raw["n_test"] == tiny_prepared.test.index.shape[0] and not raw["simulated"]


def test_a_bad_config_fails_before_any_work(monkeypatch):
    from rlpref.llm.train import prepare, run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LLMConfigError, match=r"^llm model.lr='abc': must be a number > 0$"):
        run({"model": {"lr": "abc"}})
    with pytest.raises(LLMConfigError, match=r"^unknown llm data keys pth; valid keys: "):
        prepare({"data": {"pth": "x.jsonl"}})


def test_saved_head_is_safetensors_not_pickle(tiny_prepared, tmp_path):
    from safetensors.torch import load_file

    from rlpref.llm.train import _write_results, run

    res = run(_run_cfg("rr", tmp_path), tiny_prepared)
    state = {k: v.clone() for k, v in res["_model"].state_dict().items()}
    path = _write_results(res, tmp_path / "out", save_model=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["head.safetensors", "results.json"]
    loaded = load_file(str(path.parent / "head.safetensors"))
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert json.loads(path.read_text())["accuracy"] == res["accuracy"]
