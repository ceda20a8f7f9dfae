"""The synthetic teacher's B-Pref options and pairings, against values worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from rlpref.control.records import Segments
from rlpref.control.teacher import TeacherConfig, label_pairs, sample_pairs, teacher_returns


def _segments_with(rewards: np.ndarray, batch: np.ndarray | None = None) -> Segments:
    """Segments whose return is the plain sum of the given rewards [M, L]."""
    m, length = rewards.shape
    obs = np.zeros((m, length, 1), np.float32)
    return Segments(
        obs=obs, acts=np.zeros((m, length, 1), np.float32), next_obs=obs,
        rewards=rewards.astype(np.float32), returns=rewards.sum(1).astype(np.float64),
        batch=np.zeros(m, np.int64) if batch is None else batch.astype(np.int64),
    )


def _two_levels(m: int = 400) -> Segments:
    """Half the segments return 0, half return 1: every non-tied pair has gap exactly 1."""
    rewards = np.zeros((m, 2))
    rewards[m // 2 :, 0] = 1.0
    return _segments_with(rewards)


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_boltzmann_teacher_picks_the_better_with_sigmoid_of_beta_gap(beta):
    prefs = label_pairs(_two_levels(), 3000, TeacherConfig(beta=beta), 0.99, np.random.default_rng(0),
                        strict=False)
    assert len(prefs) > 2000
    assert np.all(np.abs(prefs.return_chosen - prefs.return_rejected) == 1.0)
    expected = 1.0 / (1.0 + math.exp(-beta))  # P(better chosen) for a gap of 1
    sd = math.sqrt(expected * (1 - expected) / len(prefs))
    assert prefs.label_accuracy() == pytest.approx(expected, abs=4 * sd)


def test_myopic_returns_known_value():
    segs = _segments_with(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.8]]))
    np.testing.assert_allclose(teacher_returns(segs, TeacherConfig(myopic_gamma=0.5), 0.99), [0.25, 0.8])
    np.testing.assert_allclose(teacher_returns(segs, TeacherConfig(), 0.99), [1.0, 0.8])


def test_myopic_teacher_prefers_the_late_reward_and_keeps_true_returns_for_metrics():
    # Early-reward clips (true return 1) against late-reward clips (0.8): a myopic teacher with
    # gamma 0.5 sees 0.25 against 0.8 and always picks the late one, i.e. always "wrong".
    rewards = np.array([[1.0, 0.0, 0.0]] * 6 + [[0.0, 0.0, 0.8]] * 6)
    segs = _segments_with(rewards)
    myopic = label_pairs(segs, 20, TeacherConfig(myopic_gamma=0.5), 0.99, np.random.default_rng(0), strict=False)
    rational = label_pairs(segs, 20, TeacherConfig(), 0.99, np.random.default_rng(0), strict=False)
    assert len(myopic) >= 10
    assert myopic.label_accuracy() == 0.0 and rational.label_accuracy() == 1.0
    assert set(myopic.return_chosen.tolist()) == {0.8} and set(myopic.return_rejected.tolist()) == {1.0}


def test_skip_threshold_drops_pairs_whose_better_clip_is_poor():
    segs = _segments_with(np.arange(40, dtype=np.float64)[:, None])  # returns 0..39, D = 39
    rng = np.random.default_rng(1)
    base = sample_pairs(segs, 200, TeacherConfig(), rng)[0]
    skip = sample_pairs(segs, 200, TeacherConfig(skip_threshold=0.5), rng)[0]
    best = lambda p: np.maximum(segs.returns[p[:, 0]], segs.returns[p[:, 1]])  # noqa: E731
    assert np.any(best(base) < 19.5)  # without the threshold such pairs are drawn
    assert len(skip) == 200 and np.all(best(skip) >= 19.5)


def test_equal_threshold_drops_pairs_the_teacher_calls_equal():
    segs = _segments_with(np.arange(40, dtype=np.float64)[:, None])
    rng = np.random.default_rng(2)
    base = sample_pairs(segs, 200, TeacherConfig(near_tie=0.0), rng)[0]
    equal = sample_pairs(segs, 200, TeacherConfig(near_tie=0.0, equal_threshold=0.3), rng)[0]
    gap = lambda p: np.abs(segs.returns[p[:, 0]] - segs.returns[p[:, 1]])  # noqa: E731
    assert np.any(gap(base) < 0.3 * 39)
    assert np.all(gap(equal) >= 0.3 * 39)


def test_random_pairing_mixes_batches_but_stays_inside_the_requested_ones():
    rewards = np.random.default_rng(0).normal(size=(90, 4))
    segs = _segments_with(rewards, batch=np.repeat([0, 1, 2], 30))
    pairs, _ = sample_pairs(segs, 120, TeacherConfig(pairing="random"), np.random.default_rng(3), batches=[0, 2])
    b = segs.batch[pairs]
    assert set(np.unique(b).tolist()) == {0, 2}
    assert np.any(b[:, 0] != b[:, 1])
    assert len({tuple(sorted(p)) for p in pairs.tolist()}) == len(pairs)  # distinct pairs


def test_default_pairing_is_random_over_the_whole_feedback_set_with_even_strata():
    # Both defaults (dataclass and conf/teacher/default.yaml) pair over all batches; each batch still
    # gets n/B pairs as its stratum, and about (B-1)/B of the pairs cross batches.
    conf = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "teacher" / "default.yaml")
    assert TeacherConfig().pairing == conf.pairing == "random"
    rewards = np.random.default_rng(1).normal(size=(400, 3))
    segs = _segments_with(rewards, batch=np.repeat([0, 1, 2, 3], 100))
    prefs = label_pairs(segs, 400, TeacherConfig(), 0.99, np.random.default_rng(2))
    assert np.bincount(prefs.batch).tolist() == [100, 100, 100, 100]
    cross = np.mean(segs.batch[prefs.chosen] != segs.batch[prefs.rejected])
    assert cross == pytest.approx(0.75, abs=0.07)


@pytest.mark.parametrize(
    "bad, match",
    [({"beta": 0.0}, "beta"), ({"myopic_gamma": 1.5}, "myopic_gamma"), ({"myopic_gamma": 0.0}, "myopic_gamma"),
     ({"near_tie": -0.1}, "near_tie"), ({"skip_threshold": -1.0}, "skip_threshold"),
     ({"equal_threshold": -0.5}, "equal_threshold"), ({"sigma": float("nan")}, "sigma")],
)
def test_bpref_options_reject_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        TeacherConfig(**bad)


def test_relative_noise_error_rate_matches_the_normal_model():
    # R~ = R + N(0, (sigma |R|)^2) per comparison: the better clip loses with probability
    # Phi(-gap / (sigma * sqrt(Rc^2 + Rr^2))).
    rewards = np.random.default_rng(4).uniform(1.0, 3.0, size=(600, 1))
    segs = _segments_with(rewards)
    sigma = 0.3
    prefs = label_pairs(segs, 2000, TeacherConfig(sigma=sigma, noise="relative", near_tie=0.0), 0.99,
                        np.random.default_rng(5))
    hi = np.maximum(prefs.return_chosen, prefs.return_rejected)
    lo = np.minimum(prefs.return_chosen, prefs.return_rejected)
    z = (hi - lo) / (sigma * np.sqrt(hi**2 + lo**2))
    expected = float(np.mean([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z]))
    assert 0.6 < expected < 0.95  # the setting is informative either way
    assert prefs.label_accuracy() == pytest.approx(expected, abs=0.03)


def test_teacher_boltzmann_config_is_imitations_default_gatherer(compose_config):
    """conf/teacher/boltzmann.yaml: beta 1 (imitation's temperature 1), no noise, no near-tie filter, clean strength."""
    cfg = TeacherConfig.from_mapping(compose_config(["teacher=boltzmann"])["teacher"])
    assert (cfg.beta, cfg.sigma, cfg.near_tie, cfg.strength) == (1.0, 0.0, 0.0, "clean")
    assert (cfg.myopic_gamma, cfg.eps_mistake, cfg.skip_threshold, cfg.equal_threshold) == (None, 0.0, 0.0, 0.0)


def test_boltzmann_teacher_known_probabilities_per_gap_and_gap_as_strength(compose_config):
    # Returns 0, 0.5, 1, 2, 4 in equal numbers: each pair's gap is known, so is P(better chosen) = sigmoid(gap).
    cfg = TeacherConfig.from_mapping(compose_config(["teacher=boltzmann"])["teacher"])
    levels = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    segs = _segments_with(np.repeat(levels, 200)[:, None])
    prefs = label_pairs(segs, 8000, cfg, 0.99, np.random.default_rng(7), strict=False)
    gap = np.abs(prefs.return_chosen - prefs.return_rejected)
    np.testing.assert_array_equal(prefs.strength, -gap)  # strength: the clean return gap, rank key
    right = prefs.return_chosen > prefs.return_rejected
    for g in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0):
        at = np.isclose(gap, g)
        p = 1.0 / (1.0 + math.exp(-g))
        assert at.sum() > 300
        assert right[at].mean() == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / at.sum()))
    again = label_pairs(segs, 8000, cfg, 0.99, np.random.default_rng(7), strict=False)
    np.testing.assert_array_equal(again.chosen, prefs.chosen)  # seeded: the same labels


