"""Honest figures at the angry operating point, by cross-fitting on val.

The deployed threshold is fitted on all of val; figures measured on the faces it was fitted on
flatter it. Cross-fitting measures the procedure instead: val is cut into folds (stratified by
angry-vs-rest, or by person when people are known, so that one person's faces never sit on both
sides), each fold is decided with a threshold fitted on the other folds, and the out-of-fold
decisions are scored. Val stays whole for training's checkpoint choice and no training data is
given up, which a calibration split carved from Training would cost.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedKFold

from emowatch.inference.threshold import choose_threshold, predict_with_threshold


def folds(
    is_angry: np.ndarray, groups: np.ndarray | None, n_splits: int, seed: int
) -> list[np.ndarray]:
    """Index arrays of the held-out part of each fold: by person (GroupKFold) when `groups` is
    given, else stratified by angry-vs-rest; fewer folds when there are too few angry faces or
    people. A pure function of labels, groups and seed: every model is cut the same way."""
    n_angry = int(is_angry.sum())
    if n_angry < 2:
        raise ValueError(f"cross-fitting needs >= 2 angry faces in val, found {n_angry}")
    x = np.zeros(len(is_angry))
    if groups is not None:
        angry_people = np.unique(groups[is_angry])
        k = min(n_splits, len(angry_people))
        if k < 2:
            raise ValueError("cross-fitting by person needs angry faces of >= 2 people in val")
        cut = GroupKFold(n_splits=k).split(x, is_angry, groups)
    else:
        k = min(n_splits, n_angry, int((~is_angry).sum()))
        cut = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, is_angry)
    return [held for _, held in cut]


def out_of_fold(
    probs: np.ndarray, y: np.ndarray, angry: int, target_recall: float, parts: list[np.ndarray]
) -> np.ndarray:
    """Predictions at the threshold rule, each fold at the threshold fitted on the others."""
    pred = np.empty(len(y), dtype=np.int64)
    for held in parts:
        fit = np.setdiff1d(np.arange(len(y)), held)
        point = choose_threshold(probs[fit, angry], y[fit] == angry, target_recall)
        pred[held] = predict_with_threshold(probs[held], angry, point.threshold)
    return pred
