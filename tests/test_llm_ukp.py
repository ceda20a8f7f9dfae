"""UKPConvArg1 in the LLM track: loader, safety, folds, cross-topic metrics, config refusals, report.

Every file here is written by the fixture in the published format (never the corpus itself).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("defusedxml")

from rlpref.llm import ukpconvarg1 as ukp  # noqa: E402
from rlpref.llm.config import LLMConfigError, LLMRunConfig  # noqa: E402
from rlpref.llm.crosstopic import CrossTopicEval, debate_folds, make_fold  # noqa: E402
from rlpref.llm.strength import agreement  # noqa: E402

DEBATES = ["Tea or Coffee?", "Cats vs. Dogs", "Is Rain Good?", "Cities or Villages?"]


def _assignment(worker: str, value: str, hit: str, seconds: int) -> str:
    m, s = divmod(seconds, 60)
    return f"""      <mTurkAssignment>
        <turkID>{worker}</turkID>
        <hitID>{hit}</hitID>
        <assignmentAcceptTime>2016-02-22 21:40:00.0 UTC</assignmentAcceptTime>
        <assignmentSubmitTime>2016-02-22 21:{40 + m:02d}:{s:02d}.0 UTC</assignmentSubmitTime>
        <value>{value}</value>
        <reason>because</reason>
        <turkCompetence>0.9</turkCompetence>
      </mTurkAssignment>
"""


def _pair_xml(pid: str, a1: str, a2: str, debate: str, stance: str, votes: list[str], hit: str,
              gold: str | None = None, seconds: int = 120) -> str:
    arg = "\n".join(f"""    <arg{k}>
      <author>someone</author>
      <stance>{stance}</stance>
      <text>Argument {i} about {debate}, stance {stance}, quality {3 - int(i) % 50}.</text>
      <id>{i}</id>
    </arg{k}>""" for k, i in ((1, a1), (2, a2)))
    assigns = "".join(_assignment(f"W{j}", v, hit, seconds) for j, v in enumerate(votes))
    g = f"\n    <goldLabel>{gold}</goldLabel>" if gold else ""
    return f"""  <annotatedArgumentPair>
    <id>{pid}</id>
{arg}
    <debateMetaData>
      <title>{debate}</title>
      <url>http://example.org</url>
    </debateMetaData>
    <mTurkAssignments>
{assigns}    </mTurkAssignments>{g}
  </annotatedArgumentPair>
