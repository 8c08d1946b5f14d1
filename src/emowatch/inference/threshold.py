"""The angry operating point: a threshold on P(angry), chosen on the validation split.

Predict angry when P(angry) ≥ threshold, otherwise the most likely of the other classes. The
threshold is the one that reaches the target recall on angry with the best precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    recall: float
    precision: float


def choose_threshold(
    p_angry: np.ndarray, is_angry: np.ndarray, target_recall: float
) -> OperatingPoint:
    """Among thresholds whose recall on angry is ≥ target, the one with the best precision
    (the highest threshold on ties). Raises if the split holds no angry face."""
    if not is_angry.any():
        raise ValueError("the split holds no angry face: no threshold can be chosen")
    precision, recall, thresholds = precision_recall_curve(is_angry, p_angry)
    # precision/recall have one more entry than thresholds (the recall-0 end point).
    precision, recall = precision[:-1], recall[:-1]
    ok = np.flatnonzero(recall >= target_recall)
    best = ok[np.lexsort((thresholds[ok], precision[ok]))[-1]]
    return OperatingPoint(float(thresholds[best]), float(recall[best]), float(precision[best]))


def predict_with_threshold(probs: np.ndarray, angry: int, threshold: float) -> np.ndarray:
    """Angry where P(angry) ≥ threshold, else the argmax over the other classes."""
    others = probs.copy()
    others[:, angry] = -np.inf
    return np.where(probs[:, angry] >= threshold, angry, others.argmax(axis=1))


def angry_scores(pred: np.ndarray, y: np.ndarray, angry: int) -> tuple[float, float]:
    """(recall, precision) on angry for a set of predictions."""
    tp = float(np.sum((pred == angry) & (y == angry)))
    recall = tp / max(float(np.sum(y == angry)), 1.0)
    precision = tp / max(float(np.sum(pred == angry)), 1.0)
    return recall, precision
