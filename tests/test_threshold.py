"""The angry operating point on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest

from emowatch.inference.threshold import angry_scores, choose_threshold, predict_with_threshold


def test_reaches_target_recall_with_best_precision():
    # 10 angry faces with scores 0.1..1.0, 10 others with scores 0.05..0.95
    p = np.r_[np.linspace(0.1, 1.0, 10), np.linspace(0.05, 0.95, 10)]
    angry = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    point = choose_threshold(p, angry, 0.8)
    assert point.recall >= 0.8
    assert point.threshold == pytest.approx(0.3)  # the highest threshold that keeps 8 of 10
    assert point.precision == pytest.approx(8 / 15)
    # any lower threshold keeps the recall but loses precision
    pred = p >= point.threshold - 0.06
    assert angry[pred].mean() <= point.precision


def test_perfect_separation_and_no_angry():
    point = choose_threshold(
        np.array([0.9, 0.8, 0.2, 0.1]), np.array([True, True, False, False]), 0.8
    )
    assert (point.recall, point.precision, point.threshold) == (1.0, 1.0, 0.8)
    with pytest.raises(ValueError, match="no angry face"):
        choose_threshold(np.array([0.5]), np.array([False]), 0.8)


def test_threshold_rule_falls_back_to_the_other_classes():
    probs = np.array([[0.3, 0.6, 0.1], [0.2, 0.1, 0.7], [0.5, 0.4, 0.1]])
    assert predict_with_threshold(probs, 0, 0.25).tolist() == [0, 2, 0]
    assert predict_with_threshold(probs, 0, 0.9).tolist() == [1, 2, 1]
    assert angry_scores(np.array([0, 0, 1]), np.array([0, 1, 1]), 0) == (1.0, 0.5)