"""


VOTES = [  # margins +5, +3, +1, 0 (tie), all equal; the majority always agrees with the gold ranking
    ["a1"] * 5, ["a1", "a1", "a1", "a1", "a2"], ["a2", "a1", "a1", "equal", "equal"],
    ["a1", "a2", "equal", "equal", "equal"], ["equal"] * 5,
]


def write_ukp(folder: Path, strict: bool = True, ranking: bool = True) -> Path:
    """4 debates × 2 stances × 5 pairs over 4 arguments per topic (argument j has quality 3 − j and, as in
    the published ranking, rank score 0.1·(j + 1): lower = more convincing); Strict keeps the first 2
    pairs of each topic."""
    full, sx, rk = folder / ukp.FULL, folder / ukp.STRICT_XML, folder / ukp.RANKING
    for d in (full, sx, rk):
        d.mkdir(parents=True)
    for di, debate in enumerate(DEBATES):
        for stance in ("yes", "no"):
            base = 100 * (di + 1) + (0 if stance == "yes" else 50)
            ids = [str(base + j) for j in range(4)]
            pairs = [(ids[0], ids[1]), (ids[0], ids[2]), (ids[1], ids[3]), (ids[2], ids[3]), (ids[1], ids[2])]
            stem = f"d{di}_{stance}"
            body = [_pair_xml(f"{a}_{b}", a, b, debate, stance, v, f"H{base}{k // 3}",
                              None if k == 4 else ("a1" if k < 2 else "a2"), 60 * (k + 1))
                    for k, ((a, b), v) in enumerate(zip(pairs, VOTES))]
            (full / f"{stem}.xml").write_text('<?xml version="1.0"?>\n<list>\n' + "".join(body) + "</list>\n")
            if strict:
                s_body = [_pair_xml(f"{a}_{b}", a, b, debate, stance, v, "H", g)
                          for (a, b), v, g in zip(pairs[:2], VOTES[:2], ("a1", "a1"))]
                (sx / f"{stem}.xml").write_text('<?xml version="1.0"?>\n<list>\n' + "".join(s_body) + "</list>\n")
            if ranking:
                rows = "".join(f"{i}\t{0.1 * (j + 1):.2f}\ttext {i}\n" for j, i in enumerate(ids))  # lower = better
                (rk / f"{stem}.csv").write_text("#id\trank\targument\n" + rows)
    if not strict:
        sx.rmdir()
    if not ranking:
        rk.rmdir()
    return folder


@pytest.fixture
def compose_ukp():
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[1] / "conf" / "llm"

    def _compose(overrides):
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return _compose


@pytest.fixture
def ukp_folder(tmp_path) -> Path:
    return write_ukp(tmp_path / "data")


def test_loader_reads_the_published_format_and_counts_what_it_keeps(ukp_folder):
    c = ukp.load_ukpconvarg1(ukp_folder)
    r = c.report
    assert (r.files, r.pairs_read, r.votes_read) == (8, 40, 200)
    assert (r.tied, r.all_equal, r.without_gold) == (16, 8, 8)  # margin 0: the 1-1 pair and the all-equal one
    assert (r.strict_pairs, r.strict_not_in_full, r.ranked_arguments, r.ranked_not_in_full) == (16, 0, 32, 0)
    assert c.pairs[0].topic == "d0_no"  # files in sorted order
    q = next(q for q in c.pairs if q.pair_id == "100_101")
    assert (q.pair_id, q.topic, q.debate, q.stance) == ("100_101", "d0_yes", DEBATES[0], "yes")
    assert (q.margin, q.gold) == (5, "a1")
    assert q.votes[0] == ukp.Vote("W0", "a1", "H1000", 60.0)
    assert c.strict == {f"{b + o}_{b + o + k}": "a1" for b in (100, 150, 200, 250, 300, 350, 400, 450)
                        for o, k in ((0, 1), (0, 2))}
    assert c.ranking["100"] == pytest.approx(0.1) and c.convincingness["100"] == pytest.approx(-0.1)
    assert "skipped: none" in r.lines()
    assert ukp.ranking_orientation(c)["strict"] == {"pairs": 16, "winner_higher": 0.0, "winner_lower": 1.0}


def test_comparisons_carry_every_vote_and_agreement_is_the_vote_margin(ukp_folder):
    comps = ukp.to_comparisons(ukp.load_ukpconvarg1(ukp_folder))
    comps = [c for c in comps if c.prompt_id == "d0_yes"]
    c = comps[1]  # votes a1 a1 a1 a1 a2
    assert c.prompt == f"{DEBATES[0]} Stance: yes" and c.prompt_id == "d0_yes"
    assert c.prefs == [1.0, 1.0, 1.0, 1.0, -1.0] and c.annotators == ["W0", "W1", "W2", "W3", "W4"]
    assert agreement(c.prefs) == pytest.approx(3 / 5)
    assert agreement(comps[2].prefs) == pytest.approx(1 / 5)  # a2 a1 a1 equal equal
    assert (c.utility_a, c.utility_b) == (pytest.approx(-0.1), pytest.approx(-0.3))  # convincingness: A better


def test_a_repeated_pair_id_is_skipped_and_reported(ukp_folder):
    src = ukp_folder / ukp.FULL / "d0_yes.xml"
    (ukp_folder / ukp.FULL / "d0_yes_copy.xml").write_text(src.read_text())
    r = ukp.load_ukpconvarg1(ukp_folder).report
    assert r.pairs_read == 40 and r.skipped == {"repeated pair id (first occurrence kept)": 5}


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<list><annotatedArgumentPair><id>&lol3;</id></annotatedArgumentPair></list>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE list [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<list><annotatedArgumentPair><id>&xxe;</id></annotatedArgumentPair></list>
"""


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, EXTERNAL], ids=["billion-laughs", "external-entity"])
def test_hostile_xml_is_refused_naming_the_file(ukp_folder, payload):
    bad = ukp_folder / ukp.FULL / "d9_evil.xml"
    bad.write_text(payload)
    with pytest.raises(ukp.UKPFormatError, match=r"d9_evil\.xml: refused unsafe XML") as e:
        ukp.load_ukpconvarg1(ukp_folder)
    assert "root:" not in str(e.value)  # nothing of /etc/passwd was read