def test_boltzmann_teacher_matches_imitations_synthetic_gatherer():
    """The same probabilities as imitation's SyntheticGatherer (temperature 1, discount = rlpref's gamma)."""
    pc = pytest.importorskip("imitation.algorithms.preference_comparisons")
    from imitation.data.types import TrajectoryWithRew

    rng = np.random.default_rng(3)
    gamma, length = 0.98, 50
    rewards = rng.normal(0.0, 0.05, size=(40, length))
    from rlpref.control.segments import discounted_returns

    returns = discounted_returns(rewards, gamma)
    pairs = np.stack([np.arange(0, 40, 2), np.arange(1, 40, 2)], axis=1)

    def frag(i):
        return TrajectoryWithRew(obs=np.zeros((length + 1, 1), np.float32), acts=np.zeros((length, 1), np.float32),
                                 infos=None, terminal=False, rews=rewards[i].astype(np.float32))

    gatherer = pc.SyntheticGatherer(temperature=1.0, discount_factor=gamma, sample=False, rng=rng)
    theirs = gatherer([(frag(a), frag(b)) for a, b in pairs])
    beta = TeacherConfig(beta=1.0).beta
    ours = 1.0 / (1.0 + np.exp(-beta * (returns[pairs[:, 0]] - returns[pairs[:, 1]])))
    assert np.ptp(ours) > 0.2  # gaps of order 1: probabilities well inside (0, 1)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)  # imitation sums in float32
