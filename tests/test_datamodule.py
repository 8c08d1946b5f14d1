"""DataModule: augmentation on train only, balancing options, stratified subsets."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from emowatch.data.datamodule import FaceDataModule, class_weights, subsample
from emowatch.data.splits import SplitArrays


def arrays(n=12):
    rng = np.random.default_rng(0)
    x = {s: rng.integers(0, 256, (n, 48, 48), dtype=np.uint8) for s in ("train", "val", "test")}
    y = {s: np.array([0] * (n - 3) + [1, 2, 3]) for s in x}
    return SplitArrays(x, y, ["angry", "happy", "neutral", "sad"])


def test_augmentation_applies_to_training_data_only():
    flip = A.Compose([A.HorizontalFlip(p=1.0)])
    dm = FaceDataModule(arrays(), batch_size=4, mean=0.5, std=0.25, augment=flip)
    original = arrays().x
    for split in ("train", "val", "test"):
        img, label = dm.dataset(split)[0]
        expected = original[split][0][:, ::-1] if split == "train" else original[split][0]
        assert img.shape == (1, 48, 48) and label.dtype == torch.int64
        np.testing.assert_allclose(img[0].numpy(), (expected / 255 - 0.5) / 0.25, atol=1e-6)


def test_balancing_options():
    data = arrays()
    assert FaceDataModule(data, 4, 0.5, 0.25).loss_weights() is None
    weights = FaceDataModule(data, 4, 0.5, 0.25, balance="weights").loss_weights()
    assert weights[1] > weights[0] and np.isclose(np.dot(weights, np.bincount(data.y["train"])), 12)
    loader = FaceDataModule(data, 4, 0.5, 0.25, balance="sampler").train_dataloader()
    assert isinstance(loader.sampler, torch.utils.data.WeightedRandomSampler)
    with pytest.raises(ValueError, match="balance"):
        FaceDataModule(data, 4, 0.5, 0.25, balance="oversample")
    assert class_weights(np.array([0, 0, 1]), 3)[2] == 0.0  # absent class: no weight


def test_subsample_keeps_every_class():
    y = np.repeat(np.arange(4), 10)
    x = np.arange(40)
    xs, ys = subsample(x, y, 0.3, seed=0)
    assert np.bincount(ys).tolist() == [3, 3, 3, 3] and set(xs) <= set(x)
    assert subsample(x, y, 1.0, 0)[0] is x
