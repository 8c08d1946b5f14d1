"""Is one model better than another beyond noise? A paired bootstrap on the same faces.

Both models' decisions on the same faces are resampled together (the same face indices for
both), so what the two share (easy and hard faces) cancels and the interval is that of the
difference alone, much narrower than two separate intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np

# metric(y, pred) on index arrays of shape (B, n): one value per resample.
Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def accuracy(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return (y == pred).mean(axis=-1)


def angry_precision(angry: int) -> Metric:
    def metric(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
        said = (pred == angry).sum(axis=-1)
        return ((pred == angry) & (y == angry)).sum(axis=-1) / np.maximum(said, 1)

    return metric


def angry_recall(angry: int) -> Metric:
    def metric(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
        real = (y == angry).sum(axis=-1)
        return ((pred == angry) & (y == angry)).sum(axis=-1) / np.maximum(real, 1)

    return metric


def metrics_for(angry: int) -> dict[str, Metric]:
    """The gate's metrics by the names the metrics JSON uses."""
    return {
        "accuracy_at_threshold": accuracy,
        "precision_angry_at_threshold": angry_precision(angry),
        "recall_angry_at_threshold": angry_recall(angry),
    }


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound at 0 or n successes, unlike the normal
    approximation)."""
    if n == 0:
        return 0.0, 1.0
    z = float(NormalDist().inv_cdf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def compare(
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    metric: Metric,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """metric(a) - metric(b) on the same faces, with a percentile bootstrap interval."""
    if not (len(y) == len(pred_a) == len(pred_b)) or len(y) == 0:
        raise ValueError("a paired comparison needs both models' decisions on the same faces")
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    diffs = metric(y[idx], pred_a[idx]) - metric(y[idx], pred_b[idx])
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    a, b = float(metric(y[None], pred_a[None])[0]), float(metric(y[None], pred_b[None])[0])
    return {
        "a": a,
        "b": b,
        "diff": a - b,
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "n": len(y),
        "n_boot": n_boot,
    }
