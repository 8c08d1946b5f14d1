"""Class probabilities with optional test-time augmentation (TTA): the one computation behind
evaluation, re-scoring at promotion, and deployment (the angry threshold chosen on val is
applied to exactly these probabilities), and the rule that picks the TTA view on val."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from emowatch.inference.probabilities import predict_proba

TTA = ("none", "hflip", "tencrop")
CROP = 0.9  # ten-crop: crops of 90% of the side (44 px of 48), scaled back to the input size


def ten_crops(x: np.ndarray, fraction: float = CROP) -> list[np.ndarray]:
    """The four corner crops and the centre crop of faces (N, H, W), each resized back to
    (H, W) so that every network takes them, and the five mirrored: ten float arrays."""
    h, w = x.shape[1:]
    ch, cw = round(h * fraction), round(w * fraction)
    origins = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
    crops = []
    for top, left in origins:
        patch = torch.from_numpy(np.ascontiguousarray(x[:, top : top + ch, left : left + cw]))
        big = F.interpolate(patch.float()[:, None], size=(h, w), mode="bilinear")[:, 0]
        crops += [big.numpy(), big.flip(-1).numpy()]
    return crops


def predict(net, x: np.ndarray, mean: float, std: float, tta: str) -> np.ndarray:
    """Probabilities, averaged over the test-time views: the face alone (none), with its mirror
    image (hflip), or ten crops (tencrop)."""
    if tta == "none":
        return predict_proba(net, x, mean, std)
    if tta == "hflip":
        return (predict_proba(net, x, mean, std) + predict_proba(net, x[:, :, ::-1], mean, std)) / 2
    if tta == "tencrop":
        return np.mean([predict_proba(net, c, mean, std) for c in ten_crops(x)], axis=0)
    raise ValueError(f"evaluate.tta must be one of {', '.join(TTA)}, not {tta!r}")


def choose_tta(
    val_probs: dict[str, np.ndarray], y: np.ndarray, margin: float
) -> tuple[str, dict[str, float]]:
    """The rule for test-time augmentation, on val only: a view other than `none` is used only
    when it raises val accuracy by at least `margin` (each extra view costs a forward pass per
    face on the camera); the best such view wins. Returns (chosen, val accuracy per view)."""
    acc = {t: float(np.mean(p.argmax(axis=1) == y)) for t, p in val_probs.items()}
    if "none" not in acc:
        raise ValueError("the TTA rule compares against `none`: list it among the candidates")
    better = {t: a for t, a in acc.items() if t != "none" and a >= acc["none"] + margin}
    return (max(better, key=better.get) if better else "none"), acc