@pytest.mark.parametrize("old,new,message", [
    ("<value>a2</value>", "<value>a3</value>", r"d0_yes\.xml, pair 1 \(id 100_102\), assignment 4: value 'a3'"),
    ("<turkID>W2</turkID>", "", r"d0_yes\.xml, pair 0 \(id 100_101\), assignment 2: missing <turkID>"),
    ("</list>", "", r"d0_yes\.xml: not well-formed XML"),
])
def test_a_malformed_pair_or_file_is_named(ukp_folder, old, new, message):
    p = ukp_folder / ukp.FULL / "d0_yes.xml"
    p.write_text(p.read_text().replace(old, new, 1))
    with pytest.raises(ukp.UKPFormatError, match=message):
        ukp.load_ukpconvarg1(ukp_folder)


def test_strict_csv_and_missing_optional_folders(tmp_path):
    folder = write_ukp(tmp_path / "data", strict=False, ranking=False)
    c = ukp.load_ukpconvarg1(folder)
    assert c.strict is None and c.ranking is None
    csv_dir = folder / ukp.STRICT_CSV
    csv_dir.mkdir()
    (csv_dir / "d0_yes.csv").write_text("#id\tlabel\ta1\ta2\n100_101\ta1\tx\ty\n100_102\ta2\tx\ty\n")
    assert ukp.read_strict(folder) == {"100_101": "a1", "100_102": "a2"}
    (csv_dir / "d0_yes.csv").write_text("#id\tlabel\ta1\ta2\n100_101\tequal\tx\ty\n")
    with pytest.raises(ukp.UKPFormatError, match=r"d0_yes\.csv, line 2: label 'equal'"):
        ukp.read_strict(folder)


def test_locate_uses_path_then_cache_and_otherwise_says_where_to_put_the_files(ukp_folder, tmp_path, monkeypatch):
    assert ukp.locate(str(ukp_folder), "unused") == ukp_folder
    assert ukp.locate(str(ukp_folder.parent), "unused") == ukp_folder  # the repository root: data/ inside
    with pytest.raises(ukp.UKPDataUnavailable, match=r"data\.path=.*no UKPConvArg1-full-XML"):
        ukp.locate(str(tmp_path / "nowhere"), "unused")
    calls = []

    def offline(cache, *a, **k):
        calls.append(cache)
        raise OSError("network unreachable")

    monkeypatch.setattr(ukp, "download", offline)
    where = r"^UKPConvArg1 not found: put the data/ folder of .* or pass data\.path="
    with pytest.raises(ukp.UKPDataUnavailable, match=where):
        ukp.locate(None, str(tmp_path / "cache"))
    assert calls == [tmp_path / "cache" / "ukpconvarg1"]
    with pytest.raises(ukp.UKPDataUnavailable):
        ukp.locate(None, str(tmp_path / "cache"), allow_download=False)
    assert len(calls) == 1
    (tmp_path / "cache").mkdir()
    ukp_folder.rename(tmp_path / "cache" / "ukpconvarg1")
    assert ukp.locate(None, str(tmp_path / "cache")) == tmp_path / "cache" / "ukpconvarg1"


def test_download_fills_the_cache_in_one_rename_and_keeps_only_file_names(tmp_path, monkeypatch):
    files = {ukp.FULL: {"../d0_yes.xml": b"<list/>"}, ukp.RANKING: {"d0_yes.csv": b"#id\trank\targument\n"}}

    def fake_get(url, timeout):
        folder = url.rsplit("/", 1)[1]
        if url.startswith("https://api.github.com/"):
            return json.dumps([{"name": n, "download_url": f"https://raw/{folder}/{n}"} for n in files[folder]]).encode()
        sub, name = url.split("https://raw/", 1)[1].split("/", 1)
        return files[sub][name]

    monkeypatch.setattr(ukp, "_get", fake_get)
    cache = ukp.download(tmp_path / "c" / "ukpconvarg1", folders=(ukp.FULL, ukp.RANKING))
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()) == [
        f"{ukp.RANKING}/d0_yes.csv", f"{ukp.FULL}/d0_yes.xml"]  # "../" dropped: nothing lands outside
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["ukpconvarg1"]  # no temporary folder left

    monkeypatch.setattr(ukp, "_get", lambda url, timeout: (_ for _ in ()).throw(OSError("reset")))
    with pytest.raises(OSError):
        ukp.download(tmp_path / "d" / "ukpconvarg1")
    assert list((tmp_path / "d").iterdir()) == []  # an interrupted download leaves nothing


