"""Tests of rlpref.metrics on inputs with known answers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from rlpref.metrics import choice_accuracy, order_accuracy, pdc, pearson, spearman


def test_choice_accuracy_ties_wrong():
    # strictly higher: yes, no, tie (wrong), yes
    assert choice_accuracy([2.0, 0.0, 1.0, 5.0], [1.0, 3.0, 1.0, -1.0]) == pytest.approx(0.5)


def test_choice_accuracy_torch_and_errors():
    assert choice_accuracy(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 3.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        choice_accuracy([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        choice_accuracy([], [])
    with pytest.raises(ValueError, match="1-D"):
        choice_accuracy([[1.0]], [[0.0]])


def test_order_accuracy_known():
    true_1 = [1.0, 2.0, 3.0, 4.0, 5.0]
    true_2 = [0.0, 3.0, 3.0, 1.0, 9.0]  # pair 3 tied in truth: skipped
    pred_1 = [0.5, 1.0, 7.0, 2.0, 2.0]
    pred_2 = [0.0, 0.0, 0.0, 2.0, 3.0]  # right, wrong, (skipped), predicted tie -> wrong, right
    assert order_accuracy(true_1, true_2, pred_1, pred_2) == pytest.approx(2 / 4)


def test_order_accuracy_all_tied_truth():
    with pytest.raises(ValueError, match="tied"):
        order_accuracy([1.0, 2.0], [1.0, 2.0], [0.0, 1.0], [1.0, 0.0])


def test_pdc_perfectly_linear_is_one():
    dt = np.array([0.5, -1.0, 2.0, -3.0, 0.1])
    assert pdc(dt, 2.5 * dt) == pytest.approx(1.0)
    # sign flips do not matter: PDC is about magnitudes
    assert pdc(dt, -0.3 * dt * np.array([1, -1, 1, -1, 1])) == pytest.approx(1.0)


def test_pdc_known_value():
    # |dt| = (1, 2, 3), |dp| = (1, 3, 2): Pearson r = 0.5
    assert pdc([1.0, -2.0, 3.0], [-1.0, 3.0, 2.0]) == pytest.approx(0.5)


def test_pdc_is_not_order_metric():
    # same sign pattern (100% order accuracy) but magnitudes reversed -> PDC = -1
    assert pdc([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_constant_predictions_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="constant"):
        assert math.isnan(pdc([1.0, 2.0, 3.0], [1.0, -1.0, 1.0]))  # |dp| constant
    with pytest.warns(RuntimeWarning, match="constant"):
        assert math.isnan(pearson([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
    with pytest.warns(RuntimeWarning, match="constant"):
        assert math.isnan(spearman([5.0, 5.0], [1.0, 2.0]))


def test_no_warning_when_defined():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pearson([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])


def test_pearson_known_value():
    # x = (1,2,3), y = (1,3,2): cov = 0.5, var = 1 each -> r = 0.5
    assert pearson([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(0.5)
    assert pearson([1.0, 2.0, 3.0], [-2.0, -4.0, -6.0]) == pytest.approx(-1.0)


def test_spearman_known_value():
    # monotone but nonlinear: spearman 1, pearson < 1
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.exp(3 * x)
    assert spearman(x, y) == pytest.approx(1.0)
    assert pearson(x, y) < 0.95
    # ranks (1,2,3,4) vs (2,1,4,3): d^2 sum = 4 -> rho = 1 - 6*4/(4*15) = 0.6
    assert spearman(x, [20.0, 10.0, 40.0, 30.0]) == pytest.approx(0.6)


def test_correlation_needs_two_values():
    with pytest.raises(ValueError, match="at least 2"):
        pearson([1.0], [2.0])


def test_metrics_return_python_float():
    for v in (
        choice_accuracy([1.0], [0.0]),
        pearson([1.0, 2.0], [2.0, 1.0]),
        spearman(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])),
        pdc([1.0, 2.0], [1.0, 3.0]),
    ):
        assert type(v) is float
