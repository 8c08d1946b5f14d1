"""Test-time augmentation: the views and the averaged probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emowatch.inference.predict import predict, ten_crops


class MeanNet(torch.nn.Module):
    """Logits from the mean brightness of the left and right halves: sees mirroring."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        left, right = x[..., : w // 2].mean(dim=(1, 2, 3)), x[..., w // 2 :].mean(dim=(1, 2, 3))
        return torch.stack([left, right, torch.zeros_like(left)], dim=1) * 5


def faces(n: int = 3) -> np.ndarray:
    x = np.zeros((n, 48, 48), np.uint8)
    x[:, :, :24] = 200  # bright left half
    return x


def test_ten_crops_are_five_crops_and_their_mirrors_at_input_size():
    x = np.arange(48 * 48, dtype=np.float32).reshape(1, 48, 48) % 251
    crops = ten_crops(x.astype(np.uint8))
    assert len(crops) == 10 and all(c.shape == (1, 48, 48) for c in crops)
    for plain, mirrored in zip(crops[::2], crops[1::2], strict=True):
        np.testing.assert_array_equal(plain[:, :, ::-1], mirrored)
    assert not np.array_equal(crops[0], crops[2])  # top-left differs from top-right


@pytest.mark.parametrize("tta", ["none", "hflip", "tencrop"])
def test_probabilities_per_view_sum_to_one(tta):
    probs = predict(MeanNet(), faces(), 0.5, 0.25, tta)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_mirroring_views_average_left_and_right():
    net, x = MeanNet(), faces()
    plain = predict(net, x, 0.5, 0.25, "none")
    assert plain[0, 0] > plain[0, 1]  # sees the bright left half
    for tta in ("hflip", "tencrop"):
        probs = predict(net, x, 0.5, 0.25, tta)
        assert probs[0, 0] == pytest.approx(probs[0, 1], abs=1e-5)  # mirror-symmetric average


def test_unknown_tta_is_a_clear_error():
    with pytest.raises(ValueError, match="none, hflip, tencrop"):
        predict(MeanNet(), faces(), 0.5, 0.25, "rotate")