def test_cli_without_data_fails_with_one_line_and_exit_2(tmp_path, monkeypatch, capsys, compose_ukp):
    from rlpref.llm import train

    monkeypatch.setattr(ukp, "download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(SystemExit) as e:
        train.cli_run(compose_ukp(["data=ukpconvarg1", f"cache_dir={tmp_path}"]), tmp_path / "run")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlpref.llm.train: error: UKPConvArg1 not found: put the data/ folder")
    assert not (tmp_path / "run").exists()


def test_data_group_selects_ukp_and_topic_strata_that_an_experiment_may_override(compose_ukp):
    rc = LLMRunConfig.from_config(compose_ukp(["data=ukpconvarg1"]))
    assert (rc.data.source, rc.strata.kind, rc.data.ukp.folds, rc.loss) == ("ukpconvarg1", "prompt", 8, "rr")
    assert (rc.model.hidden, rc.model.batch_size) == (0, 512)  # model/frozen_ukp.yaml
    assert LLMRunConfig.from_config(compose_ukp(["data=ukpconvarg1", "experiment=rr_pooled"])).strata.kind == "global"
    assert LLMRunConfig.from_config(compose_ukp([])).data.source == "auto"


@pytest.mark.parametrize("strength,reason", [("stated", "state no strength"), ("time", "HIT of 3 pairs")])
def test_stated_and_time_strength_are_refused_for_ukp(strength, reason):
    with pytest.raises(LLMConfigError, match=rf"^llm strength={strength}: UKPConvArg1 .*{reason}"):
        LLMRunConfig.from_config({"data": {"source": "ukpconvarg1"}, "strength": strength})
    assert LLMRunConfig.from_config({"strength": strength}).strength == strength  # MultiPref keeps them
    with pytest.raises(LLMConfigError, match=r"data\.ukp\.fold=4: must be < data\.ukp\.folds=4"):
        LLMRunConfig.from_config({"data": {"ukp": {"folds": 4, "fold": 4}}})


def test_time_signal_measures_the_rank_correlation_of_hit_time_with_margin():
    def pair(pid, votes, seconds, hit):
        return ukp.ArgumentPair(pid, "t", "d", "s", "1", "2", "x", "y",
                                tuple(ukp.Vote(f"W{j}", v, hit, seconds) for j, v in enumerate(votes)), None)

    pairs = [pair(str(k), VOTES[k], 100 * (k + 1), f"H{k}") for k in range(4)]  # margins 5, 3, 1, 0
    out = ukp.time_signal(pairs)
    assert out["assignments"] == 20
    assert out["spearman_time_margin"] == pytest.approx(-1.0)
    assert out["spearman_time_margin_within_worker"] == pytest.approx(-1.0)


def test_folds_hold_out_whole_debates_with_both_stances(ukp_folder):
    c = ukp.load_ukpconvarg1(ukp_folder)
    comps = ukp.to_comparisons(c)
    debate = [q.debate for q in c.pairs]
    args = [(q.arg1_id, q.arg2_id) for q in c.pairs]
    assert debate_folds(debate, 2) == debate_folds(list(reversed(debate)), 2)  # order-free
    with pytest.raises(ValueError, match="folds=5: need 2 <= folds <= number of debates \\(4\\)"):
        debate_folds(debate, 5)
    seen = []
    for f in range(2):
        fd = make_fold(comps, debate, args, f, 2, c.strict, c.ranking)
        held = {debate[i] for i in fd.extra.index}
        assert held == set(fd.heldout_debates) and len(held) == 2
        assert not held & {debate[i] for i in fd.train_index}
        topics = {f"d{DEBATES.index(d)}_{s}" for d in held for s in ("yes", "no")}
        assert {comps[i].prompt_id for i in fd.extra.index} == topics
        assert fd.test.n_dropped_ties == 8 and fd.test.index.size == 12  # 4 topics × 3 pairs with a majority
        assert fd.extra.strict_index.size == 8  # 2 Strict pairs per held-out topic
        seen += fd.heldout_debates
    assert sorted(seen) == sorted(DEBATES)


def test_cross_topic_metrics_known_values():
    ev = CrossTopicEval(topic=np.array(["t1", "t1", "t2", "t2"]), index=np.arange(4), strict_index=np.array([0, 2]),
                        strict_a_wins=np.array([True, False]), arg_ids=[("a", "b"), ("b", "c"), ("x", "y"), ("y", "z")],
                        gold={"a": 3.0, "b": 2.0, "c": 1.0, "x": 1.0, "y": 2.0, "z": 3.0})
    r1, r2 = np.array([3.0, 2.0, 5.0, 4.0]), np.array([2.0, 1.0, 4.0, 6.0])  # t1: a>b>c (ρ=1); t2: x5 y4 z6 (ρ=0.5)
    out = ev(lambda idx: (r1[idx], r2[idx]))
    assert out["accuracy_strict"] == pytest.approx(0.5)  # pair 0 right (a1 wins), pair 2 wrong (5 > 4 but a2 gold)
    assert out["spearman"] == pytest.approx(0.75) and out["spearman_topics"] == 2


def _fake_features(rc, comps):
    """Stand-in for MiniLM features (no model load): the argument's quality, then small noise."""
    def f(text):
        rng = np.random.default_rng(len(text))
        return np.r_[float(text.rsplit("quality ", 1)[1].rstrip(".")), 0.1 * rng.standard_normal(7)].astype(np.float32)

    return (np.stack([f(c.completion_a) for c in comps]), np.stack([f(c.completion_b) for c in comps]))


@pytest.mark.parametrize("loss", ["rr", "bt"])
def test_a_ukp_run_trains_cross_topic_without_touching_the_hub(ukp_folder, tmp_path, monkeypatch, loss):
    import torch

    from rlpref.llm import multipref, train

    torch.set_num_threads(1)
    monkeypatch.setattr(multipref, "hub_reachable", lambda *a, **k: pytest.fail("hub attempt with local data"))
    monkeypatch.setattr(train, "hub_reachable", lambda *a, **k: pytest.fail("hub attempt with local data"))
    monkeypatch.setattr(train, "_frozen_features", _fake_features)
    cfg = {"loss": loss, "progress": False, "threads": 1, "cache_dir": str(tmp_path), "strata": {"kind": "prompt"},
           "data": {"source": "ukpconvarg1", "path": str(ukp_folder), "ukp": {"folds": 2, "fold": 1}},
           "model": {"hidden": 0, "dropout": 0.0, "epochs": 60, "lr": 0.05, "batch_size": 64}}
    r = train.run(cfg)
    assert (r["fold"], r["folds"], r["n_test"], r["n_test_strict"], r["spearman_topics"]) == (1, 2, 12, 8, 4)
    assert r["n_train"] == 16 and r["n_train_dropped_ties"] == 4  # 20 training pairs, 4 all-'equal'
    assert r["accuracy"] == 1.0 and r["accuracy_strict"] == 1.0 and r["spearman"] == pytest.approx(1.0)
    assert r["load_report"]["pairs_read"] == 40 and r["strata"] == "prompt"


def test_prompt_strata_never_mix_topics_and_hold_no_tied_margins():
    from rlpref.llm.train import build_strata

    key = -np.array([5, 3, 3, 1, 5, 5, 1, 0], dtype=float) / 5
    prompt = np.array(list("aaaabbbb"))
    s = build_strata(key, np.zeros(8), "prompt", None, prompt)
    for sid in np.unique(s):
        m = s == sid
        assert len(set(prompt[m])) == 1 and len(set(key[m])) == m.sum()
    assert len(np.unique(s)) == 4  # a: margin 3 twice -> 2 strata; b: margin 5 twice -> 2 strata


def test_report_tables_known_values():
    from rlpref.llm.ukp_report import efficiency_table, paired_table, summary_table

    rows = []
    for fold in range(2):
        for seed in range(2):
            for frac, acc_bt, acc_rr in ((0.5, 0.60, 0.66), (1.0, 0.70, 0.72)):
                for exp, acc in (("bt", acc_bt), ("rr_agree", acc_rr + 0.01 * seed)):
                    rows.append({"experiment": exp, "fold": fold, "seed": seed, "fraction": frac, "accuracy": acc,
                                 "accuracy_strict": acc, "spearman": acc - 0.3, "pdc": 0.1})
    df = pd.DataFrame(rows)
    s = summary_table(df)
    bt_full = s[(s.learner == "bt") & (s.fraction == 1.0)].iloc[0]
    assert bt_full.accuracy == pytest.approx(0.70) and bt_full.runs == 4
    p = paired_table(df)
    d = p[(p.learner == "rr_agree") & (p.fraction == 0.5) & (p.metric == "accuracy")].iloc[0]
    assert d["diff"] == pytest.approx(0.065) and (d.wins, d.n) == (4, 4)
    e = efficiency_table(s, metrics=["accuracy"]).iloc[0]
    # rr: 0.665 at 0.5 and 0.725 at 1.0; bt at 1.0 = 0.70 -> 0.5 + 0.035/0.06 * 0.5
    assert e.fraction_needed == pytest.approx(0.5 + 0.5 * 0.035 / 0.06)

