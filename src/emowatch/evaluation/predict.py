"""Class probabilities of a trained network on faces, with optional test-time augmentation:
the one computation behind evaluation, re-scoring at promotion, and deployment (the angry
threshold chosen on val is applied to exactly these probabilities)."""

from __future__ import annotations

import numpy as np

from emowatch.training.fit import predict_proba


def predict(net, x: np.ndarray, mean: float, std: float, tta: str) -> np.ndarray:
    """Probabilities, averaged with the mirrored face when tta=hflip."""
    probs = predict_proba(net, x, mean, std)
    if tta == "hflip":
        probs = (probs + predict_proba(net, x[:, :, ::-1], mean, std)) / 2
    elif tta != "none":
        raise ValueError(f"evaluate.tta must be none or hflip, not {tta!r}")
    return probs
