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
