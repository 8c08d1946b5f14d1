"""Class probabilities of a network on uint8 faces: the forward pass shared by training (its
val and test reports) and inference. Kept apart from the TTA code (`inference.predict`) so
that the training stages depend on this file alone."""

from __future__ import annotations

import numpy as np
import torch

from emowatch.data.splits import to_tensor


@torch.inference_mode()
def predict_proba(
    net: torch.nn.Module, x: np.ndarray, mean: float, std: float, batch: int = 512
) -> np.ndarray:
    """Class probabilities for uint8 faces (N, H, W), in eval mode."""
    was_training = net.training
    net.eval()
    out = [
        net(to_tensor(x[i : i + batch], mean, std)).softmax(dim=1) for i in range(0, len(x), batch)
    ]
    net.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
